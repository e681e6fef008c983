//! The tagloan IPC protocol (DESIGN §6), declared once and shared by the
//! memory server, the fault handler and every client.
//!
//! A request is a Microkit protected procedure call: the message label is the
//! operation ([`Op`]), message register 0 is the header word (the protocol
//! version; every other bit reserved and zero), and the following registers
//! are the arguments. The reply label is a [`Status`], and the reply registers
//! are the results, or two detail words for an error.
//!
//! Each layout is a `#[repr(C)]` struct of `u64` words typed with `zerocopy`,
//! so a message is read from and written to the message registers without
//! hand-written offsets. Decoding is total: every label, register count and
//! word is checked, and anything malformed gives a [`DecodeError`] naming the
//! word and the rule. A request that decodes re-encodes to the same words.
#![no_std]

mod table;
mod wire;

pub use table::{ClientEntry, ClientTable, TableError, MAX_TABLE_CLIENTS};

use tagloan_pool::{ArgumentRule, BusyReason, PageInfo, PageState, PoolError};
use wire::*;
use zerocopy::{FromBytes, IntoBytes};

/// The protocol version carried in every request's header word.
pub const PROTOCOL_VERSION: u64 = 1;
/// The bits of the header word that hold the version; the rest are reserved.
const VERSION_MASK: u64 = 0xffff;
/// Most message registers any message of this protocol uses.
pub const MAX_MESSAGE_WORDS: usize = 10;
/// The largest user virtual address a request may name. Microkit runs seL4
/// in hypervisor mode on AArch64, where a PD's address space is as wide as
/// the physical one: 40 bits on the QEMU virt board, the narrowest it
/// supports. Microkit puts each PD's stack just below that top.
pub const MAX_USER_VADDR: u64 = (1 << 40) - 1;
/// The largest buddy order a request may ask for (2 MiB).
pub const MAX_ORDER: u8 = tagloan_pool::MAX_ORDER;

/// Operations: the label of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Op {
    Alloc = 1,
    Free = 2,
    EnableTagging = 3,
    DisableTagging = 4,
    Pin = 5,
    Unpin = 6,
    Query = 7,
    Stats = 8,
    /// Fault handler only.
    ResolveFault = 16,
    /// Fault handler only.
    ReclaimClient = 17,
}

impl Op {
    /// Every operation, for tests and tables.
    pub const ALL: [Op; 10] = [
        Op::Alloc,
        Op::Free,
        Op::EnableTagging,
        Op::DisableTagging,
        Op::Pin,
        Op::Unpin,
        Op::Query,
        Op::Stats,
        Op::ResolveFault,
        Op::ReclaimClient,
    ];

    /// The operation a label names.
    pub fn from_label(label: u64) -> Option<Op> {
        Op::ALL.into_iter().find(|op| *op as u64 == label)
    }

    /// Whether only the fault handler may ask for it.
    pub fn fault_handler_only(self) -> bool {
        matches!(self, Op::ResolveFault | Op::ReclaimClient)
    }

    /// Register count of a request (header included).
    pub fn request_words(self) -> usize {
        match self {
            Op::Alloc => words_of::<AllocWire>(),
            Op::Free | Op::Pin | Op::Unpin | Op::Query => words_of::<VaddrWire>(),
            Op::EnableTagging | Op::DisableTagging => words_of::<RangeWire>(),
            Op::Stats => words_of::<HeaderWire>(),
            Op::ResolveFault => words_of::<ResolveWire>(),
            Op::ReclaimClient => words_of::<ClientWire>(),
        }
    }

    /// The operation's name as the README and traces spell it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Alloc => "alloc",
            Op::Free => "free",
            Op::EnableTagging => "enable_tagging",
            Op::DisableTagging => "disable_tagging",
            Op::Pin => "pin",
            Op::Unpin => "unpin",
            Op::Query => "query",
            Op::Stats => "stats",
            Op::ResolveFault => "resolve_fault",
            Op::ReclaimClient => "reclaim_client",
        }
    }
}

/// Allocation flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllocFlags {
    pub tagged: bool,
    pub pinned: bool,
    pub contiguous: bool,
}

/// The kind of fault the fault handler asks the server about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A VM fault on a page: resolve it if the page awaits tags.
    Access = 0,
    /// An MTE tag-check fault: report the allocation tag; change nothing.
    TagCheck = 1,
}

