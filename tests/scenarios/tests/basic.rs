//! Basic: tagged and untagged allocations side by side.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};

#[test]
fn tagged_and_untagged_allocations_work_side_by_side() {
    let r = run(Scenario::Basic, &Options::default()).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    assert_eq!(r.client_counter("client_tagged_heap", "arenas"), 4);
    assert!(r.client_counter("client_tagged_heap", "mallocs") > 50);
    assert_eq!(r.client_counter("client_bulk", "allocated"), 8);
    assert_eq!(
        r.client_counter("client_bulk", "pages_verified"),
        8 * 16 * 3
    );
    // Nothing filled memory, so nothing was lent.
    assert_eq!(r.lent_peak, 0);
}
