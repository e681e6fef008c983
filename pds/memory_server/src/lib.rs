//! The memory server PD (DESIGN §1, §5, §6).
//!
//! Highest priority and passive: it runs only on its callers' PPCs. At
//! `init` it parses the platform's device tree (the `dtb` region) with
//! `tagloan-platform`, reads the client table, carves the pool's tables out
//! of its bookkeeping region and builds the pool core over them. It then
//! serves every operation of the protocol: the channel a call arrives on (its
//! badge) says who is calling, every message is decoded with `tagloan-proto`
//! before anything is touched, the protocol's `dispatch` refuses the fault
//! handler's operations to clients, and this crate's [`tagloan_proto::Serve`]
//! implementation runs each operation on the pool.
//!
//! Every effect on memory goes through the machine `M` (the pool's `Kernel`
//! and `TagOps`), which the backend that builds the server hands to
//! [`MemoryServer::new`]: the simulator's RAM, or on seL4 the frame and
//! VSpace capabilities. A backend that has none passes `None` and the server
//! refuses every request with `unsupported`.
#![no_std]

mod convert;

use tagloan_microkit::{Channel, ChannelSet, Env, Handler, Infallible, MessageInfo};
use tagloan_mte::{granule_tag, untagged_address, FrameTags, GRANULE_BYTES, TAG_BYTES_PER_FRAME};
use tagloan_platform::TagStorage;
use tagloan_pool::{AllocRequest, Config, Machine, Pfn, Pool, Resolution, Storage};
use tagloan_proto::{
    dispatch, AllocSpec, Allocated, ArgumentRule, Caller, ClientId, ClientTable, DecodeError,
    Error, FaultKind, FaultReply, Freed, Op, PageInfo, PageState, Reclaimed, Request, Response,
    Serve, StatsReply, Status, MAX_MESSAGE_WORDS,
};

pub use convert::{page_info, refusal};

/// Names of the regions the server maps (see `system.xml`).
pub const DTB_REGION: &str = "dtb";
pub const CLIENT_TABLE_REGION: &str = "client_table";
pub const BOOKKEEPING_REGION: &str = "server_bookkeeping";

/// Why the server could not start. It stays up and refuses every request
/// with `unsupported`, so clients see a typed error, not silence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    NoRegion(&'static str),
    Platform(tagloan_platform::PlatformError),
    Table(tagloan_proto::TableError),
    Pool(tagloan_pool::InitError),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoRegion(name) => {
                write!(
                    f,
                    "region `{name}` is not mapped into the server; map it in system.xml"
                )
            }
            StartError::Platform(e) => write!(f, "device tree refused: {e}"),
            StartError::Table(e) => write!(f, "{e}"),
            StartError::Pool(e) => write!(f, "pool: {e}"),
        }
    }
}

/// A machine that does not exist: the type of a server built by a backend
/// that has no frames to give (the seL4 image when provisioning fails). It
/// has no values, so none of its operations can ever run.
pub enum NoMachine {}

impl tagloan_pool::Kernel for NoMachine {
    fn map(&mut self, _: u8, _: u64, _: tagloan_pool::Pfn, _: tagloan_pool::Access) {
        match *self {}
    }
    fn unmap(&mut self, _: u8, _: u64) {
        match *self {}
    }
    fn copy_frame(&mut self, _: tagloan_pool::Pfn, _: tagloan_pool::Pfn) {
        match *self {}
    }
    fn zero_frame(&mut self, _: tagloan_pool::Pfn) {
        match *self {}
    }
    fn read_frame(&mut self, _: tagloan_pool::Pfn, _: usize, _: &mut [u8]) {
        match *self {}
    }
}

impl tagloan_mte::TagOps for NoMachine {
    fn write_tags(&mut self, _: tagloan_pool::Pfn, _: &FrameTags) {
        match *self {}
    }
    fn read_tags(&mut self, _: tagloan_pool::Pfn, _: &mut FrameTags) {
        match *self {}
    }
    fn zero_tags(&mut self, _: tagloan_pool::Pfn) {
        match *self {}
    }
    fn copy_tags(&mut self, _: tagloan_pool::Pfn, _: tagloan_pool::Pfn) {
        match *self {}
    }
    fn clean_for_tags(&mut self, _: tagloan_pool::Pfn) {
        match *self {}
    }
    fn clean_tags(&mut self, _: tagloan_pool::Pfn) {
        match *self {}
    }
}

