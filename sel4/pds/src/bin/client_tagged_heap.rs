//! The program image of `client_tagged_heap` on seL4, with its plan in the lending
//! scenario (the default of `tagloan run`).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    client_tagged_heap::ClientTaggedHeap::new(client_tagged_heap::TaggedHeap::new(
        client_tagged_heap::HeapPlan::lending()
    )),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
