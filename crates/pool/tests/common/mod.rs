//! Shared test rig: caller-owned tables, a simulated machine, and helpers.
#![allow(dead_code)]

use std::io::Write;

use tagloan_mte::{Access, FrameTags, Kernel, Pfn, TagOps};
use tagloan_pool::{
    AllocRequest, Allocation, BlockState, ClientSpec, ClientState, Config, DeferredSlot,
    FrameEntry, Layout, Pool, PoolError, RegionSpec, Storage, TagSpec,
};
use tagloan_ram::SimMachine;

pub const PAGE: u64 = 4096;

/// A machine that does nothing: where only the pool's bookkeeping is
/// checked (the model checker, the work bounds).
pub struct NoMachine;

impl Kernel for NoMachine {
    fn map(&mut self, _: u8, _: u64, _: Pfn, _: Access) {}
    fn unmap(&mut self, _: u8, _: u64) {}
    fn copy_frame(&mut self, _: Pfn, _: Pfn) {}
    fn zero_frame(&mut self, _: Pfn) {}
    fn read_frame(&mut self, _: Pfn, _: usize, bytes: &mut [u8]) {
        bytes.fill(0);
    }
}

impl TagOps for NoMachine {
    fn zero_tags(&mut self, _: Pfn) {}
    fn copy_tags(&mut self, _: Pfn, _: Pfn) {}
    fn read_tags(&mut self, _: Pfn, tags: &mut FrameTags) {
        *tags = [0; tagloan_mte::TAG_BYTES_PER_FRAME];
    }
    fn write_tags(&mut self, _: Pfn, _: &FrameTags) {}
    fn clean_for_tags(&mut self, _: Pfn) {}
    fn clean_tags(&mut self, _: Pfn) {}
}

/// The tables a pool borrows, owned by the test.
#[derive(Clone)]
pub struct Tables {
    pub frames: Vec<FrameEntry>,
    pub page_map: Vec<u32>,
    pub map_bits: Vec<u64>,
    pub deferred: Vec<DeferredSlot>,
    pub clients: Vec<ClientState>,
    pub blocks: Vec<BlockState>,
}

impl Tables {
    pub fn new(layout: &Layout, clients: &[ClientSpec], config: &Config) -> Tables {
        let sizes = Pool::storage_sizes(layout, clients, config);
        Tables {
            frames: vec![FrameEntry::default(); sizes.frames],
            page_map: vec![0; sizes.page_map],
            map_bits: vec![0; sizes.map_bits],
            deferred: vec![DeferredSlot::default(); sizes.deferred],
            clients: vec![ClientState::default(); sizes.clients],
            blocks: vec![BlockState::default(); sizes.blocks],
        }
    }

    pub fn storage(&mut self) -> Storage<'_> {
        Storage {
            frames: &mut self.frames,
            page_map: &mut self.page_map,
            map_bits: &mut self.map_bits,
            deferred: &mut self.deferred,
            clients: &mut self.clients,
            blocks: &mut self.blocks,
        }
    }
}

/// Client `n`'s window starts here; windows are 1 GiB apart.
pub fn window(client: u8) -> u64 {
    0x4000_0000 * (u64::from(client) + 1)
}

pub fn clients(count: u8, pages: u32, quota: u32) -> Vec<ClientSpec> {
    (0..count)
        .map(|c| ClientSpec {
            window_base: window(c),
            window_pages: pages,
            quota_frames: quota,
        })
        .collect()
}

/// One region: `data` frames at pfn 0x80000, tags at 0x88000, block size `block`.
pub fn one_region(data: u64, block: u64) -> Layout {
    Layout::new(&[RegionSpec {
        data_base: 0x80000,
        data_frames: data,
        tags: Some(TagSpec {
            base: 0x88000,
            frames: data / 32,
            block_frames: block,
        }),
    }])
    .unwrap()
}

/// QEMU virt as the design sizes it: 128 MiB of data at 0x80000000 and
/// 4 MiB of tags at 0x88000000, block size one page.
pub fn qemu_virt() -> Layout {
    Layout::new(&[RegionSpec {
        data_base: 0x80000,
        data_frames: 32768,
        tags: Some(TagSpec {
            base: 0x88000,
            frames: 1024,
            block_frames: 1,
        }),
    }])
    .unwrap()
}

pub fn untagged(vaddr: u64, order: u8) -> AllocRequest {
    AllocRequest {
        vaddr,
        order,
        tagged: false,
        pinned: false,
        contiguous: false,
    }
}

pub fn tagged(vaddr: u64, order: u8) -> AllocRequest {
    AllocRequest {
        vaddr,
        order,
        tagged: true,
        pinned: false,
        contiguous: false,
    }
}

/// Runs `request` and checks the invariants after it.
pub fn alloc_checked(
    pool: &mut Pool<'_>,
    machine: &mut SimMachine,
    client: u8,
    request: AllocRequest,
) -> Result<Allocation, PoolError> {
    let result = pool.alloc(machine, client, request);
    assert_invariants(pool);
    result
}

pub fn assert_invariants(pool: &Pool<'_>) {
    if let Err(violation) = pool.check_invariants() {
        panic!("{violation}");
    }
}

/// A fingerprint of the machine's observable state: mappings and effects.
pub fn machine_print(machine: &SimMachine) -> (usize, u64, u64, u64) {
    (
        machine.mapping_count(),
        machine.frames_copied,
        machine.frames_zeroed,
        machine.tag_writes,
    )
}

/// Asserts that `f` fails with `expected` and changes neither pool nor machine (I12).
pub fn refused<T: std::fmt::Debug>(
    pool: &mut Pool<'_>,
    machine: &mut SimMachine,
    expected: PoolError,
    f: impl FnOnce(&mut Pool<'_>, &mut SimMachine) -> Result<T, PoolError>,
) {
    let before = (pool.fingerprint(), machine_print(machine));
    let result = f(pool, machine);
    assert_eq!(result.unwrap_err(), expected);
    assert_eq!(
        (pool.fingerprint(), machine_print(machine)),
        before,
        "a refused request changed state"
    );
    assert_invariants(pool);
}

/// Writes a line to the real stderr, past the test harness's capture, so
/// that counts show in `make test`.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