/// The server's own counters, beside the pool's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// PPCs received.
    pub calls: u64,
    /// Requests that did not decode.
    pub refused_malformed: u64,
    /// Requests from an unknown channel, or for an operation the caller
    /// may not ask for.
    pub refused_permission: u64,
    /// Requests that need frames, refused because the server has none.
    pub refused_unsupported: u64,
    /// The most tag storage frames lent as data at once (after a call).
    pub lent_peak: u64,
    /// On a backend with a counter: the fewest cycles the server spent on a
    /// `stats` call, and on a call that recalled a lent block (server side,
    /// from the message read to the reply written), 0 when none was seen.
    pub stats_call_cycles: u64,
    pub recall_call_cycles: u64,
    /// `check_invariants()` runs after calls (when asked for), and the
    /// violations they found.
    pub invariant_checks: u64,
    pub invariant_violations: u64,
    /// The server's tag audit (with each invariant check, where tags live
    /// in the carve-out): tagged frames compared, and those whose tags
    /// were not in their tag storage bytes.
    pub tag_audits: u64,
    pub tag_audit_mismatches: u64,
    /// Tag-check faults the fault handler reported (it asks for the
    /// memory's tag of each).
    pub tag_check_faults: u64,
}

/// The pool and the machine its frames live in.
struct Frames<M> {
    pool: Pool<'static>,
    machine: M,
}

/// A probe of whether the hardware stores tags, run on memory the server
/// itself maps (its bookkeeping region), when it has no frames of the pool
/// to probe with: writes a non-zero tag and says whether it read back.
pub type OwnMappingProbe = fn(&mut [u8]) -> bool;

struct Serving<M> {
    /// `None`: the backend gave no machine, so no request that needs frames
    /// can be served.
    frames: Option<Frames<M>>,
    layout: tagloan_pool::Layout,
    table: ClientTable,
    fault_handler_channel: Option<u8>,
    /// Whether the hardware stores tags (the init-time probe).
    probe: TagProbe,
    /// Where it stores them (the same probe).
    home: TagHome,
    counters: ServerCounters,
}

/// The memory server's handler, over the machine `M` its backend gave it.
pub struct MemoryServer<M: Machine> {
    /// The machine until `init` builds the pool over it.
    machine: Option<M>,
    /// The backend's probe of its own mapping, for a server without frames.
    own_probe: Option<OwnMappingProbe>,
    /// Check the pool invariants after every `check_every`-th call (0:
    /// never; the seL4 image asks; the simulator's observer checks them
    /// itself after every call).
    check_every: u64,
    serving: Option<Serving<M>>,
    start_error: Option<StartError>,
}

impl<M: Machine> MemoryServer<M> {
    /// A server over `machine`, or, with `None`, one that will refuse every
    /// request with `unsupported` and say why at `init`.
    pub const fn new(machine: Option<M>) -> MemoryServer<M> {
        MemoryServer {
            machine,
            own_probe: None,
            check_every: 0,
            serving: None,
            start_error: None,
        }
    }

    /// With `probe` to run on the server's own mapping when it has no
    /// frames of the pool (the seL4 backend gives the real MTE instructions).
    pub const fn with_own_mapping_probe(mut self, probe: OwnMappingProbe) -> MemoryServer<M> {
        self.own_probe = Some(probe);
        self
    }

    /// Checks the pool invariants after every `every`-th call it serves
    /// (1: every call), counting the checks and the violations for its
    /// final line.
    pub const fn with_invariant_checks(mut self, every: u64) -> MemoryServer<M> {
        self.check_every = every;
        self
    }

    /// Why start-up failed, if it did.
    pub fn start_error(&self) -> Option<&StartError> {
        self.start_error.as_ref()
    }

