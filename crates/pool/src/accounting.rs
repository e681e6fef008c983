//! The one way to change a frame's entry or a page-map slot, with the
//! counters kept in step, and the reference counts and holds of tag blocks
//! (I4, I8).

use crate::frame::{BlockState, Frame, FrameEntry, Mode};
use crate::layout::{BlockId, FrameIndex, PoolKind, NIL};
use crate::{ClientId, Machine, Pool};

impl Pool<'_> {
    /// The state of `index`. The table is only ever written by the pool, so a
    /// corrupt entry is a bug in the pool: stop rather than guess.
    #[inline(always)]
    pub(crate) fn entry(&self, index: FrameIndex) -> Frame {
        match self.frames[index as usize].unpack() {
            Ok(frame) => frame,
            Err(corrupt) => panic!("frame {index}: corrupt entry {:#x}", corrupt.0),
        }
    }

    /// Writes `frame` at `index`: the only writer of the frame table, so the
    /// lent and tagged counters always follow the entries (I8). Inlined so
    /// that each caller packs only its state's fields; the counting is out
    /// of line.
    #[inline]
    pub(crate) fn set(&mut self, index: FrameIndex, frame: Frame) {
        let was = self.frames[index as usize].owned_mode();
        let becomes = match frame {
            Frame::Owned(new) => Some(new.mode),
            _ => None,
        };
        // Only owned frames count: a write that neither ends nor starts one
        // (most are free-list links) changes no counter.
        if was.is_some() || becomes.is_some() {
            self.count_owned(index, was, becomes);
        }
        self.frames[index as usize] = FrameEntry::pack(frame);
    }

    /// The counters of an owned frame at `index` that stops being owned in
    /// mode `was` or starts being owned in mode `becomes`.
    fn count_owned(&mut self, index: FrameIndex, was: Option<Mode>, becomes: Option<Mode>) {
        let in_tag = self.pool_of(index) == PoolKind::Tag;
        if let Some(mode) = was {
            if in_tag {
                self.stats.tag_frames_lent -= 1;
                self.count_lent(index, false);
            }
            if mode == Mode::Tagged {
                self.stats.frames_tagged -= 1;
            }
        }
        if let Some(mode) = becomes {
            if in_tag {
                self.stats.tag_frames_lent += 1;
                self.count_lent(index, true);
            }
            if mode == Mode::Tagged {
                self.stats.frames_tagged += 1;
            }
        }
    }

    /// Keeps the lent count of the block of tag frame `index` in step.
    fn count_lent(&mut self, index: FrameIndex, lent: bool) {
        let block = self
            .layout
            .tag_block(index)
            .expect("a tag frame has a block");
        let state = self.blocks[block as usize];
        let count = if lent {
            state.lent() + 1
        } else {
            state.lent() - 1
        };
        self.blocks[block as usize] = BlockState::new(count, state.filed());
    }

    pub(crate) fn set_map(&mut self, client: ClientId, page: u32, frame: FrameIndex) {
        let slot = self.map_slot(client, page);
        self.page_map[slot] = frame;
        self.mark_mapped(client, page, frame != NIL);
    }

    pub(crate) fn add_ref(&mut self, data_frame: FrameIndex) {
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

    pub(crate) fn add_hold(&mut self, block: BlockId) {
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
    /// when nothing holds it any more. The frame's tag lines are cleaned
    /// first (tag storage clean, DESIGN §7), whether or not the block is
    /// released: once none of its frames is tagged, its tag storage may
    /// hold data, and no dirty tag line may be written back over it.
    pub(crate) fn drop_ref<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        data_frame: FrameIndex,
    ) {
        if !cfg!(feature = "inject-skip-tag-storage-clean") {
            machine.clean_tags(self.pfn(data_frame));
            self.stats.tag_lines_cleaned += 1;
            self.work.tag_cleans += 1;
        }
        let block = self
            .layout
            .group_block(data_frame)
            .expect("tagged frame has a tag block");
        let first = self.layout.block_tag_frames(block).start;
        let Frame::TagReserved { refs, holds } = self.entry(first) else {
            panic!("untagging frame {data_frame} whose block {block} is not reserved");
        };
        let refs = refs.checked_sub(1).expect("block refcount underflow");
        // A permanent hold keeps the block; the test-only injected bug
        // forgets it, to prove `check_invariants()` notices (tests/teeth.rs).
        let held = holds > 0 && !cfg!(feature = "inject-release-with-hold");
        if refs == 0 && !held {
            self.release_block(block);
        } else {
            self.set(first, Frame::TagReserved { refs, holds });
        }
    }

    pub(crate) fn release_block(&mut self, block: BlockId) {
        for frame in self.layout.block_tag_frames(block) {
            self.insert_free_block(frame, 0);
        }
        self.stats.blocks_reserved -= 1;
        self.refile_group(block);
    }
}
