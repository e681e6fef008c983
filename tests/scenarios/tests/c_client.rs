//! The C client (`pds/client_c/client_c.c`) in the simulator, on the host
//! libmicrokit: the same source the seL4 image builds with the SDK.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report, reported_tags};
use tagloan_scenarios::{run_plans, CPlan, Options, Plans};

fn run_c(name: &str, plan: CPlan) -> tagloan_scenarios::Report {
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let plans = Plans {
        c: Some(plan),
        ..Plans::default()
    };
    let r = run_plans(name, plans, &options).unwrap();
    report(&r.one_line());
    r
}

#[test]
fn the_c_client_tags_its_objects_checks_them_and_frees_everything() {
    let r = run_c("the C client", CPlan::default());
    assert_sound(&r);
    assert_no_leak(&r);
    let c = |counter| r.client_counter("client_c", counter);
    // A 2-page tagged arena of 64-byte objects: each tagged and checked,
    // half freed by retagging and the other half checked again.
    assert_eq!(c("objects_tagged"), 128);
    assert_eq!(c("objects_freed"), 64);
    assert_eq!(c("objects_checked"), 128 + 64);
    assert_eq!(c("corrupted_bytes"), 0);
    assert_eq!(c("errors"), 0);
    assert_eq!(c("done"), 1);
    assert_eq!(r.faults_tag_check, 0);
    assert!(
        r.trace.contains("client_c: finished: steps="),
        "its counters, printed by the fault handler"
    );
    assert!(r.trace.contains("final: 5 clients finished, 0 stopped"));
}

#[test]
fn the_c_clients_use_after_free_is_caught_by_a_tag_check_fault_and_it_is_stopped() {
    let r = run_c(
        "the C client's use after free",
        CPlan {
            use_after_free: true,
        },
    );
    assert_sound(&r);
    assert_no_leak(&r);
    assert_eq!(r.client_counter("client_c", "use_after_free_attempted"), 1);
    assert_eq!(r.faults_tag_check, 1);
    let c = r.clients.iter().find(|c| c.name == "client_c").unwrap();
    assert!(!c.running, "the client is stopped");
    assert_eq!(c.frames_held, 0, "its frames are reclaimed");
    let before = r
        .trace
        .find("client_c: before its use after free:")
        .expect("the client reports before the stale write");
    let line = r
        .trace
        .lines()
        .find(|l| l.contains("MTE tag-check fault in client_c at 0x4e00"))
        .unwrap_or_else(|| {
            panic!(
                "the fault handler reports the fault in the C client's window: {}",
                r.trace
                    .lines()
                    .filter(|l| l.contains("fault"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
    assert!(before < r.trace.find(line).unwrap());
    let (pointer, memory) = reported_tags(line);
    assert_ne!(pointer, memory, "{line}");
    assert!(r.trace.contains("reclaimed 2 frames of client_c"));
    assert!(r.trace.contains("final: 4 clients finished, 1 stopped"));
}