    /// The pool, once the server runs: for observers (the simulator's
    /// invariant audit, frame pictures). Read-only.
    pub fn pool(&self) -> Option<&Pool<'static>> {
        self.serving
            .as_ref()
            .and_then(|s| s.frames.as_ref())
            .map(|f| &f.pool)
    }

    /// The client table, once the server runs.
    pub fn table(&self) -> Option<&ClientTable> {
        self.serving.as_ref().map(|s| &s.table)
    }

    /// What the start-up probe found, once the server runs.
    pub fn probe(&self) -> Option<TagProbe> {
        self.serving.as_ref().map(|s| s.probe)
    }

    /// Where the start-up probe found the tags, once the server runs.
    pub fn tag_home(&self) -> Option<TagHome> {
        self.serving.as_ref().map(|s| s.home)
    }

    /// The server's own counters.
    pub fn counters(&self) -> ServerCounters {
        self.serving
            .as_ref()
            .map_or(ServerCounters::default(), |s| s.counters)
    }

    fn start(&mut self, env: &mut dyn Env) -> Result<Serving<M>, StartError> {
        let dtb = env
            .region(DTB_REGION)
            .ok_or(StartError::NoRegion(DTB_REGION))?;
        let platform = tagloan_platform::parse(dtb, true).map_err(StartError::Platform)?;
        if let TagStorage::Disabled(reason) = &platform.tag_storage {
            tagloan_microkit::debug_println!(
                env,
                "memory_server: tag storage reuse disabled: {reason}"
            );
        }
        let table_bytes = env
            .region(CLIENT_TABLE_REGION)
            .ok_or(StartError::NoRegion(CLIENT_TABLE_REGION))?;
        let table = ClientTable::parse(table_bytes).map_err(StartError::Table)?;
        let mut specs = [tagloan_pool::ClientSpec {
            window_base: 0,
            window_pages: 0,
            quota_frames: 0,
        }; tagloan_proto::MAX_TABLE_CLIENTS];
        for (spec, entry) in specs.iter_mut().zip(&table.clients) {
            *spec = tagloan_pool::ClientSpec {
                window_base: entry.window_base,
                window_pages: entry.window_pages,
                quota_frames: entry.quota_frames,
            };
        }
        let specs = &specs[..table.clients.len()];
        print_layout(env, &platform);
        let config = Config::default();
        let sizes = Pool::storage_sizes(&platform.layout, specs, &config);
        let region = env
            .take_region_mut(BOOKKEEPING_REGION)
            .ok_or(StartError::NoRegion(BOOKKEEPING_REGION))?;
        let (frames, probe, home) = match self.machine.take() {
            Some(mut machine) => {
                let (storage, _) = Storage::carve(region, &sizes).map_err(StartError::Pool)?;
                let mut pool =
                    Pool::new(platform.layout, specs, config, storage).map_err(StartError::Pool)?;
                let (probe, home) = probe_tags(&mut pool, &mut machine);
                (Some(Frames { pool, machine }), probe, home)
            }
            None => {
                let probe = match self.own_probe {
                    Some(probe) if probe(region) => TagProbe::Stored,
                    Some(_) => TagProbe::NotStored,
                    None => TagProbe::Untested,
                };
                (None, probe, TagHome::Unknown)
            }
        };
        Ok(Serving {
            frames,
            layout: platform.layout,
            fault_handler_channel: table.fault_handler.as_ref().map(|(_, c)| *c),
            table,
            probe,
            home,
            counters: ServerCounters::default(),
        })
    }
}

/// The layout, as `tagloan check` prints it: each region, then the totals.
fn print_layout(env: &mut dyn Env, platform: &tagloan_platform::Platform) {
    for (i, r) in platform.regions.iter().enumerate() {
        match r.tags {
            Some(t) => tagloan_microkit::debug_println!(
                env,
                "memory_server: region {i}: data {:#x}, {} frames; tag storage {:#x}, {} frames; block {} frames",
                r.data_base * 4096,
                r.data_frames,
                t.base * 4096,
                t.frames,
                t.block_frames
            ),
            None => tagloan_microkit::debug_println!(
                env,
                "memory_server: region {i}: data {:#x}, {} frames; no tag storage",
                r.data_base * 4096,
                r.data_frames
            ),
        }
    }
    let layout = &platform.layout;
    tagloan_microkit::debug_println!(
        env,
        "memory_server: total: {} frames ({} data, {} tag storage), {} tag blocks",
        layout.frames_total(),
        layout.data_frames_total(),
        layout.tag_frames_total(),
        layout.blocks_total()
    );
}

/// What the start-up tag probe found (DESIGN §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagProbe {
    /// A tag written to a scratch frame read back: tags are stored.
    Stored,
    /// It read back as zero: this kernel does not enable MTE for user
    /// mappings, so tag checks will never fire.
    NotStored,
    /// There is no tag storage to probe with (MTE off, none described, or
    /// reuse disabled): tagged memory is `unsupported`.
    NoTagStorage,
    /// The server has no frames and its backend gave no probe of its own
    /// mapping: nothing was tried.
    Untested,
}

