//! The system as tagloan needs it: the SDF, the platform device tree it
//! prefills, and the client table, bound together and checked against each
//! other. The simulator builds on this, and `tagloan check` prints it.

use std::fmt;

use tagloan_platform::Platform;
use tagloan_pool::{ClientSpec, Config as PoolConfig, Pool};
use tagloan_proto::{channels, ClientTable};

use crate::sdf::{Location, Sdf};

/// The region names the system looks for.
pub const DTB_REGION: &str = "dtb";
/// The memory server's region for its own kernel objects on seL4 (frame
/// capabilities, page tables): RAM outside the pool, handed over as an
/// Untyped with the pool's, and nothing to the simulator.
pub const SERVER_OBJECTS_REGION: &str = "server_objects";
pub const CLIENT_TABLE_REGION: &str = "client_table";
pub const BOOKKEEPING_REGION: &str = "server_bookkeeping";

/// A rule of the system broken: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemError {
    pub at: Location,
    pub element: String,
    pub message: String,
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.element, self.message)
    }
}

impl std::error::Error for SystemError {}

/// A checked system.
#[derive(Clone, Debug)]
pub struct System {
    pub platform: Platform,
    pub table: ClientTable,
    /// The memory server's PD index.
    pub server: usize,
    /// The fault handler's PD index.
    pub fault_handler: usize,
    /// Each table client's PD index, in table order.
    pub clients: Vec<usize>,
    /// Bytes of the server's bookkeeping region, and what the pool needs.
    pub bookkeeping: (u64, u64),
    prefills: Vec<Vec<u8>>,
}

fn error(at: &Location, element: String, message: String) -> SystemError {
    SystemError {
        at: at.clone(),
        element,
        message,
    }
}

impl System {
    /// The prefill bytes of region `index` (empty when it has none).
    pub fn prefill(&self, index: usize) -> &[u8] {
        &self.prefills[index]
    }

    /// The pool client id of PD `pd`, if it is a client.
    pub fn client_of(&self, pd: usize) -> Option<u8> {
        self.clients.iter().position(|&p| p == pd).map(|i| i as u8)
    }

    /// The pool's client specs, in table order.
    pub fn client_specs(&self) -> Vec<ClientSpec> {
        self.table
            .clients
            .iter()
            .map(|c| ClientSpec {
                window_base: c.window_base,
                window_pages: c.window_pages,
                quota_frames: c.quota_frames,
            })
            .collect()
    }

