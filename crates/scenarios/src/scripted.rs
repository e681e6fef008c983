//! A client that plays a byte script: each record is one request to the
//! memory server (well formed or not) or one access to its window, so a
//! fuzzer drives the server's request handler through the whole simulated
//! system, from every client's badge at once ([`run_script`]).
//!
//! A record's first byte says which client plays it (its low 3 bits, modulo
//! the number of clients) and what it is (the high 5 bits); the bytes after
//! it are its arguments, read as far as the script has them (missing bytes
//! read as zero, so every script means something). Each client plays its own
//! records in order; the simulator interleaves the clients.

use std::rc::Rc;

use tagloan_client::{
    load_u64, my_entry, store_u64, AllocFlags, AllocSpec, Api, Env, Paced, Progress, Server,
    Stopped, Worker,
};
use tagloan_sim::{Hosted, Registry, SimError};

use crate::{observe, registry, Options, Plans, Report, Run};

const PAGE: u64 = 4096;
/// Records a client plays at most: bounds the run whatever the script.
pub const MAX_RECORDS_PER_CLIENT: usize = 1024;

/// The client PDs of `system.xml`, in the order a record's client byte
/// names them.
pub const SCRIPTED_CLIENTS: [&str; 5] = [
    "client_tagged_heap",
    "client_bulk",
    "client_lazy",
    "client_rogue",
    "client_c",
];

/// One record, decoded for one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Alloc {
        page: u64,
        order: u8,
        flags: AllocFlags,
    },
    Free {
        page: u64,
    },
    Enable {
        page: u64,
        pages: u32,
    },
    Disable {
        page: u64,
        pages: u32,
    },
    Pin {
        page: u64,
    },
    Unpin {
        page: u64,
    },
    Query {
        page: u64,
    },
    Stats,
    /// A load through a pointer with `tag` (a fault if the page is lazy,
    /// unmapped, or tagged otherwise: the fault handler's business).
    Load {
        page: u64,
        tag: u8,
    },
    Store {
        page: u64,
        tag: u8,
        value: u64,
    },
    /// A message the client's API would never build: any label, any words.
    Raw {
        label: u64,
        words: [u64; 4],
        count: usize,
    },
    /// A well-formed request at an address anywhere, not only in its window.
    Anywhere {
        op: u8,
        vaddr: u64,
    },
    /// A unit of work that does nothing: lets the other clients go first.
    Yield,
}

/// Reads the script's records for client `me` of `clients`.
fn records_for(script: &[u8], me: usize, clients: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |n: usize, at: &mut usize| -> u64 {
        let mut word = [0u8; 8];
        for (i, b) in word.iter_mut().enumerate().take(n) {
            *b = script.get(*at + i).copied().unwrap_or(0);
        }
        *at += n;
        u64::from_le_bytes(word)
    };
    while at < script.len() && out.len() < MAX_RECORDS_PER_CLIENT {
        let head = script[at];
        at += 1;
        let client = usize::from(head & 7) % clients;
        let kind = head >> 3;
        // Arguments first, so a record's length does not depend on who plays it.
        let record = match kind % 13 {
            0 => {
                let page = take(2, &mut at);
                let spec = take(1, &mut at) as u8;
                Record::Alloc {
                    page,
                    // Orders 0 to 3 mostly, sometimes the largest ones.
                    order: if spec & 0x80 != 0 {
                        spec & 0xf
                    } else {
                        spec & 3
                    },
                    flags: AllocFlags {
                        tagged: spec & 0x10 != 0,
                        pinned: spec & 0x20 != 0,
                        contiguous: spec & 0x40 != 0,
                    },
                }
            }
            1 => Record::Free {
                page: take(2, &mut at),
            },
            2 => Record::Enable {
                page: take(2, &mut at),
                pages: take(1, &mut at) as u32,
            },
            3 => Record::Disable {
                page: take(2, &mut at),
                pages: take(1, &mut at) as u32,
            },
            4 => Record::Pin {
                page: take(2, &mut at),
            },
            5 => Record::Unpin {
                page: take(2, &mut at),
            },
            6 => Record::Query {
                page: take(2, &mut at),
            },
            7 => Record::Stats,
            8 => Record::Load {
                page: take(2, &mut at),
                tag: take(1, &mut at) as u8 & 0xf,
            },
            9 => Record::Store {
                page: take(2, &mut at),
                tag: take(1, &mut at) as u8 & 0xf,
                value: take(2, &mut at),
            },
            10 => {
                let label = take(1, &mut at);
                let count = take(1, &mut at) as usize % 5;
                let mut words = [0u64; 4];
                for w in words.iter_mut().take(count) {
                    *w = take(8, &mut at);
                }
                Record::Raw {
                    label,
                    words,
                    count,
                }
            }
            11 => Record::Anywhere {
                op: take(1, &mut at) as u8,
                vaddr: take(8, &mut at),
            },
            _ => Record::Yield,
        };
        if client == me {
            out.push(record);
        }
    }
    out
}

