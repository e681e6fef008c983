//! The SDF parser and checker on arbitrary text: a located, typed error or
//! a system, never a panic. Prefill paths resolve beside the repository's
//! system.xml, as for `tagloan check`.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let search = [root.join("target/platforms"), root.clone()];
    match tagloan_sdf::Sdf::parse(text, &root.join("system.xml"), &search as &[PathBuf]) {
        Ok(_) => {}
        Err(error) => assert!(!error.to_string().is_empty()),
    }
});
