//! Loading a Microkit system description (SDF, `system.xml`) and checking
//! the parts tagloan relies on with Microkit's own rules.
//!
//! It is its own crate because three users need it and nothing else of
//! theirs: `tagloan check`, the simulator, and the seL4 image build.
//! Microkit's limits come from `tagloan_microkit::limits`.
//!
//! Every error is located: the file, the line and column of the element, the
//! element, the rule broken, and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use tagloan_microkit::limits::{MAX_CHANNELS, MAX_CHANNEL_ID, MAX_CHILD_ID};

/// Where in the SDF something is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A located SDF error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdfError {
    pub at: Location,
    /// The element, e.g. `<channel>` or `<protection_domain name="x">`.
    pub element: String,
    /// The rule broken, and the fix.
    pub message: String,
}

impl fmt::Display for SdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.element, self.message)
    }
}

impl std::error::Error for SdfError {}

/// A memory region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionDecl {
    pub name: String,
    pub size: u64,
    pub page_size: u64,
    pub phys_addr: Option<u64>,
    /// The prefill file as written, and the path it was found at.
    pub prefill: Option<(String, PathBuf)>,
    pub at: Location,
}

/// A `<map>` of a region into a PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDecl {
    pub region: usize,
    pub vaddr: u64,
    pub perms: String,
    pub setvar_vaddr: Option<String>,
    pub at: Location,
}

/// A protection domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdDecl {
    pub name: String,
    pub priority: u8,
    pub passive: bool,
    /// Its id under its parent, for a child PD.
    pub child_id: Option<u8>,
    pub parent: Option<usize>,
    pub program_image: String,
    pub maps: Vec<MapDecl>,
    /// `<setvar symbol region_paddr>`: the symbol and the region.
    pub paddr_vars: Vec<(String, usize)>,
    /// `<cspace>`: the capabilities to other PDs' objects it holds.
    pub caps: Vec<CapDecl>,
    pub at: Location,
}

/// What a `<cspace>` capability is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapKind {
    /// `<cap_tcb>`: the PD's thread.
    Tcb,
    /// `<cap_sc>`: its scheduling context.
    Sc,
    /// `<cap_vspace>`: its address space.
    Vspace,
}

/// One capability of a `<cspace>`: of `pd`'s object, in root slot `slot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapDecl {
    pub kind: CapKind,
    pub slot: u8,
    pub pd: usize,
    pub at: Location,
}

/// One end of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndDecl {
    pub pd: usize,
    pub id: u8,
    /// This end may call the other (`pp="true"`).
    pub pp: bool,
    /// This end may notify the other (Microkit's default is true).
    pub notify: bool,
}

/// A channel between two PDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelDecl {
    pub ends: [EndDecl; 2],
    pub at: Location,
}

/// A loaded, checked system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdf {
    pub path: PathBuf,
    pub regions: Vec<RegionDecl>,
    pub pds: Vec<PdDecl>,
    pub channels: Vec<ChannelDecl>,
}

impl Sdf {
    /// The PD named `name`.
    pub fn pd(&self, name: &str) -> Option<usize> {
        self.pds.iter().position(|p| p.name == name)
    }

