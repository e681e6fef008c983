//! The tagloan pool core: where every physical frame goes.
//!
//! The pool owns the frames of a system, data memory and MTE tag storage
//! alike. It lends tag storage frames to untagged, movable data while no tags
//! need them, and recalls them (migrating the borrowers out) when a tagged
//! allocation or a tag-enable fault needs the tag block. See `DESIGN.md` §2–§5
//! for the model and §3 for the invariants `check_invariants()` verifies.
//!
//! The core is pure: `no_std`, no `alloc`, and no raw memory access (the
//! workspace denies it). The caller sizes its
//! tables with [`Pool::storage_sizes`] and hands them in as slices; every
//! table is bounded. Effects on the machine (map, unmap, copy, zero, tags) go
//! through the [`Kernel`] and [`TagOps`] traits the caller implements. Every
//! operation either completes or fails with a typed [`PoolError`] and leaves
//! the pool exactly as it was (I12): it plans first, checks that the plan can
//! be carried out, and only then changes anything.
#![no_std]

mod accounting;
mod alloc;
mod bounds;
mod buddy;
mod error;
mod evacuate;
mod frame;
mod invariants;
mod layout;
mod mapped;
mod ops;
mod placement;
mod recall;
mod reclaim;
mod snapshot;
mod tagging;
mod validate;
mod violation;

pub use bounds::Bounds;
pub use error::{ArgumentRule, BusyReason, InitError, PoolError};
pub use frame::{
    BlockState, Class, CorruptEntry, Frame, FrameEntry, Mode, Owned, CLASSES, MAX_CLIENTS,
    MAX_DEFERRED_SLOTS, MAX_ORDER, ORDERS,
};
pub use layout::{
    BlockId, FrameIndex, Layout, LayoutError, Location, PoolKind, RegionSpec, TagSpec, MAX_FRAMES,
    MAX_REGIONS,
};
pub use ops::{AllocRequest, Allocation, PageInfo, PageState, Resolution};
pub use snapshot::PoolHeader;
pub use tagloan_mte::{Access, FrameTags, Kernel, Pfn, TagOps, FRAME_BYTES, ZERO_TAGS};
pub use violation::{Invariant, Subject, Violation};

use layout::NIL;

/// Identifies a client: its index in the client table given to [`Pool::new`].
pub type ClientId = u8;

/// Everything the pool needs from the machine.
pub trait Machine: Kernel + TagOps {}
impl<T: Kernel + TagOps> Machine for T {}

/// Where untagged movable data goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LendPolicy {
    /// The data pool first; tag storage only when it is exhausted (the RFC).
    LastResort,
    /// Tag storage first whenever it is more than half of free memory (CMA's rule).
    Balanced,
}

/// Where tagged data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagPlacement {
    /// Prefer frames whose tag block is reserved, then free, then lent
    /// (cheapest recall first); untagged data avoids reserved groups.
    Affinity,
    /// The RFC's way: any free frame, then reserve its block. Kept to measure
    /// what affinity saves; not meant for production.
    AnyPage,
}

/// Pool configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lending policy for untagged movable data.
    pub lend: LendPolicy,
    /// Placement of tagged data.
    pub placement: TagPlacement,
    /// Slots in the deferred-tag store.
    pub deferred_slots: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            lend: LendPolicy::LastResort,
            placement: TagPlacement::Affinity,
            deferred_slots: 64,
        }
    }
}

/// A client as declared in the system: its heap window and quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSpec {
    /// First virtual address of the heap window (4 KiB aligned).
    pub window_base: u64,
    /// Size of the window in pages.
    pub window_pages: u32,
    /// Most frames the client may hold at once.
    pub quota_frames: u32,
}

impl ClientSpec {
    /// The heap window.
    pub const fn window(&self) -> tagloan_mte::Window {
        tagloan_mte::Window {
            base: self.window_base,
            pages: self.window_pages,
        }
    }
}

