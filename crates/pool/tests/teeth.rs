//! Injected bugs, each caught: a checker that cannot see a bug is no
//! checker. Each test runs only with its bug's feature, for example
//! `cargo test -p tagloan-pool --features inject-release-with-hold --test teeth`
//! (`make test` runs them all). Without a bug's feature the file is empty.
#![cfg(any(
    feature = "inject-release-with-hold",
    feature = "inject-stuck-evacuation-cursor"
))]

mod common;

use common::*;
#[allow(unused_imports)]
use tagloan_pool::{AllocRequest, Config, Invariant, Pool, PoolError};
use tagloan_ram::SimMachine;

#[cfg(feature = "inject-release-with-hold")]
/// Defect 2 of the assurance issue: permanent holds were never checked, so
/// a block released while the server's tagged frame still held it passed
/// `check_invariants()`.
#[test]
fn a_block_released_with_a_permanent_hold_left_is_caught_by_check_invariants() {
    let layout = one_region(64, 1);
    let specs = clients(1, 256, 64);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    // The server's tagged probe frame holds its block for ever.
    pool.take_server_frame(&mut machine, true).unwrap();
    assert_invariants(&pool);
    // A tagged client page lands in the same reserved block (affinity),
    // and its free drops the block's last reference: the injected bug
    // releases the block although the hold remains.
    let vaddr = window(0);
    alloc_checked(&mut pool, &mut machine, 0, tagged(vaddr, 0)).unwrap();
    pool.free(&mut machine, 0, vaddr).unwrap();
    let violation = pool
        .check_invariants()
        .expect_err("the released block must be noticed");
    assert!(
        matches!(
            violation.invariant,
            Invariant::Refcount | Invariant::TagsNeedStorage
        ),
        "{violation}"
    );
    report(&format!(
        "teeth: inject-release-with-hold caught by check_invariants: {violation}"
    ));
}

/// Defect 1 of the assurance issue, injected again (the evacuation cursor
/// stays put after a refusal): the regression test's scenario
/// (`behaviour.rs`,
/// `a_pinned_request_that_free_memory_can_satisfy_is_not_refused_for_ever`)
/// sees the second request refused too, so that test fails with the bug.
#[cfg(feature = "inject-stuck-evacuation-cursor")]
#[test]
fn a_stuck_evacuation_cursor_refuses_a_satisfiable_pinned_request_for_ever() {
    let layout = one_region(64, 1);
    let specs = clients(2, 256, 1000);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    let page = |client: u8, n: u64| window(client) + n * PAGE;
    for n in 0..64 {
        alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, n), 0)).unwrap();
    }
    for n in 0..8 {
        pool.pin(&mut machine, 1, page(1, n)).unwrap();
    }
    let pinned = AllocRequest {
        pinned: true,
        ..untagged(page(0, 0), 0)
    };
    let refusals = (0..5)
        .filter(|_| {
            matches!(
                alloc_checked(&mut pool, &mut machine, 0, pinned),
                Err(PoolError::NoMemory { .. })
            )
        })
        .count();
    assert_eq!(refusals, 5, "with the bug every request is refused");
    report(&format!(
        "teeth: inject-stuck-evacuation-cursor caught by the defect-1 regression scenario: {refusals} of 5 satisfiable pinned requests refused"
    ));
}
