//! `tagloan run`: the system in the simulator, and its report.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tagloan_scenarios::{Options, Report, Run, Scenario};

use crate::RunArgs;

/// Kernel steps between progress updates.
const CHUNK: u64 = 20_000;

/// Options and plans from the command line.
pub fn prepare(args: &RunArgs) -> Result<(Scenario, Options), String> {
    let scenario = Scenario::from_name(&args.scenario).ok_or_else(|| {
        format!(
            "unknown scenario `{}`; choose one of: {}",
            args.scenario,
            Scenario::ALL.map(Scenario::name).join(", ")
        )
    })?;
    let platform = match &args.platform {
        Some(p) => Some(crate::platform_dtb_path(p)?),
        None => None,
    };
    Ok((
        scenario,
        Options {
            sdf: args.sdf.clone(),
            search_path: args.search_path.clone(),
            seed: args.seed,
            max_steps: args.steps,
            keep_trace: false,
            injections: Vec::new(),
            platform,
        },
    ))
}

/// Runs to the end or `options.max_steps`, with a progress bar once the run
/// has taken more than a second. `each` sees the run after every chunk.
pub fn drive(run: &mut Run, options: &Options, mut each: impl FnMut(&mut Run)) {
    let start = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let begin = run.sim.steps();
    loop {
        let done = run.sim.steps() - begin;
        if done >= options.max_steps {
            break;
        }
        let more = run.advance(CHUNK.min(options.max_steps - done));
        each(run);
        if bar.is_none() && start.elapsed() > Duration::from_secs(1) {
            let b = ProgressBar::new(options.max_steps);
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {pos} kernel steps, {msg}")
                    .expect("the template is valid"),
            );
            bar = Some(b);
        }
        if let Some(b) = &bar {
            b.set_position(run.sim.steps() - begin);
            b.set_message(format!(
                "{} IPCs, {} tag frames lent",
                run.sim.summary().calls,
                run.sim.audit().counter("memory_server", "tag_frames_lent")
            ));
        }
        if !more {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// A one-line bar of the lent frames over time.
fn sparkline(report: &Report, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let end = report.summary.steps.max(1);
    let peak = report.lent_peak.max(1);
    (0..width)
        .map(|i| {
            let at = end * i as u64 / width as u64;
            let lent = report
                .lent_timeline
                .iter()
                .take_while(|(step, _)| *step <= at)
                .last()
                .map_or(0, |(_, l)| *l);
            if lent == 0 {
                ' '
            } else {
                BARS[((lent * 7).div_ceil(peak)).min(7) as usize]
            }
        })
        .collect()
}

/// The readable report.
pub fn text(report: &Report, about: &str) -> String {
    let mut out = String::new();
    let s = &report.summary;
    out.push_str(&format!(
        "tagloan run: scenario {} ({about}), seed {}\n\n",
        report.scenario, report.seed
    ));
    out.push_str(&format!(
        "{} kernel steps: {} IPCs, {} notifications, {} client memory accesses\n\n",
        s.steps, report.ipcs, s.notifications, s.accesses
    ));
    out.push_str("client               allocs     ok   frees  frames held  state     notes\n");
    for c in &report.clients {
        let notes: Vec<String> = c
            .counters
            .iter()
            .filter(|(n, v)| {
                *v > 0
                    && [
                        "mallocs",
                        "pages_verified",
                        "pages_tagged_lazily",
                        "allocated_in_tag_storage",
                        "cases_run",
                        "unexpected",
                        "no_memory",
                        "corrupted_bytes",
                        "operations",
                    ]
                    .contains(&n.as_str())
            })
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        out.push_str(&format!(
            "{:<20} {:>6} {:>6} {:>7} {:>12}  {:<8}  {}\n",
            c.name,
            c.allocs,
            c.allocs_ok,
            c.frees,
            c.frames_held,
            if c.running { "running" } else { "STOPPED" },
            notes.join(", ")
        ));
    }
    out.push_str(&format!(
        "\ntag storage lent as data: peak {} frames, final {} (of {})\n  over time |{}|\n",
        report.lent_peak,
        report.lent_final,
        report.server_counter("tag_frames_total"),
        sparkline(report, 60)
    ));
    out.push_str(&format!(
        "recalls {}, migrations {}, bytes copied {}\n",
        report.recalls, report.migrations, report.bytes_copied
    ));
    out.push_str(&format!(
        "faults: {} lazy tag enable (resolved), {} MTE tag-check, {} out of memory, {} other\n",
        report.faults_resolved,
        report.faults_tag_check,
        report.faults_out_of_memory,
        report.faults_other
    ));
    out.push_str(&format!(
        "invariant checks {}, violations {}, corrupted bytes {}\n",
        report.invariant_checks, report.violations, report.corrupted_bytes
    ));
    for v in &report.first_violations {
        out.push_str(&format!("  VIOLATION: {v}\n"));
    }
    out
}

/// The report as JSON: the same facts as [`text`].
pub fn to_json(report: &Report) -> serde_json::Value {
    let s = &report.summary;
    json!({
        "scenario": report.scenario,
        "seed": report.seed,
        "steps": s.steps,
        "ipcs": report.ipcs,
        "notifications": s.notifications,
        "accesses": s.accesses,
        "clients": report.clients.iter().map(|c| json!({
            "name": c.name,
            "calls": c.calls,
            "allocs": c.allocs,
            "allocs_ok": c.allocs_ok,
            "frees": c.frees,
            "frames_held": c.frames_held,
            "running": c.running,
            "counters": c.counters.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })).collect::<Vec<_>>(),
        "lent": {
            "peak": report.lent_peak,
            "final": report.lent_final,
            "timeline": report.lent_timeline,
        },
        "recalls": report.recalls,
        "migrations": report.migrations,
        "bytes_copied": report.bytes_copied,
        "faults": {
            "resolved": report.faults_resolved,
            "tag_check": report.faults_tag_check,
            "out_of_memory": report.faults_out_of_memory,
            "other": report.faults_other,
        },
        "invariant_checks": report.invariant_checks,
        "violations": report.violations,
        "first_violations": report.first_violations,
        "corrupted_bytes": report.corrupted_bytes,
        "trace_hash": format!("{:#018x}", report.trace_hash),
    })
}

/// Runs `tagloan run`.
pub fn run(args: &RunArgs) -> Result<ExitCode, String> {
    let (scenario, options) = prepare(args)?;
    let mut run = Run::start(scenario.name(), scenario.plans(options.seed), &options)
        .map_err(|e| e.to_string())?;
    drive(&mut run, &options, |_| {});
    let report = run.finish();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&report)).expect("JSON of plain values")
        );
    } else {
        print!("{}", text(&report, scenario.about()));
    }
    Ok(if report.violations == 0 && report.corrupted_bytes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
