//! The frame table entry: eight bytes per managed frame.
//!
//! A frame is in exactly one state (invariant I1). The state and everything
//! the pool needs to know about the frame in that state is packed in one
//! `u64`, so the bookkeeping costs 8 bytes per 4 KiB frame (0.2 %), against
//! the 64-byte `struct page` of Linux. Logic works on the unpacked [`Frame`].
//!
//! Layout of the word (bit 0 is the least significant):
//!
//! | state | bits |
//! |---|---|
//! | all | 0..4 kind |
//! | free head | 4..8 order, 8..10 class, 10..37 next, 37..64 prev |
//! | owned | 4..12 client, 12..14 mode, 14 pinned, 15 contiguous, 16 head, 17..21 order, 21..32 deferred slot + 1, 32..64 page in window |
//! | tag reserved | 4..36 references from tagged frames, 36..52 permanent holds |
//! | server | 4..8 order, 8 head |

use crate::layout::{FrameIndex, NIL};

/// Largest buddy order: 2^9 frames, 2 MiB.
pub const MAX_ORDER: u8 = 9;

/// Number of buddy orders, 0 to [`MAX_ORDER`].
pub const ORDERS: usize = MAX_ORDER as usize + 1;

/// The most deferred-tag slots a frame entry can point at.
pub const MAX_DEFERRED_SLOTS: usize = (1 << 11) - 1;

/// The most clients a frame entry can name.
pub const MAX_CLIENTS: usize = 255;

/// How a free data block is filed, by the state of the tag blocks whose
/// groups it touches. Tagged requests search the classes cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Every touched tag block is reserved: tagging a frame here costs nothing.
    Reserved = 0,
    /// Some touched block is free in the tag pool: reserving it is cheap.
    FreeBlock = 1,
    /// Some touched block is lent as data: tagging here needs a recall.
    Lent = 2,
    /// The memory has no tag storage: it can never be tagged.
    Untaggable = 3,
}

/// Number of classes.
pub const CLASSES: usize = 4;

/// What the pool keeps per tag block, so that classifying a block and
/// counting its borrowers read one word instead of its frames: the tag
/// frames lent as data (bits 0..30) and the class its group's free data
/// blocks are filed under (bits 30..32), so a group is refiled only when
/// the block's class changes. Four bytes per block: 0.12 bytes per managed
/// frame with one-frame blocks.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(transparent)]
pub struct BlockState(u32);

const LENT_MASK: u32 = (1 << 30) - 1;

impl Default for BlockState {
    /// A block of a fresh pool: nothing lent, its group filed as free.
    fn default() -> BlockState {
        BlockState::new(0, Class::FreeBlock)
    }
}

impl BlockState {
    pub(crate) fn new(lent: u32, filed: Class) -> BlockState {
        debug_assert!(lent <= LENT_MASK);
        BlockState((lent & LENT_MASK) | (filed as u32) << 30)
    }

    /// Tag frames of the block lent as data.
    pub fn lent(self) -> u32 {
        self.0 & LENT_MASK
    }

    /// The class the block's group was last filed under.
    pub fn filed(self) -> Class {
        Class::from_bits(u64::from(self.0 >> 30))
    }

    pub(crate) fn raw(self) -> u32 {
        self.0
    }
}

impl Class {
    pub(crate) const ALL: [Class; CLASSES] = [
        Class::Reserved,
        Class::FreeBlock,
        Class::Lent,
        Class::Untaggable,
    ];

    fn from_bits(bits: u64) -> Class {
        Class::ALL[(bits & 3) as usize]
    }
}

/// How an owned frame is mapped in its client's VSpace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Mapped read-write, untagged.
    Untagged = 0,
    /// Mapped with the tagged (MTE) attribute; its tag block is reserved.
    Tagged = 1,
    /// Tagging enabled, storage not yet reserved: mapped no-access.
    MetadataNone = 2,
}

