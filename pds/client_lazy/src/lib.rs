//! `client_lazy`: the mprotect(PROT_MTE) path. It allocates untagged memory,
//! fills it, enables tagging on it (no tag storage is reserved yet: the
//! pages become metadata-none), then touches it. Each first touch faults to
//! the fault handler, which has the server reserve the tag block and map the
//! page tagged, and the client resumes. It then checks that its data
//! survived, that the pages are tagged, and that their tags are zero (a load
//! through a tag-0 pointer succeeds on every granule it checks, all but the
//! first granule of each round). That first page is touched by a tag store
//! (STG) through a tagged pointer, as an allocator retagging its memory
//! would, and its first word is then read through that pointer.
#![no_std]

use tagloan_client::{
    load_u64, my_entry, pattern, store_u64, AllocSpec, Api, Env, Paced, PageState, Progress,
    Server, Status, Stopped, Worker,
};

const PAGE: u64 = 4096;

/// What it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LazyPlan {
    /// Rounds of alloc, fill, enable, touch, verify, disable, free.
    pub rounds: u32,
    /// Order of each allocation.
    pub order: u8,
    /// Steps spent idle first (so a scenario can fill memory before).
    pub start_delay: u32,
    /// After the delay, wait (asking the server's `stats` each step) until
    /// tag storage is lent as data and at least this many data frames are
    /// free (0: no wait): in the lending scenario, until the bulk client
    /// has filled memory and freed its churn, whatever the timing of the
    /// two PDs.
    pub wait_for_free: u64,
    /// Keep every round's pages until the end (each round then takes new
    /// memory); otherwise each round frees its pages.
    pub hold: bool,
    /// With `hold`: after the rounds, at most this many steps spent
    /// holding the pages, asking the server each step where one of them
    /// lives, until one has moved (other clients' requests may move them);
    /// then every held page is read back through its own pointers and
    /// freed.
    pub linger: u32,
}

impl LazyPlan {
    /// Its part in the lending scenario: untagged data that lands where the
    /// bulk client's churn freed (untagged placement prefers groups whose
    /// block is lent), tagged lazily, so each first touch recalls a lent
    /// block; every round's pages are kept, 48 tagged pages in one 2 MiB
    /// range with the rest of it free, while the bulk client's contiguous
    /// requests evacuate that range (its tagged pages move, with their
    /// tags copied or parked: at most the deferred store's 64); then each
    /// page is read back through its own pointers, and the parked ones
    /// fault and get their tags back.
    pub const fn lending() -> LazyPlan {
        LazyPlan {
            rounds: 12,
            order: 2,
            start_delay: 300,
            // The bulk client's churn: 8 buffers of 512 frames.
            wait_for_free: 8 * 512,
            hold: true,
            linger: 20_000,
        }
    }
}

impl Default for LazyPlan {
    fn default() -> LazyPlan {
        LazyPlan {
            rounds: 8,
            order: 3,
            start_delay: 0,
            wait_for_free: 0,
            hold: false,
            linger: 0,
        }
    }
}

/// Rounds whose pointer tags it remembers (the rest are checked untagged).
const MAX_ROUNDS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Alloc,
    Enable,
    Touch,
    Free,
}

/// The counters of [`Lazy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LazyCounts {
    pub pages_tagged_lazily: u64,
    pub corrupted_bytes: u64,
    pub not_tagged: u64,
    pub no_memory: u64,
    pub errors: u64,
    pub rounds_done: u64,
    /// Held pages read back through their own pointers after the linger.
    pub pages_rechecked: u64,
    /// Of those, the pages found on another frame than the one they were
    /// tagged on, and those found with their tags parked (the read then
    /// faulted and got them back).
    pub pages_moved: u64,
    pub pages_parked: u64,
}

/// The worker.
#[derive(Clone, Debug)]
pub struct Lazy {
    /// What it has done; kept across restarts (the report, not the state).
    pub counts: LazyCounts,
    plan: LazyPlan,
    window: u64,
    round: u32,
    /// Whether this round's `enable_tagging` succeeded.
    enabled: bool,
    released: u32,
    delay: u32,
    phase: Phase,
    /// Per round: the tag its first page's first granule was given (0
    /// where tagging was not enabled), and that page's frame once tagged.
    first_tags: [u8; MAX_ROUNDS],
    first_frames: [u64; MAX_ROUNDS],
    /// A held page was seen moved while lingering.
    moved: bool,
    /// The wait for free memory is over (see [`LazyPlan::wait_for_free`]).
    started: bool,
    lingered: u32,
    /// Rounds read back after the linger.
    rechecked: u32,
}