/// A decoded, structurally valid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    Alloc {
        vaddr: u64,
        order: u8,
        flags: AllocFlags,
    },
    Free {
        vaddr: u64,
    },
    EnableTagging {
        vaddr: u64,
        pages: u32,
    },
    DisableTagging {
        vaddr: u64,
        pages: u32,
    },
    Pin {
        vaddr: u64,
    },
    Unpin {
        vaddr: u64,
    },
    Query {
        vaddr: u64,
    },
    Stats,
    ResolveFault {
        client: u8,
        vaddr: u64,
        kind: FaultKind,
    },
    ReclaimClient {
        client: u8,
    },
}

/// Why a message did not decode. `word` counts registers from 0 (the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The label names no operation.
    UnknownLabel { label: u64 },
    /// The register count does not fit the operation.
    WrongCount { expected: usize, found: usize },
    /// The header's version is not [`PROTOCOL_VERSION`].
    BadVersion { found: u64 },
    /// Reserved bits of a word are set.
    ReservedBits { word: usize, bits: u64 },
    /// A word is outside its range.
    OutOfRange { word: usize, value: u64 },
    /// A reply's status label is unknown.
    UnknownStatus { label: u64 },
}

impl DecodeError {
    /// Detail words of a `Malformed` reply: which rule, and which word.
    pub fn detail(&self) -> [u64; 2] {
        match *self {
            DecodeError::UnknownLabel { label } => [1, label],
            DecodeError::WrongCount { found, .. } => [2, found as u64],
            DecodeError::BadVersion { found } => [3, found],
            DecodeError::ReservedBits { word, .. } => [4, word as u64],
            DecodeError::OutOfRange { word, .. } => [5, word as u64],
            DecodeError::UnknownStatus { label } => [6, label],
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::UnknownLabel { label } => {
                write!(
                    f,
                    "label {label} names no operation (see tagloan_proto::Op)"
                )
            }
            DecodeError::WrongCount { expected, found } => write!(
                f,
                "{found} message registers sent, the operation takes {expected}"
            ),
            DecodeError::BadVersion { found } => write!(
                f,
                "protocol version {found} in the header word; this server speaks {PROTOCOL_VERSION}"
            ),
            DecodeError::ReservedBits { word, bits } => {
                write!(
                    f,
                    "reserved bits {bits:#x} set in word {word}; they must be zero"
                )
            }
            DecodeError::OutOfRange { word, value } => {
                write!(f, "word {word} holds {value:#x}, outside its range")
            }
            DecodeError::UnknownStatus { label } => {
                write!(f, "reply status {label} is not a tagloan status")
            }
        }
    }
}

fn header_word() -> u64 {
    PROTOCOL_VERSION
}

fn check_header(header: u64) -> Result<(), DecodeError> {
    if header & !VERSION_MASK != 0 {
        return Err(DecodeError::ReservedBits {
            word: 0,
            bits: header & !VERSION_MASK,
        });
    }
    if header != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion { found: header });
    }
    Ok(())
}

fn check_vaddr(word: usize, vaddr: u64) -> Result<u64, DecodeError> {
    if vaddr > MAX_USER_VADDR {
        return Err(DecodeError::OutOfRange { word, value: vaddr });
    }
    Ok(vaddr)
}

fn check_pages(word: usize, pages: u64) -> Result<u32, DecodeError> {
    match u32::try_from(pages) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(DecodeError::OutOfRange { word, value: pages }),
    }
}

fn check_client(word: usize, client: u64) -> Result<u8, DecodeError> {
    match u8::try_from(client) {
        Ok(c) if usize::from(c) < MAX_TABLE_CLIENTS => Ok(c),
        _ => Err(DecodeError::OutOfRange {
            word,
            value: client,
        }),
    }
}

const ALLOC_ORDER_MASK: u64 = 0xf;
const ALLOC_TAGGED: u64 = 1 << 8;
const ALLOC_PINNED: u64 = 1 << 9;
const ALLOC_CONTIGUOUS: u64 = 1 << 10;
const ALLOC_KNOWN: u64 = ALLOC_ORDER_MASK | ALLOC_TAGGED | ALLOC_PINNED | ALLOC_CONTIGUOUS;

fn read<T: FromBytes>(words: &[u64]) -> T {
    // The caller checked the count, so the sizes match.
    T::read_from_bytes(words.as_bytes()).expect("register count checked before reading")
}

fn write<T: IntoBytes + zerocopy::Immutable>(value: &T, out: &mut [u64]) -> usize {
    let bytes = value.as_bytes();
    out[..bytes.len() / 8].as_mut_bytes().copy_from_slice(bytes);
    bytes.len() / 8
}

