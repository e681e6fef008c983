//! Compiles `client_c.c` with the host C compiler against the host
//! libmicrokit's `microkit.h` (crates/libmicrokit-host), the generated
//! `include/tagloan.h` and `include/tagloan_client.h`. On seL4 the same
//! file is built with the SDK (tools/sel4/image). Its entry points are
//! renamed, so that other C PDs can live in the same host binary.
fn main() {
    let microkit = std::env::var("DEP_MICROKIT_HOST_INCLUDE")
        .expect("tagloan-libmicrokit-host gives its include directory");
    println!("cargo::rerun-if-changed=client_c.c");
    println!("cargo::rerun-if-changed=../../include/tagloan.h");
    println!("cargo::rerun-if-changed=../../include/tagloan_client.h");
    cc::Build::new()
        .file("client_c.c")
        .include(microkit)
        .include("../../include")
        .define("init", "client_c_init")
        .define("notified", "client_c_notified")
        .flag_if_supported("-std=c11")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("client_c");
}
