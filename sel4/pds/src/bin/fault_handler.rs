//! The fault handler's program image on seL4: the parent of every client.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    fault_handler::FaultHandler::new(),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
