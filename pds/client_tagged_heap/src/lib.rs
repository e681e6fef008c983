//! `client_tagged_heap`: a small MTE-tagged object allocator over tagged
//! pages, the template for a client that wants memory safety from MTE.
//!
//! Objects are 64-byte slots in tagged arenas. `malloc` gives a slot a random
//! tag (IRG, never 0 and never its previous tag) and stores it on the slot's
//! granules (STG); the pointer carries the tag in bits 59:56. `free` retags
//! the slot, so a stale pointer no longer matches: a use after free takes a
//! tag-check fault, and the fault handler stops the client.
//!
//! Each fresh arena is read once through untagged (tag 0) pointers, a word
//! of every granule: the server hands out a tagged frame with its tags
//! zeroed (I10), so where tags are enforced a stale tag is a tag-check
//! fault here, before any object is placed, and the fault handler stops
//! the heap. Its data must be zero too, or the bytes count as corrupted.
#![no_std]

use tagloan_client::{
    load_u64, my_entry, pattern, print_counters, store_u64, AllocFlags, AllocSpec, Api, Choice,
    Env, Paced, Progress, Server, Status, Stopped, Worker,
};

const PAGE: u64 = 4096;
const SLOT: u64 = 64;
/// `live[slot]` of an allocated slot: this bit and its tag. Not the tag
/// alone, which is 0 where the kernel gives no tag access (IRG then gives
/// tag 0 and the slot would look free).
const LIVE: u8 = 0x10;
/// Most arenas it tracks.
pub const MAX_ARENAS: usize = 16;
/// Slots per arena of order 0..=2 (at most 256 per page x 4 pages).
const MAX_SLOTS: usize = MAX_ARENAS * 256;

/// What it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapPlan {
    /// Tagged arenas to allocate.
    pub arenas: u32,
    /// Order of each arena (0 to 2).
    pub order: u8,
    /// Steps spent idle first (so a scenario can fill memory before).
    pub start_delay: u32,
    /// malloc/free operations, one per step, after the arenas.
    pub operations: u32,
    /// At this operation, write through a stale pointer (use after free).
    pub use_after_free_at: Option<u32>,
    /// At this operation, free the first arena (its objects checked first)
    /// and allocate it again at once: a recycled tagged frame must come back
    /// with its tags zeroed, which the fresh-arena read checks. The first
    /// arena shares its tag block with the server's own frame, which holds
    /// it for ever, so the frame it gets back is the one it freed, tags and
    /// all (`arenas_recycled_in_place`).
    pub recycle_at: Option<u32>,
    pub seed: u64,
    /// Free every arena at the end.
    pub release: bool,
}

impl Default for HeapPlan {
    fn default() -> HeapPlan {
        HeapPlan {
            arenas: 8,
            order: 2,
            start_delay: 0,
            operations: 400,
            use_after_free_at: None,
            recycle_at: None,
            seed: 0x4ea9,
            release: true,
        }
    }
}

impl HeapPlan {
    /// Its part in the lending scenario: a tagged burst of 16 arenas once
    /// the bulk client's fill is done, and halfway through its operations
    /// an arena recycled.
    pub const fn lending() -> HeapPlan {
        HeapPlan {
            arenas: 16,
            order: 2,
            start_delay: 300,
            operations: 300,
            use_after_free_at: None,
            recycle_at: Some(150),
            seed: 0x4ea9,
            release: true,
        }
    }

    /// The lending scenario's burst, then, at its last operation, every
    /// live object checked through its own pointer (its data and, where
    /// tags are enforced, its tags: a wrong tag faults) and a write through
    /// a stale pointer: the seL4 image's plan on a kernel that enforces
    /// tags, where the fault handler must catch it.
    pub const fn lending_then_use_after_free() -> HeapPlan {
        let plan = HeapPlan::lending();
        HeapPlan {
            use_after_free_at: Some(plan.operations - 1),
            ..plan
        }
    }
}

