//! A RAM-backed machine: simulated physical memory, client VSpaces, and MTE
//! tags stored *physically inside the tag storage frames* of that RAM, so a
//! server bug that lends a block still holding tags corrupts data and tags
//! exactly as hardware would.
//!
//! It implements the machine interface of `tagloan-mte` ([`Kernel`],
//! [`TagOps`]) and depends on nothing else, so the simulator runs on it and
//! the pool core's tests use it without depending on the simulator.

use std::collections::{BTreeMap, BTreeSet};

use tagloan_mte::{
    granule_tag, pointer_tag, untagged_address, Access, FrameTags, Kernel, Pfn, Tag, TagOps,
    TagRegion, FRAME_BYTES, GRANULE_BYTES, TAG_BYTES_PER_FRAME,
};

/// A client's index, as the machine interface names it.
pub type ClientId = u8;

/// What the machine did, when it records (for the simulator's trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineEvent {
    Map {
        client: ClientId,
        vaddr: u64,
        frame: Pfn,
        access: Access,
    },
    Unmap {
        client: ClientId,
        vaddr: u64,
    },
    Copy {
        from: Pfn,
        to: Pfn,
    },
    Zero {
        frame: Pfn,
    },
    TagWrite {
        frame: Pfn,
    },
    /// A tag storage clean of a tag frame's data lines (before it holds tags).
    CleanForTags {
        tag_frame: Pfn,
    },
    /// A tag storage clean of a data frame's tag lines (before its tag
    /// storage may hold data).
    CleanTags {
        frame: Pfn,
    },
}

/// The caches, as far as tag storage cleans matter (DESIGN §7). Neither
/// this simulator nor QEMU's TCG has caches, so a missing clean could never
/// show as corruption; instead the model keeps the rule a real cache
/// imposes and panics at the write that breaks it:
/// - a tag storage frame written as data may hold dirty data lines until
///   `clean_for_tags`; tags stored in it before then could later be
///   overwritten by those lines' write-back;
/// - a data frame whose tags were written may hold dirty tag lines until
///   `clean_tags`; its tag storage frame written as data before then could
///   later be overwritten by those lines' write-back.
#[derive(Clone, Debug, Default)]
struct CacheModel {
    /// Tag storage frames written as data since their last clean.
    dirty_data: BTreeSet<Pfn>,
    /// Data frames whose tags were written since their last clean, with the
    /// tag storage frame holding those tags.
    dirty_tags: BTreeMap<Pfn, Pfn>,
    /// Per tag storage frame: how many of its data frames have dirty tags.
    dirty_tags_in: BTreeMap<Pfn, u32>,
}

const PAGE: u64 = FRAME_BYTES as u64;

/// Sparse RAM: a frame costs memory only once it is written.
#[derive(Clone, Debug, Default)]
pub struct Ram {
    frames: BTreeMap<Pfn, Box<[u8; FRAME_BYTES]>>,
}

impl Ram {
    /// Reads `out.len()` bytes of frame `pfn` at `offset`. Unwritten RAM reads as zero.
    pub fn read(&self, pfn: Pfn, offset: usize, out: &mut [u8]) {
        match self.frames.get(&pfn) {
            Some(frame) => out.copy_from_slice(&frame[offset..offset + out.len()]),
            None => out.fill(0),
        }
    }

