//! Use after free: a stale tagged pointer faults, and the client is stopped
//! and reclaimed.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
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
    let tag = |name: &str| {
        let at = line.find(name).unwrap() + name.len();
        u8::from_str_radix(
            line[at..]
                .trim_start_matches("0x")
                .split(|c: char| !c.is_ascii_hexdigit())
                .next()
                .unwrap(),
            16,
        )
        .unwrap()
    };
    assert_ne!(tag("pointer tag 0x"), tag("memory tag 0x"), "{line}");
    assert!(r.trace.contains("reclaimed 2 frames of client_tagged_heap"));
}
