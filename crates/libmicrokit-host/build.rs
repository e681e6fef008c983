//! Tells the build scripts of C PDs where the host `microkit.h` is
//! (`DEP_MICROKIT_HOST_INCLUDE`).
fn main() {
    let include = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    println!("cargo::metadata=include={}", include.display());
    println!("cargo::rerun-if-changed=include/microkit.h");
}
