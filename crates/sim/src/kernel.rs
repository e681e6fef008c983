//! The simulated kernel: PDs, channels, priorities, PPCs, notifications,
//! faults, fault injection, and the [`Env`] each PD runs against.
//!
//! Semantics (the parts of seL4 and Microkit the PDs rely on):
//! - A PPC runs the callee's `protected` on the caller's thread, at once,
//!   and only along a channel whose caller end has `pp="true"` (the SDF check
//!   already made sure the callee has a strictly higher priority).
//! - A notification sets the channel's bit at the receiver. It is delivered
//!   when the running handler returns, to the highest-priority PD with bits
//!   pending; among equals, the seeded generator chooses. (On seL4 a higher
//!   priority receiver would preempt at once; our handlers notify as their
//!   last act, so the order of effects is the same.)
//! - A fault of a child is delivered to its parent's `fault` at once. A reply
//!   resumes the child, which retries the access; no reply leaves it blocked.
//!   `pd_stop` and `pd_restart` end the child's current handler: its blocking
//!   call returns [`Stopped`]. A restarted PD runs `init` again.
//! - Client loads and stores go through the simulated MMU of [`SimMachine`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::cell::RefCell;
use std::rc::Rc;

use tagloan_microkit::{
    fsr, Channel, ChannelSet, Child, Env, Fault, Handler, MessageInfo, Stopped, MSG_MAX_LENGTH,
};
use tagloan_mte::{pointer_tag, with_pointer_tag, Tag, FRAME_BYTES};
use tagloan_pool::ClientId;
use zerocopy::IntoBytes;

use crate::hosted::{AuditSink, FrameView, Hosted, Pd, SharedMachine};
use crate::rng::Rng;
use crate::sdf::Sdf;
use crate::system::System;
use crate::trace::{Event, Summary, Trace};
use tagloan_ram::{AccessFault, SimMachine};

/// Identical faults a parent may resume before the simulator calls it a
/// livelock and stops the child.
pub const LIVELOCK_FAULTS: u32 = 16;

/// Makes a PD. Registered by program image name.
pub type Constructor = Box<dyn Fn(&Build) -> Box<dyn Pd>>;

/// What the simulator gives a PD it builds: for the PD that owns the pool
/// (the memory server of a tagloan system), the machine.
pub struct Build {
    machine: Option<SharedMachine>,
}

impl Build {
    /// The simulated machine, for the PD that owns the pool; `None` for
    /// every other PD.
    pub fn machine(&self) -> Option<SharedMachine> {
        self.machine.clone()
    }
}

/// The handler constructors, by program image (`memory_server.elf`, or its
/// stem `memory_server`).
#[derive(Default)]
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `make` for the program image `image`.
    pub fn register(&mut self, image: &str, make: impl Fn(&Build) -> Box<dyn Pd> + 'static) {
        self.constructors.insert(image.to_string(), Box::new(make));
    }

    /// Registers a handler nobody observes, which needs no machine.
    pub fn register_handler<H: Handler + 'static>(
        &mut self,
        image: &str,
        make: impl Fn() -> H + 'static,
    ) {
        self.register(image, move |_| Hosted::plain(make()));
    }

    fn make(&self, image: &str, build: &Build) -> Option<Box<dyn Pd>> {
        let stem = image.strip_suffix(".elf").unwrap_or(image);
        self.constructors
            .get(image)
            .or_else(|| self.constructors.get(stem))
            .map(|make| make(build))
    }
}

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injection {
    /// `pd` crashes at its `call`-th PPC (from 0): before the callee sees
    /// it, or after the callee served it (the reply is lost).
    CrashAtCall {
        pd: String,
        call: u64,
        after_serve: bool,
    },
    /// `pd` crashes at its first kernel event at or after `step`.
    CrashAtStep { pd: String, step: u64 },
    /// `pd` is stopped at its first kernel event at or after `step`, as if
    /// its TCB were suspended: nobody is told, its handler ends.
    StopAtStep { pd: String, step: u64 },
    /// `pd` crashes right after its `fault`-th fault (from 0, every fault
    /// it raised counts) was resolved and it was resumed, before it retries
    /// the access.
    CrashAfterFault { pd: String, fault: u64 },
    /// One bit of `pd`'s `call`-th PPC (label or a register) is flipped.
    CorruptCall { pd: String, call: u64 },
    /// `pd`'s `index`-th notification (from 0) is lost.
    DropNotification { pd: String, index: u64 },
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    /// Keep the full trace text (the hash and summary are always kept).
    pub keep_trace: bool,
    /// Ask every PD for its audit (the memory server checks its invariants)
    /// after each PPC it serves.
    pub audit_every_call: bool,
    pub injections: Vec<Injection>,
    /// Where `prefill_path` files are looked for after the SDF's directory.
    pub search_path: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 1,
            keep_trace: false,
            audit_every_call: true,
            injections: Vec::new(),
            search_path: Vec::new(),
        }
    }
}

