//! Tag enablement (mprotect(PROT_MTE)-like), the fault that completes it, and
//! the bounded store of deferred tags (DESIGN §5).

use crate::error::{ArgumentRule, BusyReason, PoolError};
use crate::frame::{Frame, Mode, Owned};
use crate::layout::{FrameIndex, NIL};
use crate::ops::*;
use crate::{Access, ClientId, Machine, Pool};
use tagloan_mte::FrameTags;

impl Pool<'_> {
    /// Writes the tags of a page being mapped tagged: its deferred tags if
    /// any (consuming them), zero otherwise. Returns whether tags were restored.
    pub(crate) fn install_tags<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        index: FrameIndex,
        owned: &mut Owned,
    ) -> bool {
        let pfn = self.pfn(index);
        self.work.tag_writes += 1;
        match owned.deferred.take() {
            Some(slot) => {
                let tags = self.deferred[usize::from(slot)].tags;
                machine.write_tags(pfn, &tags);
                self.deferred[usize::from(slot)] = crate::DeferredSlot::default();
                self.stats.deferred_restored += 1;
                true
            }
            None => {
                machine.zero_tags(pfn);
                false
            }
        }
    }

    pub(crate) fn drop_deferred(&mut self, owned: &mut Owned) {
        if let Some(slot) = owned.deferred.take() {
            self.deferred[usize::from(slot)] = crate::DeferredSlot::default();
        }
    }

    /// Free slots of the deferred-tag store: a scan of the store, counted.
    pub(crate) fn free_deferred_slots(&mut self) -> u32 {
        self.work.frames_scanned += self.deferred.len() as u64;
        self.deferred.iter().filter(|s| s.frame == NIL).count() as u32
    }

    pub(crate) fn park_tags(&mut self, frame: FrameIndex, tags: FrameTags) -> u16 {
        let slot = self
            .deferred
            .iter()
            .position(|s| s.frame == NIL)
            .expect("plan checked a free slot");
        self.work.frames_scanned += slot as u64 + 1;
        self.deferred[slot] = crate::DeferredSlot { frame, tags };
        self.stats.deferred_parked += 1;
        slot as u16
    }

    pub(crate) fn enable_tagging_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        if self.layout.tag_frames_total() == 0 {
            self.client_state(client)?;
            return Err(PoolError::Unsupported);
        }
        let first = self.mapped_range(client, vaddr, pages)?;
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(owned) = self.entry(index) else {
                unreachable!()
            };
            // A page that cannot move and has no tag storage can never be tagged.
            if owned.mode == Mode::Untagged
                && self.must_move_to_tag(index)
                && (owned.pinned || owned.contiguous)
            {
                return Err(PoolError::Unsupported);
            }
        }
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(mut owned) = self.entry(index) else {
                unreachable!()
            };
            if owned.mode != Mode::Untagged {
                continue;
            }
            let vaddr = self.vaddr_of(client, page);
            machine.unmap(client, vaddr);
            owned.mode = Mode::MetadataNone;
            self.set(index, Frame::Owned(owned));
            machine.map(client, vaddr, self.pfn(index), Access::NoAccess);
        }
        Ok(())
    }

    pub(crate) fn disable_tagging_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<(), PoolError> {
        let first = self.mapped_range(client, vaddr, pages)?;
        for page in first..first + pages {
            let index = self.mapped(client, page).expect("checked above");
            let Frame::Owned(mut owned) = self.entry(index) else {
                unreachable!()
            };
            let was = owned.mode;
            if was == Mode::Untagged {
                continue;
            }
            let vaddr = self.vaddr_of(client, page);
            machine.unmap(client, vaddr);
            self.drop_deferred(&mut owned);
            owned.mode = Mode::Untagged;
            self.set(index, Frame::Owned(owned));
            if was == Mode::Tagged {
                self.drop_ref(machine, index);
            }
            machine.map(client, vaddr, self.pfn(index), Access::Normal);
        }
        Ok(())
    }

    pub(crate) fn resolve_fault_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<Resolution, PoolError> {
        let page_vaddr = vaddr & !(PAGE - 1);
        let (page, index, mut owned) = self.owned_page(client, page_vaddr)?;
        match owned.mode {
            Mode::Tagged => return Ok(Resolution::AlreadyTagged),
            Mode::Untagged => {
                return Err(PoolError::InvalidArgument {
                    rule: ArgumentRule::NotAwaitingTags,
                    value: vaddr,
                })
            }
            Mode::MetadataNone => {}
        }
        if !self.must_move_to_tag(index) {
            // Plan, then commit: reserve the page's own block.
            let reserve = self.unreserved_blocks(index, 1);
            self.check_reservation(&reserve, 0)?;
            self.commit_reservation(machine, &reserve);
            machine.unmap(client, page_vaddr);
            let restored = self.install_tags(machine, index, &mut owned);
            owned.mode = Mode::Tagged;
            self.set(index, Frame::Owned(owned));
            self.add_ref(index);
            machine.map(client, page_vaddr, self.pfn(index), Access::Tagged);
            return Ok(Resolution::Tagged {
                migrated: false,
                deferred_restored: restored,
            });
        }
        if owned.pinned || owned.contiguous {
            return Err(PoolError::Busy {
                vaddr,
                reason: BusyReason::Pinned,
            });
        }
        // Plan: a taggable destination. Its block may be the very block the
        // page borrows; then the page itself is not a borrower to recall.
        let destination = self
            .find_tagged_data(0)
            .ok_or(PoolError::NoMemory { frames: 1 })?;
        let reserve = self.unreserved_blocks(destination, 1);
        let own_block = self.layout.tag_block(index).filter(|b| reserve.contains(b));
        self.check_reservation_moving(&reserve, 1, u32::from(own_block.is_some()))?;
        // Commit: move the page first, so the recall never sees it.
        self.take_free_block(destination, 0);
        let moved = self.relocate(machine, index, destination);
        debug_assert_eq!(moved.page, page);
        if own_block.is_some() {
            // The frame joins the block being reserved.
            self.set(index, Frame::TagReservedTail);
        }
        self.commit_reservation(machine, &reserve);
        let restored = self.install_tags(machine, destination, &mut owned);
        owned.mode = Mode::Tagged;
        self.set(destination, Frame::Owned(owned));
        self.add_ref(destination);
        if own_block.is_none() {
            self.free_frame(index);
        }
        machine.map(client, page_vaddr, self.pfn(destination), Access::Tagged);
        Ok(Resolution::Tagged {
            migrated: true,
            deferred_restored: restored,
        })
    }
}
