//! The pool's rules, one behaviour per test (DESIGN §2–§5).

mod common;

use common::*;
use tagloan_mte::{uniform_tags, with_pointer_tag, Tag, TagOps};
use tagloan_pool::{
    AllocRequest, ArgumentRule, Config, Invariant, LendPolicy, PageState, Pool, PoolError,
    RegionSpec, Resolution, Subject, TagPlacement,
};
use tagloan_ram::{AccessFault, SimMachine};

/// 64 data frames, 2 tag frames (block size 1), 2 clients.
macro_rules! small_rig {
    ($pool:ident, $machine:ident) => {
        small_rig!($pool, $machine, Config::default());
    };
    ($pool:ident, $machine:ident, $config:expr) => {
        let layout = one_region(64, 1);
        let specs = clients(2, 256, 1000);
        let config = $config;
        let mut tables = Tables::new(&layout, &specs, &config);
        let mut $pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
        let mut $machine = SimMachine::new(layout.tag_regions());
        assert_invariants(&$pool);
    };
}

fn page(client: u8, n: u64) -> u64 {
    window(client) + n * PAGE
}

/// Fills the data pool of the small rig with untagged pages of client 1.
fn fill_data_pool(pool: &mut Pool<'_>, machine: &mut SimMachine) {
    for n in 0..64 {
        let a = alloc_checked(pool, machine, 1, untagged(page(1, n), 0)).unwrap();
        assert!(!a.in_tag_storage, "data pool first");
    }
    assert_eq!(pool.stats().data_frames_free, 0);
}

#[test]
fn untagged_data_uses_the_data_pool_first_and_then_borrows_tag_storage() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    let lent = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    assert!(lent.in_tag_storage);
    assert_eq!(pool.stats().tag_frames_lent, 1);
    assert_eq!(pool.stats().tag_frames_free, 1);
}

/// Group 0 of the small rig is data frames 0x80000..0x80020, group 1 the rest.
fn in_group_0(pfn: u64) -> bool {
    (0x80000..0x80020).contains(&pfn)
}

#[test]
fn untagged_data_takes_tag_storage_before_the_free_frames_of_a_reserved_group() {
    small_rig!(pool, machine);
    // A tagged page reserves block 0: group 0's other 31 frames are kept for
    // tagged data while any other frame is free.
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    for n in 0..32 {
        let a = alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, n), 0)).unwrap();
        assert!(!a.in_tag_storage && !in_group_0(a.first_frame), "page {n}");
    }
    let lent = alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 32), 0)).unwrap();
    assert!(lent.in_tag_storage, "tag storage before a reserved group");
    assert_eq!(pool.stats().data_frames_free, 31);
    // Only the reserved group is left.
    let last = alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 33), 0)).unwrap();
    assert!(in_group_0(last.first_frame));
    assert_invariants(&pool);
}

#[test]
fn a_tagged_page_takes_the_frame_of_an_untagged_page_moved_out_of_a_reserved_group_rather_than_reserve_a_block(
) {
    small_rig!(pool, machine);
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    // Memory full: group 1, the free tag frame, then group 0's 31 frames.
    for n in 0..64 {
        alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, n), 0)).unwrap();
        machine
            .store(1, page(1, n), &n.to_le_bytes())
            .expect("an untagged page takes stores");
    }
    assert_eq!(
        pool.stats().data_frames_free + pool.stats().tag_frames_free,
        0
    );
    // Free one page of group 1, whose block is lent: the only free frame.
    pool.free(&mut machine, 1, page(1, 5)).unwrap();
    let before = pool.stats();
    let a = alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 1), 0)).unwrap();
    let after = pool.stats();
    assert!(
        in_group_0(a.first_frame),
        "the tagged page lives in the reserved group"
    );
    assert_eq!(after.blocks_reserved, 1, "no other block reserved");
    assert_eq!(after.recalls, before.recalls, "nothing recalled");
    assert_eq!(
        after.migrations,
        before.migrations + 1,
        "one page moved out"
    );
    assert_eq!(after.tag_frames_lent, 1, "the lent frame stays lent");
    for n in (0..64).filter(|&n| n != 5) {
        let mut out = [0u8; 8];
        machine.load(1, page(1, n), &mut out).unwrap();
        assert_eq!(u64::from_le_bytes(out), n, "page {n}");
    }
    assert_invariants(&pool);
}

