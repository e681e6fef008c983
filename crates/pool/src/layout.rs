//! The physical layout: data regions, their tag storage regions, tag blocks,
//! and the arithmetic between frames and the tag bytes that describe them.
//!
//! Every managed frame gets a dense *frame index*. Region `r` owns the indices
//! of its data frames followed by those of its tag storage frames. A *tag
//! block* is the unit of reservation (`block_frames` tag frames); its *group*
//! is the `32 * block_frames` data frames whose tags it holds.

use tagloan_mte::{Pfn, DATA_FRAMES_PER_TAG_FRAME};

/// At most this many regions, as in the RFC (`MAX_TAG_REGIONS`).
pub const MAX_REGIONS: usize = 32;

/// Dense index of a managed frame, `0..Layout::frames_total()`.
pub type FrameIndex = u32;

/// Global index of a tag block, `0..Layout::blocks_total()`.
pub type BlockId = u32;

/// Frame indices are stored in 27 bits of a frame entry; this one means "none".
pub(crate) const NIL: FrameIndex = (1 << 27) - 1;

/// The most frames one pool can manage: 2^27 - 1 frames, just under 512 GiB.
pub const MAX_FRAMES: u64 = NIL as u64;

/// A region as the caller describes it: data memory, and optionally the tag
/// storage that holds its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    /// First data frame.
    pub data_base: Pfn,
    /// Number of data frames.
    pub data_frames: u64,
    /// The tag storage of this memory, if it can be tagged.
    pub tags: Option<TagSpec>,
}

/// Tag storage belonging to one data region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagSpec {
    /// First tag storage frame.
    pub base: Pfn,
    /// Number of tag storage frames: exactly `data_frames / 32`.
    pub frames: u64,
    /// Tag block size in frames: `lcm(4 KiB, block-size) / 4 KiB`.
    pub block_frames: u64,
}

/// Why a layout was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No region was given.
    NoRegions,
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions { count: usize },
    /// A region has no data frames.
    EmptyRegion { region: usize },
    /// `tag frames * 32 != data frames`.
    TagRatio {
        region: usize,
        data_frames: u64,
        tag_frames: u64,
    },
    /// The block size is zero, or does not divide the tag region.
    BlockSize {
        region: usize,
        tag_frames: u64,
        block_frames: u64,
    },
    /// Two ranges of frames overlap.
    Overlap {
        first: Pfn,
        second: Pfn,
        frames: u64,
    },
    /// More frames than a frame entry can index.
    TooManyFrames { frames: u64 },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LayoutError::NoRegions => write!(f, "layout has no memory region; give at least one"),
            LayoutError::TooManyRegions { count } => write!(
                f,
                "layout has {count} regions, more than the {MAX_REGIONS} allowed; merge adjacent regions"
            ),
            LayoutError::EmptyRegion { region } => {
                write!(f, "region {region} has no data frames; remove it or give it a size")
            }
            LayoutError::TagRatio { region, data_frames, tag_frames } => write!(
                f,
                "region {region}: {tag_frames} tag frames do not cover {data_frames} data frames at 1:32; \
                 tag storage must be exactly data/32"
            ),
            LayoutError::BlockSize { region, tag_frames, block_frames } => write!(
                f,
                "region {region}: tag block of {block_frames} frames does not divide {tag_frames} tag frames; \
                 the block must be non-zero and divide the region"
            ),
            LayoutError::Overlap { first, second, frames } => write!(
                f,
                "frame ranges at pfn {first:#x} and {second:#x} overlap ({frames} frames); regions must be disjoint"
            ),
            LayoutError::TooManyFrames { frames } => write!(
                f,
                "layout has {frames} frames, more than the {MAX_FRAMES} a frame entry can index"
            ),
        }
    }
}

/// Which pool a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Ordinary data memory.
    Data,
    /// MTE tag storage, lendable to untagged movable data.
    Tag,
}