/// The worker: plays its records, one per step, then stays idle.
#[derive(Clone, Debug)]
pub struct Scripted {
    records: Rc<Vec<Record>>,
    next: usize,
    window: u64,
    window_pages: u64,
    pub requests: u64,
    pub refused: u64,
    pub accesses: u64,
}

impl Scripted {
    /// Client `me`'s part of `script`.
    pub fn new(script: &[u8], me: usize) -> Scripted {
        Scripted {
            records: Rc::new(records_for(script, me, SCRIPTED_CLIENTS.len())),
            next: 0,
            window: 0,
            window_pages: 0,
            requests: 0,
            refused: 0,
            accesses: 0,
        }
    }

    /// A page of the window: the script's page number, wrapped into it (and
    /// one page past it for numbers the wrap leaves over: an address the
    /// server must refuse).
    fn vaddr(&self, page: u64) -> u64 {
        let span = self.window_pages + 1;
        self.window + (page % span) * PAGE
    }

    fn count<T, E>(&mut self, reply: Result<T, E>) {
        self.requests += 1;
        if reply.is_err() {
            self.refused += 1;
        }
    }
}

impl Worker for Scripted {
    fn start(&mut self, env: &mut dyn Env) {
        // A restart plays the script from the start again, as a restarted
        // PD runs its program again.
        self.next = 0;
        if let Some((_, e)) = my_entry(env) {
            self.window = e.window_base;
            self.window_pages = u64::from(e.window_pages);
        }
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        let Some(&record) = self.records.get(self.next) else {
            return Ok(Progress::Done);
        };
        self.next += 1;
        let server = Server::for_client();
        match record {
            Record::Alloc { page, order, flags } => {
                let reply = server.alloc(env, self.vaddr(page), AllocSpec { order, flags })?;
                self.count(reply);
            }
            Record::Free { page } => {
                let reply = server.free(env, self.vaddr(page))?;
                self.count(reply);
            }
            Record::Enable { page, pages } => {
                let reply = server.enable_tagging(env, self.vaddr(page), pages)?;
                self.count(reply);
            }
            Record::Disable { page, pages } => {
                let reply = server.disable_tagging(env, self.vaddr(page), pages)?;
                self.count(reply);
            }
            Record::Pin { page } => {
                let reply = server.pin(env, self.vaddr(page))?;
                self.count(reply);
            }
            Record::Unpin { page } => {
                let reply = server.unpin(env, self.vaddr(page))?;
                self.count(reply);
            }
            Record::Query { page } => {
                let reply = server.query(env, self.vaddr(page))?;
                self.count(reply);
            }
            Record::Stats => {
                let reply = server.stats(env)?;
                self.count(reply);
            }
            Record::Load { page, tag } => {
                self.accesses += 1;
                load_u64(env, self.vaddr(page) | u64::from(tag) << 56)?;
            }
            Record::Store { page, tag, value } => {
                self.accesses += 1;
                store_u64(env, self.vaddr(page) | u64::from(tag) << 56, value)?;
            }
            Record::Raw {
                label,
                words,
                count,
            } => {
                server.call_raw(env, label, &words[..count])?;
                self.requests += 1;
            }
            Record::Anywhere { op, vaddr } => {
                let reply = match op % 4 {
                    0 => server.alloc(env, vaddr, AllocSpec::default())?.map(|_| ()),
                    1 => server.free(env, vaddr)?.map(|_| ()),
                    2 => server.enable_tagging(env, vaddr, 1)?,
                    _ => server.pin(env, vaddr)?,
                };
                self.count(reply);
            }
            Record::Yield => {}
        }
        Ok(Progress::More)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("requests", self.requests);
        report("refused", self.refused);
        report("accesses", self.accesses);
    }
}

