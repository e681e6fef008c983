//! `client_rogue`: sends every kind of bad request and checks that each gets
//! its documented error and leaves the server's state unchanged (the stats
//! before and after are equal, except the failure count, which grows: by one,
//! or more when other clients are refused at the same time).
//!
//! A server without frames (the seL4 backend before it is given any) can
//! judge only what needs none: the decode and authority cases must still get
//! exactly their errors (`malformed`, `permission-denied`), and every other
//! case must get `unsupported`, never a success. With
//! [`Rogue::touching_unmapped`] each run then ends in a real fault for its
//! parent to handle, which restarts it: the first and fourth runs load from
//! a page of its window never allocated, the second runs code from the data
//! page it holds, the third from a no-access page (one awaiting its tags
//! after `enable_tagging`). Every client page is execute-never (DESIGN I6,
//! W^X), so both must be instruction aborts; code that runs and returns is
//! reported on a line of its own.
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
/// The page (from the window base) made no-access, awaiting its tags, and
/// run as code, in the third run.
const NO_ACCESS_PAGE: u64 = 5;
/// The page (from the window base) never allocated, loaded from.
const UNMAPPED_PAGE: u64 = 3;
/// An AArch64 `ret`, stored where code is run, so code that wrongly runs
/// returns to say so.
const RET: u32 = 0xd65f_03c0;

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
    /// Runs started, this one included: which fault this run ends in.
    pub runs: u64,
    /// Code run from a page of the window that came back (it must not).
    pub code_ran: u64,
}

/// How a run of [`Rogue::touching_unmapped`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastAct {
    LoadUnmapped,
    RunDataPage,
    RunNoAccessPage,
}

impl LastAct {
    fn of_run(run: u64) -> LastAct {
        match run {
            2 => LastAct::RunDataPage,
            3 => LastAct::RunNoAccessPage,
            _ => LastAct::LoadUnmapped,
        }
    }
}

/// Whether a case is judged before any frame is involved: decoding and the
/// authority check, which a server without frames still does.
fn judged_without_frames(expected: Status) -> bool {
    matches!(expected, Status::Malformed | Status::PermissionDenied)
}

impl Rogue {
    /// A rogue that, after its cases, touches an unmapped page of its window.
    pub fn touching_unmapped() -> Rogue {
        Rogue::touching_unmapped_after(0)
    }

    /// The same, built afresh for a restart after `runs` runs: on seL4 a
    /// restarted PD builds its handler again, so the run count comes from
    /// outside (the simulator keeps the worker, and counts on).
    pub fn touching_unmapped_after(runs: u64) -> Rogue {
        Rogue {
            touch_unmapped: true,
            runs,
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
            runs: self.runs + 1,
            code_ran: self.code_ran,
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
                self.last_act(env, &server, held)?;
                load_u64(env, self.mine + UNMAPPED_PAGE * PAGE)?;
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
        if self.touch_unmapped {
            report("run", self.runs);
        }
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
            report("code_ran", self.code_ran);
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

impl Rogue {
    /// This run's last act before the load from an unmapped page: running
    /// code from a page of its window, which must fault (the load is then
    /// never reached). Code that runs is counted and said.
    fn last_act(&mut self, env: &mut dyn Env, server: &Server, held: u64) -> Result<(), Stopped> {
        let page = match LastAct::of_run(self.runs) {
            LastAct::LoadUnmapped => return Ok(()),
            LastAct::RunDataPage => held,
            LastAct::RunNoAccessPage => {
                let page = self.mine + NO_ACCESS_PAGE * PAGE;
                if server.alloc(env, page, AllocSpec::order(0))?.is_err() {
                    self.setup_failed += 1;
                    return Ok(());
                }
                // The code goes in while the page is still readable.
                store_ret(env, page)?;
                if server.enable_tagging(env, page, 1)?.is_err() {
                    self.setup_failed += 1;
                    return Ok(());
                }
                page
            }
        };
        if page == held {
            store_ret(env, page)?;
        }
        let what = match LastAct::of_run(self.runs) {
            LastAct::RunDataPage => "the data page it holds",
            _ => "a no-access page awaiting its tags",
        };
        tagloan_microkit::debug_println!(
            env,
            "{}: run {}: running code from {what} at {page:#x}",
            env.pd_name(),
            self.runs
        );
        env.execute(page)?;
        self.code_ran += 1;
        tagloan_microkit::debug_println!(
            env,
            "{}: code ran from {what} at {page:#x}: it is executable, and must be execute-never",
            env.pd_name()
        );
        Ok(())
    }
}

fn store_ret(env: &mut dyn Env, page: u64) -> Result<(), Stopped> {
    env.store(page, &RET.to_le_bytes())
}

/// The PD: the worker, paced by the fault handler.
pub type ClientRogue = Paced<Rogue>;