/// The counters of [`TaggedHeap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapCounts {
    pub arenas_allocated: u64,
    pub arenas_released: u64,
    pub mallocs: u64,
    pub frees: u64,
    pub corrupted_bytes: u64,
    /// Objects whose every word was read back through their own tagged
    /// pointer and compared (at free, and before the release or the use
    /// after free).
    pub objects_checked: u64,
    /// Granules of fresh arenas read through a tag-0 pointer.
    pub fresh_granules_checked: u64,
    /// Arenas freed and allocated again, and those that got their own
    /// frame back.
    pub arenas_recycled: u64,
    pub arenas_recycled_in_place: u64,
    pub no_memory: u64,
    pub errors: u64,
    pub use_after_free_attempted: bool,
}

/// The worker.
#[derive(Clone, Debug)]
pub struct TaggedHeap {
    /// What it has done; kept across restarts (the report, not the state).
    pub counts: HeapCounts,
    plan: HeapPlan,
    window: u64,
    arenas: usize,
    /// Per slot: 0 free, else [`LIVE`] and the live object's tag.
    live: [u8; MAX_SLOTS],
    /// Per slot: the tag it had when last freed (0 never).
    last: [u8; MAX_SLOTS],
    stale: Option<u64>,
    releasing: bool,
    /// The first arena was freed by a recycle and not had again.
    lost_first: bool,
    /// Every live object was checked once the operations were done.
    checked_at_end: bool,
    delay: u32,
    operations: u32,
    choice: Choice,
}

impl Default for TaggedHeap {
    fn default() -> TaggedHeap {
        TaggedHeap::new(HeapPlan::default())
    }
}

impl TaggedHeap {
    pub fn new(plan: HeapPlan) -> TaggedHeap {
        TaggedHeap {
            counts: HeapCounts::default(),
            plan,
            window: 0,
            arenas: 0,
            live: [0; MAX_SLOTS],
            last: [0; MAX_SLOTS],
            stale: None,
            releasing: false,
            lost_first: false,
            checked_at_end: false,
            delay: 0,
            operations: 0,
            choice: Choice::new(plan.seed),
        }
    }

    fn slots_per_arena(&self) -> usize {
        (PAGE << self.plan.order.min(2)) as usize / SLOT as usize
    }

    fn slot_address(&self, slot: usize) -> u64 {
        let per = self.slots_per_arena();
        let arena = (slot / per) as u64;
        self.window + arena * (PAGE << self.plan.order.min(2)) + (slot % per) as u64 * SLOT
    }

    fn tagged(address: u64, tag: u8) -> u64 {
        address | u64::from(tag) << 56
    }

    /// A fresh tag for `slot`: IRG excluding 0 and its previous tag.
    fn fresh_tag(&self, env: &mut dyn Env, slot: usize) -> u8 {
        let exclude = 1u16 | 1 << self.last[slot];
        let pointer = env.irg(self.slot_address(slot), exclude);
        (pointer >> 56 & 0xf) as u8
    }

    fn malloc(&mut self, env: &mut dyn Env, slot: usize) -> Result<(), Stopped> {
        let tag = self.fresh_tag(env, slot);
        let pointer = TaggedHeap::tagged(self.slot_address(slot), tag);
        env.set_tags(pointer, SLOT as usize)?;
        for word in 0..SLOT / 8 {
            store_u64(
                env,
                pointer + word * 8,
                pattern(self.slot_address(slot) + word * 8, u64::from(tag)),
            )?;
        }
        self.live[slot] = LIVE | tag;
        self.counts.mallocs += 1;
        Ok(())
    }

    /// Reads a live object back through its own pointer and counts the
    /// bytes that differ from what `malloc` wrote. Where tags are enforced,
    /// a lost or wrong tag makes this a tag-check fault.
    fn check(&mut self, env: &mut dyn Env, slot: usize) -> Result<(), Stopped> {
        let tag = self.live[slot] & 0xf;
        let pointer = TaggedHeap::tagged(self.slot_address(slot), tag);
        for word in 0..SLOT / 8 {
            let found = load_u64(env, pointer + word * 8)?;
            let diff = found ^ pattern(self.slot_address(slot) + word * 8, u64::from(tag));
            self.counts.corrupted_bytes +=
                (0..8).filter(|b| diff >> (8 * b) & 0xff != 0).count() as u64;
        }
        self.counts.objects_checked += 1;
        Ok(())
    }

