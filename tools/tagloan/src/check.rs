//! `tagloan check`: validate a system or a platform, and print its layout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tagloan_platform::{Platform, TagStorage};
use tagloan_pool::{ClientSpec, Config, FrameEntry, Pool};
use tagloan_sdf::Sdf;
use tagloan_sim::{system::DTB_REGION, System};

const MIB: f64 = 1024.0 * 1024.0;

fn layout_table(platform: &Platform, clients: &[ClientSpec]) -> String {
    let mut out = String::new();
    let layout = &platform.layout;
    out.push_str("region  data base     data size   tag storage   tag size   block   tag blocks\n");
    for (i, r) in platform.regions.iter().enumerate() {
        let data = format!(
            "{i:<7} {:#012x}  {:>8.1} MiB",
            r.data_base * 4096,
            r.data_frames as f64 * 4096.0 / MIB
        );
        match r.tags {
            Some(t) => out.push_str(&format!(
                "{data}   {:#012x}  {:>5.2} MiB  {:>3} p   {:>8}\n",
                t.base * 4096,
                t.frames as f64 * 4096.0 / MIB,
                t.block_frames,
                t.frames / t.block_frames
            )),
            None => out.push_str(&format!("{data}   (none: untaggable)\n")),
        }
    }
    let sizes = Pool::storage_sizes(layout, clients, &Config::default());
    let frames = u64::from(layout.frames_total());
    out.push_str(&format!(
        "total: {} frames ({} data, {} tag storage = {:.2} % of memory), {} tag blocks\n",
        frames,
        layout.data_frames_total(),
        layout.tag_frames_total(),
        100.0 * f64::from(layout.tag_frames_total()) / frames as f64,
        layout.blocks_total()
    ));
    out.push_str(&format!(
        "bookkeeping: {} bytes per frame in the frame table; {} bytes in all with {} client windows ({:.2} bytes per frame)\n",
        std::mem::size_of::<FrameEntry>(),
        sizes.bytes(),
        clients.len(),
        sizes.bytes() as f64 / frames as f64
    ));
    out.push_str(&format!(
        "tag storage reuse: {}\n",
        match &platform.tag_storage {
            TagStorage::Enabled =>
                "enabled: tag storage is lent to untagged data and recalled".to_string(),
            TagStorage::NoneFound =>
                "no tag storage described: memory is served without it".to_string(),
            TagStorage::MteOff => "MTE off: tag storage is ordinary memory".to_string(),
            TagStorage::Disabled(e) => format!("DISABLED: {e}"),
        }
    ));
    out
}

/// Translation tables a VSpace needs for `ranges`, beyond those its PD's
/// own mappings (`existing`) already make: a leaf table per 2 MiB chunk and
/// one above it per 1 GiB region, as the seL4 server's provisioning finds
/// them (it maps tables until the kernel says every level is there).
fn tables_needed(ranges: &[(u64, u64)], existing: &[(u64, u64)]) -> u64 {
    use std::collections::BTreeSet;
    use tagloan_microkit::sel4_provisioning::{LEAF_TABLE_SPAN, LEVEL2_TABLE_SPAN};
    let spans = |ranges: &[(u64, u64)], span: u64| -> BTreeSet<u64> {
        ranges
            .iter()
            .flat_map(|&(start, end)| (start / span)..end.div_ceil(span))
            .collect()
    };
    let leaves = spans(ranges, LEAF_TABLE_SPAN);
    let regions = spans(ranges, LEVEL2_TABLE_SPAN);
    let (had_leaves, had_regions) = (
        spans(existing, LEAF_TABLE_SPAN),
        spans(existing, LEVEL2_TABLE_SPAN),
    );
    (leaves.difference(&had_leaves).count() + regions.difference(&had_regions).count()) as u64
}

