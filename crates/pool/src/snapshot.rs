//! A pool's state beside its tables, so that a copy of the tables and the
//! header are the whole pool: a model checker (crates/pool/tests/model.rs)
//! keeps millions of pool states this way, and resumes any of them.

use crate::{InitError, Layout, Pool, Storage, MAX_CLIENTS};

/// Everything of a [`Pool`] that is not in its caller-owned tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolHeader {
    layout: Layout,
    config: crate::Config,
    data_lists: [[crate::FrameIndex; crate::CLASSES]; crate::ORDERS],
    tag_lists: [crate::FrameIndex; crate::ORDERS],
    nonempty_orders: [u16; crate::CLASSES + 1],
    stats: crate::Stats,
    work: crate::Work,
    evacuation_cursor: crate::FrameIndex,
    swap_cursor: crate::layout::BlockId,
    swap_offset: u32,
}

impl<'a> Pool<'a> {
    /// This pool's state beside its tables.
    pub fn header(&self) -> PoolHeader {
        PoolHeader {
            layout: self.layout,
            config: self.config,
            data_lists: self.data_lists,
            tag_lists: self.tag_lists,
            nonempty_orders: self.nonempty_orders,
            stats: self.stats,
            work: self.work,
            evacuation_cursor: self.evacuation_cursor,
            swap_cursor: self.swap_cursor,
            swap_offset: self.swap_offset,
        }
    }

    /// The pool `header` was taken from, over `storage`, which must hold
    /// copies of that pool's tables as they were then (nothing checks the
    /// contents here: [`Pool::check_invariants`] does). The table sizes are
    /// checked against the header's layout and config and the clients'
    /// windows.
    pub fn resume(header: PoolHeader, storage: Storage<'a>) -> Result<Pool<'a>, InitError> {
        let page_map: usize = storage
            .clients
            .iter()
            .map(|c| c.window_pages as usize)
            .sum();
        let map_bits: usize = storage
            .clients
            .iter()
            .map(|c| crate::mapped::words(c.window_pages))
            .sum();
        crate::validate::check_storage_sizes([
            (
                "frames",
                header.layout.frames_total() as usize,
                storage.frames.len(),
            ),
            ("page_map", page_map, storage.page_map.len()),
            ("map_bits", map_bits, storage.map_bits.len()),
            (
                "deferred",
                usize::from(header.config.deferred_slots),
                storage.deferred.len(),
            ),
            (
                "blocks",
                header.layout.blocks_total() as usize,
                storage.blocks.len(),
            ),
        ])?;
        if storage.clients.len() > MAX_CLIENTS {
            return Err(InitError::TooManyClients {
                count: storage.clients.len(),
            });
        }
        Ok(Pool {
            layout: header.layout,
            config: header.config,
            frames: storage.frames,
            page_map: storage.page_map,
            map_bits: storage.map_bits,
            deferred: storage.deferred,
            clients: storage.clients,
            blocks: storage.blocks,
            data_lists: header.data_lists,
            tag_lists: header.tag_lists,
            nonempty_orders: header.nonempty_orders,
            stats: header.stats,
            work: header.work,
            evacuation_cursor: header.evacuation_cursor,
            swap_cursor: header.swap_cursor,
            swap_offset: header.swap_offset,
        })
    }
}
