//! The memory server's program image on seL4. tagloan's initial task hands
//! it the pool and a region for its kernel objects as Untypeds
//! (`tagloan_sel4::frames`); it provisions the pool's machine over them at
//! start-up (`tagloan_sel4::machine`) and serves from real frames. If that
//! fails, it starts without a machine, says why, and refuses every request
//! that needs frames with `unsupported`.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

use tagloan_microkit::Env;
use tagloan_sel4::frames::POOL_UNTYPED_FIRST;
use tagloan_sel4::machine::{
    KernelTags, PoolRegion, Sel4Machine, Window, MAX_POOL_REGIONS, MAX_WINDOWS,
};
use tagloan_sel4::{print_line, Region, Sel4Env};

/// The regions of system.xml the server maps.
fn regions() -> [Region; 3] {
    tagloan_sel4::regions![
        "dtb" => dtb_vaddr, dtb_size, false;
        "client_table" => client_table_vaddr, client_table_size, false;
        "server_bookkeeping" => bookkeeping_vaddr, bookkeeping_size, true;
    ]
}

/// Window pages the machine can track (the five example clients have 54,592).
use tagloan_microkit::sel4_provisioning::MAX_WINDOW_PAGES;

/// The frame CNode slot mapped at each window page (see `Sel4Machine`).
static mut MAPPED: [u32; MAX_WINDOW_PAGES] = [0; MAX_WINDOW_PAGES];

tagloan_sel4::tagloan_pd!(server(), regions());

fn say(args: core::fmt::Arguments) {
    let mut line = tagloan_microkit::DebugLine::new();
    let _ = core::fmt::Write::write_fmt(&mut line, args);
    print_line(line.as_str());
}

fn server() -> memory_server::MemoryServer<Sel4Machine> {
    // The physical addresses of the Untypeds, in the order of the server's
    // `<setvar region_paddr>` (data pool, tag storage, server objects).
    let _ = (
        *sel4_microkit::var!(#[used(linker)] data_pool_paddr: usize = 0),
        *sel4_microkit::var!(#[used(linker)] tag_storage_paddr: usize = 0),
        *sel4_microkit::var!(#[used(linker)] server_objects_paddr: usize = 0),
    );
    match machine() {
        Ok(machine) => {
            let p = machine.provisioned();
            // Bookkeeping on seL4 beyond the pool's own tables: the kernel
            // objects, and the machine's map of window pages (4 bytes each).
            let tracked = (MAX_WINDOW_PAGES * core::mem::size_of::<u32>()) as u64;
            let per_frame_x100 = (p.kernel_bytes() + tracked) * 100 / u64::from(p.frames.max(1));
            say(format_args!(
                "memory_server: frames on seL4: {} frame capabilities from the pool's Untypeds, {} translation tables for the client windows and the scratch window, {} bytes of kernel objects and {} of window-page map: {}.{:02} bytes per managed frame beside the pool's own tables",
                p.frames,
                p.tables,
                p.kernel_bytes(),
                tracked,
                per_frame_x100 / 100,
                per_frame_x100 % 100
            ));
            say(format_args!(
                "memory_server: MTE on seL4: {}",
                match machine.kernel_tags() {
                    KernelTags::Enforced =>
                        "the kernel maps seL4_ARM_Tagged frames as Tagged Normal memory: tagged pages are tag-checked",
                    KernelTags::Refused =>
                        "the kernel refused seL4_ARM_Tagged (user MTE is off; its boot line says why): tagged pages are mapped Normal",
                    KernelTags::NotInKernel =>
                        "this kernel has no seL4_ARM_Tagged (stock seL4): tagged pages are mapped Normal",
                }
            ));
            // Every 16th call: a check walks every frame, and checking
            // after each call would swamp the image's benchmarks (their
            // medians and minima stay clean at this rate).
            memory_server::MemoryServer::new(Some(machine)).with_invariant_checks(16)
        }
        Err(reason) => {
            say(format_args!("memory_server: no frames: {reason}"));
            memory_server::MemoryServer::new(None)
                .with_own_mapping_probe(tagloan_sel4::probe_tags_on_own_mapping)
        }
    }
}

/// Why the machine could not be made.
enum NoMachine {
    Region(&'static str),
    Platform(tagloan_platform::PlatformError),
    Table(tagloan_proto::TableError),
    TooBig(&'static str),
    Provision(tagloan_sel4::machine::ProvisionError),
}

impl core::fmt::Display for NoMachine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NoMachine::Region(name) => write!(f, "region `{name}` is not mapped"),
            NoMachine::Platform(e) => write!(f, "device tree: {e}"),
            NoMachine::Table(e) => write!(f, "{e}"),
            NoMachine::TooBig(what) => write!(f, "too many {what}"),
            NoMachine::Provision(e) => write!(f, "provisioning: {e}"),
        }
    }
}

fn machine() -> Result<Sel4Machine, NoMachine> {
    let regions = regions();
    let env = Sel4Env::new(&regions);
    let dtb = env.region("dtb").ok_or(NoMachine::Region("dtb"))?;
    let platform = tagloan_platform::parse(dtb, true).map_err(NoMachine::Platform)?;
    // Each region's data Untyped, then its tag storage's, as the initial
    // task handed them over; the server's own objects last.
    let mut pool = [PoolRegion {
        untyped_slot: 0,
        base: 0,
        frames: 0,
        tag_storage: false,
    }; MAX_POOL_REGIONS];
    let mut count = 0;
    for region in &platform.regions {
        let mut add = |base: u64, frames: u64, tag_storage: bool| {
            if count == MAX_POOL_REGIONS {
                return Err(NoMachine::TooBig("pool regions"));
            }
            pool[count] = PoolRegion {
                untyped_slot: POOL_UNTYPED_FIRST + count as u64,
                base,
                frames: frames as u32,
                tag_storage,
            };
            count += 1;
            Ok(())
        };
        add(region.data_base, region.data_frames, false)?;
        if let Some(tags) = region.tags {
            add(tags.base, tags.frames, true)?;
        }
    }
    let objects_slot = POOL_UNTYPED_FIRST + count as u64;
    let table = tagloan_proto::ClientTable::parse(
        env.region("client_table")
            .ok_or(NoMachine::Region("client_table"))?,
    )
    .map_err(NoMachine::Table)?;
    let mut windows = [Window { base: 0, pages: 0 }; MAX_WINDOWS];
    for (window, client) in windows.iter_mut().zip(&table.clients) {
        *window = Window {
            base: client.window_base,
            pages: client.window_pages,
        };
    }
    let windows = &windows[..table.clients.len()];
    if Sel4Machine::pages_needed(windows) > MAX_WINDOW_PAGES {
        return Err(NoMachine::TooBig("window pages"));
    }
    // SAFETY: taken once, here, before the server runs; nothing else
    // refers to it.
    let mapped: &'static mut [u32] = unsafe { &mut *core::ptr::addr_of_mut!(MAPPED) };
    Sel4Machine::provision(objects_slot, &pool[..count], windows, mapped)
        .map_err(NoMachine::Provision)
}
