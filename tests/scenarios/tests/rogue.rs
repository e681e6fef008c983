//! Rogue: every bad request gets its documented error and changes nothing.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn every_rogue_request_is_refused_with_its_error_and_changes_nothing() {
    let r = run(Scenario::Rogue, &Options::default()).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    let cases = client_rogue::cases(0, 1, 0).len() as u64;
    assert_eq!(r.client_counter("client_rogue", "cases_run"), cases);
    let rogue = r.clients.iter().find(|c| c.name == "client_rogue").unwrap();
    assert_eq!(
        r.client_counter("client_rogue", "refused_as_documented"),
        cases,
        "{:?}",
        rogue.counters
    );
    assert_eq!(r.client_counter("client_rogue", "unexpected"), 0);
    assert_eq!(r.client_counter("client_rogue", "state_changed"), 0);
    assert_eq!(r.client_counter("client_rogue", "setup_failed"), 0);
    assert!(r.server_counter("refused_malformed") >= 9);
    assert_eq!(r.server_counter("refused_permission"), 2);
}

#[test]
fn a_load_from_an_unmapped_page_reaches_the_fault_handler_which_restarts_then_stops_the_client() {
    // What the seL4 image does: after its cases, the rogue client loads from
    // a page of its window it never allocated.
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let plans = tagloan_scenarios::Plans {
        rogue: true,
        rogue_touches_unmapped: true,
        ..tagloan_scenarios::Plans::default()
    };
    let r = tagloan_scenarios::run_plans("rogue-unmapped", plans, &options).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    let restarts = u64::from(fault_handler::MAX_RESTARTS);
    // Every run of the program faults once: the first, and one per restart.
    assert_eq!(r.summary.faults_vm, restarts + 1);
    assert_eq!(r.faults_other, restarts + 1, "a real fault, never resolved");
    assert_eq!(r.faults_resolved, 0);
    assert_eq!(r.summary.restarts, restarts);
    assert_eq!(r.summary.livelocks, 0);
    assert_eq!(
        r.client_counter("client_rogue", "unmapped_loads_returned"),
        0
    );
    let window = 0x4c00_0000u64 + 3 * 4096;
    assert!(
        r.trace.contains(&format!(
            "client_rogue faulted at {window:#x} (FSR 0x7), not a lazy-tagging fault (not-mapped"
        )),
        "the handler reports the address and the FSR"
    );
    assert!(r
        .trace
        .contains("client_rogue faulted after 3 restarts; stopping it"));
    // The second run runs code from the data page it holds, the third from
    // a no-access page awaiting its tags: every client page is
    // execute-never, so each is an instruction abort (a permission fault on
    // a mapped page), never code that runs, nor a lazy-tagging fault.
    for (run, page) in [(2, 200u64), (3, 5)] {
        let at = 0x4c00_0000u64 + page * 4096;
        assert!(
            r.trace
                .contains(&format!("client_rogue: run {run}: running code from")),
            "{}",
            r.trace
        );
        assert!(
            r.trace.contains(&format!(
                "client_rogue took an instruction abort at {at:#x} (pc {at:#x}, FSR 0xf): its pages are execute-never"
            )),
            "run {run}: no instruction abort at {at:#x}:\n{}",
            r.trace
        );
    }
    assert_eq!(r.client_counter("client_rogue", "code_ran"), 0);
    assert_eq!(r.client_counter("client_rogue", "setup_failed"), 0);
    let last = r
        .trace
        .lines()
        .rev()
        .find(|l| l.contains("fault_handler: final:"))
        .unwrap_or("");
    assert!(
        last.contains("final: 4 clients finished, 1 stopped"),
        "{last}"
    );
    let rogue = r.clients.iter().find(|c| c.name == "client_rogue").unwrap();
    assert!(!rogue.running);
    // Each run sent every case, and each got its documented error.
    let cases = client_rogue::cases(0, 1, 0).len() as u64;
    assert_eq!(
        r.client_counter("client_rogue", "refused_as_documented"),
        cases * (restarts + 1)
    );
    assert_eq!(r.client_counter("client_rogue", "unexpected"), 0);
}