/// Where a frame index points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Region number.
    pub region: usize,
    /// Data memory or tag storage.
    pub pool: PoolKind,
    /// Offset of the frame in its span (data or tag) of the region.
    pub offset: u32,
}

/// Division of a frame offset by a region's block or group size without a
/// divide instruction, which the hottest lookups (the tag block of a data
/// frame) would otherwise pay on every call: a shift for a power of two,
/// else a multiply-high by `ceil(2^64 / d)`, exact for every `u32` dividend
/// (Lemire, Kaser and Kurz, "Faster Remainder by Direct Computation", 2019,
/// theorem 1 with N = 32 and F = 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Divisor {
    /// `ceil(2^64 / d)`, or 0 when `d` is a power of two.
    magic: u64,
    /// `log2(d)` when `d` is a power of two.
    shift: u32,
}

impl Divisor {
    pub(crate) const fn new(divisor: u32) -> Divisor {
        if divisor.is_power_of_two() {
            Divisor {
                magic: 0,
                shift: divisor.trailing_zeros(),
            }
        } else {
            // Not a power of two, so at least 3: the quotient fits.
            Divisor {
                magic: u64::MAX / divisor as u64 + 1,
                shift: 0,
            }
        }
    }

    #[inline]
    pub(crate) const fn divide(self, dividend: u32) -> u32 {
        if self.magic == 0 {
            dividend >> self.shift
        } else {
            ((self.magic as u128 * dividend as u128) >> 64) as u32
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Region {
    pub data_base: Pfn,
    pub data_frames: u32,
    pub data_first: FrameIndex,
    pub tag_base: Pfn,
    /// Zero when the region cannot be tagged.
    pub tag_frames: u32,
    pub tag_first: FrameIndex,
    pub block_frames: u32,
    pub first_block: BlockId,
    /// Division by `block_frames` and by `group_frames()`.
    pub per_block: Divisor,
    pub per_group: Divisor,
}

impl Region {
    pub fn taggable(&self) -> bool {
        self.tag_frames != 0
    }
    pub fn group_frames(&self) -> u32 {
        self.block_frames * DATA_FRAMES_PER_TAG_FRAME as u32
    }
    pub fn blocks(&self) -> u32 {
        if self.taggable() {
            self.tag_frames / self.block_frames
        } else {
            0
        }
    }
}

/// The validated layout. `Copy`, bounded, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    frames_total: u32,
    blocks_total: u32,
}

impl Layout {
    /// Validates `specs` and numbers their frames.
    pub fn new(specs: &[RegionSpec]) -> Result<Layout, LayoutError> {
        if specs.is_empty() {
            return Err(LayoutError::NoRegions);
        }
        if specs.len() > MAX_REGIONS {
            return Err(LayoutError::TooManyRegions { count: specs.len() });
        }
        let mut total: u64 = 0;
        for (index, spec) in specs.iter().enumerate() {
            if spec.data_frames == 0 {
                return Err(LayoutError::EmptyRegion { region: index });
            }
            total = total.saturating_add(spec.data_frames);
            if let Some(tags) = spec.tags {
                if tags.frames.checked_mul(DATA_FRAMES_PER_TAG_FRAME) != Some(spec.data_frames) {
                    return Err(LayoutError::TagRatio {
                        region: index,
                        data_frames: spec.data_frames,
                        tag_frames: tags.frames,
                    });
                }
                if tags.block_frames == 0 || tags.frames % tags.block_frames != 0 {
                    return Err(LayoutError::BlockSize {
                        region: index,
                        tag_frames: tags.frames,
                        block_frames: tags.block_frames,
                    });
                }
                total = total.saturating_add(tags.frames);
            }
            if total > MAX_FRAMES {
                return Err(LayoutError::TooManyFrames { frames: total });
            }
        }
        // Every range against every other: at most 64 ranges, so this is bounded.
        let mut ranges: heapless::Vec<(Pfn, u64), { 2 * MAX_REGIONS }> = heapless::Vec::new();
        for spec in specs {
            let _ = ranges.push((spec.data_base, spec.data_frames));
            if let Some(tags) = spec.tags {
                let _ = ranges.push((tags.base, tags.frames));
            }
        }
        for (i, &(a, a_len)) in ranges.iter().enumerate() {
            if a.checked_add(a_len).is_none() {
                return Err(LayoutError::Overlap {
                    first: a,
                    second: a,
                    frames: a_len,
                });
            }
            for &(b, b_len) in &ranges[i + 1..] {
                let start = a.max(b);
                let end = (a + a_len).min(b.saturating_add(b_len));
                if start < end {
                    return Err(LayoutError::Overlap {
                        first: a,
                        second: b,
                        frames: end - start,
                    });
                }
            }
        }
        let mut layout = Layout {
            regions: [Region::default(); MAX_REGIONS],
            region_count: specs.len(),
            frames_total: 0,
            blocks_total: 0,
        };
        let mut next_index: u32 = 0;
        let mut next_block: u32 = 0;
        for (slot, spec) in layout.regions.iter_mut().zip(specs) {
            // Bounded by MAX_FRAMES above, so these fit in u32.
            slot.data_base = spec.data_base;
            slot.data_frames = spec.data_frames as u32;
            slot.data_first = next_index;
            next_index += slot.data_frames;
            slot.tag_first = next_index;
            slot.first_block = next_block;
            if let Some(tags) = spec.tags {
                slot.tag_base = tags.base;
                slot.tag_frames = tags.frames as u32;
                slot.block_frames = tags.block_frames as u32;
                slot.per_block = Divisor::new(slot.block_frames);
                slot.per_group = Divisor::new(slot.group_frames());
                next_index += slot.tag_frames;
                next_block += slot.blocks();
            }
        }
        layout.frames_total = next_index;
        layout.blocks_total = next_block;
        Ok(layout)
    }

    /// Number of regions.
    pub fn region_count(&self) -> usize {
        self.region_count
    }

    pub(crate) fn region(&self, region: usize) -> &Region {
        &self.regions[region]
    }

    pub(crate) fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    /// Every managed frame, data and tag storage.
    pub fn frames_total(&self) -> u32 {
        self.frames_total
    }

    /// Tag blocks over all regions.
    pub fn blocks_total(&self) -> u32 {
        self.blocks_total
    }

    /// Data frames over all regions.
    pub fn data_frames_total(&self) -> u32 {
        self.regions().iter().map(|r| r.data_frames).sum()
    }

    /// Tag storage frames over all regions (the RFC's `MetadataTotal`).
    pub fn tag_frames_total(&self) -> u32 {
        self.regions().iter().map(|r| r.tag_frames).sum()
    }

    /// The tag block size of `region`, in frames (0 if it cannot be tagged).
    pub fn block_frames(&self, region: usize) -> u32 {
        self.regions[region].block_frames
    }

    /// The region, pool and offset of `index`. `None` past the last frame.
    #[inline]
    pub fn locate(&self, index: FrameIndex) -> Option<Location> {
        if index >= self.frames_total {
            return None;
        }
        // Regions are numbered in ascending index order: binary search.
        let regions = self.regions();
        let region = regions.partition_point(|r| r.data_first <= index) - 1;
        let r = &regions[region];
        if index < r.tag_first {
            Some(Location {
                region,
                pool: PoolKind::Data,
                offset: index - r.data_first,
            })
        } else {
            Some(Location {
                region,
                pool: PoolKind::Tag,
                offset: index - r.tag_first,
            })
        }
    }

    /// The physical frame number of `index`.
    #[inline]
    pub fn pfn(&self, index: FrameIndex) -> Option<Pfn> {
        let location = self.locate(index)?;
        let r = &self.regions[location.region];
        Some(match location.pool {
            PoolKind::Data => r.data_base + u64::from(location.offset),
            PoolKind::Tag => r.tag_base + u64::from(location.offset),
        })
    }

    /// The frame index of physical frame `pfn`, if it is managed.
    pub fn index_of_pfn(&self, pfn: Pfn) -> Option<FrameIndex> {
        for r in self.regions() {
            if pfn >= r.data_base && pfn < r.data_base + u64::from(r.data_frames) {
                return Some(r.data_first + (pfn - r.data_base) as u32);
            }
            if pfn >= r.tag_base && pfn < r.tag_base + u64::from(r.tag_frames) {
                return Some(r.tag_first + (pfn - r.tag_base) as u32);
            }
        }
        None
    }

    /// The tag block whose group contains data frame `index`; `None` for tag
    /// storage frames and for data that cannot be tagged.
    #[inline]
    pub fn group_block(&self, index: FrameIndex) -> Option<BlockId> {
        let location = self.locate(index)?;
        let r = &self.regions[location.region];
        if location.pool != PoolKind::Data || !r.taggable() {
            return None;
        }
        Some(r.first_block + r.per_group.divide(location.offset))
    }

    /// The tag blocks whose groups the data frames `head..head + frames`
    /// touch, which lie in one region (as every buddy block does): one
    /// lookup of the region for both ends. Empty for tag storage and for
    /// data that cannot be tagged.
    #[inline]
    pub(crate) fn groups_touched(
        &self,
        head: FrameIndex,
        frames: u32,
    ) -> core::ops::Range<BlockId> {
        let Some(location) = self.locate(head) else {
            return 0..0;
        };
        let r = &self.regions[location.region];
        if location.pool != PoolKind::Data || !r.taggable() {
            return 0..0;
        }
        debug_assert!(location.offset + frames <= r.data_frames);
        let first = r.first_block + r.per_group.divide(location.offset);
        let last = r.first_block + r.per_group.divide(location.offset + frames - 1);
        first..last + 1
    }

    /// The tag block that tag storage frame `index` belongs to.
    #[inline]
    pub fn tag_block(&self, index: FrameIndex) -> Option<BlockId> {
        let location = self.locate(index)?;
        let r = &self.regions[location.region];
        if location.pool != PoolKind::Tag {
            return None;
        }
        let block = r.per_block.divide(location.offset);
        if cfg!(feature = "inject-tag-block-offset") {
            // The inverse of the injected offset in `block_tag_frames`.
            return Some(r.first_block + (block + r.blocks() - 1) % r.blocks());
        }
        Some(r.first_block + block)
    }

    pub(crate) fn block_region(&self, block: BlockId) -> usize {
        let regions = self.regions();
        // Untaggable regions have no blocks; the last region whose first block
        // is <= block and which has blocks is the owner.
        let mut candidate = regions.partition_point(|r| r.first_block <= block) - 1;
        while regions[candidate].blocks() == 0 {
            candidate -= 1;
        }
        candidate
    }

    /// The tag storage frames of `block`, as a range of frame indices.
    pub fn block_tag_frames(&self, block: BlockId) -> core::ops::Range<FrameIndex> {
        let r = &self.regions[self.block_region(block)];
        let mut nth = block - r.first_block;
        if cfg!(feature = "inject-tag-block-offset") {
            // Injected bug (tests/sel4/mte-test): the tag address arithmetic
            // is off by one block (wrapping in the region). Every table
            // agrees with itself, so no invariant sees it: the pool reserves
            // the block after the one that holds a page's tags, and may lend
            // the one that does. Only tags in physical tag storage show it.
            nth = (nth + 1) % r.blocks();
        }
        let start = r.tag_first + nth * r.block_frames;
        start..start + r.block_frames
    }

    /// The data frames whose tags `block` holds (its group).
    pub fn block_data_frames(&self, block: BlockId) -> core::ops::Range<FrameIndex> {
        let r = &self.regions[self.block_region(block)];
        let start = r.data_first + (block - r.first_block) * r.group_frames();
        start..start + r.group_frames()
    }

    /// Where the pool keeps the tags of data frame `pfn`: the tag storage
    /// frame and the byte offset in it, by the block arithmetic every
    /// reservation uses (its group's block, that block's tag frames, the
    /// frame's place in the group). It equals DESIGN §2's `tag_base + (p -
    /// mem_base) * 128`, which the machines use as the hardware does (a
    /// test holds the two together): the server's carve-out probe and tag
    /// audit compare this with where the hardware put the tags.
    pub fn tag_location(&self, pfn: Pfn) -> Option<(Pfn, usize)> {
        let index = self.index_of_pfn(pfn)?;
        let block = self.group_block(index)?;
        let byte = (index - self.block_data_frames(block).start) as usize
            * tagloan_mte::TAG_BYTES_PER_FRAME;
        let frame = self.block_tag_frames(block).start + (byte / tagloan_mte::FRAME_BYTES) as u32;
        Some((self.pfn(frame)?, byte % tagloan_mte::FRAME_BYTES))
    }

    /// The regions that have tag storage, as the machine locates tags.
    pub fn tag_regions(&self) -> impl Iterator<Item = tagloan_mte::TagRegion> + '_ {
        self.regions()
            .iter()
            .filter(|r| r.taggable())
            .map(|r| tagloan_mte::TagRegion {
                data_base: r.data_base,
                data_frames: r.data_frames,
                tag_base: r.tag_base,
            })
    }

    /// The first index and length of the span `index` lies in (the buddy
    /// allocator aligns blocks relative to the span start).
    pub(crate) fn span_of(&self, index: FrameIndex) -> (FrameIndex, u32) {
        match self.locate(index) {
            Some(Location {
                region,
                pool: PoolKind::Data,
                ..
            }) => {
                let r = &self.regions[region];
                (r.data_first, r.data_frames)
            }
            Some(Location {
                region,
                pool: PoolKind::Tag,
                ..
            }) => {
                let r = &self.regions[region];
                (r.tag_first, r.tag_frames)
            }
            None => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_divisor_divides_exactly_at_every_edge() {
        // Every block size a layout can have up to 4,096 and its group, some
        // large ones, against the dividends where a multiply-high would
        // first go wrong: around multiples of the divisor and at the top.
        let large = [1_048_575u32, 1 << 20, 3 << 20, 2_147_483_647, u32::MAX];
        let divisors = (1..=4096u32).flat_map(|d| [d, 32 * d]).chain(large);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for d in divisors {
            let divisor = Divisor::new(d);
            let check = |n: u32| assert_eq!(divisor.divide(n), n / d, "{n} / {d}");
            for k in [1u32, 2, 3, 1000, u32::MAX / d] {
                let multiple = d.saturating_mul(k);
                for n in [
                    multiple.wrapping_sub(1),
                    multiple,
                    multiple.saturating_add(1),
                ] {
                    check(n);
                }
            }
            for n in [0, 1, u32::MAX - 1, u32::MAX] {
                check(n);
            }
            for _ in 0..16 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                check(state as u32);
            }
        }
    }

    fn fvp_like() -> Layout {
        // Two regions shaped like the RFC's FVP test, scaled down: block-size 1.
        Layout::new(&[
            RegionSpec {
                data_base: 0x80000,
                data_frames: 64,
                tags: Some(TagSpec {
                    base: 0xfc000,
                    frames: 2,
                    block_frames: 1,
                }),
            },
            RegionSpec {
                data_base: 0x880000,
                data_frames: 128,
                tags: Some(TagSpec {
                    base: 0x8fc000,
                    frames: 4,
                    block_frames: 2,
                }),
            },
        ])
        .unwrap()
    }

    #[test]
    fn frames_are_numbered_data_then_tags_per_region() {
        let layout = fvp_like();
        assert_eq!(layout.frames_total(), 64 + 2 + 128 + 4);
        assert_eq!(layout.blocks_total(), 2 + 2);
        assert_eq!(layout.pfn(0), Some(0x80000));
        assert_eq!(layout.pfn(64), Some(0xfc000));
        assert_eq!(layout.pfn(66), Some(0x880000));
        assert_eq!(layout.pfn(66 + 128), Some(0x8fc000));
        assert_eq!(layout.pfn(198), None);
        for index in 0..layout.frames_total() {
            assert_eq!(layout.index_of_pfn(layout.pfn(index).unwrap()), Some(index));
        }
    }

    #[test]
    fn block_count_for_block_size_above_one_is_tag_frames_over_block_size() {
        // RFC bug: order_to_num_blocks multiplied tag pages by block_size.
        let layout = fvp_like();
        let second = layout.group_block(66).unwrap();
        assert_eq!(second, 2);
        assert_eq!(layout.block_tag_frames(2), 66 + 128..66 + 130);
        assert_eq!(layout.block_data_frames(2), 66..66 + 64);
        assert_eq!(layout.group_block(66 + 63), Some(2));
        assert_eq!(layout.group_block(66 + 64), Some(3));
        assert_eq!(layout.tag_block(66 + 131), Some(3));
    }

    /// The pool's block arithmetic puts every data frame's tags where the
    /// hardware does (`TagRegion`), for blocks of 1, 2 and 3 frames.
    #[test]
    #[cfg(not(feature = "injected"))]
    fn the_block_arithmetic_agrees_with_the_hardware_for_every_frame() {
        for block_frames in [1, 2, 3] {
            let layout = Layout::new(&[RegionSpec {
                data_base: 0x80000,
                data_frames: 32 * 6,
                tags: Some(TagSpec {
                    base: 0x90000,
                    frames: 6,
                    block_frames,
                }),
            }])
            .unwrap();
            let hardware = layout.tag_regions().next().unwrap();
            for pfn in 0x80000..0x80000 + 32 * 6 {
                assert_eq!(
                    layout.tag_location(pfn),
                    hardware.tag_location(pfn),
                    "frame {pfn:#x}, blocks of {block_frames}"
                );
            }
        }
    }

    #[test]
    fn tags_of_frame_p_start_at_tag_base_plus_128_per_frame() {
        let layout = fvp_like();
        assert_eq!(layout.tag_location(0x80000), Some((0xfc000, 0)));
        assert_eq!(layout.tag_location(0x80001), Some((0xfc000, 128)));
        assert_eq!(layout.tag_location(0x80020), Some((0xfc001, 0)));
        assert_eq!(layout.tag_location(0xfc000), None);
    }

    #[test]
    fn layout_refuses_bad_ratio_block_and_overlap() {
        let bad_ratio = RegionSpec {
            data_base: 0,
            data_frames: 64,
            tags: Some(TagSpec {
                base: 100,
                frames: 1,
                block_frames: 1,
            }),
        };
        assert!(matches!(
            Layout::new(&[bad_ratio]),
            Err(LayoutError::TagRatio { .. })
        ));
        let bad_block = RegionSpec {
            data_base: 0,
            data_frames: 96,
            tags: Some(TagSpec {
                base: 100,
                frames: 3,
                block_frames: 2,
            }),
        };
        assert!(matches!(
            Layout::new(&[bad_block]),
            Err(LayoutError::BlockSize { .. })
        ));
        let overlap = RegionSpec {
            data_base: 0,
            data_frames: 64,
            tags: Some(TagSpec {
                base: 63,
                frames: 2,
                block_frames: 1,
            }),
        };
        assert!(matches!(
            Layout::new(&[overlap]),
            Err(LayoutError::Overlap { .. })
        ));
        assert_eq!(Layout::new(&[]), Err(LayoutError::NoRegions));
    }
}