impl Request {
    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Request::Alloc { .. } => Op::Alloc,
            Request::Free { .. } => Op::Free,
            Request::EnableTagging { .. } => Op::EnableTagging,
            Request::DisableTagging { .. } => Op::DisableTagging,
            Request::Pin { .. } => Op::Pin,
            Request::Unpin { .. } => Op::Unpin,
            Request::Query { .. } => Op::Query,
            Request::Stats => Op::Stats,
            Request::ResolveFault { .. } => Op::ResolveFault,
            Request::ReclaimClient { .. } => Op::ReclaimClient,
        }
    }

    /// Checks the request's fields against their ranges: what decoding
    /// guarantees. Hand-built requests can be checked before encoding.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        let (label, count) = self.encode_unchecked(&mut words);
        Request::decode(label, &words[..count]).map(|_| ())
    }

    /// Writes the request into `out` (at least [`MAX_MESSAGE_WORDS`] long).
    /// Returns the label and the register count. Out-of-range fields are
    /// written as given; the server will refuse them.
    pub fn encode_unchecked(&self, out: &mut [u64]) -> (u64, usize) {
        let header = header_word();
        let count = match *self {
            Request::Alloc {
                vaddr,
                order,
                flags,
            } => {
                let mut spec = u64::from(order);
                spec |= if flags.tagged { ALLOC_TAGGED } else { 0 };
                spec |= if flags.pinned { ALLOC_PINNED } else { 0 };
                spec |= if flags.contiguous {
                    ALLOC_CONTIGUOUS
                } else {
                    0
                };
                write(
                    &AllocWire {
                        header,
                        vaddr,
                        spec,
                    },
                    out,
                )
            }
            Request::Free { vaddr }
            | Request::Pin { vaddr }
            | Request::Unpin { vaddr }
            | Request::Query { vaddr } => write(&VaddrWire { header, vaddr }, out),
            Request::EnableTagging { vaddr, pages } | Request::DisableTagging { vaddr, pages } => {
                write(
                    &RangeWire {
                        header,
                        vaddr,
                        pages: u64::from(pages),
                    },
                    out,
                )
            }
            Request::Stats => write(&HeaderWire { header }, out),
            Request::ResolveFault {
                client,
                vaddr,
                kind,
            } => write(
                &ResolveWire {
                    header,
                    client: u64::from(client),
                    vaddr,
                    kind: kind as u64,
                },
                out,
            ),
            Request::ReclaimClient { client } => write(
                &ClientWire {
                    header,
                    client: u64::from(client),
                },
                out,
            ),
        };
        (self.op() as u64, count)
    }

    /// Decodes a request from its label and message registers.
    pub fn decode(label: u64, words: &[u64]) -> Result<Request, DecodeError> {
        let op = Op::from_label(label).ok_or(DecodeError::UnknownLabel { label })?;
        let expected = op.request_words();
        if words.len() != expected {
            return Err(DecodeError::WrongCount {
                expected,
                found: words.len(),
            });
        }
        check_header(words[0])?;
        Ok(match op {
            Op::Alloc => {
                let w: AllocWire = read(words);
                if w.spec & !ALLOC_KNOWN != 0 {
                    return Err(DecodeError::ReservedBits {
                        word: 2,
                        bits: w.spec & !ALLOC_KNOWN,
                    });
                }
                let order = (w.spec & ALLOC_ORDER_MASK) as u8;
                if order > MAX_ORDER {
                    return Err(DecodeError::OutOfRange {
                        word: 2,
                        value: w.spec,
                    });
                }
                Request::Alloc {
                    vaddr: check_vaddr(1, w.vaddr)?,
                    order,
                    flags: AllocFlags {
                        tagged: w.spec & ALLOC_TAGGED != 0,
                        pinned: w.spec & ALLOC_PINNED != 0,
                        contiguous: w.spec & ALLOC_CONTIGUOUS != 0,
                    },
                }
            }
            Op::Free | Op::Pin | Op::Unpin | Op::Query => {
                let w: VaddrWire = read(words);
                let vaddr = check_vaddr(1, w.vaddr)?;
                match op {
                    Op::Free => Request::Free { vaddr },
                    Op::Pin => Request::Pin { vaddr },
                    Op::Unpin => Request::Unpin { vaddr },
                    _ => Request::Query { vaddr },
                }
            }
            Op::EnableTagging | Op::DisableTagging => {
                let w: RangeWire = read(words);
                let vaddr = check_vaddr(1, w.vaddr)?;
                let pages = check_pages(2, w.pages)?;
                if op == Op::EnableTagging {
                    Request::EnableTagging { vaddr, pages }
                } else {
                    Request::DisableTagging { vaddr, pages }
                }
            }
            Op::Stats => Request::Stats,
            Op::ResolveFault => {
                let w: ResolveWire = read(words);
                let kind = match w.kind {
                    0 => FaultKind::Access,
                    1 => FaultKind::TagCheck,
                    value => return Err(DecodeError::OutOfRange { word: 3, value }),
                };
                Request::ResolveFault {
                    client: check_client(1, w.client)?,
                    vaddr: check_vaddr(2, w.vaddr)?,
                    kind,
                }
            }
            Op::ReclaimClient => {
                let w: ClientWire = read(words);
                Request::ReclaimClient {
                    client: check_client(1, w.client)?,
                }
            }
        })
    }
}