/// Per-client state, kept in a caller-provided table. Plain old data, so a
/// server can carve the table out of its bookkeeping region.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct ClientState {
    window_base: u64,
    window_pages: u32,
    quota_frames: u32,
    frames_used: u32,
    /// Offset of this client's pages in the page map.
    map_first: u32,
    /// Offset of this client's words in the mapped-page bitmap: its summary
    /// words first, then one bit per window page (`mapped.rs`).
    bits_first: u32,
    /// How many of those words are summary words.
    summary_words: u32,
}

impl ClientState {
    /// Frames the client holds now.
    pub fn frames_used(&self) -> u32 {
        self.frames_used
    }
    /// The client's quota.
    pub fn quota_frames(&self) -> u32 {
        self.quota_frames
    }
}

/// One slot of the bounded deferred-tag store (tags parked by frame).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(C)]
pub struct DeferredSlot {
    frame: FrameIndex,
    tags: FrameTags,
}

impl Default for DeferredSlot {
    fn default() -> DeferredSlot {
        DeferredSlot {
            frame: NIL,
            tags: ZERO_TAGS,
        }
    }
}

/// How long each caller-provided table must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageSizes {
    /// Frame entries: one per managed frame.
    pub frames: usize,
    /// Page map entries: one per page of every client window.
    pub page_map: usize,
    /// Mapped-page bitmap words: per client, a bit per window page and a
    /// summary bit per 64 of those.
    pub map_bits: usize,
    /// Deferred-tag slots.
    pub deferred: usize,
    /// Client states.
    pub clients: usize,
    /// Tag block states: one per tag block.
    pub blocks: usize,
}

impl StorageSizes {
    /// Bookkeeping bytes for these tables.
    pub fn bytes(&self) -> usize {
        self.frames * core::mem::size_of::<FrameEntry>()
            + self.page_map * core::mem::size_of::<FrameIndex>()
            + self.map_bits * core::mem::size_of::<u64>()
            + self.deferred * core::mem::size_of::<DeferredSlot>()
            + self.clients * core::mem::size_of::<ClientState>()
            + self.blocks * core::mem::size_of::<BlockState>()
    }
}

/// The tables the caller provides, sized by [`Pool::storage_sizes`].
pub struct Storage<'a> {
    /// One entry per managed frame.
    pub frames: &'a mut [FrameEntry],
    /// One entry per window page of every client.
    pub page_map: &'a mut [FrameIndex],
    /// Which window pages are mapped, as bits.
    pub map_bits: &'a mut [u64],
    /// The deferred-tag store.
    pub deferred: &'a mut [DeferredSlot],
    /// One state per client.
    pub clients: &'a mut [ClientState],
    /// One state per tag block.
    pub blocks: &'a mut [BlockState],
}

impl<'a> Storage<'a> {
    /// Carves the tables out of one bookkeeping region, as a server does with
    /// the memory region `system.xml` maps for it. The region must be 8-byte
    /// aligned and at least [`StorageSizes::bytes`] long. Returns the tables
    /// and the bytes left over.
    pub fn carve(
        region: &'a mut [u8],
        sizes: &StorageSizes,
    ) -> Result<(Storage<'a>, &'a mut [u8]), InitError> {
        use zerocopy::FromBytes;
        let given = region.len();
        let too_small = InitError::BookkeepingTooSmall {
            needed: sizes.bytes(),
            given,
        };
        if region.as_ptr().align_offset(8) != 0 {
            return Err(InitError::BookkeepingMisaligned);
        }
        if given < sizes.bytes() {
            return Err(too_small);
        }
        // 8-byte tables first, so every table starts aligned.
        let (frames, rest) = <[FrameEntry]>::mut_from_prefix_with_elems(region, sizes.frames)
            .map_err(|_| too_small)?;
        let (clients, rest) = <[ClientState]>::mut_from_prefix_with_elems(rest, sizes.clients)
            .map_err(|_| too_small)?;
        let (map_bits, rest) =
            <[u64]>::mut_from_prefix_with_elems(rest, sizes.map_bits).map_err(|_| too_small)?;
        let (page_map, rest) = <[FrameIndex]>::mut_from_prefix_with_elems(rest, sizes.page_map)
            .map_err(|_| too_small)?;
        let (deferred, rest) = <[DeferredSlot]>::mut_from_prefix_with_elems(rest, sizes.deferred)
            .map_err(|_| too_small)?;
        let (blocks, rest) = <[BlockState]>::mut_from_prefix_with_elems(rest, sizes.blocks)
            .map_err(|_| too_small)?;
        Ok((
            Storage {
                frames,
                page_map,
                map_bits,
                deferred,
                clients,
                blocks,
            },
            rest,
        ))
    }
}