/// Errors building a simulated system.
#[derive(Debug)]
pub enum SimError {
    Sdf(crate::sdf::SdfError),
    System(crate::system::SystemError),
    /// A PD's program image has no registered handler.
    NoHandler {
        pd: String,
        image: String,
    },
    /// A region's prefill cannot be loaded.
    Prefill {
        region: String,
        message: String,
    },
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Sdf(e) => write!(f, "{e}"),
            SimError::System(e) => write!(f, "{e}"),
            SimError::Prefill { region, message } => {
                write!(f, "memory region `{region}`: {message}")
            }
            SimError::NoHandler { pd, image } => write!(
                f,
                "PD `{pd}`: no handler is registered for program image `{image}`; register it in the simulator's registry"
            ),
        }
    }
}

impl std::error::Error for SimError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    /// Stopped by its parent, or blocked on a fault nobody answered.
    Stopped,
    /// Restarted by its parent: `init` runs once its current handler ends.
    Restarting,
}

struct PdState {
    state: RunState,
    pending: u64,
    mrs: Box<[u64; MSG_MAX_LENGTH]>,
    calls: u64,
    notifies: u64,
    faults: u64,
    client: Option<ClientId>,
    executing: bool,
    /// Readable regions mapped into it: name -> contents.
    regions: BTreeMap<String, Vec<u8>>,
    /// Writable regions not yet taken.
    writable: Vec<(String, usize)>,
}

/// Audit results gathered from the PDs.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Latest counters per PD.
    pub counters: BTreeMap<String, BTreeMap<String, u64>>,
    /// Invariant checks run.
    pub checks: u64,
    /// Violations seen (the first few are kept).
    pub violations: u64,
    pub first_violations: Vec<String>,
}

impl Audit {
    /// A counter of `pd`, or 0.
    pub fn counter(&self, pd: &str, name: &str) -> u64 {
        self.counters
            .get(pd)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or(0)
    }
}

struct Core {
    sdf: Sdf,
    system: Option<System>,
    pds: Vec<PdState>,
    machine: Option<Rc<RefCell<SimMachine>>>,
    machine_owner: Option<usize>,
    rng: Rng,
    trace: Trace,
    step: u64,
    injections: Vec<Injection>,
    audit_every_call: bool,
    audit: Audit,
}

/// A simulated system.
pub struct Sim {
    core: Core,
    handlers: Vec<Option<Box<dyn Pd>>>,
    started: bool,
}

impl Sim {
    /// Loads `sdf_path`, checks it with the platform and client table it
    /// names, and builds every PD from `registry`.
    pub fn load(
        sdf_path: &std::path::Path,
        registry: &Registry,
        config: Config,
    ) -> Result<Sim, SimError> {
        let sdf = Sdf::load(sdf_path, &config.search_path).map_err(SimError::Sdf)?;
        Sim::new(sdf, registry, config)
    }

