//! Exhaustion: contiguous requests run out of data memory (they can never
//! borrow tag storage); no-memory is reported cleanly and nothing is
//! half-done.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn no_memory_is_reported_cleanly_with_nothing_half_done() {
    let r = run(Scenario::Exhaustion, &Options::default()).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    assert_eq!(r.client_counter("client_bulk", "no_memory"), 1);
    let allocated = r.client_counter("client_bulk", "allocated");
    assert!(
        (60..64).contains(&allocated),
        "{allocated} contiguous buffers fit"
    );
    assert_eq!(
        r.client_counter("client_bulk", "allocated_in_tag_storage"),
        0
    );
    assert!(r.server_counter("no_memory") >= 1);
    // The buffers that fit were verified and freed whole.
    assert_eq!(r.client_counter("client_bulk", "released"), allocated);
    assert_eq!(r.client_counter("client_tagged_heap", "arenas"), 8);
}
