//! Reclaiming a stopped client's frames, and the server's own frames.

use crate::error::PoolError;
use crate::frame::Frame;
use crate::{ClientId, Machine, Pool};
use tagloan_mte::Pfn;

impl Pool<'_> {
    pub(crate) fn reclaim_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        client: ClientId,
    ) -> Result<u32, PoolError> {
        let state = self.client_state(client)?;
        let mut reclaimed = 0;
        // A walk of the client's whole window: bounded by its size, not by
        // what it holds (the reverse map is indexed by window page).
        self.work.frames_scanned += u64::from(state.window_pages);
        for page in 0..state.window_pages {
            if let Some(index) = self.mapped(client, page) {
                self.release_page(machine, index);
                reclaimed += 1;
            }
        }
        self.clients[usize::from(client)].frames_used = 0;
        Ok(reclaimed)
    }

    pub(crate) fn server_frame_inner<M: Machine + ?Sized>(
        &mut self,
        machine: &mut M,
        tagged: bool,
    ) -> Result<Pfn, PoolError> {
        if tagged && self.layout.tag_frames_total() == 0 {
            return Err(PoolError::Unsupported);
        }
        let head = if tagged {
            let head = self
                .find_tagged_data(0)
                .ok_or(PoolError::NoMemory { frames: 1 })?;
            let block = self
                .layout
                .group_block(head)
                .expect("tagged frame has a block");
            let first = self.layout.block_tag_frames(block).start;
            if matches!(
                self.entry(first),
                Frame::TagReserved {
                    holds: u16::MAX,
                    ..
                }
            ) {
                // The hold count is 16 bits: refuse rather than wrap.
                return Err(PoolError::NoMemory { frames: 1 });
            }
            let reserve = self.unreserved_blocks(head, 1);
            self.check_reservation(&reserve, 1)?;
            self.take_free_block(head, 0);
            self.commit_reservation(machine, &reserve);
            head
        } else {
            let head = self
                .find_untagged_data(0)
                .ok_or(PoolError::NoMemory { frames: 1 })?;
            self.take_free_block(head, 0);
            head
        };
        let pfn = self.pfn(head);
        machine.zero_frame(pfn);
        if tagged {
            machine.zero_tags(pfn);
            let block = self
                .layout
                .group_block(head)
                .expect("tagged frame has a block");
            self.add_hold(block);
        }
        self.set(
            head,
            Frame::Server {
                head: true,
                order: 0,
                tagged,
            },
        );
        self.stats.frames_server += 1;
        Ok(pfn)
    }
}
