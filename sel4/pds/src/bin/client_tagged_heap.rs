//! The program image of `client_tagged_heap` on seL4, with its plan in the lending
//! scenario (the default of `tagloan run`). On a kernel with our user-MTE
//! patch the plan ends with its deliberate use after free, which a real
//! tag-check fault must catch; a stock kernel would let it pass unseen, so
//! there the plan leaves it out.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

use client_tagged_heap::HeapPlan;

const PLAN: HeapPlan = if tagloan_sel4::KERNEL_HAS_USER_MTE {
    HeapPlan::lending_then_use_after_free()
} else {
    HeapPlan::lending()
};

tagloan_sel4::tagloan_pd!(
    client_tagged_heap::ClientTaggedHeap::new(client_tagged_heap::TaggedHeap::new(PLAN)),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