    /// Binds and checks `sdf`.
    pub fn from_sdf(sdf: &Sdf) -> Result<System, SystemError> {
        let root = Location {
            file: sdf.path.display().to_string(),
            line: 1,
            column: 1,
        };
        let mut prefills = Vec::new();
        for region in &sdf.regions {
            prefills.push(match &region.prefill {
                None => Vec::new(),
                Some((name, path)) => std::fs::read(path).map_err(|e| {
                    error(
                        &region.at,
                        format!("<memory_region name=\"{}\">", region.name),
                        format!("cannot read prefill `{name}` ({}): {e}", path.display()),
                    )
                })?,
            });
        }
        let named = |name: &str| {
            sdf.region(name).ok_or_else(|| {
                error(
                    &root,
                    "<system>".into(),
                    format!(
                        "a memory region named `{name}` is required (see system.xml in the repo)"
                    ),
                )
            })
        };
        let dtb_index = named(DTB_REGION)?;
        let dtb_region = &sdf.regions[dtb_index];
        let dtb_element = format!("<memory_region name=\"{DTB_REGION}\">");
        if dtb_region.prefill.is_none() {
            return Err(error(
                &dtb_region.at,
                dtb_element,
                "needs prefill_path: the platform's device tree blob".into(),
            ));
        }
        let platform = tagloan_platform::parse(&prefills[dtb_index], true).map_err(|e| {
            error(
                &dtb_region.at,
                dtb_element.clone(),
                format!(
                    "the device tree `{}` is refused: {e}",
                    dtb_region.prefill.as_ref().unwrap().0
                ),
            )
        })?;
        let table_index = named(CLIENT_TABLE_REGION)?;
        let table_region = &sdf.regions[table_index];
        let table_element = format!("<memory_region name=\"{CLIENT_TABLE_REGION}\">");
        let table_file = match &table_region.prefill {
            Some((name, _)) => name.clone(),
            None => {
                return Err(error(
                    &table_region.at,
                    table_element,
                    "needs prefill_path: the client table".into(),
                ))
            }
        };
        let table = ClientTable::parse(&prefills[table_index]).map_err(|e| {
            error(
                &table_region.at,
                table_element.clone(),
                format!("{table_file}: {e}"),
            )
        })?;

        // The server: the one PD that names the pool's physical regions.
        let owners: Vec<usize> = (0..sdf.pds.len())
            .filter(|&pd| {
                sdf.pds[pd]
                    .paddr_vars
                    .iter()
                    .any(|(_, r)| sdf.regions[*r].phys_addr.is_some())
            })
            .collect();
        let server = match owners.as_slice() {
            [one] => *one,
            [] => {
                return Err(error(
                    &root,
                    "<system>".into(),
                    "no PD owns the pool: the memory server needs <setvar symbol=... region_paddr=...> for each pool region".into(),
                ))
            }
            [_, second, ..] => {
                let pd = &sdf.pds[*second];
                return Err(error(
                    &pd.at,
                    format!("<protection_domain name=\"{}\">", pd.name),
                    "a second PD names pool regions; only the memory server owns the pool".into(),
                ));
            }
        };
        let server_decl = &sdf.pds[server];
        let server_element = format!("<protection_domain name=\"{}\">", server_decl.name);
        if let Some(other) = sdf
            .pds
            .iter()
            .find(|p| p.name != server_decl.name && p.priority >= server_decl.priority)
        {
            return Err(error(
                &server_decl.at,
                server_element,
                format!(
                    "the memory server has priority {}, but `{}` has {}: the server must be the highest",
                    server_decl.priority, other.name, other.priority
                ),
            ));
        }

        // Every pool region of the platform is a region of the SDF, at its
        // physical address and size, and the other way round.
        let mut platform_ranges = Vec::new();
        for spec in &platform.regions {
            platform_ranges.push(("data", spec.data_base * 4096, spec.data_frames * 4096));
            if let Some(tags) = spec.tags {
                platform_ranges.push(("tag storage", tags.base * 4096, tags.frames * 4096));
            }
        }
        for (kind, base, size) in &platform_ranges {
            let found = sdf
                .regions
                .iter()
                .find(|r| r.phys_addr == Some(*base))
                .ok_or_else(|| {
                    error(
                        &root,
                        "<system>".into(),
                        format!(
                            "the platform has {kind} memory at {base:#x} ({size:#x} bytes), but no memory_region has phys_addr=\"{base:#x}\""
                        ),
                    )
                })?;
            if found.size != *size {
                return Err(error(
                    &found.at,
                    format!("<memory_region name=\"{}\">", found.name),
                    format!("size {:#x} differs from the platform's {kind} region at {base:#x}, {size:#x} bytes", found.size),
                ));
            }
        }
        for region in &sdf.regions {
            if let Some(phys) = region.phys_addr {
                if region.name == SERVER_OBJECTS_REGION {
                    let end = phys.saturating_add(region.size);
                    if let Some((kind, base, _)) = platform_ranges
                        .iter()
                        .find(|(_, base, size)| phys < base + size && *base < end)
                    {
                        return Err(error(
                            &region.at,
                            format!("<memory_region name=\"{}\">", region.name),
                            format!("the server's kernel objects overlap the platform's {kind} region at {base:#x}; move them out of the pool"),
                        ));
                    }
                    continue;
                }
                if !platform_ranges.iter().any(|(_, base, _)| *base == phys) {
                    return Err(error(
                        &region.at,
                        format!("<memory_region name=\"{}\">", region.name),
                        format!("phys_addr {phys:#x} is not a data or tag storage region of the platform"),
                    ));
                }
            }
        }

        // The fault handler.
        let (fh_name, fh_channel) = table.fault_handler.clone().ok_or_else(|| {
            error(
                &table_region.at,
                format!("<memory_region name=\"{CLIENT_TABLE_REGION}\">"),
                format!("{table_file}: a `fault_handler NAME channel=N` line is required"),
            )
        })?;
        let fault_handler = sdf.pd(&fh_name).ok_or_else(|| {
            error(
                &table_region.at,
                "client table".into(),
                format!("{table_file}: fault_handler `{fh_name}` is not a PD of the system"),
            )
        })?;
        check_call(
            sdf,
            fault_handler,
            channels::FAULT_HANDLER_TO_SERVER,
            server,
            fh_channel,
            &root,
        )?;

        // The clients.
        let mut clients = Vec::new();
        for entry in &table.clients {
            let pd = sdf.pd(&entry.name).ok_or_else(|| {
                error(
                    &table_region.at,
                    "client table".into(),
                    format!(
                        "{table_file}: client `{}` is not a PD of the system",
                        entry.name
                    ),
                )
            })?;
            let decl = &sdf.pds[pd];
            let element = format!("<protection_domain name=\"{}\">", decl.name);
            if decl.parent != Some(fault_handler) || decl.child_id != Some(entry.child) {
                return Err(error(
                    &decl.at,
                    element,
                    format!(
                        "a client must be a child of `{fh_name}` with id=\"{}\" (as the client table says), so its faults reach the fault handler",
                        entry.child
                    ),
                ));
            }
            check_call(
                sdf,
                pd,
                channels::CLIENT_TO_SERVER,
                server,
                entry.channel,
                &root,
            )?;
            match sdf.peer(pd, channels::CLIENT_TO_SUPERVISOR) {
                Some((_, theirs)) if theirs.pd == fault_handler && theirs.id == entry.child => {}
                _ => {
                    return Err(error(
                        &decl.at,
                        element,
                        format!(
                            "needs a channel to `{fh_name}`: id=\"{}\" at the client, id=\"{}\" (its child id) at the fault handler",
                            channels::CLIENT_TO_SUPERVISOR,
                            entry.child
                        ),
                    ))
                }
            }
            let done_id = u16::from(channels::FAULT_HANDLER_DONE_BASE) + u16::from(entry.child);
            match sdf.peer(pd, channels::CLIENT_DONE) {
                Some((_, theirs)) if theirs.pd == fault_handler && u16::from(theirs.id) == done_id => {}
                _ => {
                    return Err(error(
                        &decl.at,
                        element,
                        format!(
                            "needs a done channel to `{fh_name}`: id=\"{}\" at the client, id=\"{done_id}\" ({} + its child id) at the fault handler",
                            channels::CLIENT_DONE,
                            channels::FAULT_HANDLER_DONE_BASE
                        ),
                    ))
                }
            }
            let window = entry.window();
            let window_end = window.end().unwrap_or(u64::MAX);
            for map in &decl.maps {
                let size = sdf.regions[map.region].size;
                if window.overlaps(map.vaddr, map.vaddr.saturating_add(size)) {
                    return Err(error(
                        &map.at,
                        "<map>".into(),
                        format!(
                            "the mapping at {:#x} overlaps `{}`'s heap window {:#x}..{window_end:#x}; move one",
                            map.vaddr, decl.name, entry.window_base
                        ),
                    ));
                }
            }
            clients.push(pd);
        }
        for channel in &sdf.channels {
            for (caller, callee) in [
                (channel.ends[0], channel.ends[1]),
                (channel.ends[1], channel.ends[0]),
            ] {
                if caller.pp
                    && callee.pd == server
                    && caller.pd != fault_handler
                    && !clients.contains(&caller.pd)
                {
                    return Err(error(
                        &channel.at,
                        "<channel>".into(),
                        format!(
                            "`{}` can call the memory server but is not in the client table; add a client line for it",
                            sdf.pds[caller.pd].name
                        ),
                    ));
                }
            }
        }

        // Quotas fit the pool, and the tables fit the bookkeeping region.
        let layout = platform.layout;
        let pool_frames = u64::from(layout.frames_total());
        if table.quota_total() > pool_frames {
            return Err(error(
                &table_region.at,
                "client table".into(),
                format!(
                    "{table_file}: the quotas sum to {} frames, more than the pool's {pool_frames}; lower them",
                    table.quota_total()
                ),
            ));
        }
        let specs: Vec<ClientSpec> = table
            .clients
            .iter()
            .map(|c| ClientSpec {
                window_base: c.window_base,
                window_pages: c.window_pages,
                quota_frames: c.quota_frames,
            })
            .collect();
        let needed = Pool::storage_sizes(&layout, &specs, &PoolConfig::default()).bytes() as u64;
        let book = sdf.region(BOOKKEEPING_REGION).ok_or_else(|| {
            error(&root, "<system>".into(), format!("a memory region named `{BOOKKEEPING_REGION}` is required for the server's tables ({needed} bytes)"))
        })?;
        let book_region = &sdf.regions[book];
        if book_region.size < needed {
            return Err(error(
                &book_region.at,
                format!("<memory_region name=\"{BOOKKEEPING_REGION}\">"),
                format!(
                    "{:#x} bytes, but the pool tables need {needed:#x}; raise size",
                    book_region.size
                ),
            ));
        }
        // Each PD maps what it uses: the server its bookkeeping read-write,
        // and every PD what it reads at `init`.
        let mut needs = vec![
            (server, book, 'w'),
            (server, dtb_index, 'r'),
            (server, table_index, 'r'),
            (fault_handler, table_index, 'r'),
        ];
        needs.extend(clients.iter().map(|&pd| (pd, table_index, 'r')));
        for (pd, region, perm) in needs {
            let decl = &sdf.pds[pd];
            if !decl
                .maps
                .iter()
                .any(|m| m.region == region && m.perms.contains(perm))
            {
                let name = &sdf.regions[region].name;
                let (how, perms) = if perm == 'w' {
                    ("read-write: its tables live there", "rw")
                } else {
                    ("readable: it reads it at init", "r")
                };
                return Err(error(
                    &decl.at,
                    format!("<protection_domain name=\"{}\">", decl.name),
                    format!("must map `{name}` {how} (add <map mr=\"{name}\" vaddr=... perms=\"{perms}\"/>)"),
                ));
            }
        }
        Ok(System {
            platform,
            table,
            server,
            fault_handler,
            clients,
            bookkeeping: (book_region.size, needed),
            prefills,
        })
    }
}

/// `caller`'s channel `caller_id` must lead to `callee` at id `callee_id`, with
/// `pp="true"` at the caller.
fn check_call(
    sdf: &Sdf,
    caller: usize,
    caller_id: u8,
    callee: usize,
    callee_id: u8,
    root: &Location,
) -> Result<(), SystemError> {
    match sdf.peer(caller, caller_id) {
        Some((mine, theirs)) if theirs.pd == callee && theirs.id == callee_id && mine.pp => Ok(()),
        _ => {
            let decl = &sdf.pds[caller];
            let _ = root;
            Err(error(
                &decl.at,
                format!("<protection_domain name=\"{}\">", decl.name),
                format!(
                    "needs a channel to `{}`: <end pd=\"{}\" id=\"{caller_id}\" pp=\"true\"/> <end pd=\"{}\" id=\"{callee_id}\"/>",
                    sdf.pds[callee].name, decl.name, sdf.pds[callee].name
                ),
            ))
        }
    }
}