    /// Writes `bytes` into frame `pfn` at `offset`.
    pub fn write(&mut self, pfn: Pfn, offset: usize, bytes: &[u8]) {
        let frame = self
            .frames
            .entry(pfn)
            .or_insert_with(|| Box::new([0; FRAME_BYTES]));
        frame[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Whether every byte of frame `pfn` is zero.
    pub fn is_zero(&self, pfn: Pfn) -> bool {
        self.frames
            .get(&pfn)
            .is_none_or(|f| f.iter().all(|&b| b == 0))
    }

    /// Frames that have been written.
    pub fn frames_touched(&self) -> usize {
        self.frames.len()
    }
}

/// Why a simulated client access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFault {
    /// No mapping, or a no-access (metadata-none) mapping: a VM fault.
    Vm { vaddr: u64 },
    /// The pointer's logical tag differs from the granule's allocation tag.
    TagCheck {
        vaddr: u64,
        pointer_tag: Tag,
        memory_tag: Tag,
    },
}

/// Simulated RAM plus client VSpaces; implements the pool's [`Kernel`] and
/// [`TagOps`] exactly as the server's backend would.
#[derive(Clone, Debug)]
pub struct SimMachine {
    /// Where each data frame's tags live.
    tag_regions: Vec<TagRegion>,
    /// Physical memory, tag storage included.
    pub ram: Ram,
    mappings: BTreeMap<(ClientId, u64), (Pfn, Access)>,
    /// Frames copied by the server.
    pub frames_copied: u64,
    /// Frames zeroed by the server.
    pub frames_zeroed: u64,
    /// Tag writes by the server (zero, copy or restore of one frame).
    pub tag_writes: u64,
    /// Tag storage cleans by the server (both kinds).
    pub tag_storage_cleans: u64,
    caches: CacheModel,
    /// Kernel and tag operations since the last drain, when recording.
    events: Option<Vec<MachineEvent>>,
}

impl SimMachine {
    /// A machine whose tag storage is `tag_regions` (a pool layout's
    /// `tag_regions()`), with all RAM zero and nothing mapped.
    pub fn new(tag_regions: impl IntoIterator<Item = TagRegion>) -> SimMachine {
        SimMachine {
            tag_regions: tag_regions.into_iter().collect(),
            ram: Ram::default(),
            mappings: BTreeMap::new(),
            frames_copied: 0,
            frames_zeroed: 0,
            tag_writes: 0,
            tag_storage_cleans: 0,
            caches: CacheModel::default(),
            events: None,
        }
    }

    /// Starts recording map, unmap, copy, zero and tag-write events.
    pub fn record_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    /// The events recorded since the last call.
    pub fn drain_events(&mut self) -> Vec<MachineEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn event(&mut self, event: MachineEvent) {
        if let Some(events) = &mut self.events {
            events.push(event);
        }
    }

    /// STG-like: the granules of `len` bytes at `pointer` take the pointer's
    /// logical tag. Only on the client's own tagged pages, within one page.
    pub fn set_granule_tags(
        &mut self,
        client: ClientId,
        pointer: u64,
        len: usize,
    ) -> Result<(), AccessFault> {
        let vaddr = untagged_address(pointer);
        let (pfn, offset, access) = self.translate(client, pointer, len)?;
        if access != Access::Tagged {
            // Allocation tag stores to memory without the Tagged attribute
            // are ignored (RAZ/WI in the Arm ARM).
            let _ = vaddr;
            return Ok(());
        }
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_frame_tags(pfn, &mut tags);
        let tag = pointer_tag(pointer);
        for granule in offset / GRANULE_BYTES..(offset + len).div_ceil(GRANULE_BYTES) {
            tagloan_mte::set_granule_tag(&mut tags, granule, tag);
        }
        self.write_frame_tags(pfn, &tags);
        Ok(())
    }

    /// The allocation tag of the granule at `pointer` in `client`'s page, if
    /// the page is mapped.
    pub fn memory_tag(&self, client: ClientId, pointer: u64) -> Option<Tag> {
        let (pfn, _) = self.mapping(client, pointer)?;
        self.tag_location(pfn)?;
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_frame_tags(pfn, &mut tags);
        let offset = (untagged_address(pointer) % PAGE) as usize;
        Some(granule_tag(&tags, offset / GRANULE_BYTES))
    }

    /// Where the tags of `pfn` live. Panics for a frame without tag storage:
    /// the pool must never write tags there (invariant I2).
    fn tag_bytes_at(&self, pfn: Pfn) -> (Pfn, usize) {
        match self.tag_location(pfn) {
            Some(location) => location,
            None => panic!("tags accessed for frame {pfn:#x}, which has no tag storage"),
        }
    }

    fn tag_location(&self, pfn: Pfn) -> Option<(Pfn, usize)> {
        self.tag_regions.iter().find_map(|r| r.tag_location(pfn))
    }

    /// Whether `pfn` is a tag storage frame.
    fn is_tag_frame(&self, pfn: Pfn) -> bool {
        self.tag_regions.iter().any(|r| {
            pfn >= r.tag_base
                && pfn
                    < r.tag_base + u64::from(r.data_frames) / tagloan_mte::DATA_FRAMES_PER_TAG_FRAME
        })
    }

