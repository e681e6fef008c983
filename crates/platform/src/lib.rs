//! Device tree to pool layout.
//!
//! The memory server learns the physical layout from a device tree blob. It
//! uses the tag-storage binding of the RFC (patch 13): a depth-1 node named
//! `metadata@…` with `compatible = "arm,mte-tag-storage"`, one `reg` tuple,
//! a `block-size`, and a `memory` phandle to a depth-1 `device_type =
//! "memory"` node. Every rule of patches 13, 14 and 18 is checked, and the
//! ones the digest says the RFC forgot (overlaps, two tag nodes for one
//! memory node, a `reg` that is not page aligned).
//!
//! Tag storage parsing is all-or-nothing, as in the RFC: one bad tag node
//! turns reuse off. The memory nodes are still served, as memory without tag
//! storage, all tag storage stays reserved (unmanaged), and the result says
//! which node broke which rule. A blob that cannot be read at all, or has no
//! usable memory node, is an error: the server has nothing to manage.
//!
//! The parser is `flat_device_tree`, a fork of `fdt` that reports malformed
//! blobs as errors instead of panicking; random and mutated blobs are tested.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

use flat_device_tree::node::FdtNode;
use flat_device_tree::Fdt;
use tagloan_pool::{Layout, LayoutError, RegionSpec, TagSpec, MAX_REGIONS};

/// Frame size: the RFC's `PAGE_SIZE` with 4 KiB pages.
pub const PAGE_BYTES: u64 = 4096;
/// Pageblock size: tag storage start and size must be multiples (patch 14).
pub const PAGEBLOCK_BYTES: u64 = 2 << 20;
/// The compatible string of the binding.
pub const COMPATIBLE: &str = "arm,mte-tag-storage";

/// A node name, kept for messages (truncated past 63 bytes).
pub type NodeName = heapless::String<64>;

fn node_name(name: &str) -> NodeName {
    let mut out = NodeName::new();
    for c in name.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The rule a tag storage node broke. Messages follow the RFC's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// More than 32 tag storage nodes.
    TooManyRegions,
    /// No `reg` property.
    MissingReg,
    /// `reg` is not exactly one (address, size) tuple.
    RegNotOneTuple,
    /// The size is zero pages.
    ZeroSize,
    /// Start or size is not a multiple of 4 KiB (the RFC truncated it).
    NotPageAligned,
    /// Start or size is not a multiple of the 2 MiB pageblock.
    NotPageblockAligned,
    /// No `memory` phandle.
    MissingMemoryPhandle,
    /// The phandle names no depth-1 `device_type = "memory"` node.
    MemoryNodeNotFound,
    /// The memory node has no usable single-tuple range.
    InvalidMemoryNode,
    /// Tag size times 32 differs from the memory size.
    SizeRatio,
    /// `block-size` missing, zero, or not one cell.
    BlockSize,
    /// The region is not a multiple of the block.
    NotBlockMultiple,
    /// Two tag storage regions overlap.
    TagRegionsOverlap,
    /// A tag storage region overlaps data memory.
    TagOverlapsMemory,
    /// Two tag storage nodes name the same memory node.
    TwoTagNodesForOneMemory,
}

impl Rule {
    /// The message, after the RFC's where it has one.
    pub fn message(self) -> &'static str {
        match self {
            Rule::TooManyRegions => "Maximum number of tag storage regions exceeded (32)",
            Rule::MissingReg => "Invalid metadata node: no 'reg' property",
            Rule::RegNotOneTuple => {
                "Invalid node: 'reg' must hold exactly one (address, size) tuple"
            }
            Rule::ZeroSize => "Invalid node: tag storage size is zero pages",
            Rule::NotPageAligned => "Tag storage region not aligned to the 4 KiB page",
            Rule::NotPageblockAligned => "Tag storage region not aligned to 0x200000",
            Rule::MissingMemoryPhandle => "Missing 'memory' property in the tag storage node",
            Rule::MemoryNodeNotFound => "Associated memory node not found",
            Rule::InvalidMemoryNode => "Invalid address for associated data memory node",
            Rule::SizeRatio => "Tag region doesn't cover exactly the corresponding memory region",
            Rule::BlockSize => "Invalid or missing 'block-size' property",
            Rule::NotBlockMultiple => {
                "Tag storage region size is not a multiple of allocation block size"
            }
            Rule::TagRegionsOverlap => "Tag storage regions overlap",
            Rule::TagOverlapsMemory => "Tag storage region overlaps data memory",
            Rule::TwoTagNodesForOneMemory => "Two tag storage nodes describe the same memory node",
        }
    }

    /// How to fix it.
    pub fn fix(self) -> &'static str {
        match self {
            Rule::TooManyRegions => "merge regions or drop tag storage nodes",
            Rule::MissingReg | Rule::RegNotOneTuple => {
                "give reg = <address size> with the root's cell counts"
            }
            Rule::ZeroSize => "give the tag storage a size of at least one page",
            Rule::NotPageAligned | Rule::NotPageblockAligned => {
                "align start and size of the tag storage to 2 MiB"
            }
            Rule::MissingMemoryPhandle => "add memory = <&phandle> naming the tagged memory node",
            Rule::MemoryNodeNotFound => {
                "point memory at a top-level node with device_type = \"memory\""
            }
            Rule::InvalidMemoryNode => "give the memory node one page-aligned reg tuple",
            Rule::SizeRatio => "make the tag storage exactly 1/32 of its memory node",
            Rule::BlockSize => "add block-size = <bytes>, non-zero, one cell",
            Rule::NotBlockMultiple => "make the region a multiple of lcm(4 KiB, block-size)",
            Rule::TagRegionsOverlap | Rule::TagOverlapsMemory => "make every region disjoint",
            Rule::TwoTagNodesForOneMemory => "describe each memory node's tags with one node",
        }
    }
}

