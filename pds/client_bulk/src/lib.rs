//! `client_bulk`: large untagged, movable buffers, the natural borrowers of
//! tag storage. It fills buffers with a known pattern and keeps verifying
//! them, so a migration that loses or mixes data shows up as corrupted bytes.
#![no_std]

use tagloan_client::{
    load_u64, my_entry, pattern, store_u64, AllocFlags, AllocSpec, Api, Env, Paced, Progress,
    Server, Status, Stopped, Worker,
};

/// Most buffers it tracks.
pub const MAX_BUFFERS: usize = 128;
const PAGE: u64 = 4096;

/// What it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkPlan {
    /// Buffers to allocate (it stops early when the server says no-memory).
    pub buffers: u32,
    /// Order of each buffer.
    pub order: u8,
    /// Verification passes over all buffers after the fill.
    pub verify_rounds: u32,
    /// Ask for physically contiguous buffers (they can never be lent tag
    /// storage, so they exhaust the data pool first).
    pub contiguous: bool,
    /// Free every buffer at the end.
    pub release: bool,
    /// Right after the fill, free this many of the last buffers that live in
    /// data memory: their groups' tag blocks are lent, so what is allocated
    /// there next and tagged must recall them.
    pub churn: u32,
    /// After the verification passes, ask for up to this many more buffers,
    /// physically contiguous, until one is refused: once no free range of
    /// the order is left, the server evacuates one for each, moving the
    /// pages in it (tagged ones with their tags).
    pub squeeze: u32,
}

impl Default for BulkPlan {
    fn default() -> BulkPlan {
        // 40 x 4 MiB = 160 MiB: more than the QEMU platform's 128 MiB of data
        // memory, so the last buffers land in lent tag storage.
        BulkPlan {
            buffers: 40,
            order: 9,
            verify_rounds: 3,
            contiguous: false,
            release: true,
            churn: 0,
            squeeze: 0,
        }
    }
}

impl BulkPlan {
    /// Its part in the lending scenario (the default of `tagloan run`, and
    /// the seL4 image), for the QEMU platform's sizes: 64 buffers of 2 MiB,
    /// the 128 MiB of data memory less one block (broken by the server's
    /// probe frame) and the rest, so the last one lives in lent tag storage;
    /// then it frees 8 buffers of data memory whose groups' tag blocks are
    /// lent. After its verification passes, while the lazy client holds
    /// its tagged pages where the churn freed, 8 contiguous buffers take
    /// the churned ranges back: the last of them finds none free and has
    /// the lazy client's range evacuated, its tagged pages moved.
    pub const fn lending() -> BulkPlan {
        BulkPlan {
            buffers: 64,
            order: 9,
            verify_rounds: 6,
            contiguous: false,
            release: true,
            churn: 8,
            squeeze: 8,
        }
    }
}

/// The counters of [`Bulk`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkCounts {
    /// Median cycles of a null PPC to the server (`stats`), on a backend
    /// with a counter.
    pub bench_null_ppc: u64,
    /// Median cycles of an order-0 alloc and its free, through IPC.
    pub bench_alloc_free: u64,
    pub allocated: u64,
    pub in_tag_storage: u64,
    pub no_memory: u64,
    pub pages_verified: u64,
    pub corrupted_bytes: u64,
    pub errors: u64,
    pub churned_total: u64,
    /// Contiguous buffers the squeeze got, and whether one was refused.
    pub squeezed: u64,
    pub squeeze_refused: u64,
}

/// The worker.
#[derive(Clone, Debug)]
pub struct Bulk {
    /// What it has done; kept across restarts (the report, not the state).
    pub counts: BulkCounts,
    plan: BulkPlan,
    window: u64,
    buffers: [u64; MAX_BUFFERS],
    /// Whether each buffer is lent tag storage; a churned one is 0 above.
    lent: [bool; MAX_BUFFERS],
    count: usize,
    churned: u32,
    fill_done: bool,
    verify_cursor: u64,
    released: usize,
    /// Squeeze requests made (and the squeeze is over once one is refused).
    squeeze_tries: u32,
    generation: u64,
    /// The in-image benchmark ran (only where the backend has a counter).
    benched: bool,
}

/// Samples of each benchmark row; the median is reported.
const BENCH_SAMPLES: usize = 31;

fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

impl Default for Bulk {
    fn default() -> Bulk {
        Bulk::new(BulkPlan::default())
    }
}

impl Bulk {
    /// The in-image benchmark, after the run, in the emptied window: a null
    /// PPC (`stats`) and an order-0 alloc and free, each as the median of
    /// [`BENCH_SAMPLES`] counter readings, and printed with their ratio.
    fn bench(&mut self, env: &mut dyn Env) -> Result<(), Stopped> {
        let server = Server::for_client();
        let mut null = [0u64; BENCH_SAMPLES];
        let mut alloc_free = [0u64; BENCH_SAMPLES];
        for sample in null.iter_mut() {
            let start = env.cycles().unwrap_or(0);
            let _ = server.stats(env)?;
            *sample = env.cycles().unwrap_or(0).wrapping_sub(start);
        }
        for sample in alloc_free.iter_mut() {
            let start = env.cycles().unwrap_or(0);
            let allocated = server.alloc(env, self.window, AllocSpec::order(0))?;
            let freed = server.free(env, self.window)?;
            *sample = env.cycles().unwrap_or(0).wrapping_sub(start);
            if allocated.is_err() || freed.is_err() {
                self.counts.errors += 1;
            }
        }
        self.counts.bench_null_ppc = median(&mut null);
        self.counts.bench_alloc_free = median(&mut alloc_free);
        let null = self.counts.bench_null_ppc.max(1);
        let x100 = self.counts.bench_alloc_free * 100 / null;
        let mut line = tagloan_microkit::DebugLine::new();
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "client_bulk: bench: counter ticks (CNTPCT_EL0), median of {BENCH_SAMPLES}: null PPC {}, order-0 alloc+free through IPC {} ({}.{:02} null PPCs)",
                self.counts.bench_null_ppc, self.counts.bench_alloc_free, x100 / 100, x100 % 100
            ),
        );
        tagloan_client::console_line(env, line.as_str())
    }

    pub fn new(plan: BulkPlan) -> Bulk {
        Bulk {
            counts: BulkCounts::default(),
            plan,
            window: 0,
            buffers: [0; MAX_BUFFERS],
            lent: [false; MAX_BUFFERS],
            count: 0,
            churned: 0,
            fill_done: false,
            verify_cursor: 0,
            released: 0,
            squeeze_tries: 0,
            generation: 0,
            benched: false,
        }
    }

    fn pages(&self) -> u64 {
        1 << self.plan.order
    }

    /// The address of a buffer slot that holds no buffer: the churn leaves
    /// holes below the highest slot.
    fn free_slot_address(&self) -> u64 {
        let size = self.pages() * PAGE;
        (0..MAX_BUFFERS as u64)
            .map(|slot| self.window + slot * size)
            .find(|vaddr| !self.buffers[..self.count].contains(vaddr))
            .unwrap_or(self.window + MAX_BUFFERS as u64 * size)
    }

    /// Writes the pattern on the first and last word of every page.
    fn fill(&mut self, env: &mut dyn Env, base: u64) -> Result<(), Stopped> {
        for page in 0..self.pages() {
            let at = base + page * PAGE;
            store_u64(env, at, pattern(at, self.generation))?;
            store_u64(env, at + PAGE - 8, pattern(at + PAGE - 8, self.generation))?;
        }
        Ok(())
    }

    fn verify(&mut self, env: &mut dyn Env, base: u64) -> Result<(), Stopped> {
        for page in 0..self.pages() {
            let at = base + page * PAGE;
            for word in [at, at + PAGE - 8] {
                let found = load_u64(env, word)?;
                let diff = found ^ pattern(word, self.generation);
                self.counts.corrupted_bytes +=
                    u64::from((0..8).filter(|b| diff >> (8 * b) & 0xff != 0).count() as u32);
            }
            self.counts.pages_verified += 1;
        }
        Ok(())
    }
}

