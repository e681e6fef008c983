//! The operations of the pool: what clients, the fault handler and the server
//! ask of it (DESIGN §5 and §6).
//!
//! Each public operation runs in two phases. The *plan* phase validates the
//! request and checks that every frame, recall destination and deferred-tag
//! slot it will need is there, changing nothing. The *commit* phase then
//! cannot fail. So a refused request leaves the pool exactly as it was (I12).

use crate::error::{ArgumentRule, BusyReason, PoolError};
use crate::frame::{Frame, Mode, Owned, MAX_ORDER};
use crate::layout::{BlockId, FrameIndex, PoolKind, NIL};
use crate::{Access, ClientId, ClientState, Machine, Pool, Work};
use tagloan_mte::{FrameTags, Pfn, FRAME_BYTES, ZERO_TAGS};

const PAGE: u64 = FRAME_BYTES as u64;

/// Tag blocks one request can touch: an order-9 block covers at most
/// `512 / 32 + 1` groups.
const MAX_BLOCKS_PER_REQUEST: usize = 32;

/// Candidate ranges a contiguous request examines before it gives up.
pub(crate) const EVACUATION_CANDIDATES: u32 = 8;

type BlockList = heapless::Vec<BlockId, MAX_BLOCKS_PER_REQUEST>;

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

fn access_for(mode: Mode) -> Access {
    match mode {
        Mode::Untagged => Access::Normal,
        Mode::Tagged => Access::Tagged,
        Mode::MetadataNone => Access::NoAccess,
    }
}

