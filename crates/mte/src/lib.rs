//! MTE tag arithmetic, and the machine interface the pool core drives: the
//! frame operations ([`Kernel`]) and the tag operations ([`TagOps`]).
//!
//! The Memory Tagging Extension keeps a 4-bit *allocation tag* for every
//! 16-byte granule of tagged memory, and compares it with the *logical tag*
//! in bits 59:56 of the pointer on every access. The allocation tags live in
//! the tag storage carve-out: the tags of one 4 KiB data frame take 128 bytes,
//! granule `g` being nibble `g % 2` (low nibble first) of byte `g / 2`.
//!
//! This crate is `no_std` and pure, and the lowest of the workspace: it is
//! shared by the pool core (which drives [`Kernel`] and [`TagOps`]), the
//! RAM-backed machine of the simulator and the pool's tests (`tagloan-ram`,
//! which stores tags inside simulated tag storage frames), the seL4 backend,
//! and the hardware backend ([`hw`], aarch64 only, the real instructions).
#![no_std]
#![deny(unsafe_code)]

#[cfg(target_arch = "aarch64")]
pub mod hw;

/// Size of a frame, the unit of mapping and of allocation.
pub const FRAME_BYTES: usize = 4096;
/// Size of an MTE granule: one tag covers this many bytes.
pub const GRANULE_BYTES: usize = 16;
/// Granules in one frame.
pub const GRANULES_PER_FRAME: usize = FRAME_BYTES / GRANULE_BYTES;
/// Bytes of tag storage that hold the tags of one data frame (4 bits per granule).
pub const TAG_BYTES_PER_FRAME: usize = GRANULES_PER_FRAME / 2;
/// Data frames whose tags fit in one tag storage frame.
pub const DATA_FRAMES_PER_TAG_FRAME: u64 = (FRAME_BYTES / TAG_BYTES_PER_FRAME) as u64;

/// The tags of one data frame, packed as they sit in tag storage.
pub type FrameTags = [u8; TAG_BYTES_PER_FRAME];

/// Frame tags with every granule's tag zero.
pub const ZERO_TAGS: FrameTags = [0; TAG_BYTES_PER_FRAME];

/// A 4-bit MTE tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Tag(u8);

impl Tag {
    /// The tag every granule has after zeroing.
    pub const ZERO: Tag = Tag(0);

    /// The tag in the low four bits of `value`; higher bits are ignored.
    pub const fn from_low_bits(value: u8) -> Tag {
        Tag(value & 0xf)
    }

    /// The tag as a number from 0 to 15.
    pub const fn value(self) -> u8 {
        self.0
    }
}

const POINTER_TAG_SHIFT: u32 = 56;
const POINTER_TAG_MASK: u64 = 0xf << POINTER_TAG_SHIFT;

/// The logical tag carried in bits 59:56 of a pointer.
pub const fn pointer_tag(pointer: u64) -> Tag {
    Tag(((pointer & POINTER_TAG_MASK) >> POINTER_TAG_SHIFT) as u8)
}

/// `pointer` with its logical tag (bits 59:56) replaced by `tag`.
pub const fn with_pointer_tag(pointer: u64, tag: Tag) -> u64 {
    (pointer & !POINTER_TAG_MASK) | ((tag.0 as u64) << POINTER_TAG_SHIFT)
}

/// `pointer` with its top byte cleared: the address the MMU translates when
/// top-byte-ignore is on.
pub const fn untagged_address(pointer: u64) -> u64 {
    pointer & 0x00ff_ffff_ffff_ffff
}

/// The allocation tag of granule `granule` (0..256) in a frame's packed tags.
pub fn granule_tag(tags: &FrameTags, granule: usize) -> Tag {
    let byte = tags[granule / 2];
    let nibble = if granule.is_multiple_of(2) {
        byte & 0xf
    } else {
        byte >> 4
    };
    Tag(nibble)
}

/// Sets the allocation tag of granule `granule` (0..256) in packed tags.
pub fn set_granule_tag(tags: &mut FrameTags, granule: usize, tag: Tag) {
    let byte = &mut tags[granule / 2];
    *byte = if granule.is_multiple_of(2) {
        (*byte & 0xf0) | tag.0
    } else {
        (*byte & 0x0f) | (tag.0 << 4)
    };
}

/// Packed tags with every granule tagged `tag`.
pub fn uniform_tags(tag: Tag) -> FrameTags {
    [tag.0 | (tag.0 << 4); TAG_BYTES_PER_FRAME]
}

/// Physical frame number: a physical address divided by [`FRAME_BYTES`].
pub type Pfn = u64;

/// A client's heap window: `pages` frames from `base`. The one place window
/// ends and overlaps are computed (the client table, the pool, the system
/// checks all use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First address (4 KiB aligned where a window is valid).
    pub base: u64,
    /// Frames in it.
    pub pages: u32,
}

impl Window {
    /// The first address past the window, or `None` if it leaves the 64-bit
    /// address space.
    pub const fn end(&self) -> Option<u64> {
        self.base
            .checked_add(self.pages as u64 * FRAME_BYTES as u64)
    }

    /// Whether the window shares an address with `[start, end)`. A window
    /// whose end overflows reaches the top of the address space.
    pub const fn overlaps(&self, start: u64, end: u64) -> bool {
        let own_end = match self.end() {
            Some(e) => e,
            None => u64::MAX,
        };
        self.base < end && start < own_end
    }

    /// Whether two windows share an address.
    pub const fn overlaps_window(&self, other: &Window) -> bool {
        let other_end = match other.end() {
            Some(e) => e,
            None => u64::MAX,
        };
        self.overlaps(other.base, other_end)
    }
}

