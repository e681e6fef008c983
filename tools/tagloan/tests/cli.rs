//! The `tagloan` command, run as a user runs it, from the repo root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tagloan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagloan"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn check_accepts_the_repo_system_and_prints_the_layout() {
    let o = tagloan(&["check", "system.xml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("valid system: 7 protection domains, 16 channels, 5 clients"),
        "{out}"
    );
    // What the seL4 server provisions (the boot test checks the image
    // makes the same).
    assert!(
        out.contains("on seL4: 33792 frame capabilities in a 65536-slot frame CNode (2097152 bytes) and 114 translation tables (466944 bytes): 2564096 bytes of kernel objects"),
        "{out}"
    );
    assert!(
        out.contains(
            "33792 frames (32768 data, 1024 tag storage = 3.03 % of memory), 1024 tag blocks"
        ),
        "{out}"
    );
    assert!(
        out.contains("8 bytes per frame in the frame table"),
        "{out}"
    );
    let o = tagloan(&["check", "--platform", "platforms/fvp-rfc.dts"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1047552 frames"), "{}", stdout(&o));
}

#[test]
fn check_rejects_every_broken_platform_with_its_rule() {
    let mut count = 0;
    for entry in std::fs::read_dir(root().join("platforms/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let relative = format!(
            "platforms/invalid/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let o = tagloan(&["check", "--platform", &relative]);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{relative} accepted: {}",
            stdout(&o)
        );
        // Located (file, node) and explained (the rule, then the fix).
        assert!(
            err.starts_with(&format!("tagloan: {relative}: metadata@")),
            "{err}"
        );
        assert!(err.contains("(values 0x"), "{err}");
        assert!(err.contains("; "), "{err}");
        count += 1;
    }
    assert_eq!(count, 15);
    report(&format!(
        "tagloan check: {count} broken platforms rejected, each with its node and rule"
    ));
}

#[test]
fn check_rejects_every_broken_system_with_a_located_message() {
    let cases = [
        ("overlapping-windows", ":22:5: <memory_region name=\"client_table\">: overlapping-windows.txt: client table line 16: the window overlaps the one on line 14"),
        ("missing-channel-end", ":91:5: <channel>: a channel has exactly two <end> elements; this one has 1"),
        ("ppc-upward", ":63:5: <channel>: `fault_handler` (priority 200) may call `memory_server` (priority 90): a PPC must go to a strictly higher priority"),
        ("quotas-above-pool", "the quotas sum to 34660 frames, more than the pool's 33792; lower them"),
        ("window-over-mapping", ":53:13: <map>: the mapping at 0x2001000 overlaps `client_rogue`'s heap window"),
        ("tag-storage-elsewhere", "but no memory_region has phys_addr=\"0x88000000\""),
        ("client-not-a-child", "a client must be a child of `fault_handler` with id=\"4\""),
        ("bookkeeping-too-small", "0x40000 bytes, but the pool tables need 0x7c1c8; raise size"),
        ("bookkeeping-read-only", "<protection_domain name=\"memory_server\">: must map `server_bookkeeping` read-write: its tables live there"),
        ("server-without-dtb", "<protection_domain name=\"memory_server\">: must map `dtb` readable: it reads it at init"),
        ("client-without-done-channel", "<protection_domain name=\"client_rogue\">: needs a done channel to `fault_handler`: id=\"2\" at the client, id=\"36\" (32 + its child id) at the fault handler"),
        ("cspace-slot-64", ":43:13: <cap_vspace>: slot 64 is outside 1 to 63: the root CNode has 64 slots and slot 0 holds the PD's own CNode"),
        ("server-objects-in-pool", ":25:5: <memory_region name=\"server_objects\">: the server's kernel objects overlap the platform's data region at 0x80000000; move them out of the pool"),
        ("server-objects-too-small", ":25:5: <memory_region name=\"server_objects\">: 0x200000 bytes, but on seL4 the server's kernel objects need 0x272000; raise size"),
        ("server-cspace-out-of-order", ":32:5: <protection_domain name=\"memory_server\">: on seL4 the server finds `client_bulk`'s VSpace at <cap_vspace slot=\"3\">, which is `client_lazy`'s; slot 1 is its own, then one per client in the client table's order"),
        ("server-cspace-last-slot", ":50:13: <cap_tcb>: slot 63 is where the seL4 server keeps its frame CNode (its root CNode's last slot); use another slot"),
        ("channel-id-62", ":102:9: <end>: channel id 62 is above 61: Microkit has 62 channel ids per PD, 0 to 61"),
        ("child-id-too-large", ":22:5: <memory_region name=\"client_table\">: child-id-too-large.txt: client table line 16: child ids are 1 to 29: the fault handler hears a client's `done` on channel 32 + its child id"),
    ];
    for (name, message) in cases {
        let file = format!("tests/sdf/invalid/{name}.xml");
        let o = tagloan(&["check", &file]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file} accepted");
        assert!(err.starts_with(&format!("tagloan: {file}:")), "{err}");
        assert!(
            err.contains(message),
            "{file}: want `{message}`, got `{err}`"
        );
    }
    report(&format!(
        "tagloan check: {} broken systems rejected, each located and explained",
        cases.len()
    ));
}

#[test]
fn run_with_no_arguments_lends_and_recalls_with_no_violation() {
    let o = tagloan(&["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let number = |label: &str| -> u64 {
        let at = out
            .find(label)
            .unwrap_or_else(|| panic!("`{label}` missing in:\n{out}"))
            + label.len();
        out[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(number("lent as data: peak") > 0);
    assert!(number("\nrecalls") > 0);
    assert!(number(", migrations") > 0);
    assert_eq!(number("violations"), 0);
    assert_eq!(number("corrupted bytes"), 0);
}

#[test]
fn run_random_json_is_deterministic_per_seed_and_sound_for_every_seed() {
    let run = |seed: &str| {
        let o = tagloan(&[
            "run",
            "--scenario",
            "random",
            "--seed",
            seed,
            "--steps",
            "100000",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let value: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
        assert_eq!(value["violations"], 0, "seed {seed}");
        assert_eq!(value["corrupted_bytes"], 0, "seed {seed}");
        assert!(value["steps"].as_u64().unwrap() >= 100_000);
        (stdout(&o), value)
    };
    let (a, value) = run("42");
    let (b, _) = run("42");
    assert_eq!(a, b, "one seed, one report");
    let (c, other) = run("43");
    assert_ne!(value["trace_hash"], other["trace_hash"]);
    assert_ne!(a, c);
    report(&format!(
        "tagloan run --scenario random --steps 100000 --json: seed 42 twice identical ({} IPCs, {} recalls, {} invariant checks, 0 violations); seed 43 differs",
        value["ipcs"], value["recalls"], value["invariant_checks"]
    ));
}

#[test]
fn a_platform_bigger_than_its_region_is_refused_not_truncated() {
    // A valid device tree, padded past the 4 KiB `dtb` region.
    let big = std::env::temp_dir().join(format!("tagloan-big-{}.dtb", std::process::id()));
    let dtc = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-p", "8192", "-o"])
        .arg(&big)
        .arg(root().join("platforms/qemu-virt-mte.dts"))
        .status()
        .expect("dtc runs (make deps installs it)");
    assert!(dtc.success());
    for args in [
        vec!["run", "--platform", big.to_str().unwrap()],
        vec!["check", "system.xml", "--platform", big.to_str().unwrap()],
    ] {
        let o = tagloan(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("more than the region's 4096; raise its size"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_file(big);
}

#[test]
fn run_refuses_an_unknown_scenario_with_the_list() {
    let o = tagloan(&["run", "--scenario", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown scenario `nope`; choose one of: basic, lending"),
        "{}",
        stderr(&o)
    );
}

/// The carve-out QEMU's property comes from the platform's device tree:
/// the numbers are never typed twice.
#[test]
fn qemu_tag_storage_reads_the_carve_out_from_the_device_tree() {
    let o = tagloan(&["qemu-tag-storage", "platforms/qemu-virt-mte.dts"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0x80000000:0x8000000:0x88000000\n");
    // Two tagged regions: the property takes one.
    let o = tagloan(&["qemu-tag-storage", "platforms/fvp-rfc.dts"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "2 memory regions have tag storage, and the carve-out QEMU's mte-tag-storage takes one"
        ),
        "{}",
        stderr(&o)
    );
    // A broken tag storage node: refused with its rule.
    let o = tagloan(&["qemu-tag-storage", "platforms/invalid/size-ratio.dts"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("tag storage reuse is disabled"),
        "{}",
        stderr(&o)
    );
    let o = tagloan(&["qemu-tag-storage", "platforms/no-such.dtb"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("platforms/no-such.dtb: cannot read it"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn map_writes_a_png_a_person_can_read() {
    let out = std::env::temp_dir().join(format!("tagloan-map-test-{}.png", std::process::id()));
    let o = tagloan(&[
        "map",
        "--scenario",
        "lending",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let mut reader = decoder.read_info().expect("the file is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).expect("it decodes");
    // 256 cells of 3 px per row with 8 px margins; the QEMU platform's
    // 32768 data frames make 128 rows, its 1024 tag frames 4 rows, and the
    // legend has 9 lines.
    assert_eq!((info.width, info.height), (784, 596));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let legend: [[u8; 3]; 9] = [
        [0xd9, 0xd9, 0xd9],
        [0x3b, 0x7d, 0xd8],
        [0x2c, 0xa0, 0x2c],
        [0xf2, 0xc1, 0x4e],
        [0x8e, 0x44, 0xad],
        [0xf5, 0xe6, 0xc8],
        [0xff, 0x7f, 0x0e],
        [0xb0, 0x3a, 0x2e],
        [0x22, 0x22, 0x22],
    ];
    // The legend is the last 9 lines of 14 px, above an 8 px margin; the
    // cells are above it.
    let legend_top = (info.height - 9 * 14 - 8) as usize;
    let row_bytes = info.width as usize * 3;
    let colours_in = |rows: std::ops::Range<usize>| -> std::collections::HashSet<[u8; 3]> {
        pixels[rows.start * row_bytes..rows.end * row_bytes]
            .chunks(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect()
    };
    let cells = colours_in(0..legend_top);
    let swatches = colours_in(legend_top..info.height as usize);
    // The command prints the legend's counts, in legend order.
    let out_text = stdout(&o);
    let counts: Vec<u64> = out_text
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.rsplit_once(": "))
        .map(|(_, n)| n.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 9, "{out_text}");
    assert_eq!(
        counts.iter().sum::<u64>(),
        33792,
        "every frame is counted once"
    );
    for (rgb, count) in legend.iter().zip(&counts) {
        assert!(swatches.contains(rgb), "legend swatch {rgb:02x?} missing");
        // A state's colour is drawn in the cells exactly when frames are in it.
        assert_eq!(
            cells.contains(rgb),
            *count > 0,
            "colour {rgb:02x?} with {count} frames"
        );
    }
    // Lending is on the picture, lent tag frames at 9 pixels each.
    let lent = pixels[..legend_top * row_bytes]
        .chunks(3)
        .filter(|p| p == &[0xff, 0x7f, 0x0e])
        .count() as u64;
    assert!(counts[6] > 0);
    assert_eq!(lent, counts[6] * 9, "one 3x3 cell per lent frame");
    let _ = std::fs::remove_file(out);
}

#[test]
fn bench_prints_the_readme_table_in_markdown() {
    let o = tagloan(&["bench", "--markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("logical CPUs"), "{text}");
    assert_eq!(lines[2], "| row | figure | baseline | ratio | bar |");
    let rows = lines.iter().filter(|l| l.starts_with("| ")).count() - 1;
    assert!(rows >= 30, "{rows} rows: {text}");
    assert!(
        text.contains("| tag storage lent after 200,000 churn rounds, 10 % tagged, affinity | ")
    );
    let o = tagloan(&["bench", "--json", "--markdown"]);
    assert!(
        !o.status.success(),
        "--json and --markdown together are refused"
    );
}

#[test]
fn bench_prints_every_row_with_its_baseline_and_holds_the_counted_bars() {
    let o = tagloan(&["bench", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let value: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert!(value["machine"]["logical_cpus"].as_u64().unwrap() > 0);
    assert!(!value["machine"]["cpu"].as_str().unwrap().is_empty());
    assert_eq!(value["errors"].as_array().unwrap().len(), 0);
    let rows = value["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"].as_str().unwrap() == name)
            .unwrap_or_else(|| panic!("no row `{name}`"))
    };
    // Every timed row has a positive figure and, beside it, a baseline of
    // the same run and the ratio to it.
    for r in rows.iter().filter(|r| r["unit"] == "ns") {
        assert!(r["value"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["baseline"]["value"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    for fill in [
        "empty",
        "warm (one other page held)",
        "half full, fragmented (every other frame held)",
        "full (all data frames but one held)",
    ] {
        let r = row(&format!("order-0 untagged alloc+free, {fill}"));
        assert!(r["baseline"]["name"]
            .as_str()
            .unwrap()
            .contains("buddy_system_allocator"));
    }
    for scale in ["128 MiB", "2 GiB", "16 GiB"] {
        for op in [
            "order-0 tagged alloc+free, block reserved",
            "tagged alloc reserving a free block",
            "tagged alloc recalling a 1-page block, 1 borrower",
            "enable_tagging + resolve_fault, one page",
            "reclaim of a client holding 10,000 frames",
            "tagged alloc reserving a free block + the free releasing it, warm pairs",
            "enable_tagging + resolve_fault + disable_tagging, warm triples",
            "tagged alloc recalling a 8-page block, 8 borrowers",
            "tagged alloc recalling a 32-page block, 32 borrowers",
        ] {
            row(&format!("{op} ({scale})"));
        }
    }
    // The fast path's fills at the larger sizes, against the same at 128 MiB.
    for scale in ["2 GiB", "16 GiB"] {
        for fill in [
            "empty",
            "warm (one other page held)",
            "half full, fragmented (every other frame held)",
            "full (all data frames but one held)",
        ] {
            let r = row(&format!("order-0 untagged alloc+free, {fill} ({scale})"));
            assert_eq!(r["baseline"]["name"], "the same at 128 MiB", "{r}");
        }
    }
    for block in [8, 32] {
        let r = row(&format!(
            "tagged alloc recalling a {block}-page block, {block} borrowers (128 MiB)"
        ));
        assert!(r["baseline"]["name"]
            .as_str()
            .unwrap()
            .starts_with("memcpy 4 KiB"));
    }
    // Beside the reclaim that follows what a client holds, the walk of the
    // whole window it replaced (tests/bounds.rs counts the difference; a
    // time is not asserted on a shared machine).
    let sparse = row("reclaim of a client holding 10 frames in a 4,194,304-page window (128 MiB)");
    assert!(sparse["baseline"]["name"]
        .as_str()
        .unwrap()
        .contains("page map"));
    row("lend+return of one tag frame, 1,024-frame block, another frame lent");
    // Counted: the first lend of a large block refiles its group, once.
    let first =
        row("first lend of a 1,024-frame block (class changes: its 32,768-frame group is refiled)");
    let scanned: u64 = first["detail"]
        .as_str()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (32_768..32_768 + 64).contains(&scanned),
        "the group and a bounded few more: {first}"
    );
    // Lending is counted, not timed, so it is deterministic and its bar is
    // asserted: with tag-block affinity at least 90 % of the tag storage
    // that tags do not need is lent once memory is full, right after the
    // fill and after 200,000 rounds of churn; the RFC's any-page placement
    // reserves a block almost everywhere and lends little.
    for when in ["after a fill", "after 200,000 churn rounds"] {
        let affinity = row(&format!("tag storage lent {when}, 10 % tagged, affinity"));
        let any_page = row(&format!(
            "tag storage lent {when}, 10 % tagged, any page (RFC)"
        ));
        let (a, p) = (
            affinity["value"].as_f64().unwrap(),
            any_page["value"].as_f64().unwrap(),
        );
        assert!(a >= 90.0, "{when}: affinity lends {a:.1} %");
        assert_eq!(affinity["met"], true);
        assert!(p < a / 2.0, "{when}: any page lends {p:.1} %");
    }
    // The bar holds at every block size (review defect 1: with blocks of 4
    // and 8 frames the swap search stuck on one group and lent 83 to 85 %).
    for block in [2, 4, 8, 32] {
        let churned = row(&format!(
            "tag storage lent after 200,000 churn rounds, 10 % tagged, affinity, blocks of {block} frames"
        ));
        let lent = churned["value"].as_f64().unwrap();
        assert!(
            lent >= 90.0,
            "blocks of {block} frames: affinity lends {lent:.1} %"
        );
    }
    // Bookkeeping is a count too: the figure is what the sizing function says.
    let bare = row("bookkeeping per managed frame, no clients")["value"]
        .as_f64()
        .unwrap();
    assert!((8.0..9.0).contains(&bare), "{bare}");
    // A rate, not a time: no assertion on its size (the machine is shared).
    assert!(
        row("simulator: client PPCs per second (stats, audit off)")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
