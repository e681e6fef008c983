//! What the benchmarks run on: machines that do nothing or only copy, the
//! pool's tables owned in `Vec`s, pool states frozen to start each sample
//! from, and the timing helpers (medians, alternating batches).

use std::time::Instant;

use tagloan_mte::{FrameTags, Pfn, TagOps};
use tagloan_pool::{
    Access, AllocRequest, BlockState, ClientSpec, ClientState, Config, DeferredSlot, FrameEntry,
    Kernel, Layout, Pool, PoolHeader, RegionSpec, Storage, TagSpec,
};

/// The first page of the one client's window.
pub const WINDOW: u64 = 0x4000_0000;
pub const PAGE: u64 = 4096;

/// A machine that does nothing: the pool's bookkeeping alone.
pub struct NullMachine;

impl Kernel for NullMachine {
    fn map(&mut self, _: u8, _: u64, _: Pfn, _: Access) {}
    fn unmap(&mut self, _: u8, _: u64) {}
    fn copy_frame(&mut self, _: Pfn, _: Pfn) {}
    fn zero_frame(&mut self, _: Pfn) {}
    fn read_frame(&mut self, _: Pfn, _: usize, bytes: &mut [u8]) {
        bytes.fill(0);
    }
}

impl TagOps for NullMachine {
    fn zero_tags(&mut self, _: Pfn) {}
    fn copy_tags(&mut self, _: Pfn, _: Pfn) {}
    fn read_tags(&mut self, _: Pfn, tags: &mut FrameTags) {
        *tags = [0; 128];
    }
    fn write_tags(&mut self, _: Pfn, _: &FrameTags) {}
    fn clean_for_tags(&mut self, _: Pfn) {}
    fn clean_tags(&mut self, _: Pfn) {}
}

/// Frames of [`CopyMachine`]'s ring.
const RING: usize = 64;

/// A machine whose page copies and zeroing are real 4 KiB `memcpy`s and
/// `memset`s, over a ring of 64 frames (so a platform of any size fits in
/// 256 KiB); maps and tags cost nothing. What a recall costs beside its
/// copies is then the pool's own work.
pub struct CopyMachine {
    ring: Vec<[u8; 4096]>,
}

impl Default for CopyMachine {
    fn default() -> CopyMachine {
        CopyMachine {
            ring: vec![[0x5a; 4096]; RING],
        }
    }
}

impl CopyMachine {
    pub fn new() -> CopyMachine {
        CopyMachine::default()
    }
}

fn slot(pfn: Pfn) -> usize {
    (pfn as usize) % RING
}

impl Kernel for CopyMachine {
    fn map(&mut self, _: u8, _: u64, _: Pfn, _: Access) {}
    fn unmap(&mut self, _: u8, _: u64) {}
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        let (from, mut to) = (slot(from), slot(to));
        if from == to {
            to = (to + 1) % RING;
        }
        let source = self.ring[from];
        self.ring[to] = std::hint::black_box(source);
    }
    fn zero_frame(&mut self, pfn: Pfn) {
        self.ring[slot(pfn)].fill(0);
        std::hint::black_box(&self.ring[slot(pfn)]);
    }
    fn read_frame(&mut self, pfn: Pfn, offset: usize, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.ring[slot(pfn)][offset..offset + bytes.len()]);
    }
}

impl TagOps for CopyMachine {
    fn zero_tags(&mut self, _: Pfn) {}
    fn copy_tags(&mut self, _: Pfn, _: Pfn) {}
    fn read_tags(&mut self, _: Pfn, tags: &mut FrameTags) {
        *tags = [0; 128];
    }
    fn write_tags(&mut self, _: Pfn, _: &FrameTags) {}
    fn clean_for_tags(&mut self, _: Pfn) {}
    fn clean_tags(&mut self, _: Pfn) {}
}