impl Mode {
    fn from_bits(bits: u64) -> Option<Mode> {
        match bits & 3 {
            0 => Some(Mode::Untagged),
            1 => Some(Mode::Tagged),
            2 => Some(Mode::MetadataNone),
            _ => None,
        }
    }
}

/// A frame handed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owned {
    /// Owning client.
    pub client: u8,
    /// How it is mapped.
    pub mode: Mode,
    /// Pinned frames never move.
    pub pinned: bool,
    /// Part of an allocation that must stay physically contiguous.
    pub contiguous: bool,
    /// First page of its allocation.
    pub head: bool,
    /// Buddy order of the allocation it belongs to.
    pub order: u8,
    /// Slot of its deferred tags, if any.
    pub deferred: Option<u16>,
    /// Page number of its mapping, relative to the client's window base.
    pub page: u32,
}

/// The unpacked state of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// First frame of a free buddy block, linked in a free list.
    FreeHead {
        order: u8,
        class: Class,
        next: FrameIndex,
        prev: FrameIndex,
    },
    /// Any other frame of a free buddy block.
    FreeTail,
    /// Mapped into a client.
    Owned(Owned),
    /// First frame of a reserved tag block, holding tags.
    TagReserved { refs: u32, holds: u16 },
    /// Any other frame of a reserved tag block.
    TagReservedTail,
    /// Used by the server itself; never tag storage. A `tagged` one holds
    /// its tag block for ever (a permanent hold, I4).
    Server { head: bool, order: u8, tagged: bool },
}

/// A packed frame entry. `FrameEntry::default()` is the state of a frame
/// before the pool takes it over.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::KnownLayout,
    zerocopy::Immutable,
)]
#[repr(transparent)]
pub struct FrameEntry(u64);

const KIND_UNSET: u64 = 0;
const KIND_FREE_HEAD: u64 = 1;
const KIND_FREE_TAIL: u64 = 2;
const KIND_OWNED: u64 = 3;
const KIND_TAG_RESERVED: u64 = 4;
const KIND_TAG_RESERVED_TAIL: u64 = 5;
const KIND_SERVER: u64 = 6;

const INDEX_MASK: u64 = NIL as u64;

/// A frame entry that does not decode: the table was corrupted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptEntry(pub u64);

impl FrameEntry {
    /// Packs `frame`. Inlined so that each caller's packing folds to the
    /// few bits its state sets.
    #[inline(always)]
    pub fn pack(frame: Frame) -> FrameEntry {
        FrameEntry(match frame {
            Frame::FreeHead {
                order,
                class,
                next,
                prev,
            } => {
                debug_assert!(order <= MAX_ORDER && next <= NIL && prev <= NIL);
                KIND_FREE_HEAD
                    | u64::from(order) << 4
                    | (class as u64) << 8
                    | (u64::from(next) & INDEX_MASK) << 10
                    | (u64::from(prev) & INDEX_MASK) << 37
            }
            Frame::FreeTail => KIND_FREE_TAIL,
            Frame::Owned(o) => {
                let deferred = match o.deferred {
                    Some(slot) => {
                        debug_assert!((slot as usize) < MAX_DEFERRED_SLOTS);
                        u64::from(slot) + 1
                    }
                    None => 0,
                };
                KIND_OWNED
                    | u64::from(o.client) << 4
                    | (o.mode as u64) << 12
                    | u64::from(o.pinned) << 14
                    | u64::from(o.contiguous) << 15
                    | u64::from(o.head) << 16
                    | u64::from(o.order & 0xf) << 17
                    | (deferred & 0x7ff) << 21
                    | u64::from(o.page) << 32
            }
            Frame::TagReserved { refs, holds } => {
                KIND_TAG_RESERVED | u64::from(refs) << 4 | u64::from(holds) << 36
            }
            Frame::TagReservedTail => KIND_TAG_RESERVED_TAIL,
            Frame::Server {
                head,
                order,
                tagged,
            } => {
                KIND_SERVER
                    | u64::from(order & 0xf) << 4
                    | u64::from(head) << 8
                    | u64::from(tagged) << 9
            }
        })
    }

