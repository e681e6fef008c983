//! The program image of `client_lazy` on seL4, with its plan in the lending
//! scenario (the default of `tagloan run`).
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    client_lazy::ClientLazy::new(client_lazy::Lazy::new(client_lazy::LazyPlan::lending())),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