/// Regression (review defect 1): the swap search's cursor is a place inside
/// a group. With 4-frame blocks a group has 128 frames, twice the search's
/// 64-frame budget; with the reserved group's first 64 frames tagged, a
/// search that restarted at the group's start every time never reached the
/// movable pages past them, and every tagged request was refused although a
/// frame was free.
#[test]
fn the_swap_search_reaches_past_its_budget_in_a_group_larger_than_it() {
    let layout = one_region(384, 4);
    let specs = clients(2, 512, 1000);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    // The reserved group: the 128 data frames whose block the first tagged
    // page reserves; its first 64 frames take the 64 tagged pages.
    let first = alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    let group = 0x80000 + (first.first_frame - 0x80000) / 128 * 128;
    let in_group = |frame: u64| (group..group + 128).contains(&frame);
    for n in 0..64 {
        let a = if n == 0 {
            first
        } else {
            alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, n), 0)).unwrap()
        };
        assert!(
            (group..group + 64).contains(&a.first_frame),
            "tagged page {n} at {:#x}, not in the first 64 frames of the group at {group:#x}",
            a.first_frame
        );
    }
    assert_eq!(pool.stats().blocks_reserved, 1);
    // Untagged pages take everything else, the reserved group's last.
    let mut held = 0;
    while alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, held), 0)).is_ok() {
        held += 1;
    }
    assert_eq!(pool.stats().data_frames_free, 0);
    let movable_in_group = (0..held)
        .filter(|&n| {
            pool.query(1, page(1, n))
                .is_ok_and(|info| in_group(info.frame))
        })
        .count();
    assert_eq!(
        movable_in_group, 64,
        "64 movable pages in the reserved group"
    );
    // Round after round: free an untagged page outside the reserved group,
    // and ask for a tagged page. Each is granted within two tries (the
    // first may spend its budget on the tagged frames), by moving one of
    // the reserved group's untagged pages out, never by reserving a block.
    for round in 0..8 {
        let outside = (0..held)
            .rev()
            .find(|&n| {
                pool.query(1, page(1, n))
                    .is_ok_and(|info| !in_group(info.frame) && !info.in_tag_storage)
            })
            .expect("an untagged page outside the reserved group");
        pool.free(&mut machine, 1, page(1, outside)).unwrap();
        let granted = (0..2).any(|_| {
            alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 64 + round), 0)).is_ok()
        });
        assert!(granted, "round {round}: a tagged request refused with a frame free and movable pages in the reserved group");
        assert_eq!(
            pool.stats().blocks_reserved,
            1,
            "round {round}: no other block reserved"
        );
    }
}

#[test]
fn untagged_data_takes_a_lent_group_inside_a_free_block_that_spans_groups() {
    // 128 data frames in four 32-frame groups, one tag frame each.
    let layout = one_region(128, 1);
    let specs = clients(2, 256, 1000);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    // Fill data memory, borrow all four tag frames, return the first three:
    // only block 3 stays lent. Then free the data: one free order-7 block
    // spans the four groups, filed as lent (its worst class).
    for n in 0..128 {
        alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, n), 0)).unwrap();
    }
    for n in 0..4 {
        let a = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
        assert!(a.in_tag_storage);
    }
    for n in 0..3 {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
    }
    for n in 0..128 {
        pool.free(&mut machine, 1, page(1, n)).unwrap();
    }
    assert_eq!(pool.stats().tag_frames_lent, 1);
    // An untagged page goes to the lent group (frames 96..128), not to the
    // lowest frame of the block, whose group's block is free and cheap to
    // reserve for tags later.
    let a = alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 0), 0)).unwrap();
    assert!(
        (0x80000 + 96..0x80000 + 128).contains(&a.first_frame),
        "frame {:#x}",
        a.first_frame
    );
    // A tagged page goes to a group whose block is free, not to the lent one.
    let t = alloc_checked(&mut pool, &mut machine, 1, tagged(page(1, 1), 0)).unwrap();
    assert!(t.first_frame < 0x80000 + 96, "frame {:#x}", t.first_frame);
    assert_eq!(pool.stats().recalls, 0);
    assert_invariants(&pool);
}

#[test]
fn balanced_policy_lends_tag_storage_while_it_is_over_half_of_free_memory() {
    let config = Config {
        lend: LendPolicy::Balanced,
        ..Config::default()
    };
    small_rig!(pool, machine, config);
    // 64 data + 2 tag frames free: tag storage is not over half, so data first.
    assert!(
        !alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0))
            .unwrap()
            .in_tag_storage
    );
    for n in 1..62 {
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
    }
    // 2 data + 2 tag frames free: still not over half. Then 1 data + 2 tags: over half.
    assert!(
        !alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 62), 0))
            .unwrap()
            .in_tag_storage
    );
    assert!(
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 63), 0))
            .unwrap()
            .in_tag_storage
    );
}

#[test]
fn tagged_allocation_reserves_its_block_and_comes_with_zero_data_and_tags() {
    small_rig!(pool, machine);
    // Dirty the frame first through an untagged allocation, then free it.
    let dirty = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    machine.store(0, page(0, 0), &[0xaa; 64]).unwrap();
    pool.free(&mut machine, 0, page(0, 0)).unwrap();
    let a = alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 1), 0)).unwrap();
    assert_eq!(a.first_frame, dirty.first_frame, "the same frame is reused");
    assert!(
        machine.ram.is_zero(a.first_frame),
        "I10: data zeroed before hand-out"
    );
    assert_eq!(machine.load_page_tags(0, page(0, 1)).unwrap(), [0; 128]);
    assert_eq!(pool.stats().blocks_reserved, 1);
    assert_eq!(pool.stats().frames_tagged, 1);
    let info = pool.query(0, page(0, 1)).unwrap();
    assert_eq!(info.state, PageState::Tagged);
    assert!(!info.in_tag_storage);
}