/// The status of a reply: its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Malformed = 2,
    NotOwner = 3,
    PermissionDenied = 4,
    OutOfQuota = 5,
    NoMemory = 6,
    AlreadyMapped = 7,
    NotMapped = 8,
    Busy = 9,
    Unsupported = 10,
}

impl Status {
    const ALL: [Status; 11] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::Malformed,
        Status::NotOwner,
        Status::PermissionDenied,
        Status::OutOfQuota,
        Status::NoMemory,
        Status::AlreadyMapped,
        Status::NotMapped,
        Status::Busy,
        Status::Unsupported,
    ];

    /// The status a label names.
    pub fn from_label(label: u64) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u64 == label)
    }

    /// The status's name as the README spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::InvalidArgument => "invalid-argument",
            Status::Malformed => "malformed",
            Status::NotOwner => "not-owner",
            Status::PermissionDenied => "permission-denied",
            Status::OutOfQuota => "out-of-quota",
            Status::NoMemory => "no-memory",
            Status::AlreadyMapped => "already-mapped",
            Status::NotMapped => "not-mapped",
            Status::Busy => "busy",
            Status::Unsupported => "unsupported",
        }
    }
}

/// A refused request: the status and its two detail words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    pub status: Status,
    pub detail: [u64; 2],
}

impl Error {
    /// A malformed request.
    pub fn malformed(error: DecodeError) -> Error {
        Error {
            status: Status::Malformed,
            detail: error.detail(),
        }
    }

    /// A request the caller has no authority for (its label is the detail).
    pub fn permission_denied(op: Op) -> Error {
        Error {
            status: Status::PermissionDenied,
            detail: [op as u64, 0],
        }
    }
}

/// Detail codes of `invalid-argument`: the pool's [`ArgumentRule`].
pub fn argument_rule_code(rule: ArgumentRule) -> u64 {
    match rule {
        ArgumentRule::UnknownClient => 1,
        ArgumentRule::OrderTooLarge => 2,
        ArgumentRule::Misaligned => 3,
        ArgumentRule::OutsideWindow => 4,
        ArgumentRule::NotAllocationHead => 5,
        ArgumentRule::BadPageCount => 6,
        ArgumentRule::NotAwaitingTags => 7,
        ArgumentRule::AlreadyPinned => 8,
        ArgumentRule::NotPinned => 9,
        ArgumentRule::Contiguous => 10,
    }
}

/// Detail code of `busy` for the deferred-tag store being full; the others
/// are the pool's [`BusyReason`] codes from 1.
pub const BUSY_DEFERRED_STORE_FULL: u64 = 100;

impl From<PoolError> for Error {
    fn from(error: PoolError) -> Error {
        let (status, detail) = match error {
            PoolError::InvalidArgument { rule, value } => {
                (Status::InvalidArgument, [argument_rule_code(rule), value])
            }
            PoolError::NotOwner { vaddr, owner, .. } => {
                (Status::NotOwner, [vaddr, u64::from(owner)])
            }
            PoolError::OutOfQuota {
                used,
                requested,
                quota,
                ..
            } => (
                Status::OutOfQuota,
                [u64::from(used) + u64::from(requested), u64::from(quota)],
            ),
            PoolError::NoMemory { frames } => (Status::NoMemory, [u64::from(frames), 0]),
            PoolError::AlreadyMapped { vaddr } => (Status::AlreadyMapped, [vaddr, 0]),
            PoolError::NotMapped { vaddr } => (Status::NotMapped, [vaddr, 0]),
            PoolError::Busy { vaddr, reason } => (Status::Busy, [vaddr, busy_code(reason)]),
            PoolError::Unsupported => (Status::Unsupported, [0, 0]),
            PoolError::DeferredStoreFull { slots } => {
                (Status::Busy, [u64::from(slots), BUSY_DEFERRED_STORE_FULL])
            }
        };
        Error { status, detail }
    }
}

