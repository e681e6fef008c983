//! The scenarios of the tagloan system, run in the simulator (DESIGN §10).
//!
//! Each scenario loads the repo's `system.xml` (or another SDF), registers
//! the real PDs with a plan for each example client, runs the simulator, and
//! returns a [`Report`]. The memory server checks the pool invariants after
//! every operation it serves; the report counts those checks and any
//! violation.

pub mod observe;
mod random;
mod scripted;

use std::path::{Path, PathBuf};

pub use random::RandomClient;
pub use scripted::{check_scripted, run_script, scripted_registry, Scripted, SCRIPTED_CLIENTS};
use tagloan_client::{Env, Paced, Progress, Stopped, Worker};
use tagloan_sim::{
    Audit, Config, Constructor, Hosted, Injection, Pd, Registry, Sim, SimError, Summary,
};

pub use client_bulk::{Bulk, BulkPlan};
pub use client_c::{CPlan, ClientC};
pub use client_lazy::{Lazy, LazyPlan};
pub use client_rogue::Rogue;
pub use client_tagged_heap::{HeapPlan, TaggedHeap};

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Tagged and untagged allocations side by side.
    Basic,
    /// The data pool fills, untagged data spills into tag storage, then a
    /// tagged burst recalls it: the default.
    Lending,
    /// The mprotect(PROT_MTE)-like path end to end.
    Lazy,
    /// A use after free caught by MTE; the client is stopped.
    UseAfterFree,
    /// Every bad request refused, state unchanged.
    Rogue,
    /// Contiguous requests exhaust the data pool: no-memory, cleanly.
    Exhaustion,
    /// Seeded random operations from every client.
    Random,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Basic,
        Scenario::Lending,
        Scenario::Lazy,
        Scenario::UseAfterFree,
        Scenario::Rogue,
        Scenario::Exhaustion,
        Scenario::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Basic => "basic",
            Scenario::Lending => "lending",
            Scenario::Lazy => "lazy",
            Scenario::UseAfterFree => "use-after-free",
            Scenario::Rogue => "rogue",
            Scenario::Exhaustion => "exhaustion",
            Scenario::Random => "random",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What it shows, for `--help` and the report.
    pub fn about(self) -> &'static str {
        match self {
            Scenario::Basic => "tagged and untagged allocations side by side",
            Scenario::Lending => {
                "data fills memory and borrows tag storage; a tagged burst recalls it; contiguous requests move tagged pages"
            }
            Scenario::Lazy => "enable tagging on live data; first touches fault and get tags",
            Scenario::UseAfterFree => {
                "a stale tagged pointer faults; the client is stopped and reclaimed"
            }
            Scenario::Rogue => "every bad request gets its error and changes nothing",
            Scenario::Exhaustion => "contiguous requests run out of memory cleanly",
            Scenario::Random => "seeded random operations from every client",
        }
    }

    /// The client plans of this scenario (for the QEMU platform's sizes).
    pub fn plans(self, seed: u64) -> Plans {
        let idle = Plans::default();
        match self {
            Scenario::Basic => Plans {
                heap: Some(HeapPlan {
                    arenas: 4,
                    order: 1,
                    operations: 200,
                    ..HeapPlan::default()
                }),
                bulk: Some(BulkPlan {
                    buffers: 8,
                    order: 4,
                    verify_rounds: 2,
                    ..BulkPlan::default()
                }),
                ..idle
            },
            // The fill, the churn, and a tagged burst that recalls: each
            // client's `lending()` plan says how (the seL4 image runs the
            // same plans).
            Scenario::Lending => Plans {
                bulk: Some(BulkPlan::lending()),
                heap: Some(HeapPlan::lending()),
                lazy: Some(LazyPlan::lending()),
                c: Some(CPlan::default()),
                ..idle
            },
            Scenario::Lazy => Plans {
                lazy: Some(LazyPlan {
                    rounds: 8,
                    order: 3,
                    start_delay: 0,
                    hold: false,
                    linger: 0,
                    wait_for_free: 0,
                }),
                ..idle
            },
            Scenario::UseAfterFree => Plans {
                heap: Some(HeapPlan {
                    arenas: 2,
                    order: 0,
                    operations: 200,
                    use_after_free_at: Some(60),
                    ..HeapPlan::default()
                }),
                ..idle
            },
            Scenario::Rogue => Plans {
                rogue: true,
                ..idle
            },
            Scenario::Exhaustion => Plans {
                bulk: Some(BulkPlan {
                    buffers: 64,
                    order: 9,
                    verify_rounds: 1,
                    contiguous: true,
                    release: true,
                    churn: 0,
                    squeeze: 0,
                }),
                heap: Some(HeapPlan {
                    arenas: 8,
                    order: 2,
                    operations: 50,
                    ..HeapPlan::default()
                }),
                ..idle
            },
            Scenario::Random => Plans {
                random: Some(seed),
                ..idle
            },
        }
    }
}

