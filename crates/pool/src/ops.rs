//! The operations of the pool: what clients, the fault handler and the server
//! ask of it (DESIGN §5 and §6), and the types they take and return. Each
//! operation's body lives with its concern: `alloc.rs` (allocation, free,
//! pin, query), `tagging.rs` (tag enablement, faults, deferred tags),
//! `recall.rs` (reservation, recall, migration), `evacuate.rs` (contiguous
//! ranges), `reclaim.rs` (stopped clients, server frames), over
//! `validate.rs` (checks against windows and page maps) and `accounting.rs`
//! (the one writer of frame entries, counters, block references).
//!
//! Each public operation runs in two phases. The *plan* phase validates the
//! request and checks that every frame, recall destination and deferred-tag
//! slot it will need is there, changing nothing. The *commit* phase then
//! cannot fail. So a refused request leaves the pool exactly as it was (I12).

use crate::error::PoolError;
use crate::frame::Mode;
use crate::layout::BlockId;
use crate::{Access, ClientId, Machine, Pool, Work};
use tagloan_mte::{Pfn, FRAME_BYTES};

pub(crate) const PAGE: u64 = FRAME_BYTES as u64;

/// Tag blocks one request can touch: an order-9 block covers at most
/// `512 / 32 + 1` groups.
pub(crate) const MAX_BLOCKS_PER_REQUEST: usize = 32;

/// Candidate ranges a contiguous request examines before it gives up.
pub(crate) const EVACUATION_CANDIDATES: u32 = 8;

pub(crate) type BlockList = heapless::Vec<BlockId, MAX_BLOCKS_PER_REQUEST>;

/// What a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRequest {
    /// Where to map it, inside the client's window.
    pub vaddr: u64,
    /// Buddy order: `2^order` pages.
    pub order: u8,
    /// Map it tagged (zeroed tags, reserved storage).
    pub tagged: bool,
    /// It never moves (and so never lives in tag storage).
    pub pinned: bool,
    /// It stays physically contiguous (and so never lives in tag storage).
    pub contiguous: bool,
}

/// What an allocation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The mapped address.
    pub vaddr: u64,
    /// Pages mapped.
    pub pages: u32,
    /// The first frame (the frames are contiguous when handed out).
    pub first_frame: Pfn,
    /// Whether the frames are lent tag storage.
    pub in_tag_storage: bool,
}

/// The state of a page, as `query` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// Mapped untagged.
    Untagged,
    /// Mapped tagged.
    Tagged,
    /// Tagging enabled, waiting for the first access.
    MetadataNone,
}

/// What `query` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// The page's state.
    pub state: PageState,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Whether it belongs to a contiguous allocation.
    pub contiguous: bool,
    /// Whether its frame is lent tag storage.
    pub in_tag_storage: bool,
    /// Whether tags are parked for it in the deferred store.
    pub deferred_tags: bool,
    /// The physical frame behind it.
    pub frame: Pfn,
}

/// What resolving a fault did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The page is now mapped tagged.
    Tagged {
        migrated: bool,
        deferred_restored: bool,
    },
    /// The page was already tagged: a second fault raced with the first.
    AlreadyTagged,
}

pub(crate) fn access_for(mode: Mode) -> Access {
    match mode {
        Mode::Untagged => Access::Normal,
        Mode::Tagged => Access::Tagged,
        Mode::MetadataNone => Access::NoAccess,
    }
}

impl Pool<'_> {
    /// Allocates `2^order` pages for `client` at `request.vaddr`.
    ///
    /// Work: one buddy search over at most `10 * 4` list heads (plus
    /// [`crate::placement::LENT_CANDIDATES`] for a recall), at most 9 splits,
    /// `2^order` pages zeroed (and tags zeroed when tagged), a recall of the
    /// touched blocks (at most `block_frames` pages copied per block), and a
    /// refile of each changed group (`32 * block_frames` entries).
    pub fn alloc<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        request: AllocRequest,
    ) -> Result<Allocation, PoolError> {
        self.operation(|pool| pool.alloc_inner(machine, client, request))
    }

    /// Frees the allocation whose first page is at `vaddr`.
    pub fn free<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<u32, PoolError> {
        self.operation(|pool| pool.free_inner(machine, client, vaddr))
    }

    /// Enables tagging on `pages` pages at `vaddr`, like `mprotect(PROT_MTE)`:
    /// untagged pages become metadata-none (no access, data kept), pages
    /// already tagged are left alone. No storage is reserved yet.
    pub fn enable_tagging<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        self.operation(|pool| pool.enable_tagging_inner(machine, client, vaddr, pages))
    }

    /// Disables tagging on `pages` pages at `vaddr`: they are mapped untagged,
    /// their block references dropped and their tags discarded.
    pub fn disable_tagging<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        self.operation(|pool| pool.disable_tagging_inner(machine, client, vaddr, pages))
    }

    /// Resolves a fault of `client` on the metadata-none page at `vaddr`:
    /// reserves its block (recalling it if lent), moves the page out of tag
    /// storage if it lives there, writes its tags (deferred ones, or zero)
    /// and maps it tagged. The fault handler calls this for the client.
    pub fn resolve_fault<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<Resolution, PoolError> {
        self.operation(|pool| pool.resolve_fault_inner(machine, client, vaddr))
    }

    /// Pins the page at `vaddr`: it will never move. A page in tag storage is
    /// migrated to the data pool first, like a long-term pin leaving CMA.
    pub fn pin<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<(), PoolError> {
        self.operation(|pool| pool.pin_inner(machine, client, vaddr))
    }

    /// Unpins the page at `vaddr`.
    pub fn unpin(&mut self, client: ClientId, vaddr: u64) -> Result<(), PoolError> {
        self.operation(|pool| pool.unpin_inner(client, vaddr))
    }

    /// Reports the state of the page at `vaddr`.
    pub fn query(&mut self, client: ClientId, vaddr: u64) -> Result<PageInfo, PoolError> {
        self.operation(|pool| pool.query_inner(client, vaddr))
    }

    /// Frees every frame of `client` (after it was stopped). Returns the
    /// number of frames reclaimed. Work: a word per 4,096 pages of its
    /// window, and a release and at most three bitmap words per frame held.
    pub fn reclaim_client<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
    ) -> Result<u32, PoolError> {
        self.operation(|pool| pool.reclaim_inner(machine, client))
    }

    /// Takes one data frame for the server's own use, for ever. A tagged one
    /// holds its tag block permanently (like the RFC's zero page); the server
    /// uses it to probe whether the hardware stores tags.
    pub fn take_server_frame<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        tagged: bool,
    ) -> Result<Pfn, PoolError> {
        self.operation(|pool| pool.server_frame_inner(machine, tagged))
    }

    /// Runs one public operation: fresh step counters, failures counted.
    fn operation<T>(
        &mut self,
        body: impl FnOnce(&mut Self) -> Result<T, PoolError>,
    ) -> Result<T, PoolError> {
        self.work = Work::default();
        let result = body(self);
        if let Err(error) = &result {
            self.stats.failures.count(error);
        }
        result
    }
}