/// Why tag storage reuse is off: the node, the rule, and the values seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagStorageError {
    /// The tag storage node at fault.
    pub node: NodeName,
    /// The rule it broke.
    pub rule: Rule,
    /// The values the rule looked at (start, size, or what it compared).
    pub values: [u64; 2],
}

impl fmt::Display for TagStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (values {:#x}, {:#x}); {}. MTE tag storage management disabled",
            self.node,
            self.rule.message(),
            self.values[0],
            self.values[1],
            self.rule.fix()
        )
    }
}

/// Why no layout could be built at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The blob is not a readable device tree.
    Malformed { reason: &'static str },
    /// No depth-1 memory node with a usable range.
    NoMemory,
    /// A memory node's `reg` is unreadable, empty or not page aligned.
    BadMemoryNode {
        node: NodeName,
        start: u64,
        size: u64,
    },
    /// More memory ranges than the pool's 32 regions.
    TooManyMemoryRanges,
    /// The memory ranges do not form a valid layout (e.g. they overlap).
    Layout(LayoutError),
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Malformed { reason } => {
                write!(f, "the device tree blob is malformed: {reason}; rebuild it with dtc")
            }
            PlatformError::NoMemory => write!(
                f,
                "the device tree has no top-level node with device_type = \"memory\" and a reg; add one"
            ),
            PlatformError::BadMemoryNode { node, start, size } => write!(
                f,
                "{node}: memory range {start:#x}+{size:#x} is empty, unreadable or not 4 KiB aligned; fix its reg"
            ),
            PlatformError::TooManyMemoryRanges => {
                write!(f, "more than {MAX_REGIONS} memory ranges; merge adjacent ones")
            }
            PlatformError::Layout(error) => write!(f, "{error}"),
        }
    }
}

/// The state of tag storage reuse after parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagStorage {
    /// Every tag storage node is valid; the pool lends and recalls it.
    Enabled,
    /// No tag storage node: memory is served without tag storage.
    NoneFound,
    /// MTE is off: tag storage became ordinary data memory (patch 16).
    MteOff,
    /// A node broke a rule: reuse is off, tag storage stays reserved.
    Disabled(TagStorageError),
}

/// A parsed, validated platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The layout for the pool.
    pub layout: Layout,
    /// Whether tag storage reuse is on, and if not why.
    pub tag_storage: TagStorage,
    /// The regions, as given to [`Layout::new`].
    pub regions: heapless::Vec<RegionSpec, MAX_REGIONS>,
}

#[derive(Clone, Copy)]
struct Cells {
    address: usize,
    size: usize,
}

fn read_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn read_cells(bytes: &[u8], count: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..count {
        let cell = read_u32(bytes.get(i * 4..)?)?;
        value = value.checked_shl(32)? | u64::from(cell);
    }
    Some(value)
}

/// The (address, size) tuples of a `reg`-like property, if it is well formed.
fn tuples(value: &[u8], cells: Cells) -> Option<heapless::Vec<(u64, u64), 8>> {
    let tuple_bytes = (cells.address + cells.size) * 4;
    if tuple_bytes == 0 || !value.len().is_multiple_of(tuple_bytes) {
        return None;
    }
    let mut out = heapless::Vec::new();
    for chunk in value.chunks(tuple_bytes) {
        let address = read_cells(chunk, cells.address)?;
        let size = read_cells(&chunk[cells.address * 4..], cells.size)?;
        out.push((address, size)).ok()?;
    }
    Some(out)
}

