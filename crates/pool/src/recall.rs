//! Reserving tag blocks, recalling lent ones, and migrating pages: the
//! borrowers of a block move out (data copied, owner remapped at the same
//! address) before its frames take tags (DESIGN §4).

use crate::error::PoolError;
use crate::frame::{Frame, Mode, Owned};
use crate::layout::{BlockId, FrameIndex, PoolKind};
use crate::ops::*;
use crate::{Machine, Pool};

impl Pool<'_> {
    /// The tag blocks touched by `frames` data frames at `head` that are not
    /// reserved yet.
    pub(crate) fn unreserved_blocks(&self, head: FrameIndex, frames: u32) -> BlockList {
        let mut blocks = BlockList::new();
        for block in self.blocks_touched(head, frames) {
            if !self.block_reserved(block) {
                // Capacity covers an order-9 range even with one-frame blocks.
                let _ = blocks.push(block);
            }
        }
        blocks
    }

    /// Whether a neighbour of `block` in its carve-out is reserved: its tag
    /// frames, right beside `block`'s, hold live tags (so a recall of
    /// `block` that copies, maps or zeroes one frame off lands on them).
    pub(crate) fn beside_reserved(&self, block: BlockId) -> bool {
        let r = self.layout.regions()[self.layout.block_region(block)];
        let (first, end) = (r.first_block, r.first_block + r.blocks());
        (block > first && self.block_reserved(block - 1))
            || (block + 1 < end && self.block_reserved(block + 1))
    }

    /// Free tag frames of an unreserved `block`: those not lent.
    pub(crate) fn free_frames_in(&self, block: BlockId) -> u32 {
        debug_assert!(!self.block_reserved(block));
        self.layout.block_tag_frames(block).len() as u32 - self.block_borrowers(block)
    }

    /// Plan check for reserving `blocks`: every borrower needs a destination
    /// outside them, with `data_taken` data frames already spoken for.
    pub(crate) fn check_reservation(
        &self,
        blocks: &[BlockId],
        data_taken: u32,
    ) -> Result<(), PoolError> {
        self.check_reservation_moving(blocks, data_taken, 0)
    }

    /// As [`Pool::check_reservation`], with `moving` borrowers that the
    /// caller moves itself and that need no destination.
    pub(crate) fn check_reservation_moving(
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
    pub(crate) fn commit_reservation<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        blocks: &[BlockId],
    ) {
        // Take the free frames first, so no borrower is moved into a block
        // that is being reserved.
        for &block in blocks {
            for frame in self.layout.block_tag_frames(block) {
                self.work.frames_scanned += 1;
                if matches!(self.entry(frame), Frame::FreeHead { .. } | Frame::FreeTail) {
                    self.extract_free(frame, 0);
                    self.set(frame, Frame::TagReservedTail);
                }
            }
        }
        for &block in blocks {
            let mut moved = 0;
            for frame in self.layout.block_tag_frames(block) {
                self.work.frames_scanned += 1;
                if let Frame::Owned(_) = self.entry(frame) {
                    if cfg!(feature = "inject-skip-recall") {
                        // Injected bug (tests/model.rs): the borrower stays.
                        continue;
                    }
                    let destination = self.take_movable_destination();
                    self.migrate(machine, frame, destination);
                    self.set(frame, Frame::TagReservedTail);
                    moved += 1;
                }
            }
            if moved > 0 {
                self.stats.recalls += 1;
                if self.beside_reserved(block) {
                    self.stats.recalls_beside_tags += 1;
                }
            }
            // Tag storage clean (DESIGN §7), after the borrowers' data was
            // copied out and before any tag is stored: no dirty data line
            // of a borrower may be written back over the tags later.
            for frame in self.layout.block_tag_frames(block) {
                if cfg!(feature = "inject-skip-tag-storage-clean") {
                    break;
                }
                machine.clean_for_tags(self.pfn(frame));
                self.stats.tag_frames_cleaned += 1;
                self.work.tag_cleans += 1;
            }
            let first = self.layout.block_tag_frames(block).start;
            self.set(first, Frame::TagReserved { refs: 0, holds: 0 });
            self.stats.blocks_reserved += 1;
        }
        for &block in blocks {
            self.refile_group(block);
        }
    }

    /// Takes one free frame for untagged movable data: the data pool away
    /// from reserved groups first. The caller has checked that one exists.
    pub(crate) fn take_movable_destination(&mut self) -> FrameIndex {
        let head = self
            .find_movable_destination(0)
            .expect("plan checked that a destination exists");
        self.take_free_block(head, 0);
        head
    }

    /// Moves the owned page at `source` to the free frame `destination`:
    /// unmap, copy the data, carry the deferred tags, update the maps. The
    /// page stays unmapped; the caller maps it. `source` keeps a stale entry
    /// the caller overwrites.
    pub(crate) fn relocate<M: Machine + ?Sized>(
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
        self.set(destination, Frame::Owned(owned));
        self.set_map(owned.client, owned.page, destination);
        self.stats.migrations += 1;
        if self.pool_of(destination) == PoolKind::Tag {
            self.refile_after_tag_change(destination, 1);
        }
        owned
    }

    /// Moves an untagged page and maps it again with the same attributes.
    pub(crate) fn migrate<M: Machine + ?Sized>(
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
    pub(crate) fn free_frame(&mut self, index: FrameIndex) {
        self.set(index, Frame::FreeTail);
        self.insert_free_block(index, 0);
        if self.pool_of(index) == PoolKind::Tag {
            self.refile_after_tag_change(index, 1);
        }
    }
}