/// Failures by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub invalid_argument: u64,
    pub not_owner: u64,
    pub out_of_quota: u64,
    pub no_memory: u64,
    pub already_mapped: u64,
    pub not_mapped: u64,
    pub busy: u64,
    pub unsupported: u64,
    pub deferred_store_full: u64,
}

impl FailureCounts {
    fn count(&mut self, error: &PoolError) {
        let counter = match error {
            PoolError::InvalidArgument { .. } => &mut self.invalid_argument,
            PoolError::NotOwner { .. } => &mut self.not_owner,
            PoolError::OutOfQuota { .. } => &mut self.out_of_quota,
            PoolError::NoMemory { .. } => &mut self.no_memory,
            PoolError::AlreadyMapped { .. } => &mut self.already_mapped,
            PoolError::NotMapped { .. } => &mut self.not_mapped,
            PoolError::Busy { .. } => &mut self.busy,
            PoolError::Unsupported => &mut self.unsupported,
            PoolError::DeferredStoreFull { .. } => &mut self.deferred_store_full,
        };
        *counter += 1;
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.invalid_argument
            + self.not_owner
            + self.out_of_quota
            + self.no_memory
            + self.already_mapped
            + self.not_mapped
            + self.busy
            + self.unsupported
            + self.deferred_store_full
    }
}

/// Pool statistics (DESIGN §6 `stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every managed frame.
    pub frames_total: u32,
    /// Data pool frames.
    pub data_frames_total: u32,
    /// Tag storage frames (the RFC's `MetadataTotal`).
    pub tag_frames_total: u32,
    /// Free data pool frames.
    pub data_frames_free: u32,
    /// Free tag storage frames (the RFC's `MetadataFree`).
    pub tag_frames_free: u32,
    /// Tag storage frames lent as data.
    pub tag_frames_lent: u32,
    /// Tag blocks.
    pub blocks_total: u32,
    /// Tag blocks reserved for tags.
    pub blocks_reserved: u32,
    /// Frames mapped tagged.
    pub frames_tagged: u32,
    /// Frames used by the server itself.
    pub frames_server: u32,
    /// Pages moved from one frame to another.
    pub migrations: u64,
    /// Tag blocks taken back from borrowers.
    pub recalls: u64,
    /// Tags parked in the deferred store.
    pub deferred_parked: u64,
    /// Deferred tags restored on a tagged mapping.
    pub deferred_restored: u64,
    /// Tagged pages moved to another frame (by evacuation), their tags
    /// copied or parked.
    pub tagged_migrations: u64,
    /// Recalls of a block beside a reserved one: the borrowers' frames are
    /// the neighbours of tag frames holding live tags.
    pub recalls_beside_tags: u64,
    /// Tag storage cleans (DESIGN §7): of a tag frame's data lines before
    /// its block holds tags (`B` per reservation), and of a data frame's
    /// tag lines when it stops being tagged (one per untagging).
    pub tag_frames_cleaned: u64,
    pub tag_lines_cleaned: u64,
    /// Requests refused, by cause.
    pub failures: FailureCounts,
}

/// Elementary steps of the last operation, for the bounded-work tests
/// (DESIGN §9): every operation has a documented bound on each counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Frame entries examined by scans (refiling, candidate search, evacuation).
    pub frames_scanned: u64,
    /// Buddy splits.
    pub splits: u64,
    /// Buddy merges.
    pub merges: u64,
    /// Pages copied.
    pub pages_copied: u64,
    /// Pages zeroed.
    pub pages_zeroed: u64,
    /// Tag writes (zero, copy or restore of one frame's tags).
    pub tag_writes: u64,
    /// Tag storage cleans asked of the machine (a tag frame's data lines,
    /// or a frame's tag lines): cache maintenance of a page each.
    pub tag_cleans: u64,
}

