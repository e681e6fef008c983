//! `tagloan bench`: the pool's fast path, how much tag storage it lends
//! under a 10 %-tagged fill (affinity against the RFC's any-page placement),
//! and the simulator's PPC rate. Timings are medians of repeated batches, so
//! a noisy shared machine moves the numbers less; the lending rows are
//! counts.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use tagloan_mte::{FrameTags, Pfn, TagOps};
use tagloan_pool::{
    Access, AllocRequest, ClientSpec, ClientState, Config, DeferredSlot, FrameEntry, Kernel,
    Layout, Pool, RegionSpec, Storage, TagPlacement, TagSpec,
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

/// The QEMU virt layout of `platforms/qemu-virt-mte.dts`.
fn qemu_layout() -> Layout {
    Layout::new(&[RegionSpec {
        data_base: 0x80000,
        data_frames: 32768,
        tags: Some(TagSpec {
            base: 0x88000,
            frames: 1024,
            block_frames: 1,
        }),
    }])
    .expect("the QEMU layout is valid")
}

/// One client at 0x4000_0000 with `pages` pages of window and quota.
fn one_client(pages: u32) -> [ClientSpec; 1] {
    [ClientSpec {
        window_base: 0x4000_0000,
        window_pages: pages,
        quota_frames: pages,
    }]
}

/// A pool's tables, owned, sized for a layout and its clients.
struct Tables {
    frames: Vec<FrameEntry>,
    page_map: Vec<u32>,
    deferred: Vec<DeferredSlot>,
    states: Vec<ClientState>,
}

impl Tables {
    fn new(layout: &Layout, clients: &[ClientSpec], config: &Config) -> Tables {
        let sizes = Pool::storage_sizes(layout, clients, config);
        Tables {
            frames: vec![FrameEntry::default(); sizes.frames],
            page_map: vec![0u32; sizes.page_map],
            deferred: vec![DeferredSlot::default(); sizes.deferred],
            states: vec![ClientState::default(); sizes.clients],
        }
    }

    fn pool(&mut self, layout: Layout, clients: &[ClientSpec], config: Config) -> Pool<'_> {
        let storage = Storage {
            frames: &mut self.frames,
            page_map: &mut self.page_map,
            deferred: &mut self.deferred,
            clients: &mut self.states,
        };
        Pool::new(layout, clients, config, storage).expect("the pool builds")
    }
}

fn request(tagged: bool) -> AllocRequest {
    AllocRequest {
        vaddr: 0x4000_0000,
        order: 0,
        tagged,
        pinned: false,
        contiguous: false,
    }
}

/// Nanoseconds per alloc+free of one order-0 page at 0x4000_0000.
fn batch(pool: &mut Pool<'_>, tagged: bool) -> f64 {
    const BATCH: u32 = 20_000;
    let mut machine = NullMachine;
    let start = Instant::now();
    for _ in 0..BATCH {
        pool.alloc(&mut machine, 0, request(tagged))
            .expect("a page is free");
        pool.free(&mut machine, 0, 0x4000_0000)
            .expect("it was allocated");
    }
    start.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

/// ns per alloc+free of one order-0 page, untagged and tagged (the tagged
/// pool holds another tagged page, so the block is already reserved), and
/// the median of the per-round ratios. The batches alternate,
/// so drift on a shared machine hits both.
fn fast_path() -> (f64, f64, f64) {
    let (layout, clients, config) = (qemu_layout(), one_client(1024), Config::default());
    let mut plain_tables = Tables::new(&layout, &clients, &config);
    let mut tagged_tables = Tables::new(&layout, &clients, &config);
    let mut plain = plain_tables.pool(layout, &clients, config);
    let mut with_tags = tagged_tables.pool(layout, &clients, config);
    // Each pool holds one other page, of the kind it measures: neither pays
    // a split from order 9 and a merge back on every operation, and the
    // tagged one's block stays reserved.
    for (pool, tagged) in [(&mut plain, false), (&mut with_tags, true)] {
        let keep = AllocRequest {
            vaddr: 0x4000_1000,
            ..request(tagged)
        };
        pool.alloc(&mut NullMachine, 0, keep)
            .expect("a page is free");
    }
    let (mut untagged, mut tagged, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        let u = batch(&mut plain, false);
        let t = batch(&mut with_tags, true);
        untagged.push(u);
        tagged.push(t);
        ratios.push(t / u);
    }
    (median(untagged), median(tagged), median(ratios))
}

/// What a fill of memory with 10 % tagged pages left lent.
struct Lending {
    lent: u64,
    /// Tag storage frames not needed for tags: the most that can be lent.
    possible: u64,
    tagged: u64,
    blocks_reserved: u64,
}

/// Fills the QEMU layout with order-0 pages, one in ten tagged (a seeded
/// choice), until an untagged page no longer fits (tagged ones that do not
/// fit are skipped); then reports how much tag storage is lent against the
/// most that could be: every tag frame but one block per 32 tagged pages
/// (the fewest blocks those tags can live in).
fn lending(placement: TagPlacement) -> Lending {
    let (layout, clients) = (qemu_layout(), one_client(40_000));
    let config = Config {
        placement,
        ..Config::default()
    };
    let mut tables = Tables::new(&layout, &clients, &config);
    let mut pool = tables.pool(layout, &clients, config);
    let mut machine = NullMachine;
    let mut seed = 0x7a91_u64;
    let mut tagged = 0u64;
    for page in 0..40_000u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let is_tagged = seed.is_multiple_of(10);
        let request = AllocRequest {
            vaddr: 0x4000_0000 + page * 4096,
            order: 0,
            tagged: is_tagged,
            pinned: false,
            contiguous: false,
        };
        match pool.alloc(&mut machine, 0, request) {
            Ok(_) => tagged += u64::from(is_tagged),
            // Tagged data cannot live in tag storage: once data memory is
            // full, tagged requests fail while untagged ones still borrow.
            Err(_) if is_tagged => continue,
            Err(_) => break,
        }
    }
    let stats = pool.stats();
    let group = 32 * u64::from(layout.block_frames(0));
    Lending {
        lent: u64::from(stats.tag_frames_lent),
        possible: u64::from(stats.tag_frames_total) - tagged.div_ceil(group),
        tagged,
        blocks_reserved: u64::from(stats.blocks_reserved),
    }
}