    /// Builds a simulated system from a checked SDF. An SDF with a `dtb`
    /// region is a tagloan system: it is bound to its platform and client
    /// table, and its memory server gets the simulated machine. Any other
    /// SDF runs as a plain Microkit system (for the kernel's own tests).
    pub fn new(sdf: Sdf, registry: &Registry, config: Config) -> Result<Sim, SimError> {
        let system = if sdf.region(crate::system::DTB_REGION).is_some() {
            Some(System::from_sdf(&sdf).map_err(SimError::System)?)
        } else {
            None
        };
        let machine = system.as_ref().map(|s| {
            let mut machine = SimMachine::new(s.platform.layout.tag_regions());
            machine.record_events();
            Rc::new(RefCell::new(machine))
        });
        let machine_owner = system.as_ref().map(|s| s.server);
        let mut handlers = Vec::new();
        let mut pds = Vec::new();
        for (index, pd) in sdf.pds.iter().enumerate() {
            let build = Build {
                machine: machine
                    .as_ref()
                    .filter(|_| machine_owner == Some(index))
                    .map(|m| SharedMachine(m.clone())),
            };
            let handler =
                registry
                    .make(&pd.program_image, &build)
                    .ok_or_else(|| SimError::NoHandler {
                        pd: pd.name.clone(),
                        image: pd.program_image.clone(),
                    })?;
            handlers.push(Some(handler));
            let mut regions = BTreeMap::new();
            let mut writable = Vec::new();
            for map in &pd.maps {
                let region = &sdf.regions[map.region];
                if map.perms.contains('w') && region.prefill.is_none() {
                    writable.push((region.name.clone(), region.size as usize));
                } else {
                    let mut bytes = match &region.prefill {
                        Some((name, path)) => {
                            std::fs::read(path).map_err(|e| SimError::Prefill {
                                region: region.name.clone(),
                                message: format!("cannot read `{name}` ({}): {e}", path.display()),
                            })?
                        }
                        None => Vec::new(),
                    };
                    if bytes.len() as u64 > region.size {
                        return Err(SimError::Prefill {
                            region: region.name.clone(),
                            message: format!(
                                "the prefill has {} bytes, more than the region's {}; raise its size",
                                bytes.len(),
                                region.size
                            ),
                        });
                    }
                    bytes.resize(region.size as usize, 0);
                    regions.insert(region.name.clone(), bytes);
                }
            }
            pds.push(PdState {
                state: RunState::Running,
                pending: 0,
                mrs: Box::new([0; MSG_MAX_LENGTH]),
                calls: 0,
                notifies: 0,
                faults: 0,
                client: system.as_ref().and_then(|s| s.client_of(index)),
                executing: false,
                regions,
                writable,
            });
        }
        let names = sdf.pds.iter().map(|p| p.name.clone()).collect();
        Ok(Sim {
            core: Core {
                sdf,
                system,
                pds,
                machine,
                machine_owner,
                rng: Rng::new(config.seed),
                trace: Trace::new(names, config.keep_trace),
                step: 0,
                injections: config.injections,
                audit_every_call: config.audit_every_call,
                audit: Audit::default(),
            },
            handlers,
            started: false,
        })
    }

    /// Runs every PD's `init`, highest priority first (SDF order among equals).
    fn start(&mut self) {
        self.started = true;
        let mut order: Vec<usize> = (0..self.core.pds.len()).collect();
        order.sort_by_key(|&pd| std::cmp::Reverse(self.core.sdf.pds[pd].priority));
        for pd in order {
            if self.core.pds[pd].state != RunState::Running {
                continue;
            }
            self.core.record(Event::Init { pd });
            let _ = run_handler(&mut self.core, &mut self.handlers, pd, |h, env| h.init(env));
            self.settle();
        }
    }

    /// Runs `init` again for PDs their parent restarted.
    fn settle(&mut self) {
        while let Some(pd) = self
            .core
            .pds
            .iter()
            .position(|p| p.state == RunState::Restarting && !p.executing)
        {
            self.core.pds[pd].state = RunState::Running;
            self.core.record(Event::Init { pd });
            let _ = run_handler(&mut self.core, &mut self.handlers, pd, |h, env| h.init(env));
        }
    }

    /// Delivers one wakeup. Returns false when nothing is pending.
    pub fn step(&mut self) -> bool {
        if !self.started {
            self.start();
            return true;
        }
        let ready: Vec<usize> = (0..self.core.pds.len())
            .filter(|&pd| {
                let p = &self.core.pds[pd];
                p.state == RunState::Running && p.pending != 0 && !p.executing
            })
            .collect();
        let Some(top) = ready.iter().map(|&pd| self.core.sdf.pds[pd].priority).max() else {
            return false;
        };
        let candidates: Vec<usize> = ready
            .into_iter()
            .filter(|&pd| self.core.sdf.pds[pd].priority == top)
            .collect();
        let pd = candidates[self.core.rng.below(candidates.len() as u64) as usize];
        let badge = std::mem::take(&mut self.core.pds[pd].pending);
        self.core.step += 1;
        self.core.record(Event::Wake { pd, badge });
        let _ = run_handler(&mut self.core, &mut self.handlers, pd, |h, env| {
            h.notified(env, ChannelSet::from_badge(badge))
        });
        self.settle();
        true
    }

    /// Runs until nothing is pending or `max_steps` kernel steps have run.
    /// Returns the steps run.
    pub fn run(&mut self, max_steps: u64) -> u64 {
        let start = self.core.step;
        while self.core.step - start < max_steps && self.step() {}
        self.core.step - start
    }

