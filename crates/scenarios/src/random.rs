//! A seeded random client: every operation of the protocol, mixed, with a
//! shadow of what it holds so it can check its data and never trips on its
//! own tags. Used by the `random` scenario for every client PD.

use tagloan_client::{
    load_u64, my_entry, pattern, store_u64, AllocFlags, AllocSpec, Api, Choice, Env, Freed,
    PageState, Progress, Server, Status, Stopped, Worker,
};

const PAGE: u64 = 4096;
/// Allocations it tracks at once.
const MAX_HELD: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    vaddr: u64,
    order: u8,
    tagged: bool,
    lazy: bool,
    pinned_first: bool,
    contiguous: bool,
    /// The tag of every granule of the first page (0 unless set).
    tag: u8,
    generation: u64,
}

/// The worker.
#[derive(Clone, Debug)]
pub struct RandomClient {
    seed: u64,
    /// Favour large allocations and keep them: fills memory, so lending and
    /// recall happen.
    heavy: bool,
    choice: Choice,
    window: u64,
    window_pages: u64,
    held: [Option<Held>; MAX_HELD],
    generation: u64,
    pub operations: u64,
    pub refused: u64,
    pub corrupted_bytes: u64,
    pub unexpected: u64,
    pub first_unexpected: Option<(u64, u64)>,
}

impl RandomClient {
    pub fn new(seed: u64, heavy: bool) -> RandomClient {
        RandomClient {
            seed,
            heavy,
            choice: Choice::new(seed),
            window: 0,
            window_pages: 0,
            held: [None; MAX_HELD],
            generation: 0,
            operations: 0,
            refused: 0,
            corrupted_bytes: 0,
            unexpected: 0,
            first_unexpected: None,
        }
    }

    fn pick_held(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..MAX_HELD).filter(|&i| self.held[i].is_some()).collect();
        if live.is_empty() {
            None
        } else {
            Some(live[self.choice.below(live.len() as u64) as usize])
        }
    }

    /// Writes the first word of the first page through the right tag.
    fn write(&mut self, env: &mut dyn Env, slot: usize) -> Result<(), Stopped> {
        let Some(mut h) = self.held[slot] else {
            return Ok(());
        };
        self.generation += 1;
        h.generation = self.generation;
        let pointer = h.vaddr | u64::from(h.tag) << 56;
        store_u64(env, pointer, pattern(h.vaddr, h.generation))?;
        self.held[slot] = Some(h);
        Ok(())
    }

    fn check(&mut self, env: &mut dyn Env, slot: usize) -> Result<(), Stopped> {
        let Some(h) = self.held[slot] else {
            return Ok(());
        };
        let found = load_u64(env, h.vaddr | u64::from(h.tag) << 56)?;
        let diff = found ^ pattern(h.vaddr, h.generation);
        self.corrupted_bytes += (0..8).filter(|b| diff >> (8 * b) & 0xff != 0).count() as u64;
        Ok(())
    }
}

impl RandomClient {
    /// Counts an outcome the shadow did not predict; the first one's site
    /// and status are reported.
    fn unexpected(&mut self, site: u64, status: u64) {
        self.unexpected += 1;
        self.first_unexpected.get_or_insert((site, status));
    }
}