/// What each example client does; `None` leaves it idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plans {
    pub heap: Option<HeapPlan>,
    pub bulk: Option<BulkPlan>,
    pub lazy: Option<LazyPlan>,
    pub rogue: bool,
    /// The rogue client, after its cases, loads from an unmapped page of its
    /// window (as it does on seL4).
    pub rogue_touches_unmapped: bool,
    /// The C client (`pds/client_c`, on the host libmicrokit).
    pub c: Option<CPlan>,
    /// Every client runs the random workload, seeded from this.
    pub random: Option<u64>,
}

/// A client with nothing to do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle;

impl Worker for Idle {
    fn start(&mut self, _env: &mut dyn Env) {}
    fn step(&mut self, _env: &mut dyn Env) -> Result<Progress, Stopped> {
        Ok(Progress::Done)
    }
    fn counters(&self, _report: &mut dyn FnMut(&str, u64)) {}
}

/// A constructor for a client PD running `make(plan)`, or idle without a plan.
fn worker<P: Copy + 'static, W: Worker + 'static>(
    plan: Option<P>,
    make: fn(P) -> W,
) -> Constructor {
    Box::new(move |_| -> Box<dyn Pd> {
        match plan {
            Some(plan) => Hosted::observed(Paced::new(make(plan)), observe::client),
            None => Hosted::observed(Paced::new(Idle), observe::client),
        }
    })
}

/// The registry of the repo's PDs with `plans`.
pub fn registry(plans: Plans) -> Registry {
    let mut registry = Registry::new();
    registry.register("memory_server", |build| {
        Hosted::observed(
            memory_server::MemoryServer::new(build.machine()),
            observe::server,
        )
    });
    registry.register("fault_handler", |_| {
        Hosted::observed(fault_handler::FaultHandler::new(), observe::fault_handler)
    });
    // The C client: its C source on the host libmicrokit, or idle (a Rust
    // Idle) without a plan.
    let c: Constructor = match plans.c {
        Some(plan) => Box::new(move |_| -> Box<dyn Pd> {
            Hosted::observed(ClientC::new(plan), |c: &ClientC, sink| {
                c.counters(&mut |name, value| sink.counter(name, value))
            })
        }),
        None => worker(None::<()>, |()| Idle),
    };
    let clients: [(&'static str, Constructor); 5] = [
        ("client_tagged_heap", worker(plans.heap, TaggedHeap::new)),
        ("client_bulk", worker(plans.bulk, Bulk::new)),
        ("client_lazy", worker(plans.lazy, Lazy::new)),
        (
            "client_rogue",
            worker(
                plans.rogue.then_some(plans.rogue_touches_unmapped),
                |touch| match touch {
                    true => Rogue::touching_unmapped(),
                    false => Rogue::default(),
                },
            ),
        ),
        ("client_c", c),
    ];
    for (name, make) in clients {
        match plans.random {
            Some(seed) => {
                // Each client draws from its own stream; the bulk client
                // takes large allocations and keeps them, so memory fills.
                let salt = name
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                registry.register(name, move |_| {
                    Hosted::observed(
                        Paced::new(RandomClient::new(seed ^ salt, name == "client_bulk")),
                        observe::client,
                    )
                });
            }
            None => registry.register(name, make),
        }
    }
    registry
}

/// The repo's root (where `system.xml` is), from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub sdf: PathBuf,
    pub search_path: Vec<PathBuf>,
    pub seed: u64,
    /// Kernel steps at most (wakeups, PPCs, faults, memory accesses).
    pub max_steps: u64,
    pub keep_trace: bool,
    pub injections: Vec<Injection>,
    /// A device tree blob to use instead of the SDF's `dtb` prefill.
    pub platform: Option<PathBuf>,
}

/// Loads the SDF of `options`, with its `dtb` region prefilled from
/// `options.platform` when one is given.
pub fn load_sdf(options: &Options) -> Result<tagloan_sim::Sdf, SimError> {
    let mut sdf =
        tagloan_sim::Sdf::load(&options.sdf, &options.search_path).map_err(SimError::Sdf)?;
    if let Some(platform) = &options.platform {
        sdf.set_prefill(tagloan_sim::system::DTB_REGION, platform)
            .map_err(SimError::Sdf)?;
    }
    Ok(sdf)
}

