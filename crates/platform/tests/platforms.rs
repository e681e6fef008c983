//! Every platform file in `platforms/`, valid and invalid, compiled with dtc
//! and parsed; and a fuzz-style run over random and mutated blobs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tagloan_platform::{parse, PlatformError, Rule, TagStorage};

fn platforms_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../platforms")
}

/// Compiles a .dts with dtc (installed by `make deps`).
fn compile(path: &Path) -> Vec<u8> {
    let output = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o", "-"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("dtc not found ({e}); run `make deps` to install device-tree-compiler")
        });
    assert!(
        output.status.success(),
        "dtc failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn fvp_rfc_parses_to_two_regions_of_507904_data_and_15872_tag_frames() {
    let platform = parse(&compile(&platforms_dir().join("fvp-rfc.dts")), true).unwrap();
    assert_eq!(platform.tag_storage, TagStorage::Enabled);
    assert_eq!(platform.regions.len(), 2);
    for (region, (data, tags)) in platform
        .regions
        .iter()
        .zip([(0x80000, 0xfc000), (0x880000, 0x8fc000)])
    {
        assert_eq!(region.data_base, data);
        assert_eq!(region.data_frames, 507_904);
        let t = region.tags.unwrap();
        assert_eq!((t.base, t.frames, t.block_frames), (tags, 15_872, 1));
    }
    assert_eq!(platform.layout.blocks_total(), 2 * 15_872);
}

#[test]
fn qemu_virt_parses_to_128_mib_of_data_and_4_mib_of_tags() {
    let platform = parse(&compile(&platforms_dir().join("qemu-virt-mte.dts")), true).unwrap();
    assert_eq!(platform.tag_storage, TagStorage::Enabled);
    assert_eq!(platform.layout.data_frames_total(), 32_768);
    assert_eq!(platform.layout.tag_frames_total(), 1_024);
    assert_eq!(platform.layout.tag_location(0x80001), Some((0x88000, 128)));
}

#[test]
fn with_mte_off_tag_storage_becomes_ordinary_memory() {
    let platform = parse(&compile(&platforms_dir().join("fvp-rfc.dts")), false).unwrap();
    assert_eq!(platform.tag_storage, TagStorage::MteOff);
    assert_eq!(platform.regions.len(), 4);
    assert!(platform.regions.iter().all(|r| r.tags.is_none()));
    assert_eq!(platform.layout.data_frames_total(), 2 * (507_904 + 15_872));
    assert_eq!(platform.layout.tag_frames_total(), 0);
}

fn expected_rule(file: &str) -> Rule {
    match file {
        "missing-reg" => Rule::MissingReg,
        "reg-two-tuples" => Rule::RegNotOneTuple,
        "zero-size" => Rule::ZeroSize,
        "sub-page-reg" => Rule::NotPageAligned,
        "not-pageblock-aligned" => Rule::NotPageblockAligned,
        "missing-memory-phandle" => Rule::MissingMemoryPhandle,
        "memory-node-not-found" => Rule::MemoryNodeNotFound,
        "size-ratio" => Rule::SizeRatio,
        "missing-block-size" | "zero-block-size" => Rule::BlockSize,
        "not-block-multiple" => Rule::NotBlockMultiple,
        "tag-regions-overlap" => Rule::TagRegionsOverlap,
        "tag-overlaps-memory" => Rule::TagOverlapsMemory,
        "two-tag-nodes-one-memory" => Rule::TwoTagNodesForOneMemory,
        "too-many-regions" => Rule::TooManyRegions,
        other => panic!("platforms/invalid/{other}.dts has no expected rule in this test; add one"),
    }
}