/// The pool. Borrows its tables from the caller.
pub struct Pool<'a> {
    layout: Layout,
    config: Config,
    frames: &'a mut [FrameEntry],
    page_map: &'a mut [FrameIndex],
    map_bits: &'a mut [u64],
    deferred: &'a mut [DeferredSlot],
    clients: &'a mut [ClientState],
    blocks: &'a mut [BlockState],
    data_lists: [[FrameIndex; CLASSES]; ORDERS],
    tag_lists: [FrameIndex; ORDERS],
    /// Per data class, and for the tag pool last: bit `order` is set when
    /// that list has a block, so a search finds the lowest order with one
    /// in one word (kept by `list_push` and `list_remove`).
    nonempty_orders: [u16; CLASSES + 1],
    stats: Stats,
    work: Work,
    /// Where the next search for a range to evacuate starts.
    evacuation_cursor: FrameIndex,
    /// The tag block where the next search for a page to move out of a
    /// reserved group starts, and the frame of its group it starts at (a
    /// hint, like the evacuation cursor).
    swap_cursor: BlockId,
    swap_offset: u32,
}

impl<'a> Pool<'a> {
    /// The table sizes [`Pool::new`] needs for this layout, clients and config.
    pub fn storage_sizes(layout: &Layout, clients: &[ClientSpec], config: &Config) -> StorageSizes {
        StorageSizes {
            frames: layout.frames_total() as usize,
            page_map: clients.iter().map(|c| c.window_pages as usize).sum(),
            map_bits: clients.iter().map(|c| mapped::words(c.window_pages)).sum(),
            deferred: usize::from(config.deferred_slots),
            clients: clients.len(),
            blocks: layout.blocks_total() as usize,
        }
    }