    /// Data is written to `pfn` (by the server or a client): the cache
    /// model's check of a tag storage frame, then its dirty data lines.
    fn data_written(&mut self, pfn: Pfn) {
        if !self.is_tag_frame(pfn) {
            return;
        }
        if self.caches.dirty_tags_in.get(&pfn).is_some_and(|&n| n > 0) {
            let (frame, _) = self
                .caches
                .dirty_tags
                .iter()
                .find(|(_, &tag_frame)| tag_frame == pfn)
                .expect("a dirty count has its frames");
            panic!(
                "tag storage frame {pfn:#x} written as data while the tag lines of data frame {frame:#x} may be dirty: clean_tags({frame:#x}) was not called when it stopped being tagged (tag storage clean, DESIGN §7)"
            );
        }
        self.caches.dirty_data.insert(pfn);
    }

    /// The mapping of `client` at `vaddr`, if any.
    pub fn mapping(&self, client: ClientId, vaddr: u64) -> Option<(Pfn, Access)> {
        self.mappings
            .get(&(client, untagged_address(vaddr) / PAGE))
            .copied()
    }

    /// Number of live mappings.
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }

    fn translate(
        &self,
        client: ClientId,
        pointer: u64,
        len: usize,
    ) -> Result<(Pfn, usize, Access), AccessFault> {
        let vaddr = untagged_address(pointer);
        let offset = (vaddr % PAGE) as usize;
        assert!(
            offset + len <= FRAME_BYTES,
            "simulated access crosses a page boundary"
        );
        match self.mapping(client, vaddr) {
            Some((_, Access::NoAccess)) | None => Err(AccessFault::Vm { vaddr }),
            Some((pfn, access)) => Ok((pfn, offset, access)),
        }
    }

    fn check_tags(
        &self,
        pointer: u64,
        pfn: Pfn,
        offset: usize,
        len: usize,
    ) -> Result<(), AccessFault> {
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_frame_tags(pfn, &mut tags);
        let logical = pointer_tag(pointer);
        for granule in offset / GRANULE_BYTES..(offset + len.max(1) - 1) / GRANULE_BYTES + 1 {
            let memory = granule_tag(&tags, granule);
            if memory != logical {
                return Err(AccessFault::TagCheck {
                    vaddr: untagged_address(pointer),
                    pointer_tag: logical,
                    memory_tag: memory,
                });
            }
        }
        Ok(())
    }

    /// A client load of `out.len()` bytes through `pointer` (bits 59:56 are
    /// the logical tag, checked on tagged pages).
    pub fn load(&self, client: ClientId, pointer: u64, out: &mut [u8]) -> Result<(), AccessFault> {
        let (pfn, offset, access) = self.translate(client, pointer, out.len())?;
        if access == Access::Tagged {
            self.check_tags(pointer, pfn, offset, out.len())?;
        }
        self.ram.read(pfn, offset, out);
        Ok(())
    }

    /// A client store through `pointer`.
    pub fn store(
        &mut self,
        client: ClientId,
        pointer: u64,
        bytes: &[u8],
    ) -> Result<(), AccessFault> {
        let (pfn, offset, access) = self.translate(client, pointer, bytes.len())?;
        if access == Access::Tagged {
            self.check_tags(pointer, pfn, offset, bytes.len())?;
        }
        self.data_written(pfn);
        self.ram.write(pfn, offset, bytes);
        Ok(())
    }

    /// A client STG-like store of the tags of its own tagged page at `vaddr`.
    pub fn store_page_tags(
        &mut self,
        client: ClientId,
        vaddr: u64,
        tags: &FrameTags,
    ) -> Result<(), AccessFault> {
        let (pfn, _, access) = self.translate(client, vaddr & !(PAGE - 1), 0)?;
        if access != Access::Tagged {
            return Err(AccessFault::Vm { vaddr });
        }
        self.write_frame_tags(pfn, tags);
        Ok(())
    }

    /// A client LDG-like load of the tags of its own tagged page.
    pub fn load_page_tags(&self, client: ClientId, vaddr: u64) -> Result<FrameTags, AccessFault> {
        let (pfn, _, access) = self.translate(client, vaddr & !(PAGE - 1), 0)?;
        if access != Access::Tagged {
            return Err(AccessFault::Vm { vaddr });
        }
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_frame_tags(pfn, &mut tags);
        Ok(tags)
    }