impl Worker for Bulk {
    fn start(&mut self, env: &mut dyn Env) {
        // A restart begins the plan again; the counts are the report and
        // carry over.
        *self = Bulk {
            counts: self.counts,
            ..Bulk::new(self.plan)
        };
        self.window = my_entry(env).map_or(0, |(_, e)| e.window_base);
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        let server = Server::for_client();
        let wanted = (self.plan.buffers as usize).min(MAX_BUFFERS);
        if !self.fill_done && self.count < wanted {
            let vaddr = self.window + self.count as u64 * self.pages() * PAGE;
            let flags = AllocFlags {
                contiguous: self.plan.contiguous,
                ..AllocFlags::default()
            };
            match server.alloc(
                env,
                vaddr,
                AllocSpec {
                    order: self.plan.order,
                    flags,
                },
            )? {
                Ok(a) => {
                    self.counts.allocated += 1;
                    self.counts.in_tag_storage += u64::from(a.in_tag_storage);
                    self.buffers[self.count] = vaddr;
                    self.lent[self.count] = a.in_tag_storage;
                    self.count += 1;
                    self.fill(env, vaddr)?;
                }
                Err(e) if e.status == Status::NoMemory || e.status == Status::OutOfQuota => {
                    self.counts.no_memory += 1;
                    self.fill_done = true;
                }
                Err(_) => {
                    self.counts.errors += 1;
                    self.fill_done = true;
                }
            }
            return Ok(Progress::More);
        }
        self.fill_done = true;
        if self.churned < self.plan.churn {
            self.churned += 1;
            if let Some(i) = (0..self.count).rev().find(|&i| !self.lent[i]) {
                let base = self.buffers[i];
                self.verify(env, base)?;
                if server.free(env, base)?.is_err() {
                    self.counts.errors += 1;
                }
                // Keep the list dense: the last buffer takes its place.
                self.count -= 1;
                self.buffers[i] = self.buffers[self.count];
                self.lent[i] = self.lent[self.count];
                self.counts.churned_total += 1;
            }
            return Ok(Progress::More);
        }
        if self.count == 0 {
            return Ok(Progress::Done);
        }
        let total = self.count as u64 * u64::from(self.plan.verify_rounds);
        if self.verify_cursor < total {
            let base = self.buffers[(self.verify_cursor % self.count as u64) as usize];
            self.verify(env, base)?;
            self.verify_cursor += 1;
            return Ok(Progress::More);
        }
        if self.squeeze_tries < self.plan.squeeze && self.count < MAX_BUFFERS {
            self.squeeze_tries += 1;
            let vaddr = self.free_slot_address();
            let spec = AllocSpec {
                order: self.plan.order,
                flags: AllocFlags {
                    contiguous: true,
                    ..AllocFlags::default()
                },
            };
            match server.alloc(env, vaddr, spec)? {
                Ok(_) => {
                    self.counts.allocated += 1;
                    self.counts.squeezed += 1;
                    self.buffers[self.count] = vaddr;
                    self.lent[self.count] = false;
                    self.count += 1;
                    self.fill(env, vaddr)?;
                }
                Err(e) => {
                    if e.status == Status::NoMemory || e.status == Status::OutOfQuota {
                        self.counts.squeeze_refused += 1;
                    } else {
                        self.counts.errors += 1;
                    }
                    self.squeeze_tries = self.plan.squeeze;
                }
            }
            return Ok(Progress::More);
        }
        if self.plan.release && self.released < self.count {
            let base = self.buffers[self.released];
            self.verify(env, base)?;
            if server.free(env, base)?.is_err() {
                self.counts.errors += 1;
            }
            self.released += 1;
            return Ok(Progress::More);
        }
        if !self.benched {
            self.benched = true;
            if env.cycles().is_some() {
                self.bench(env)?;
            }
        }
        Ok(Progress::Done)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("buffers", self.count as u64);
        if self.benched {
            report("bench_null_ppc_cycles", self.counts.bench_null_ppc);
            report("bench_alloc_free_cycles", self.counts.bench_alloc_free);
        }
        report("released", self.released as u64);
        report("allocated", self.counts.allocated);
        report("allocated_in_tag_storage", self.counts.in_tag_storage);
        report("no_memory", self.counts.no_memory);
        report("pages_verified", self.counts.pages_verified);
        report("corrupted_bytes", self.counts.corrupted_bytes);
        report("errors", self.counts.errors);
        report("churned", self.counts.churned_total);
        report("squeezed", self.counts.squeezed);
        report("squeeze_refused", self.counts.squeeze_refused);
    }
}

/// The PD: the worker, paced by the fault handler.
pub type ClientBulk = Paced<Bulk>;
