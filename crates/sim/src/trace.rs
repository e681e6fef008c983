//! The structured event log of a run, and its summary.
//!
//! Every event's fields are folded into a running FNV-1a hash, and, when
//! the run asked for the full trace, rendered to one line of text. Two runs
//! with one seed have equal hashes and byte-identical lines.

use std::fmt::Write as _;

use tagloan_microkit::Fault;
use tagloan_pool::Access;

/// One thing that happened. PDs are by index into the SDF's PD list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    Init {
        pd: usize,
    },
    Notify {
        from: usize,
        to: usize,
        channel: u8,
    },
    NotifyDropped {
        from: usize,
        to: usize,
        channel: u8,
    },
    Wake {
        pd: usize,
        badge: u64,
    },
    Call {
        from: usize,
        to: usize,
        channel: u8,
        label: u64,
        words: Vec<u64>,
    },
    Reply {
        from: usize,
        to: usize,
        label: u64,
        words: Vec<u64>,
    },
    Fault {
        pd: usize,
        fault: Fault,
    },
    FaultReply {
        parent: usize,
        child: usize,
        resumed: bool,
    },
    /// `pd`'s parent kept resuming it on the same fault without fixing it:
    /// on seL4 it would fault for ever; the simulator stops it.
    Livelock {
        pd: usize,
        faults: u32,
    },
    /// `pd` called or faulted to `on`, which is stopped: it blocks for ever.
    Blocked {
        pd: usize,
        on: usize,
    },
    Stop {
        pd: usize,
    },
    Restart {
        pd: usize,
    },
    Map {
        client: u8,
        vaddr: u64,
        frame: u64,
        access: Access,
    },
    Unmap {
        client: u8,
        vaddr: u64,
    },
    Copy {
        from: u64,
        to: u64,
    },
    Zero {
        frame: u64,
    },
    TagWrite {
        frame: u64,
    },
    /// A tag storage clean of a tag frame's data lines, before it holds tags.
    CleanForTags {
        tag_frame: u64,
    },
    /// A tag storage clean of a data frame's tag lines, when it stops being
    /// tagged.
    CleanTags {
        frame: u64,
    },
    Inject {
        pd: usize,
        what: String,
    },
    Print {
        pd: usize,
        text: String,
    },
}

impl From<tagloan_ram::MachineEvent> for Event {
    fn from(event: tagloan_ram::MachineEvent) -> Event {
        use tagloan_ram::MachineEvent as M;
        match event {
            M::Map {
                client,
                vaddr,
                frame,
                access,
            } => Event::Map {
                client,
                vaddr,
                frame,
                access,
            },
            M::Unmap { client, vaddr } => Event::Unmap { client, vaddr },
            M::Copy { from, to } => Event::Copy { from, to },
            M::Zero { frame } => Event::Zero { frame },
            M::TagWrite { frame } => Event::TagWrite { frame },
            M::CleanForTags { tag_frame } => Event::CleanForTags { tag_frame },
            M::CleanTags { frame } => Event::CleanTags { frame },
        }
    }
}

/// Counts of each kind of event, and of client memory accesses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub steps: u64,
    pub calls: u64,
    pub notifications: u64,
    pub notifications_dropped: u64,
    pub faults_vm: u64,
    pub faults_tag_check: u64,
    pub faults_other: u64,
    pub stops: u64,
    pub restarts: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub copies: u64,
    pub zeroes: u64,
    pub tag_writes: u64,
    /// Tag storage cleans, both kinds.
    pub tag_storage_cleans: u64,
    pub injections: u64,
    pub accesses: u64,
    /// PDs stopped because their parent resumed them on the same fault
    /// again and again (on seL4 they would spin for ever).
    pub livelocks: u64,
}

impl Summary {
    /// All faults.
    pub fn faults(&self) -> u64 {
        self.faults_vm + self.faults_tag_check + self.faults_other
    }
}

/// The calls one PD made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: u64,
    pub allocs: u64,
    pub allocs_ok: u64,
    pub frees: u64,
    /// The label of its call in flight.
    pending: Option<u64>,
}

/// FNV-1a as a `Hasher`: stable across Rust versions, unlike the standard
/// library's, so a seed's hash means the same on every 64-bit little-endian
/// host (`usize` and integers are hashed in native byte order).
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The log.
#[derive(Clone, Debug)]
pub struct Trace {
    names: Vec<String>,
    calls: Vec<CallCounts>,
    keep_lines: bool,
    lines: String,
    hash: u64,
    line: String,
    pub summary: Summary,
}

impl Trace {
    /// A trace over PDs named `names`; `keep_lines` keeps the text.
    pub fn new(names: Vec<String>, keep_lines: bool) -> Trace {
        Trace {
            calls: vec![CallCounts::default(); names.len()],
            names,
            keep_lines,
            lines: String::new(),
            hash: 0xcbf2_9ce4_8422_2325,
            line: String::new(),
            summary: Summary::default(),
        }
    }

    /// The kept text (empty unless asked for).
    pub fn text(&self) -> &str {
        &self.lines
    }

