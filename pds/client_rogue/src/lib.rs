//! `client_rogue`: sends every kind of bad request and checks that each gets
//! its documented error and leaves the server's state unchanged (the stats
//! before and after are equal, except the failure count, which grows: by one,
//! or more when other clients are refused at the same time).
//!
//! A server without frames (the seL4 backend before it is given any) can
//! judge only what needs none: the decode and authority cases must still get
//! exactly their errors (`malformed`, `permission-denied`), and every other
//! case must get `unsupported`, never a success. With
//! [`Rogue::touching_unmapped`] it then loads from a page of its window it
//! never allocated: a real fault for its parent to handle.
#![no_std]

use tagloan_client::{
    channels, load_u64, my_entry, AllocFlags, AllocSpec, Api, ClientTable, Env, Op, Paced,
    Progress, Request, Server, StatsReply, Status, Stopped, Worker, PROTOCOL_VERSION,
};

const PAGE: u64 = 4096;
/// The page (from the window base) it holds, mapped and unpinned, during
/// the cases: past the range the quota-overrun case asks for (the window
/// has 256 pages, the quota 64), so that case meets the quota first.
const HELD_PAGE: u64 = 200;

/// One bad request and the status it must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub name: &'static str,
    pub label: u64,
    pub words: [u64; 12],
    pub count: usize,
    pub expected: Status,
}

fn case(name: &'static str, request: Request, expected: Status) -> Case {
    let mut words = [0u64; 12];
    let (label, count) = request.encode_unchecked(&mut words);
    Case {
        name,
        label,
        words,
        count,
        expected,
    }
}

fn raw(name: &'static str, label: u64, given: &[u64], expected: Status) -> Case {
    let mut words = [0u64; 12];
    words[..given.len()].copy_from_slice(given);
    Case {
        name,
        label,
        words,
        count: given.len(),
        expected,
    }
}

/// Every case, given its own window and another client's.
pub fn cases(mine: u64, quota: u32, other: u64) -> [Case; 21] {
    let v = PROTOCOL_VERSION;
    let plain = AllocFlags::default();
    // The smallest order whose pages exceed the quota.
    let mut over = 0u8;
    while (1u32 << over) <= quota && over < 9 {
        over += 1;
    }
    [
        case(
            "alloc in another client's window",
            Request::Alloc {
                vaddr: other,
                spec: AllocSpec {
                    order: 0,
                    flags: plain,
                },
            },
            Status::NotOwner,
        ),
        raw("unknown label", 99, &[v], Status::Malformed),
        raw(
            "alloc with too few registers",
            Op::Alloc as u64,
            &[v, mine],
            Status::Malformed,
        ),
        raw(
            "alloc with too many registers",
            Op::Alloc as u64,
            &[v, mine, 0, 0],
            Status::Malformed,
        ),
        raw(
            "more registers than any message",
            Op::Stats as u64,
            &[v; 12],
            Status::Malformed,
        ),
        raw(
            "wrong protocol version",
            Op::Alloc as u64,
            &[v + 1, mine, 0],
            Status::Malformed,
        ),
        raw(
            "reserved header bits",
            Op::Stats as u64,
            &[v | 1 << 32],
            Status::Malformed,
        ),
        raw(
            "reserved alloc flag bits",
            Op::Alloc as u64,
            &[v, mine, 1 << 12],
            Status::Malformed,
        ),
        raw(
            "order above 9",
            Op::Alloc as u64,
            &[v, mine, 10],
            Status::Malformed,
        ),
        raw(
            "address above the user address space",
            Op::Query as u64,
            &[v, 1 << 52],
            Status::Malformed,
        ),
        raw(
            "zero page count",
            Op::EnableTagging as u64,
            &[v, mine, 0],
            Status::Malformed,
        ),
        case(
            "quota overrun",
            Request::Alloc {
                vaddr: mine,
                spec: AllocSpec {
                    order: over,
                    flags: plain,
                },
            },
            Status::OutOfQuota,
        ),
        case(
            "misaligned address",
            Request::Alloc {
                vaddr: mine + 8,
                spec: AllocSpec {
                    order: 0,
                    flags: plain,
                },
            },
            Status::InvalidArgument,
        ),
        case(
            "double free",
            Request::Free { vaddr: mine },
            Status::NotMapped,
        ),
        case(
            "pin what another client owns",
            Request::Pin { vaddr: other },
            Status::NotOwner,
        ),
        case(
            "pin what is not mapped",
            Request::Pin { vaddr: mine + PAGE },
            Status::NotMapped,
        ),
        case(
            "unpin what is not mapped",
            Request::Unpin { vaddr: mine },
            Status::NotMapped,
        ),
        case(
            "unpin what is not pinned",
            Request::Unpin {
                vaddr: mine + HELD_PAGE * PAGE,
            },
            Status::InvalidArgument,
        ),
        case(
            "resolve_fault (fault handler only)",
            Request::ResolveFault {
                client: 0,
                vaddr: mine,
                kind: tagloan_client::FaultKind::Access,
            },
            Status::PermissionDenied,
        ),
        case(
            "reclaim another client (fault handler only)",
            Request::ReclaimClient { client: 0 },
            Status::PermissionDenied,
        ),
        case(
            "enable tagging on what is not mapped",
            Request::EnableTagging {
                vaddr: mine + 2 * PAGE,
                pages: 1,
            },
            Status::NotMapped,
        ),
    ]
}

