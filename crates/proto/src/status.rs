//! Reply statuses, refusals and their detail words, and decode errors.
//!
//! A refused request's reply label is a [`Status`] and its two registers are
//! detail words. The detail codes are part of the protocol (a client reads
//! them), so they are defined here, not by the server's internals: the
//! memory server maps its pool's errors onto them.

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
    /// Every status, in label order.
    pub const ALL: [Status; 11] = [
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

/// The rule an `invalid-argument` refusal names: its first detail word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ArgumentRule {
    // (Every variant is listed in `ArgumentRule::ALL`.)
    /// The client id names no client.
    UnknownClient = 1,
    /// The order is above the largest the pool serves.
    OrderTooLarge = 2,
    /// The address is not aligned to the allocation's size.
    Misaligned = 3,
    /// The range leaves the client's heap window.
    OutsideWindow = 4,
    /// The address is inside an allocation but not its first page.
    NotAllocationHead = 5,
    /// The page count is zero or too large.
    BadPageCount = 6,
    /// The page does not await tags (or is not tagged, for a tag check).
    NotAwaitingTags = 7,
    AlreadyPinned = 8,
    NotPinned = 9,
    /// A contiguous allocation cannot take this operation page by page.
    Contiguous = 10,
}

impl ArgumentRule {
    /// Every rule, in code order.
    pub const ALL: [ArgumentRule; 10] = [
        ArgumentRule::UnknownClient,
        ArgumentRule::OrderTooLarge,
        ArgumentRule::Misaligned,
        ArgumentRule::OutsideWindow,
        ArgumentRule::NotAllocationHead,
        ArgumentRule::BadPageCount,
        ArgumentRule::NotAwaitingTags,
        ArgumentRule::AlreadyPinned,
        ArgumentRule::NotPinned,
        ArgumentRule::Contiguous,
    ];
}

/// The second detail word of a `busy` refusal.
pub mod busy {
    /// The page is pinned and cannot move or change.
    pub const PINNED: u64 = 1;
    /// The deferred-tag store is full (the first detail word is its size).
    pub const DEFERRED_STORE_FULL: u64 = 100;
}

/// A refused request: the status and its two detail words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    pub status: Status,
    pub detail: [u64; 2],
}

impl Error {
    /// A refusal with no details.
    pub const fn bare(status: Status) -> Error {
        Error {
            status,
            detail: [0, 0],
        }
    }

    /// An `invalid-argument` refusal under `rule`, with the offending value.
    pub const fn invalid(rule: ArgumentRule, value: u64) -> Error {
        Error {
            status: Status::InvalidArgument,
            detail: [rule as u64, value],
        }
    }

    /// A malformed request.
    pub fn malformed(error: DecodeError) -> Error {
        Error {
            status: Status::Malformed,
            detail: error.detail(),
        }
    }

    /// A request the caller has no authority for (its label is the detail).
    pub fn permission_denied(label: u64) -> Error {
        Error {
            status: Status::PermissionDenied,
            detail: [label, 0],
        }
    }

    /// Writes the error reply's registers; returns the label and the count.
    /// A refusal is never `ok`: one built with it goes out as `malformed`,
    /// so no client can read it as a success.
    pub fn encode(&self, out: &mut [u64]) -> (u64, usize) {
        out[..2].copy_from_slice(&self.detail);
        let status = match self.status {
            Status::Ok => Status::Malformed,
            status => status,
        };
        (status as u64, 2)
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

/// Why a message did not decode. `word` counts registers from 0 (the header
/// of a request, the first result of a reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The label names no operation.
    UnknownLabel { label: u64 },
    /// The register count does not fit the operation.
    WrongCount { expected: usize, found: usize },
    /// The header's version is not [`crate::PROTOCOL_VERSION`].
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
                "protocol version {found} in the header word; this server speaks {}",
                crate::PROTOCOL_VERSION
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