impl Worker for RandomClient {
    fn start(&mut self, env: &mut dyn Env) {
        let (ops, refused, corrupted, unexpected) = (
            self.operations,
            self.refused,
            self.corrupted_bytes,
            self.unexpected,
        );
        *self = RandomClient::new(self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15), self.heavy);
        (
            self.operations,
            self.refused,
            self.corrupted_bytes,
            self.unexpected,
        ) = (ops, refused, corrupted, unexpected);
        if let Some((_, e)) = my_entry(env) {
            self.window = e.window_base;
            self.window_pages = u64::from(e.window_pages);
        }
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        let server = Server::for_client();
        self.operations += 1;
        let roll = self.choice.below(100);
        match roll {
            // Allocate somewhere in the window; collisions are refused.
            0..=29 => {
                let Some(slot) = (0..MAX_HELD).find(|&i| self.held[i].is_none()) else {
                    return Ok(Progress::More);
                };
                let order = if self.heavy {
                    9
                } else {
                    [0u8, 0, 0, 1, 2, 3, 4, 9][self.choice.below(8) as usize]
                };
                let pages = 1u64 << order;
                if self.window_pages < pages {
                    return Ok(Progress::More);
                }
                let vaddr =
                    self.window + self.choice.below(self.window_pages / pages) * pages * PAGE;
                let flags = AllocFlags {
                    tagged: self.choice.below(4) == 0,
                    pinned: self.choice.below(10) == 0,
                    contiguous: self.choice.below(10) == 0,
                };
                match server.alloc(env, vaddr, AllocSpec { order, flags })? {
                    Ok(_) => {
                        self.held[slot] = Some(Held {
                            vaddr,
                            order,
                            tagged: flags.tagged,
                            lazy: false,
                            pinned_first: flags.pinned,
                            contiguous: flags.contiguous,
                            tag: 0,
                            generation: 0,
                        });
                        self.write(env, slot)?;
                    }
                    Err(_) => self.refused += 1,
                }
            }
            30..=44 if !self.heavy || self.choice.below(4) == 0 => {
                if let Some(slot) = self.pick_held() {
                    self.check(env, slot)?;
                    let h = self.held[slot].expect("picked");
                    match server.free(env, h.vaddr)? {
                        Ok(Freed { pages }) if pages == 1 << h.order => self.held[slot] = None,
                        other => self.unexpected(1, other.err().map_or(0, |e| e.status as u64)),
                    }
                }
            }
            // Touch: check, then rewrite (a lazy page takes its fault here).
            30..=64 => {
                if let Some(slot) = self.pick_held() {
                    self.check(env, slot)?;
                    self.write(env, slot)?;
                }
            }
            65..=72 => {
                if let Some(slot) = self.pick_held() {
                    let h = self.held[slot].expect("picked");
                    let pages = 1u32 << h.order;
                    match server.enable_tagging(env, h.vaddr, pages)? {
                        Ok(()) => {
                            if !h.tagged {
                                // Untagged pages come back with zero tags.
                                self.held[slot] = Some(Held {
                                    lazy: true,
                                    tagged: true,
                                    tag: 0,
                                    ..h
                                });
                            }
                        }
                        Err(e)
                            if e.status == Status::InvalidArgument
                                || e.status == Status::Unsupported =>
                        {
                            self.refused += 1
                        }
                        Err(e) => self.unexpected(2, e.status as u64),
                    }
                }
            }
            73..=78 => {
                if let Some(slot) = self.pick_held() {
                    let h = self.held[slot].expect("picked");
                    match server.disable_tagging(env, h.vaddr, 1 << h.order)? {
                        Ok(()) => {
                            self.held[slot] = Some(Held {
                                tagged: false,
                                lazy: false,
                                tag: 0,
                                ..h
                            })
                        }
                        Err(_) => self.refused += 1,
                    }
                }
            }
            // Retag the first page of a tagged allocation (STG).
            79..=84 => {
                if let Some(slot) = self.pick_held() {
                    let h = self.held[slot].expect("picked");
                    if h.tagged {
                        // Resolve a lazy page first: a touch with its tag.
                        self.check(env, slot)?;
                        let pointer = env.irg(h.vaddr, 1 << h.tag);
                        env.set_tags(pointer, PAGE as usize)?;
                        let tag = (pointer >> 56 & 0xf) as u8;
                        self.held[slot] = Some(Held { tag, ..h });
                        self.write(env, slot)?;
                    }
                }
            }
            85..=90 => {
                if let Some(slot) = self.pick_held() {
                    let h = self.held[slot].expect("picked");
                    if h.contiguous {
                        // A contiguous allocation is pinned or not as a
                        // whole; piecewise pin and unpin are refused.
                        match server.unpin(env, h.vaddr)? {
                            Err(e) if e.status == Status::InvalidArgument => self.refused += 1,
                            other => self.unexpected(7, other.err().map_or(0, |e| e.status as u64)),
                        }
                    } else if h.pinned_first {
                        match server.unpin(env, h.vaddr)? {
                            Ok(()) => {
                                self.held[slot] = Some(Held {
                                    pinned_first: false,
                                    ..h
                                })
                            }
                            Err(e) => self.unexpected(3, e.status as u64),
                        }
                    } else {
                        match server.pin(env, h.vaddr)? {
                            Ok(()) => {
                                self.held[slot] = Some(Held {
                                    pinned_first: true,
                                    ..h
                                })
                            }
                            Err(_) => self.refused += 1,
                        }
                    }
                }
            }
            91..=96 => {
                if let Some(slot) = self.pick_held() {
                    let h = self.held[slot].expect("picked");
                    match server.query(env, h.vaddr)? {
                        Ok(info) => {
                            let consistent = info.pinned == h.pinned_first
                                && info.contiguous == h.contiguous
                                && match info.state {
                                    PageState::Untagged => !h.tagged,
                                    PageState::Tagged => h.tagged,
                                    PageState::MetadataNone => h.tagged && h.lazy,
                                };
                            if !consistent {
                                self.unexpected(4, info.state as u64);
                            }
                        }
                        Err(e) => self.unexpected(5, e.status as u64),
                    }
                }
            }
            _ => {
                if let Err(e) = server.stats(env)? {
                    self.unexpected(6, e.status as u64);
                }
            }
        }
        Ok(Progress::More)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("operations", self.operations);
        report("refused", self.refused);
        report("corrupted_bytes", self.corrupted_bytes);
        report("unexpected", self.unexpected);
        if let Some((site, status)) = self.first_unexpected {
            report("first_unexpected_site", site);
            report("first_unexpected_status", status);
        }
    }
}