/// Times a case is asked before its state change counts (see `step`).
const STATE_ATTEMPTS: u32 = 4;

/// Stats that a refused request must leave as they were.
fn state_of(s: &StatsReply) -> [u64; 8] {
    [
        s.metadata_total,
        s.metadata_free,
        s.lent,
        s.reserved_blocks,
        s.migrations,
        s.recalls,
        s.data_total,
        s.data_free,
    ]
}

/// The worker.
#[derive(Clone, Debug, Default)]
pub struct Rogue {
    next: usize,
    setup_done: bool,
    mine: u64,
    quota: u32,
    other: u64,
    pub cases_run: u64,
    pub refused_as_documented: u64,
    pub unexpected: u64,
    pub state_changed: u64,
    /// Requests sent whose documented answer is `malformed`, cases asked
    /// again included: what the server's `refused_malformed` must count.
    pub malformed_sent: u64,
    /// Set-up requests (which must succeed) that failed.
    pub setup_failed: u64,
    released: bool,
    /// The first case that went wrong, for the report.
    pub first_unexpected: Option<(&'static str, u64)>,
    /// The server said `unsupported` to the set-up allocations: it has no
    /// frames.
    pub frameless: bool,
    /// Cases a frameless server refused with `unsupported`, as it must.
    pub refused_unsupported: u64,
    /// After the cases, load from a page of the window never allocated.
    touch_unmapped: bool,
    /// Loads from an unmapped page that came back (they must not).
    pub unmapped_loads_returned: u64,
}

/// Whether a case is judged before any frame is involved: decoding and the
/// authority check, which a server without frames still does.
fn judged_without_frames(expected: Status) -> bool {
    matches!(expected, Status::Malformed | Status::PermissionDenied)
}

impl Rogue {
    /// A rogue that, after its cases, touches an unmapped page of its window.
    pub fn touching_unmapped() -> Rogue {
        Rogue {
            touch_unmapped: true,
            ..Rogue::default()
        }
    }
}

impl Worker for Rogue {
    fn start(&mut self, env: &mut dyn Env) {
        *self = Rogue {
            cases_run: self.cases_run,
            refused_as_documented: self.refused_as_documented,
            unexpected: self.unexpected,
            state_changed: self.state_changed,
            malformed_sent: self.malformed_sent,
            setup_failed: self.setup_failed,
            first_unexpected: self.first_unexpected,
            refused_unsupported: self.refused_unsupported,
            touch_unmapped: self.touch_unmapped,
            unmapped_loads_returned: self.unmapped_loads_returned,
            ..Rogue::default()
        };
        if let Some((_, entry)) = my_entry(env) {
            self.mine = entry.window_base;
            self.quota = entry.quota_frames;
        }
        let other = env
            .region("client_table")
            .and_then(|t| ClientTable::parse(t).ok())
            .and_then(|t| {
                t.clients
                    .iter()
                    .find(|c| c.window_base != self.mine)
                    .map(|c| c.window_base)
            });
        // Alone in the table: an address in no window, below the top of the
        // user address space, so the request is judged, not malformed.
        self.other = other.unwrap_or(0xff_0000_0000);
    }

    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped> {
        let server = Server::new(tagloan_client::Channel::new(
            channels::CLIENT_TO_SERVER as usize,
        ));
        let held = self.mine + HELD_PAGE * PAGE;
        if !self.setup_done {
            // A page allocated and freed, for the double free; and a page
            // held, mapped and unpinned, for the unpin case.
            let plain = AllocFlags::default();
            let setup = [
                server
                    .alloc(
                        env,
                        self.mine,
                        AllocSpec {
                            order: 0,
                            flags: plain,
                        },
                    )?
                    .map(|_| ()),
                server.free(env, self.mine)?.map(|_| ()),
                server
                    .alloc(
                        env,
                        held,
                        AllocSpec {
                            order: 0,
                            flags: plain,
                        },
                    )?
                    .map(|_| ()),
            ];
            self.frameless = setup
                .iter()
                .all(|r| matches!(r, Err(e) if e.status == Status::Unsupported));
            if !self.frameless {
                self.setup_failed += setup.iter().filter(|r| r.is_err()).count() as u64;
            }
            self.setup_done = true;
            return Ok(Progress::More);
        }
        let all = cases(self.mine, self.quota, self.other);
        let Some(case) = all.get(self.next) else {
            if self.touch_unmapped {
                // The verdict on the cases, then a load from a page never
                // allocated, while it still holds a page: the fault ends
                // this run, and its parent must reclaim what it holds.
                tagloan_client::print_counters(env, "cases", &|report| self.counters(report))?;
                load_u64(env, self.mine + 3 * PAGE)?;
                self.unmapped_loads_returned += 1;
            }
            if !self.released {
                self.released = true;
                if server.free(env, held)?.is_err() && !self.frameless {
                    self.setup_failed += 1;
                }
            }
            return Ok(Progress::Done);
        };
        self.next += 1;
        // Other clients run meanwhile (on seL4 truly at once), and their own
        // requests move the statistics between the two reads. A refusal is
        // idempotent, so a case is asked again, up to STATE_ATTEMPTS times:
        // one that changes the state does so every time, noise does not.
        let mut attempt = 0;
        let (info, changed) = loop {
            attempt += 1;
            let before = server.stats(env)?.ok();
            if case.expected == Status::Malformed {
                self.malformed_sent += 1;
            }
            let (info, _) = server.call_raw(env, case.label, &case.words[..case.count])?;
            let after = server.stats(env)?.ok();
            let changed = match (before, after) {
                // Their own refusals may count too: at least this one must.
                (Some(b), Some(a)) => !(state_of(&b) == state_of(&a) && a.failures > b.failures),
                _ => true,
            };
            if !changed || attempt == STATE_ATTEMPTS {
                break (info, changed);
            }
        };
        self.cases_run += 1;
        let status = Status::from_label(info.label());
        let two_details = info.count() == 2;
        if status == Some(case.expected) && two_details {
            self.refused_as_documented += 1;
        } else if self.frameless
            && !judged_without_frames(case.expected)
            && status == Some(Status::Unsupported)
            && two_details
        {
            self.refused_unsupported += 1;
        } else {
            self.unexpected += 1;
            self.first_unexpected
                .get_or_insert((case.name, info.label()));
        }
        if changed {
            self.state_changed += 1;
        }
        Ok(Progress::More)
    }

    fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("cases_run", self.cases_run);
        report("refused_as_documented", self.refused_as_documented);
        report("unexpected", self.unexpected);
        report("state_changed", self.state_changed);
        report("malformed_sent", self.malformed_sent);
        report("setup_failed", self.setup_failed);
        report("frameless", u64::from(self.frameless));
        report("refused_unsupported", self.refused_unsupported);
        if self.touch_unmapped {
            report("unmapped_loads_returned", self.unmapped_loads_returned);
        }
        if let Some((name, label)) = self.first_unexpected {
            // The case's position in `cases()`, and the status it got.
            let index = cases(0, 1, 0)
                .iter()
                .position(|c| c.name == name)
                .unwrap_or(usize::MAX);
            report("first_unexpected_case", index as u64);
            report("first_unexpected_status", label);
        }
    }
}

/// The PD: the worker, paced by the fault handler.
pub type ClientRogue = Paced<Rogue>;
