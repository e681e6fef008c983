//! `check_invariants()`: the pool invariants of DESIGN §3, verified against
//! the pool's own tables.
//!
//! I1–I8 and I11 are structural and checked here, in one pass over the frame
//! table, the free lists, the tag blocks, the page maps and the deferred
//! store (O(frames); meant for tests and the simulator, after every step).
//! I9 and I10 are about data and tags, which the pool never sees: the tests
//! check them with a shadow model. I12 (failure atomicity) is checked by the
//! tests comparing [`crate::Pool::fingerprint`] before and after a refusal.

use crate::frame::{Class, Frame, Mode, MAX_ORDER, ORDERS};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::violation::{fail, require, Invariant, Subject, Violation};
use crate::{ClientState, Pool};

#[derive(Default)]
struct Tally {
    free_data: u32,
    free_tag: u32,
    free_heads: u32,
    lent: u32,
    tagged: u32,
    owned: u32,
    reserved_frames: u32,
    server: u32,
    blocks_reserved: u32,
}

impl Pool<'_> {
    /// Verifies I1–I8 and I11 and returns the first violation.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let mut tally = Tally::default();
        for region in self.layout.regions() {
            self.check_span(
                region.data_first,
                region.data_frames,
                PoolKind::Data,
                &mut tally,
            )?;
            self.check_span(
                region.tag_first,
                region.tag_frames,
                PoolKind::Tag,
                &mut tally,
            )?;
        }
        self.check_blocks(&mut tally)?;
        self.check_lists(&tally)?;
        self.check_clients()?;
        self.check_deferred()?;
        self.check_counters(&tally)
    }

    fn check_span(
        &self,
        first: FrameIndex,
        frames: u32,
        pool: PoolKind,
        tally: &mut Tally,
    ) -> Result<(), Violation> {
        let end = first + frames;
        let mut index = first;
        while index < end {
            let subject = Subject::Frame(index);
            let frame = self.frames[index as usize].unpack().map_err(|e| {
                fail(
                    Invariant::Ownership,
                    subject,
                    "every entry decodes to one state",
                    0,
                    e.0,
                )
            })?;
            match frame {
                Frame::FreeHead { order, class, .. } => {
                    let size = 1u32 << order;
                    let relative = index - first;
                    require(
                        order <= MAX_ORDER,
                        Invariant::FreeLists,
                        subject,
                        "order at most 9",
                        9,
                        order.into(),
                    )?;
                    require(
                        relative.is_multiple_of(size),
                        Invariant::FreeLists,
                        subject,
                        "free block aligned to its order",
                        0,
                        (relative % size).into(),
                    )?;
                    require(
                        relative + size <= frames,
                        Invariant::FreeLists,
                        subject,
                        "free block inside its span",
                        frames.into(),
                        (relative + size).into(),
                    )?;
                    for tail in index + 1..index + size {
                        require(
                            matches!(self.entry_checked(tail), Some(Frame::FreeTail)),
                            Invariant::FreeLists,
                            Subject::Frame(tail),
                            "every frame of a free block after its head is a free tail",
                            0,
                            0,
                        )?;
                    }
                    if order < MAX_ORDER {
                        let buddy_relative = relative ^ size;
                        if buddy_relative + size <= frames {
                            let buddy = first + buddy_relative;
                            let merged = matches!(self.entry_checked(buddy), Some(Frame::FreeHead { order: o, .. }) if o == order);
                            require(
                                !merged,
                                Invariant::FreeLists,
                                subject,
                                "free buddies are merged",
                                0,
                                buddy.into(),
                            )?;
                        }
                    }
                    if pool == PoolKind::Data {
                        let wanted = self.class_of_block(index, order);
                        require(
                            class == wanted,
                            Invariant::FreeLists,
                            subject,
                            "free data block filed under its class",
                            wanted as u64,
                            class as u64,
                        )?;
                        tally.free_data += size;
                    } else {
                        tally.free_tag += size;
                    }
                    tally.free_heads += 1;
                    index += size;
                    continue;
                }
                Frame::FreeTail => {
                    return Err(fail(
                        Invariant::FreeLists,
                        subject,
                        "a free tail lies inside a free block",
                        1,
                        0,
                    ));
                }
                Frame::Owned(owned) => {
                    tally.owned += 1;
                    let client = self.clients.get(usize::from(owned.client));
                    let Some(client) = client else {
                        return Err(fail(
                            Invariant::Ownership,
                            subject,
                            "owner is a declared client",
                            self.clients.len() as u64,
                            owned.client.into(),
                        ));
                    };
                    require(
                        owned.page < client.window_pages,
                        Invariant::Ownership,
                        subject,
                        "mapping inside the owner's window",
                        client.window_pages.into(),
                        owned.page.into(),
                    )?;
                    let mapped = self.page_map[(client.map_first + owned.page) as usize];
                    require(
                        mapped == index,
                        Invariant::Authority,
                        subject,
                        "the owner's page map points back at the frame",
                        index.into(),
                        mapped.into(),
                    )?;
                    if pool == PoolKind::Tag {
                        tally.lent += 1;
                        require(
                            owned.mode != Mode::Tagged,
                            Invariant::TagStorageUse,
                            subject,
                            "tag storage is never tagged",
                            0,
                            1,
                        )?;
                        require(
                            !owned.pinned,
                            Invariant::TagStorageUse,
                            subject,
                            "tag storage is never pinned",
                            0,
                            1,
                        )?;
                        require(
                            !owned.contiguous,
                            Invariant::TagStorageUse,
                            subject,
                            "tag storage never holds unmovable contiguous data",
                            0,
                            1,
                        )?;
                    }
                    if owned.mode == Mode::Tagged {
                        tally.tagged += 1;
                        let block = self.layout.group_block(index);
                        let reserved = block.is_some_and(|b| self.block_reserved(b));
                        require(
                            reserved,
                            Invariant::TagsNeedStorage,
                            subject,
                            "a tagged frame's block is reserved",
                            1,
                            0,
                        )?;
                    }
                    if let Some(slot) = owned.deferred {
                        let at = self.deferred.get(usize::from(slot)).map(|s| s.frame);
                        require(
                            at == Some(index),
                            Invariant::DeferredTags,
                            subject,
                            "deferred slot names this frame",
                            index.into(),
                            at.unwrap_or(NIL).into(),
                        )?;
                        require(
                            owned.mode != Mode::Tagged,
                            Invariant::DeferredTags,
                            subject,
                            "no deferred tags on a tagged mapping",
                            0,
                            1,
                        )?;
                    }
                }
                Frame::TagReserved { .. } | Frame::TagReservedTail => {
                    require(
                        pool == PoolKind::Tag,
                        Invariant::ReservedUnmapped,
                        subject,
                        "only tag storage is reserved for tags",
                        1,
                        0,
                    )?;
                    tally.reserved_frames += 1;
                }
                Frame::Server { .. } => {
                    require(
                        pool == PoolKind::Data,
                        Invariant::TagStorageUse,
                        subject,
                        "tag storage never holds server data",
                        0,
                        1,
                    )?;
                    tally.server += 1;
                }
            }
            index += 1;
        }
        Ok(())
    }

    fn entry_checked(&self, index: FrameIndex) -> Option<Frame> {
        self.frames
            .get(index as usize)
            .and_then(|e| e.unpack().ok())
    }

    fn check_blocks(&self, tally: &mut Tally) -> Result<(), Violation> {
        for block in 0..self.layout.blocks_total() {
            let subject = Subject::Block(block);
            let tag_frames = self.layout.block_tag_frames(block);
            let head = self.entry_checked(tag_frames.start);
            let tagged = self
                .layout
                .block_data_frames(block)
                .filter(|&f| matches!(self.entry_checked(f), Some(Frame::Owned(o)) if o.mode == Mode::Tagged))
                .count() as u64;
            // The server's tagged frames: each holds the block for ever.
            let server_holds = self
                .layout
                .block_data_frames(block)
                .filter(|&f| {
                    matches!(
                        self.entry_checked(f),
                        Some(Frame::Server { tagged: true, .. })
                    )
                })
                .count() as u64;
            // The block's state word follows its frames (I8): its lent count,
            // and the class its group is filed under.
            let lent = tag_frames
                .clone()
                .filter(|&f| matches!(self.entry_checked(f), Some(Frame::Owned(_))))
                .count() as u64;
            let state = self.blocks[block as usize];
            require(
                u64::from(state.lent()) == lent,
                Invariant::Accounting,
                subject,
                "the block's lent count equals its tag frames holding data",
                lent,
                state.lent().into(),
            )?;
            let class = self.block_class(block);
            require(
                state.filed() == class,
                Invariant::FreeLists,
                subject,
                "the block's group is filed under the block's class",
                class as u64,
                state.filed() as u64,
            )?;
            match head {
                Some(Frame::TagReserved { refs, holds }) => {
                    tally.blocks_reserved += 1;
                    for frame in tag_frames.start + 1..tag_frames.end {
                        require(
                            matches!(self.entry_checked(frame), Some(Frame::TagReservedTail)),
                            Invariant::ReservedUnmapped,
                            Subject::Frame(frame),
                            "every frame of a reserved block holds tags, none holds data",
                            0,
                            0,
                        )?;
                    }
                    require(
                        u64::from(refs) == tagged,
                        Invariant::Refcount,
                        subject,
                        "refcount equals the tagged frames of the group",
                        tagged,
                        refs.into(),
                    )?;
                    require(
                        u64::from(holds) == server_holds,
                        Invariant::Refcount,
                        subject,
                        "permanent holds equal the server's tagged frames of the group",
                        server_holds,
                        holds.into(),
                    )?;
                    require(
                        refs > 0 || holds > 0,
                        Invariant::Refcount,
                        subject,
                        "a reserved block is held by something",
                        1,
                        0,
                    )?;
                }
                _ => {
                    require(
                        tagged + server_holds == 0,
                        Invariant::TagsNeedStorage,
                        subject,
                        "no tagged frame (a client's or the server's) in the group of an unreserved block",
                        0,
                        tagged + server_holds,
                    )?;
                    for frame in tag_frames {
                        require(
                            !matches!(
                                self.entry_checked(frame),
                                Some(Frame::TagReservedTail | Frame::TagReserved { .. })
                            ),
                            Invariant::ReservedUnmapped,
                            Subject::Frame(frame),
                            "an unreserved block has no reserved frame",
                            0,
                            1,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    fn check_lists(&self, tally: &Tally) -> Result<(), Violation> {
        let mut heads = 0u32;
        let limit = self.layout.frames_total();
        let mut walk =
            |pool: PoolKind, order: u8, class: Class, first: FrameIndex| -> Result<(), Violation> {
                let subject = Subject::List { pool, order, class };
                let mut prev = NIL;
                let mut node = first;
                let mut steps = 0u32;
                while node != NIL {
                    steps += 1;
                    require(
                        steps <= limit,
                        Invariant::FreeLists,
                        subject,
                        "free list is not a cycle",
                        limit.into(),
                        steps.into(),
                    )?;
                    require(
                        node < limit,
                        Invariant::FreeLists,
                        subject,
                        "list node is a managed frame",
                        limit.into(),
                        node.into(),
                    )?;
                    let in_pool = self.layout.locate(node).map(|l| l.pool);
                    require(
                        in_pool == Some(pool),
                        Invariant::FreeLists,
                        Subject::Frame(node),
                        "list node belongs to the list's pool",
                        0,
                        1,
                    )?;
                    match self.entry_checked(node) {
                        Some(Frame::FreeHead {
                            order: o,
                            class: c,
                            next,
                            prev: p,
                        }) => {
                            require(
                                o == order,
                                Invariant::FreeLists,
                                Subject::Frame(node),
                                "list node has the list's order",
                                order.into(),
                                o.into(),
                            )?;
                            if pool == PoolKind::Data {
                                require(
                                    c == class,
                                    Invariant::FreeLists,
                                    Subject::Frame(node),
                                    "list node has the list's class",
                                    class as u64,
                                    c as u64,
                                )?;
                            }
                            require(
                                p == prev,
                                Invariant::FreeLists,
                                Subject::Frame(node),
                                "back link matches",
                                prev.into(),
                                p.into(),
                            )?;
                            prev = node;
                            node = next;
                            heads += 1;
                        }
                        _ => {
                            return Err(fail(
                                Invariant::FreeLists,
                                Subject::Frame(node),
                                "list node is a free head",
                                1,
                                0,
                            ))
                        }
                    }
                }
                Ok(())
            };
        for order in 0..ORDERS {
            for class in Class::ALL {
                walk(
                    PoolKind::Data,
                    order as u8,
                    class,
                    self.data_lists[order][class as usize],
                )?;
            }
            walk(
                PoolKind::Tag,
                order as u8,
                Class::FreeBlock,
                self.tag_lists[order],
            )?;
        }
        if let Some((pool, order, class)) = self.nonempty_disagreement() {
            return Err(fail(
                Invariant::FreeLists,
                Subject::List { pool, order, class },
                "an order is marked non-empty exactly when its list has a block",
                u64::from(self.first_free(pool, order, class) != NIL),
                u64::from(self.lowest_nonempty(pool, class, order) == Some(order)),
            ));
        }
        require(
            heads == tally.free_heads,
            Invariant::FreeLists,
            Subject::Counter("free heads"),
            "every free block is on exactly one list",
            tally.free_heads.into(),
            heads.into(),
        )
    }

    fn check_clients(&self) -> Result<(), Violation> {
        for (number, client) in self.clients.iter().enumerate() {
            let subject = Subject::Client(number as u8);
            let mut held = 0u32;
            self.check_mapped_bits(number as u8, client)?;
            for page in 0..client.window_pages {
                let frame = self.page_map[(client.map_first + page) as usize];
                if frame == NIL {
                    continue;
                }
                held += 1;
                let owner_ok = matches!(self.entry_checked(frame), Some(Frame::Owned(o)) if usize::from(o.client) == number && o.page == page);
                require(
                    owner_ok,
                    Invariant::Authority,
                    subject,
                    "a mapped page's frame is owned by this client at this page",
                    frame.into(),
                    page.into(),
                )?;
            }
            require(
                held == client.frames_used,
                Invariant::Accounting,
                subject,
                "frames used equals pages mapped",
                held.into(),
                client.frames_used.into(),
            )?;
            require(
                client.frames_used <= client.quota_frames,
                Invariant::Accounting,
                subject,
                "quota not exceeded",
                client.quota_frames.into(),
                client.frames_used.into(),
            )?;
        }
        Ok(())
    }

    /// The mapped-page bits follow the page map, and the summary bits
    /// follow the page words (`mapped.rs`).
    fn check_mapped_bits(&self, number: u8, client: &ClientState) -> Result<(), Violation> {
        let subject = Subject::Client(number);
        // The client's words are where its window says (a resumed table
        // could say otherwise): after the words of every earlier client.
        let bits_first: usize = self.clients[..usize::from(number)]
            .iter()
            .map(|c| crate::mapped::words(c.window_pages))
            .sum();
        require(
            client.bits_first as usize == bits_first,
            Invariant::Accounting,
            subject,
            "the client's mapped-page bits follow those of the clients before it",
            bits_first as u64,
            client.bits_first.into(),
        )?;
        let summary_words = crate::mapped::summary_words(client.window_pages);
        require(
            client.summary_words == summary_words,
            Invariant::Accounting,
            subject,
            "a summary word per 4,096 window pages",
            summary_words.into(),
            client.summary_words.into(),
        )?;
        let summary_first = client.bits_first as usize;
        let pages_first = summary_first + client.summary_words as usize;
        // No summary bit beyond the last page word: reclaim would follow it
        // into the next client's words.
        let page_words = client.window_pages.div_ceil(64);
        let stray = match summary_words.checked_sub(1) {
            // Windows are never empty (Pool::new), but a resumed table is
            // only what it says.
            None => 0,
            Some(last) => {
                let used_bits = page_words - 64 * last;
                let word = self.map_bits[summary_first + last as usize];
                if used_bits == 64 {
                    0
                } else {
                    word >> used_bits
                }
            }
        };
        require(
            stray == 0,
            Invariant::Accounting,
            subject,
            "no summary bit past the window's last word of mapped-page bits",
            0,
            stray,
        )?;
        for (word_index, first_page) in (0..client.window_pages).step_by(64).enumerate() {
            let last_page = client.window_pages.min(first_page + 64);
            let expected = (first_page..last_page)
                .filter(|&page| self.page_map[(client.map_first + page) as usize] != NIL)
                .fold(0u64, |word, page| word | 1 << (page % 64));
            let found = self.map_bits[pages_first + word_index];
            require(
                found == expected,
                Invariant::Accounting,
                subject,
                "the mapped-page bits of a word of the window follow the page map",
                expected,
                found,
            )?;
            let summary = self.map_bits[summary_first + word_index / 64];
            let summary_bit = summary >> (word_index % 64) & 1;
            require(
                summary_bit == u64::from(expected != 0),
                Invariant::Accounting,
                subject,
                "a summary bit is set exactly when its word of mapped-page bits is not zero",
                u64::from(expected != 0),
                summary_bit,
            )?;
        }
        Ok(())
    }

    fn check_deferred(&self) -> Result<(), Violation> {
        for (slot, entry) in self.deferred.iter().enumerate() {
            if entry.frame == NIL {
                continue;
            }
            let ok = matches!(self.entry_checked(entry.frame), Some(Frame::Owned(o)) if o.deferred == Some(slot as u16) && o.mode != Mode::Tagged);
            require(
                ok,
                Invariant::DeferredTags,
                Subject::DeferredSlot(slot as u16),
                "deferred tags belong to an owned frame not mapped tagged",
                1,
                0,
            )?;
        }
        Ok(())
    }

    fn check_counters(&self, tally: &Tally) -> Result<(), Violation> {
        let s = &self.stats;
        let checks: [(&'static str, u32, u32); 7] = [
            ("data_frames_free", tally.free_data, s.data_frames_free),
            ("tag_frames_free", tally.free_tag, s.tag_frames_free),
            ("tag_frames_lent", tally.lent, s.tag_frames_lent),
            ("frames_tagged", tally.tagged, s.frames_tagged),
            ("blocks_reserved", tally.blocks_reserved, s.blocks_reserved),
            ("frames_server", tally.server, s.frames_server),
            (
                "frames_total",
                tally.free_data
                    + tally.free_tag
                    + tally.owned
                    + tally.reserved_frames
                    + tally.server,
                s.frames_total,
            ),
        ];
        for (name, counted, recorded) in checks {
            require(
                counted == recorded,
                Invariant::Accounting,
                Subject::Counter(name),
                "counter equals the table",
                counted.into(),
                recorded.into(),
            )?;
        }
        Ok(())
    }
}