/// Where the hardware keeps the tags, as the start-up probe found them
/// (DESIGN §7): the probe frame's tags, once stored, are read back as data
/// from the tag storage frame where the pool keeps them. On real hardware
/// this is also the check that the device tree's carve-out matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagHome {
    /// In the carve-out the device tree describes: the tag storage bytes
    /// at `tag_frame` + `offset` hold the probe frame's tags.
    CarveOut { tag_frame: Pfn, offset: usize },
    /// Tags are stored, but those bytes do not hold them: a hidden tag
    /// memory (stock QEMU's), or a device tree (or tag arithmetic) that
    /// does not match the hardware.
    Elsewhere { tag_frame: Pfn, offset: usize },
    /// The platform stores no tags ([`TagProbe::NotStored`]).
    Nowhere,
    /// Not probed: no frames, or no tag storage.
    Unknown,
}

/// Tags with every nibble non-zero and no two neighbouring bytes alike, so
/// that neither zeroed nor shifted storage can pass for them.
fn probe_pattern() -> FrameTags {
    let mut tags = [0; TAG_BYTES_PER_FRAME];
    for (i, byte) in tags.iter_mut().enumerate() {
        let low = (i * 5 + 1) % 15 + 1;
        let high = (i * 7 + 2) % 15 + 1;
        *byte = (high << 4 | low) as u8;
    }
    tags
}

/// The tag storage bytes of data frame `frame` as the hardware holds them
/// there, read as data. The caches first (DESIGN §7): the frame's tag
/// lines are cleaned to memory, and the tag frame's data lines invalidated,
/// so the read sees memory. These cleans are the probe's and the audit's
/// own: the pool's counters (`tag_frames_cleaned`, `tag_lines_cleaned`)
/// do not count them, the machine's own may.
fn tags_in_storage<M: Machine>(machine: &mut M, frame: Pfn, at: (Pfn, usize)) -> FrameTags {
    machine.clean_tags(frame);
    machine.clean_for_tags(at.0);
    let mut bytes = [0; TAG_BYTES_PER_FRAME];
    machine.read_frame(at.0, at.1, &mut bytes);
    bytes
}

/// Stores tags on a server frame of the pool and reads them back: whether
/// tags are stored at all (on seL4 without kernel MTE support the
/// instructions run but store nothing), and whether they are in the tag
/// storage frame where the pool keeps them.
fn probe_tags<M: Machine>(pool: &mut Pool<'static>, machine: &mut M) -> (TagProbe, TagHome) {
    let Ok(frame) = pool.take_server_frame(machine, true) else {
        return (TagProbe::NoTagStorage, TagHome::Unknown);
    };
    let pattern = probe_pattern();
    machine.write_tags(frame, &pattern);
    let mut back = [0; TAG_BYTES_PER_FRAME];
    machine.read_tags(frame, &mut back);
    let result = if back != pattern {
        (TagProbe::NotStored, TagHome::Nowhere)
    } else {
        match pool.layout().tag_location(frame) {
            Some((tag_frame, offset)) => {
                let stored = tags_in_storage(machine, frame, (tag_frame, offset));
                let home = if stored == pattern {
                    TagHome::CarveOut { tag_frame, offset }
                } else {
                    TagHome::Elsewhere { tag_frame, offset }
                };
                (TagProbe::Stored, home)
            }
            None => (TagProbe::Stored, TagHome::Unknown),
        }
    };
    machine.zero_tags(frame);
    result
}

/// A tagged frame whose tags are not where the pool keeps them.
struct TagMismatch {
    frame: Pfn,
    client: ClientId,
    vaddr: u64,
    tag_frame: Pfn,
    offset: usize,
    /// The first byte that differs: its index, LDG's and storage's.
    byte: usize,
    by_ldg: u8,
    in_storage: u8,
}

