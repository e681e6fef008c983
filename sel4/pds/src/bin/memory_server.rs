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

/// The regions whose Untypeds the initial task hands over, by their
/// `<setvar region_paddr>` symbols: the name of each, and its physical
/// address (0 if system.xml gives the server no such setvar).
fn handed_over() -> [(&'static str, u64); 3] {
    [
        (
            "data_pool",
            *sel4_microkit::var!(#[used(linker)] data_pool_paddr: usize = 0) as u64,
        ),
        (
            "tag_storage",
            *sel4_microkit::var!(#[used(linker)] tag_storage_paddr: usize = 0) as u64,
        ),
        (
            SERVER_OBJECTS,
            *sel4_microkit::var!(#[used(linker)] server_objects_paddr: usize = 0) as u64,
        ),
    ]
}

/// The region of the server's own kernel objects (never part of the pool).
const SERVER_OBJECTS: &str = "server_objects";

/// The slot of the Untyped for the region at `paddr`. The initial task puts
/// the Untypeds from `POOL_UNTYPED_FIRST` on in address order
/// (`tools/sel4/initialiser`), so the slot is the region's rank among them.
/// Provisioning then checks that each Untyped is its region: frames retyped
/// from it must be at the region's addresses.
fn untyped_slot(paddr: u64) -> Option<u64> {
    let given = handed_over();
    if paddr == 0 || !given.iter().any(|(_, p)| *p == paddr) {
        return None;
    }
    let below = given.iter().filter(|(_, p)| *p != 0 && *p < paddr).count();
    Some(POOL_UNTYPED_FIRST + below as u64)
}

fn server() -> memory_server::MemoryServer<Sel4Machine> {
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
    /// No Untyped was handed over for a region of the device tree.
    NoUntyped {
        what: &'static str,
        base: u64,
    },
    /// The server's objects are not given, or lie in the pool.
    Objects(u64),
    Platform(tagloan_platform::PlatformError),
    Table(tagloan_proto::TableError),
    TooBig(&'static str),
    Provision(tagloan_sel4::machine::ProvisionError),
}

impl core::fmt::Display for NoMachine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NoMachine::Region(name) => write!(f, "region `{name}` is not mapped"),
            NoMachine::NoUntyped { what, base } => write!(
                f,
                "the device tree has {what} at {base:#x}, and no Untyped was handed over there: give the memory server a `<setvar region_paddr>` for the memory_region at phys_addr {base:#x} in system.xml"
            ),
            NoMachine::Objects(0) => write!(
                f,
                "no Untyped for the server's kernel objects: give the memory server `<setvar symbol=\"server_objects_paddr\" region_paddr=\"{SERVER_OBJECTS}\" />` in system.xml"
            ),
            NoMachine::Objects(paddr) => write!(
                f,
                "the server's kernel objects ({SERVER_OBJECTS}, at {paddr:#x}) lie in a pool region of the device tree: move them out of the pool in system.xml"
            ),
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
    // Each region of the device tree, data and tag storage, with the
    // Untyped handed over at its address; a tag node that failed validation
    // gives no tag storage region (reuse off), and its Untyped stays unused.
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
            let untyped_slot = untyped_slot(base * 4096).ok_or(NoMachine::NoUntyped {
                what: if tag_storage {
                    "tag storage"
                } else {
                    "data memory"
                },
                base: base * 4096,
            })?;
            pool[count] = PoolRegion {
                untyped_slot,
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
    let objects = handed_over()
        .iter()
        .find(|(name, _)| *name == SERVER_OBJECTS)
        .map_or(0, |(_, paddr)| *paddr);
    let in_pool = pool[..count].iter().any(|r| {
        let base = r.base * 4096;
        (base..base + u64::from(r.frames) * 4096).contains(&objects)
    });
    let objects_slot = match untyped_slot(objects) {
        Some(slot) if !in_pool => slot,
        _ => return Err(NoMachine::Objects(objects)),
    };
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
    // What each Untyped handed over is used for.
    let mut line = tagloan_microkit::DebugLine::new();
    let _ = core::fmt::Write::write_str(&mut line, "memory_server: Untypeds:");
    for (name, paddr) in handed_over().iter().filter(|(_, p)| *p != 0) {
        let slot = untyped_slot(*paddr).unwrap_or(0);
        let role = match pool[..count].iter().find(|r| r.untyped_slot == slot) {
            Some(r) if r.tag_storage => "tag storage",
            Some(_) => "data memory",
            None if slot == objects_slot => "the server's kernel objects",
            None => "unused: no valid region of the device tree is there",
        };
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(" {name} at {paddr:#x} in slot {slot}: {role};"),
        );
    }
    print_line(line.as_str());
    if Sel4Machine::pages_needed(windows) > MAX_WINDOW_PAGES {
        return Err(NoMachine::TooBig("window pages"));
    }
    // SAFETY: taken once, here, before the server runs; nothing else
    // refers to it.
    let mapped: &'static mut [u32] = unsafe { &mut *core::ptr::addr_of_mut!(MAPPED) };
    Sel4Machine::provision(objects_slot, &pool[..count], windows, mapped)
        .map_err(NoMachine::Provision)
}