/// One region of `data_frames` at 0x80000 and its tag storage right after
/// it (1/32 of it) in blocks of `block_frames`.
pub fn layout(data_frames: u64, block_frames: u64) -> Layout {
    Layout::new(&[RegionSpec {
        data_base: 0x80000,
        data_frames,
        tags: Some(TagSpec {
            base: 0x80000 + data_frames,
            frames: data_frames / 32,
            block_frames,
        }),
    }])
    .expect("a benchmark layout is valid")
}

/// The platform sizes of the scale rows: data frames and a name.
pub const SCALES: [(u64, &str); 3] = [
    (32_768, "128 MiB"),
    (524_288, "2 GiB"),
    (4_194_304, "16 GiB"),
];

/// One client at [`WINDOW`] with `pages` pages of window and quota.
pub fn one_client(pages: u32) -> [ClientSpec; 1] {
    [ClientSpec {
        window_base: WINDOW,
        window_pages: pages,
        quota_frames: pages,
    }]
}

/// An order-0 request at page `n` of the window.
pub fn request(n: u64, tagged: bool) -> AllocRequest {
    AllocRequest {
        vaddr: WINDOW + n * PAGE,
        order: 0,
        tagged,
        pinned: false,
        contiguous: false,
    }
}

/// A pool's tables, owned, sized for a layout and its clients.
#[derive(Clone)]
pub struct Tables {
    frames: Vec<FrameEntry>,
    page_map: Vec<u32>,
    map_bits: Vec<u64>,
    deferred: Vec<DeferredSlot>,
    states: Vec<ClientState>,
    blocks: Vec<BlockState>,
}

impl Tables {
    pub fn new(layout: &Layout, clients: &[ClientSpec], config: &Config) -> Tables {
        let sizes = Pool::storage_sizes(layout, clients, config);
        Tables {
            frames: vec![FrameEntry::default(); sizes.frames],
            page_map: vec![0u32; sizes.page_map],
            map_bits: vec![0u64; sizes.map_bits],
            deferred: vec![DeferredSlot::default(); sizes.deferred],
            states: vec![ClientState::default(); sizes.clients],
            blocks: vec![BlockState::default(); sizes.blocks],
        }
    }

    fn storage(&mut self) -> Storage<'_> {
        Storage {
            frames: &mut self.frames,
            page_map: &mut self.page_map,
            map_bits: &mut self.map_bits,
            deferred: &mut self.deferred,
            clients: &mut self.states,
            blocks: &mut self.blocks,
        }
    }

    pub fn pool(&mut self, layout: Layout, clients: &[ClientSpec], config: Config) -> Pool<'_> {
        Pool::new(layout, clients, config, self.storage()).expect("the pool builds")
    }

    fn copy_from(&mut self, other: &Tables) {
        self.frames.copy_from_slice(&other.frames);
        self.page_map.copy_from_slice(&other.page_map);
        self.map_bits.copy_from_slice(&other.map_bits);
        self.deferred.clone_from_slice(&other.deferred);
        self.states.clone_from_slice(&other.states);
        self.blocks.copy_from_slice(&other.blocks);
    }
}

/// A pool state to start samples from: its header and a copy of its tables.
pub struct Frozen {
    header: PoolHeader,
    tables: Tables,
}

