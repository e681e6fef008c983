//! Checking a request against the caller's window and the page map, before
//! anything changes: the first half of every operation's plan phase.

use crate::error::{ArgumentRule, PoolError};
use crate::frame::{Frame, Owned};
use crate::layout::{FrameIndex, PoolKind, NIL};
use crate::ops::*;
use crate::{ClientId, ClientState, Pool};
use tagloan_mte::Pfn;

impl Pool<'_> {
    pub(crate) fn client_state(&self, client: ClientId) -> Result<ClientState, PoolError> {
        self.clients
            .get(usize::from(client))
            .copied()
            .ok_or(PoolError::InvalidArgument {
                rule: ArgumentRule::UnknownClient,
                value: u64::from(client),
            })
    }

    /// The first window page of `pages` pages at `vaddr`, checked.
    pub(crate) fn window_range(
        &self,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<u32, PoolError> {
        let state = self.client_state(client)?;
        if !vaddr.is_multiple_of(PAGE) {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::Misaligned,
                value: vaddr,
            });
        }
        if pages == 0 {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::BadPageCount,
                value: 0,
            });
        }
        let window_end = state.window_base + u64::from(state.window_pages) * PAGE;
        let inside = vaddr >= state.window_base && vaddr < window_end;
        if !inside {
            for (other, s) in self.clients.iter().enumerate() {
                let end = s.window_base + u64::from(s.window_pages) * PAGE;
                if vaddr >= s.window_base && vaddr < end {
                    return Err(PoolError::NotOwner {
                        client,
                        vaddr,
                        owner: other as u8,
                    });
                }
            }
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OutsideWindow,
                value: vaddr,
            });
        }
        let first = ((vaddr - state.window_base) / PAGE) as u32;
        if u64::from(first) + u64::from(pages) > u64::from(state.window_pages) {
            return Err(PoolError::InvalidArgument {
                rule: ArgumentRule::OutsideWindow,
                value: vaddr,
            });
        }
        Ok(first)
    }

    /// Checks that every page of the range is mapped, and returns its first page.
    pub(crate) fn mapped_range(
        &self,
        client: ClientId,
        vaddr: u64,
        pages: u32,
    ) -> Result<u32, PoolError> {
        let first = self.window_range(client, vaddr, pages)?;
        for page in first..first + pages {
            if self.mapped(client, page).is_none() {
                return Err(PoolError::NotMapped {
                    vaddr: self.vaddr_of(client, page),
                });
            }
        }
        Ok(first)
    }

    pub(crate) fn map_slot(&self, client: ClientId, page: u32) -> usize {
        (self.clients[usize::from(client)].map_first + page) as usize
    }

    pub(crate) fn mapped(&self, client: ClientId, page: u32) -> Option<FrameIndex> {
        match self.page_map[self.map_slot(client, page)] {
            NIL => None,
            frame => Some(frame),
        }
    }

    pub(crate) fn vaddr_of(&self, client: ClientId, page: u32) -> u64 {
        self.clients[usize::from(client)].window_base + u64::from(page) * PAGE
    }

    #[inline]
    pub(crate) fn pfn(&self, index: FrameIndex) -> Pfn {
        match self.layout.pfn(index) {
            Some(pfn) => pfn,
            None => panic!("frame {index} is not managed"),
        }
    }

    /// The frame mapped at `vaddr`, which `client` owns.
    pub(crate) fn owned_page(
        &self,
        client: ClientId,
        vaddr: u64,
    ) -> Result<(u32, FrameIndex, Owned), PoolError> {
        let page = self.window_range(client, vaddr, 1)?;
        let index = self
            .mapped(client, page)
            .ok_or(PoolError::NotMapped { vaddr })?;
        match self.entry(index) {
            Frame::Owned(owned) if owned.client == client && owned.page == page => {
                Ok((page, index, owned))
            }
            other => {
                panic!("page map of client {client} points at frame {index} in state {other:?}")
            }
        }
    }

    /// Whether an owned page must move before it can be tagged: it lives in
    /// tag storage, or in memory without tag storage.
    pub(crate) fn must_move_to_tag(&self, index: FrameIndex) -> bool {
        self.pool_of(index) == PoolKind::Tag || self.layout.group_block(index).is_none()
    }
}

/// Each table's `(name, expected length, given length)` must agree.
pub(crate) fn check_storage_sizes<const N: usize>(
    checks: [(&'static str, usize, usize); N],
) -> Result<(), crate::InitError> {
    match checks.iter().find(|(_, expected, given)| expected != given) {
        Some(&(table, expected, given)) => Err(crate::InitError::StorageSize {
            table,
            expected,
            given,
        }),
        None => Ok(()),
    }
}
