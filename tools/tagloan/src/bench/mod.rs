//! `tagloan bench [--json]`: every row DESIGN §9 asks for, each beside its
//! baseline measured in the same run, with the ratio its bar is about.
//!
//! Timings are medians (of alternating batches, or of single calls each
//! started from one frozen pool state), so a noisy shared machine moves them
//! less; the lending and bookkeeping rows are counts. See `rows.rs` for what
//! each row measures and `rig.rs` for what it runs on.

mod rig;
mod rows;

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;

use rig::median;
use rows::Row;

/// A client that makes `calls` `stats` PPCs in one unit of work.
struct Caller {
    calls: u32,
}

impl tagloan_client::Worker for Caller {
    fn start(&mut self, _env: &mut dyn tagloan_client::Env) {}
    fn step(
        &mut self,
        env: &mut dyn tagloan_client::Env,
    ) -> Result<tagloan_client::Progress, tagloan_client::Stopped> {
        let server = tagloan_client::Server::for_client();
        for _ in 0..self.calls {
            if tagloan_client::Api::stats(&server, env)?.is_err() {
                return Err(tagloan_client::Stopped);
            }
        }
        Ok(tagloan_client::Progress::Done)
    }
    fn counters(&self, _report: &mut dyn FnMut(&str, u64)) {}
}

/// Client PPCs per second through the simulator: a client calls `stats` on
/// the real memory server of system.xml, the invariant audit off.
fn simulator_ppcs() -> Result<f64, String> {
    const CALLS: u32 = 200_000;
    let options = tagloan_scenarios::Options {
        sdf: "system.xml".into(),
        search_path: vec!["target/platforms".into()],
        ..tagloan_scenarios::Options::default()
    };
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut registry = tagloan_scenarios::registry(tagloan_scenarios::Plans::default());
        registry.register_handler("client_bulk", || {
            tagloan_client::Paced::new(Caller { calls: CALLS })
        });
        let config = tagloan_sim::Config {
            audit_every_call: false,
            search_path: options.search_path.clone(),
            ..tagloan_sim::Config::default()
        };
        let mut sim =
            tagloan_sim::Sim::load(&options.sdf, &registry, config).map_err(|e| e.to_string())?;
        let start = Instant::now();
        sim.run(u64::MAX);
        let elapsed = start.elapsed().as_secs_f64();
        if sim.summary().calls < u64::from(CALLS) {
            return Err(format!(
                "the simulator ran {} calls of {CALLS}",
                sim.summary().calls
            ));
        }
        samples.push(sim.summary().calls as f64 / elapsed);
    }
    Ok(median(samples))
}

/// The machine: logical CPUs and the CPU model (from /proc/cpuinfo).
fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown CPU ({})", std::env::consts::ARCH));
    (cpus, model)
}

fn json_row(row: &Row) -> serde_json::Value {
    json!({
        "name": row.name,
        "value": row.value,
        "unit": row.unit,
        "baseline": row.baseline.as_ref().map(|(name, value)| json!({"name": name, "value": value})),
        "ratio": row.ratio,
        "bar": row.bar.map(|b| b.text()),
        "met": row.met(),
        "detail": row.detail,
    })
}

/// How `tagloan bench` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    /// A Markdown table, for the README's performance section.
    Markdown,
}

/// A figure with its unit, as the tables print it.
fn figure(value: f64, unit: &str) -> String {
    match unit {
        "ns" if value >= 10_000.0 => format!("{:.0} µs", value / 1000.0),
        "ns" => format!("{value:.0} ns"),
        "%" => format!("{value:.1} %"),
        "B" => format!("{value:.2} B"),
        "PPC/s" => format!("{:.2} M PPC/s", value / 1e6),
        unit => format!("{value:.0} {unit}"),
    }
}

/// A ratio with two decimals, or three significant digits under 0.1 (a
/// figure far under its baseline would otherwise print as 0.00).
fn ratio_text(ratio: Option<f64>) -> String {
    match ratio {
        None => String::from("-"),
        Some(r) if r != 0.0 && r.abs() < 0.1 => {
            let decimals = (2.0 - r.abs().log10().floor()) as usize;
            format!("{r:.decimals$}")
        }
        Some(r) => format!("{r:.2}"),
    }
}

