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