    /// The tags of data frame `pfn`, read straight from tag storage.
    pub fn read_frame_tags(&self, pfn: Pfn, tags: &mut FrameTags) {
        let (tag_frame, offset) = self.tag_bytes_at(pfn);
        self.ram.read(tag_frame, offset, tags);
    }

    fn write_frame_tags(&mut self, pfn: Pfn, tags: &FrameTags) {
        let (tag_frame, offset) = self.tag_bytes_at(pfn);
        if self.caches.dirty_data.contains(&tag_frame) {
            panic!(
                "tags of data frame {pfn:#x} stored in tag storage frame {tag_frame:#x} while it may hold dirty data lines: clean_for_tags({tag_frame:#x}) was not called when its block was reserved (tag storage clean, DESIGN §7)"
            );
        }
        if self.caches.dirty_tags.insert(pfn, tag_frame).is_none() {
            *self.caches.dirty_tags_in.entry(tag_frame).or_default() += 1;
        }
        self.ram.write(tag_frame, offset, tags);
    }
}

impl Kernel for SimMachine {
    fn map(&mut self, client: ClientId, vaddr: u64, frame: Pfn, access: Access) {
        let previous = self
            .mappings
            .insert((client, vaddr / PAGE), (frame, access));
        assert!(
            previous.is_none(),
            "client {client}: {vaddr:#x} mapped twice without unmap"
        );
        self.event(MachineEvent::Map {
            client,
            vaddr,
            frame,
            access,
        });
    }

    fn unmap(&mut self, client: ClientId, vaddr: u64) {
        let previous = self.mappings.remove(&(client, vaddr / PAGE));
        assert!(
            previous.is_some(),
            "client {client}: unmapping {vaddr:#x}, which is not mapped"
        );
        self.event(MachineEvent::Unmap { client, vaddr });
    }

    fn copy_frame(&mut self, source: Pfn, destination: Pfn) {
        let mut data = [0; FRAME_BYTES];
        self.ram.read(source, 0, &mut data);
        self.data_written(destination);
        self.ram.write(destination, 0, &data);
        self.frames_copied += 1;
        self.event(MachineEvent::Copy {
            from: source,
            to: destination,
        });
    }

    fn zero_frame(&mut self, frame: Pfn) {
        self.data_written(frame);
        self.ram.write(frame, 0, &[0; FRAME_BYTES]);
        self.frames_zeroed += 1;
        self.event(MachineEvent::Zero { frame });
    }

    fn read_frame(&mut self, frame: Pfn, offset: usize, bytes: &mut [u8]) {
        self.ram.read(frame, offset, bytes);
    }
}

impl TagOps for SimMachine {
    fn zero_tags(&mut self, frame: Pfn) {
        self.write_frame_tags(frame, &[0; TAG_BYTES_PER_FRAME]);
        self.tag_writes += 1;
        self.event(MachineEvent::TagWrite { frame });
    }