fn busy_code(reason: BusyReason) -> u64 {
    match reason {
        BusyReason::Pinned => 1,
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} (detail {:#x}, {:#x})",
            self.status.name(),
            self.detail[0],
            self.detail[1]
        )
    }
}

/// What the server returns for each operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    Alloc {
        pages: u32,
        first_frame: u64,
        in_tag_storage: bool,
    },
    Freed {
        pages: u32,
    },
    Done,
    Query(PageInfo),
    Stats(StatsReply),
    Resolved(FaultReply),
    Reclaimed {
        frames: u32,
    },
}

/// The `stats` reply (DESIGN §6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatsReply {
    /// Tag storage frames (the RFC's MetadataTotal).
    pub metadata_total: u64,
    /// Free tag storage frames (MetadataFree).
    pub metadata_free: u64,
    /// Tag storage frames lent as data.
    pub lent: u64,
    /// Tag blocks reserved for tags.
    pub reserved_blocks: u64,
    pub migrations: u64,
    pub recalls: u64,
    /// Requests refused, all causes.
    pub failures: u64,
    pub data_total: u64,
    pub data_free: u64,
}

/// What `resolve_fault` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultReply {
    /// The page is mapped tagged now; resume the client.
    Tagged { migrated: bool, deferred: bool },
    /// The page was already tagged; resume the client.
    AlreadyTagged,
    /// A tag-check fault: the allocation tag of the faulting granule.
    TagCheck { memory_tag: u8 },
}

fn page_info_words(info: &PageInfo) -> [u64; 2] {
    let state = match info.state {
        PageState::Untagged => 0,
        PageState::Tagged => 1,
        PageState::MetadataNone => 2,
    };
    let flags = state
        | u64::from(info.pinned) << 8
        | u64::from(info.contiguous) << 9
        | u64::from(info.in_tag_storage) << 10
        | u64::from(info.deferred_tags) << 11;
    [flags, info.frame]
}

fn bit(word: u64, n: u32) -> bool {
    word >> n & 1 == 1
}

impl Response {
    /// Writes the reply registers; returns the count. The label is [`Status::Ok`].
    pub fn encode(&self, out: &mut [u64]) -> usize {
        match *self {
            Response::Alloc {
                pages,
                first_frame,
                in_tag_storage,
            } => write(
                &AllocReplyWire {
                    pages: u64::from(pages),
                    first_frame,
                    flags: u64::from(in_tag_storage),
                },
                out,
            ),
            Response::Freed { pages } => write(
                &OneWire {
                    value: u64::from(pages),
                },
                out,
            ),
            Response::Done => 0,
            Response::Query(info) => {
                let [flags, frame] = page_info_words(&info);
                write(&QueryReplyWire { flags, frame }, out)
            }
            Response::Stats(s) => write(
                &StatsReplyWire {
                    metadata_total: s.metadata_total,
                    metadata_free: s.metadata_free,
                    lent: s.lent,
                    reserved_blocks: s.reserved_blocks,
                    migrations: s.migrations,
                    recalls: s.recalls,
                    failures: s.failures,
                    data_total: s.data_total,
                    data_free: s.data_free,
                },
                out,
            ),
            Response::Resolved(reply) => {
                let (kind, value) = match reply {
                    FaultReply::Tagged { migrated, deferred } => {
                        (0, u64::from(migrated) | u64::from(deferred) << 1)
                    }
                    FaultReply::AlreadyTagged => (1, 0),
                    FaultReply::TagCheck { memory_tag } => (2, u64::from(memory_tag)),
                };
                write(&ResolveReplyWire { kind, value }, out)
            }
            Response::Reclaimed { frames } => write(
                &OneWire {
                    value: u64::from(frames),
                },
                out,
            ),
        }
    }