impl Pool<'_> {
    // ----- public operations -------------------------------------------------

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
    /// number of frames reclaimed. Work: one pass over its window.
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

    // ----- validation ---------------------------------------------------------

    fn client_state(&self, client: ClientId) -> Result<ClientState, PoolError> {
        self.clients
            .get(usize::from(client))
            .copied()
            .ok_or(PoolError::InvalidArgument {
                rule: ArgumentRule::UnknownClient,
                value: u64::from(client),
            })
    }

    /// The first window page of `pages` pages at `vaddr`, checked.
    fn window_range(&self, client: ClientId, vaddr: u64, pages: u32) -> Result<u32, PoolError> {
        let state = self.client_state(client)?;
        if !vaddr.is_multiple_of(PAGE) {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Misaligned,
                value: vaddr,
            });
        }
        if pages == 0 {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::BadPageCount,
                value: 0,
            });
        }
        let window_end = state.window_base + u64::from(state.window_pages) * PAGE;
        let inside = vaddr >= state.window_base && vaddr < window_end;
        if !inside {
            for (other, s) in self.clients.iter().enumerate() {
                let end = s.window_base + u64::from(s.window_pages) * PAGE;
                if vaddr >= s.window_base && vaddr < end {
                    return Err(PoolError::NotOwner {
                        client,
                        vaddr,
                        owner: other as u8,
                    });
                }
            }
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OutsideWindow,
                value: vaddr,
            });
        }
        let first = ((vaddr - state.window_base) / PAGE) as u32;
        if u64::from(first) + u64::from(pages) > u64::from(state.window_pages) {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OutsideWindow,
                value: vaddr,
            });
        }
        Ok(first)
    }

    fn map_slot(&self, client: ClientId, page: u32) -> usize {
        (self.clients[usize::from(client)].map_first + page) as usize
    }

    fn mapped(&self, client: ClientId, page: u32) -> Option<FrameIndex> {
        match self.page_map[self.map_slot(client, page)] {
            NIL => None,
            frame => Some(frame),
        }
    }

    fn vaddr_of(&self, client: ClientId, page: u32) -> u64 {
        self.clients[usize::from(client)].window_base + u64::from(page) * PAGE
    }

    fn pfn(&self, index: FrameIndex) -> Pfn {
        match self.layout.pfn(index) {
            Some(pfn) => pfn,
            None => panic!("frame {index} is not managed"),
        }
    }

    /// The frame mapped at `vaddr`, which `client` owns.
    fn owned_page(
        &self,
        client: ClientId,
        vaddr: u64,
    ) -> Result<(u32, FrameIndex, Owned), PoolError> {
        let page = self.window_range(client, vaddr, 1)?;
        let index = self
            .mapped(client, page)
            .ok_or(PoolError::NotMapped { vaddr })?;
        match self.entry(index) {
            Frame::Owned(owned) if owned.client == client && owned.page == page => {
                Ok((page, index, owned))
            }
            other => {
                panic!("page map of client {client} points at frame {index} in state {other:?}")
            }
        }
    }

    /// Whether an owned page must move before it can be tagged: it lives in
    /// tag storage, or in memory without tag storage.
    fn must_move_to_tag(&self, index: FrameIndex) -> bool {
        self.pool_of(index) == PoolKind::Tag || self.layout.group_block(index).is_none()
    }

    // ----- counters and entries ----------------------------------------------

    /// Writes `frame` at `index`, keeping the lent and tagged counters in step.
    fn put(&mut self, index: FrameIndex, frame: Frame) {
        let in_tag = self.pool_of(index) == PoolKind::Tag;
        let was = self.entry(index);
        if let Frame::Owned(old) = was {
            if in_tag {
                self.stats.tag_frames_lent -= 1;
            }
            if old.mode == Mode::Tagged {
                self.stats.frames_tagged -= 1;
            }
        }
        if let Frame::Owned(new) = frame {
            if in_tag {
                self.stats.tag_frames_lent += 1;
            }
            if new.mode == Mode::Tagged {
                self.stats.frames_tagged += 1;
            }
        }
        self.set(index, frame);
    }

    fn set_map(&mut self, client: ClientId, page: u32, frame: FrameIndex) {
        let slot = self.map_slot(client, page);
        self.page_map[slot] = frame;
    }

    // ----- tag blocks -------------------------------------------------------

    fn add_ref(&mut self, data_frame: FrameIndex) {
        let block = self
            .layout
            .group_block(data_frame)
            .expect("tagged frame has a tag block");
        let first = self.layout.block_tag_frames(block).start;
        match self.entry(first) {
            Frame::TagReserved { refs, holds } => self.set(
                first,
                Frame::TagReserved {
                    refs: refs + 1,
                    holds,
                },
            ),
            other => {
                panic!("tagging frame {data_frame} whose block {block} is not reserved: {other:?}")
            }
        }
    }

    fn add_hold(&mut self, block: BlockId) {
        let first = self.layout.block_tag_frames(block).start;
        match self.entry(first) {
            Frame::TagReserved { refs, holds } => self.set(
                first,
                Frame::TagReserved {
                    refs,
                    holds: holds + 1,
                },
            ),
            other => panic!("holding block {block} which is not reserved: {other:?}"),
        }
    }

    /// Drops one tagged frame's reference; the block returns to the tag pool
    /// when nothing holds it any more.
    fn drop_ref(&mut self, data_frame: FrameIndex) {
        let block = self
            .layout
            .group_block(data_frame)
            .expect("tagged frame has a tag block");
        let first = self.layout.block_tag_frames(block).start;
        let Frame::TagReserved { refs, holds } = self.entry(first) else {
            panic!("untagging frame {data_frame} whose block {block} is not reserved");
        };
        let refs = refs.checked_sub(1).expect("block refcount underflow");
        if refs == 0 && holds == 0 {
            self.release_block(block);
        } else {
            self.set(first, Frame::TagReserved { refs, holds });
        }
    }

    fn release_block(&mut self, block: BlockId) {
        for frame in self.layout.block_tag_frames(block) {
            self.insert_free_block(frame, 0);
        }
        self.stats.blocks_reserved -= 1;
        self.refile_group(block);
    }

    /// The tag blocks touched by `frames` data frames at `head` that are not
    /// reserved yet.
    fn unreserved_blocks(&self, head: FrameIndex, frames: u32) -> BlockList {
        let mut blocks = BlockList::new();
        for block in self.blocks_touched(head, frames) {
            if !self.block_reserved(block) {
                // Capacity covers an order-9 range even with one-frame blocks.
                let _ = blocks.push(block);
            }
        }
        blocks
    }

    fn free_frames_in(&self, block: BlockId) -> u32 {
        self.layout
            .block_tag_frames(block)
            .filter(|&f| matches!(self.entry(f), Frame::FreeHead { .. } | Frame::FreeTail))
            .count() as u32
    }

    /// Plan check for reserving `blocks`: every borrower needs a destination
    /// outside them, with `data_taken` data frames already spoken for.
    fn check_reservation(&self, blocks: &[BlockId], data_taken: u32) -> Result<(), PoolError> {
        self.check_reservation_moving(blocks, data_taken, 0)
    }

    /// As [`Pool::check_reservation`], with `moving` borrowers that the
    /// caller moves itself and that need no destination.
    fn check_reservation_moving(
        &self,
        blocks: &[BlockId],
        data_taken: u32,
        moving: u32,
    ) -> Result<(), PoolError> {
        let borrowers = blocks.iter().map(|&b| self.block_borrowers(b)).sum::<u32>() - moving;
        let blocked: u32 = blocks.iter().map(|&b| self.free_frames_in(b)).sum();
        let available =
            (self.stats.data_frames_free - data_taken) + (self.stats.tag_frames_free - blocked);
        if borrowers > available {
            return Err(PoolError::NoMemory { frames: borrowers });
        }
        Ok(())
    }

    /// Reserves `blocks` for tags, recalling their borrowers. Must follow a
    /// successful [`Pool::check_reservation`]; cannot fail.
    fn commit_reservation<M: Machine + ?Sized>(&mut self, machine: &mut M, blocks: &[BlockId]) {
        // Take the free frames first, so no borrower is moved into a block
        // that is being reserved.
        for &block in blocks {
            for frame in self.layout.block_tag_frames(block) {
                if matches!(self.entry(frame), Frame::FreeHead { .. } | Frame::FreeTail) {
                    self.extract_free(frame, 0);
                    self.set(frame, Frame::TagReservedTail);
                }
            }
        }
        for &block in blocks {
            let mut moved = 0;
            for frame in self.layout.block_tag_frames(block) {
                if let Frame::Owned(_) = self.entry(frame) {
                    let destination = self.take_movable_destination();
                    self.migrate(machine, frame, destination);
                    self.put(frame, Frame::TagReservedTail);
                    moved += 1;
                }
            }
            if moved > 0 {
                self.stats.recalls += 1;
            }
            let first = self.layout.block_tag_frames(block).start;
            self.set(first, Frame::TagReserved { refs: 0, holds: 0 });
            self.stats.blocks_reserved += 1;
        }
        for &block in blocks {
            self.refile_group(block);
        }
    }

    /// Takes one free frame for untagged movable data: the data pool first.
    /// The caller has checked that one exists.
    fn take_movable_destination(&mut self) -> FrameIndex {
        let head = self
            .find_untagged_data(0)
            .or_else(|| self.find_tag_storage(0))
            .expect("plan checked that a destination exists");
        self.take_free_block(head, 0);
        head
    }

    // ----- moving pages -------------------------------------------------------

    /// Moves the owned page at `source` to the free frame `destination`:
    /// unmap, copy the data, carry the deferred tags, update the maps. The
    /// page stays unmapped; the caller maps it. `source` keeps a stale entry
    /// the caller overwrites.
    fn relocate<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        source: FrameIndex,
        destination: FrameIndex,
    ) -> Owned {
        let Frame::Owned(owned) = self.entry(source) else {
            panic!("relocating frame {source}, which is not owned");
        };
        let vaddr = self.vaddr_of(owned.client, owned.page);
        machine.unmap(owned.client, vaddr);
        machine.copy_frame(self.pfn(source), self.pfn(destination));
        self.work.pages_copied += 1;
        if let Some(slot) = owned.deferred {
            self.deferred[usize::from(slot)].frame = destination;
        }
        self.put(destination, Frame::Owned(owned));
        self.set_map(owned.client, owned.page, destination);
        self.stats.migrations += 1;
        if self.pool_of(destination) == PoolKind::Tag {
            self.refile_after_tag_change(destination, 1);
        }
        owned
    }

    /// Moves an untagged page and maps it again with the same attributes.
    fn migrate<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        source: FrameIndex,
        destination: FrameIndex,
    ) {
        let owned = self.relocate(machine, source, destination);
        debug_assert!(
            owned.mode != Mode::Tagged,
            "tagged pages are moved by evacuation only"
        );
        let vaddr = self.vaddr_of(owned.client, owned.page);
        machine.map(
            owned.client,
            vaddr,
            self.pfn(destination),
            access_for(owned.mode),
        );
    }

    /// Returns the frame at `index` to its pool and refiles what changed.
    fn free_frame(&mut self, index: FrameIndex) {
        self.put(index, Frame::FreeTail);
        self.insert_free_block(index, 0);
        if self.pool_of(index) == PoolKind::Tag {
            self.refile_after_tag_change(index, 1);
        }
    }

    /// Writes the tags of a page being mapped tagged: its deferred tags if
    /// any (consuming them), zero otherwise. Returns whether tags were restored.
    fn install_tags<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        index: FrameIndex,
        owned: &mut Owned,
    ) -> bool {
        let pfn = self.pfn(index);
        self.work.tag_writes += 1;
        match owned.deferred.take() {
            Some(slot) => {
                let tags = self.deferred[usize::from(slot)].tags;
                machine.write_tags(pfn, &tags);
                self.deferred[usize::from(slot)] = crate::DeferredSlot::default();
                self.stats.deferred_restored += 1;
                true
            }
            None => {
                machine.zero_tags(pfn);
                false
            }
        }
    }

    fn drop_deferred(&mut self, owned: &mut Owned) {
        if let Some(slot) = owned.deferred.take() {
            self.deferred[usize::from(slot)] = crate::DeferredSlot::default();
        }
    }

    fn free_deferred_slots(&self) -> u32 {
        self.deferred.iter().filter(|s| s.frame == NIL).count() as u32
    }

    fn park_tags(&mut self, frame: FrameIndex, tags: FrameTags) -> u16 {
        let slot = self
            .deferred
            .iter()
            .position(|s| s.frame == NIL)
            .expect("plan checked a free slot");
        self.deferred[slot] = crate::DeferredSlot { frame, tags };
        self.stats.deferred_parked += 1;
        slot as u16
    }

    /// Releases one owned page: unmap, drop its block reference or deferred
    /// tags, and free the frame.
    fn release_page<M: Machine + ?Sized>(&mut self, machine: &mut M, index: FrameIndex) {
        let Frame::Owned(mut owned) = self.entry(index) else {
            panic!("releasing frame {index}, which is not owned");
        };
        machine.unmap(owned.client, self.vaddr_of(owned.client, owned.page));
        self.drop_deferred(&mut owned);
        self.set_map(owned.client, owned.page, NIL);
        self.free_frame(index);
        if owned.mode == Mode::Tagged {
            self.drop_ref(index);
        }
    }

    // ----- operations -------------------------------------------------------

    fn alloc_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        request: AllocRequest,
    ) -> Result<Allocation, PoolError> {
        let state = self.client_state(client)?;
        if request.order > MAX_ORDER {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OrderTooLarge,
                value: u64::from(request.order),
            });
        }
        let pages = 1u32 << request.order;
        let first_page = self.window_range(client, request.vaddr, pages)?;
        for page in first_page..first_page + pages {
            if self.mapped(client, page).is_some() {
                return Err(PoolError::AlreadyMapped {
                    vaddr: self.vaddr_of(client, page),
                });
            }
        }
        if state.frames_used + pages > state.quota_frames {
            return Err(PoolError::OutOfQuota {
                client,
                used: state.frames_used,
                requested: pages,
                quota: state.quota_frames,
            });
        }
        if request.tagged && self.layout.tag_frames_total() == 0 {
            return Err(PoolError::Unsupported);
        }

        // Plan.
        let mut reserve = BlockList::new();
        let mut evacuate_at = None;
        let head = if request.tagged {
            let head = self
                .find_tagged_data(request.order)
                .ok_or(PoolError::NoMemory { frames: pages })?;
            reserve = self.unreserved_blocks(head, pages);
            self.check_reservation(&reserve, pages)?;
            head
        } else if request.pinned || request.contiguous {
            match self.find_untagged_data(request.order) {
                Some(head) => head,
                None => {
                    let start = self.plan_evacuation(request.order)?;
                    evacuate_at = Some(start);
                    start
                }
            }
        } else {
            self.find_untagged_movable(request.order)
                .ok_or(PoolError::NoMemory { frames: pages })?
        };

        // Commit.
        match evacuate_at {
            Some(start) => self.commit_evacuation(machine, start, request.order),
            None => self.take_free_block(head, request.order),
        }
        self.commit_reservation(machine, &reserve);
        let mode = if request.tagged {
            Mode::Tagged
        } else {
            Mode::Untagged
        };
        for offset in 0..pages {
            let index = head + offset;
            let pfn = self.pfn(index);
            machine.zero_frame(pfn);
            self.work.pages_zeroed += 1;
            if request.tagged {
                machine.zero_tags(pfn);
                self.work.tag_writes += 1;
                self.add_ref(index);
            }
            let page = first_page + offset;
            self.put(
                index,
                Frame::Owned(Owned {
                    client,
                    mode,
                    pinned: request.pinned,
                    contiguous: request.contiguous,
                    head: offset == 0,
                    order: request.order,
                    deferred: None,
                    page,
                }),
            );
            self.set_map(client, page, index);
            machine.map(client, self.vaddr_of(client, page), pfn, access_for(mode));
        }
        let in_tag_storage = self.pool_of(head) == PoolKind::Tag;
        if in_tag_storage {
            self.refile_after_tag_change(head, pages);
        }
        self.clients[usize::from(client)].frames_used += pages;
        Ok(Allocation {
            vaddr: request.vaddr,
            pages,
            first_frame: self.pfn(head),
            in_tag_storage,
        })
    }

    fn free_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<u32, PoolError> {
        let (page, _, owned) = self.owned_page(client, vaddr)?;
        if !owned.head {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::NotAllocationHead,
                value: vaddr,
            });
        }
        let pages = 1u32 << owned.order;
        for offset in 0..pages {
            let index = self
                .mapped(client, page + offset)
                .expect("every page of an allocation is mapped");
            self.release_page(machine, index);
        }
        self.clients[usize::from(client)].frames_used -= pages;
        Ok(pages)
    }

    /// Checks that every page of the range is mapped, and returns its first page.
    fn mapped_range(&self, client: ClientId, vaddr: u64, pages: u32) -> Result<u32, PoolError> {
        let first = self.window_range(client, vaddr, pages)?;
        for page in first..first + pages {
            if self.mapped(client, page).is_none() {
                return Err(PoolError::NotMapped {
                    vaddr: self.vaddr_of(client, page),
                });
            }
        }
        Ok(first)
    }

    fn enable_tagging_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        if self.layout.tag_frames_total() == 0 {
            self.client_state(client)?;
            return Err(PoolError::Unsupported);
        }
        let first = self.mapped_range(client, vaddr, pages)?;
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(owned) = self.entry(index) else {
                unreachable!()
            };
            // A page that cannot move and has no tag storage can never be tagged.
            if owned.mode == Mode::Untagged
                && self.must_move_to_tag(index)
                && (owned.pinned || owned.contiguous)
            {
                return Err(PoolError::Unsupported);
            }
        }
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(mut owned) = self.entry(index) else {
                unreachable!()
            };
            if owned.mode != Mode::Untagged {
                continue;
            }
            let vaddr = self.vaddr_of(client, page);
            machine.unmap(client, vaddr);
            owned.mode = Mode::MetadataNone;
            self.put(index, Frame::Owned(owned));
            machine.map(client, vaddr, self.pfn(index), Access::NoAccess);
        }
        Ok(())
    }

    fn disable_tagging_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        let first = self.mapped_range(client, vaddr, pages)?;
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(mut owned) = self.entry(index) else {
                unreachable!()
            };
            let was = owned.mode;
            if was == Mode::Untagged {
                continue;
            }
            let vaddr = self.vaddr_of(client, page);
            machine.unmap(client, vaddr);
            self.drop_deferred(&mut owned);
            owned.mode = Mode::Untagged;
            self.put(index, Frame::Owned(owned));
            if was == Mode::Tagged {
                self.drop_ref(index);
            }
            machine.map(client, vaddr, self.pfn(index), Access::Normal);
        }
        Ok(())
    }

    fn resolve_fault_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<Resolution, PoolError> {
        let page_vaddr = vaddr & !(PAGE - 1);
        let (page, index, mut owned) = self.owned_page(client, page_vaddr)?;
        match owned.mode {
            Mode::Tagged => return Ok(Resolution::AlreadyTagged),
            Mode::Untagged => {
                return Err(PoolError::InvalidArgument {
                    rule: ArgumentRule::NotAwaitingTags,
                    value: vaddr,
                })
            }
            Mode::MetadataNone => {}
        }
        if !self.must_move_to_tag(index) {
            // Plan, then commit: reserve the page's own block.
            let reserve = self.unreserved_blocks(index, 1);
            self.check_reservation(&reserve, 0)?;
            self.commit_reservation(machine, &reserve);
            machine.unmap(client, page_vaddr);
            let restored = self.install_tags(machine, index, &mut owned);
            owned.mode = Mode::Tagged;
            self.put(index, Frame::Owned(owned));
            self.add_ref(index);
            machine.map(client, page_vaddr, self.pfn(index), Access::Tagged);
            return Ok(Resolution::Tagged {
                migrated: false,
                deferred_restored: restored,
            });
        }
        if owned.pinned || owned.contiguous {
            return Err(PoolError::Busy {
                vaddr,
                reason: BusyReason::Pinned,
            });
        }
        // Plan: a taggable destination. Its block may be the very block the
        // page borrows; then the page itself is not a borrower to recall.
        let destination = self
            .find_tagged_data(0)
            .ok_or(PoolError::NoMemory { frames: 1 })?;
        let reserve = self.unreserved_blocks(destination, 1);
        let own_block = self.layout.tag_block(index).filter(|b| reserve.contains(b));
        self.check_reservation_moving(&reserve, 1, u32::from(own_block.is_some()))?;
        // Commit: move the page first, so the recall never sees it.
        self.take_free_block(destination, 0);
        let moved = self.relocate(machine, index, destination);
        debug_assert_eq!(moved.page, page);
        if own_block.is_some() {
            // The frame joins the block being reserved.
            self.put(index, Frame::TagReservedTail);
        }
        self.commit_reservation(machine, &reserve);
        let restored = self.install_tags(machine, destination, &mut owned);
        owned.mode = Mode::Tagged;
        self.put(destination, Frame::Owned(owned));
        self.add_ref(destination);
        if own_block.is_none() {
            self.free_frame(index);
        }
        machine.map(client, page_vaddr, self.pfn(destination), Access::Tagged);
        Ok(Resolution::Tagged {
            migrated: true,
            deferred_restored: restored,
        })
    }

    fn pin_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<(), PoolError> {
        let (_, index, owned) = self.owned_page(client, vaddr)?;
        if owned.pinned {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::AlreadyPinned,
                value: vaddr,
            });
        }
        if owned.contiguous {
            // Contiguous allocations are pinned or not as a whole, at allocation.
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Contiguous,
                value: vaddr,
            });
        }
        // A page awaiting tags must stay taggable once pinned: pinned pages
        // never move, so it has to sit in memory with tag storage.
        let awaiting_tags = owned.mode == Mode::MetadataNone;
        if awaiting_tags && self.pool_of(index) == PoolKind::Data && self.must_move_to_tag(index) {
            return Err(PoolError::Unsupported);
        }
        let mut at = index;
        if self.pool_of(index) == PoolKind::Tag {
            let destination = if awaiting_tags {
                self.find_taggable_data(0)
            } else {
                self.find_untagged_data(0)
            }
            .ok_or(PoolError::NoMemory { frames: 1 })?;
            self.take_free_block(destination, 0);
            self.migrate(machine, index, destination);
            self.free_frame(index);
            at = destination;
        }
        let Frame::Owned(mut owned) = self.entry(at) else {
            unreachable!()
        };
        owned.pinned = true;
        self.put(at, Frame::Owned(owned));
        Ok(())
    }

    fn unpin_inner(&mut self, client: ClientId, vaddr: u64) -> Result<(), PoolError> {
        let (_, index, mut owned) = self.owned_page(client, vaddr)?;
        if !owned.pinned {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::NotPinned,
                value: vaddr,
            });
        }
        if owned.contiguous {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Contiguous,
                value: vaddr,
            });
        }
        owned.pinned = false;
        self.put(index, Frame::Owned(owned));
        Ok(())
    }

    fn query_inner(&mut self, client: ClientId, vaddr: u64) -> Result<PageInfo, PoolError> {
        let (_, index, owned) = self.owned_page(client, vaddr & !(PAGE - 1))?;
        Ok(PageInfo {
            state: match owned.mode {
                Mode::Untagged => PageState::Untagged,
                Mode::Tagged => PageState::Tagged,
                Mode::MetadataNone => PageState::MetadataNone,
            },
            pinned: owned.pinned,
            contiguous: owned.contiguous,
            in_tag_storage: self.pool_of(index) == PoolKind::Tag,
            deferred_tags: owned.deferred.is_some(),
            frame: self.pfn(index),
        })
    }

    fn reclaim_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
    ) -> Result<u32, PoolError> {
        let state = self.client_state(client)?;
        let mut reclaimed = 0;
        for page in 0..state.window_pages {
            if let Some(index) = self.mapped(client, page) {
                self.release_page(machine, index);
                reclaimed += 1;
            }
        }
        self.clients[usize::from(client)].frames_used = 0;
        Ok(reclaimed)
    }

    fn server_frame_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        tagged: bool,
    ) -> Result<Pfn, PoolError> {
        if tagged && self.layout.tag_frames_total() == 0 {
            return Err(PoolError::Unsupported);
        }
        let head = if tagged {
            let head = self
                .find_tagged_data(0)
                .ok_or(PoolError::NoMemory { frames: 1 })?;
            let block = self
                .layout
                .group_block(head)
                .expect("tagged frame has a block");
            let first = self.layout.block_tag_frames(block).start;
            if matches!(
                self.entry(first),
                Frame::TagReserved {
                    holds: u16::MAX,
                    ..
                }
            ) {
                // The hold count is 16 bits: refuse rather than wrap.
                return Err(PoolError::NoMemory { frames: 1 });
            }
            let reserve = self.unreserved_blocks(head, 1);
            self.check_reservation(&reserve, 1)?;
            self.take_free_block(head, 0);
            self.commit_reservation(machine, &reserve);
            head
        } else {
            let head = self
                .find_untagged_data(0)
                .ok_or(PoolError::NoMemory { frames: 1 })?;
            self.take_free_block(head, 0);
            head
        };
        let pfn = self.pfn(head);
        machine.zero_frame(pfn);
        if tagged {
            machine.zero_tags(pfn);
            let block = self
                .layout
                .group_block(head)
                .expect("tagged frame has a block");
            self.add_hold(block);
        }
        self.put(
            head,
            Frame::Server {
                head: true,
                order: 0,
            },
        );
        self.stats.frames_server += 1;
        Ok(pfn)
    }

    // ----- evacuation for contiguous and pinned ranges ----------------------

    /// Finds an aligned data range of `order` whose frames are all free or
    /// movable, and whose movers have somewhere to go. Looks at no more than
    /// [`EVACUATION_CANDIDATES`] ranges from a rotating cursor.
    fn plan_evacuation(&mut self, order: u8) -> Result<FrameIndex, PoolError> {
        let frames = 1u32 << order;
        let mut cursor = self.evacuation_cursor;
        for _ in 0..EVACUATION_CANDIDATES {
            let Some(start) = self.next_evacuation_candidate(cursor, frames) else {
                break;
            };
            cursor = start + frames;
            if self.evacuation_feasible(start, frames) {
                return Ok(start);
            }
        }
        Err(PoolError::NoMemory { frames })
    }

    /// The first aligned data range of `frames` at or after `cursor`, wrapping.
    fn next_evacuation_candidate(&self, cursor: FrameIndex, frames: u32) -> Option<FrameIndex> {
        let regions = self.layout.regions();
        let fits = |first: u32, len: u32, at: u32| -> Option<u32> {
            let relative = at.saturating_sub(first).next_multiple_of(frames);
            (relative + frames <= len).then_some(first + relative)
        };
        for r in regions
            .iter()
            .filter(|r| r.data_first + r.data_frames > cursor)
        {
            if let Some(start) = fits(r.data_first, r.data_frames, cursor.max(r.data_first)) {
                return Some(start);
            }
        }
        regions
            .iter()
            .find_map(|r| fits(r.data_first, r.data_frames, r.data_first))
    }

    fn evacuation_feasible(&mut self, start: FrameIndex, frames: u32) -> bool {
        let (mut movers, mut tagged, mut free) = (0u32, 0u32, 0u32);
        for index in start..start + frames {
            self.work.frames_scanned += 1;
            match self.entry(index) {
                Frame::FreeHead { .. } | Frame::FreeTail => free += 1,
                Frame::Owned(o) if !o.pinned && !o.contiguous => {
                    movers += 1;
                    if o.mode == Mode::Tagged {
                        tagged += 1;
                    }
                }
                _ => return false,
            }
        }
        let data_outside = self.stats.data_frames_free - free;
        movers <= data_outside + self.stats.tag_frames_free
            && tagged <= data_outside
            && tagged <= self.free_deferred_slots()
    }

    /// Empties the range planned by [`Pool::plan_evacuation`] and takes it.
    /// Untagged pages move anywhere; a tagged page moves to a frame whose
    /// block is reserved if there is one, keeping its tags, and otherwise its
    /// tags are parked in the deferred store and it is mapped metadata-none
    /// until its next access (DESIGN §5).
    fn commit_evacuation<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        start: FrameIndex,
        order: u8,
    ) {
        let frames = 1u32 << order;
        let end = start + frames;
        // Take the free frames of the range, so no page moves into it.
        let mut index = start;
        while index < end {
            match self.containing_free_block(index) {
                Some((head, found)) if head >= start && head + (1 << found) <= end => {
                    self.take_free_block(head, found);
                    for frame in head..head + (1 << found) {
                        self.set(frame, Frame::FreeTail);
                    }
                    index = head + (1 << found);
                }
                Some(_) => {
                    self.extract_free(index, 0);
                    self.set(index, Frame::FreeTail);
                    index += 1;
                }
                None => index += 1,
            }
        }
        // Tagged pages first: they need the data pool, untagged ones do not.
        for tagged_pass in [true, false] {
            for source in start..end {
                let Frame::Owned(owned) = self.entry(source) else {
                    continue;
                };
                if (owned.mode == Mode::Tagged) != tagged_pass {
                    continue;
                }
                if tagged_pass {
                    self.evacuate_tagged(machine, source);
                } else {
                    let destination = self.take_movable_destination();
                    self.migrate(machine, source, destination);
                }
                self.put(source, Frame::FreeTail);
            }
        }
        self.evacuation_cursor = end;
    }

    fn evacuate_tagged<M: Machine + ?Sized>(&mut self, machine: &mut M, source: FrameIndex) {
        let reserved_destination = self.first_free(PoolKind::Data, 0, crate::Class::Reserved);
        let reserved_destination = if reserved_destination != NIL {
            Some(reserved_destination)
        } else {
            // A larger reserved-class block also keeps the tags.
            (1..=MAX_ORDER)
                .map(|order| self.first_free(PoolKind::Data, order, crate::Class::Reserved))
                .find(|&head| head != NIL)
        };
        let (destination, keep_tags) = match reserved_destination {
            Some(head) => (head, true),
            None => (
                self.find_untagged_data(0)
                    .expect("plan checked a data destination"),
                false,
            ),
        };
        self.take_free_block(destination, 0);
        let mut owned = self.relocate(machine, source, destination);
        let vaddr = self.vaddr_of(owned.client, owned.page);
        let pfn = self.pfn(destination);
        if keep_tags {
            machine.copy_tags(self.pfn(source), pfn);
            self.work.tag_writes += 1;
            self.add_ref(destination);
            machine.map(owned.client, vaddr, pfn, Access::Tagged);
        } else {
            let mut tags = ZERO_TAGS;
            machine.read_tags(self.pfn(source), &mut tags);
            owned.deferred = Some(self.park_tags(destination, tags));
            owned.mode = Mode::MetadataNone;
            self.put(destination, Frame::Owned(owned));
            machine.map(owned.client, vaddr, pfn, Access::NoAccess);
        }
        // The source's reference goes last: its block may be released.
        self.drop_ref(source);
    }
}