impl Default for Options {
    fn default() -> Options {
        let root = repo_root();
        Options {
            sdf: root.join("system.xml"),
            search_path: vec![root.join("target/platforms")],
            seed: 1,
            max_steps: 20_000_000,
            keep_trace: false,
            injections: Vec::new(),
            platform: None,
        }
    }
}

/// One client's line of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientReport {
    pub name: String,
    /// PPCs it made.
    pub calls: u64,
    /// `alloc` calls it made, and how many succeeded.
    pub allocs: u64,
    pub allocs_ok: u64,
    pub frees: u64,
    /// Frames it holds at the end.
    pub frames_held: u64,
    pub running: bool,
    /// The client's own counters (corrupted bytes, cases, ...).
    pub counters: Vec<(String, u64)>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub summary: Summary,
    /// Server calls (PPCs) made by any PD.
    pub ipcs: u64,
    pub clients: Vec<ClientReport>,
    /// Tag storage frames lent as data: (step, frames), sampled on change.
    pub lent_timeline: Vec<(u64, u64)>,
    pub lent_peak: u64,
    pub lent_final: u64,
    pub recalls: u64,
    pub migrations: u64,
    pub bytes_copied: u64,
    pub faults_resolved: u64,
    pub faults_tag_check: u64,
    pub faults_out_of_memory: u64,
    pub faults_other: u64,
    pub invariant_checks: u64,
    pub violations: u64,
    pub first_violations: Vec<String>,
    /// Bytes a client found different from what it wrote.
    pub corrupted_bytes: u64,
    /// Free frames (data plus tag storage) after start-up and at the end.
    pub free_initial: u64,
    pub free_final: u64,
    /// Whether every client finished its plan (or was stopped).
    pub quiescent: bool,
    pub trace_hash: u64,
    pub trace: String,
    pub server_counters: Vec<(String, u64)>,
}

impl Report {
    /// The one-line summary `make test` prints per scenario.
    pub fn one_line(&self) -> String {
        format!(
            "scenario {}: seed {}, {} steps, {} IPCs, {} faults ({} lazy-tag, {} tag-check), {} livelocks, {} migrations, {} recalls, lent peak {} frames, {} invariant checks, {} violations, {} corrupted bytes",
            self.scenario,
            self.seed,
            self.summary.steps,
            self.ipcs,
            self.summary.faults(),
            self.faults_resolved,
            self.faults_tag_check,
            self.summary.livelocks,
            self.migrations,
            self.recalls,
            self.lent_peak,
            self.invariant_checks,
            self.violations,
            self.corrupted_bytes
        )
    }

    /// A counter of client `name`.
    pub fn client_counter(&self, name: &str, counter: &str) -> u64 {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.counters.iter().find(|(n, _)| n == counter))
            .map_or(0, |(_, v)| *v)
    }

    /// A counter of the server.
    pub fn server_counter(&self, name: &str) -> u64 {
        self.server_counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
}

fn free_frames(audit: &Audit) -> u64 {
    audit.counter("memory_server", "data_frames_free")
        + audit.counter("memory_server", "tag_frames_free")
}

/// A running scenario: step it yourself (for pictures at a step), or
/// [`Run::finish`] it.
pub struct Run {
    pub sim: Sim,
    scenario: String,
    seed: u64,
    free_initial: u64,
    lent_timeline: Vec<(u64, u64)>,
    lent_peak: u64,
}

impl Run {
    /// Loads the system and starts it (every PD's `init`).
    pub fn start(name: &str, plans: Plans, options: &Options) -> Result<Run, SimError> {
        Run::start_with(name, &registry(plans), options)
    }

    /// Loads the system with the PDs of `registry` and starts it.
    pub fn start_with(name: &str, registry: &Registry, options: &Options) -> Result<Run, SimError> {
        let config = Config {
            seed: options.seed,
            keep_trace: options.keep_trace,
            audit_every_call: true,
            injections: options.injections.clone(),
            search_path: options.search_path.clone(),
        };
        let mut sim = Sim::new(load_sdf(options)?, registry, config)?;
        sim.step();
        sim.audit_now();
        let free_initial = free_frames(sim.audit());
        Ok(Run {
            sim,
            scenario: name.to_string(),
            seed: options.seed,
            free_initial,
            lent_timeline: vec![(0, 0)],
            lent_peak: 0,
        })
    }

