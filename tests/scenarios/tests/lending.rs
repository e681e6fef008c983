//! Lending: the data pool fills, untagged data spills into tag storage, and
//! a tagged burst recalls it; the borrowers' data survives the migration.
//! Then contiguous requests have the lazy client's tagged pages evacuated:
//! their tags are copied or parked, and come back intact.

use tagloan_mte::{FRAME_BYTES, TAG_BYTES_PER_FRAME};
use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{run, Options, Run, Scenario};

#[test]
fn a_full_data_pool_lends_tag_storage_and_a_tagged_burst_recalls_it_intact() {
    let r = run(Scenario::Lending, &Options::default()).unwrap();
    report(&r.one_line());
    assert_sound(&r);
    assert_no_leak(&r);
    assert!(r.client_counter("client_bulk", "allocated_in_tag_storage") > 0);
    assert!(r.lent_peak > 0, "tag storage frames used as data");
    assert!(r.recalls > 0, "recalls");
    assert!(r.migrations > 0, "migrations");
    assert!(r.bytes_copied >= r.migrations * FRAME_BYTES as u64);
    // Every bulk page was verified after the burst, byte for byte.
    assert!(r.client_counter("client_bulk", "pages_verified") > 64 * 512);
    assert_eq!(
        r.client_counter("client_lazy", "pages_tagged_lazily"),
        12 * 4
    );
    // The squeeze: the last contiguous buffer evacuates the lazy client's
    // tagged pages, which it then reads back through their own pointers,
    // the parked ones after a fault that restores their tags.
    assert_eq!(r.client_counter("client_bulk", "squeezed"), 8);
    assert_eq!(r.client_counter("client_lazy", "pages_rechecked"), 12 * 4);
    assert!(r.client_counter("client_lazy", "pages_moved") > 0);
    assert!(r.client_counter("client_lazy", "pages_parked") > 0);
    assert_eq!(r.corrupted_bytes, 0);
}

/// Tags live physically in the tag storage frames of simulated RAM: when a
/// tag frame is lent as data, what the borrower writes there *is* the tags
/// of the data frames that frame covers.
#[test]
fn writing_a_lent_tag_frame_changes_the_tags_of_the_data_frames_it_covers() {
    let options = Options::default();
    let mut run = Run::start("lending", Scenario::Lending.plans(1), &options).unwrap();
    while run.sim.audit().counter("memory_server", "tag_frames_lent") == 0 {
        assert!(run.advance(1000), "the system went idle before lending");
    }
    // Let the bulk client write its patterns into the buffer it was lent.
    run.advance(50_000);
    let system = run.sim.system().unwrap().clone();
    let (bulk, entry) = system.table.by_name("client_bulk").unwrap();
    let layout = system.platform.layout;
    let machine = run.sim.machine().unwrap();
    let mut checked = 0;
    for page in 0..u64::from(entry.window_pages) {
        let vaddr = entry.window_base + page * FRAME_BYTES as u64;
        let Some((pfn, _)) = machine.mapping(bulk, vaddr) else {
            continue;
        };
        let index = layout.index_of_pfn(pfn).unwrap();
        if layout.locate(index).unwrap().pool != tagloan_pool::PoolKind::Tag {
            continue;
        }
        // This page is a lent tag frame. Its first 128 bytes are the tags
        // of the first data frame of the group it covers.
        let mut data = [0u8; TAG_BYTES_PER_FRAME];
        machine.ram.read(pfn, 0, &mut data);
        let covered = layout
            .block_data_frames(layout.tag_block(index).unwrap())
            .start;
        let mut tags = [0u8; TAG_BYTES_PER_FRAME];
        machine.read_frame_tags(layout.pfn(covered).unwrap(), &mut tags);
        assert_eq!(data, tags);
        assert_ne!(
            tags, [0; TAG_BYTES_PER_FRAME],
            "the borrower's pattern is there"
        );
        checked += 1;
    }
    assert!(checked > 0, "no bulk page lives in tag storage");
    tagloan_scenario_tests::report(&format!(
        "tags-in-tag-storage: {checked} lent tag frames written as data; each one's bytes are the tags of the data frames it covers"
    ));
}