/// The server's `<cspace>` as the seL4 server reads it
/// (`tagloan_microkit::sel4_provisioning`): its own VSpace in slot 1, client
/// `i`'s in slot 2 + i, and the last slot free for its frame CNode.
fn server_cspace(sdf: &Sdf, system: &System) -> Result<(), String> {
    use tagloan_microkit::sel4_provisioning::*;
    use tagloan_sdf::CapKind;
    let server = &sdf.pds[system.server];
    let vspace_at = |slot: u8| {
        server
            .caps
            .iter()
            .find(|c| c.slot == slot && c.kind == CapKind::Vspace)
            .map(|c| c.pd)
    };
    let mut wanted = vec![(OWN_VSPACE_SLOT, server.name.as_str())];
    for (i, client) in system.table.clients.iter().enumerate() {
        wanted.push((FIRST_CLIENT_VSPACE_SLOT + i as u8, client.name.as_str()));
    }
    for (slot, name) in wanted {
        let found = vspace_at(slot).map(|pd| sdf.pds[pd].name.as_str());
        if found != Some(name) {
            return Err(format!(
                "{}: <protection_domain name=\"{}\">: on seL4 the server finds `{name}`'s VSpace at <cap_vspace slot=\"{slot}\">, which {}; slot 1 is its own, then one per client in the client table's order",
                server.at,
                server.name,
                match found {
                    Some(other) => format!("is `{other}`'s"),
                    None => "is not there".to_string(),
                }
            ));
        }
    }
    if let Some(cap) = server.caps.iter().find(|c| c.slot == FRAMES_ROOT_SLOT) {
        let element = match cap.kind {
            CapKind::Tcb => "cap_tcb",
            CapKind::Sc => "cap_sc",
            CapKind::Vspace => "cap_vspace",
        };
        return Err(format!(
            "{}: <{element}>: slot {FRAMES_ROOT_SLOT} is where the seL4 server keeps its frame CNode (its root CNode's last slot); use another slot",
            cap.at
        ));
    }
    Ok(())
}

/// What the seL4 memory server will provision (sel4/runtime/src/machine.rs),
/// and whether its `server_objects` region holds it.
fn sel4_provisioning(sdf: &Sdf, system: &System) -> Result<String, String> {
    use tagloan_microkit::sel4_provisioning::*;
    let Some(objects) = sdf.region(tagloan_sim::system::SERVER_OBJECTS_REGION) else {
        return Ok(String::new());
    };
    let objects = &sdf.regions[objects];
    // The PD's own mappings: its program image and its <map>s.
    let existing = |pd: usize| -> Vec<(u64, u64)> {
        std::iter::once((PROGRAM_BASE, PROGRAM_BASE + 1))
            .chain(
                sdf.pds[pd]
                    .maps
                    .iter()
                    .map(|m| (m.vaddr, m.vaddr + sdf.regions[m.region].size)),
            )
            .collect()
    };
    server_cspace(sdf, system)?;
    let mut tables = tables_needed(
        &[(SCRATCH_VADDR, SCRATCH_VADDR + 2 * 4096)],
        &existing(system.server),
    );
    let mut pages = 0usize;
    for client in &system.table.clients {
        let pd = sdf
            .pd(client.name.as_str())
            .ok_or_else(|| format!("client `{}` is not a PD", client.name))?;
        let window = client.window();
        let end = window.end().unwrap_or(u64::MAX);
        tables += tables_needed(&[(window.base, end)], &existing(pd));
        pages += client.window_pages as usize;
    }
    let frames = u64::from(system.platform.layout.frames_total());
    let cnode_bytes = (1u64 << FRAMES_CNODE_BITS) * SLOT_BYTES;
    let kernel_bytes = cnode_bytes + tables * TABLE_BYTES;
    let map_bytes = (MAX_WINDOW_PAGES * 4) as u64;
    if frames + tables + 2 > 1 << FRAMES_CNODE_BITS {
        return Err(format!(
            "on seL4 the server's frame CNode has {} slots, fewer than the pool's {frames} frames and {tables} translation tables need",
            1u64 << FRAMES_CNODE_BITS
        ));
    }
    if pages > MAX_WINDOW_PAGES {
        return Err(format!(
            "on seL4 the server tracks {MAX_WINDOW_PAGES} window pages; the client windows have {pages}"
        ));
    }
    if kernel_bytes > objects.size {
        return Err(format!(
            "{}: <memory_region name=\"{}\">: {:#x} bytes, but on seL4 the server's kernel objects need {kernel_bytes:#x}; raise size",
            objects.at, objects.name, objects.size
        ));
    }
    Ok(format!(
        "on seL4: {} frame capabilities in a {}-slot frame CNode ({} bytes) and {tables} translation tables ({} bytes): {kernel_bytes} bytes of kernel objects, in `{}` ({:#x} bytes); with the {map_bytes}-byte window-page map, {:.2} bytes per managed frame beside the pool's tables\n",
        frames,
        1u64 << FRAMES_CNODE_BITS,
        cnode_bytes,
        tables * TABLE_BYTES,
        objects.name,
        objects.size,
        (kernel_bytes + map_bytes) as f64 / frames as f64
    ))
}