    /// Whether no running PD has a notification pending: the system is idle.
    pub fn idle(&self) -> bool {
        !self
            .core
            .pds
            .iter()
            .any(|p| p.state == RunState::Running && p.pending != 0)
    }

    /// Kernel steps so far (wakeups, PPCs, faults, memory accesses).
    pub fn steps(&self) -> u64 {
        self.core.step
    }

    /// The trace.
    pub fn trace(&self) -> &Trace {
        &self.core.trace
    }

    /// The trace's counts, with the step count.
    pub fn summary(&self) -> Summary {
        Summary {
            steps: self.core.step,
            ..self.core.trace.summary
        }
    }

    /// What the PDs reported.
    pub fn audit(&self) -> &Audit {
        &self.core.audit
    }

    /// Asks every PD for its audit now (the server checks its invariants).
    pub fn audit_now(&mut self) {
        for pd in 0..self.core.pds.len() {
            audit_pd(&mut self.core, &mut self.handlers, pd, None);
        }
    }

    /// Every managed frame's state as the memory server sees it (empty for
    /// a system without one).
    pub fn frame_views(&mut self) -> Vec<FrameView> {
        let mut views = Vec::new();
        if let Some(server) = self.core.machine_owner {
            audit_pd(&mut self.core, &mut self.handlers, server, Some(&mut views));
        }
        views
    }

    /// The simulated machine (RAM, tags, mappings), for a tagloan system.
    pub fn machine(&self) -> Option<std::cell::Ref<'_, SimMachine>> {
        self.core.machine.as_ref().map(|m| m.borrow())
    }

    /// The simulated machine, mutable: tests use it to play a hardware
    /// fault, e.g. a stray write into tag storage.
    pub fn machine_mut(&mut self) -> Option<std::cell::RefMut<'_, SimMachine>> {
        self.core.machine.as_ref().map(|m| m.borrow_mut())
    }

    /// The system: SDF, platform and client table, bound together.
    pub fn system(&self) -> Option<&System> {
        self.core.system.as_ref()
    }

    /// The checked SDF.
    pub fn sdf(&self) -> &Sdf {
        &self.core.sdf
    }

    /// Suspends `pd` now, as a debugger would: nobody is told. Returns
    /// false if there is no such PD.
    pub fn stop_now(&mut self, pd: &str) -> bool {
        let Some(index) = self.core.sdf.pd(pd) else {
            return false;
        };
        self.core.pds[index].state = RunState::Stopped;
        self.core.record(Event::Stop { pd: index });
        true
    }

    /// Whether `pd` is running (not stopped).
    pub fn is_running(&self, pd: &str) -> bool {
        self.core
            .sdf
            .pd(pd)
            .is_some_and(|p| self.core.pds[p].state != RunState::Stopped)
    }
}

impl Core {
    fn record(&mut self, event: Event) {
        self.trace.record(self.step, event);
    }

    fn flush_machine_events(&mut self) {
        let Some(machine) = self.machine.as_ref() else {
            return;
        };
        let events = machine.borrow_mut().drain_events();
        for event in events {
            self.trace.record(self.step, Event::from(event));
        }
    }

    /// One kernel step of `pd`; fires a step-based injection.
    fn tick(&mut self, pd: usize) -> Option<Injection> {
        self.step += 1;
        let name = &self.sdf.pds[pd].name;
        let step = self.step;
        let i = self.injections.iter().position(|inj| match inj {
            Injection::CrashAtStep { pd: p, step: s }
            | Injection::StopAtStep { pd: p, step: s } => p == name && *s <= step,
            _ => false,
        })?;
        Some(self.injections.remove(i))
    }