    /// Runs up to `steps` more kernel steps; false when the system is idle.
    pub fn advance(&mut self, steps: u64) -> bool {
        let target = self.sim.steps() + steps;
        while self.sim.steps() < target {
            if !self.sim.step() {
                return false;
            }
            let lent = self.sim.audit().counter("memory_server", "tag_frames_lent");
            self.lent_peak = self.lent_peak.max(lent);
            if self.lent_timeline.last().map(|(_, l)| *l) != Some(lent) {
                self.lent_timeline.push((self.sim.steps(), lent));
            }
        }
        true
    }

    /// Final audit and the report.
    pub fn finish(mut self) -> Report {
        self.sim.audit_now();
        let audit = self.sim.audit().clone();
        let summary = self.sim.summary();
        let system = self.sim.system().expect("a tagloan system");
        let names: Vec<String> = system
            .table
            .clients
            .iter()
            .map(|c| c.name.to_string())
            .collect();
        let trace = self.sim.trace();
        let mut clients = Vec::new();
        let mut corrupted = 0;
        for name in &names {
            let counters: Vec<(String, u64)> = audit
                .counters
                .get(name)
                .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            corrupted += counters
                .iter()
                .find(|(k, _)| k == "corrupted_bytes")
                .map_or(0, |(_, v)| *v);
            let calls = trace.calls_of(name);
            clients.push(ClientReport {
                name: name.clone(),
                calls: calls.calls,
                allocs: calls.allocs,
                allocs_ok: calls.allocs_ok,
                frees: calls.frees,
                frames_held: audit.counter("memory_server", &format!("frames_used.{name}")),
                running: self.sim.is_running(name),
                counters,
            });
        }
        let server = |n: &str| audit.counter("memory_server", n);
        let handler = |n: &str| audit.counter("fault_handler", n);
        let lent_final = server("tag_frames_lent");
        let quiescent = self.sim.idle();
        Report {
            scenario: self.scenario,
            seed: self.seed,
            summary,
            ipcs: summary.calls,
            clients,
            lent_timeline: self.lent_timeline,
            lent_peak: self.lent_peak.max(lent_final),
            lent_final,
            recalls: server("recalls"),
            migrations: server("migrations"),
            bytes_copied: summary.copies * 4096,
            faults_resolved: handler("faults_resolved"),
            faults_tag_check: handler("faults_tag_check"),
            faults_out_of_memory: handler("faults_out_of_memory"),
            faults_other: handler("faults_other"),
            invariant_checks: audit.checks,
            violations: audit.violations,
            first_violations: audit.first_violations.clone(),
            corrupted_bytes: corrupted,
            free_initial: self.free_initial,
            free_final: free_frames(&audit),
            quiescent,
            trace_hash: trace.hash(),
            trace: trace.text().to_string(),
            server_counters: audit
                .counters
                .get("memory_server")
                .map(|c| c.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
        }
    }
}

/// Runs `scenario` to completion (or `options.max_steps`).
pub fn run(scenario: Scenario, options: &Options) -> Result<Report, SimError> {
    run_plans(scenario.name(), scenario.plans(options.seed), options)
}

/// Runs the system with explicit plans.
pub fn run_plans(name: &str, plans: Plans, options: &Options) -> Result<Report, SimError> {
    let mut run = Run::start(name, plans, options)?;
    run.advance(options.max_steps);
    Ok(run.finish())
}

/// The crash campaign: for each client in `plans` and each PPC it makes in a
/// clean run, one run where it crashes just before the server sees that
/// call and one where it crashes just after (the reply is lost). Returns
/// every run's report, in order.
pub fn crash_campaign(
    plans: Plans,
    options: &Options,
) -> Result<Vec<(Injection, Report)>, SimError> {
    let clean = run_plans("crash (clean)", plans, options)?;
    let mut reports = Vec::new();
    for client in &clean.clients {
        let calls = clean.summary_calls_of(&client.name);
        for call in 0..calls {
            for after_serve in [false, true] {
                let injection = Injection::CrashAtCall {
                    pd: client.name.clone(),
                    call,
                    after_serve,
                };
                let mut o = options.clone();
                o.injections = vec![injection.clone()];
                reports.push((injection, run_plans("crash", plans, &o)?));
            }
        }
    }
    Ok(reports)
}

impl Report {
    /// PPCs `name` made in this run.
    pub fn summary_calls_of(&self, name: &str) -> u64 {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.calls)
    }
}