#[test]
fn tagged_memory_never_comes_from_tag_storage() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    refused(
        &mut pool,
        &mut machine,
        PoolError::NoMemory { frames: 1 },
        |p, m| p.alloc(m, 0, tagged(page(0, 0), 0)),
    );
}

#[test]
fn freeing_the_last_tagged_frame_returns_the_block_to_the_tag_pool() {
    small_rig!(pool, machine);
    for n in 0..3 {
        alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, n), 0)).unwrap();
    }
    assert_eq!(
        pool.stats().blocks_reserved,
        1,
        "affinity: three frames share one block"
    );
    assert_eq!(pool.stats().tag_frames_free, 1);
    for n in 0..3 {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
        assert_invariants(&pool);
    }
    assert_eq!(pool.stats().blocks_reserved, 0);
    assert_eq!(pool.stats().tag_frames_free, 2);
}

/// Tag storage cleans (DESIGN §7): a block's tag frames are cleaned as it
/// is reserved, before any tag is stored, and each frame's tag lines as it
/// stops being tagged, so nothing is left to clean when the block goes back
/// to the tag pool; the machine's cache model (`tagloan-ram`) would panic
/// at a write that broke the rule.
#[test]
fn tag_storage_is_cleaned_once_per_reserved_tag_frame_and_once_per_untagging() {
    small_rig!(pool, machine);
    for n in 0..3 {
        alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, n), 0)).unwrap();
    }
    // One block of one tag frame reserved, three frames tagged.
    assert_eq!(pool.stats().tag_frames_cleaned, 1);
    assert_eq!(pool.stats().tag_lines_cleaned, 0);
    pool.disable_tagging(&mut machine, 0, page(0, 2), 1)
        .unwrap();
    for n in 0..2 {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
    }
    pool.free(&mut machine, 0, page(0, 2)).unwrap();
    assert_invariants(&pool);
    // Two frees and one disable of tagged frames; the untagged free is not.
    assert_eq!(pool.stats().tag_lines_cleaned, 3);
    assert_eq!(pool.stats().blocks_reserved, 0);
    assert_eq!(
        machine.tag_storage_cleans,
        pool.stats().tag_frames_cleaned + pool.stats().tag_lines_cleaned
    );
    // The block's tag frame is lent as data again: the cache model allows it.
    fill_data_pool(&mut pool, &mut machine);
    let lent = alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 64), 0)).unwrap();
    assert!(lent.in_tag_storage);
}

#[test]
fn recall_migrates_borrowers_and_keeps_their_data() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    // Both tag frames lent as data, with patterns.
    for n in 0..2 {
        let a = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
        assert!(a.in_tag_storage);
        machine
            .store(0, page(0, n), &[0x40 + n as u8; 256])
            .unwrap();
    }
    // Free a few data frames in the second group (frames 32..), keeping room
    // for the borrowers, then ask for tagged memory there.
    for n in 40..44 {
        pool.free(&mut machine, 1, page(1, n)).unwrap();
    }
    let copies_before = machine.frames_copied;
    let t = alloc_checked(&mut pool, &mut machine, 1, tagged(page(1, 100), 0)).unwrap();
    let stats = pool.stats();
    assert_eq!(stats.recalls, 1);
    assert_eq!(
        stats.migrations, 1,
        "only the borrower of the recalled block moves"
    );
    assert_eq!(
        machine.frames_copied - copies_before,
        1,
        "a recall copies at most block_frames pages"
    );
    assert_eq!(stats.tag_frames_lent, 1);
    assert!(!t.in_tag_storage);
    // The borrowers' data is intact at the same virtual address.
    for n in 0..2 {
        let mut out = [0u8; 256];
        machine.load(0, page(0, n), &mut out).unwrap();
        assert_eq!(out, [0x40 + n as u8; 256]);
    }
    assert_eq!(machine.load_page_tags(1, page(1, 100)).unwrap(), [0; 128]);
}

#[test]
fn a_recall_with_no_destination_fails_atomically() {
    // RFC regression: alloc_contig_range failing must leave nothing half done.
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    for n in 0..2 {
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
    }
    // One data frame free: the tagged page takes it, and the borrower of its
    // block has nowhere to go.
    pool.free(&mut machine, 1, page(1, 5)).unwrap();
    refused(
        &mut pool,
        &mut machine,
        PoolError::NoMemory { frames: 1 },
        |p, m| p.alloc(m, 1, tagged(page(1, 200), 0)),
    );
    assert_eq!(pool.stats().recalls, 0);
    assert_eq!(pool.stats().failures.no_memory, 1);
}

