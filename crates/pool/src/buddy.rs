//! Buddy free lists over the frame table, and the filing of free data blocks
//! by the state of their tag blocks.
//!
//! Each pool (data, tag storage) has one doubly linked free list per order;
//! the data pool has one per order *and class* ([`Class`]), so a tagged
//! request finds a frame whose block is already reserved in O(1), and an
//! untagged one finds a frame away from reserved blocks. The links live in
//! the free blocks' own frame entries. Buddies are aligned relative to the
//! start of their span (a region's data or tag frames), so regions of any
//! size work.
//!
//! When a tag block changes state (reserved, released, lent, returned), the
//! free blocks of its group are refiled: at most `32 * block_frames` entries
//! are visited, independent of the size of the platform.

use crate::frame::{BlockState, Class, Frame, CLASSES, MAX_ORDER, ORDERS};
use crate::layout::{BlockId, FrameIndex, PoolKind, NIL};
use crate::Pool;

/// The class tag pool free blocks are filed under; it carries no meaning there.
const TAG_POOL_CLASS: Class = Class::FreeBlock;

impl Pool<'_> {
    #[inline]
    pub(crate) fn pool_of(&self, index: FrameIndex) -> PoolKind {
        match self.layout.locate(index) {
            Some(location) => location.pool,
            None => panic!("frame {index} is not managed"),
        }
    }

    fn list_head(&mut self, pool: PoolKind, order: u8, class: Class) -> &mut FrameIndex {
        match pool {
            PoolKind::Data => &mut self.data_lists[order as usize][class as usize],
            PoolKind::Tag => &mut self.tag_lists[order as usize],
        }
    }

    /// Where the orders with a non-empty list of `pool` and `class` are
    /// kept: one word per data class, and one for the tag pool.
    fn nonempty_slot(pool: PoolKind, class: Class) -> usize {
        match pool {
            PoolKind::Data => class as usize,
            PoolKind::Tag => CLASSES,
        }
    }

    /// Records whether the list of `pool`, `order` and `class` has a block.
    fn mark_nonempty(&mut self, pool: PoolKind, order: u8, class: Class, nonempty: bool) {
        let word = &mut self.nonempty_orders[Pool::nonempty_slot(pool, class)];
        if nonempty {
            *word |= 1 << order;
        } else {
            *word &= !(1 << order);
        }
    }

    /// The lowest order at or above `order` whose list of `pool` and
    /// `class` has a block: one word read, where a walk of the orders would
    /// read up to ten list heads.
    pub(crate) fn lowest_nonempty(&self, pool: PoolKind, class: Class, order: u8) -> Option<u8> {
        let orders = self.nonempty_orders[Pool::nonempty_slot(pool, class)] & (!0u16 << order);
        (orders != 0).then(|| orders.trailing_zeros() as u8)
    }

    /// Whether the non-empty-order words agree with the list heads (for
    /// `check_invariants()`): the first list where they do not.
    pub(crate) fn nonempty_disagreement(&self) -> Option<(PoolKind, u8, Class)> {
        for order in 0..ORDERS as u8 {
            for (pool, class) in Class::ALL
                .iter()
                .map(|&class| (PoolKind::Data, class))
                .chain([(PoolKind::Tag, TAG_POOL_CLASS)])
            {
                let has_block = self.first_free(pool, order, class) != NIL;
                let marked = self.lowest_nonempty(pool, class, order) == Some(order);
                if marked != has_block {
                    return Some((pool, order, class));
                }
            }
        }
        None
    }

    /// The head of the free list of `pool`, `order` and `class`.
    pub(crate) fn first_free(&self, pool: PoolKind, order: u8, class: Class) -> FrameIndex {
        match pool {
            PoolKind::Data => self.data_lists[order as usize][class as usize],
            PoolKind::Tag => self.tag_lists[order as usize],
        }
    }

    fn set_links(&mut self, index: FrameIndex, next: Option<FrameIndex>, prev: Option<FrameIndex>) {
        if let Frame::FreeHead {
            order,
            class,
            next: n,
            prev: p,
        } = self.entry(index)
        {
            self.set(
                index,
                Frame::FreeHead {
                    order,
                    class,
                    next: next.unwrap_or(n),
                    prev: prev.unwrap_or(p),
                },
            );
        } else {
            panic!("frame {index} is linked in a free list but is not a free head");
        }
    }

    /// Links `head` (a free block of `order`) at the front of its list.
    fn list_push(&mut self, head: FrameIndex, order: u8, class: Class) {
        let pool = self.pool_of(head);
        let class = if pool == PoolKind::Tag {
            TAG_POOL_CLASS
        } else {
            class
        };
        let old_first = *self.list_head(pool, order, class);
        if old_first == NIL {
            self.mark_nonempty(pool, order, class, true);
        }
        self.set(
            head,
            Frame::FreeHead {
                order,
                class,
                next: old_first,
                prev: NIL,
            },
        );
        if old_first != NIL {
            self.set_links(old_first, None, Some(head));
        }
        *self.list_head(pool, order, class) = head;
    }

    /// Unlinks free block `head` from its list.
    fn list_remove(&mut self, head: FrameIndex) {
        let Frame::FreeHead {
            order,
            class,
            next,
            prev,
        } = self.entry(head)
        else {
            panic!("frame {head} is not a free head");
        };
        let pool = self.pool_of(head);
        if prev == NIL {
            *self.list_head(pool, order, class) = next;
            if next == NIL {
                self.mark_nonempty(pool, order, class, false);
            }
        } else {
            self.set_links(prev, Some(next), None);
        }
        if next != NIL {
            self.set_links(next, None, Some(prev));
        }
        self.set(
            head,
            Frame::FreeHead {
                order,
                class,
                next: NIL,
                prev: NIL,
            },
        );
    }

    fn count_free(&mut self, pool: PoolKind, frames: u32, freed: bool) {
        let counter = match pool {
            PoolKind::Data => &mut self.stats.data_frames_free,
            PoolKind::Tag => &mut self.stats.tag_frames_free,
        };
        if freed {
            *counter += frames;
        } else {
            *counter -= frames;
        }
    }

    /// Frees the block of `order` at `head` (whose entries the caller no
    /// longer needs), merging with free buddies. Bounded by `MAX_ORDER`
    /// merges plus `2^order` entry writes.
    pub(crate) fn insert_free_block(&mut self, head: FrameIndex, order: u8) {
        for index in head + 1..head + (1 << order) {
            self.set(index, Frame::FreeTail);
        }
        let pool = self.pool_of(head);
        self.count_free(pool, 1 << order, true);
        let (span_first, span_frames) = self.layout.span_of(head);
        let mut head = head;
        let mut order = order;
        while order < MAX_ORDER {
            let relative = head - span_first;
            let buddy_relative = relative ^ (1 << order);
            if buddy_relative + (1 << order) > span_frames {
                break;
            }
            let buddy = span_first + buddy_relative;
            match self.entry(buddy) {
                Frame::FreeHead {
                    order: buddy_order, ..
                } if buddy_order == order => {
                    self.list_remove(buddy);
                    let upper = head.max(buddy);
                    self.set(upper, Frame::FreeTail);
                    head = head.min(buddy);
                    order += 1;
                    self.work.merges += 1;
                }
                _ => break,
            }
        }
        let class = self.classify(head, order);
        self.list_push(head, order, class);
    }

    /// Takes the free block at `head` (of order `found`) off its list and
    /// splits it down to `order`, returning the unused halves. The caller
    /// owns the `2^order` frames at `head` afterwards (left as free tails, on
    /// no list) and must set them.
    pub(crate) fn take_free_block(&mut self, head: FrameIndex, order: u8) {
        let Frame::FreeHead { order: found, .. } = self.entry(head) else {
            panic!("frame {head} is not a free head");
        };
        debug_assert!(found >= order);
        self.list_remove(head);
        let pool = self.pool_of(head);
        self.count_free(pool, 1 << found, false);
        let mut current = found;
        while current > order {
            current -= 1;
            let upper = head + (1 << current);
            self.split_off(upper, current);
        }
        // No stale free head may remain: refiling looks for free heads.
        self.set(head, Frame::FreeTail);
    }

    /// Files the free half `head` of `order` produced by a split.
    fn split_off(&mut self, head: FrameIndex, order: u8) {
        let class = self.classify(head, order);
        self.list_push(head, order, class);
        let pool = self.pool_of(head);
        self.count_free(pool, 1 << order, true);
        self.work.splits += 1;
    }

    /// The free block containing `index`, if `index` is free: its head and
    /// order. Reads at most `MAX_ORDER + 1` entries, counted.
    pub(crate) fn containing_free_block(&mut self, index: FrameIndex) -> Option<(FrameIndex, u8)> {
        let (span_first, _) = self.layout.span_of(index);
        let relative = index - span_first;
        for order in 0..=MAX_ORDER {
            self.work.frames_scanned += 1;
            let head = span_first + (relative & !((1u32 << order) - 1));
            if let Frame::FreeHead { order: found, .. } = self.entry(head) {
                if found == order {
                    return Some((head, order));
                }
            }
        }
        None
    }

    /// Takes the aligned block of `order` at `start`, every frame of which
    /// is free, out of the free lists by splitting the block that contains it.
    pub(crate) fn extract_free(&mut self, start: FrameIndex, order: u8) {
        // `start` heading a free block (the common case) needs no search.
        if let Frame::FreeHead { order: found, .. } = self.entry(start) {
            if found >= order {
                return self.take_free_block(start, order);
            }
        }
        let Some((mut head, mut current)) = self.containing_free_block(start) else {
            panic!("frame {start} is not free");
        };
        debug_assert!(current >= order);
        self.list_remove(head);
        let pool = self.pool_of(head);
        self.count_free(pool, 1 << current, false);
        while current > order {
            current -= 1;
            let upper = head + (1 << current);
            if start >= upper {
                self.split_off(head, current);
                head = upper;
            } else {
                self.split_off(upper, current);
            }
        }
        debug_assert_eq!(head, start);
        self.set(head, Frame::FreeTail);
    }

    /// Whether `block` is reserved for tags.
    pub(crate) fn block_reserved(&self, block: BlockId) -> bool {
        let first = self.layout.block_tag_frames(block).start;
        matches!(self.entry(first), Frame::TagReserved { .. })
    }

    /// The class of one tag block: reserved, lent (some frame holds data) or
    /// free. Reads the block's first tag frame and its state word.
    pub(crate) fn block_class(&self, block: BlockId) -> Class {
        if self.block_reserved(block) {
            Class::Reserved
        } else if self.blocks[block as usize].lent() > 0 {
            Class::Lent
        } else {
            Class::FreeBlock
        }
    }

    /// The state word of `block`.
    pub(crate) fn block_state(&self, block: BlockId) -> BlockState {
        self.blocks[block as usize]
    }

    /// Borrowed frames in `block`: the pages a recall must move.
    pub(crate) fn block_borrowers(&self, block: BlockId) -> u32 {
        self.blocks[block as usize].lent()
    }

    /// The tag blocks whose groups a data range touches.
    pub(crate) fn blocks_touched(
        &self,
        head: FrameIndex,
        frames: u32,
    ) -> core::ops::Range<BlockId> {
        // Memory without tag storage touches no block.
        self.layout.groups_touched(head, frames)
    }

    /// The class a free data block of `order` at `head` belongs in: the
    /// costliest class among the tag blocks it touches.
    pub(crate) fn class_of_block(&self, head: FrameIndex, order: u8) -> Class {
        if self.pool_of(head) == PoolKind::Tag {
            return TAG_POOL_CLASS;
        }
        if self.layout.group_block(head).is_none() {
            return Class::Untaggable;
        }
        let mut worst = Class::Reserved;
        for block in self.blocks_touched(head, 1 << order) {
            worst = worst.max(self.block_class(block));
        }
        worst
    }

    /// The class to file a free block of `order` at `head` under, from the
    /// classes its touched blocks' groups are filed under (one word each,
    /// counted). That is the block's class between operations (I8); within
    /// one, a block whose class changed is refiled before the operation
    /// ends (`refile_group`), which files again what was filed here.
    fn classify(&mut self, head: FrameIndex, order: u8) -> Class {
        if self.pool_of(head) == PoolKind::Tag {
            return TAG_POOL_CLASS;
        }
        let touched = self.blocks_touched(head, 1 << order);
        self.work.frames_scanned += touched.len() as u64;
        self.filed_class_of(touched)
    }

    /// [`Pool::class_of_block`] from the classes the touched blocks' groups
    /// are filed under: the same between operations (I8), and one word per
    /// block, so it reads no tag frame.
    pub(crate) fn filed_class_of_block(&self, head: FrameIndex, order: u8) -> Class {
        self.filed_class_of(self.blocks_touched(head, 1 << order))
    }

    /// The costliest class the groups of `touched` are filed under.
    fn filed_class_of(&self, touched: core::ops::Range<BlockId>) -> Class {
        touched
            .map(|block| self.block_state(block).filed())
            .max()
            .unwrap_or(Class::Untaggable)
    }

    /// Moves `head` to the list its class says, if it is elsewhere.
    fn refile(&mut self, head: FrameIndex) {
        let Frame::FreeHead { order, class, .. } = self.entry(head) else {
            return;
        };
        let wanted = self.classify(head, order);
        if wanted != class {
            self.list_remove(head);
            self.list_push(head, order, wanted);
        }
    }

    /// Refiles every free block touching the group of `block` if the block's
    /// class changed since the group was last filed (reserved, released,
    /// first frame lent, last frame returned); otherwise reads one word.
    /// A refile visits at most the group's frames plus two containing-block
    /// searches.
    pub(crate) fn refile_group(&mut self, block: BlockId) {
        let class = self.block_class(block);
        let state = self.blocks[block as usize];
        self.work.frames_scanned += 1;
        if state.filed() == class {
            return;
        }
        self.blocks[block as usize] = BlockState::new(state.lent(), class);
        let group = self.layout.block_data_frames(block);
        if let Some((head, _)) = self.containing_free_block(group.start) {
            self.refile(head);
        }
        let mut index = group.start;
        while index < group.end {
            self.work.frames_scanned += 1;
            match self.entry(index) {
                Frame::FreeHead { order, .. } => {
                    self.refile(index);
                    index += 1 << order;
                }
                _ => index += 1,
            }
        }
        if let Some((head, _)) = self.containing_free_block(group.end - 1) {
            self.refile(head);
        }
    }

    /// Refiles the groups of every tag block `tag_frame .. + frames` touches,
    /// after frames of it were lent or returned.
    pub(crate) fn refile_after_tag_change(&mut self, tag_frame: FrameIndex, frames: u32) {
        // Block by block, each found from its own first frame: one lookup a
        // block, as a range of block numbers would take, and right for any
        // numbering of the blocks in the carve-out.
        let end = tag_frame + frames;
        let mut frame = tag_frame;
        while frame < end {
            let Some(block) = self.layout.tag_block(frame) else {
                return;
            };
            self.refile_group(block);
            frame = self.layout.block_tag_frames(block).end;
        }
    }
}