    /// Unpacks the entry. Inlined so that each caller decodes only the
    /// fields it reads (the fast path's hottest function when it was not).
    #[inline(always)]
    pub fn unpack(self) -> Result<Frame, CorruptEntry> {
        let word = self.0;
        let field = |shift: u32, bits: u32| (word >> shift) & ((1u64 << bits) - 1);
        Ok(match word & 0xf {
            KIND_FREE_HEAD => Frame::FreeHead {
                order: field(4, 4) as u8,
                class: Class::from_bits(field(8, 2)),
                next: field(10, 27) as FrameIndex,
                prev: field(37, 27) as FrameIndex,
            },
            KIND_FREE_TAIL => Frame::FreeTail,
            KIND_OWNED => Frame::Owned(Owned {
                client: field(4, 8) as u8,
                mode: Mode::from_bits(field(12, 2)).ok_or(CorruptEntry(word))?,
                pinned: field(14, 1) == 1,
                contiguous: field(15, 1) == 1,
                head: field(16, 1) == 1,
                order: field(17, 4) as u8,
                deferred: match field(21, 11) {
                    0 => None,
                    slot => Some(slot as u16 - 1),
                },
                page: field(32, 32) as u32,
            }),
            KIND_TAG_RESERVED => Frame::TagReserved {
                refs: field(4, 32) as u32,
                holds: field(36, 16) as u16,
            },
            KIND_TAG_RESERVED_TAIL => Frame::TagReservedTail,
            KIND_SERVER => Frame::Server {
                order: field(4, 4) as u8,
                head: field(8, 1) == 1,
                tagged: field(9, 1) == 1,
            },
            KIND_UNSET => return Err(CorruptEntry(word)),
            _ => return Err(CorruptEntry(word)),
        })
    }

    /// The raw word, for snapshots and debugging.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The mode of an owned frame, read from its bits without unpacking the
    /// entry; `None` for any other state. The frame table's one writer
    /// needs only this of the entry it overwrites, and most writes (free
    /// list links) are not of owned frames.
    pub(crate) fn owned_mode(self) -> Option<Mode> {
        if self.0 & 0xf == KIND_OWNED {
            Mode::from_bits((self.0 >> 12) & 3)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_entry_is_eight_bytes() {
        assert_eq!(core::mem::size_of::<FrameEntry>(), 8);
    }

    #[test]
    fn every_state_round_trips_at_its_field_limits() {
        let frames = [
            Frame::FreeHead {
                order: MAX_ORDER,
                class: Class::Untaggable,
                next: NIL,
                prev: 0,
            },
            Frame::FreeHead {
                order: 0,
                class: Class::Lent,
                next: 12345,
                prev: NIL - 1,
            },
            Frame::FreeTail,
            Frame::Owned(Owned {
                client: 254,
                mode: Mode::MetadataNone,
                pinned: true,
                contiguous: false,
                head: true,
                order: MAX_ORDER,
                deferred: Some(MAX_DEFERRED_SLOTS as u16 - 1),
                page: u32::MAX,
            }),
            Frame::Owned(Owned {
                client: 0,
                mode: Mode::Tagged,
                pinned: false,
                contiguous: true,
                head: false,
                order: 0,
                deferred: None,
                page: 0,
            }),
            Frame::TagReserved {
                refs: u32::MAX,
                holds: u16::MAX,
            },
            Frame::TagReservedTail,
            Frame::Server {
                head: true,
                order: 9,
                tagged: true,
            },
        ];
        for frame in frames {
            assert_eq!(FrameEntry::pack(frame).unpack(), Ok(frame));
        }
    }

    #[test]
    fn an_unset_entry_is_reported_corrupt() {
        assert_eq!(FrameEntry::default().unpack(), Err(CorruptEntry(0)));
        assert!(FrameEntry(0xf).unpack().is_err());
        assert!(FrameEntry(KIND_OWNED | 3 << 12).unpack().is_err());
    }
}