/// The server's own tag check, where tags live in the carve-out: every
/// tagged frame's tags as LDG reads them against the bytes where the pool
/// keeps them, read as data. It checks addressing, frame by frame: that
/// the hardware puts each tagged frame's tags where the pool's arithmetic
/// and the machine's frame caps say (the probe checks one frame at
/// start-up). It cannot see tags corrupted in place, by data written into
/// a reserved tag frame: both reads see the same bytes; a client's
/// tag-checked access does. Returns the frames compared and the first
/// mismatch, if any.
fn audit_tags<M: Machine>(
    pool: &Pool<'static>,
    machine: &mut M,
    table: &ClientTable,
) -> (u64, u64, Option<TagMismatch>) {
    let layout = *pool.layout();
    let (mut audited, mut mismatches, mut first) = (0, 0, None);
    for index in 0..layout.frames_total() {
        let Some(Ok(tagloan_pool::Frame::Owned(owned))) = pool.frame(index) else {
            continue;
        };
        if owned.mode != tagloan_pool::Mode::Tagged {
            continue;
        }
        let (Some(frame), Some(entry)) = (
            layout.pfn(index),
            table.clients.get(usize::from(owned.client)),
        ) else {
            continue;
        };
        let Some(at) = layout.tag_location(frame) else {
            continue;
        };
        let mut by_ldg = [0; TAG_BYTES_PER_FRAME];
        machine.read_tags(frame, &mut by_ldg);
        let stored = tags_in_storage(machine, frame, at);
        audited += 1;
        if let Some(byte) = (0..TAG_BYTES_PER_FRAME).find(|&i| by_ldg[i] != stored[i]) {
            mismatches += 1;
            first.get_or_insert(TagMismatch {
                frame,
                client: owned.client,
                vaddr: entry.window_base + u64::from(owned.page) * tagloan_mte::FRAME_BYTES as u64,
                tag_frame: at.0,
                offset: at.1,
                byte,
                by_ldg: by_ldg[byte],
                in_storage: stored[byte],
            });
        }
    }
    (audited, mismatches, first)
}

impl<M: Machine> Serving<M> {
    fn caller(&self, channel: Channel) -> Option<Caller> {
        let id = channel.index() as u8;
        if self.fault_handler_channel == Some(id) {
            return Some(Caller::FaultHandler);
        }
        self.table
            .by_channel(id)
            .map(|(client, _)| Caller::Client(client))
    }

    /// Decodes and runs one call.
    fn call(&mut self, caller: Caller, label: u64, words: &[u64]) -> Result<Response, Error> {
        let request = Request::decode(label, words).map_err(|error| {
            self.counters.refused_malformed += 1;
            Error::malformed(error)
        })?;
        let result = dispatch(self, caller, request);
        if matches!(result, Err(e) if e.status == Status::PermissionDenied) {
            self.counters.refused_permission += 1;
        }
        if let Some(frames) = self.frames.as_ref() {
            let lent = u64::from(frames.pool.stats().tag_frames_lent);
            self.counters.lent_peak = self.counters.lent_peak.max(lent);
        }
        result
    }
}

impl<M: Machine> Serving<M> {
    /// The pool and machine, or the refusal of a server that has none.
    fn frames(&mut self) -> Result<&mut Frames<M>, Error> {
        match self.frames.as_mut() {
            Some(frames) => Ok(frames),
            None => {
                self.counters.refused_unsupported += 1;
                Err(Error::bare(Status::Unsupported))
            }
        }
    }
}

/// Each operation of the protocol table, on the pool.
impl<M: Machine> Serve for Serving<M> {
    fn alloc(&mut self, client: ClientId, vaddr: u64, spec: AllocSpec) -> Result<Allocated, Error> {
        let Frames { pool, machine } = self.frames()?;
        let a = pool
            .alloc(
                machine,
                client,
                AllocRequest {
                    vaddr,
                    order: spec.order,
                    tagged: spec.flags.tagged,
                    pinned: spec.flags.pinned,
                    contiguous: spec.flags.contiguous,
                },
            )
            .map_err(refusal)?;
        Ok(Allocated {
            pages: a.pages,
            first_frame: a.first_frame,
            in_tag_storage: a.in_tag_storage,
        })
    }

    fn free(&mut self, client: ClientId, vaddr: u64) -> Result<Freed, Error> {
        let Frames { pool, machine } = self.frames()?;
        let pages = pool.free(machine, client, vaddr).map_err(refusal)?;
        Ok(Freed { pages })
    }

    fn enable_tagging(&mut self, client: ClientId, vaddr: u64, pages: u32) -> Result<(), Error> {
        let Frames { pool, machine } = self.frames()?;
        pool.enable_tagging(machine, client, vaddr, pages)
            .map_err(refusal)
    }

    fn disable_tagging(&mut self, client: ClientId, vaddr: u64, pages: u32) -> Result<(), Error> {
        let Frames { pool, machine } = self.frames()?;
        pool.disable_tagging(machine, client, vaddr, pages)
            .map_err(refusal)
    }

    fn pin(&mut self, client: ClientId, vaddr: u64) -> Result<(), Error> {
        let Frames { pool, machine } = self.frames()?;
        pool.pin(machine, client, vaddr).map_err(refusal)
    }

    fn unpin(&mut self, client: ClientId, vaddr: u64) -> Result<(), Error> {
        self.frames()?.pool.unpin(client, vaddr).map_err(refusal)
    }

