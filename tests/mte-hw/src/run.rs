//! The body of the hardware test (aarch64 Linux only).
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use tagloan_mte::hw::{self, MteFrames};
use tagloan_mte::{
    pointer_tag, set_granule_tag, FrameTags, Pfn, TagOps, FRAME_BYTES, GRANULES_PER_FRAME,
    GRANULE_BYTES, ZERO_TAGS,
};
use tagloan_pool::{
    Access, AllocRequest, BlockState, ClientSpec, ClientState, Config, DeferredSlot, Frame,
    FrameEntry, Kernel, Layout, Mode, PageState, Pool, RegionSpec, Resolution, Storage, TagSpec,
};
use tagloan_ram::SimMachine;

const PR_MTE_TCF_SYNC: libc::c_ulong = 1 << 1;
const PR_MTE_TAG_SHIFT: libc::c_ulong = 3;
const SEGV_MTESERR: libc::c_int = 9;
const FIRST_PFN: Pfn = 0x1000;
const DATA_FRAMES: u64 = 64;
const TAG_FRAMES: u64 = 2;
const PAGE: u64 = FRAME_BYTES as u64;
const WINDOW: [u64; 2] = [0x10_0000_0000, 0x20_0000_0000];

/// Real tagged memory standing in for the machine's frames.
struct HwMachine {
    frames: MteFrames,
    mappings: BTreeMap<(u8, u64), (Pfn, Access)>,
}

impl Kernel for HwMachine {
    fn map(&mut self, client: u8, vaddr: u64, frame: Pfn, access: Access) {
        assert!(self
            .mappings
            .insert((client, vaddr / PAGE), (frame, access))
            .is_none());
    }
    fn unmap(&mut self, client: u8, vaddr: u64) {
        assert!(self.mappings.remove(&(client, vaddr / PAGE)).is_some());
    }
    fn copy_frame(&mut self, source: Pfn, destination: Pfn) {
        let (from, to) = (
            self.frames.address(source),
            self.frames.address(destination),
        );
        // SAFETY: both frames lie in our PROT_MTE window and do not overlap;
        // tag checks are overridden as the server's copies are.
        hw::without_tag_checks(|| unsafe {
            std::ptr::copy_nonoverlapping(from as *const u8, to as *mut u8, FRAME_BYTES)
        });
    }
    fn zero_frame(&mut self, frame: Pfn) {
        let at = self.frames.address(frame);
        // SAFETY: the frame lies in our window; tag checks are overridden.
        hw::without_tag_checks(|| unsafe { std::ptr::write_bytes(at as *mut u8, 0, FRAME_BYTES) });
    }
    fn read_frame(&mut self, frame: Pfn, offset: usize, bytes: &mut [u8]) {
        self.read(frame, offset, bytes);
    }
}

impl TagOps for HwMachine {
    fn zero_tags(&mut self, frame: Pfn) {
        self.frames.zero_tags(frame)
    }
    fn copy_tags(&mut self, source: Pfn, destination: Pfn) {
        self.frames.copy_tags(source, destination)
    }
    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags) {
        self.frames.read_tags(frame, tags)
    }
    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags) {
        self.frames.write_tags(frame, tags)
    }
    fn clean_for_tags(&mut self, tag_frame: Pfn) {
        self.frames.clean_for_tags(tag_frame)
    }
    fn clean_tags(&mut self, frame: Pfn) {
        self.frames.clean_tags(frame)
    }
}

impl HwMachine {
    fn read(&self, frame: Pfn, offset: usize, out: &mut [u8]) {
        let at = self.frames.address(frame) + offset as u64;
        // SAFETY: inside our window; tag checks overridden (server view).
        hw::without_tag_checks(|| unsafe {
            std::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len())
        });
    }
    fn write(&mut self, frame: Pfn, offset: usize, bytes: &[u8]) {
        let at = self.frames.address(frame) + offset as u64;
        // SAFETY: inside our window; tag checks overridden (server view).
        hw::without_tag_checks(|| unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len())
        });
    }
}

struct Checks {
    passed: u32,
    failed: u32,
    faults: u32,
    by_name: BTreeMap<&'static str, u32>,
}

