//! The program image of `client_bulk` on seL4, with its plan in the lending
//! scenario (the default of `tagloan run`).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    client_bulk::ClientBulk::new(client_bulk::Bulk::new(client_bulk::BulkPlan::lending())),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