#[test]
fn storage_reserved_but_never_tagged_is_released_on_free() {
    // RFC regression: the free path keyed on "tagged", so a page reserved and
    // freed before use leaked its block. Here every path that reserves drops.
    small_rig!(pool, machine);
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    pool.free(&mut machine, 0, page(0, 0)).unwrap();
    // Lazy path: enable, never touch, free.
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 1), 0)).unwrap();
    pool.enable_tagging(&mut machine, 0, page(0, 1), 1).unwrap();
    pool.free(&mut machine, 0, page(0, 1)).unwrap();
    // Lazy path: enable, touch (reserves), disable, free.
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 2), 0)).unwrap();
    pool.enable_tagging(&mut machine, 0, page(0, 2), 1).unwrap();
    pool.resolve_fault(&mut machine, 0, page(0, 2)).unwrap();
    pool.disable_tagging(&mut machine, 0, page(0, 2), 1)
        .unwrap();
    assert_eq!(pool.stats().blocks_reserved, 0);
    pool.free(&mut machine, 0, page(0, 2)).unwrap();
    assert_invariants(&pool);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.blocks_reserved,
            stats.tag_frames_free,
            stats.data_frames_free
        ),
        (0, 2, 64)
    );
}

#[test]
fn block_size_above_one_reserves_exactly_the_block_of_the_group() {
    // RFC regression: order_to_num_blocks * block_size walked too many blocks.
    let layout = one_region(128, 2); // 4 tag frames, 2 blocks of 2 frames.
    let specs = clients(1, 256, 1000);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    let a = alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 5)).unwrap();
    assert_eq!(a.pages, 32);
    assert_eq!(pool.stats().blocks_reserved, 1);
    assert_eq!(
        pool.stats().tag_frames_free,
        2,
        "one block of two frames reserved, not two blocks"
    );
    pool.free(&mut machine, 0, page(0, 0)).unwrap();
    assert_invariants(&pool);
    assert_eq!(pool.stats().tag_frames_free, 4);
}

#[test]
fn lazy_tagging_faults_then_maps_tagged_with_data_kept_and_tags_zero() {
    small_rig!(pool, machine);
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    machine.store(0, page(0, 0), b"lazy data").unwrap();
    pool.enable_tagging(&mut machine, 0, page(0, 0), 1).unwrap();
    assert_invariants(&pool);
    assert_eq!(
        pool.query(0, page(0, 0)).unwrap().state,
        PageState::MetadataNone
    );
    assert_eq!(
        pool.stats().blocks_reserved,
        0,
        "no storage reserved before the first access"
    );
    let mut out = [0u8; 9];
    assert_eq!(
        machine.load(0, page(0, 0), &mut out),
        Err(AccessFault::Vm { vaddr: page(0, 0) })
    );
    let r = pool.resolve_fault(&mut machine, 0, page(0, 0) + 8).unwrap();
    assert_eq!(
        r,
        Resolution::Tagged {
            migrated: false,
            deferred_restored: false
        }
    );
    assert_invariants(&pool);
    machine.load(0, page(0, 0), &mut out).unwrap();
    assert_eq!(&out, b"lazy data");
    assert_eq!(machine.load_page_tags(0, page(0, 0)).unwrap(), [0; 128]);
    // A second fault on the same page (a race) is harmless.
    assert_eq!(
        pool.resolve_fault(&mut machine, 0, page(0, 0)).unwrap(),
        Resolution::AlreadyTagged
    );
}

#[test]
fn a_page_in_tag_storage_is_migrated_out_before_it_is_tagged() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    let lent = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    assert!(lent.in_tag_storage);
    machine.store(0, page(0, 0), b"borrowed").unwrap();
    pool.enable_tagging(&mut machine, 0, page(0, 0), 1).unwrap();
    // No data frame free: resolving needs one and fails cleanly.
    refused(
        &mut pool,
        &mut machine,
        PoolError::NoMemory { frames: 1 },
        |p, m| p.resolve_fault(m, 0, page(0, 0)),
    );
    pool.free(&mut machine, 1, page(1, 0)).unwrap();
    let r = pool.resolve_fault(&mut machine, 0, page(0, 0)).unwrap();
    assert_eq!(
        r,
        Resolution::Tagged {
            migrated: true,
            deferred_restored: false
        }
    );
    assert_invariants(&pool);
    let info = pool.query(0, page(0, 0)).unwrap();
    assert!(!info.in_tag_storage);
    assert_eq!(info.state, PageState::Tagged);
    let mut out = [0u8; 8];
    machine.load(0, page(0, 0), &mut out).unwrap();
    assert_eq!(&out, b"borrowed");
}

#[test]
fn pinning_a_borrowed_page_moves_it_out_of_tag_storage_and_pinned_never_lands_there() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    for n in 0..2 {
        assert!(
            alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0))
                .unwrap()
                .in_tag_storage
        );
    }
    machine.store(0, page(0, 0), b"pin me").unwrap();
    // Memory is full: a pinned page may not take tag storage, and nothing
    // can be evacuated to make room.
    let pinned = AllocRequest {
        pinned: true,
        ..untagged(page(0, 2), 0)
    };
    refused(
        &mut pool,
        &mut machine,
        PoolError::NoMemory { frames: 1 },
        |p, m| p.alloc(m, 0, pinned),
    );
    refused(
        &mut pool,
        &mut machine,
        PoolError::NoMemory { frames: 1 },
        |p, m| p.pin(m, 0, page(0, 0)),
    );
    pool.free(&mut machine, 1, page(1, 7)).unwrap();
    pool.pin(&mut machine, 0, page(0, 0)).unwrap();
    assert_invariants(&pool);
    let info = pool.query(0, page(0, 0)).unwrap();
    assert!(info.pinned && !info.in_tag_storage);
    let mut out = [0u8; 6];
    machine.load(0, page(0, 0), &mut out).unwrap();
    assert_eq!(&out, b"pin me");
    refused(
        &mut pool,
        &mut machine,
        PoolError::InvalidArgument {
            rule: ArgumentRule::AlreadyPinned,
            value: page(0, 0),
        },
        |p, m| p.pin(m, 0, page(0, 0)),
    );
    pool.unpin(0, page(0, 0)).unwrap();
    assert!(!pool.query(0, page(0, 0)).unwrap().pinned);
}