    fn query(&mut self, client: ClientId, vaddr: u64) -> Result<PageInfo, Error> {
        self.frames()?
            .pool
            .query(client, vaddr)
            .map(page_info)
            .map_err(refusal)
    }

    fn stats(&mut self, _client: ClientId) -> Result<StatsReply, Error> {
        // Every refusal counts, the decoder's and the authority check's as
        // well as the pool's (or, without frames, the server's own).
        let refused = self.counters.refused_malformed
            + self.counters.refused_permission
            + self.counters.refused_unsupported;
        Ok(match self.frames.as_ref() {
            Some(Frames { pool, .. }) => {
                let s = pool.stats();
                StatsReply {
                    metadata_total: u64::from(s.tag_frames_total),
                    metadata_free: u64::from(s.tag_frames_free),
                    lent: u64::from(s.tag_frames_lent),
                    reserved_blocks: u64::from(s.blocks_reserved),
                    migrations: s.migrations,
                    recalls: s.recalls,
                    failures: s.failures.total() + refused,
                    data_total: u64::from(s.data_frames_total),
                    data_free: u64::from(s.data_frames_free),
                }
            }
            // Without frames the totals are the platform's, and nothing is
            // free: the server can hand out no frame at all.
            None => StatsReply {
                metadata_total: u64::from(self.layout.tag_frames_total()),
                data_total: u64::from(self.layout.data_frames_total()),
                failures: refused,
                ..StatsReply::default()
            },
        })
    }

    fn resolve_fault(
        &mut self,
        client: ClientId,
        vaddr: u64,
        kind: FaultKind,
    ) -> Result<FaultReply, Error> {
        if matches!(kind, FaultKind::TagCheck) {
            self.counters.tag_check_faults += 1;
        }
        let Frames { pool, machine } = self.frames()?;
        match kind {
            FaultKind::Access => Ok(
                match pool
                    .resolve_fault(machine, client, vaddr & !0xfff)
                    .map_err(refusal)?
                {
                    Resolution::Tagged {
                        migrated,
                        deferred_restored,
                    } => FaultReply::Tagged {
                        migrated,
                        deferred: deferred_restored,
                    },
                    Resolution::AlreadyTagged => FaultReply::AlreadyTagged,
                },
            ),
            FaultKind::TagCheck => {
                // Report the allocation tag of the faulting granule; change
                // nothing. The page must be the client's and mapped tagged.
                let info = pool
                    .query(client, vaddr & !0xfff)
                    .map(page_info)
                    .map_err(refusal)?;
                if info.state != PageState::Tagged {
                    return Err(Error::invalid(ArgumentRule::NotAwaitingTags, vaddr));
                }
                let mut tags = [0; TAG_BYTES_PER_FRAME];
                machine.read_tags(info.frame, &mut tags);
                let granule = (untagged_address(vaddr) % 4096) as usize / GRANULE_BYTES;
                Ok(FaultReply::TagCheck {
                    memory_tag: granule_tag(&tags, granule).value(),
                })
            }
        }
    }

    fn reclaim_client(&mut self, client: ClientId) -> Result<Reclaimed, Error> {
        let Frames { pool, machine } = self.frames()?;
        let frames = pool.reclaim_client(machine, client).map_err(refusal)?;
        Ok(Reclaimed { frames })
    }
}

/// Writes `response` or `error` into the reply registers.
fn reply(env: &mut dyn Env, result: Result<Response, Error>) -> MessageInfo {
    let mut words = [0u64; MAX_MESSAGE_WORDS];
    let (label, count) = match result {
        Ok(response) => (Status::Ok as u64, response.encode(&mut words)),
        Err(error) => error.encode(&mut words),
    };
    for (i, w) in words[..count].iter().enumerate() {
        env.set_mr(i, *w);
    }
    MessageInfo::new(label, count)
}

