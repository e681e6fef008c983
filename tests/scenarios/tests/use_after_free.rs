//! Use after free: a stale tagged pointer faults, and the client is stopped
//! and reclaimed.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report, reported_tags};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn a_stale_tagged_pointer_takes_a_tag_check_fault_and_the_client_is_stopped() {
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let r = run(Scenario::UseAfterFree, &options).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    assert_eq!(
        r.client_counter("client_tagged_heap", "use_after_free_attempted"),
        1
    );
    assert_eq!(r.faults_tag_check, 1);
    assert_eq!(r.summary.faults_tag_check, 1);
    let heap = r
        .clients
        .iter()
        .find(|c| c.name == "client_tagged_heap")
        .unwrap();
    assert!(!heap.running, "the client is stopped");
    assert_eq!(heap.frames_held, 0, "its frames are reclaimed");
    // The report names the address and both tags, and they differ.
    let line = r
        .trace
        .lines()
        .find(|l| l.contains("MTE tag-check fault in client_tagged_heap"))
        .expect("the fault handler reports the fault");
    let (pointer, memory) = reported_tags(line);
    assert_ne!(pointer, memory, "{line}");
    assert!(r.trace.contains("reclaimed 2 frames of client_tagged_heap"));
}

/// The plan the seL4 image runs on a kernel that enforces tags
/// (`HeapPlan::lending_then_use_after_free`, in the lending scenario): in
/// the simulator, every live object is read back through its own tagged
/// pointer after the tagged burst's recalls, and then the stale write is
/// the run's one tag-check fault (`tests/sel4/mte-test` checks the same on
/// seL4).
#[test]
fn the_sel4_mte_plan_checks_every_live_object_after_the_recalls_then_faults_once() {
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let plans = tagloan_scenarios::Plans {
        heap: Some(tagloan_scenarios::HeapPlan::lending_then_use_after_free()),
        ..Scenario::Lending.plans(options.seed)
    };
    let r =
        tagloan_scenarios::run_plans("lending, then a use after free", plans, &options).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    assert!(r.server_counter("recalls") > 0, "the tagged burst recalls");
    let heap = |counter| r.client_counter("client_tagged_heap", counter);
    assert_eq!(heap("arenas"), 16);
    assert!(heap("objects_checked") > 0);
    assert_eq!(heap("corrupted_bytes"), 0);
    assert_eq!(heap("use_after_free_attempted"), 1);
    assert_eq!(r.faults_tag_check, 1, "only the stale write faults");
    let checked = r
        .trace
        .find("client_tagged_heap: before its use after free:")
        .expect("the heap reports before the stale write");
    let fault = r
        .trace
        .find("MTE tag-check fault in client_tagged_heap")
        .expect("the fault handler reports the fault");
    assert!(
        checked < fault,
        "the fault is the stale write, after the check"
    );
}