#[test]
fn a_pinned_request_on_a_full_data_pool_evacuates_a_movable_page_into_tag_storage() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    machine.store(1, page(1, 0), b"movable").unwrap();
    let pinned = AllocRequest {
        pinned: true,
        ..untagged(page(0, 0), 0)
    };
    let a = alloc_checked(&mut pool, &mut machine, 0, pinned).unwrap();
    assert!(!a.in_tag_storage);
    assert_eq!(
        pool.stats().tag_frames_lent,
        1,
        "the evacuated page went to tag storage"
    );
    let mut out = [0u8; 7];
    machine.load(1, page(1, 0), &mut out).unwrap();
    assert_eq!(&out, b"movable");
}

#[test]
fn a_pinned_request_that_free_memory_can_satisfy_is_not_refused_for_ever() {
    // Defect 1 of the assurance issue: the evacuation cursor only moved on
    // success, so after the first refusal every request examined the same
    // candidate ranges (frames 0 to 7, all pinned) and was refused again.
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    for n in 0..8 {
        pool.pin(&mut machine, 1, page(1, n)).unwrap();
    }
    assert_invariants(&pool);
    let pinned = AllocRequest {
        pinned: true,
        ..untagged(page(0, 0), 0)
    };
    let first = alloc_checked(&mut pool, &mut machine, 0, pinned);
    assert!(
        matches!(first, Err(PoolError::NoMemory { .. })),
        "the first candidates are all pinned: {first:?}"
    );
    // The frames 8 to 63 are movable and tag storage has room for one: the
    // next request must look past the pinned ones.
    let second = alloc_checked(&mut pool, &mut machine, 0, pinned);
    assert!(second.is_ok(), "refused again: {second:?}");
}

#[test]
/// The branch in which the evacuated tagged page finds a free frame in a
/// reserved group and keeps its tags mapped: nothing is parked. The other
/// branch (no such frame: the tags park until the next fault) is
/// `an_evacuated_tagged_page_parks_its_tags_when_no_reserved_frame_is_free`.
fn a_contiguous_request_evacuates_a_range_and_a_tagged_page_moves_with_its_tags_to_a_reserved_frame(
) {
    small_rig!(pool, machine);
    // Fragment the data pool: every other frame taken, some of them tagged.
    for n in 0..64 {
        let request = if n % 8 == 0 {
            tagged(page(0, n), 0)
        } else {
            untagged(page(0, n), 0)
        };
        alloc_checked(&mut pool, &mut machine, 0, request).unwrap();
    }
    let marker = uniform_tags(Tag::from_low_bits(0x9));
    machine.store_page_tags(0, page(0, 0), &marker).unwrap();
    machine
        .store(
            0,
            with_pointer_tag(page(0, 0), Tag::from_low_bits(9)),
            b"tagged data",
        )
        .unwrap();
    for n in (1..64).step_by(2) {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
    }
    assert_invariants(&pool);
    // No free order-3 block exists; a contiguous pinned order-3 request
    // evacuates the first aligned range. Frame 0's group keeps its block
    // reserved (frames 8, 16, ... are tagged) and has free frames, so the
    // evacuated tagged page moves to one of them, tags and all.
    let request = AllocRequest {
        vaddr: page(1, 0),
        order: 3,
        tagged: false,
        pinned: true,
        contiguous: true,
    };
    let a = alloc_checked(&mut pool, &mut machine, 1, request).unwrap();
    assert_eq!(a.pages, 8);
    let info = pool.query(0, page(0, 0)).unwrap();
    assert_eq!(
        info.state,
        PageState::Tagged,
        "moved to a reserved block with its tags"
    );
    assert!(!info.deferred_tags);
    assert_eq!(pool.stats().deferred_parked, 0, "nothing parked");
    assert!(pool.stats().migrations >= 1, "the page moved");
    assert_eq!(machine.load_page_tags(0, page(0, 0)).unwrap(), marker);
    let mut out = [0u8; 11];
    machine
        .load(
            0,
            with_pointer_tag(page(0, 0), Tag::from_low_bits(9)),
            &mut out,
        )
        .unwrap();
    assert_eq!(&out, b"tagged data");
}