impl<M: Machine> Handler for MemoryServer<M> {
    /// The server never ends: what goes wrong is a typed refusal.
    type Error = Infallible;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), Infallible> {
        match self.start(env) {
            Ok(serving) => {
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: {} clients; tag probe: {}",
                    serving.table.clients.len(),
                    match serving.probe {
                        TagProbe::Stored => "tags stored: tag checks are enforced",
                        TagProbe::NotStored =>
                            "tags NOT stored by this kernel (it gives user threads no MTE): tagged memory is bookkeeping only, no tag check will ever fire",
                        TagProbe::NoTagStorage =>
                            "no tag storage to probe: tagged requests get `unsupported`",
                        TagProbe::Untested => "not run (no frames, and no probe of the server's own mapping)",
                    }
                );
                match serving.home {
                    TagHome::CarveOut { tag_frame, offset } => tagloan_microkit::debug_println!(
                        env,
                        "memory_server: where tags live: in the carve-out the device tree describes, verified: the probe frame's tags read back as data at {:#x} (tag storage frame {tag_frame:#x}, byte {offset:#x})",
                        tag_frame * tagloan_mte::FRAME_BYTES as u64 + offset as u64
                    ),
                    TagHome::Elsewhere { tag_frame, offset } => tagloan_microkit::debug_println!(
                        env,
                        "memory_server: where tags live: NOT in the carve-out the device tree describes: the probe frame's tags are stored, but not at {:#x} (tag storage frame {tag_frame:#x}, byte {offset:#x}). Either they live outside RAM (a hidden tag memory, as stock QEMU's), where lent tag storage cannot collide with them, or the device tree does not match the hardware, and lending its tag storage may corrupt tags or data: on hardware, fix the device tree",
                        tag_frame * tagloan_mte::FRAME_BYTES as u64 + offset as u64
                    ),
                    TagHome::Nowhere => tagloan_microkit::debug_println!(
                        env,
                        "memory_server: where tags live: nowhere: the platform stores no tags (a tag stored through a Tagged mapping does not read back: no MTE2, or a kernel that gives user threads no MTE)"
                    ),
                    TagHome::Unknown => {}
                }
                match serving.frames.as_ref() {
                    Some(Frames { pool, .. }) => {
                        let s = pool.stats();
                        tagloan_microkit::debug_println!(
                            env,
                            "memory_server: serving {} data frames and {} tag storage frames in {} blocks; free after start-up: data_frames_free={} tag_frames_free={}",
                            s.data_frames_total,
                            s.tag_frames_total,
                            s.blocks_total,
                            s.data_frames_free,
                            s.tag_frames_free
                        );
                    }
                    None => tagloan_microkit::debug_println!(
                        env,
                        "memory_server: no frames to serve from (its backend gave it no machine): every request that needs frames gets `unsupported`; decoding, authority and stats are served"
                    ),
                }
                self.serving = Some(serving);
            }
            Err(error) => {
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: cannot start: {error}; every request gets `unsupported`"
                );
                self.start_error = Some(error);
            }
        }
        Ok(())
    }

    /// The fault handler says the run is over (every client finished or
    /// was stopped): the server's final line, with its counters.
    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Infallible> {
        let Some(serving) = self.serving.as_ref() else {
            env.debug_print("memory_server: final: it never started");
            return Ok(());
        };
        let from_fault_handler = serving
            .fault_handler_channel
            .is_some_and(|c| channels.contains(Channel::new(usize::from(c))));
        if !from_fault_handler {
            env.debug_print(
                "memory_server: a notification from a PD that is not the fault handler: ignored",
            );
            return Ok(());
        }
        let c = serving.counters;
        match serving.frames.as_ref() {
            Some(Frames { pool, .. }) => {
                let s = pool.stats();
                let violations =
                    c.invariant_violations + u64::from(pool.check_invariants().is_err());
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: final: calls={} refused_malformed={} refused_permission={} failures={} lent_peak={} tag_frames_lent={} migrations={} tagged_migrations={} recalls={} recalls_beside_tags={} bytes_copied={} deferred_parked={} deferred_restored={} tag_storage_cleans={} tag_frames_cleaned={} tag_lines_cleaned={} data_frames_free={} tag_frames_free={} invariant_checks={} violations={violations} tag_audits={} tag_audit_mismatches={} tag_check_faults={}",
                    c.calls,
                    c.refused_malformed,
                    c.refused_permission,
                    s.failures.total(),
                    c.lent_peak,
                    s.tag_frames_lent,
                    s.migrations,
                    s.tagged_migrations,
                    s.recalls,
                    s.recalls_beside_tags,
                    // Every migration copies one frame.
                    s.migrations * 4096,
                    s.deferred_parked,
                    s.deferred_restored,
                    s.tag_frames_cleaned + s.tag_lines_cleaned,
                    s.tag_frames_cleaned,
                    s.tag_lines_cleaned,
                    s.data_frames_free,
                    s.tag_frames_free,
                    c.invariant_checks + 1,
                    c.tag_audits,
                    c.tag_audit_mismatches,
                    c.tag_check_faults
                );
                if c.stats_call_cycles > 0 && c.recall_call_cycles > 0 {
                    let x100 = c.recall_call_cycles * 100 / c.stats_call_cycles;
                    tagloan_microkit::debug_println!(
                        env,
                        "memory_server: bench: counter ticks (CNTPCT_EL0) in the server, least of the run: a stats call {}, a call that recalled a lent block {} ({}.{:02} stats calls)",
                        c.stats_call_cycles,
                        c.recall_call_cycles,
                        x100 / 100,
                        x100 % 100
                    );
                }
            }
            None => tagloan_microkit::debug_println!(
                env,
                "memory_server: final: calls={} refused_malformed={} refused_permission={} refused_unsupported={}",
                c.calls,
                c.refused_malformed,
                c.refused_permission,
                c.refused_unsupported
            ),
        }
        Ok(())
    }

    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, Infallible> {
        let Some(serving) = self.serving.as_mut() else {
            return Ok(reply(env, Err(Error::bare(Status::Unsupported))));
        };
        serving.counters.calls += 1;
        let result = serving.receive(env, channel, info);
        // After the call's timing, so the check is not counted in it; and
        // for every call, refused or not, so a check runs after each
        // `check_every`-th; before the reply is written, as the audit's own
        // kernel calls use the message registers the reply goes out in.
        if self.check_every > 0 && serving.counters.calls.is_multiple_of(self.check_every) {
            serving.check(env);
        }
        Ok(reply(env, result))
    }
}

