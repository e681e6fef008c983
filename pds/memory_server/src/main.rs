//! The memory server's program image. On seL4 (`aarch64-unknown-none`) it is
//! the PD's entry; on a host it only says where to run it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
tagloan_microkit::protection_domain!(memory_server::MemoryServer::new(), "memory_server");

#[cfg(not(target_os = "none"))]
fn main() {
    println!("memory_server is a seL4 PD; run the system in the simulator with `tagloan run`");
}
