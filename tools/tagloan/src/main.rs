//! `tagloan`: check a system, run it in the simulator, draw its memory,
//! measure the pool, write the C header, and give the carve-out QEMU its
//! property.
//!
//! ```text
//! tagloan check [system.xml] [--platform FILE.dts|.dtb]
//! tagloan run   [--scenario NAME] [--seed N] [--steps N] [--platform FILE] [--json]
//! tagloan map   [--scenario NAME] [--at STEP] --out FILE.png|FILE.svg
//! tagloan bench [--json | --markdown]
//! tagloan header [--out include/tagloan.h]
//! tagloan qemu-tag-storage PLATFORM.dts|.dtb
//! ```

mod bench;
mod check;
mod map;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tagloan",
    version,
    about = "tagloan: an MTE tag storage lending memory server for seL4 Microkit"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a system (SDF, client table, device tree) or a platform alone,
    /// and print the memory layout.
    Check {
        /// The system description; default: none with --platform, else system.xml.
        sdf: Option<PathBuf>,
        /// A platform device tree (.dts, compiled with dtc, or .dtb).
        #[arg(long)]
        platform: Option<PathBuf>,
        /// Where prefill files are looked for (after the SDF's directory).
        #[arg(long = "search-path", default_value = "target/platforms")]
        search_path: Vec<PathBuf>,
    },
    /// Run the system in the deterministic simulator and report.
    Run(RunArgs),
    /// Draw physical memory, one cell per frame (or per block), by state.
    Map {
        #[command(flatten)]
        run: RunArgs,
        /// Draw at this kernel step; default: where tag storage lending peaked.
        #[arg(long)]
        at: Option<u64>,
        /// Output file, .png or .svg.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the client API in C (include/tagloan.h), generated from the
    /// protocol table.
    Header {
        /// Output file; default: standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the carve-out QEMU's `mte-tag-storage` value for a platform
    /// (DATA_BASE:DATA_SIZE:TAG_BASE), read from its device tree, so the
    /// numbers are never typed twice (tools/sel4/qemu, make qemu-mte).
    QemuTagStorage {
        /// The platform device tree (.dts or .dtb) the image carries.
        platform: PathBuf,
    },
    /// Measure the pool's fast path.
    Bench {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "markdown")]
        json: bool,
        /// Print a Markdown table (the README's performance section).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// basic, lending, lazy, use-after-free, rogue, exhaustion, random
    #[arg(long, default_value = "lending")]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kernel steps at most (wakeups, PPCs, faults, memory accesses).
    #[arg(long, default_value_t = 20_000_000)]
    steps: u64,
    /// A platform device tree (.dts or .dtb) instead of the SDF's.
    #[arg(long)]
    platform: Option<PathBuf>,
    /// The system description.
    #[arg(long, default_value = "system.xml")]
    sdf: PathBuf,
    /// Where prefill files are looked for (after the SDF's directory).
    #[arg(long = "search-path", default_value = "target/platforms")]
    search_path: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A platform file as DTB bytes: a .dtb is read, a .dts compiled with dtc.
pub fn platform_blob(path: &Path) -> Result<Vec<u8>, String> {
    if path.extension().is_some_and(|e| e == "dts") {
        let output = std::process::Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb"])
            .arg(path)
            .output()
            .map_err(|e| format!("{}: cannot run dtc to compile it ({e}); install device-tree-compiler (make deps) or pass a .dtb", path.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{}: dtc refused it: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    } else {
        std::fs::read(path).map_err(|e| format!("{}: cannot read it: {e}", path.display()))
    }
}

/// A platform file as a path to a DTB: a .dts is compiled into target/.
pub fn platform_dtb_path(path: &Path) -> Result<PathBuf, String> {
    if path.extension().is_some_and(|e| e == "dts") {
        let blob = platform_blob(path)?;
        let out = std::env::temp_dir().join(format!(
            "tagloan-{}-{}.dtb",
            std::process::id(),
            path.file_stem()
                .map_or("platform".into(), |s| s.to_string_lossy())
        ));
        std::fs::write(&out, blob).map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(out)
    } else {
        Ok(path.to_path_buf())
    }
}

/// `tagloan header`: the protocol table as a C header.
fn header(out: Option<PathBuf>) -> Result<ExitCode, String> {
    let mut text = String::new();
    tagloan_proto::write_c_header(&mut text).map_err(|e| e.to_string())?;
    match out {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `tagloan qemu-tag-storage`: the carve-out QEMU's property value for the
/// one data region of `path` that has tag storage.
fn qemu_tag_storage(path: &Path) -> Result<ExitCode, String> {
    let blob = platform_blob(path)?;
    println!("{}", qemu_tag_storage_value(path, &blob)?);
    Ok(ExitCode::SUCCESS)
}

/// DATA_BASE:DATA_SIZE:TAG_BASE of the platform's tag storage, or why the
/// carve-out QEMU cannot take it.
pub fn qemu_tag_storage_value(path: &Path, blob: &[u8]) -> Result<String, String> {
    let platform = tagloan_platform::parse(blob, true)
        .map_err(|e| format!("{}: device tree refused: {e}", path.display()))?;
    if let tagloan_platform::TagStorage::Disabled(reason) = &platform.tag_storage {
        return Err(format!(
            "{}: tag storage reuse is disabled ({reason}); fix the node before giving it to QEMU",
            path.display()
        ));
    }
    let tagged: Vec<_> = platform
        .regions
        .iter()
        .filter_map(|r| r.tags.map(|t| (r, t)))
        .collect();
    match tagged.as_slice() {
        [] => Err(format!(
            "{}: no memory region has tag storage (no `arm,mte-tag-storage` node): nothing for the carve-out QEMU to place",
            path.display()
        )),
        [(region, tags)] => {
            let frame = tagloan_mte::FRAME_BYTES as u64;
            Ok(format!(
                "{:#x}:{:#x}:{:#x}",
                region.data_base * frame,
                region.data_frames * frame,
                tags.base * frame
            ))
        }
        more => Err(format!(
            "{}: {} memory regions have tag storage, and the carve-out QEMU's mte-tag-storage takes one; give it a platform with one",
            path.display(),
            more.len()
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check {
            sdf,
            platform,
            search_path,
        }) => check::check(sdf, platform, &search_path),
        Some(Command::Run(args)) => run::run(&args),
        None => run::run(&RunArgs {
            scenario: "lending".into(),
            seed: 1,
            steps: 20_000_000,
            platform: None,
            sdf: "system.xml".into(),
            search_path: vec!["target/platforms".into()],
            json: false,
        }),
        Some(Command::Map { run, at, out }) => map::map(&run, at, &out),
        Some(Command::Bench { json, markdown }) => bench::bench(match (json, markdown) {
            (true, _) => bench::Output::Json,
            (_, true) => bench::Output::Markdown,
            _ => bench::Output::Text,
        }),
        Some(Command::Header { out }) => header(out),
        Some(Command::QemuTagStorage { platform }) => qemu_tag_storage(&platform),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("tagloan: {message}");
            ExitCode::FAILURE
        }
    }
}