    /// FNV-1a over every event's fields and step: equal for identical runs.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The calls PD `name` made.
    pub fn calls_of(&self, name: &str) -> CallCounts {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|pd| self.calls[pd])
            .unwrap_or_default()
    }

    fn count(&mut self, event: &Event) {
        const ALLOC: u64 = tagloan_proto::Op::Alloc as u64;
        const FREE: u64 = tagloan_proto::Op::Free as u64;
        match *event {
            Event::Call { from, label, .. } => {
                let c = &mut self.calls[from];
                c.calls += 1;
                c.allocs += u64::from(label == ALLOC);
                c.frees += u64::from(label == FREE);
                c.pending = Some(label);
            }
            Event::Reply { to, label, .. } => {
                let c = &mut self.calls[to];
                if c.pending.take() == Some(ALLOC) && label == tagloan_proto::Status::Ok as u64 {
                    c.allocs_ok += 1;
                }
            }
            _ => {}
        }
        let s = &mut self.summary;
        match event {
            Event::Call { .. } => s.calls += 1,
            Event::Notify { .. } => s.notifications += 1,
            Event::NotifyDropped { .. } => s.notifications_dropped += 1,
            Event::Fault { fault, .. } => {
                if fault.is_tag_check() {
                    s.faults_tag_check += 1
                } else if matches!(fault, Fault::VmFault { .. }) {
                    s.faults_vm += 1
                } else {
                    s.faults_other += 1
                }
            }
            Event::Stop { .. } => s.stops += 1,
            Event::Restart { .. } => s.restarts += 1,
            Event::Map { .. } => s.maps += 1,
            Event::Unmap { .. } => s.unmaps += 1,
            Event::Copy { .. } => s.copies += 1,
            Event::Zero { .. } => s.zeroes += 1,
            Event::TagWrite { .. } => s.tag_writes += 1,
            Event::CleanForTags { .. } | Event::CleanTags { .. } => s.tag_storage_cleans += 1,
            Event::Inject { .. } => s.injections += 1,
            Event::Livelock { .. } => s.livelocks += 1,
            Event::Init { .. }
            | Event::Blocked { .. }
            | Event::Wake { .. }
            | Event::Reply { .. }
            | Event::FaultReply { .. }
            | Event::Print { .. } => {}
        }
    }

    /// Records `event` at `step`.
    pub fn record(&mut self, step: u64, event: Event) {
        self.count(&event);
        // The hash is over the event's fields, so a run that keeps no text
        // does not pay for formatting, and hashes the same as one that does.
        let mut hasher = Fnv(self.hash);
        std::hash::Hash::hash(&(step, &event), &mut hasher);
        self.hash = hasher.0;
        if self.keep_lines {
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            self.render(&mut line, step, &event);
            self.lines.push_str(&line);
            self.lines.push('\n');
            self.line = line;
        }
    }

    fn name(&self, pd: usize) -> &str {
        self.names.get(pd).map_or("?", String::as_str)
    }

    fn render(&self, out: &mut String, step: u64, event: &Event) {
        let _ = write!(out, "{step:>8} ");
        let _ = match event {
            Event::Init { pd } => write!(out, "init {}", self.name(*pd)),
            Event::Notify { from, to, channel } => {
                write!(
                    out,
                    "notify {} -> {} ch{channel}",
                    self.name(*from),
                    self.name(*to)
                )
            }
            Event::NotifyDropped { from, to, channel } => write!(
                out,
                "notify-dropped {} -> {} ch{channel}",
                self.name(*from),
                self.name(*to)
            ),
            Event::Wake { pd, badge } => write!(out, "wake {} badge={badge:#x}", self.name(*pd)),
            Event::Call {
                from,
                to,
                channel,
                label,
                words,
            } => write!(
                out,
                "call {} -> {} ch{channel} label={label} mrs={words:x?}",
                self.name(*from),
                self.name(*to)
            ),
            Event::Reply {
                from,
                to,
                label,
                words,
            } => write!(
                out,
                "reply {} -> {} label={label} mrs={words:x?}",
                self.name(*from),
                self.name(*to)
            ),
            Event::Fault { pd, fault } => write!(out, "fault {} {fault:x?}", self.name(*pd)),
            Event::FaultReply {
                parent,
                child,
                resumed,
            } => write!(
                out,
                "fault-reply {} -> {} {}",
                self.name(*parent),
                self.name(*child),
                if *resumed { "resume" } else { "no-reply" }
            ),
            Event::Stop { pd } => write!(out, "stop {}", self.name(*pd)),
            Event::Livelock { pd, faults } => write!(
                out,
                "livelock: {} was resumed {faults} times on the same fault, never fixed; stopped",
                self.name(*pd)
            ),
            Event::Blocked { pd, on } => write!(
                out,
                "blocked {} on {}, which is stopped",
                self.name(*pd),
                self.name(*on)
            ),
            Event::Restart { pd } => write!(out, "restart {}", self.name(*pd)),
            Event::Map {
                client,
                vaddr,
                frame,
                access,
            } => write!(
                out,
                "map client{client} {vaddr:#x} -> pfn {frame:#x} {access:?}"
            ),
            Event::Unmap { client, vaddr } => write!(out, "unmap client{client} {vaddr:#x}"),
            Event::Copy { from, to } => write!(out, "copy pfn {from:#x} -> {to:#x}"),
            Event::Zero { frame } => write!(out, "zero pfn {frame:#x}"),
            Event::TagWrite { frame } => write!(out, "tags pfn {frame:#x}"),
            Event::CleanForTags { tag_frame } => {
                write!(out, "clean data lines of tag pfn {tag_frame:#x}")
            }
            Event::CleanTags { frame } => write!(out, "clean tag lines of pfn {frame:#x}"),
            Event::Inject { pd, what } => write!(out, "inject {} {what}", self.name(*pd)),
            Event::Print { pd, text } => write!(out, "print {}: {text}", self.name(*pd)),
        };
    }
}