    /// Reads a fresh arena at `vaddr` through a tag-0 pointer, a word of
    /// every granule: its tags must be zero (a stale one faults) and its
    /// data too (a stale byte counts as corrupted).
    fn check_fresh(&mut self, env: &mut dyn Env, vaddr: u64) -> Result<(), Stopped> {
        let bytes = PAGE << self.plan.order.min(2);
        for granule in (0..bytes).step_by(16) {
            let found = load_u64(env, vaddr + granule)?;
            self.counts.corrupted_bytes +=
                (0..8).filter(|b| found >> (8 * b) & 0xff != 0).count() as u64;
        }
        self.counts.fresh_granules_checked += bytes / 16;
        Ok(())
    }

    fn arena_address(&self, arena: usize) -> u64 {
        self.window + arena as u64 * (PAGE << self.plan.order.min(2))
    }

    /// Frees the first arena, its live objects checked first, and allocates
    /// it again at the same address, read fresh. Its slots keep the tags
    /// they had last, so a new object there never takes a stale tag. If it
    /// cannot be had again, the operations end there.
    fn recycle(&mut self, env: &mut dyn Env) -> Result<(), Stopped> {
        if self.arenas == 0 || self.lost_first {
            return Ok(());
        }
        let per = self.slots_per_arena();
        for slot in 0..per {
            if self.live[slot] != 0 {
                self.check(env, slot)?;
                self.last[slot] = self.live[slot] & 0xf;
                self.live[slot] = 0;
            }
        }
        let vaddr = self.arena_address(0);
        let before = Server::for_client()
            .query(env, vaddr)?
            .map(|info| info.frame);
        if Server::for_client().free(env, vaddr)?.is_err() {
            self.counts.errors += 1;
            return Ok(());
        }
        let spec = AllocSpec {
            order: self.plan.order.min(2),
            flags: AllocFlags {
                tagged: true,
                ..AllocFlags::default()
            },
        };
        match Server::for_client().alloc(env, vaddr, spec)? {
            Ok(a) => {
                self.check_fresh(env, vaddr)?;
                self.counts.arenas_recycled += 1;
                if before == Ok(a.first_frame) {
                    self.counts.arenas_recycled_in_place += 1;
                }
            }
            Err(e) => {
                // The arena is gone: no slot of it is offered again, and
                // the operations end.
                self.lost_first = true;
                self.operations = self.plan.operations;
                if e.status == Status::NoMemory {
                    self.counts.no_memory += 1;
                } else {
                    self.counts.errors += 1;
                }
            }
        }
        Ok(())
    }

    /// Checks every live object.
    fn check_live(&mut self, env: &mut dyn Env) -> Result<(), Stopped> {
        let slots = self.arenas * self.slots_per_arena();
        for slot in 0..slots {
            if self.live[slot] != 0 {
                self.check(env, slot)?;
            }
        }
        Ok(())
    }

    fn free(&mut self, env: &mut dyn Env, slot: usize) -> Result<(), Stopped> {
        let tag = self.live[slot] & 0xf;
        let pointer = TaggedHeap::tagged(self.slot_address(slot), tag);
        self.check(env, slot)?;
        // Retag on free: the old pointer goes stale.
        self.last[slot] = tag;
        let new_tag = self.fresh_tag(env, slot);
        env.set_tags(
            TaggedHeap::tagged(self.slot_address(slot), new_tag),
            SLOT as usize,
        )?;
        self.live[slot] = 0;
        self.stale = Some(pointer);
        self.counts.frees += 1;
        Ok(())
    }
}

