//! `tagloan bench`: the pool's fast path, measured. Medians of repeated
//! batches, so a noisy shared machine moves the numbers less.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use tagloan_mte::{FrameTags, Pfn, TagOps};
use tagloan_pool::{
    Access, AllocRequest, ClientSpec, ClientState, Config, DeferredSlot, FrameEntry, Kernel,
    Layout, Pool, RegionSpec, Storage, TagSpec,
};

/// A machine that does nothing: the benchmark measures the pool alone.
struct NullMachine;

impl Kernel for NullMachine {
    fn map(&mut self, _: u8, _: u64, _: Pfn, _: Access) {}
    fn unmap(&mut self, _: u8, _: u64) {}
    fn copy_frame(&mut self, _: Pfn, _: Pfn) {}
    fn zero_frame(&mut self, _: Pfn) {}
}

impl TagOps for NullMachine {
    fn zero_tags(&mut self, _: Pfn) {}
    fn copy_tags(&mut self, _: Pfn, _: Pfn) {}
    fn read_tags(&mut self, _: Pfn, tags: &mut FrameTags) {
        *tags = [0; 128];
    }
    fn write_tags(&mut self, _: Pfn, _: &FrameTags) {}
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// ns per alloc+free of one order-0 page, tagged or not, on the QEMU layout.
fn fast_path(tagged: bool) -> f64 {
    let layout = Layout::new(&[RegionSpec {
        data_base: 0x80000,
        data_frames: 32768,
        tags: Some(TagSpec {
            base: 0x88000,
            frames: 1024,
            block_frames: 1,
        }),
    }])
    .expect("the QEMU layout is valid");
    let clients = [ClientSpec {
        window_base: 0x4000_0000,
        window_pages: 1024,
        quota_frames: 1024,
    }];
    let config = Config::default();
    let sizes = Pool::storage_sizes(&layout, &clients, &config);
    let mut frames = vec![FrameEntry::default(); sizes.frames];
    let mut page_map = vec![0u32; sizes.page_map];
    let mut deferred = vec![DeferredSlot::default(); sizes.deferred];
    let mut states = vec![ClientState::default(); sizes.clients];
    let storage = Storage {
        frames: &mut frames,
        page_map: &mut page_map,
        deferred: &mut deferred,
        clients: &mut states,
    };
    let mut pool = Pool::new(layout, &clients, config, storage).expect("the pool builds");
    let mut machine = NullMachine;
    let request = AllocRequest {
        vaddr: 0x4000_0000,
        order: 0,
        tagged,
        pinned: false,
        contiguous: false,
    };
    // Keep one tagged page so the block stays reserved: the measured
    // tagged path is "allocation with an already-reserved block".
    let keep = AllocRequest {
        vaddr: 0x4000_1000,
        ..request
    };
    pool.alloc(&mut machine, 0, keep).expect("a page is free");
    const BATCH: u32 = 20_000;
    let samples = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                pool.alloc(&mut machine, 0, request)
                    .expect("a page is free");
                pool.free(&mut machine, 0, request.vaddr)
                    .expect("it was allocated");
            }
            start.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    median(samples)
}

/// Runs `tagloan bench`.
pub fn bench(as_json: bool) -> Result<ExitCode, String> {
    let untagged = fast_path(false);
    let tagged = fast_path(true);
    let machine = format!(
        "{} logical CPUs, {} {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    if as_json {
        let value = json!({
            "machine": machine,
            "benchmarks": [
                {"name": "pool alloc+free order-0 untagged", "median_ns": untagged},
                {"name": "pool alloc+free order-0 tagged, block already reserved", "median_ns": tagged},
            ],
            "ratios": {"tagged_over_untagged": tagged / untagged},
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain values")
        );
    } else {
        println!("tagloan bench ({machine}; medians of 15 batches of 20,000)");
        println!("  pool alloc+free order-0 untagged                          {untagged:>8.1} ns");
        println!("  pool alloc+free order-0 tagged, block already reserved    {tagged:>8.1} ns");
        println!(
            "  ratio tagged / untagged                                   {:>8.2}",
            tagged / untagged
        );
        println!("(the DESIGN §9 baseline buddy allocator and the other rows are not built yet)");
    }
    Ok(ExitCode::SUCCESS)
}
