//! Evacuating a physically contiguous range for a contiguous or pinned
//! request: its movable pages move out, tagged ones with their tags parked
//! when their new frame's block is not reserved.

use crate::error::PoolError;
use crate::frame::{Frame, Mode, MAX_ORDER};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::ops::*;
use crate::{Access, Machine, Pool};
use tagloan_mte::ZERO_TAGS;

impl Pool<'_> {
    /// Finds an aligned data range of `order` whose frames are all free or
    /// movable, and whose movers have somewhere to go. Looks at no more than
    /// [`EVACUATION_CANDIDATES`] ranges from a rotating cursor.
    ///
    /// The cursor is a placement hint, not pool state: it advances past the
    /// ranges examined even when none fits, so the next request looks at new
    /// ones (a request the pool could satisfy is not refused for ever), and
    /// it is not part of the I12 fingerprint.
    pub(crate) fn plan_evacuation(&mut self, order: u8) -> Result<FrameIndex, PoolError> {
        let frames = 1u32 << order;
        let mut cursor = self.evacuation_cursor;
        for _ in 0..EVACUATION_CANDIDATES {
            let Some(start) = self.next_evacuation_candidate(cursor, frames) else {
                break;
            };
            cursor = start + frames;
            if self.evacuation_feasible(start, frames) {
                return Ok(start);
            }
        }
        if !cfg!(feature = "inject-stuck-evacuation-cursor") {
            self.evacuation_cursor = cursor;
        }
        Err(PoolError::NoMemory { frames })
    }

    /// The first aligned data range of `frames` at or after `cursor`, wrapping.
    pub(crate) fn next_evacuation_candidate(
        &self,
        cursor: FrameIndex,
        frames: u32,
    ) -> Option<FrameIndex> {
        let regions = self.layout.regions();
        let fits = |first: u32, len: u32, at: u32| -> Option<u32> {
            let relative = at.saturating_sub(first).next_multiple_of(frames);
            (relative + frames <= len).then_some(first + relative)
        };
        for r in regions
            .iter()
            .filter(|r| r.data_first + r.data_frames > cursor)
        {
            if let Some(start) = fits(r.data_first, r.data_frames, cursor.max(r.data_first)) {
                return Some(start);
            }
        }
        regions
            .iter()
            .find_map(|r| fits(r.data_first, r.data_frames, r.data_first))
    }

    pub(crate) fn evacuation_feasible(&mut self, start: FrameIndex, frames: u32) -> bool {
        let (mut movers, mut tagged, mut free) = (0u32, 0u32, 0u32);
        for index in start..start + frames {
            self.work.frames_scanned += 1;
            match self.entry(index) {
                Frame::FreeHead { .. } | Frame::FreeTail => free += 1,
                Frame::Owned(o) if !o.pinned && !o.contiguous => {
                    movers += 1;
                    if o.mode == Mode::Tagged {
                        tagged += 1;
                    }
                }
                _ => return false,
            }
        }
        let data_outside = self.stats.data_frames_free - free;
        movers <= data_outside + self.stats.tag_frames_free
            && tagged <= data_outside
            && tagged <= self.free_deferred_slots()
    }

    /// Empties the range planned by [`Pool::plan_evacuation`] and takes it.
    /// Untagged pages move anywhere; a tagged page moves to a frame whose
    /// block is reserved if there is one, keeping its tags, and otherwise its
    /// tags are parked in the deferred store and it is mapped metadata-none
    /// until its next access (DESIGN §5).
    pub(crate) fn commit_evacuation<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        start: FrameIndex,
        order: u8,
    ) {
        let frames = 1u32 << order;
        let end = start + frames;
        // Take the free frames of the range, so no page moves into it.
        let mut index = start;
        while index < end {
            match self.containing_free_block(index) {
                Some((head, found)) if head >= start && head + (1 << found) <= end => {
                    self.take_free_block(head, found);
                    for frame in head..head + (1 << found) {
                        self.set(frame, Frame::FreeTail);
                    }
                    index = head + (1 << found);
                }
                Some(_) => {
                    self.extract_free(index, 0);
                    self.set(index, Frame::FreeTail);
                    index += 1;
                }
                None => index += 1,
            }
        }
        // Tagged pages first: they need the data pool, untagged ones do not.
        for tagged_pass in [true, false] {
            for source in start..end {
                let Frame::Owned(owned) = self.entry(source) else {
                    continue;
                };
                if (owned.mode == Mode::Tagged) != tagged_pass {
                    continue;
                }
                if tagged_pass {
                    self.evacuate_tagged(machine, source);
                } else {
                    let destination = self.take_movable_destination();
                    self.migrate(machine, source, destination);
                }
                self.set(source, Frame::FreeTail);
            }
        }
        self.evacuation_cursor = end;
    }

    pub(crate) fn evacuate_tagged<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        source: FrameIndex,
    ) {
        let reserved_destination = self.first_free(PoolKind::Data, 0, crate::Class::Reserved);
        let reserved_destination = if reserved_destination != NIL {
            Some(reserved_destination)
        } else {
            // A larger reserved-class block also keeps the tags.
            (1..=MAX_ORDER)
                .map(|order| self.first_free(PoolKind::Data, order, crate::Class::Reserved))
                .find(|&head| head != NIL)
        };
        let (destination, keep_tags) = match reserved_destination {
            Some(head) => (head, true),
            None => (
                self.find_untagged_data(0)
                    .expect("plan checked a data destination"),
                false,
            ),
        };
        self.take_free_block(destination, 0);
        let mut owned = self.relocate(machine, source, destination);
        let vaddr = self.vaddr_of(owned.client, owned.page);
        let pfn = self.pfn(destination);
        if keep_tags {
            machine.copy_tags(self.pfn(source), pfn);
            self.work.tag_writes += 1;
            self.add_ref(destination);
            machine.map(owned.client, vaddr, pfn, Access::Tagged);
        } else {
            let mut tags = ZERO_TAGS;
            machine.read_tags(self.pfn(source), &mut tags);
            owned.deferred = Some(self.park_tags(destination, tags));
            owned.mode = Mode::MetadataNone;
            self.set(destination, Frame::Owned(owned));
            machine.map(owned.client, vaddr, pfn, Access::NoAccess);
        }
        self.stats.tagged_migrations += 1;
        // The source's reference goes last: its block may be released.
        self.drop_ref(machine, source);
    }
}