    /// Decodes the reply to `op` from its label and registers: the server's
    /// answer, or a [`DecodeError`] if the reply itself is malformed.
    pub fn decode(
        op: Op,
        label: u64,
        words: &[u64],
    ) -> Result<Result<Response, Error>, DecodeError> {
        let status = Status::from_label(label).ok_or(DecodeError::UnknownStatus { label })?;
        if status != Status::Ok {
            if words.len() != 2 {
                return Err(DecodeError::WrongCount {
                    expected: 2,
                    found: words.len(),
                });
            }
            return Ok(Err(Error {
                status,
                detail: [words[0], words[1]],
            }));
        }
        let expected = match op {
            Op::Alloc => words_of::<AllocReplyWire>(),
            Op::Free | Op::ReclaimClient => words_of::<OneWire>(),
            Op::EnableTagging | Op::DisableTagging | Op::Pin | Op::Unpin => 0,
            Op::Query => words_of::<QueryReplyWire>(),
            Op::Stats => words_of::<StatsReplyWire>(),
            Op::ResolveFault => words_of::<ResolveReplyWire>(),
        };
        if words.len() != expected {
            return Err(DecodeError::WrongCount {
                expected,
                found: words.len(),
            });
        }
        let narrow = |word: usize, value: u64| {
            u32::try_from(value).map_err(|_| DecodeError::OutOfRange { word, value })
        };
        Ok(Ok(match op {
            Op::Alloc => {
                let w: AllocReplyWire = read(words);
                if w.flags > 1 {
                    return Err(DecodeError::ReservedBits {
                        word: 2,
                        bits: w.flags & !1,
                    });
                }
                Response::Alloc {
                    pages: narrow(0, w.pages)?,
                    first_frame: w.first_frame,
                    in_tag_storage: w.flags == 1,
                }
            }
            Op::Free => Response::Freed {
                pages: narrow(0, read::<OneWire>(words).value)?,
            },
            Op::ReclaimClient => Response::Reclaimed {
                frames: narrow(0, read::<OneWire>(words).value)?,
            },
            Op::EnableTagging | Op::DisableTagging | Op::Pin | Op::Unpin => Response::Done,
            Op::Query => {
                let w: QueryReplyWire = read(words);
                if w.flags & !0xf03 != 0 {
                    return Err(DecodeError::ReservedBits {
                        word: 0,
                        bits: w.flags & !0xf03,
                    });
                }
                let state = match w.flags & 0xff {
                    0 => PageState::Untagged,
                    1 => PageState::Tagged,
                    2 => PageState::MetadataNone,
                    value => return Err(DecodeError::OutOfRange { word: 0, value }),
                };
                Response::Query(PageInfo {
                    state,
                    pinned: bit(w.flags, 8),
                    contiguous: bit(w.flags, 9),
                    in_tag_storage: bit(w.flags, 10),
                    deferred_tags: bit(w.flags, 11),
                    frame: w.frame,
                })
            }
            Op::Stats => {
                let w: StatsReplyWire = read(words);
                Response::Stats(StatsReply {
                    metadata_total: w.metadata_total,
                    metadata_free: w.metadata_free,
                    lent: w.lent,
                    reserved_blocks: w.reserved_blocks,
                    migrations: w.migrations,
                    recalls: w.recalls,
                    failures: w.failures,
                    data_total: w.data_total,
                    data_free: w.data_free,
                })
            }
            Op::ResolveFault => {
                let w: ResolveReplyWire = read(words);
                Response::Resolved(match (w.kind, w.value) {
                    (0, v) if v <= 3 => FaultReply::Tagged {
                        migrated: bit(v, 0),
                        deferred: bit(v, 1),
                    },
                    (1, 0) => FaultReply::AlreadyTagged,
                    (2, v) if v <= 0xf => FaultReply::TagCheck {
                        memory_tag: v as u8,
                    },
                    (0..=2, value) => return Err(DecodeError::OutOfRange { word: 1, value }),
                    (value, _) => return Err(DecodeError::OutOfRange { word: 0, value }),
                })
            }
        }))
    }
}

/// Writes an error reply; returns the label and the register count.
pub fn encode_error(error: &Error, out: &mut [u64]) -> (u64, usize) {
    out[..2].copy_from_slice(&error.detail);
    (error.status as u64, 2)
}

/// The channel ids every PD of a tagloan system uses at its own end. The
/// server's ends are in the client table (each client's badge).
pub mod channels {
    /// A client's channel to the memory server (pp).
    pub const CLIENT_TO_SERVER: u8 = 0;
    /// A client's channel to the fault handler, which paces it (notify).
    pub const CLIENT_TO_SUPERVISOR: u8 = 1;
    /// The fault handler's channel to the memory server (pp). Its channel to
    /// each client has the client's child id.
    pub const FAULT_HANDLER_TO_SERVER: u8 = 0;
}