impl<M: Machine> Serving<M> {
    /// Reads, decodes and runs one call from `channel`, timing it where the
    /// backend has a counter.
    fn receive(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<Response, Error> {
        let Some(caller) = self.caller(channel) else {
            self.counters.refused_permission += 1;
            return Err(Error::permission_denied(info.label()));
        };
        if info.count() > MAX_MESSAGE_WORDS {
            self.counters.refused_malformed += 1;
            return Err(Error::malformed(DecodeError::WrongCount {
                expected: Op::from_label(info.label()).map_or(0, Op::request_words),
                found: info.count(),
            }));
        }
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        for (i, w) in words[..info.count()].iter_mut().enumerate() {
            *w = env.mr(i);
        }
        let start = env.cycles();
        let recalls = self.frames.as_ref().map(|f| f.pool.stats().recalls);
        let result = self.call(caller, info.label(), &words[..info.count()]);
        if let (Some(start), Some(end)) = (start, env.cycles()) {
            let cycles = end.wrapping_sub(start);
            let keep_least = |slot: &mut u64| {
                if *slot == 0 || cycles < *slot {
                    *slot = cycles;
                }
            };
            if recalls != self.frames.as_ref().map(|f| f.pool.stats().recalls) {
                keep_least(&mut self.counters.recall_call_cycles);
            } else if info.label() == Op::Stats as u64 && result.is_ok() {
                keep_least(&mut self.counters.stats_call_cycles);
            }
        }
        result
    }

    /// The periodic check: the pool's invariants, and, where the probe
    /// found the tags in the carve-out, the tag audit (elsewhere the tag
    /// storage bytes are not the tags). Each prints its first failure.
    fn check(&mut self, env: &mut dyn Env) {
        let Some(frames) = self.frames.as_mut() else {
            return;
        };
        self.counters.invariant_checks += 1;
        if let Err(violation) = frames.pool.check_invariants() {
            self.counters.invariant_violations += 1;
            if self.counters.invariant_violations == 1 {
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: INVARIANT VIOLATED: {violation}"
                );
            }
        }
        if !matches!(self.home, TagHome::CarveOut { .. }) {
            return;
        }
        let (audited, mismatches, first) =
            audit_tags(&frames.pool, &mut frames.machine, &self.table);
        let before = self.counters.tag_audit_mismatches;
        self.counters.tag_audits += audited;
        self.counters.tag_audit_mismatches += mismatches;
        if let (0, Some(m)) = (before, first) {
            tagloan_microkit::debug_println!(
                env,
                "memory_server: TAG AUDIT: frame {:#x} (client {}, page {:#x}) has tag byte {} = {:#04x} by LDG, but its tag storage at {:#x} holds {:#04x}: tags are not where the pool keeps them",
                m.frame,
                m.client,
                m.vaddr,
                m.byte,
                m.by_ldg,
                m.tag_frame * tagloan_mte::FRAME_BYTES as u64 + (m.offset + m.byte) as u64,
                m.in_storage
            );
        }
    }
}