    fn take_injection(&mut self, pd: usize, wanted: impl Fn(&Injection, &str) -> bool) -> bool {
        let name = self.sdf.pds[pd].name.clone();
        match self.injections.iter().position(|i| wanted(i, &name)) {
            Some(i) => {
                self.injections.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Runs one entry point of `pd`'s handler with its env. An entry point
/// that returns an error ends the PD, as a panic does on seL4: the error is
/// printed and the PD stops.
fn run_handler(
    core: &mut Core,
    handlers: &mut [Option<Box<dyn Pd>>],
    pd: usize,
    body: impl FnOnce(&mut dyn Pd, &mut dyn Env) -> Result<(), String>,
) -> bool {
    let mut handler = handlers[pd].take().unwrap_or_else(|| {
        panic!(
            "PD `{}` re-entered: a PPC or fault cycle",
            core.sdf.pds[pd].name
        )
    });
    core.pds[pd].executing = true;
    let mut ok = true;
    {
        let mut env = PdEnv {
            core: &mut *core,
            handlers: &mut *handlers,
            pd,
        };
        if let Err(error) = body(handler.as_mut(), &mut env) {
            ok = false;
            env.core.record(Event::Print {
                pd,
                text: format!("handler error, the PD ends: {error}"),
            });
            env.core.pds[pd].state = RunState::Stopped;
            env.core.pds[pd].pending = 0;
            env.core.record(Event::Stop { pd });
        }
    }
    core.pds[pd].executing = false;
    handlers[pd] = Some(handler);
    ok
}

struct Sink<'a> {
    pd: String,
    audit: &'a mut Audit,
    frames: Option<&'a mut Vec<FrameView>>,
}

impl AuditSink for Sink<'_> {
    fn counter(&mut self, name: &str, value: u64) {
        self.audit
            .counters
            .entry(self.pd.clone())
            .or_default()
            .insert(name.to_string(), value);
    }

    fn invariants(&mut self, violation: Option<&dyn std::fmt::Display>) {
        self.audit.checks += 1;
        if let Some(v) = violation {
            self.audit.violations += 1;
            if self.audit.first_violations.len() < 8 {
                self.audit
                    .first_violations
                    .push(format!("{}: {v}", self.pd));
            }
        }
    }

    fn wants_frames(&self) -> bool {
        self.frames.is_some()
    }

    fn frame(&mut self, index: u32, state: FrameView) {
        if let Some(frames) = &mut self.frames {
            if frames.len() <= index as usize {
                frames.resize(index as usize + 1, FrameView::DataFree);
            }
            frames[index as usize] = state;
        }
    }
}

fn audit_pd(
    core: &mut Core,
    handlers: &mut [Option<Box<dyn Pd>>],
    pd: usize,
    frames: Option<&mut Vec<FrameView>>,
) {
    if let Some(handler) = handlers[pd].as_mut() {
        let mut sink = Sink {
            pd: core.sdf.pds[pd].name.clone(),
            audit: &mut core.audit,
            frames,
        };
        handler.audit(&mut sink);
    }
}

/// The env of one PD while its handler runs.
struct PdEnv<'a> {
    core: &'a mut Core,
    handlers: &'a mut [Option<Box<dyn Pd>>],
    pd: usize,
}

impl PdEnv<'_> {
    fn running(&self) -> bool {
        self.core.pds[self.pd].state == RunState::Running
    }

    /// Delivers `fault` of this PD to its parent. Returns whether this PD may
    /// go on (the parent replied and neither stopped nor restarted it).
    fn fault(&mut self, fault: Fault) -> bool {
        let child = self.pd;
        self.core.record(Event::Fault { pd: child, fault });
        let index = self.core.pds[child].faults;
        self.core.pds[child].faults += 1;
        let Some(parent) = self.core.sdf.pds[child].parent else {
            // No fault handler: seL4 leaves the thread blocked for ever.
            self.core.pds[child].state = RunState::Stopped;
            self.core.record(Event::Stop { pd: child });
            return false;
        };
        if self.core.pds[parent].state == RunState::Stopped {
            // The parent is dead: its fault endpoint has no receiver, and
            // the child blocks on it for ever.
            self.core.record(Event::Blocked {
                pd: child,
                on: parent,
            });
            self.core.pds[child].state = RunState::Stopped;
            self.core.record(Event::Stop { pd: child });
            return false;
        }
        let child_id = self.core.sdf.pds[child]
            .child_id
            .expect("a child PD has an id");
        let info = fault.encode(&mut self.core.pds[parent].mrs[..]);
        let mut reply = None;
        let _ = run_handler(self.core, self.handlers, parent, |h, env| {
            reply = h.fault(env, Child::new(usize::from(child_id)), info)?;
            Ok(())
        });
        self.core.record(Event::FaultReply {
            parent,
            child,
            resumed: reply.is_some(),
        });
        if reply.is_some()
            && self.running()
            && self.core.take_injection(child, |i, n| {
                matches!(i, Injection::CrashAfterFault { pd, fault } if pd == n && *fault == index)
            })
        {
            // The parent resolved the fault and resumed us; we crash before
            // the access is retried.
            return self.crash("crash after the fault was resolved, before the retry");
        }
        if reply.is_none() && self.core.pds[child].state == RunState::Running {
            // Nobody answered and nobody restarted it: blocked for ever.
            self.core.pds[child].state = RunState::Stopped;
            self.core.record(Event::Stop { pd: child });
        }
        reply.is_some() && self.running()
    }

