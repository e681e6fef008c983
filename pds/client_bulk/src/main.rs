//! The program image of `client_bulk`. On seL4 (`aarch64-unknown-none`) it is the
//! PD's entry; on a host it only says where to run it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
tagloan_microkit::protection_domain!(client_bulk::ClientBulk::default(), "client_bulk");

#[cfg(not(target_os = "none"))]
fn main() {
    println!("client_bulk is a seL4 PD; run the system in the simulator with `tagloan run`");
}
