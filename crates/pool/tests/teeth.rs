//! Injected bugs, each caught: a checker that cannot see a bug is no
//! checker. Each test runs only with its bug's feature, for example
//! `cargo test -p tagloan-pool --features inject-release-with-hold --test teeth`
//! (`make test` runs them all). Without a bug's feature the file is empty.
#![cfg(feature = "inject-release-with-hold")]

mod common;

use common::*;
use tagloan_pool::{Config, Invariant, Pool};
use tagloan_ram::SimMachine;

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
