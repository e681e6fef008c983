//! Lazy tagging: mprotect(PROT_MTE)-like enablement, end to end.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn enabling_tags_on_live_data_faults_once_per_page_and_keeps_the_data() {
    let r = run(Scenario::Lazy, &Options::default()).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    // 8 rounds of 8 pages: each page faults once, is tagged, keeps its data,
    // and reads back through a tag-0 pointer (its tags are zero).
    assert_eq!(r.client_counter("client_lazy", "rounds_done"), 8);
    assert_eq!(r.client_counter("client_lazy", "pages_tagged_lazily"), 64);
    assert_eq!(r.client_counter("client_lazy", "not_tagged"), 0);
    assert_eq!(r.faults_resolved, 64);
    assert_eq!(r.summary.faults_vm, 64);
    assert_eq!(r.faults_tag_check, 0);
}