#[test]
fn an_evacuated_tagged_page_parks_its_tags_when_no_reserved_frame_is_free() {
    small_rig!(pool, machine);
    // Group 0 (frames 0..32): one tagged page at frame 0, the rest untagged.
    // Untagged pages take group 0's frames last (after group 1 and the free
    // tag frame), so memory is filled: 64 untagged pages.
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    for n in 1..65 {
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
    }
    assert_eq!(
        pool.stats().data_frames_free + pool.stats().tag_frames_free,
        0
    );
    machine
        .store_page_tags(0, page(0, 0), &uniform_tags(Tag::from_low_bits(6)))
        .unwrap();
    // Free single frames only in group 1 (odd frames: no order-1 block forms),
    // so the tagged page's destination block is not reserved.
    for n in (1..15).step_by(2) {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
    }
    let request = AllocRequest {
        vaddr: page(1, 0),
        order: 1,
        tagged: false,
        pinned: true,
        contiguous: true,
    };
    alloc_checked(&mut pool, &mut machine, 1, request).unwrap();
    let info = pool.query(0, page(0, 0)).unwrap();
    assert_eq!(info.state, PageState::MetadataNone);
    assert!(info.deferred_tags);
    assert_eq!(pool.stats().deferred_parked, 1);
    assert_eq!(pool.stats().frames_tagged, 0);
    assert_eq!(
        pool.stats().blocks_reserved,
        0,
        "the old block was released"
    );
    let r = pool.resolve_fault(&mut machine, 0, page(0, 0)).unwrap();
    assert_eq!(
        r,
        Resolution::Tagged {
            migrated: false,
            deferred_restored: true
        }
    );
    assert_invariants(&pool);
    assert_eq!(
        machine.load_page_tags(0, page(0, 0)).unwrap(),
        uniform_tags(Tag::from_low_bits(6))
    );
}

#[test]
fn a_full_deferred_store_makes_evacuation_fail_cleanly() {
    small_rig!(
        pool,
        machine,
        Config {
            deferred_slots: 0,
            ..Config::default()
        }
    );
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    for n in 1..64 {
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
    }
    for n in (1..64).step_by(2) {
        pool.free(&mut machine, 0, page(0, n)).unwrap();
    }
    // Every order-1 range holds a used frame; those holding the tagged page
    // cannot move it (no slot), the others can. So evacuation picks another
    // range: the tagged page is never in a range that is chosen.
    let request = AllocRequest {
        vaddr: page(1, 0),
        order: 1,
        tagged: false,
        pinned: true,
        contiguous: true,
    };
    alloc_checked(&mut pool, &mut machine, 1, request).unwrap();
    assert_eq!(pool.query(0, page(0, 0)).unwrap().state, PageState::Tagged);
    assert_eq!(pool.stats().deferred_parked, 0);
}

#[test]
fn reclaim_returns_every_frame_of_a_client() {
    small_rig!(pool, machine);
    let before = pool.stats();
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 2)).unwrap();
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 8), 3)).unwrap();
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 20), 0)).unwrap();
    pool.enable_tagging(&mut machine, 0, page(0, 20), 1)
        .unwrap();
    alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 0), 0)).unwrap();
    assert_eq!(pool.reclaim_client(&mut machine, 0).unwrap(), 4 + 8 + 1);
    assert_invariants(&pool);
    assert_eq!(pool.client(0).unwrap().frames_used(), 0);
    assert_eq!(pool.stats().data_frames_free, before.data_frames_free - 1);
    assert_eq!(pool.stats().blocks_reserved, 0);
    assert_eq!(
        machine.mapping_count(),
        1,
        "only client 1's page is still mapped"
    );
}

