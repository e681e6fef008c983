//! Allocation, free, pin and query of client pages (DESIGN §4).

use crate::error::{ArgumentRule, PoolError};
use crate::frame::{Frame, Mode, Owned, MAX_ORDER};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::ops::*;
use crate::{ClientId, Machine, Pool};

impl Pool<'_> {
    /// Releases one owned page: unmap, drop its block reference or deferred
    /// tags, and free the frame.
    pub(crate) fn release_page<M: Machine + ?Sized>(&mut self, machine: &mut M, index: FrameIndex) {
        let Frame::Owned(mut owned) = self.entry(index) else {
            panic!("releasing frame {index}, which is not owned");
        };
        machine.unmap(owned.client, self.vaddr_of(owned.client, owned.page));
        self.drop_deferred(&mut owned);
        self.set_map(owned.client, owned.page, NIL);
        self.free_frame(index);
        // The test-only injected bug forgets the block reference of a freed
        // tagged frame, to prove the model checker notices (tests/model.rs).
        if owned.mode == Mode::Tagged && !cfg!(feature = "inject-forget-block-ref") {
            self.drop_ref(machine, index);
        }
    }

    pub(crate) fn alloc_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        request: AllocRequest,
    ) -> Result<Allocation, PoolError> {
        let state = self.client_state(client)?;
        if request.order > MAX_ORDER {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OrderTooLarge,
                value: u64::from(request.order),
            });
        }
        let pages = 1u32 << request.order;
        let first_page = self.window_range(client, request.vaddr, pages)?;
        for page in first_page..first_page + pages {
            if self.mapped(client, page).is_some() {
                return Err(PoolError::AlreadyMapped {
                    vaddr: self.vaddr_of(client, page),
                });
            }
        }
        if state.frames_used + pages > state.quota_frames {
            if cfg!(feature = "inject-refusal-side-effect") {
                // Injected bug (tests/model.rs): a refusal that counts a
                // migration, so it changes the pool.
                self.stats.migrations += 1;
            }
            return Err(PoolError::OutOfQuota {
                client,
                used: state.frames_used,
                requested: pages,
                quota: state.quota_frames,
            });
        }
        if request.tagged && self.layout.tag_frames_total() == 0 {
            return Err(PoolError::Unsupported);
        }

        // Plan.
        let mut reserve = BlockList::new();
        let mut evacuate_at = None;
        let mut swap = None;
        let head = if request.tagged {
            match self.find_reserved_data(request.order) {
                Some(head) => head,
                None => match self.plan_swap(request.order) {
                    Some(planned) => {
                        swap = Some(planned);
                        planned.source
                    }
                    None => {
                        let found = self
                            .find_tagged_data(request.order)
                            .ok_or(PoolError::NoMemory { frames: pages })?;
                        let head = self.place_inside(found, request.order, true);
                        reserve = self.unreserved_blocks(head, pages);
                        self.check_reservation(&reserve, pages)?;
                        head
                    }
                },
            }
        } else if request.pinned || request.contiguous {
            match self.find_untagged_data(request.order) {
                Some(found) => self.place_inside(found, request.order, false),
                None => {
                    let start = self.plan_evacuation(request.order)?;
                    evacuate_at = Some(start);
                    start
                }
            }
        } else {
            let found = self
                .find_untagged_movable(request.order)
                .ok_or(PoolError::NoMemory { frames: pages })?;
            self.place_inside(found, request.order, false)
        };

        // Commit.
        match (evacuate_at, swap) {
            (Some(start), _) => self.commit_evacuation(machine, start, request.order),
            (None, Some(swap)) => {
                // The untagged page moves out; the tagged one takes its frame.
                self.take_free_block(swap.destination, 0);
                self.migrate(machine, swap.source, swap.destination);
                self.set(swap.source, Frame::FreeTail);
            }
            // The head may lie inside the free block found (placement
            // inside a split block): take it out of that block.
            (None, None) => self.extract_free(head, request.order),
        }
        self.commit_reservation(machine, &reserve);
        let mode = if request.tagged {
            Mode::Tagged
        } else {
            Mode::Untagged
        };
        for offset in 0..pages {
            let index = head + offset;
            let pfn = self.pfn(index);
            machine.zero_frame(pfn);
            self.work.pages_zeroed += 1;
            if request.tagged {
                // The test-only injected bug hands the frame out with the
                // tags it had, to prove the property suite's shadow notices.
                if !cfg!(feature = "inject-stale-tags") {
                    machine.zero_tags(pfn);
                    self.work.tag_writes += 1;
                }
                self.add_ref(index);
            }
            let page = first_page + offset;
            self.set(
                index,
                Frame::Owned(Owned {
                    client,
                    mode,
                    pinned: request.pinned,
                    contiguous: request.contiguous,
                    head: offset == 0,
                    order: request.order,
                    deferred: None,
                    page,
                }),
            );
            self.set_map(client, page, index);
            machine.map(client, self.vaddr_of(client, page), pfn, access_for(mode));
        }
        let in_tag_storage = self.pool_of(head) == PoolKind::Tag;
        if in_tag_storage {
            self.refile_after_tag_change(head, pages);
        }
        self.clients[usize::from(client)].frames_used += pages;
        Ok(Allocation {
            vaddr: request.vaddr,
            pages,
            first_frame: self.pfn(head),
            in_tag_storage,
        })
    }

    pub(crate) fn free_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<u32, PoolError> {
        let (page, _, owned) = self.owned_page(client, vaddr)?;
        if !owned.head {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::NotAllocationHead,
                value: vaddr,
            });
        }
        let pages = 1u32 << owned.order;
        for offset in 0..pages {
            let index = self
                .mapped(client, page + offset)
                .expect("every page of an allocation is mapped");
            self.release_page(machine, index);
        }
        if !cfg!(feature = "inject-quota-leak") {
            self.clients[usize::from(client)].frames_used -= pages;
        }
        Ok(pages)
    }

    pub(crate) fn pin_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
        vaddr: u64,
    ) -> Result<(), PoolError> {
        let (_, index, owned) = self.owned_page(client, vaddr)?;
        if owned.pinned {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::AlreadyPinned,
                value: vaddr,
            });
        }
        if owned.contiguous {
            // Contiguous allocations are pinned or not as a whole, at allocation.
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Contiguous,
                value: vaddr,
            });
        }
        // A page awaiting tags must stay taggable once pinned: pinned pages
        // never move, so it has to sit in memory with tag storage.
        let awaiting_tags = owned.mode == Mode::MetadataNone;
        if awaiting_tags && self.pool_of(index) == PoolKind::Data && self.must_move_to_tag(index) {
            return Err(PoolError::Unsupported);
        }
        let mut at = index;
        if self.pool_of(index) == PoolKind::Tag {
            let destination = if awaiting_tags {
                self.find_taggable_data(0)
            } else {
                self.find_untagged_data(0)
            }
            .ok_or(PoolError::NoMemory { frames: 1 })?;
            self.take_free_block(destination, 0);
            self.migrate(machine, index, destination);
            self.free_frame(index);
            at = destination;
        }
        let Frame::Owned(mut owned) = self.entry(at) else {
            unreachable!()
        };
        owned.pinned = true;
        self.set(at, Frame::Owned(owned));
        Ok(())
    }

    pub(crate) fn unpin_inner(&mut self, client: ClientId, vaddr: u64) -> Result<(), PoolError> {
        let (_, index, mut owned) = self.owned_page(client, vaddr)?;
        if !owned.pinned {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::NotPinned,
                value: vaddr,
            });
        }
        if owned.contiguous {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Contiguous,
                value: vaddr,
            });
        }
        owned.pinned = false;
        self.set(index, Frame::Owned(owned));
        Ok(())
    }

    pub(crate) fn query_inner(
        &mut self,
        client: ClientId,
        vaddr: u64,
    ) -> Result<PageInfo, PoolError> {
        let (_, index, owned) = self.owned_page(client, vaddr & !(PAGE - 1))?;
        Ok(PageInfo {
            state: match owned.mode {
                Mode::Untagged => PageState::Untagged,
                Mode::Tagged => PageState::Tagged,
                Mode::MetadataNone => PageState::MetadataNone,
            },
            pinned: owned.pinned,
            contiguous: owned.contiguous,
            in_tag_storage: self.pool_of(index) == PoolKind::Tag,
            deferred_tags: owned.deferred.is_some(),
            frame: self.pfn(index),
        })
    }
}