    fn crash(&mut self, what: &str) -> bool {
        self.core.record(Event::Inject {
            pd: self.pd,
            what: what.to_string(),
        });
        self.fault(Fault::UserException {
            ip: self.core.step,
            number: 0,
            code: 0xdead,
        })
    }

    /// One kernel step; a crash or stop injected here may end us.
    fn tick(&mut self) -> Result<(), Stopped> {
        if !self.running() {
            return Err(Stopped);
        }
        match self.core.tick(self.pd) {
            Some(Injection::CrashAtStep { .. }) if !self.crash("crash at step") => Err(Stopped),
            Some(Injection::StopAtStep { .. }) => {
                self.core.record(Event::Inject {
                    pd: self.pd,
                    what: "stop at step".into(),
                });
                self.core.pds[self.pd].state = RunState::Stopped;
                self.core.record(Event::Stop { pd: self.pd });
                Err(Stopped)
            }
            _ => Ok(()),
        }
    }

    fn client(&self) -> Option<ClientId> {
        self.core.pds[self.pd].client
    }

    /// Runs a memory access, delivering its faults; splits at page edges.
    /// The parent resumed this PD `faults` times without fixing its fault:
    /// on seL4 it would spin for ever. Stop it, and count it.
    fn stop_livelocked(&mut self, faults: u32) -> Result<(), Stopped> {
        self.core.record(Event::Livelock {
            pd: self.pd,
            faults,
        });
        self.core.pds[self.pd].state = RunState::Stopped;
        self.core.record(Event::Stop { pd: self.pd });
        Err(Stopped)
    }

    fn access(
        &mut self,
        pointer: u64,
        len: usize,
        mut op: impl FnMut(
            &mut SimMachine,
            ClientId,
            u64,
            std::ops::Range<usize>,
        ) -> Result<(), AccessFault>,
    ) -> Result<(), Stopped> {
        let page = FRAME_BYTES as u64;
        let mut done = 0usize;
        while done < len || (len == 0 && done == 0) {
            let at = pointer.wrapping_add(done as u64);
            let chunk = ((page - (at % page)) as usize).min(len - done);
            let mut attempts = 0;
            loop {
                self.tick()?;
                self.core.trace.summary.accesses += 1;
                let result = match (self.client(), self.core.machine.as_ref()) {
                    (Some(client), Some(machine)) => {
                        op(&mut machine.borrow_mut(), client, at, done..done + chunk)
                    }
                    _ => Err(AccessFault::Vm {
                        vaddr: tagloan_mte::untagged_address(at),
                    }),
                };
                let fault = match result {
                    Ok(()) => break,
                    Err(AccessFault::Vm { vaddr }) => Fault::VmFault {
                        ip: self.core.step,
                        // FAR_EL1 keeps the top byte of the pointer (TBI),
                        // so a tagged pointer's fault address carries its
                        // tag, as on hardware.
                        addr: vaddr | (at & (0xff << 56)),
                        prefetch: false,
                        fsr: match self
                            .client()
                            .zip(self.core.machine.as_ref())
                            .and_then(|(c, m)| m.borrow().mapping(c, vaddr))
                        {
                            Some(_) => fsr::PERMISSION_L3,
                            None => fsr::TRANSLATION_L3,
                        },
                    },
                    Err(AccessFault::TagCheck {
                        vaddr, pointer_tag, ..
                    }) => Fault::VmFault {
                        ip: self.core.step,
                        addr: with_pointer_tag(vaddr, pointer_tag),
                        prefetch: false,
                        fsr: fsr::SYNC_TAG_CHECK,
                    },
                };
                if !self.fault(fault) {
                    return Err(Stopped);
                }
                attempts += 1;
                if attempts >= LIVELOCK_FAULTS {
                    return self.stop_livelocked(attempts);
                }
            }
            done += chunk;
            if len == 0 {
                break;
            }
        }
        Ok(())
    }
}

