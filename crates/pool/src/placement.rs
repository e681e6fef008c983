//! Where a request's frames come from (DESIGN §4).
//!
//! Untagged data: the data pool, away from reserved tag blocks (their free
//! frames are kept for tagged data), then tag storage, unless the balanced
//! policy says tag storage first. Tagged data: the data pool only, frames
//! whose block is reserved first, then frames whose block is free, then
//! frames whose block is lent, cheapest recall first. Every search looks at a
//! bounded number of list heads, never at the whole platform.

use crate::frame::{Class, Frame, MAX_ORDER};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::{LendPolicy, Pool, TagPlacement};

/// How many lent candidates a tagged search compares to find the cheapest recall.
pub(crate) const LENT_CANDIDATES: u32 = 8;

/// Untagged data avoids reserved groups; among the rest, lent groups first,
/// so that groups whose block is free stay cheap to reserve later.
const UNTAGGED_CLASSES: [Class; 4] = [
    Class::Untaggable,
    Class::Lent,
    Class::FreeBlock,
    Class::Reserved,
];

impl Pool<'_> {
    /// A free data block of at least `order` for untagged data: its head.
    pub(crate) fn find_untagged_data(&mut self, order: u8) -> Option<FrameIndex> {
        match self.config.placement {
            TagPlacement::Affinity => {
                for class in UNTAGGED_CLASSES {
                    for found in order..=MAX_ORDER {
                        let head = self.first_free(PoolKind::Data, found, class);
                        if head != NIL {
                            return Some(head);
                        }
                    }
                }
                None
            }
            TagPlacement::AnyPage => self.find_any_data(order, false),
        }
    }

    /// A free tag storage block of at least `order`: its head.
    pub(crate) fn find_tag_storage(&self, order: u8) -> Option<FrameIndex> {
        (order..=MAX_ORDER)
            .map(|found| self.first_free(PoolKind::Tag, found, Class::FreeBlock))
            .find(|&head| head != NIL)
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
            self.find_untagged_data(order)
                .or_else(|| self.find_tag_storage(order))
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