fn phandle(node: &FdtNode<'_, '_>) -> Option<u32> {
    node.property("phandle")
        .or_else(|| node.property("linux,phandle"))
        .and_then(|p| (p.value.len() == 4).then(|| read_u32(p.value)).flatten())
}

fn is_memory(node: &FdtNode<'_, '_>) -> bool {
    node.property("device_type").and_then(|p| p.as_str()) == Some("memory")
}

fn is_tag_storage(node: &FdtNode<'_, '_>) -> bool {
    node.name.contains("metadata")
        && node
            .compatible()
            .is_some_and(|c| c.all().any(|s| s == COMPATIBLE))
}

/// The usable range of a memory node: `linux,usable-memory` if present, else `reg`.
fn memory_ranges(node: &FdtNode<'_, '_>, cells: Cells) -> Option<heapless::Vec<(u64, u64), 8>> {
    let property = node
        .property("linux,usable-memory")
        .or_else(|| node.property("reg"))?;
    tuples(property.value, cells)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

struct TagNode {
    tags: (u64, u64),
    memory_phandle: u32,
    memory: (u64, u64),
    block_frames: u64,
}

/// Parses `dtb`. `mte` says whether the CPU implements MTE with tags in
/// this storage; without it tag storage becomes ordinary memory.
pub fn parse(dtb: &[u8], mte: bool) -> Result<Platform, PlatformError> {
    let fdt = Fdt::new(dtb).map_err(|_| PlatformError::Malformed {
        reason: "bad header or size",
    })?;
    let root = fdt.find_node("/").ok_or(PlatformError::Malformed {
        reason: "no root node",
    })?;
    let cell = |name: &str, default: usize| -> Result<usize, PlatformError> {
        match root.property(name) {
            None => Ok(default),
            Some(p) => match read_u32(p.value) {
                Some(n @ 1..=2) if p.value.len() == 4 => Ok(n as usize),
                _ => Err(PlatformError::Malformed {
                    reason: "root #address-cells or #size-cells is not 1 or 2",
                }),
            },
        }
    };
    let cells = Cells {
        address: cell("#address-cells", 2)?,
        size: cell("#size-cells", 1)?,
    };

    // Memory nodes: (name, phandle, range). Bounded like the pool's regions.
    let mut memories: heapless::Vec<(NodeName, Option<u32>, (u64, u64)), MAX_REGIONS> =
        heapless::Vec::new();
    for node in root.children().filter(is_memory) {
        let bad = |start, size| PlatformError::BadMemoryNode {
            node: node_name(node.name),
            start,
            size,
        };
        let ranges = memory_ranges(&node, cells).ok_or(bad(0, 0))?;
        for &(start, size) in &ranges {
            if size < PAGE_BYTES
                || start % PAGE_BYTES != 0
                || size % PAGE_BYTES != 0
                || start.checked_add(size).is_none()
            {
                return Err(bad(start, size));
            }
            memories
                .push((node_name(node.name), phandle(&node), (start, size)))
                .map_err(|_| PlatformError::TooManyMemoryRanges)?;
        }
    }
    if memories.is_empty() {
        return Err(PlatformError::NoMemory);
    }

    let tag_nodes = validate_tag_nodes(&root, cells, &memories);
    let mut regions: heapless::Vec<RegionSpec, MAX_REGIONS> = heapless::Vec::new();
    let tag_storage = match tag_nodes {
        Ok(nodes) if nodes.is_empty() => TagStorage::NoneFound,
        Ok(nodes) => {
            for (_, _, range) in &memories {
                let tags = nodes.iter().find(|t| t.memory == *range).map(|t| TagSpec {
                    base: t.tags.0 / PAGE_BYTES,
                    frames: t.tags.1 / PAGE_BYTES,
                    block_frames: t.block_frames,
                });
                let spec = RegionSpec {
                    data_base: range.0 / PAGE_BYTES,
                    data_frames: range.1 / PAGE_BYTES,
                    tags: if mte { tags } else { None },
                };
                regions
                    .push(spec)
                    .map_err(|_| PlatformError::TooManyMemoryRanges)?;
            }
            if !mte {
                // Patch 16: tag storage becomes ordinary movable memory.
                for t in &nodes {
                    let spec = RegionSpec {
                        data_base: t.tags.0 / PAGE_BYTES,
                        data_frames: t.tags.1 / PAGE_BYTES,
                        tags: None,
                    };
                    regions
                        .push(spec)
                        .map_err(|_| PlatformError::TooManyMemoryRanges)?;
                }
            }
            if mte {
                TagStorage::Enabled
            } else {
                TagStorage::MteOff
            }
        }
        Err(error) => TagStorage::Disabled(error),
    };
    if regions.is_empty() {
        for (_, _, range) in &memories {
            let spec = RegionSpec {
                data_base: range.0 / PAGE_BYTES,
                data_frames: range.1 / PAGE_BYTES,
                tags: None,
            };
            regions
                .push(spec)
                .map_err(|_| PlatformError::TooManyMemoryRanges)?;
        }
    }
    let layout = Layout::new(&regions).map_err(PlatformError::Layout)?;
    Ok(Platform {
        layout,
        tag_storage,
        regions,
    })
}

fn validate_tag_nodes(
    root: &FdtNode<'_, '_>,
    cells: Cells,
    memories: &[(NodeName, Option<u32>, (u64, u64))],
) -> Result<heapless::Vec<TagNode, MAX_REGIONS>, TagStorageError> {
    let mut nodes: heapless::Vec<TagNode, MAX_REGIONS> = heapless::Vec::new();
    for node in root.children().filter(is_tag_storage) {
        let name = node_name(node.name);
        let fail = |rule, values| TagStorageError {
            node: name.clone(),
            rule,
            values,
        };
        if nodes.is_full() {
            return Err(fail(
                Rule::TooManyRegions,
                [MAX_REGIONS as u64 + 1, MAX_REGIONS as u64],
            ));
        }
        // Steps of patch 13 and 14, in the RFC's order.
        let reg = node.property("reg").ok_or(fail(Rule::MissingReg, [0, 0]))?;
        let reg = tuples(reg.value, cells)
            .ok_or(fail(Rule::RegNotOneTuple, [reg.value.len() as u64, 0]))?;
        let &[(start, size)] = reg.as_slice() else {
            return Err(fail(Rule::RegNotOneTuple, [reg.len() as u64, 1]));
        };
        if size / PAGE_BYTES == 0 {
            return Err(fail(Rule::ZeroSize, [start, size]));
        }
        if start % PAGE_BYTES != 0 || size % PAGE_BYTES != 0 {
            return Err(fail(Rule::NotPageAligned, [start, size]));
        }
        if (start | size) % PAGEBLOCK_BYTES != 0 {
            return Err(fail(Rule::NotPageblockAligned, [start, size]));
        }
        let memory_phandle = node
            .property("memory")
            .and_then(|p| read_u32(p.value))
            .ok_or(fail(Rule::MissingMemoryPhandle, [start, size]))?;
        let memory = memories
            .iter()
            .filter(|(_, handle, _)| *handle == Some(memory_phandle))
            .map(|(_, _, range)| *range);
        let mut found = memory.clone();
        let memory = match (found.next(), found.next()) {
            (Some(range), None) => range,
            (None, _) => {
                // A phandle to a node that is not memory, or to nothing.
                return Err(fail(
                    Rule::MemoryNodeNotFound,
                    [u64::from(memory_phandle), 0],
                ));
            }
            // The memory node has several ranges: the RFC wants one.
            (Some(range), Some(_)) => {
                return Err(fail(Rule::InvalidMemoryNode, [range.0, range.1]))
            }
        };
        if size.checked_mul(32) != Some(memory.1) {
            return Err(fail(Rule::SizeRatio, [size, memory.1]));
        }
        let block_bytes = match node.property("block-size") {
            Some(p) if p.value.len() == 4 => u64::from(read_u32(p.value).unwrap_or(0)),
            _ => 0,
        };
        if block_bytes == 0 {
            return Err(fail(Rule::BlockSize, [block_bytes, 0]));
        }
        // lcm(PAGE_SIZE, block-size) in pages, as get_block_size_pages().
        let block_frames = block_bytes / gcd(PAGE_BYTES, block_bytes);
        if !(size / PAGE_BYTES).is_multiple_of(block_frames) {
            return Err(fail(
                Rule::NotBlockMultiple,
                [size / PAGE_BYTES, block_frames],
            ));
        }
        // The rules the RFC forgot.
        for other in &nodes {
            if overlaps(other.tags, (start, size)) {
                return Err(fail(Rule::TagRegionsOverlap, [start, other.tags.0]));
            }
            if other.memory_phandle == memory_phandle {
                return Err(fail(
                    Rule::TwoTagNodesForOneMemory,
                    [u64::from(memory_phandle), 0],
                ));
            }
        }
        if let Some((_, _, m)) = memories
            .iter()
            .find(|(_, _, m)| overlaps(*m, (start, size)))
        {
            return Err(fail(Rule::TagOverlapsMemory, [start, m.0]));
        }
        let _ = nodes.push(TagNode {
            tags: (start, size),
            memory_phandle,
            memory,
            block_frames,
        });
    }
    Ok(nodes)
}