impl Worker for TaggedHeap {
    fn start(&mut self, env: &mut dyn Env) {
        // A restart begins the plan again; the counts are the report and
        // carry over.
        *self = TaggedHeap {
            counts: self.counts,
            ..TaggedHeap::new(self.plan)
        };
        self.window = my_entry(env).map_or(0, |(_, e)| e.window_base);
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        if self.delay < self.plan.start_delay {
            self.delay += 1;
            return Ok(Progress::More);
        }
        let wanted = (self.plan.arenas as usize).min(MAX_ARENAS);
        if !self.releasing && self.arenas < wanted {
            let vaddr = self.window + self.arenas as u64 * (PAGE << self.plan.order.min(2));
            let flags = AllocFlags {
                tagged: true,
                ..AllocFlags::default()
            };
            match Server::for_client().alloc(
                env,
                vaddr,
                AllocSpec {
                    order: self.plan.order.min(2),
                    flags,
                },
            )? {
                Ok(_) => {
                    self.check_fresh(env, vaddr)?;
                    self.arenas += 1;
                    self.counts.arenas_allocated += 1;
                }
                Err(e) if e.status == Status::NoMemory || e.status == Status::OutOfQuota => {
                    self.counts.no_memory += 1;
                    return Ok(Progress::Done);
                }
                Err(_) => {
                    self.counts.errors += 1;
                    return Ok(Progress::Done);
                }
            }
            return Ok(Progress::More);
        }
        if self.arenas == 0 {
            return Ok(Progress::Done);
        }
        if self.operations >= self.plan.operations {
            if !self.checked_at_end {
                self.checked_at_end = true;
                self.check_live(env)?;
            }
            if self.plan.release && self.arenas > usize::from(self.lost_first) {
                // Release the last arena: its objects die with it.
                self.releasing = true;
                self.arenas -= 1;
                let per = self.slots_per_arena();
                for slot in self.arenas * per..(self.arenas + 1) * per {
                    self.live[slot] = 0;
                }
                let vaddr = self.window + self.arenas as u64 * (PAGE << self.plan.order.min(2));
                if Server::for_client().free(env, vaddr)?.is_err() {
                    self.counts.errors += 1;
                }
                self.counts.arenas_released += 1;
                return Ok(if self.arenas == usize::from(self.lost_first) {
                    Progress::Done
                } else {
                    Progress::More
                });
            }
            return Ok(Progress::Done);
        }
        if Some(self.operations) == self.plan.recycle_at {
            self.recycle(env)?;
            if self.lost_first {
                return Ok(Progress::More);
            }
        }
        if Some(self.operations) == self.plan.use_after_free_at {
            if let Some(stale) = self.stale {
                // What survived the run is checked and reported first: the
                // write below should stop this client.
                self.check_live(env)?;
                self.counts.use_after_free_attempted = true;
                print_counters(env, "before its use after free", &|report| {
                    self.counters(report)
                })?;
                // The bug this allocator exists to catch: a write through a
                // pointer whose object was freed (and so retagged).
                store_u64(env, stale, 0xdead_beef)?;
            }
        }
        self.operations += 1;
        let slot = self
            .choice
            .below((self.arenas * self.slots_per_arena()) as u64) as usize;
        if self.live[slot] == 0 {
            self.malloc(env, slot)?;
        } else {
            self.free(env, slot)?;
        }
        Ok(Progress::More)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("arenas", self.counts.arenas_allocated);
        report("arenas_released", self.counts.arenas_released);
        report("mallocs", self.counts.mallocs);
        report("frees", self.counts.frees);
        report("corrupted_bytes", self.counts.corrupted_bytes);
        report("objects_checked", self.counts.objects_checked);
        report("fresh_granules_checked", self.counts.fresh_granules_checked);
        report("arenas_recycled", self.counts.arenas_recycled);
        report(
            "arenas_recycled_in_place",
            self.counts.arenas_recycled_in_place,
        );
        report("no_memory", self.counts.no_memory);
        report("errors", self.counts.errors);
        report(
            "use_after_free_attempted",
            u64::from(self.counts.use_after_free_attempted),
        );
    }
}

/// The PD: the worker, paced by the fault handler.
pub type ClientTaggedHeap = Paced<TaggedHeap>;
