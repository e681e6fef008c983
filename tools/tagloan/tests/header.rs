//! `include/tagloan.h` is the protocol table in C: the committed file is what
//! the table gives, and a C program compiled against it prints every
//! constant, every reply layout offset and what each call function puts on
//! the wire, which must equal the Rust values. A tampered header must fail
//! that comparison.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tagloan_proto::{CallerKind, Op};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generated() -> String {
    let mut text = String::new();
    tagloan_proto::write_c_header(&mut text).unwrap();
    text
}

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the Rust side says: every constant, then each client call's label
/// and register count as `CALL_<OP> label count`.
fn rust_values() -> BTreeMap<String, u64> {
    let mut values = BTreeMap::new();
    tagloan_proto::for_each_constant(&mut |name, value| {
        values.insert(name.to_string(), value);
    });
    for op in client_ops() {
        values.insert(format!("CALL_{}_LABEL", op.name()), *op as u64);
        values.insert(
            format!("CALL_{}_COUNT", op.name()),
            op.request_words() as u64,
        );
    }
    values
}

fn client_ops() -> impl Iterator<Item = &'static Op> {
    Op::ALL
        .iter()
        .filter(|op| op.caller() == CallerKind::Client)
}

/// A stand-in for libmicrokit's `microkit.h`: the types and the functions
/// the header calls, recording the last call instead of making it.
const FAKE_MICROKIT: &str = r#"
#pragma once
#include <stdint.h>
typedef uint64_t seL4_Word;
typedef uint8_t seL4_Uint8;
typedef uint16_t seL4_Uint16;
typedef unsigned int microkit_channel;
typedef struct { seL4_Word label; seL4_Word count; } microkit_msginfo;
static seL4_Word fake_mrs[120];
static microkit_msginfo fake_last;
static inline microkit_msginfo microkit_msginfo_new(seL4_Word label, seL4_Uint16 count) {
    microkit_msginfo m = { label, count }; return m;
}
static inline seL4_Word microkit_msginfo_get_label(microkit_msginfo m) { return m.label; }
static inline seL4_Word microkit_msginfo_get_count(microkit_msginfo m) { return m.count; }
static inline void microkit_mr_set(seL4_Uint8 mr, seL4_Word value) { fake_mrs[mr] = value; }
static inline seL4_Word microkit_mr_get(seL4_Uint8 mr) { return fake_mrs[mr]; }
static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo m) {
    (void)ch; fake_last = m; return microkit_msginfo_new(1, 2);
}
"#;

/// A C program printing `NAME value` for every constant, layout offset and
/// call the Rust side lists.
fn c_program() -> String {
    let mut c = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"tagloan.h\"\n#define SHOW(name) printf(\"%s %llu\\n\", #name, (unsigned long long)(name))\nint main(void) {\n",
    );
    tagloan_proto::for_each_constant(&mut |name, _| {
        let name = name.to_string();
        // Offsets are measured on the struct, not read from the #define.
        if let Some(rest) = name.strip_suffix("_OFFSET") {
            let op = client_ops()
                .find(|op| {
                    rest.starts_with(&format!("TAGLOAN_{}_REPLY_", op.name().to_uppercase()))
                })
                .expect("an offset names a client operation");
            let word =
                rest[format!("TAGLOAN_{}_REPLY_", op.name().to_uppercase()).len()..].to_lowercase();
            c.push_str(&format!(
                "    printf(\"{name} %zu\\n\", offsetof(tagloan_{}_reply, {word}));\n",
                op.name()
            ));
        } else {
            c.push_str(&format!("    SHOW({name});\n"));
        }
    });
    for op in client_ops() {
        let args = op.request_layout()[1..]
            .iter()
            .map(|_| "0".to_string())
            .chain((!op.reply_layout().is_empty()).then(|| "NULL".to_string()))
            .collect::<Vec<_>>();
        c.push_str(&format!(
            "    tagloan_{}(0{});\n    printf(\"CALL_{}_LABEL %llu\\nCALL_{}_COUNT %llu\\n\", (unsigned long long)fake_last.label, (unsigned long long)fake_last.count);\n",
            op.name(),
            args.iter().map(|a| format!(", {a}")).collect::<String>(),
            op.name(),
            op.name()
        ));
    }
    c.push_str("    return 0;\n}\n");
    c
}

/// Compiles the C program against `header` and returns what it printed.
fn c_values(header: &str, dir: &Path) -> Result<BTreeMap<String, u64>, String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("microkit.h"), FAKE_MICROKIT).unwrap();
    std::fs::write(dir.join("tagloan.h"), header).unwrap();
    std::fs::write(dir.join("values.c"), c_program()).unwrap();
    let binary = dir.join("values");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-Wno-unused-function", "-I"])
        .arg(dir)
        .arg(dir.join("values.c"))
        .arg("-o")
        .arg(&binary)
        .output()
        .map_err(|e| format!("{cc} does not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the C program does not compile: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let run = Command::new(&binary).output().unwrap();
    Ok(String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// The names whose values differ, or that one side lacks.
fn mismatches(rust: &BTreeMap<String, u64>, c: &BTreeMap<String, u64>) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = rust.keys().chain(c.keys()).collect();
    names
        .into_iter()
        .filter(|name| rust.get(*name) != c.get(*name))
        .map(|name| format!("{name}: Rust {:?}, C {:?}", rust.get(name), c.get(name)))
        .collect()
}

#[test]
fn the_committed_header_is_what_the_protocol_table_gives() {
    let committed = std::fs::read_to_string(root().join("include/tagloan.h"))
        .expect("include/tagloan.h exists");
    assert!(
        committed == generated(),
        "include/tagloan.h differs from the protocol table: run `cargo run -p tagloan -- header --out include/tagloan.h`"
    );
}

#[test]
fn the_c_header_agrees_with_the_rust_values_constant_by_constant() {
    let dir = std::env::temp_dir().join(format!("tagloan-header-{}", std::process::id()));
    let rust = rust_values();
    let c = c_values(&generated(), &dir).unwrap();
    let wrong = mismatches(&rust, &c);
    assert!(wrong.is_empty(), "{wrong:#?}");
    report(&format!(
        "c header: {} constants, offsets and calls compared between C and Rust, all equal",
        rust.len()
    ));
}

#[test]
fn the_comparison_fails_when_one_side_changes() {
    let dir = std::env::temp_dir().join(format!("tagloan-header-bad-{}", std::process::id()));
    let rust = rust_values();
    // One constant changed on the C side.
    let tampered = generated().replace(
        "#define TAGLOAN_OP_FREE 0x2ull",
        "#define TAGLOAN_OP_FREE 0x3ull",
    );
    assert_ne!(tampered, generated());
    let c = c_values(&tampered, &dir).unwrap();
    let wrong = mismatches(&rust, &c);
    assert!(
        wrong.iter().any(|w| w.starts_with("TAGLOAN_OP_FREE:")),
        "{wrong:?}"
    );
    // The call function uses the label, so its call goes wrong too.
    assert!(
        wrong.iter().any(|w| w.starts_with("CALL_free_LABEL:")),
        "{wrong:?}"
    );
    // And a value changed on the Rust side.
    let mut changed = rust.clone();
    *changed.get_mut("TAGLOAN_STATUS_BUSY").unwrap() += 1;
    let good = c_values(&generated(), &dir).unwrap();
    let wrong = mismatches(&changed, &good);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
}