/// The repo's system with every client PD playing its part of `script`.
pub fn scripted_registry(script: &[u8]) -> Registry {
    let mut registry = registry(Plans::default());
    for (me, name) in SCRIPTED_CLIENTS.into_iter().enumerate() {
        let worker = Scripted::new(script, me);
        registry.register(name, move |_| {
            Hosted::observed(Paced::new(worker.clone()), observe::client)
        });
    }
    registry
}

/// Runs the repo's system with every client playing its part of `script`,
/// to completion or `options.max_steps`.
pub fn run_script(script: &[u8], options: &Options) -> Result<Report, SimError> {
    let mut run = Run::start_with("scripted", &scripted_registry(script), options)?;
    run.advance(options.max_steps);
    Ok(run.finish())
}

/// What every scripted run must show, whatever the script: no invariant
/// violation in any of the server's checks (it checks after every call), no
/// client resumed on a fault nothing fixed, and every data frame accounted
/// for at the end: free, the server's, or held by a client that still runs
/// (a stopped client's are reclaimed). Tag storage is checked by the pool's
/// own invariants (I2, I3).
pub fn check_scripted(report: &Report) -> Result<(), String> {
    if report.violations != 0 {
        return Err(format!(
            "{} invariant violations: {:?}",
            report.violations, report.first_violations
        ));
    }
    if report.invariant_checks == 0 {
        return Err("the invariants were never checked".into());
    }
    if report.summary.livelocks != 0 {
        return Err(format!(
            "{} clients were resumed on a fault nothing fixed",
            report.summary.livelocks
        ));
    }
    if let Some(c) = report
        .clients
        .iter()
        .find(|c| !c.running && c.frames_held != 0)
    {
        return Err(format!(
            "{} was stopped but still holds {} frames",
            c.name, c.frames_held
        ));
    }
    // Every data frame is free, the server's, or a client's; a client's
    // frames are data frames or lent tag storage.
    let server = |name: &str| report.server_counter(name);
    let held: u64 = report.clients.iter().map(|c| c.frames_held).sum();
    let data_accounted =
        server("data_frames_free") + server("frames_server") + held - server("tag_frames_lent");
    if data_accounted != server("data_frames_total") {
        return Err(format!(
            "frames lost: {} data frames, but {} free, {} the server's and {held} held by clients of which {} are lent tag storage",
            server("data_frames_total"),
            server("data_frames_free"),
            server("frames_server"),
            server("tag_frames_lent")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_gets_only_its_records_and_a_short_script_still_means_something() {
        // Client 1 allocates page 2 tagged at order 0; client 0 asks for stats;
        // client 1's free lacks its second byte (read as zero).
        let script = [0x01, 2, 0, 0x10, 7 << 3, (1 << 3) | 1, 5];
        assert_eq!(records_for(&script, 0, 5), vec![Record::Stats]);
        assert_eq!(
            records_for(&script, 1, 5),
            vec![
                Record::Alloc {
                    page: 2,
                    order: 0,
                    flags: AllocFlags {
                        tagged: true,
                        pinned: false,
                        contiguous: false
                    }
                },
                Record::Free { page: 5 }
            ]
        );
        assert!(records_for(&script, 2, 5).is_empty());
    }
}
