//! Shared helpers of the scenario tests.

use std::io::Write;

use tagloan_scenarios::Report;

/// Prints a line past the test harness's capture, so `make test` shows it.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What every scenario must show: no violation, no corruption, the
/// invariants checked, and nothing leaked once the clients are done.
pub fn assert_sound(r: &Report) {
    assert_eq!(r.violations, 0, "{}: {:?}", r.scenario, r.first_violations);
    assert!(
        r.invariant_checks > 0,
        "{}: the invariants were never checked",
        r.scenario
    );
    assert_eq!(r.corrupted_bytes, 0, "{}: corrupted bytes", r.scenario);
    assert_eq!(
        r.summary.livelocks, 0,
        "{}: a client was resumed on a fault nothing fixed",
        r.scenario
    );
}

/// The pointer's and the memory's tags in the fault handler's report of a
/// tag-check fault (`... pointer tag 0xP, memory tag 0xM; ...`).
pub fn reported_tags(line: &str) -> (u8, u8) {
    let tag = |name: &str| {
        let at = line
            .find(name)
            .unwrap_or_else(|| panic!("no `{name}` in {line}"))
            + name.len();
        let digits = line[at..]
            .split(|c: char| !c.is_ascii_hexdigit())
            .next()
            .unwrap_or("");
        u8::from_str_radix(digits, 16).unwrap_or_else(|_| panic!("no tag after `{name}` in {line}"))
    };
    (tag("pointer tag 0x"), tag("memory tag 0x"))
}

/// Every frame came back: the free counts equal those after start-up.
pub fn assert_no_leak(r: &Report) {
    assert!(r.quiescent, "{}: the system did not finish", r.scenario);
    assert_eq!(
        r.free_final, r.free_initial,
        "{}: {} frames free at the end, {} after start-up",
        r.scenario, r.free_final, r.free_initial
    );
}