impl Checks {
    fn check(&mut self, name: &'static str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
            *self.by_name.entry(name).or_default() += 1;
        } else {
            self.failed += 1;
            eprintln!("mte-hw: FAILED {name}: {}", detail());
        }
    }
}

fn layout() -> Layout {
    Layout::new(&[RegionSpec {
        data_base: FIRST_PFN,
        data_frames: DATA_FRAMES,
        tags: Some(TagSpec {
            base: FIRST_PFN + DATA_FRAMES,
            frames: TAG_FRAMES,
            block_frames: 1,
        }),
    }])
    .expect("valid layout")
}

fn leaked_storage(layout: &Layout, clients: &[ClientSpec], config: &Config) -> Storage<'static> {
    let sizes = Pool::storage_sizes(layout, clients, config);
    Storage {
        frames: Box::leak(vec![FrameEntry::default(); sizes.frames].into_boxed_slice()),
        page_map: Box::leak(vec![0; sizes.page_map].into_boxed_slice()),
        map_bits: Box::leak(vec![0; sizes.map_bits].into_boxed_slice()),
        deferred: Box::leak(vec![DeferredSlot::default(); sizes.deferred].into_boxed_slice()),
        clients: Box::leak(vec![ClientState::default(); sizes.clients].into_boxed_slice()),
        blocks: Box::leak(vec![BlockState::default(); sizes.blocks].into_boxed_slice()),
    }
}

/// Two pools driven in lock step: one over real MTE memory, one simulated.
struct Rig {
    hw_pool: Pool<'static>,
    sim_pool: Pool<'static>,
    hw: HwMachine,
    sim: SimMachine,
}

fn rig(base: *mut u8, checks: &mut Checks) -> Rig {
    let layout = layout();
    let clients: Vec<ClientSpec> = WINDOW
        .iter()
        .map(|&w| ClientSpec {
            window_base: w,
            window_pages: 256,
            quota_frames: 256,
        })
        .collect();
    let config = Config::default();
    // SAFETY: `base` is our PROT_MTE mapping of DATA_FRAMES + TAG_FRAMES pages.
    let mut frames = unsafe { MteFrames::new(base, FIRST_PFN, DATA_FRAMES + TAG_FRAMES) };
    // Start clean: DC GZVA zeroes data and tags of every frame.
    for pfn in FIRST_PFN..FIRST_PFN + DATA_FRAMES + TAG_FRAMES {
        frames.zero_frame_and_tags(pfn);
    }
    let mut hw = HwMachine {
        frames,
        mappings: BTreeMap::new(),
    };
    let mut tags = ZERO_TAGS;
    let mut data = [1u8; FRAME_BYTES];
    hw.read_tags(FIRST_PFN + 7, &mut tags);
    hw.read(FIRST_PFN + 7, 0, &mut data);
    checks.check(
        "DC GZVA zeroes data and tags",
        tags == ZERO_TAGS && data.iter().all(|&b| b == 0),
        || "frame not zero after DC GZVA".into(),
    );
    Rig {
        hw_pool: Pool::new(
            layout,
            &clients,
            config,
            leaked_storage(&layout, &clients, &config),
        )
        .expect("pool"),
        sim_pool: Pool::new(
            layout,
            &clients,
            config,
            leaked_storage(&layout, &clients, &config),
        )
        .expect("pool"),
        hw,
        sim: SimMachine::new(layout.tag_regions()),
    }
}

/// Runs the same operation on both pools and insists they agree.
macro_rules! both {
    ($rig:expr, $op:ident ( $($arg:expr),* )) => {{
        let a = $rig.hw_pool.$op(&mut $rig.hw, $($arg),*);
        let b = $rig.sim_pool.$op(&mut $rig.sim, $($arg),*);
        assert_eq!(a, b, "hardware and simulated pools diverged");
        a
    }};
}

fn page(client: usize, n: u64) -> u64 {
    WINDOW[client] + n * PAGE
}

fn frame_of(rig: &mut Rig, client: u8, vaddr: u64) -> Pfn {
    let a = rig.hw_pool.query(client, vaddr).expect("mapped").frame;
    let b = rig.sim_pool.query(client, vaddr).expect("mapped").frame;
    assert_eq!(a, b);
    a
}

