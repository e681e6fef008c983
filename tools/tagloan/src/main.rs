//! `tagloan`: today, a demonstration of the pool core lending tag storage and
//! recalling it, on the QEMU virt layout, in the simulated machine.
//!
//! The full command (`check`, `run`, `map`, `bench`) and the PDs are later
//! work; see the README for what is real today.

use std::process::ExitCode;

use tagloan_mte::{uniform_tags, with_pointer_tag, Tag};
use tagloan_pool::{
    AllocRequest, ClientSpec, ClientState, Config, DeferredSlot, FrameEntry, Layout, Pool,
    RegionSpec, Storage, TagSpec,
};
use tagloan_sim::SimMachine;

const PAGE: u64 = 4096;
const BULK: u8 = 0;
const HEAP: u8 = 1;
const BULK_WINDOW: u64 = 0x10_0000_0000;
const HEAP_WINDOW: u64 = 0x20_0000_0000;

/// QEMU virt: 128 MiB of data at 0x80000000, 4 MiB of tag storage at 0x88000000.
fn qemu_virt() -> Layout {
    let spec = RegionSpec {
        data_base: 0x8000_0000 / PAGE,
        data_frames: 128 << 8,
        tags: Some(TagSpec {
            base: 0x8800_0000 / PAGE,
            frames: 4 << 8,
            block_frames: 1,
        }),
    };
    Layout::new(&[spec]).expect("the built-in layout is valid")
}

fn pattern(buffer: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (buffer as u8).wrapping_mul(31).wrapping_add(i as u8) | 1;
    }
    bytes
}

fn main() -> ExitCode {
    let layout = qemu_virt();
    let clients = [
        ClientSpec {
            window_base: BULK_WINDOW,
            window_pages: 40_000,
            quota_frames: 40_000,
        },
        ClientSpec {
            window_base: HEAP_WINDOW,
            window_pages: 8192,
            quota_frames: 8192,
        },
    ];
    let config = Config::default();
    let sizes = Pool::storage_sizes(&layout, &clients, &config);
    let mut frames = vec![FrameEntry::default(); sizes.frames];
    let mut page_map = vec![0; sizes.page_map];
    let mut deferred = vec![DeferredSlot::default(); sizes.deferred];
    let mut states = vec![ClientState::default(); sizes.clients];
    let storage = Storage {
        frames: &mut frames,
        page_map: &mut page_map,
        deferred: &mut deferred,
        clients: &mut states,
    };
    let mut pool = match Pool::new(layout, &clients, config, storage) {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("tagloan: cannot build the pool: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut machine = SimMachine::new(layout);
    let mut checks = 0u64;
    let mut check = |pool: &Pool<'_>| -> Result<(), String> {
        checks += 1;
        pool.check_invariants().map_err(|v| v.to_string())
    };

    println!(
        "tagloan core demo: QEMU virt layout, 128 MiB data + 4 MiB tag storage, block size 4 KiB"
    );
    println!(
        "bookkeeping: frame table {} bytes for {} frames (8 bytes/frame), page maps {} bytes for {} window pages, {} bytes in all",
        sizes.frames * 8,
        sizes.frames,
        sizes.page_map * 4,
        sizes.page_map,
        sizes.bytes()
    );

    // 1. The bulk client fills memory with 32 KiB untagged movable buffers.
    let buffers = 4200u64;
    let mut peak_lent = 0;
    for buffer in 0..buffers {
        let vaddr = BULK_WINDOW + buffer * 8 * PAGE;
        let request = AllocRequest {
            vaddr,
            order: 3,
            tagged: false,
            pinned: false,
            contiguous: false,
        };
        if let Err(error) = pool.alloc(&mut machine, BULK, request) {
            eprintln!("tagloan: bulk allocation {buffer} failed: {error}");
            return ExitCode::FAILURE;
        }
        for page in 0..8 {
            machine
                .store(BULK, vaddr + page * PAGE, &pattern(buffer * 8 + page))
                .expect("mapped untagged");
        }
        peak_lent = peak_lent.max(pool.stats().tag_frames_lent);
        if let Err(v) = check(&pool) {
            eprintln!("tagloan: invariant violated: {v}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "bulk: {buffers} buffers of 32 KiB; tag storage frames lent as data: {}",
        pool.stats().tag_frames_lent
    );

    // 2. It frees every fourth buffer.
    for buffer in (0..buffers).step_by(4) {
        pool.free(&mut machine, BULK, BULK_WINDOW + buffer * 8 * PAGE)
            .expect("allocated above");
    }

    // 3. The heap client asks for tagged pages: the server recalls lent blocks.
    let tagged = 6000u64;
    let mut refused = 0;
    for page in 0..tagged {
        let vaddr = HEAP_WINDOW + page * PAGE;
        let request = AllocRequest {
            vaddr,
            order: 0,
            tagged: true,
            pinned: false,
            contiguous: false,
        };
        match pool.alloc(&mut machine, HEAP, request) {
            Ok(_) => {
                let tag = Tag::from_low_bits(page as u8 | 1);
                machine
                    .store_page_tags(HEAP, vaddr, &uniform_tags(tag))
                    .expect("mapped tagged");
                machine
                    .store(HEAP, with_pointer_tag(vaddr, tag), b"tagged object")
                    .expect("tags match");
            }
            Err(_) => refused += 1,
        }
        if let Err(v) = check(&pool) {
            eprintln!("tagloan: invariant violated: {v}");
            return ExitCode::FAILURE;
        }
    }

    // 4. Every surviving bulk byte must be intact after the migrations.
    let mut corrupted = 0u64;
    for buffer in (0..buffers).filter(|b| b % 4 != 0) {
        for page in 0..8 {
            let mut out = [0u8; 32];
            let vaddr = BULK_WINDOW + (buffer * 8 + page) * PAGE;
            machine.load(BULK, vaddr, &mut out).expect("still mapped");
            corrupted += out
                .iter()
                .zip(pattern(buffer * 8 + page))
                .filter(|(a, b)| **a != *b)
                .count() as u64;
        }
    }
    let stats = pool.stats();
    println!(
        "heap: {} tagged pages mapped, {refused} refused",
        tagged - refused
    );
    println!(
        "lent frames: peak {peak_lent}, final {}",
        stats.tag_frames_lent
    );
    println!(
        "recalls {}, migrations {}, bytes copied {}, tag blocks reserved {} of {}",
        stats.recalls,
        stats.migrations,
        machine.frames_copied * PAGE,
        stats.blocks_reserved,
        stats.blocks_total
    );
    println!("corrupted bytes: {corrupted}; invariant checks: {checks}, violations: 0");
    if corrupted != 0 || stats.recalls == 0 || peak_lent == 0 {
        eprintln!("tagloan: the demo did not show lending and recall with intact data");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