    /// Builds the pool: every frame starts free in its pool.
    pub fn new(
        layout: Layout,
        clients: &[ClientSpec],
        config: Config,
        storage: Storage<'a>,
    ) -> Result<Pool<'a>, InitError> {
        let sizes = Pool::storage_sizes(&layout, clients, &config);
        validate::check_storage_sizes([
            ("frames", sizes.frames, storage.frames.len()),
            ("page_map", sizes.page_map, storage.page_map.len()),
            ("map_bits", sizes.map_bits, storage.map_bits.len()),
            ("deferred", sizes.deferred, storage.deferred.len()),
            ("clients", sizes.clients, storage.clients.len()),
            ("blocks", sizes.blocks, storage.blocks.len()),
        ])?;
        if clients.len() > MAX_CLIENTS {
            return Err(InitError::TooManyClients {
                count: clients.len(),
            });
        }
        if usize::from(config.deferred_slots) > MAX_DEFERRED_SLOTS {
            return Err(InitError::TooManyDeferredSlots {
                count: usize::from(config.deferred_slots),
            });
        }
        for (i, c) in clients.iter().enumerate() {
            if c.window_pages == 0
                || !c.window_base.is_multiple_of(FRAME_BYTES as u64)
                || c.window().end().is_none()
            {
                return Err(InitError::BadWindow { client: i as u8 });
            }
        }
        for (i, a) in clients.iter().enumerate() {
            for (j, b) in clients.iter().enumerate().skip(i + 1) {
                if a.window().overlaps_window(&b.window()) {
                    return Err(InitError::WindowsOverlap {
                        first: i as u8,
                        second: j as u8,
                    });
                }
            }
        }
        // Page-map offsets are u32: the windows must fit, or clients would share slots.
        let window_pages_total: u64 = clients.iter().map(|c| u64::from(c.window_pages)).sum();
        if window_pages_total > u64::from(u32::MAX) {
            return Err(InitError::BadWindow {
                client: (clients.len() - 1) as u8,
            });
        }
        let mut map_first = 0u32;
        let mut bits_first = 0u32;
        for (state, spec) in storage.clients.iter_mut().zip(clients) {
            *state = ClientState {
                window_base: spec.window_base,
                window_pages: spec.window_pages,
                quota_frames: spec.quota_frames,
                frames_used: 0,
                map_first,
                bits_first,
                summary_words: mapped::summary_words(spec.window_pages),
            };
            map_first += spec.window_pages;
            // Under 1/32 of the window's pages plus 2 per client, so the
            // total fits in u32 as the page map's offsets do.
            bits_first += mapped::words(spec.window_pages) as u32;
        }
        storage.page_map.fill(NIL);
        storage.map_bits.fill(0);
        storage.deferred.fill(DeferredSlot::default());
        storage.frames.fill(FrameEntry::pack(Frame::FreeTail));
        storage.blocks.fill(BlockState::default());
        let stats = Stats {
            frames_total: layout.frames_total(),
            data_frames_total: layout.data_frames_total(),
            tag_frames_total: layout.tag_frames_total(),
            blocks_total: layout.blocks_total(),
            ..Stats::default()
        };
        let mut pool = Pool {
            layout,
            config,
            frames: storage.frames,
            page_map: storage.page_map,
            map_bits: storage.map_bits,
            deferred: storage.deferred,
            clients: storage.clients,
            blocks: storage.blocks,
            data_lists: [[NIL; CLASSES]; ORDERS],
            tag_lists: [NIL; ORDERS],
            nonempty_orders: [0; CLASSES + 1],
            stats,
            work: Work::default(),
            evacuation_cursor: 0,
            swap_cursor: 0,
            swap_offset: 0,
        };
        for region in 0..layout.region_count() {
            let r = *layout.region(region);
            pool.seed_span(r.data_first, r.data_frames);
            pool.seed_span(r.tag_first, r.tag_frames);
        }
        Ok(pool)
    }

    /// Frees a whole span into the buddy lists, as maximal aligned blocks.
    fn seed_span(&mut self, first: FrameIndex, frames: u32) {
        let mut offset = 0u32;
        while offset < frames {
            let mut order = MAX_ORDER;
            while !offset.is_multiple_of(1 << order) || offset + (1 << order) > frames {
                order -= 1;
            }
            self.insert_free_block(first + offset, order);
            offset += 1 << order;
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current statistics.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Elementary steps taken by the last operation.
    pub fn last_work(&self) -> Work {
        self.work
    }

    /// Number of declared clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The state of `client`, if it exists.
    pub fn client(&self, client: ClientId) -> Option<&ClientState> {
        self.clients.get(usize::from(client))
    }

    /// The unpacked state of `frame`, for inspection and pictures.
    pub fn frame(&self, frame: FrameIndex) -> Option<Result<Frame, CorruptEntry>> {
        self.frames.get(frame as usize).map(|entry| entry.unpack())
    }

    /// A fingerprint of every table and counter except the failure counts:
    /// equal before and after a failed operation (I12). FNV-1a, for tests.
    pub fn fingerprint(&self) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut mix = |word: u64| {
            for byte in word.to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x100_0000_01b3);
            }
        };
        self.frames.iter().for_each(|f| mix(f.raw()));
        self.page_map.iter().for_each(|&p| mix(u64::from(p)));
        self.map_bits.iter().for_each(|&w| mix(w));
        for slot in self.deferred.iter() {
            mix(u64::from(slot.frame));
            slot.tags.iter().for_each(|&b| mix(u64::from(b)));
        }
        for c in self.clients.iter() {
            mix(c.window_base);
            mix(u64::from(c.frames_used));
        }
        self.blocks.iter().for_each(|b| mix(u64::from(b.raw())));
        self.data_lists
            .iter()
            .flatten()
            .for_each(|&h| mix(u64::from(h)));
        self.tag_lists.iter().for_each(|&h| mix(u64::from(h)));
        let s = Stats {
            failures: FailureCounts::default(),
            ..self.stats
        };
        for word in [
            u64::from(s.data_frames_free),
            u64::from(s.tag_frames_free),
            u64::from(s.tag_frames_lent),
            u64::from(s.blocks_reserved),
            u64::from(s.frames_tagged),
            u64::from(s.frames_server),
            s.migrations,
            s.recalls,
            s.deferred_parked,
            s.deferred_restored,
            s.tagged_migrations,
            s.recalls_beside_tags,
            s.tag_frames_cleaned,
            s.tag_lines_cleaned,
        ] {
            mix(word);
        }
        // The evacuation cursor is a hint, not state: left out.
        hash
    }
}