#[test]
fn every_bad_request_gets_its_typed_error_and_changes_nothing() {
    let layout = one_region(64, 1);
    let specs = clients(2, 16, 8);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 1)).unwrap();
    alloc_checked(&mut pool, &mut machine, 1, untagged(page(1, 0), 0)).unwrap();
    let m = &mut machine;
    let p = &mut pool;
    let invalid = |rule, value| PoolError::InvalidArgument { rule, value };
    refused(p, m, invalid(ArgumentRule::OrderTooLarge, 10), |p, m| {
        p.alloc(m, 0, untagged(page(0, 4), 10))
    });
    refused(
        p,
        m,
        invalid(ArgumentRule::Misaligned, page(0, 4) + 1),
        |p, m| p.alloc(m, 0, untagged(page(0, 4) + 1, 0)),
    );
    refused(
        p,
        m,
        invalid(ArgumentRule::OutsideWindow, page(0, 16)),
        |p, m| p.alloc(m, 0, untagged(page(0, 16), 0)),
    );
    refused(
        p,
        m,
        invalid(ArgumentRule::OutsideWindow, page(0, 12)),
        |p, m| p.alloc(m, 0, untagged(page(0, 12), 3)),
    );
    refused(
        p,
        m,
        invalid(ArgumentRule::OutsideWindow, 0x1000),
        |p, m| p.alloc(m, 0, untagged(0x1000, 0)),
    );
    refused(p, m, invalid(ArgumentRule::UnknownClient, 7), |p, m| {
        p.alloc(m, 7, untagged(page(0, 4), 0))
    });
    refused(
        p,
        m,
        PoolError::NotOwner {
            client: 0,
            vaddr: page(1, 0),
            owner: 1,
        },
        |p, m| p.free(m, 0, page(1, 0)),
    );
    refused(
        p,
        m,
        PoolError::NotOwner {
            client: 0,
            vaddr: page(1, 0),
            owner: 1,
        },
        |p, m| p.enable_tagging(m, 0, page(1, 0), 1),
    );
    refused(
        p,
        m,
        PoolError::NotOwner {
            client: 0,
            vaddr: page(1, 0),
            owner: 1,
        },
        |p, m| p.pin(m, 0, page(1, 0)),
    );
    refused(
        p,
        m,
        PoolError::AlreadyMapped { vaddr: page(0, 0) },
        |p, m| p.alloc(m, 0, untagged(page(0, 0), 2)),
    );
    refused(p, m, PoolError::NotMapped { vaddr: page(0, 5) }, |p, m| {
        p.free(m, 0, page(0, 5))
    });
    refused(
        p,
        m,
        invalid(ArgumentRule::NotAllocationHead, page(0, 1)),
        |p, m| p.free(m, 0, page(0, 1)),
    );
    refused(p, m, PoolError::NotMapped { vaddr: page(0, 2) }, |p, m| {
        p.enable_tagging(m, 0, page(0, 0), 3)
    });
    refused(p, m, invalid(ArgumentRule::BadPageCount, 0), |p, m| {
        p.enable_tagging(m, 0, page(0, 0), 0)
    });
    refused(
        p,
        m,
        invalid(ArgumentRule::NotAwaitingTags, page(0, 0)),
        |p, m| p.resolve_fault(m, 0, page(0, 0)),
    );
    refused(
        p,
        m,
        invalid(ArgumentRule::NotPinned, page(0, 0)),
        |p, _| p.unpin(0, page(0, 0)),
    );
    refused(
        p,
        m,
        PoolError::OutOfQuota {
            client: 0,
            used: 2,
            requested: 8,
            quota: 8,
        },
        |p, m| p.alloc(m, 0, untagged(page(0, 8), 3)),
    );
    // Double free: the second is refused.
    p.free(m, 0, page(0, 0)).unwrap();
    refused(p, m, PoolError::NotMapped { vaddr: page(0, 0) }, |p, m| {
        p.free(m, 0, page(0, 0))
    });
    assert_eq!(p.stats().failures.total(), 18, "{:?}", p.stats().failures);
}

#[test]
fn without_tag_storage_tagged_requests_are_unsupported_and_untagged_ones_work() {
    // MTE off: the platform turns tag storage into plain data memory.
    let layout = tagloan_pool::Layout::new(&[
        RegionSpec {
            data_base: 0x80000,
            data_frames: 64,
            tags: None,
        },
        RegionSpec {
            data_base: 0x88000,
            data_frames: 2,
            tags: None,
        },
    ])
    .unwrap();
    let specs = clients(1, 256, 1000);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut machine = SimMachine::new(layout.tag_regions());
    refused(&mut pool, &mut machine, PoolError::Unsupported, |p, m| {
        p.alloc(m, 0, tagged(page(0, 0), 0))
    });
    for n in 0..66 {
        alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, n), 0)).unwrap();
    }
    refused(&mut pool, &mut machine, PoolError::Unsupported, |p, m| {
        p.enable_tagging(m, 0, page(0, 0), 1)
    });
    assert_eq!(pool.stats().data_frames_free, 0);
}

#[test]
fn the_server_frame_for_the_mte_probe_holds_its_block_for_ever() {
    small_rig!(pool, machine);
    let scratch = pool.take_server_frame(&mut machine, true).unwrap();
    assert_invariants(&pool);
    machine.write_tags(scratch, &uniform_tags(Tag::from_low_bits(0xc)));
    assert_eq!(pool.stats().blocks_reserved, 1);
    // A tagged client page in the same group, freed: the block stays reserved.
    alloc_checked(&mut pool, &mut machine, 0, tagged(page(0, 0), 0)).unwrap();
    pool.free(&mut machine, 0, page(0, 0)).unwrap();
    assert_invariants(&pool);
    assert_eq!(pool.stats().blocks_reserved, 1);
}

#[test]
fn tag_block_affinity_packs_1000_scattered_tagged_frames_into_few_blocks() {
    let mut reserved = [0u32; 2];
    for (slot, placement) in [TagPlacement::Affinity, TagPlacement::AnyPage]
        .into_iter()
        .enumerate()
    {
        let layout = qemu_virt();
        let specs = clients(2, 8192, 8192);
        let config = Config {
            placement,
            ..Config::default()
        };
        let mut tables = Tables::new(&layout, &specs, &config);
        let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
        let mut machine = SimMachine::new(layout.tag_regions());
        // Tagged requests interleaved with untagged ones, as a heap and a
        // bulk client would issue them.
        for n in 0..1000u64 {
            pool.alloc(&mut machine, 0, tagged(page(0, n), 0)).unwrap();
            for k in 0..3 {
                pool.alloc(&mut machine, 1, untagged(page(1, n * 3 + k), 0))
                    .unwrap();
            }
        }
        assert_invariants(&pool);
        assert_eq!(pool.stats().frames_tagged, 1000);
        reserved[slot] = pool.stats().blocks_reserved;
    }
    report(&format!(
        "tag-block affinity: 1000 tagged order-0 frames reserve {} blocks with affinity, {} placed on any free page (RFC)",
        reserved[0], reserved[1]
    ));
    assert!(
        reserved[0] <= 1000u32.div_ceil(32) + 1,
        "affinity reserved {} blocks",
        reserved[0]
    );
    assert!(
        reserved[1] > 2 * reserved[0],
        "any-page placement should scatter: {}",
        reserved[1]
    );
}

