//! The protocol table: every operation, once (DESIGN §6).
//!
//! A row is: the operation, its label, its name, who may call it, its
//! request words after the header (`name: Codec`), its reply (a
//! [`Message`](crate::Message)), and the statuses it refuses with. The
//! `protocol!` macro (`declare.rs`) makes the enums, the codecs, the client
//! methods and the server's dispatch from it, and `c_header.rs` writes the
//! C header (`include/tagloan.h`) from the same rows.

use crate::values::*;

crate::protocol! {
    /// Allocates `2^spec.order` pages at `vaddr` in the caller's window.
    Alloc = 1, alloc, by Client,
        request { vaddr: Vaddr, spec: Spec },
        reply Allocated,
        refuses [InvalidArgument, NotOwner, OutOfQuota, NoMemory, AlreadyMapped, Busy, Unsupported];

    /// Frees the allocation whose first page is at `vaddr`.
    Free = 2, free, by Client,
        request { vaddr: Vaddr },
        reply Freed,
        refuses [InvalidArgument, NotOwner, NotMapped, Busy];

    /// mprotect(PROT_MTE)-like: the pages take tags on their first touch.
    EnableTagging = 3, enable_tagging, by Client,
        request { vaddr: Vaddr, pages: Pages },
        reply (),
        refuses [InvalidArgument, NotOwner, NotMapped, Busy, Unsupported];

    /// Maps the pages untagged again; their tags are discarded.
    DisableTagging = 4, disable_tagging, by Client,
        request { vaddr: Vaddr, pages: Pages },
        reply (),
        refuses [InvalidArgument, NotOwner, NotMapped, Busy, Unsupported];

    /// Pins the page at `vaddr`: it will never move.
    Pin = 5, pin, by Client,
        request { vaddr: Vaddr },
        reply (),
        refuses [InvalidArgument, NotOwner, NotMapped, NoMemory, Busy, Unsupported];

    /// Unpins the page at `vaddr`.
    Unpin = 6, unpin, by Client,
        request { vaddr: Vaddr },
        reply (),
        refuses [InvalidArgument, NotOwner, NotMapped];

    /// The state of the page at `vaddr`.
    Query = 7, query, by Client,
        request { vaddr: Vaddr },
        reply PageInfo,
        refuses [InvalidArgument, NotOwner, NotMapped];

    /// The server's statistics.
    Stats = 8, stats, by Client,
        request {},
        reply StatsReply,
        refuses [];

    /// Resolves `client`'s fault at `vaddr` (an access), or reports the
    /// allocation tag behind it (a tag check). Fault handler only.
    ResolveFault = 16, resolve_fault, by FaultHandler,
        request { client: ClientIndex, vaddr: Vaddr, kind: Kind },
        reply FaultReply,
        refuses [InvalidArgument, NotOwner, NotMapped, NoMemory, Busy, Unsupported];

    /// Frees every frame of `client`. Fault handler only.
    ReclaimClient = 17, reclaim_client, by FaultHandler,
        request { client: ClientIndex },
        reply Reclaimed,
        refuses [InvalidArgument];
}
