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
        self.client_state(client)?;
        let mut reclaimed = 0;
        // The mapped-page bits lead to what the client holds; its window
        // costs a summary word per 4,096 pages.
        let mut from = 0;
        while let Some(page) = self.next_mapped(client, from) {
            let index = self
                .mapped(client, page)
                .expect("a mapped bit has a page-map entry");
            self.release_page(machine, index);
            reclaimed += 1;
            from = page + 1;
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