#[test]
fn the_untagged_fast_path_does_bounded_work() {
    small_rig!(pool, machine);
    // Warm up so the path is the steady state, not the first split of 2 MiB.
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 1), 0)).unwrap();
    pool.alloc(&mut machine, 0, untagged(page(0, 2), 0))
        .unwrap();
    let work = pool.last_work();
    assert!(work.splits <= 9 && work.merges == 0, "{work:?}");
    assert_eq!(
        (work.pages_copied, work.pages_zeroed, work.tag_writes),
        (0, 1, 0)
    );
    pool.free(&mut machine, 0, page(0, 2)).unwrap();
    let work = pool.last_work();
    assert!(work.merges <= 9 && work.splits == 0, "{work:?}");
    assert_eq!(
        work.frames_scanned, 1,
        "the data-pool fast path reads the state of the one block it files under"
    );
}

#[test]
fn a_recall_does_bounded_work() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 1), 0)).unwrap();
    for n in 0..4 {
        pool.free(&mut machine, 1, page(1, n)).unwrap();
    }
    alloc_checked(&mut pool, &mut machine, 1, tagged(page(1, 100), 0)).unwrap();
    let work = pool.last_work();
    // block_frames = 1, group = 32 frames: one copy, one zero, one tag write,
    // and a refile of at most a group per changed block (two blocks touched:
    // the recalled one and the one the borrower is not moved into).
    assert_eq!(work.pages_copied, 1, "{work:?}");
    assert_eq!((work.pages_zeroed, work.tag_writes), (1, 1));
    assert!(work.frames_scanned <= 3 * 32 + 2 * 8, "{work:?}");
    assert!(work.splits <= 2 * 9 && work.merges <= 9, "{work:?}");
}

#[test]
fn pinning_a_page_awaiting_tags_keeps_it_taggable() {
    small_rig!(pool, machine);
    fill_data_pool(&mut pool, &mut machine);
    let lent = alloc_checked(&mut pool, &mut machine, 0, untagged(page(0, 0), 0)).unwrap();
    assert!(lent.in_tag_storage);
    pool.enable_tagging(&mut machine, 0, page(0, 0), 1).unwrap();
    pool.free(&mut machine, 1, page(1, 3)).unwrap();
    pool.pin(&mut machine, 0, page(0, 0)).unwrap();
    assert_invariants(&pool);
    let info = pool.query(0, page(0, 0)).unwrap();
    assert!(info.pinned && !info.in_tag_storage && info.state == PageState::MetadataNone);
    // The fault that follows can be resolved: the page sits in taggable memory.
    assert_eq!(
        pool.resolve_fault(&mut machine, 0, page(0, 0)).unwrap(),
        Resolution::Tagged {
            migrated: false,
            deferred_restored: false
        }
    );
    assert_invariants(&pool);
}

/// The mapped-page bits that reclaim follows are checked against the page
/// map: a page bit cleared, a page bit set for an unmapped page, a summary
/// bit out of step with its word, and a summary bit past the window's last
/// word (which would lead reclaim into the next client's bits) are each
/// reported, and the tables as the pool left them pass.
#[test]
fn check_invariants_reports_mapped_page_bits_out_of_step_with_the_page_map() {
    let layout = one_region(4096, 1);
    // 100 pages: two page words, one summary word with two bits in use.
    let specs = clients(2, 100, 64);
    let config = Config::default();
    let mut tables = Tables::new(&layout, &specs, &config);
    let header = {
        let mut pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
        pool.alloc(&mut NoMachine, 0, untagged(window(0) + 70 * PAGE, 0))
            .unwrap();
        pool.alloc(&mut NoMachine, 1, untagged(window(1), 0))
            .unwrap();
        assert_invariants(&pool);
        pool.header()
    };
    // Client 0's words: summary at 0, page words at 1 and 2.
    assert_eq!(tables.map_bits[..3], [0b10, 0, 1 << 6]);
    let corruptions: [(&str, usize, u64); 4] = [
        ("page bit cleared", 2, 0),
        ("page bit of an unmapped page", 1, 1),
        ("summary bit of an empty word", 0, 0b11),
        ("summary bit past the last word", 0, 0b110),
    ];
    for (what, word, value) in corruptions {
        let mut copy = tables.clone();
        copy.map_bits[word] = value;
        let pool = Pool::resume(header, copy.storage()).unwrap();
        let violation = pool.check_invariants().expect_err(what);
        assert_eq!(
            violation.invariant,
            Invariant::Accounting,
            "{what}: {violation}"
        );
        assert_eq!(violation.subject, Subject::Client(0), "{what}: {violation}");
    }
    let pool = Pool::resume(header, tables.storage()).unwrap();
    assert_invariants(&pool);
}
