//! The program image of `client_tagged_heap` on seL4, with its default plan.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    client_tagged_heap::ClientTaggedHeap::default(),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
