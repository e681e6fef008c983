//! The memory server's program image. On seL4 (`aarch64-unknown-none`) it is
//! the PD's entry; on a host it only says where to run it.
#![cfg_attr(target_os = "none", no_std, no_main)]

// The seL4 link stub has no frame capabilities to give (README: what is not
// real yet), so the server starts without a machine and says so.
#[cfg(target_os = "none")]
tagloan_microkit::protection_domain!(
    memory_server::MemoryServer::<memory_server::NoMachine>::new(None),
    "memory_server"
);

#[cfg(not(target_os = "none"))]
fn main() {
    println!("memory_server is a seL4 PD; run the system in the simulator with `tagloan run`");
}
