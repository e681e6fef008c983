//! Lazy tagging: mprotect(PROT_MTE)-like enablement, end to end.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn enabling_tags_on_live_data_faults_once_per_page_and_keeps_the_data() {
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let r = run(Scenario::Lazy, &options).unwrap();
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
    // Each round's first page is touched by STG through a tagged pointer:
    // its fault address carries the tag (FAR keeps the top byte), and the
    // fault handler still resolves it rather than restarting the client.
    let tagged_faults = r
        .trace
        .lines()
        .filter(|l| l.contains("fault client_lazy VmFault"))
        .filter(|l| {
            // The trace prints the fault with {:x?}: hex without 0x.
            let at = l.find("addr: ").unwrap() + "addr: ".len();
            let addr = u64::from_str_radix(l[at..].split(',').next().unwrap(), 16).unwrap();
            addr >> 56 != 0
        })
        .count();
    assert_eq!(tagged_faults, 8, "one tagged first touch per round");
    assert_eq!((r.faults_other, r.summary.restarts), (0, 0));
}