impl Env for PdEnv<'_> {
    fn pd_name(&self) -> &str {
        &self.core.sdf.pds[self.pd].name
    }

    fn mr(&self, index: usize) -> u64 {
        self.core.pds[self.pd].mrs[index]
    }

    fn set_mr(&mut self, index: usize, value: u64) {
        self.core.pds[self.pd].mrs[index] = value;
    }

    fn ppcall(&mut self, channel: Channel, info: MessageInfo) -> Result<MessageInfo, Stopped> {
        self.tick()?;
        let me = self.pd;
        let call = self.core.pds[me].calls;
        self.core.pds[me].calls += 1;
        let peer = self.core.sdf.peer(me, channel.index() as u8);
        let Some((mine, theirs)) = peer.filter(|(mine, _)| mine.pp) else {
            // No PPC capability in that slot: seL4 raises a cap fault.
            if self.fault(Fault::Other {
                label: tagloan_microkit::fault_label::CAP_FAULT,
            }) {
                return Ok(MessageInfo::new(u64::MAX >> 12, 0));
            }
            return Err(Stopped);
        };
        let _ = mine;
        if self.core.take_injection(me, |i, n| {
            matches!(i, Injection::CrashAtCall { pd, call: c, after_serve: false } if pd == n && *c == call)
        }) && !self.crash("crash before the call reaches the server")
        {
            return Err(Stopped);
        }
        let mut info = info;
        let count = info.count();
        if self.core.take_injection(
            me,
            |i, n| matches!(i, Injection::CorruptCall { pd, call: c } if pd == n && *c == call),
        ) {
            let bit = self.core.rng.below(64);
            let what = if count == 0 || self.core.rng.below(4) == 0 {
                info = MessageInfo::new(info.label() ^ (1 << (bit % 8)), count);
                format!("corrupt call {call}: label bit {}", bit % 8)
            } else {
                let word = self.core.rng.below(count as u64) as usize;
                self.core.pds[me].mrs[word] ^= 1 << bit;
                format!("corrupt call {call}: mr{word} bit {bit}")
            };
            self.core.record(Event::Inject { pd: me, what });
        }
        let callee = theirs.pd;
        if self.core.pds[callee].state == RunState::Stopped {
            // A stopped server receives nothing: the caller blocks for ever.
            self.core.record(Event::Blocked { pd: me, on: callee });
            self.core.pds[me].state = RunState::Stopped;
            self.core.record(Event::Stop { pd: me });
            return Err(Stopped);
        }
        let words: Vec<u64> = self.core.pds[me].mrs[..count].to_vec();
        self.core.pds[callee].mrs[..count].copy_from_slice(&words);
        self.core.record(Event::Call {
            from: me,
            to: callee,
            channel: theirs.id,
            label: info.label(),
            words,
        });
        let mut reply = MessageInfo::new(0, 0);
        let served = run_handler(self.core, self.handlers, callee, |h, env| {
            reply = h.protected(env, Channel::new(usize::from(theirs.id)), info)?;
            Ok(())
        });
        if !served {
            // The server's handler failed and it ended without replying: the
            // caller blocks for ever, as on seL4.
            self.core.record(Event::Blocked { pd: me, on: callee });
            self.core.pds[me].state = RunState::Stopped;
            self.core.record(Event::Stop { pd: me });
            return Err(Stopped);
        }
        self.core.flush_machine_events();
        if self.core.audit_every_call {
            audit_pd(self.core, self.handlers, callee, None);
        }
        let words: Vec<u64> = self.core.pds[callee].mrs[..reply.count()].to_vec();
        self.core.record(Event::Reply {
            from: callee,
            to: me,
            label: reply.label(),
            words: words.clone(),
        });
        if self.core.take_injection(me, |i, n| {
            matches!(i, Injection::CrashAtCall { pd, call: c, after_serve: true } if pd == n && *c == call)
        }) && !self.crash("crash after the server served the call; the reply is lost")
        {
            return Err(Stopped);
        }
        if !self.running() {
            return Err(Stopped);
        }
        self.core.pds[me].mrs[..words.len()].copy_from_slice(&words);
        Ok(reply)
    }

    fn notify(&mut self, channel: Channel) {
        let me = self.pd;
        let Some((mine, theirs)) = self.core.sdf.peer(me, channel.index() as u8) else {
            self.core.record(Event::Print {
                pd: me,
                text: format!(
                    "notify on channel {} that does not exist: ignored",
                    channel.index()
                ),
            });
            return;
        };
        if !mine.notify {
            self.core.record(Event::Print {
                pd: me,
                text: format!(
                    "notify on channel {} whose end has notify=\"false\": ignored",
                    channel.index()
                ),
            });
            return;
        }
        let index = self.core.pds[me].notifies;
        self.core.pds[me].notifies += 1;
        if self.core.take_injection(me, |i, n| {
            matches!(i, Injection::DropNotification { pd, index: x } if pd == n && *x == index)
        }) {
            self.core.record(Event::NotifyDropped {
                from: me,
                to: theirs.pd,
                channel: theirs.id,
            });
            return;
        }
        self.core.pds[theirs.pd].pending |= 1 << theirs.id;
        self.core.record(Event::Notify {
            from: me,
            to: theirs.pd,
            channel: theirs.id,
        });
    }

    fn pd_stop(&mut self, child: Child) {
        if let Some(pd) = self.core.sdf.child(self.pd, child.index() as u8) {
            self.core.pds[pd].state = RunState::Stopped;
            self.core.pds[pd].pending = 0;
            self.core.record(Event::Stop { pd });
        }
    }

    fn pd_restart(&mut self, child: Child, _entry_point: u64) {
        if let Some(pd) = self.core.sdf.child(self.pd, child.index() as u8) {
            self.core.pds[pd].state = RunState::Restarting;
            self.core.record(Event::Restart { pd });
        }
    }

    fn debug_print(&mut self, text: &str) {
        self.core.record(Event::Print {
            pd: self.pd,
            text: text.to_string(),
        });
    }

    fn region(&self, name: &str) -> Option<&[u8]> {
        self.core.pds[self.pd].regions.get(name).map(Vec::as_slice)
    }

    fn take_region_mut(&mut self, name: &str) -> Option<&'static mut [u8]> {
        let writable = &mut self.core.pds[self.pd].writable;
        let index = writable.iter().position(|(n, _)| n == name)?;
        let (_, size) = writable.remove(index);
        // The region lives as long as the system, as on seL4. u64 backing
        // gives the 8-byte alignment a page-aligned mapping would.
        let words: &'static mut [u64] = Box::leak(vec![0u64; size.div_ceil(8)].into_boxed_slice());
        Some(words.as_mut_bytes())
    }

    fn load(&mut self, pointer: u64, out: &mut [u8]) -> Result<(), Stopped> {
        self.access(pointer, out.len(), |m, client, at, range| {
            m.load(client, at, &mut out[range])
        })
    }

    fn store(&mut self, pointer: u64, bytes: &[u8]) -> Result<(), Stopped> {
        self.access(pointer, bytes.len(), |m, client, at, range| {
            m.store(client, at, &bytes[range])
        })
    }

    fn execute(&mut self, pointer: u64) -> Result<(), Stopped> {
        // The simulated machine maps every client page execute-never, as
        // the seL4 backend does: an instruction fetch in a client's window
        // always takes an instruction abort, a permission fault on a mapped
        // page and a translation fault elsewhere.
        let vaddr = tagloan_mte::untagged_address(pointer);
        let mut attempts = 0;
        loop {
            self.tick()?;
            let mapped = self
                .client()
                .zip(self.core.machine.as_ref())
                .and_then(|(c, m)| m.borrow().mapping(c, vaddr))
                .is_some();
            let fault = Fault::VmFault {
                // The faulting instruction is the one fetched.
                ip: vaddr,
                addr: vaddr,
                prefetch: true,
                fsr: if mapped {
                    fsr::PERMISSION_L3
                } else {
                    fsr::TRANSLATION_L3
                },
            };
            if !self.fault(fault) {
                return Err(Stopped);
            }
            attempts += 1;
            if attempts >= LIVELOCK_FAULTS {
                return self.stop_livelocked(attempts);
            }
        }
    }

    fn irg(&mut self, pointer: u64, exclude: u16) -> u64 {
        let allowed: Vec<u8> = (0..16u8).filter(|t| exclude >> t & 1 == 0).collect();
        let tag = if allowed.is_empty() {
            0
        } else {
            allowed[self.core.rng.below(allowed.len() as u64) as usize]
        };
        with_pointer_tag(pointer, Tag::from_low_bits(tag))
    }

    fn set_tags(&mut self, pointer: u64, len: usize) -> Result<(), Stopped> {
        let _ = pointer_tag(pointer);
        self.access(pointer, len, |m, client, at, range| {
            m.set_granule_tags(client, at, range.len())
        })
    }
}
