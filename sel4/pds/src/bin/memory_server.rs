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
        report_pool_probe();
        memory_server::MemoryServer::<memory_server::NoMachine>::new(None)
            .with_own_mapping_probe(tagloan_sel4::probe_tags_on_own_mapping)
    },
    tagloan_sel4::regions![
        "dtb" => dtb_vaddr, dtb_size, false;
        "client_table" => client_table_vaddr, client_table_size, false;
        "server_bookkeeping" => bookkeeping_vaddr, bookkeeping_size, true;
    ]
);

/// Where the start-up probe maps its frame: outside every mapping of the
/// server in system.xml.
const PROBE_VADDR: usize = 0x1000_0000;

/// Proves the frames route at start-up: a frame retyped from the pool
/// Untyped the initial task handed over, mapped into the server's own
/// VSpace, written and read back.
fn report_pool_probe() {
    let mut line = tagloan_microkit::DebugLine::new();
    let _ = match tagloan_sel4::frames::probe_pool(PROBE_VADDR) {
        Ok(p) => core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "memory_server: pool capabilities: a frame retyped from the pool Untyped (paddr {:#x}, {} translation tables) mapped at {PROBE_VADDR:#x} in its own VSpace: {} of 4096 bytes written and read back; Untyped revoked",
                p.paddr, p.tables, p.verified
            ),
        ),
        Err(e) => core::fmt::Write::write_fmt(
            &mut line,
            format_args!("memory_server: pool capabilities: unusable: {e}"),
        ),
    };
    tagloan_sel4::print_line(line.as_str());
}
