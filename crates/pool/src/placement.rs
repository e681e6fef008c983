//! Where a request's frames come from (DESIGN §4).
//!
//! Untagged data: the data pool away from reserved tag blocks, then tag
//! storage, and the free frames of reserved groups last, so they stay for
//! tagged data while any other frame is free (the balanced policy puts tag
//! storage first). Tagged data: the data pool only, frames whose block is
//! reserved first; then, rather than reserve another block, the frame of an
//! untagged movable page in a reserved group, which moves out (one page
//! copy); then frames whose block is free; then frames whose block is lent,
//! cheapest recall first. Every search looks at a bounded number of list
//! heads and frames, never at the whole platform.

use crate::frame::{Class, Frame, Mode, MAX_ORDER};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::{LendPolicy, Pool, TagPlacement};

/// How many lent candidates a tagged search compares to find the cheapest recall.
pub(crate) const LENT_CANDIDATES: u32 = 8;

/// How many tag blocks, and how many data frames of their groups, a tagged
/// request reads looking for an untagged page to move out of a reserved group.
pub(crate) const SWAP_BLOCKS: u32 = 16;
pub(crate) const SWAP_FRAMES: u32 = 64;

/// Untagged data avoids reserved groups; among the rest, lent groups first,
/// so that groups whose block is free stay cheap to reserve later.
const UNTAGGED_CLASSES: [Class; 4] = [
    Class::Untaggable,
    Class::Lent,
    Class::FreeBlock,
    Class::Reserved,
];

/// The data classes away from reserved groups, in the order untagged data
/// takes them.
const AWAY_FROM_RESERVED: [Class; 3] = [Class::Untaggable, Class::Lent, Class::FreeBlock];

/// Where a tagged request's page comes from, when it does not come from a
/// free frame (whose block may need reserving).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Swap {
    /// The frame, in a reserved group, of the untagged movable page that
    /// moves out; the tagged page takes it.
    pub(crate) source: FrameIndex,
    /// The free block (head) the untagged page moves to.
    pub(crate) destination: FrameIndex,
}