/// A client retags its tagged page with IRG-random tags, on both machines.
fn random_tags(rig: &mut Rig, client: u8, vaddr: u64) -> FrameTags {
    let pfn = frame_of(rig, client, vaddr);
    let address = rig.hw.frames.address(pfn);
    let mut tags = ZERO_TAGS;
    for granule in 0..GRANULES_PER_FRAME {
        // SAFETY: IRG computes a value; exclude tag 0 so the tags are visible.
        let tagged = unsafe { hw::irg(address + (granule * GRANULE_BYTES) as u64, 1) };
        set_granule_tag(&mut tags, granule, pointer_tag(tagged));
    }
    rig.hw.write_tags(pfn, &tags);
    rig.sim.write_tags(pfn, &tags);
    tags
}

/// Every tagged frame reads back the same tags on both machines.
fn compare_tags(rig: &mut Rig, checks: &mut Checks) {
    for index in 0..rig.hw_pool.layout().frames_total() {
        let tagged =
            matches!(rig.hw_pool.frame(index), Some(Ok(Frame::Owned(o))) if o.mode == Mode::Tagged);
        if !tagged {
            continue;
        }
        let pfn = rig.hw_pool.layout().pfn(index).expect("managed");
        let (mut a, mut b) = (ZERO_TAGS, ZERO_TAGS);
        rig.hw.read_tags(pfn, &mut a);
        rig.sim.read_tags(pfn, &mut b);
        checks.check("simulator and hardware tags agree", a == b, || {
            format!("frame {pfn:#x}")
        });
    }
}

fn untagged_req(vaddr: u64, order: u8) -> AllocRequest {
    AllocRequest {
        vaddr,
        order,
        tagged: false,
        pinned: false,
        contiguous: false,
    }
}

fn tagged_req(vaddr: u64) -> AllocRequest {
    AllocRequest {
        vaddr,
        order: 0,
        tagged: true,
        pinned: false,
        contiguous: false,
    }
}

fn scenario_zeroed_and_recall(base: *mut u8, checks: &mut Checks) {
    let mut r = rig(base, checks);
    // A tagged page, retagged by its client, freed, and handed out again.
    both!(r, alloc(0, tagged_req(page(0, 0)))).expect("tagged alloc");
    let first = frame_of(&mut r, 0, page(0, 0));
    random_tags(&mut r, 0, page(0, 0));
    both!(r, free(0, page(0, 0))).expect("free");
    both!(r, alloc(0, tagged_req(page(0, 1)))).expect("tagged alloc");
    let again = frame_of(&mut r, 0, page(0, 1));
    let mut tags = ZERO_TAGS;
    r.hw.read_tags(again, &mut tags);
    checks.check(
        "tagged frames come out with zeroed tags",
        again == first && tags == ZERO_TAGS,
        || {
            format!(
                "frame {again:#x} (was {first:#x}) has tags {:?}",
                &tags[..8]
            )
        },
    );
    let heap_tags = random_tags(&mut r, 0, page(0, 1));

    // The bulk client fills the data pool and borrows the free tag frame.
    for n in 0..64 {
        both!(r, alloc(1, untagged_req(page(1, n), 0))).expect("bulk alloc");
        let pfn = frame_of(&mut r, 1, page(1, n));
        r.hw.write(pfn, 0, &n.to_le_bytes());
        r.sim.ram.write(pfn, 0, &n.to_le_bytes());
    }
    let lent = r.hw_pool.stats().tag_frames_lent;
    checks.check("untagged data borrows tag storage", lent == 1, || {
        format!("{lent} frames lent")
    });
    // Free some bulk pages in the group whose block is lent, then ask for
    // tagged memory there: the block is recalled.
    let mut freed = 0;
    for n in 0..64 {
        let pfn = frame_of(&mut r, 1, page(1, n));
        if (FIRST_PFN + 32..FIRST_PFN + 64).contains(&pfn) && freed < 4 {
            both!(r, free(1, page(1, n))).expect("free");
            freed += 1;
        }
    }
    // The bulk pages in the reserved group are pinned, so no untagged page
    // can move out of it to make room instead (the swap): the tagged page
    // must take a frame of the lent group, whose block is recalled.
    for n in 0..64 {
        if let Ok(info) = r.hw_pool.query(1, page(1, n)) {
            if (FIRST_PFN..FIRST_PFN + 32).contains(&info.frame) {
                both!(r, pin(1, page(1, n))).expect("pin");
            }
        }
    }
    both!(r, alloc(0, tagged_req(page(0, 2)))).expect("tagged alloc with recall");
    let stats = r.hw_pool.stats();
    checks.check(
        "a tagged request recalls a lent block",
        stats.recalls == 1 && stats.migrations == 1,
        || format!("{stats:?}"),
    );
    let mut intact = true;
    for n in 0..64 {
        if let Ok(info) = r.hw_pool.query(1, page(1, n)) {
            let mut bytes = [0u8; 8];
            r.hw.read(info.frame, 0, &mut bytes);
            intact &= u64::from_le_bytes(bytes) == n;
        }
    }
    checks.check("recalled borrowers keep their data", intact, || {
        "bulk data changed".into()
    });
    let mut now = ZERO_TAGS;
    let heap = frame_of(&mut r, 0, page(0, 1));
    r.hw.read_tags(heap, &mut now);
    checks.check(
        "a tagged page's tags survive other clients' recalls",
        now == heap_tags,
        || "tags changed".into(),
    );
    compare_tags(&mut r, checks);
    assert!(r.hw_pool.check_invariants().is_ok() && r.sim_pool.check_invariants().is_ok());
}

