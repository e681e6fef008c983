//! Typed errors of the pool core. Each says which input broke which rule.

use crate::layout::{FrameIndex, LayoutError};

/// Why a request was refused. The pool is unchanged after any of these (I12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The request breaks a rule of the API; `rule` names it.
    InvalidArgument { rule: ArgumentRule, value: u64 },
    /// The address lies in another client's window.
    NotOwner { client: u8, vaddr: u64, owner: u8 },
    /// The request would take the client over its quota.
    OutOfQuota {
        client: u8,
        used: u32,
        requested: u32,
        quota: u32,
    },
    /// No frame, contiguous range or recall destination is free.
    NoMemory { frames: u32 },
    /// A page of the requested range is already mapped.
    AlreadyMapped { vaddr: u64 },
    /// The page is not mapped.
    NotMapped { vaddr: u64 },
    /// The page is in a state that forbids the operation right now.
    Busy { vaddr: u64, reason: BusyReason },
    /// Tagged memory was asked for, but no region has tag storage (MTE off).
    Unsupported,
    /// The bounded deferred-tag store has no free slot.
    DeferredStoreFull { slots: u32 },
}

/// The argument rules a request can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgumentRule {
    /// The client number is not declared.
    UnknownClient,
    /// The buddy order is above [`crate::MAX_ORDER`].
    OrderTooLarge,
    /// The address is not 4 KiB aligned.
    Misaligned,
    /// The range leaves the client's window.
    OutsideWindow,
    /// Freeing an address that is not the first page of an allocation.
    NotAllocationHead,
    /// A page count of zero, or one that overflows.
    BadPageCount,
    /// The page is not awaiting tags (it is not metadata-none).
    NotAwaitingTags,
    /// Pinning a page that is already pinned.
    AlreadyPinned,
    /// Unpinning a page that is not pinned.
    NotPinned,
    /// Contiguous allocations cannot be pinned piecewise or tagged lazily.
    Contiguous,
}

impl core::fmt::Display for ArgumentRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ArgumentRule::UnknownClient => "the client is not declared in the system",
            ArgumentRule::OrderTooLarge => "the order is above 9 (2 MiB); split the request",
            ArgumentRule::Misaligned => "the address is not 4 KiB aligned",
            ArgumentRule::OutsideWindow => "the range leaves the client's heap window",
            ArgumentRule::NotAllocationHead => "free takes the first address of an allocation",
            ArgumentRule::BadPageCount => "the page count is zero or overflows",
            ArgumentRule::NotAwaitingTags => "the page is not metadata-none; enable tagging first",
            ArgumentRule::AlreadyPinned => "the page is already pinned",
            ArgumentRule::NotPinned => "the page is not pinned",
            ArgumentRule::Contiguous => {
                "the page belongs to a contiguous allocation, which is managed as a whole"
            }
        })
    }
}

/// Why a page is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyReason {
    /// Pinned pages never move, so they cannot take a migration.
    Pinned,
}

impl core::fmt::Display for PoolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PoolError::InvalidArgument { rule, value } => {
                write!(f, "invalid argument {value:#x}: {rule}")
            }
            PoolError::NotOwner { client, vaddr, owner } => write!(
                f,
                "client {client} may not act on {vaddr:#x}: it lies in client {owner}'s window"
            ),
            PoolError::OutOfQuota { client, used, requested, quota } => write!(
                f,
                "client {client} holds {used} frames and asked for {requested}; its quota is {quota}. \
                 Free memory or raise the quota in system.xml"
            ),
            PoolError::NoMemory { frames } => {
                write!(f, "no memory: {frames} frames could not be found or recalled")
            }
            PoolError::AlreadyMapped { vaddr } => {
                write!(f, "{vaddr:#x} is already mapped; free it first or pick another address")
            }
            PoolError::NotMapped { vaddr } => write!(f, "{vaddr:#x} is not mapped"),
            PoolError::Busy { vaddr, reason } => match reason {
                BusyReason::Pinned => write!(f, "{vaddr:#x} is pinned and cannot move; unpin it first"),
            },
            PoolError::Unsupported => {
                write!(f, "tagged memory is unsupported: MTE is off or no region has tag storage")
            }
            PoolError::DeferredStoreFull { slots } => write!(
                f,
                "the deferred-tag store is full ({slots} slots); resolve faults on metadata-none pages first"
            ),
        }
    }
}

/// Why the pool could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The layout is invalid.
    Layout(LayoutError),
    /// A storage slice has the wrong length; call [`crate::Pool::storage_sizes`].
    StorageSize {
        table: &'static str,
        expected: usize,
        given: usize,
    },
    /// More clients than a frame entry can name.
    TooManyClients { count: usize },
    /// More deferred-tag slots than a frame entry can point at.
    TooManyDeferredSlots { count: usize },
    /// A client window is empty, misaligned or wraps around.
    BadWindow { client: u8 },
    /// Two client windows overlap.
    WindowsOverlap { first: u8, second: u8 },
    /// A frame index passed in does not exist.
    NoSuchFrame { frame: FrameIndex },
    /// The bookkeeping region is smaller than the tables need.
    BookkeepingTooSmall { needed: usize, given: usize },
    /// The bookkeeping region does not start on an 8-byte boundary.
    BookkeepingMisaligned,
}

impl From<LayoutError> for InitError {
    fn from(error: LayoutError) -> InitError {
        InitError::Layout(error)
    }
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            InitError::Layout(error) => write!(f, "{error}"),
            InitError::StorageSize { table, expected, given } => write!(
                f,
                "storage table `{table}` has {given} entries, the pool needs {expected}; size it with Pool::storage_sizes"
            ),
            InitError::TooManyClients { count } => {
                write!(f, "{count} clients declared; at most {} are supported", crate::MAX_CLIENTS)
            }
            InitError::TooManyDeferredSlots { count } => write!(
                f,
                "{count} deferred-tag slots asked for; at most {} are supported",
                crate::frame::MAX_DEFERRED_SLOTS
            ),
            InitError::BadWindow { client } => write!(
                f,
                "client {client}'s window is empty, not 4 KiB aligned, or wraps the address space"
            ),
            InitError::BookkeepingTooSmall { needed, given } => write!(
                f,
                "the bookkeeping region has {given} bytes, the pool tables need {needed}; raise its size in system.xml"
            ),
            InitError::BookkeepingMisaligned => {
                f.write_str("the bookkeeping region is not 8-byte aligned; map it on a page boundary")
            }
            InitError::WindowsOverlap { first, second } => {
                write!(f, "the windows of clients {first} and {second} overlap; windows must be disjoint")
            }
            InitError::NoSuchFrame { frame } => write!(f, "frame index {frame} is not managed"),
        }
    }
}