    fn copy_tags(&mut self, source: Pfn, destination: Pfn) {
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_frame_tags(source, &mut tags);
        self.write_frame_tags(destination, &tags);
        self.tag_writes += 1;
        self.event(MachineEvent::TagWrite { frame: destination });
    }

    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags) {
        self.read_frame_tags(frame, tags);
    }

    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags) {
        self.write_frame_tags(frame, tags);
        self.tag_writes += 1;
        self.event(MachineEvent::TagWrite { frame });
    }

    fn clean_for_tags(&mut self, tag_frame: Pfn) {
        assert!(
            self.is_tag_frame(tag_frame),
            "clean_for_tags({tag_frame:#x}): not a tag storage frame"
        );
        self.caches.dirty_data.remove(&tag_frame);
        self.tag_storage_cleans += 1;
        self.event(MachineEvent::CleanForTags { tag_frame });
    }

    fn clean_tags(&mut self, frame: Pfn) {
        if let Some(tag_frame) = self.caches.dirty_tags.remove(&frame) {
            let count = self
                .caches
                .dirty_tags_in
                .get_mut(&tag_frame)
                .expect("a dirty frame is counted");
            *count -= 1;
            if *count == 0 {
                self.caches.dirty_tags_in.remove(&tag_frame);
            }
        }
        self.tag_storage_cleans += 1;
        self.event(MachineEvent::CleanTags { frame });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagloan_mte::{uniform_tags, with_pointer_tag};

    fn machine() -> SimMachine {
        SimMachine::new([TagRegion {
            data_base: 0x100,
            data_frames: 64,
            tag_base: 0x200,
        }])
    }

    #[test]
    fn tags_live_in_the_tag_storage_frames_of_ram() {
        let mut m = machine();
        m.write_tags(0x100 + 33, &uniform_tags(Tag::from_low_bits(5)));
        // Data frame 33 is the second frame of the second group of 32: its tags
        // are bytes 128..256 of tag frame 0x201.
        let mut raw = [0u8; 128];
        m.ram.read(0x201, 128, &mut raw);
        assert!(raw.iter().all(|&b| b == 0x55));
        // Writing that tag frame as data changes the tags, as on hardware.
        m.ram.write(0x201, 128, &[0x11; 16]);
        let mut tags = [0; 128];
        m.read_tags(0x100 + 33, &mut tags);
        assert_eq!(tags[0], 0x11);
        assert_eq!(tags[16], 0x55);
    }

    #[test]
    fn a_mismatched_pointer_tag_faults_and_a_matching_one_does_not() {
        let mut m = machine();
        m.map(1, 0x4000_0000, 0x100, Access::Tagged);
        m.write_tags(0x100, &uniform_tags(Tag::from_low_bits(3)));
        let good = with_pointer_tag(0x4000_0010, Tag::from_low_bits(3));
        let bad = with_pointer_tag(0x4000_0010, Tag::from_low_bits(4));
        assert_eq!(m.store(1, good, &[1, 2, 3]), Ok(()));
        assert_eq!(
            m.store(1, bad, &[1]),
            Err(AccessFault::TagCheck {
                vaddr: 0x4000_0010,
                pointer_tag: Tag::from_low_bits(4),
                memory_tag: Tag::from_low_bits(3)
            })
        );
        let mut out = [0; 3];
        m.load(1, good, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3]);
    }

    /// Data frame 0x100's tags live in tag frame 0x200 (see `machine`).
    #[test]
    #[should_panic(expected = "clean_for_tags(0x200) was not called")]
    fn tags_stored_over_a_tag_frame_written_as_data_need_a_clean_first() {
        let mut m = machine();
        m.zero_frame(0x200);
        m.write_tags(0x100, &uniform_tags(Tag::from_low_bits(5)));
    }

    #[test]
    #[should_panic(expected = "clean_tags(0x100) was not called")]
    fn data_over_tags_whose_lines_may_be_dirty_needs_a_clean_first() {
        let mut m = machine();
        m.write_tags(0x100, &uniform_tags(Tag::from_low_bits(5)));
        m.copy_frame(0x101, 0x200);
    }

    #[test]
    fn with_the_cleans_a_tag_frame_switches_between_data_and_tags() {
        let mut m = machine();
        // Lent: a borrower's data in tag frame 0x200.
        m.map(2, 0x5000_0000, 0x200, Access::Normal);
        m.store(2, 0x5000_0000, &[7; 8]).unwrap();
        m.unmap(2, 0x5000_0000);
        // Reserved: cleaned, then tags.
        m.clean_for_tags(0x200);
        m.write_tags(0x100, &uniform_tags(Tag::from_low_bits(5)));
        m.map(1, 0x4000_0000, 0x100, Access::Tagged);
        m.set_granule_tags(1, with_pointer_tag(0x4000_0010, Tag::from_low_bits(9)), 16)
            .unwrap();
        m.unmap(1, 0x4000_0000);
        // Released: the tags' lines cleaned, then data again.
        m.clean_tags(0x100);
        m.zero_frame(0x200);
        assert_eq!(m.tag_storage_cleans, 2);
    }

    #[test]
    fn no_access_and_unmapped_pages_raise_vm_faults() {
        let mut m = machine();
        m.map(1, 0x4000_0000, 0x100, Access::NoAccess);
        assert_eq!(
            m.store(1, 0x4000_0000, &[1]),
            Err(AccessFault::Vm { vaddr: 0x4000_0000 })
        );
        assert_eq!(
            m.store(1, 0x5000_0000, &[1]),
            Err(AccessFault::Vm { vaddr: 0x5000_0000 })
        );
    }
}