fn check_platform(path: &Path) -> Result<Platform, String> {
    let blob = crate::platform_blob(path)?;
    tagloan_platform::parse(&blob, true).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `tagloan check`.
pub fn check(
    sdf: Option<PathBuf>,
    platform: Option<PathBuf>,
    search_path: &[PathBuf],
) -> Result<ExitCode, String> {
    let sdf = match (sdf, &platform) {
        (None, Some(platform)) => {
            let p = check_platform(platform)?;
            if let TagStorage::Disabled(e) = &p.tag_storage {
                // The memory is served, but the platform is wrong: fail.
                return Err(format!("{}: {e}", platform.display()));
            }
            println!("{}: valid platform\n", platform.display());
            print!("{}", layout_table(&p, &[]));
            return Ok(ExitCode::SUCCESS);
        }
        (Some(sdf), _) => sdf,
        (None, None) => PathBuf::from("system.xml"),
    };
    let mut description = Sdf::load(&sdf, search_path).map_err(|e| e.to_string())?;
    if let Some(platform) = &platform {
        check_platform(platform)?;
        let dtb = crate::platform_dtb_path(platform)?;
        description
            .set_prefill(DTB_REGION, &dtb)
            .map_err(|e| e.to_string())?;
    }
    let system = System::from_sdf(&description).map_err(|e| e.to_string())?;
    if let TagStorage::Disabled(e) = &system.platform.tag_storage {
        return Err(format!(
            "{}: the platform's tag storage is refused: {e}",
            sdf.display()
        ));
    }
    // Checked before anything is printed: a system is valid or it is not.
    let sel4 = sel4_provisioning(&description, &system)?;
    println!(
        "{}: valid system: {} protection domains, {} channels, {} clients",
        sdf.display(),
        description.pds.len(),
        description.channels.len(),
        system.table.clients.len()
    );
    let pool_frames = u64::from(system.platform.layout.frames_total());
    println!(
        "memory server `{}` (priority {}), fault handler `{}`; quotas sum to {} of {} frames; bookkeeping region {:#x} bytes, tables need {:#x}\n",
        description.pds[system.server].name,
        description.pds[system.server].priority,
        description.pds[system.fault_handler].name,
        system.table.quota_total(),
        pool_frames,
        system.bookkeeping.0,
        system.bookkeeping.1
    );
    print!("{}", layout_table(&system.platform, &system.client_specs()));
    print!("{sel4}");
    println!(
        "\nclient               channel  child  window                          pages    quota"
    );
    for c in &system.table.clients {
        println!(
            "{:<20} {:>7}  {:>5}  {:#012x}..{:#012x}  {:>7}  {:>7}",
            c.name.as_str(),
            c.channel,
            c.child,
            c.window_base,
            c.window_base + u64::from(c.window_pages) * 4096,
            c.window_pages,
            c.quota_frames
        );
    }
    Ok(ExitCode::SUCCESS)
}