    /// The region named `name`.
    pub fn region(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// The PD and channel id at the other end of `pd`'s channel `id`, and
    /// whether `pd` may call it and notify it.
    pub fn peer(&self, pd: usize, id: u8) -> Option<(EndDecl, EndDecl)> {
        self.channels.iter().find_map(|c| {
            let [a, b] = c.ends;
            if a.pd == pd && a.id == id {
                Some((a, b))
            } else if b.pd == pd && b.id == id {
                Some((b, a))
            } else {
                None
            }
        })
    }

    /// The child of `parent` with id `id`.
    pub fn child(&self, parent: usize, id: u8) -> Option<usize> {
        self.pds
            .iter()
            .position(|p| p.parent == Some(parent) && p.child_id == Some(id))
    }

    /// The prefill bytes of region `name`, read from its file.
    pub fn prefill(&self, name: &str) -> Option<std::io::Result<Vec<u8>>> {
        let region = &self.regions[self.region(name)?];
        let (_, path) = region.prefill.as_ref()?;
        Some(std::fs::read(path))
    }

    /// Replaces the prefill of region `name` with the file at `path`, with
    /// the checks `prefill_path` gets: it exists and fits the region.
    pub fn set_prefill(&mut self, name: &str, path: &Path) -> Result<(), SdfError> {
        let index = self.region(name).ok_or_else(|| SdfError {
            at: Location {
                file: self.path.display().to_string(),
                line: 1,
                column: 1,
            },
            element: "<system>".into(),
            message: format!("there is no memory region `{name}` to prefill"),
        })?;
        let region = &mut self.regions[index];
        let fail = |message: String| SdfError {
            at: region.at.clone(),
            element: format!("<memory_region name=\"{name}\">"),
            message,
        };
        let length = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?
            .len();
        if length > region.size {
            return Err(fail(format!(
                "`{}` has {length} bytes, more than the region's {}; raise its size",
                path.display(),
                region.size
            )));
        }
        region.prefill = Some((path.display().to_string(), path.to_path_buf()));
        Ok(())
    }

    /// Loads and checks the SDF at `path`. `search_path` is where
    /// `prefill_path` files are looked up after the SDF's own directory
    /// (like the `microkit` tool's `--search-path`).
    pub fn load(path: &Path, search_path: &[PathBuf]) -> Result<Sdf, SdfError> {
        let text = std::fs::read_to_string(path).map_err(|e| SdfError {
            at: Location {
                file: path.display().to_string(),
                line: 0,
                column: 0,
            },
            element: "file".into(),
            message: format!("cannot read it: {e}"),
        })?;
        Sdf::parse(&text, path, search_path)
    }

    /// Parses and checks SDF text; `path` names it in errors and anchors
    /// relative prefill paths.
    pub fn parse(text: &str, path: &Path, search_path: &[PathBuf]) -> Result<Sdf, SdfError> {
        let file = path.display().to_string();
        let doc = roxmltree::Document::parse(text).map_err(|e| {
            let pos = e.pos();
            SdfError {
                at: Location {
                    file: file.clone(),
                    line: pos.row,
                    column: pos.col,
                },
                element: "XML".into(),
                message: format!("not well-formed: {e}"),
            }
        })?;
        let mut dirs = vec![path.parent().unwrap_or(Path::new(".")).to_path_buf()];
        dirs.extend(search_path.iter().cloned());
        let mut parser = Parser {
            doc: &doc,
            file,
            dirs,
            sdf: Sdf {
                path: path.to_path_buf(),
                regions: Vec::new(),
                pds: Vec::new(),
                channels: Vec::new(),
            },
            pending_caps: Vec::new(),
        };
        parser.system()?;
        parser.check()?;
        Ok(parser.sdf)
    }
}

struct Parser<'d, 'i> {
    doc: &'d roxmltree::Document<'i>,
    file: String,
    dirs: Vec<PathBuf>,
    sdf: Sdf,
    /// `<cspace>` capabilities, resolved once every PD is known: the PD
    /// that holds it, the element, and the PD it names.
    pending_caps: Vec<(usize, roxmltree::NodeId, String)>,
}

type Node<'d, 'i> = roxmltree::Node<'d, 'i>;

/// The end of a PD's address space: 40-bit virtual addresses, as seL4 in
/// hypervisor mode gives on the QEMU virt board (see
/// `tagloan_proto::MAX_USER_VADDR`).
pub const USER_TOP: u64 = tagloan_proto::MAX_USER_VADDR + 1;

fn describe(node: Node) -> String {
    match node.attribute("name") {
        Some(name) => format!("<{} name=\"{name}\">", node.tag_name().name()),
        None => format!("<{}>", node.tag_name().name()),
    }
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Parser<'_, '_> {
    fn at(&self, node: Node) -> Location {
        let pos = self.doc.text_pos_at(node.range().start);
        Location {
            file: self.file.clone(),
            line: pos.row,
            column: pos.col,
        }
    }

    fn error(&self, node: Node, message: impl Into<String>) -> SdfError {
        SdfError {
            at: self.at(node),
            element: describe(node),
            message: message.into(),
        }
    }

    fn attributes(&self, node: Node, allowed: &[&str]) -> Result<(), SdfError> {
        for attribute in node.attributes() {
            if !allowed.contains(&attribute.name()) {
                return Err(self.error(
                    node,
                    format!(
                        "attribute `{}` is not a Microkit attribute of this element; allowed: {}",
                        attribute.name(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn required<'a>(&self, node: Node<'a, '_>, name: &str) -> Result<&'a str, SdfError> {
        node.attribute(name)
            .ok_or_else(|| self.error(node, format!("attribute `{name}` is required")))
    }

    fn number(&self, node: Node, name: &str) -> Result<Option<u64>, SdfError> {
        match node.attribute(name) {
            None => Ok(None),
            Some(text) => parse_number(text).map(Some).ok_or_else(|| {
                self.error(
                    node,
                    format!("`{name}=\"{text}\"` is not a number (decimal, or hex with 0x)"),
                )
            }),
        }
    }

    fn boolean(&self, node: Node, name: &str, default: bool) -> Result<bool, SdfError> {
        match node.attribute(name) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(self.error(
                node,
                format!("`{name}=\"{other}\"` must be \"true\" or \"false\""),
            )),
        }
    }

    fn system(&mut self) -> Result<(), SdfError> {
        let root = self.doc.root_element();
        if root.tag_name().name() != "system" {
            return Err(self.error(root, "the root element must be <system>"));
        }
        self.attributes(root, &[])?;
        // Regions first: maps refer to them by name wherever they appear.
        for node in root.children().filter(|n| n.is_element()) {
            if node.tag_name().name() == "memory_region" {
                self.region(node)?;
            }
        }
        for node in root.children().filter(|n| n.is_element()) {
            match node.tag_name().name() {
                "memory_region" => {}
                "protection_domain" => {
                    self.pd(node, None)?;
                }
                "channel" => {}
                other => {
                    return Err(self.error(
                        node,
                        format!(
                            "<{other}> is not an element this system uses; expected memory_region, protection_domain or channel"
                        ),
                    ))
                }
            }
        }
        for node in root.children().filter(|n| n.is_element()) {
            if node.tag_name().name() == "channel" {
                self.channel(node)?;
            }
        }
        self.resolve_caps()
    }

    /// `<cspace>`: `<cap_tcb>`, `<cap_sc>` or `<cap_vspace>`, each with a
    /// `slot` of the PD's root CNode (1 to 63: Microkit's `PD_ROOT_CAP_SIZE`
    /// is 64 and slot 0 holds its own CNode) and the `pd` it is of.
    fn cspace(&mut self, node: Node, holder: usize) -> Result<(), SdfError> {
        self.attributes(node, &[])?;
        for cap in node.children().filter(|n| n.is_element()) {
            let name = cap.tag_name().name();
            if !matches!(name, "cap_tcb" | "cap_sc" | "cap_vspace") {
                return Err(self.error(
                    cap,
                    format!(
                        "<{name}> is not a <cspace> capability; use cap_tcb, cap_sc or cap_vspace"
                    ),
                ));
            }
            self.attributes(cap, &["slot", "pd"])?;
            let pd = self.required(cap, "pd")?.to_string();
            self.pending_caps.push((holder, cap.id(), pd));
        }
        Ok(())
    }

    fn resolve_caps(&mut self) -> Result<(), SdfError> {
        for (holder, id, pd_name) in std::mem::take(&mut self.pending_caps) {
            let node = self.doc.get_node(id).expect("a node of this document");
            let kind = match node.tag_name().name() {
                "cap_tcb" => CapKind::Tcb,
                "cap_sc" => CapKind::Sc,
                _ => CapKind::Vspace,
            };
            let slot = self
                .number(node, "slot")?
                .ok_or_else(|| self.error(node, "attribute `slot` is required"))?;
            let last = tagloan_microkit::limits::PD_ROOT_CAP_SIZE as u64 - 1;
            if slot == 0 || slot > last {
                return Err(self.error(
                    node,
                    format!("slot {slot} is outside 1 to {last}: the root CNode has {} slots and slot 0 holds the PD's own CNode", last + 1),
                ));
            }
            let pd = self.sdf.pd(&pd_name).ok_or_else(|| {
                self.error(
                    node,
                    format!("pd `{pd_name}` is not a protection domain of this system"),
                )
            })?;
            if self.sdf.pds[holder]
                .caps
                .iter()
                .any(|c| u64::from(c.slot) == slot)
            {
                return Err(self.error(
                    node,
                    format!("slot {slot} is already used in this <cspace>"),
                ));
            }
            let at = self.at(node);
            self.sdf.pds[holder].caps.push(CapDecl {
                kind,
                slot: slot as u8,
                pd,
                at,
            });
        }
        Ok(())
    }

    fn region(&mut self, node: Node) -> Result<(), SdfError> {
        self.attributes(
            node,
            &["name", "size", "page_size", "phys_addr", "prefill_path"],
        )?;
        let name = self.required(node, "name")?.to_string();
        let size = self
            .number(node, "size")?
            .ok_or_else(|| self.error(node, "attribute `size` is required"))?;
        let page_size = self.number(node, "page_size")?.unwrap_or(0x1000);
        if page_size != 0x1000 && page_size != 0x20_0000 {
            return Err(self.error(
                node,
                format!(
                    "page_size {page_size:#x} is not supported on AArch64; use 0x1000 or 0x200000"
                ),
            ));
        }
        if size == 0 || !size.is_multiple_of(page_size) {
            return Err(self.error(
                node,
                format!(
                    "size {size:#x} is not a non-zero multiple of the page size {page_size:#x}"
                ),
            ));
        }
        let phys_addr = self.number(node, "phys_addr")?;
        if phys_addr.is_some_and(|p| !p.is_multiple_of(page_size)) {
            return Err(self.error(node, "phys_addr is not aligned to the page size"));
        }
        if self.sdf.region(&name).is_some() {
            return Err(self.error(
                node,
                format!("a memory region named `{name}` already exists; names are unique"),
            ));
        }
        let prefill = match node.attribute("prefill_path") {
            None => None,
            Some(file) => {
                let found = self
                    .dirs
                    .iter()
                    .map(|d| d.join(file))
                    .find(|p| p.is_file())
                    .ok_or_else(|| {
                        self.error(
                            node,
                            format!(
                                "prefill_path `{file}` is not found in {}; build it first (make platforms) or fix the path",
                                self.dirs
                                    .iter()
                                    .map(|d| d.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                let length = std::fs::metadata(&found).map(|m| m.len()).unwrap_or(0);
                if length > size {
                    return Err(self.error(
                        node,
                        format!("prefill file `{file}` has {length} bytes, more than the region's {size}; raise size"),
                    ));
                }
                Some((file.to_string(), found))
            }
        };
        self.sdf.regions.push(RegionDecl {
            name,
            size,
            page_size,
            phys_addr,
            prefill,
            at: self.at(node),
        });
        Ok(())
    }

    fn pd(&mut self, node: Node, parent: Option<usize>) -> Result<usize, SdfError> {
        self.attributes(
            node,
            &[
                "name",
                "priority",
                "passive",
                "id",
                "budget",
                "period",
                "stack_size",
                "cpu",
                "smc",
            ],
        )?;
        let name = self.required(node, "name")?.to_string();
        if self.sdf.pd(&name).is_some() {
            return Err(self.error(
                node,
                format!("a protection domain named `{name}` already exists; names are unique"),
            ));
        }
        let priority = self.number(node, "priority")?.unwrap_or(100);
        if priority > 254 {
            return Err(self.error(
                node,
                format!("priority {priority} is above 254, the highest a PD may have"),
            ));
        }
        let child_id = match (parent, self.number(node, "id")?) {
            (Some(_), None) => {
                return Err(self.error(
                    node,
                    "a child protection domain needs `id`, its number under the parent",
                ))
            }
            (None, Some(_)) => {
                return Err(self.error(
                    node,
                    "`id` is only for child protection domains; nest it in its parent",
                ))
            }
            (Some(_), Some(id)) if id > MAX_CHILD_ID as u64 => {
                return Err(self.error(
                    node,
                    format!("child id {id} is above {MAX_CHILD_ID}, Microkit's largest"),
                ))
            }
            (_, id) => id.map(|i| i as u8),
        };
        if let (Some(parent), Some(id)) = (parent, child_id) {
            if self.sdf.child(parent, id).is_some() {
                return Err(self.error(
                    node,
                    format!(
                        "child id {id} is already used under `{}`",
                        self.sdf.pds[parent].name
                    ),
                ));
            }
        }
        let index = self.sdf.pds.len();
        self.sdf.pds.push(PdDecl {
            name: name.clone(),
            priority: priority as u8,
            passive: self.boolean(node, "passive", false)?,
            child_id,
            parent,
            program_image: String::new(),
            maps: Vec::new(),
            paddr_vars: Vec::new(),
            caps: Vec::new(),
            at: self.at(node),
        });
        for child in node.children().filter(|n| n.is_element()) {
            match child.tag_name().name() {
                "program_image" => {
                    self.attributes(child, &["path"])?;
                    self.sdf.pds[index].program_image = self.required(child, "path")?.to_string();
                }
                "map" => {
                    let map = self.map(child)?;
                    let page = self.sdf.regions[map.region].page_size;
                    let size = self.sdf.regions[map.region].size;
                    if !map.vaddr.is_multiple_of(page) {
                        return Err(self.error(
                            child,
                            format!(
                                "vaddr {:#x} is not aligned to the region's page size {page:#x}",
                                map.vaddr
                            ),
                        ));
                    }
                    if map.vaddr.checked_add(size).is_none_or(|end| end > USER_TOP) {
                        return Err(self.error(
                            child,
                            format!(
                                "the mapping at {:#x} of {size:#x} bytes leaves the user address space (below {USER_TOP:#x})",
                                map.vaddr
                            ),
                        ));
                    }
                    for other in &self.sdf.pds[index].maps {
                        let other_size = self.sdf.regions[other.region].size;
                        if map.vaddr < other.vaddr + other_size && other.vaddr < map.vaddr + size {
                            return Err(self.error(
                                child,
                                format!(
                                    "the mapping at {:#x} overlaps the one of `{}` at {:#x} in `{name}`",
                                    map.vaddr, self.sdf.regions[other.region].name, other.vaddr
                                ),
                            ));
                        }
                    }
                    self.sdf.pds[index].maps.push(map);
                }
                "setvar" => {
                    self.attributes(child, &["symbol", "region_paddr"])?;
                    let symbol = self.required(child, "symbol")?.to_string();
                    let region_name = self.required(child, "region_paddr")?;
                    let region = self.sdf.region(region_name).ok_or_else(|| {
                        self.error(
                            child,
                            format!(
                                "region_paddr names `{region_name}`, which is not a memory region"
                            ),
                        )
                    })?;
                    self.sdf.pds[index].paddr_vars.push((symbol, region));
                }
                "protection_domain" => {
                    self.pd(child, Some(index))?;
                }
                "cspace" => self.cspace(child, index)?,
                other => {
                    return Err(self.error(
                        child,
                        format!(
                            "<{other}> is not an element of a protection domain this system uses"
                        ),
                    ))
                }
            }
        }
        if self.sdf.pds[index].program_image.is_empty() {
            return Err(self.error(node, "<program_image path=\"...\"/> is required"));
        }
        if let Some(parent) = parent {
            let p = &self.sdf.pds[parent];
            if p.priority <= priority as u8 {
                // Microkit does not require this; seL4 fault delivery does
                // not either. But a parent that cannot preempt its child
                // cannot stop a runaway one, so we hold to it.
                return Err(self.error(
                    node,
                    format!(
                        "priority {priority} is not below its parent `{}`'s {}; a fault handler must outrank its children",
                        p.name, p.priority
                    ),
                ));
            }
        }
        Ok(index)
    }

    fn map(&self, node: Node) -> Result<MapDecl, SdfError> {
        self.attributes(
            node,
            &[
                "mr",
                "vaddr",
                "perms",
                "cached",
                "setvar_vaddr",
                "setvar_size",
            ],
        )?;
        let mr = self.required(node, "mr")?;
        let region = self.sdf.region(mr).ok_or_else(|| {
            self.error(
                node,
                format!("mr `{mr}` is not a memory region declared in this file"),
            )
        })?;
        let vaddr = self
            .number(node, "vaddr")?
            .ok_or_else(|| self.error(node, "attribute `vaddr` is required"))?;
        let perms = node.attribute("perms").unwrap_or("rw").to_string();
        if perms.is_empty() || !perms.chars().all(|c| "rwx".contains(c)) {
            return Err(self.error(
                node,
                format!("perms \"{perms}\" must be made of r, w and x"),
            ));
        }
        Ok(MapDecl {
            region,
            vaddr,
            perms,
            setvar_vaddr: node.attribute("setvar_vaddr").map(str::to_string),
            at: self.at(node),
        })
    }

    fn channel(&mut self, node: Node) -> Result<(), SdfError> {
        self.attributes(node, &[])?;
        let ends: Vec<Node> = node.children().filter(|n| n.is_element()).collect();
        if ends.len() != 2 || ends.iter().any(|e| e.tag_name().name() != "end") {
            return Err(self.error(
                node,
                format!(
                    "a channel has exactly two <end> elements; this one has {}",
                    ends.len()
                ),
            ));
        }
        let mut decoded = [EndDecl {
            pd: 0,
            id: 0,
            pp: false,
            notify: true,
        }; 2];
        for (slot, end) in decoded.iter_mut().zip(&ends) {
            self.attributes(*end, &["pd", "id", "pp", "notify"])?;
            let pd_name = self.required(*end, "pd")?;
            let pd = self.sdf.pd(pd_name).ok_or_else(|| {
                self.error(
                    *end,
                    format!("pd `{pd_name}` is not a protection domain of this system"),
                )
            })?;
            let id = self
                .number(*end, "id")?
                .ok_or_else(|| self.error(*end, "attribute `id` is required"))?;
            if id > MAX_CHANNEL_ID as u64 {
                return Err(self.error(
                    *end,
                    format!(
                        "channel id {id} is above {MAX_CHANNEL_ID}: Microkit has {MAX_CHANNELS} channel ids per PD, 0 to {MAX_CHANNEL_ID}"
                    ),
                ));
            }
            if self.sdf.peer(pd, id as u8).is_some() {
                return Err(self.error(
                    *end,
                    format!(
                        "channel id {id} is already used in `{pd_name}`; ids are unique per PD"
                    ),
                ));
            }
            *slot = EndDecl {
                pd,
                id: id as u8,
                pp: self.boolean(*end, "pp", false)?,
                notify: self.boolean(*end, "notify", true)?,
            };
        }
        if decoded[0].pd == decoded[1].pd {
            return Err(self.error(node, "a channel joins two different protection domains"));
        }
        if decoded[0].pp && decoded[1].pp {
            return Err(self.error(
                node,
                "pp=\"true\" on both ends; only the caller's end has it",
            ));
        }
        for (caller, callee) in [(decoded[0], decoded[1]), (decoded[1], decoded[0])] {
            if caller.pp {
                let (a, b) = (&self.sdf.pds[caller.pd], &self.sdf.pds[callee.pd]);
                if b.priority <= a.priority {
                    return Err(self.error(
                        node,
                        format!(
                            "`{}` (priority {}) may call `{}` (priority {}): a PPC must go to a strictly higher priority; raise `{}` or lower `{}`",
                            a.name, a.priority, b.name, b.priority, b.name, a.name
                        ),
                    ));
                }
            }
        }
        self.sdf.channels.push(ChannelDecl {
            ends: decoded,
            at: self.at(node),
        });
        Ok(())
    }

    /// Whole-system rules.
    fn check(&self) -> Result<(), SdfError> {
        for (index, pd) in self.sdf.pds.iter().enumerate() {
            let is_callee = self.sdf.channels.iter().any(|c| {
                c.ends
                    .iter()
                    .zip(c.ends.iter().rev())
                    .any(|(me, other)| me.pd == index && other.pp)
            });
            if pd.passive && !is_callee {
                return Err(SdfError {
                    at: pd.at.clone(),
                    element: format!("<protection_domain name=\"{}\">", pd.name),
                    message: "a passive PD runs only on its callers' PPCs, and no channel lets anyone call it".into(),
                });
            }
        }
        Ok(())
    }
}
