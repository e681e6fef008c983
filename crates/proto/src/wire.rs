//! The message layouts, one `#[repr(C)]` struct of words per message shape.
//! `zerocopy` reads them from and writes them to the message registers.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Registers a layout occupies.
pub(crate) const fn words_of<T>() -> usize {
    core::mem::size_of::<T>() / 8
}

macro_rules! layout {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
        #[repr(C)]
        pub(crate) struct $name { $(pub(crate) $field: u64),* }
    };
}

layout!(
    /// `stats`: the header alone.
    HeaderWire { header }
);
layout!(
    /// `alloc`: where, and the order with the flags (bits 3:0 order, bit 8
    /// tagged, bit 9 pinned, bit 10 contiguous).
    AllocWire { header, vaddr, spec }
);
layout!(
    /// `free`, `pin`, `unpin`, `query`: one address.
    VaddrWire { header, vaddr }
);
layout!(
    /// `enable_tagging`, `disable_tagging`: a range of pages.
    RangeWire { header, vaddr, pages }
);
layout!(
    /// `resolve_fault`: which client, where, and what kind of fault.
    ResolveWire { header, client, vaddr, kind }
);
layout!(
    /// `reclaim_client`.
    ClientWire { header, client }
);
layout!(
    /// Reply to `alloc`.
    AllocReplyWire { pages, first_frame, flags }
);
layout!(
    /// Reply with one count.
    OneWire { value }
);
layout!(
    /// Reply to `query`: state and flags (bits 7:0 state, 8 pinned,
    /// 9 contiguous, 10 in tag storage, 11 deferred tags), and the frame.
    QueryReplyWire { flags, frame }
);
layout!(
    /// Reply to `stats`.
    StatsReplyWire {
        metadata_total,
        metadata_free,
        lent,
        reserved_blocks,
        migrations,
        recalls,
        failures,
        data_total,
        data_free,
    }
);
layout!(
    /// Reply to `resolve_fault`: 0 tagged (value: bit 0 migrated, bit 1
    /// deferred tags restored), 1 already tagged, 2 tag check (value: the
    /// allocation tag).
    ResolveReplyWire { kind, value }
);
