//! The hardware MTE test: the pool core with the real tag instructions.
//!
//! Built for `aarch64-unknown-linux-gnu` and run under `qemu-aarch64 -cpu
//! max`, it maps "physical memory" with `PROT_MTE`, turns on synchronous tag
//! checking, and drives two pools through the same lending, recall,
//! evacuation and lazy-tagging sequence: one over this memory with the real
//! instructions ([`tagloan_mte::hw`]), one over the simulator. It checks that
//! tagged frames come out with zero tags, that migration carries tags, that
//! deferred tags are restored, that both machines read back the same tags,
//! and that a stale pointer faults with SEGV_MTESERR.

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
mod run;

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn main() -> std::process::ExitCode {
    run::main()
}

#[cfg(not(all(target_arch = "aarch64", target_os = "linux")))]
fn main() -> std::process::ExitCode {
    eprintln!("mte-hw: this test runs only on aarch64 Linux (use `make test-mte`, which runs it under qemu-aarch64)");
    std::process::ExitCode::from(2)
}