impl Pool<'_> {
    /// The head of a free data block of at least `order` in one of `classes`,
    /// classes first.
    fn find_data_in(&self, classes: &[Class], order: u8) -> Option<FrameIndex> {
        classes.iter().find_map(|&class| {
            self.lowest_nonempty(PoolKind::Data, class, order)
                .map(|found| self.first_free(PoolKind::Data, found, class))
        })
    }

    /// A free data block of at least `order` for untagged data: its head.
    pub(crate) fn find_untagged_data(&mut self, order: u8) -> Option<FrameIndex> {
        match self.config.placement {
            TagPlacement::Affinity => self.find_data_in(&UNTAGGED_CLASSES, order),
            TagPlacement::AnyPage => self.find_any_data(order, false),
        }
    }

    /// Where an untagged movable page goes when no policy puts it in tag
    /// storage first (a recall's borrowers, a swap's page, last-resort
    /// lending): data away from reserved groups, then tag storage, then the
    /// free frames of reserved groups (with affinity; any page takes the
    /// data pool, then tag storage).
    pub(crate) fn find_movable_destination(&mut self, order: u8) -> Option<FrameIndex> {
        match self.config.placement {
            TagPlacement::Affinity => self
                .find_data_in(&AWAY_FROM_RESERVED, order)
                .or_else(|| self.find_tag_storage(order))
                .or_else(|| self.find_data_in(&[Class::Reserved], order)),
            TagPlacement::AnyPage => self
                .find_any_data(order, false)
                .or_else(|| self.find_tag_storage(order)),
        }
    }

    /// A free tag storage block of at least `order`: its head.
    pub(crate) fn find_tag_storage(&self, order: u8) -> Option<FrameIndex> {
        self.lowest_nonempty(PoolKind::Tag, Class::FreeBlock, order)
            .map(|found| self.first_free(PoolKind::Tag, found, Class::FreeBlock))
    }

    /// Where untagged movable data of `order` goes, by the lending policy.
    pub(crate) fn find_untagged_movable(&mut self, order: u8) -> Option<FrameIndex> {
        let tag_first = match self.config.lend {
            LendPolicy::LastResort => false,
            LendPolicy::Balanced => {
                let free_tag = self.stats.tag_frames_free;
                let free_all = free_tag + self.stats.data_frames_free;
                free_tag * 2 > free_all
            }
        };
        if tag_first {
            self.find_tag_storage(order)
                .or_else(|| self.find_untagged_data(order))
        } else {
            self.find_movable_destination(order)
        }
    }

    /// With affinity, when no reserved group has a free frame: an untagged
    /// movable page in a reserved group, and a free frame for it elsewhere,
    /// so that an order-0 tagged page takes its frame instead of reserving
    /// another block. Reads at most [`SWAP_BLOCKS`] tag blocks from a
    /// rotating cursor and [`SWAP_FRAMES`] data frames of their groups, all
    /// counted. The cursor is a hint, like the evacuation cursor: not pool
    /// state, and not in the I12 fingerprint.
    pub(crate) fn plan_swap(&mut self, order: u8) -> Option<Swap> {
        let blocks = self.layout.blocks_total();
        if order != 0 || self.config.placement != TagPlacement::Affinity || blocks == 0 {
            return None;
        }
        let mut block = self.swap_cursor % blocks;
        // The cursor is a place inside a group, not only a block: a group
        // larger than the frame budget (blocks of 3 or more tag frames) is
        // read on from where the last search stopped, so what lies past its
        // first SWAP_FRAMES frames is reached too.
        let mut offset = self.swap_offset;
        let mut frames_read = 0;
        for _ in 0..SWAP_BLOCKS.min(blocks) {
            self.work.frames_scanned += 1;
            // The filed class is the block's class between operations (I8):
            // one word, no tag frame unpacked.
            if self.block_state(block).filed() == Class::Reserved {
                let group = self.layout.block_data_frames(block);
                let start = group.start + offset.min(group.end - group.start);
                for index in start..group.end {
                    if frames_read == SWAP_FRAMES {
                        self.swap_cursor = block;
                        self.swap_offset = index - group.start;
                        return None;
                    }
                    frames_read += 1;
                    self.work.frames_scanned += 1;
                    if let Frame::Owned(o) = self.entry(index) {
                        if o.mode == Mode::Untagged && !o.pinned && !o.contiguous {
                            self.swap_cursor = block;
                            self.swap_offset = index - group.start;
                            let destination = self.find_movable_destination(0)?;
                            return Some(Swap {
                                source: index,
                                destination,
                            });
                        }
                    }
                }
            }
            block = (block + 1) % blocks;
            offset = 0;
        }
        self.swap_cursor = block;
        self.swap_offset = 0;
        None
    }

    /// Affinity inside a split block: in the free data block at `head`, the
    /// aligned sub-block of `order` whose tag blocks suit the request best,
    /// found by halving while the block spans more than one group (at most
    /// `MAX_ORDER` steps, each classifying the two halves, counted). Tagged data prefers reserved groups, then free
    /// ones, then lent ones; untagged data the reverse, keeping free groups
    /// cheap to reserve later. Any-page placement and tag storage take the
    /// lowest frames, as the buddy split would.
    pub(crate) fn place_inside(&mut self, head: FrameIndex, order: u8, tagged: bool) -> FrameIndex {
        let Frame::FreeHead { order: found, .. } = self.entry(head) else {
            panic!("frame {head} is not a free head");
        };
        if self.config.placement != TagPlacement::Affinity || self.pool_of(head) == PoolKind::Tag {
            return head;
        }
        let rank = |class: Class| -> u8 {
            let order = if tagged {
                [
                    Class::Reserved,
                    Class::FreeBlock,
                    Class::Lent,
                    Class::Untaggable,
                ]
            } else {
                [
                    Class::Untaggable,
                    Class::Lent,
                    Class::FreeBlock,
                    Class::Reserved,
                ]
            };
            order.iter().position(|&c| c == class).unwrap_or(0) as u8
        };
        let (mut head, mut current) = (head, found);
        // Once the block lies in one group every sub-block has its class:
        // the lowest will do.
        while current > order && self.blocks_touched(head, 1 << current).len() > 1 {
            current -= 1;
            let upper = head + (1 << current);
            self.work.frames_scanned += 2 * self.blocks_touched(head, 1 << current).len() as u64;
            let lower_class = self.filed_class_of_block(head, current);
            let upper_class = self.filed_class_of_block(upper, current);
            if rank(upper_class) < rank(lower_class) {
                head = upper;
            }
        }
        head
    }

    /// With affinity, a free data block of at least `order` whose every
    /// touched tag block is reserved: tagging it costs nothing.
    pub(crate) fn find_reserved_data(&self, order: u8) -> Option<FrameIndex> {
        match self.config.placement {
            TagPlacement::Affinity => self.find_data_in(&[Class::Reserved], order),
            TagPlacement::AnyPage => None,
        }
    }

    /// A free data block of at least `order` for tagged data: its head.
    pub(crate) fn find_tagged_data(&mut self, order: u8) -> Option<FrameIndex> {
        match self.config.placement {
            TagPlacement::Affinity => {
                for class in [Class::Reserved, Class::FreeBlock] {
                    for found in order..=MAX_ORDER {
                        let head = self.first_free(PoolKind::Data, found, class);
                        if head != NIL {
                            return Some(head);
                        }
                    }
                }
                self.cheapest_lent(order)
            }
            TagPlacement::AnyPage => self.find_any_data(order, true),
        }
    }

    /// A free data block of at least `order` in memory that has tag storage,
    /// whatever its block's state: for pages that must stay taggable.
    pub(crate) fn find_taggable_data(&mut self, order: u8) -> Option<FrameIndex> {
        for class in [Class::Reserved, Class::FreeBlock, Class::Lent] {
            for found in order..=MAX_ORDER {
                let head = self.first_free(PoolKind::Data, found, class);
                if head != NIL {
                    return Some(head);
                }
            }
        }
        None
    }

    /// The RFC's placement: the smallest free block of any class.
    fn find_any_data(&mut self, order: u8, tagged: bool) -> Option<FrameIndex> {
        for found in order..=MAX_ORDER {
            for class in UNTAGGED_CLASSES {
                if tagged && class == Class::Untaggable {
                    continue;
                }
                let head = self.first_free(PoolKind::Data, found, class);
                if head != NIL {
                    return Some(head);
                }
            }
        }
        None
    }

    pub(crate) fn next_free(&mut self, head: FrameIndex) -> FrameIndex {
        self.work.frames_scanned += 1;
        match self.entry(head) {
            Frame::FreeHead { next, .. } => next,
            _ => NIL,
        }
    }

    /// Pages a recall must move to make a data block of `order` at `head` taggable.
    pub(crate) fn recall_cost(&self, head: FrameIndex, order: u8) -> u32 {
        self.blocks_touched(head, 1 << order)
            .filter(|&block| !self.block_reserved(block))
            .map(|block| self.block_borrowers(block))
            .sum()
    }

    /// Among the first [`LENT_CANDIDATES`] lent-class blocks, the one whose
    /// recall moves the fewest pages.
    fn cheapest_lent(&mut self, order: u8) -> Option<FrameIndex> {
        let mut best: Option<(u32, FrameIndex)> = None;
        let mut compared = 0;
        for found in order..=MAX_ORDER {
            let mut head = self.first_free(PoolKind::Data, found, Class::Lent);
            while head != NIL && compared < LENT_CANDIDATES {
                // Only the first 2^order frames at `head` are taken.
                let cost = self.recall_cost(head, order);
                if best.is_none_or(|(best_cost, _)| cost < best_cost) {
                    best = Some((cost, head));
                }
                compared += 1;
                head = self.next_free(head);
            }
        }
        best.map(|(_, head)| head)
    }
}
