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