/// How a client maps a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read-write, untagged.
    Normal,
    /// Read-write with the MTE tagged memory attribute.
    Tagged,
    /// Mapped but inaccessible: any access faults to the fault handler.
    NoAccess,
}

/// The frame operations the memory server performs on behalf of the pool.
/// `client` is the client's index in the system's client table.
///
/// Implementations must not fail: the seL4 backend provisions page tables for
/// every client window at start-up, so mapping a page inside a window always
/// succeeds. `map` replaces nothing; the pool unmaps first.
pub trait Kernel {
    /// Maps `frame` into `client`'s VSpace at `vaddr`.
    fn map(&mut self, client: u8, vaddr: u64, frame: Pfn, access: Access);
    /// Removes the mapping at `vaddr` from `client`'s VSpace.
    fn unmap(&mut self, client: u8, vaddr: u64);
    /// Copies the data (not the tags) of `source` to `destination`.
    fn copy_frame(&mut self, source: Pfn, destination: Pfn);
    /// Zeroes the data of `frame`.
    fn zero_frame(&mut self, frame: Pfn);
    /// Reads `bytes.len()` bytes of `frame` at `offset` through a Normal
    /// (untagged) mapping: what the frame holds as data. The server reads a
    /// tag storage frame this way to see where the hardware put the tags
    /// (its start-up carve-out probe and its tag audit).
    fn read_frame(&mut self, frame: Pfn, offset: usize, bytes: &mut [u8]);
}

/// A data memory region and its tag storage: where each data frame's tags
/// live (DESIGN §2: the tags of frame `p` start at byte
/// `tag_base + (p - data_base) * 128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TagRegion {
    /// First data frame.
    pub data_base: Pfn,
    /// Data frames in the region.
    pub data_frames: u32,
    /// First frame of its tag storage.
    pub tag_base: Pfn,
}

impl TagRegion {
    /// The tag storage frame holding the tags of `pfn` and the byte offset
    /// in it, if `pfn` is one of the region's data frames.
    pub fn tag_location(&self, pfn: Pfn) -> Option<(Pfn, usize)> {
        if pfn < self.data_base || pfn >= self.data_base + u64::from(self.data_frames) {
            return None;
        }
        let byte = (pfn - self.data_base) * TAG_BYTES_PER_FRAME as u64;
        Some((
            self.tag_base + byte / FRAME_BYTES as u64,
            (byte % FRAME_BYTES as u64) as usize,
        ))
    }
}

/// Tag operations on physical frames, as a server performs them.
///
/// The simulator implements this over simulated RAM, with the tags stored in
/// the tag storage frames; the hardware backend implements it with IRG, STG,
/// LDG and DC GZVA. Callers guarantee that `frame`'s tag block is reserved
/// (invariant I2): on real hardware, writing tags whose block is lent as data
/// corrupts that data.
pub trait TagOps {
    /// Sets every granule tag of `frame` to zero.
    fn zero_tags(&mut self, frame: Pfn);
    /// Copies the tags of `source` onto `destination`.
    fn copy_tags(&mut self, source: Pfn, destination: Pfn);
    /// Reads the packed tags of `frame`.
    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags);
    /// Writes the packed tags of `frame`.
    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags);

    /// Tag storage clean, before tag storage frame `tag_frame` holds tags
    /// (its block is being reserved): cleans and invalidates its data cache
    /// lines, so that no dirty line a borrower left is written back over
    /// the tags later (the RFC's patch 26: `dcache_inval_poc` of the block).
    fn clean_for_tags(&mut self, tag_frame: Pfn);
    /// Tag storage clean, before the tag storage of data frame `frame` may
    /// hold data again (`frame` stops being tagged): cleans and invalidates
    /// the cache lines of its tags, so that no dirty tag line is written
    /// back over a borrower's data later (patch 26: `dcache_inval_tags_poc`
    /// on every tagged free).
    fn clean_tags(&mut self, frame: Pfn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_frame_holds_the_tags_of_thirty_two_data_frames() {
        assert_eq!(TAG_BYTES_PER_FRAME, 128);
        assert_eq!(DATA_FRAMES_PER_TAG_FRAME, 32);
    }

    #[test]
    fn granule_tags_pack_low_nibble_first() {
        let mut tags = ZERO_TAGS;
        set_granule_tag(&mut tags, 0, Tag::from_low_bits(0x3));
        set_granule_tag(&mut tags, 1, Tag::from_low_bits(0xa));
        set_granule_tag(&mut tags, 255, Tag::from_low_bits(0xf));
        assert_eq!(tags[0], 0xa3);
        assert_eq!(tags[127], 0xf0);
        assert_eq!(granule_tag(&tags, 0).value(), 0x3);
        assert_eq!(granule_tag(&tags, 1).value(), 0xa);
        assert_eq!(granule_tag(&tags, 254).value(), 0);
        assert_eq!(granule_tag(&tags, 255).value(), 0xf);
    }

    #[test]
    fn pointer_tag_lives_in_bits_59_to_56() {
        let pointer = 0x0000_1234_5678_9ab0;
        let tagged = with_pointer_tag(pointer, Tag::from_low_bits(0xb));
        assert_eq!(tagged, 0x0b00_1234_5678_9ab0);
        assert_eq!(pointer_tag(tagged).value(), 0xb);
        assert_eq!(untagged_address(tagged), pointer);
        assert_eq!(with_pointer_tag(tagged, Tag::ZERO), pointer);
    }

    #[test]
    fn uniform_tags_set_every_granule() {
        let tags = uniform_tags(Tag::from_low_bits(7));
        for granule in 0..GRANULES_PER_FRAME {
            assert_eq!(granule_tag(&tags, granule).value(), 7);
        }
    }
}