/// A client that makes `calls` `stats` PPCs in one unit of work.
struct Caller {
    calls: u32,
}

impl tagloan_client::Worker for Caller {
    fn start(&mut self, _env: &mut dyn tagloan_client::Env) {}
    fn step(
        &mut self,
        env: &mut dyn tagloan_client::Env,
    ) -> Result<tagloan_client::Progress, tagloan_client::Stopped> {
        let server = tagloan_client::Server::for_client();
        for _ in 0..self.calls {
            if tagloan_client::Api::stats(&server, env)?.is_err() {
                return Err(tagloan_client::Stopped);
            }
        }
        Ok(tagloan_client::Progress::Done)
    }
    fn counters(&self, _report: &mut dyn FnMut(&str, u64)) {}
}

/// Client PPCs per second through the simulator: a client calls `stats` on
/// the real memory server of system.xml, the invariant audit off.
fn simulator_ppcs() -> Result<f64, String> {
    const CALLS: u32 = 200_000;
    let options = tagloan_scenarios::Options {
        sdf: "system.xml".into(),
        search_path: vec!["target/platforms".into()],
        ..tagloan_scenarios::Options::default()
    };
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut registry = tagloan_scenarios::registry(tagloan_scenarios::Plans::default());
        registry.register_handler("client_bulk", || {
            tagloan_client::Paced::new(Caller { calls: CALLS })
        });
        let config = tagloan_sim::Config {
            audit_every_call: false,
            search_path: options.search_path.clone(),
            ..tagloan_sim::Config::default()
        };
        let mut sim =
            tagloan_sim::Sim::load(&options.sdf, &registry, config).map_err(|e| e.to_string())?;
        let start = Instant::now();
        sim.run(u64::MAX);
        let elapsed = start.elapsed().as_secs_f64();
        if sim.summary().calls < u64::from(CALLS) {
            return Err(format!(
                "the simulator ran {} calls of {CALLS}",
                sim.summary().calls
            ));
        }
        samples.push(sim.summary().calls as f64 / elapsed);
    }
    Ok(median(samples))
}

/// Runs `tagloan bench`.
pub fn bench(as_json: bool) -> Result<ExitCode, String> {
    let (untagged, tagged, ratio) = fast_path();
    let affinity = lending(TagPlacement::Affinity);
    let any_page = lending(TagPlacement::AnyPage);
    let share = |l: &Lending| 100.0 * l.lent as f64 / l.possible.max(1) as f64;
    // The simulator row needs system.xml and its DTB (make platforms);
    // without them the pool rows are still printed.
    let ppcs = simulator_ppcs();
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
                {"name": "tag storage lent, memory full, 10 % tagged, affinity", "lent": affinity.lent, "possible": affinity.possible, "percent": share(&affinity), "tagged_pages": affinity.tagged, "blocks_reserved": affinity.blocks_reserved},
                {"name": "tag storage lent, memory full, 10 % tagged, any page (RFC)", "lent": any_page.lent, "possible": any_page.possible, "percent": share(&any_page), "tagged_pages": any_page.tagged, "blocks_reserved": any_page.blocks_reserved},
                match &ppcs {
                    Ok(rate) => json!({"name": "simulator client PPCs per second (stats, audit off)", "median_per_second": rate}),
                    Err(e) => json!({"name": "simulator client PPCs per second (stats, audit off)", "error": e}),
                },
            ],
            "ratios": {"tagged_over_untagged": ratio},
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain values")
        );
    } else {
        println!("tagloan bench ({machine}; medians of 15 alternating batches of 20,000)");
        println!("  pool alloc+free order-0 untagged                          {untagged:>8.1} ns");
        println!("  pool alloc+free order-0 tagged, block already reserved    {tagged:>8.1} ns");
        println!(
            "  ratio tagged / untagged                                   {:>8.2}",
            ratio
        );
        for (name, l) in [("affinity", &affinity), ("any page (RFC)", &any_page)] {
            println!(
                "  tag storage lent, memory full, 10 % tagged, {name:<15} {:>5.1} %  ({} of {} frames; {} tagged pages in {} reserved blocks)",
                share(l),
                l.lent,
                l.possible,
                l.tagged,
                l.blocks_reserved
            );
        }
        match &ppcs {
            Ok(rate) => println!(
                "  simulator: client PPCs per second (stats, audit off)      {rate:>8.0}  (median of 5 runs of 200,000)"
            ),
            Err(e) => println!("  simulator: client PPCs per second: FAILED: {e}"),
        }
        println!("(the DESIGN §9 baseline buddy allocator and the other rows are not built yet)");
    }
    Ok(if ppcs.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
