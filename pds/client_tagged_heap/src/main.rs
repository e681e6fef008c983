//! The program image of `client_tagged_heap`. On seL4 (`aarch64-unknown-none`) it is the
//! PD's entry; on a host it only says where to run it.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
tagloan_microkit::protection_domain!(
    client_tagged_heap::ClientTaggedHeap::default(),
    "client_tagged_heap"
);

#[cfg(not(target_os = "none"))]
fn main() {
    println!("client_tagged_heap is a seL4 PD; run the system in the simulator with `tagloan run`");
}