impl Frozen {
    /// Builds a pool over `layout` for `clients`, runs `prepare` on it, and
    /// freezes the result.
    pub fn prepare(
        layout: Layout,
        clients: &[ClientSpec],
        config: Config,
        prepare: impl FnOnce(&mut Pool<'_>),
    ) -> Frozen {
        let mut tables = Tables::new(&layout, clients, &config);
        let header = {
            let mut pool = tables.pool(layout, clients, config);
            prepare(&mut pool);
            pool.header()
        };
        Frozen { header, tables }
    }

    /// The median ns of `op` over `samples` runs, each from this state
    /// (restored outside the timed region).
    pub fn median_ns(&self, samples: usize, mut op: impl FnMut(&mut Pool<'_>)) -> f64 {
        let mut work = self.tables();
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            work.copy_from(&self.tables);
            let mut pool = self.resume(&mut work);
            let start = Instant::now();
            op(&mut pool);
            times.push(start.elapsed().as_nanos() as f64);
        }
        median(times)
    }

    /// A copy of this state's tables, for [`Frozen::resume`].
    pub fn tables(&self) -> Tables {
        self.tables.clone()
    }

    /// The pool of this state over `tables`, a copy from [`Frozen::tables`].
    pub fn resume<'a>(&self, tables: &'a mut Tables) -> Pool<'a> {
        Pool::resume(self.header, tables.storage()).expect("a frozen pool resumes")
    }

    /// Runs `op` once from this state and returns what it says.
    pub fn once<T>(&self, op: impl FnOnce(&mut Pool<'_>) -> T) -> T {
        let mut work = self.tables();
        op(&mut self.resume(&mut work))
    }
}

pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// ns per call of `op` over a batch of `batch` calls.
pub fn per_call(batch: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..batch {
        op();
    }
    start.elapsed().as_nanos() as f64 / f64::from(batch)
}

/// Medians of `a` and `b` and of the per-round ratio b / a, over `rounds`
/// alternating batches: drift on a shared machine hits both.
pub fn alternating(
    rounds: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut xs, mut ys, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let x = a();
        let y = b();
        xs.push(x);
        ys.push(y);
        ratios.push(y / x);
    }
    (median(xs), median(ys), median(ratios))
}

/// xorshift64: the workloads must not depend on a crate's RNG changing.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The fast path's baseline: a plain buddy allocator whose largest block,
/// 2^9 frames, is the pool's `MAX_ORDER`.
pub type Baseline = buddy_system_allocator::FrameAllocator<10>;

/// How full the pool and the baseline are while they serve order-0 pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Nothing else held: every pair splits from order 9 and merges back.
    Empty,
    /// One other page held: the common, warm case.
    Warm,
    /// Every other data frame held: no split, no merge.
    Fragmented,
    /// Every data frame but one held.
    Full,
}

impl Fill {
    pub const ALL: [Fill; 4] = [Fill::Empty, Fill::Warm, Fill::Fragmented, Fill::Full];

    pub fn name(self) -> &'static str {
        match self {
            Fill::Empty => "empty",
            Fill::Warm => "warm (one other page held)",
            Fill::Fragmented => "half full, fragmented (every other frame held)",
            Fill::Full => "full (all data frames but one held)",
        }
    }
}

/// Brings `pool` (over [`layout`]`(data, _)`, one client) and `buddy`
/// (empty) to the state `fill` over the same `data` frames, page 0 of the
/// window left for the pairs: the same frames held in both.
pub fn fill_pool_and_baseline(pool: &mut Pool<'_>, buddy: &mut Baseline, fill: Fill, data: u64) {
    let first = 0x80000usize;
    buddy.add_frame(first, first + data as usize);
    let held = match fill {
        Fill::Empty => 0,
        Fill::Warm => 1,
        Fill::Fragmented | Fill::Full => data,
    };
    for n in 1..=held {
        pool.alloc(&mut NullMachine, 0, request(n, false))
            .expect("a frame is free");
        buddy.alloc(1).expect("a frame is free");
    }
    let release = |frame: u64| match fill {
        Fill::Fragmented => frame.is_multiple_of(2),
        Fill::Full => frame == first as u64,
        Fill::Empty | Fill::Warm => false,
    };
    if held == data {
        for n in 1..=data {
            let vaddr = WINDOW + n * PAGE;
            if release(pool.query(0, vaddr).expect("held").frame) {
                pool.free(&mut NullMachine, 0, vaddr).expect("held");
            }
        }
        for frame in first..first + data as usize {
            if release(frame as u64) {
                buddy.dealloc(frame, 1);
            }
        }
    }
}
