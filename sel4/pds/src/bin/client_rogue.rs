//! The program image of `client_rogue` on seL4: every bad request, then a
//! load from an unmapped page of its window (a real VMFault).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    client_rogue::ClientRogue::new(client_rogue::Rogue::touching_unmapped()),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