fn markdown_row(row: &Row) -> String {
    let baseline = row
        .baseline
        .as_ref()
        .map_or(String::from("-"), |(name, value)| {
            format!("{name}: {}", figure(*value, row.unit))
        });
    let ratio = ratio_text(row.ratio);
    let bar = match (row.bar, row.met()) {
        (Some(bar), Some(true)) => format!("{}: met", bar.text()),
        (Some(bar), _) => format!("{}: **not met**", bar.text()),
        (None, _) => String::from("-"),
    };
    format!(
        "| {} | {} | {baseline} | {ratio} | {bar} |",
        row.name,
        figure(row.value, row.unit)
    )
}

fn print_row(row: &Row) {
    let value = match row.unit {
        "ns" => format!("{:.0} ns", row.value),
        "%" => format!("{:.1} %", row.value),
        "B" => format!("{:.2} B", row.value),
        unit => format!("{:.0} {unit}", row.value),
    };
    let ratio = ratio_text(row.ratio);
    let verdict = match (row.bar, row.met()) {
        (Some(bar), Some(true)) => format!("met ({})", bar.text()),
        (Some(bar), _) => format!("NOT met ({})", bar.text()),
        (None, _) => String::new(),
    };
    println!(
        "  {:<72} {value:>12}  ratio {ratio:>7}  {verdict}",
        row.name
    );
    if let Some((name, figure)) = &row.baseline {
        let figure = match row.unit {
            "%" => format!("{figure:.1} %"),
            "B" => format!("{figure:.0} B"),
            _ => format!("{figure:.0} {}", row.unit),
        };
        println!("      baseline: {name}: {figure}");
    }
    if !row.detail.is_empty() {
        println!("      {}", row.detail);
    }
}

/// Runs `tagloan bench`.
pub fn bench(output: Output) -> Result<ExitCode, String> {
    let started = Instant::now();
    let memcpy = rows::memcpy_ns();
    let mut all = rows::fast_path_rows();
    all.extend(rows::operation_rows(memcpy));
    all.extend(rows::lending_rows());
    all.extend(rows::placement_rows());
    let bookkeeping = rows::bookkeeping_rows();
    if let Ok(rows) = &bookkeeping {
        all.extend(rows.iter().cloned());
    }
    // The simulator row needs system.xml and its DTB (make platforms);
    // without them the pool rows are still printed, and the run fails.
    let ppcs = simulator_ppcs();
    if let Ok(rate) = ppcs {
        all.push(Row {
            name: "simulator: client PPCs per second (stats, audit off)".into(),
            value: rate,
            unit: "PPC/s",
            baseline: None,
            ratio: None,
            bar: Some(rows::Bar::AtLeast(1_000_000.0)),
            detail: "median of 5 runs of 200,000 calls through system.xml".into(),
        });
    }
    let (cpus, model) = machine();
    let errors: Vec<String> = [ppcs.err(), bookkeeping.err()]
        .into_iter()
        .flatten()
        .collect();
    if output == Output::Markdown {
        println!("{cpus} logical CPUs, {model}; memcpy of 4 KiB {memcpy:.0} ns.\n");
        println!("| row | figure | baseline | ratio | bar |");
        println!("|---|---|---|---|---|");
        for row in &all {
            println!("{}", markdown_row(row));
        }
    } else if output == Output::Json {
        let value = json!({
            "machine": {"logical_cpus": cpus, "cpu": model, "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
            "memcpy_4k_ns": memcpy,
            "rows": all.iter().map(json_row).collect::<Vec<_>>(),
            "errors": errors,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain values")
        );
    } else {
        println!("tagloan bench: {cpus} logical CPUs, {model}; memcpy of 4 KiB {memcpy:.0} ns");
        for row in &all {
            print_row(row);
        }
        let met = all.iter().filter(|r| r.met() == Some(true)).count();
        let barred = all.iter().filter(|r| r.bar.is_some()).count();
        println!(
            "{met} of {barred} bars met; {} rows in {:.0} s",
            all.len(),
            started.elapsed().as_secs_f64()
        );
        for e in &errors {
            println!("FAILED: {e}");
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