/// Fills memory: a tagged page at frame 0, untagged pages elsewhere (the
/// other group, the free tag frame, then the reserved group's last).
fn fragmented(r: &mut Rig) {
    both!(r, alloc(0, tagged_req(page(0, 0)))).expect("tagged alloc");
    for n in 1..65 {
        both!(r, alloc(0, untagged_req(page(0, n), 0))).expect("untagged alloc");
    }
}

fn page_at(r: &mut Rig, pfn: Pfn) -> u64 {
    (1..65)
        .map(|n| page(0, n))
        .find(|&v| r.hw_pool.query(0, v).is_ok_and(|info| info.frame == pfn))
        .expect("some page holds the frame")
}

fn scenario_migration_and_deferred(base: *mut u8, checks: &mut Checks) {
    // Migration with a reserved destination carries the tags.
    let mut r = rig(base, checks);
    fragmented(&mut r);
    let tags = random_tags(&mut r, 0, page(0, 0));
    for pfn in [FIRST_PFN + 1, FIRST_PFN + 5, FIRST_PFN + 40] {
        let vaddr = page_at(&mut r, pfn);
        both!(r, free(0, vaddr)).expect("free");
    }
    let contiguous = AllocRequest {
        vaddr: page(1, 0),
        order: 1,
        tagged: false,
        pinned: true,
        contiguous: true,
    };
    both!(r, alloc(1, contiguous)).expect("contiguous alloc by evacuation");
    let info = r.hw_pool.query(0, page(0, 0)).expect("mapped");
    let mut now = ZERO_TAGS;
    r.hw.read_tags(info.frame, &mut now);
    checks.check(
        "migration of a tagged page carries its tags",
        info.state == PageState::Tagged && info.frame != FIRST_PFN && now == tags,
        || format!("{info:?}"),
    );
    compare_tags(&mut r, checks);

    // No reserved destination: the tags are parked and restored on the fault.
    let mut r = rig(base, checks);
    fragmented(&mut r);
    let tags = random_tags(&mut r, 0, page(0, 0));
    for pfn in (FIRST_PFN + 32..FIRST_PFN + 46).step_by(2) {
        let vaddr = page_at(&mut r, pfn);
        both!(r, free(0, vaddr)).expect("free");
    }
    let contiguous = AllocRequest {
        vaddr: page(1, 0),
        order: 1,
        tagged: false,
        pinned: true,
        contiguous: true,
    };
    both!(r, alloc(1, contiguous)).expect("contiguous alloc by evacuation");
    let info = r.hw_pool.query(0, page(0, 0)).expect("mapped");
    checks.check(
        "tags are parked when no reserved frame is free",
        info.state == PageState::MetadataNone && info.deferred_tags,
        || format!("{info:?}"),
    );
    let resolved = both!(r, resolve_fault(0, page(0, 0))).expect("resolve");
    let info = r.hw_pool.query(0, page(0, 0)).expect("mapped");
    let mut now = ZERO_TAGS;
    r.hw.read_tags(info.frame, &mut now);
    checks.check(
        "deferred tags are restored on the first tagged mapping",
        resolved
            == Resolution::Tagged {
                migrated: false,
                deferred_restored: true,
            }
            && now == tags,
        || format!("{resolved:?}"),
    );
    compare_tags(&mut r, checks);
    assert!(r.hw_pool.check_invariants().is_ok() && r.sim_pool.check_invariants().is_ok());
}