impl Default for Lazy {
    fn default() -> Lazy {
        Lazy::new(LazyPlan::default())
    }
}

impl Lazy {
    pub fn new(plan: LazyPlan) -> Lazy {
        Lazy {
            counts: LazyCounts::default(),
            plan,
            window: 0,
            round: 0,
            enabled: false,
            released: 0,
            delay: 0,
            phase: Phase::Alloc,
            first_tags: [0; MAX_ROUNDS],
            first_frames: [0; MAX_ROUNDS],
            moved: false,
            started: false,
            lingered: 0,
            rechecked: 0,
        }
    }

    /// Reads the first and last word of every page of `round` through the
    /// pointers it was written and tagged with, and counts the bytes that
    /// differ. A page moved meanwhile must have kept its data and tags;
    /// one whose tags were parked faults and gets them back first.
    fn recheck(&mut self, env: &mut dyn Env, round: u32) -> Result<(), Stopped> {
        let base = self.base_of(round);
        let generation = u64::from(round) + 1;
        let first_tag = self.first_tags.get(round as usize).copied().unwrap_or(0);
        let first_frame = self.first_frames.get(round as usize).copied();
        for page in 0..self.pages() {
            let at = base + page * PAGE;
            if let Ok(info) = Server::for_client().query(env, at)? {
                if info.deferred_tags {
                    self.counts.pages_parked += 1;
                }
                if page == 0 && first_frame.is_some_and(|f| f != 0 && f != info.frame) {
                    self.counts.pages_moved += 1;
                }
            }
            let first = if page == 0 {
                at | u64::from(first_tag) << 56
            } else {
                at
            };
            for (pointer, word) in [(first, at), (at + PAGE - 8, at + PAGE - 8)] {
                let found = load_u64(env, pointer)?;
                let diff = found ^ pattern(word, generation);
                self.counts.corrupted_bytes +=
                    (0..8).filter(|b| diff >> (8 * b) & 0xff != 0).count() as u64;
            }
            self.counts.pages_rechecked += 1;
        }
        Ok(())
    }

    fn pages(&self) -> u64 {
        1 << self.plan.order
    }

    fn base_of(&self, round: u32) -> u64 {
        // Holding: a slot per round. Otherwise alternate between two slots,
        // so a round's address differs from the last one's.
        let slot = if self.plan.hold { round } else { round % 2 };
        self.window + u64::from(slot) * self.pages() * PAGE
    }

    fn base(&self) -> u64 {
        self.base_of(self.round)
    }

    fn generation(&self) -> u64 {
        u64::from(self.round) + 1
    }
}

