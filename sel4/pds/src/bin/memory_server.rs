//! The memory server's program image on seL4. This backend has no frame or
//! untyped capabilities to give it yet (stock Microkit hands a PD none), so
//! the server starts without a machine: it parses the device tree and the
//! client table, probes tags on its own mapping, decodes and checks every
//! request, and refuses those that need frames with `unsupported`.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

tagloan_sel4::tagloan_pd!(
    {
        // The physical addresses of the pool regions (`<setvar region_paddr>`
        // in system.xml): the frames the next step of the backend hands over.
        let _ = (
            *sel4_microkit::var!(#[used(linker)] data_pool_paddr: usize = 0),
            *sel4_microkit::var!(#[used(linker)] tag_storage_paddr: usize = 0),
        );
        memory_server::MemoryServer::<memory_server::NoMachine>::new(None)
            .with_own_mapping_probe(tagloan_sel4::probe_tags_on_own_mapping)
    },
    tagloan_sel4::regions![
        "dtb" => dtb_vaddr, dtb_size, false;
        "client_table" => client_table_vaddr, client_table_size, false;
        "server_bookkeeping" => bookkeeping_vaddr, bookkeeping_size, true;
    ]
);