extern "C" fn on_segv(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // _exit is async-signal-safe.
    unsafe {
        let code = (*info).si_code;
        libc::_exit(if code == SEGV_MTESERR {
            42
        } else {
            40 + code.clamp(0, 1)
        });
    }
}

/// Use after free: a stale pointer keeps the tag of a page that was freed
/// and handed out again (with zeroed tags); touching it must fault.
fn scenario_stale_pointer(base: *mut u8, checks: &mut Checks) {
    // SAFETY: fork in a single-threaded process; the child only runs this
    // function's code and exits with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let mut inner = Checks {
            passed: 0,
            failed: 0,
            faults: 0,
            by_name: BTreeMap::new(),
        };
        let mut r = rig(base, &mut inner);
        both!(r, alloc(0, tagged_req(page(0, 0)))).expect("tagged alloc");
        let pfn = frame_of(&mut r, 0, page(0, 0));
        let address = r.hw.frames.address(pfn);
        // SAFETY: IRG computes a value; exclude tag 0.
        let stale = unsafe { hw::irg(address, 1) };
        r.hw.write_tags(pfn, &tagloan_mte::uniform_tags(pointer_tag(stale)));
        // SAFETY: the pointer's tag matches the page's tags: a valid store.
        unsafe { (stale as *mut u64).write_volatile(7) };
        both!(r, free(0, page(0, 0))).expect("free");
        both!(r, alloc(0, tagged_req(page(0, 1)))).expect("tagged alloc");
        assert_eq!(frame_of(&mut r, 0, page(0, 1)), pfn, "the frame is reused");
        // SAFETY: installing a signal handler; the struct is zeroed then filled.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_segv as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
        }
        // SAFETY: deliberately a use after free through a stale tag; the
        // memory is mapped, so only the tag check can stop it.
        unsafe { (stale as *mut u64).write_volatile(8) };
        // SAFETY: _exit in the child.
        unsafe { libc::_exit(1) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    checks.check(
        "a stale pointer faults with SIGSEGV / SEGV_MTESERR",
        code == 42,
        || format!("child exit status {code} (42 = SEGV_MTESERR, 1 = no fault)"),
    );
    if code == 42 {
        checks.faults += 1;
    }
}

pub fn main() -> ExitCode {
    let control = libc::PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0xfffe << PR_MTE_TAG_SHIFT);
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_TAGGED_ADDR_CTRL, control, 0, 0, 0) } != 0 {
        eprintln!("mte-hw: prctl(PR_SET_TAGGED_ADDR_CTRL) failed: MTE is not available (run under qemu-aarch64 -cpu max)");
        return ExitCode::FAILURE;
    }
    let bytes = ((DATA_FRAMES + TAG_FRAMES) * PAGE) as usize;
    // SAFETY: an anonymous private mapping; we check for MAP_FAILED.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_MTE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        eprintln!("mte-hw: mmap with PROT_MTE failed");
        return ExitCode::FAILURE;
    }
    let base = base as *mut u8;
    let mut checks = Checks {
        passed: 0,
        failed: 0,
        faults: 0,
        by_name: BTreeMap::new(),
    };
    scenario_zeroed_and_recall(base, &mut checks);
    scenario_migration_and_deferred(base, &mut checks);
    scenario_stale_pointer(base, &mut checks);
    for (name, count) in &checks.by_name {
        println!("mte-hw: {name}: {count}");
    }
    println!(
        "mte-hw: {} checks passed, {} tag-check faults observed",
        checks.passed, checks.faults
    );
    if checks.failed > 0 || checks.faults == 0 {
        eprintln!("mte-hw: {} checks FAILED", checks.failed);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