#[test]
fn every_invalid_platform_turns_reuse_off_naming_its_node_and_rule() {
    let mut files: Vec<_> = std::fs::read_dir(platforms_dir().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dts"))
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    for path in &files {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let platform = parse(&compile(path), true).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let TagStorage::Disabled(error) = &platform.tag_storage else {
            panic!(
                "{stem}: expected reuse to be disabled, got {:?}",
                platform.tag_storage
            );
        };
        assert_eq!(error.rule, expected_rule(stem), "{stem}: {error}");
        assert!(
            error.node.starts_with("metadata@"),
            "{stem}: names the node: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(error.rule.message()) && message.contains("disabled"),
            "{message}"
        );
        // The server still runs: every memory node is served, without tag storage.
        assert_eq!(
            platform.layout.tag_frames_total(),
            0,
            "{stem}: all tag storage stays reserved"
        );
        assert!(
            platform.layout.data_frames_total() >= 0x8000,
            "{stem}: memory is still served"
        );
        println!("{stem}: {message}");
    }
}

#[test]
fn the_messages_carry_the_values_and_the_fix() {
    let platform = parse(
        &compile(&platforms_dir().join("invalid/not-pageblock-aligned.dts")),
        true,
    )
    .unwrap();
    let TagStorage::Disabled(error) = platform.tag_storage else {
        panic!()
    };
    assert_eq!(
        error.to_string(),
        "metadata@88000000: Tag storage region not aligned to 0x200000 (values 0x88001000, 0x400000); \
         align start and size of the tag storage to 2 MiB. MTE tag storage management disabled"
    );
}

#[test]
fn a_blob_without_memory_or_with_a_bad_header_is_an_error() {
    assert!(matches!(
        parse(b"", true),
        Err(PlatformError::Malformed { .. })
    ));
    assert!(matches!(
        parse(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, 8], true),
        Err(PlatformError::Malformed { .. })
    ));
    let dir = std::env::temp_dir().join(format!("tagloan-platform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("no-memory.dts");
    std::fs::write(
        &path,
        "/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; };\n",
    )
    .unwrap();
    assert_eq!(parse(&compile(&path), true), Err(PlatformError::NoMemory));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// xorshift64*: a small deterministic generator for the fuzz loop.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_mutated_blobs_give_errors_never_panics() {
    let seeds = [
        compile(&platforms_dir().join("fvp-rfc.dts")),
        compile(&platforms_dir().join("qemu-virt-mte.dts")),
    ];
    let mut rng = Rng(0x5eed_f00d);
    let (mut accepted, mut rejected) = (0u32, 0u32);
    let mut check = |blob: &[u8]| match parse(blob, true) {
        // Whatever is accepted must be a valid layout.
        Ok(p) => {
            assert!(p.layout.frames_total() > 0);
            accepted += 1;
        }
        Err(_) => rejected += 1,
    };
    for _ in 0..10_000 {
        let len = rng.below(600);
        let mut blob: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= 8 && rng.below(2) == 0 {
            blob[..4].copy_from_slice(&[0xd0, 0x0d, 0xfe, 0xed]);
            blob[4..8].copy_from_slice(&(len as u32).to_be_bytes());
        }
        check(&blob);
    }
    for i in 0..20_000 {
        let mut blob = seeds[i % 2].clone();
        match rng.below(4) {
            0 => blob.truncate(rng.below(blob.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(blob.len());
                    blob[at] = rng.next() as u8;
                }
            }
            2 => {
                // Corrupt a header field (offsets and sizes).
                let field = 4 * (1 + rng.below(9));
                blob[field..field + 4].copy_from_slice(&(rng.next() as u32).to_be_bytes());
            }
            _ => {
                let at = rng.below(blob.len());
                let word = [0u8, 0, 0, 1 + rng.below(9) as u8];
                let end = (at + 4).min(blob.len());
                blob[at..end].copy_from_slice(&word[..end - at]);
            }
        }
        check(&blob);
    }
    let _ = writeln!(
        std::io::stderr(),
        "platform fuzz: 30000 random and mutated blobs, {accepted} accepted as valid layouts, {rejected} rejected with an error, 0 panics"
    );
    assert!(rejected > 10_000);
}