impl Worker for Lazy {
    fn start(&mut self, env: &mut dyn Env) {
        // A restart begins the plan again; the counts are the report and
        // carry over.
        *self = Lazy {
            counts: self.counts,
            ..Lazy::new(self.plan)
        };
        self.window = my_entry(env).map_or(0, |(_, e)| e.window_base);
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        if self.delay < self.plan.start_delay {
            self.delay += 1;
            return Ok(Progress::More);
        }
        let server = Server::for_client();
        if self.plan.wait_for_free > 0 && !self.started {
            if let Ok(stats) = server.stats(env)? {
                self.started = stats.lent > 0 && stats.data_free >= self.plan.wait_for_free;
            }
            return Ok(Progress::More);
        }
        if self.round >= self.plan.rounds {
            if self.plan.hold && !self.moved && self.lingered < self.plan.linger {
                let round = self.lingered % self.plan.rounds.max(1);
                self.lingered += 1;
                let original = self.first_frames.get(round as usize).copied().unwrap_or(0);
                if let Ok(info) = server.query(env, self.base_of(round))? {
                    self.moved = info.deferred_tags || (original != 0 && info.frame != original);
                }
                return Ok(Progress::More);
            }
            if self.plan.hold && self.plan.linger > 0 && self.rechecked < self.plan.rounds {
                self.recheck(env, self.rechecked)?;
                self.rechecked += 1;
                return Ok(Progress::More);
            }
            if self.plan.hold && self.released < self.plan.rounds {
                let base = self.base_of(self.released);
                self.released += 1;
                if server.free(env, base)?.is_err() {
                    self.counts.errors += 1;
                }
                return Ok(Progress::More);
            }
            return Ok(Progress::Done);
        }
        let base = self.base();
        match self.phase {
            Phase::Alloc => match server.alloc(env, base, AllocSpec::order(self.plan.order))? {
                Ok(_) => {
                    for page in 0..self.pages() {
                        let at = base + page * PAGE;
                        store_u64(env, at, pattern(at, self.generation()))?;
                        store_u64(
                            env,
                            at + PAGE - 8,
                            pattern(at + PAGE - 8, self.generation()),
                        )?;
                    }
                    self.phase = Phase::Enable;
                }
                Err(e) if e.status == Status::NoMemory => {
                    self.counts.no_memory += 1;
                    return Ok(Progress::Done);
                }
                Err(_) => {
                    self.counts.errors += 1;
                    return Ok(Progress::Done);
                }
            },
            Phase::Enable => {
                self.enabled = match server.enable_tagging(env, base, self.pages() as u32)? {
                    Ok(()) => true,
                    Err(_) => {
                        self.counts.errors += 1;
                        false
                    }
                };
                self.phase = Phase::Touch;
            }
            Phase::Touch => {
                for page in 0..self.pages() {
                    let at = base + page * PAGE;
                    // The first touch faults; the handler resolves it and we
                    // resume here. The first page is touched the way an
                    // allocator would after mprotect(PROT_MTE): STG through
                    // a freshly tagged pointer (IRG, never tag 0). The fault
                    // address then carries that tag, which the fault handler
                    // must strip. Elsewhere a tag-0 pointer must match the
                    // zeroed tags.
                    let mut first = at;
                    if page == 0 && self.enabled {
                        first = env.irg(at, 1);
                        env.set_tags(first, 16)?;
                        if let Some(tag) = self.first_tags.get_mut(self.round as usize) {
                            *tag = (first >> 56 & 0xf) as u8;
                        }
                    }
                    for word in [first, at + PAGE - 8] {
                        let found = load_u64(env, word)?;
                        let word = word & ((1 << 56) - 1);
                        let diff = found ^ pattern(word, self.generation());
                        self.counts.corrupted_bytes +=
                            (0..8).filter(|b| diff >> (8 * b) & 0xff != 0).count() as u64;
                    }
                    match server.query(env, at)? {
                        Ok(info) if info.state == PageState::Tagged => {
                            if page == 0 {
                                if let Some(frame) = self.first_frames.get_mut(self.round as usize)
                                {
                                    *frame = info.frame;
                                }
                            }
                            self.counts.pages_tagged_lazily += 1
                        }
                        _ => self.counts.not_tagged += 1,
                    }
                }
                self.phase = Phase::Free;
            }
            Phase::Free => {
                if !self.plan.hold {
                    if server
                        .disable_tagging(env, base, self.pages() as u32)?
                        .is_err()
                    {
                        self.counts.errors += 1;
                    }
                    if server.free(env, base)?.is_err() {
                        self.counts.errors += 1;
                    }
                }
                self.round += 1;
                self.counts.rounds_done += 1;
                self.phase = Phase::Alloc;
            }
        }
        Ok(Progress::More)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("rounds_done", self.counts.rounds_done);
        report("pages_tagged_lazily", self.counts.pages_tagged_lazily);
        report("corrupted_bytes", self.counts.corrupted_bytes);
        report("not_tagged", self.counts.not_tagged);
        report("no_memory", self.counts.no_memory);
        report("errors", self.counts.errors);
        report("pages_rechecked", self.counts.pages_rechecked);
        report("pages_moved", self.counts.pages_moved);
        report("pages_parked", self.counts.pages_parked);
    }
}

/// The PD: the worker, paced by the fault handler.
pub type ClientLazy = Paced<Lazy>;
