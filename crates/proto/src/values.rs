//! The values the protocol carries, and how each travels in a word.
//!
//! Every message register has a [`Codec`]: the Rust value it holds and the
//! rule that decoding checks. A reply of several words is a [`Message`]; the
//! simple ones are declared with [`record!`](crate::record), field by field,
//! the two packed ones ([`PageInfo`], [`FaultReply`]) by hand below. These
//! are the types a client and the server share; the pool core has its own
//! and the memory server maps them (`pds/memory_server/src/convert.rs`).

use crate::{DecodeError, MAX_ORDER, MAX_TABLE_CLIENTS, MAX_USER_VADDR};

/// Identifies a client: its index in the client table.
pub type ClientId = u8;

/// How one message register carries one value.
pub trait Codec {
    /// The value.
    type Value: Copy + core::fmt::Debug + PartialEq;
    /// The word a value travels as.
    fn encode(value: &Self::Value) -> u64;
    /// The value in a word, or why the word is not one (`word` is its index
    /// in the message, for the error).
    fn decode(word: usize, raw: u64) -> Result<Self::Value, DecodeError>;
}

/// A message of several registers: a reply's results.
pub trait Message: Sized {
    /// The registers' names, in order (the C header's offsets follow them).
    const WORDS: &'static [&'static str];
    /// Writes the registers into `out` (at least `WORDS.len()` long).
    fn encode(&self, out: &mut [u64]);
    /// Reads exactly `WORDS.len()` registers (the caller checked the count).
    fn decode(words: &[u64]) -> Result<Self, DecodeError>;
}

/// Any 64-bit value.
pub struct Plain;
impl Codec for Plain {
    type Value = u64;
    fn encode(value: &u64) -> u64 {
        *value
    }
    fn decode(_word: usize, raw: u64) -> Result<u64, DecodeError> {
        Ok(raw)
    }
}

/// A user virtual address: at most [`MAX_USER_VADDR`].
pub struct Vaddr;
impl Codec for Vaddr {
    type Value = u64;
    fn encode(value: &u64) -> u64 {
        *value
    }
    fn decode(word: usize, raw: u64) -> Result<u64, DecodeError> {
        if raw > MAX_USER_VADDR {
            return Err(DecodeError::OutOfRange { word, value: raw });
        }
        Ok(raw)
    }
}

/// A page count of a range: 1 to `u32::MAX`.
pub struct Pages;
impl Codec for Pages {
    type Value = u32;
    fn encode(value: &u32) -> u64 {
        u64::from(*value)
    }
    fn decode(word: usize, raw: u64) -> Result<u32, DecodeError> {
        match u32::try_from(raw) {
            Ok(pages) if pages > 0 => Ok(pages),
            _ => Err(DecodeError::OutOfRange { word, value: raw }),
        }
    }
}

/// A count in a reply: 0 to `u32::MAX`.
pub struct Count;
impl Codec for Count {
    type Value = u32;
    fn encode(value: &u32) -> u64 {
        u64::from(*value)
    }
    fn decode(word: usize, raw: u64) -> Result<u32, DecodeError> {
        u32::try_from(raw).map_err(|_| DecodeError::OutOfRange { word, value: raw })
    }
}

/// A client id: below [`MAX_TABLE_CLIENTS`].
pub struct ClientIndex;
impl Codec for ClientIndex {
    type Value = ClientId;
    fn encode(value: &ClientId) -> u64 {
        u64::from(*value)
    }
    fn decode(word: usize, raw: u64) -> Result<ClientId, DecodeError> {
        match u8::try_from(raw) {
            Ok(client) if usize::from(client) < MAX_TABLE_CLIENTS => Ok(client),
            _ => Err(DecodeError::OutOfRange { word, value: raw }),
        }
    }
}

/// A flag word: 0 or 1, every other bit reserved.
pub struct Bit;
impl Codec for Bit {
    type Value = bool;
    fn encode(value: &bool) -> u64 {
        u64::from(*value)
    }
    fn decode(word: usize, raw: u64) -> Result<bool, DecodeError> {
        if raw > 1 {
            return Err(DecodeError::ReservedBits {
                word,
                bits: raw & !1,
            });
        }
        Ok(raw == 1)
    }
}

/// Allocation flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllocFlags {
    pub tagged: bool,
    pub pinned: bool,
    pub contiguous: bool,
}

/// What an `alloc` asks for: `2^order` pages, with flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllocSpec {
    pub order: u8,
    pub flags: AllocFlags,
}

impl AllocSpec {
    /// `2^order` untagged movable pages.
    pub const fn order(order: u8) -> AllocSpec {
        AllocSpec {
            order,
            flags: AllocFlags {
                tagged: false,
                pinned: false,
                contiguous: false,
            },
        }
    }

    /// The same, with `flags`.
    pub const fn with(self, flags: AllocFlags) -> AllocSpec {
        AllocSpec {
            order: self.order,
            flags,
        }
    }
}

/// The `alloc` spec word: bits 3:0 order, bit 8 tagged, bit 9 pinned, bit 10
/// contiguous; the rest reserved.
pub struct Spec;
/// The bits of the `alloc` spec word.
pub const SPEC_ORDER_MASK: u64 = 0xf;
pub const SPEC_TAGGED: u64 = 1 << 8;
pub const SPEC_PINNED: u64 = 1 << 9;
pub const SPEC_CONTIGUOUS: u64 = 1 << 10;
const SPEC_KNOWN: u64 = SPEC_ORDER_MASK | SPEC_TAGGED | SPEC_PINNED | SPEC_CONTIGUOUS;
impl Codec for Spec {
    type Value = AllocSpec;
    fn encode(spec: &AllocSpec) -> u64 {
        let flag = |set: bool, bit: u64| if set { bit } else { 0 };
        u64::from(spec.order)
            | flag(spec.flags.tagged, SPEC_TAGGED)
            | flag(spec.flags.pinned, SPEC_PINNED)
            | flag(spec.flags.contiguous, SPEC_CONTIGUOUS)
    }
    fn decode(word: usize, raw: u64) -> Result<AllocSpec, DecodeError> {
        if raw & !SPEC_KNOWN != 0 {
            return Err(DecodeError::ReservedBits {
                word,
                bits: raw & !SPEC_KNOWN,
            });
        }
        let order = (raw & SPEC_ORDER_MASK) as u8;
        if order > MAX_ORDER {
            return Err(DecodeError::OutOfRange { word, value: raw });
        }
        Ok(AllocSpec {
            order,
            flags: AllocFlags {
                tagged: raw & SPEC_TAGGED != 0,
                pinned: raw & SPEC_PINNED != 0,
                contiguous: raw & SPEC_CONTIGUOUS != 0,
            },
        })
    }
}

/// The kind of fault the fault handler asks the server about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A VM fault on a page: resolve it if the page awaits tags.
    Access = 0,
    /// An MTE tag-check fault: report the allocation tag; change nothing.
    TagCheck = 1,
}

/// The fault kind word: 0 access, 1 tag check.
pub struct Kind;
impl Codec for Kind {
    type Value = FaultKind;
    fn encode(kind: &FaultKind) -> u64 {
        *kind as u64
    }
    fn decode(word: usize, raw: u64) -> Result<FaultKind, DecodeError> {
        match raw {
            0 => Ok(FaultKind::Access),
            1 => Ok(FaultKind::TagCheck),
            value => Err(DecodeError::OutOfRange { word, value }),
        }
    }
}

/// Declares a reply of one word per field, and its [`Message`] encoding:
/// each field is `name: Codec`, and the field's type is the codec's value.
#[macro_export]
macro_rules! record {
    ($(#[$doc:meta])* pub struct $name:ident { $($(#[$fdoc:meta])* $field:ident : $codec:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name { $($(#[$fdoc])* pub $field: <$codec as $crate::Codec>::Value),* }

        impl $crate::Message for $name {
            const WORDS: &'static [&'static str] = &[$(stringify!($field)),*];
            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn encode(&self, out: &mut [u64]) {
                let mut i = 0;
                $( out[i] = <$codec as $crate::Codec>::encode(&self.$field); i += 1; )*
            }
            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn decode(words: &[u64]) -> Result<Self, $crate::DecodeError> {
                let mut i = 0;
                $( let $field = <$codec as $crate::Codec>::decode(i, words[i])?; i += 1; )*
                Ok($name { $($field),* })
            }
        }
    };
}

record! {
    /// Reply to `alloc`.
    pub struct Allocated {
        pages: Count,
        /// The first frame's physical frame number.
        first_frame: Plain,
        /// Whether the frames are borrowed tag storage.
        in_tag_storage: Bit,
    }
}

record! {
    /// Reply to `free`.
    pub struct Freed { pages: Count }
}

record! {
    /// Reply to `reclaim_client`.
    pub struct Reclaimed { frames: Count }
}

/// The reply of an operation with no results: no registers.
impl Message for () {
    const WORDS: &'static [&'static str] = &[];
    fn encode(&self, _out: &mut [u64]) {}
    fn decode(_words: &[u64]) -> Result<(), DecodeError> {
        Ok(())
    }
}

record! {
    /// The `stats` reply (DESIGN §6).
    pub struct StatsReply {
        /// Tag storage frames (the RFC's MetadataTotal).
        metadata_total: Plain,
        /// Free tag storage frames (MetadataFree).
        metadata_free: Plain,
        /// Tag storage frames lent as data.
        lent: Plain,
        /// Tag blocks reserved for tags.
        reserved_blocks: Plain,
        migrations: Plain,
        recalls: Plain,
        /// Requests refused, all causes.
        failures: Plain,
        data_total: Plain,
        data_free: Plain,
    }
}

/// The state of a page as `query` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageState {
    /// Mapped read-write, untagged.
    Untagged,
    /// Mapped tagged.
    Tagged,
    /// Tagging enabled, no storage yet: the next touch faults.
    MetadataNone,
}

/// What `query` reports of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageInfo {
    pub state: PageState,
    pub pinned: bool,
    pub contiguous: bool,
    /// The frame is borrowed tag storage.
    pub in_tag_storage: bool,
    /// Tags are parked for it, to come back on the next fault.
    pub deferred_tags: bool,
    /// The physical frame number.
    pub frame: u64,
}

/// Bits of `query`'s flags word: 1:0 the state (7:2 reserved), 8 pinned, 9 contiguous,
/// 10 in tag storage, 11 deferred tags.
const PAGE_KNOWN_BITS: u64 = 0xf03;
impl Message for PageInfo {
    const WORDS: &'static [&'static str] = &["flags", "frame"];
    fn encode(&self, out: &mut [u64]) {
        let state = match self.state {
            PageState::Untagged => 0,
            PageState::Tagged => 1,
            PageState::MetadataNone => 2,
        };
        out[0] = state
            | u64::from(self.pinned) << 8
            | u64::from(self.contiguous) << 9
            | u64::from(self.in_tag_storage) << 10
            | u64::from(self.deferred_tags) << 11;
        out[1] = self.frame;
    }
    fn decode(words: &[u64]) -> Result<PageInfo, DecodeError> {
        let flags = words[0];
        if flags & !PAGE_KNOWN_BITS != 0 {
            return Err(DecodeError::ReservedBits {
                word: 0,
                bits: flags & !PAGE_KNOWN_BITS,
            });
        }
        let state = match flags & 0x3 {
            0 => PageState::Untagged,
            1 => PageState::Tagged,
            2 => PageState::MetadataNone,
            value => return Err(DecodeError::OutOfRange { word: 0, value }),
        };
        let bit = |n: u32| flags >> n & 1 == 1;
        Ok(PageInfo {
            state,
            pinned: bit(8),
            contiguous: bit(9),
            in_tag_storage: bit(10),
            deferred_tags: bit(11),
            frame: words[1],
        })
    }
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

/// Words `kind` and `value`: 0 tagged (value: bit 0 migrated, bit 1
/// deferred tags restored), 1 already tagged (value 0), 2 tag check (value:
/// the allocation tag).
impl Message for FaultReply {
    const WORDS: &'static [&'static str] = &["kind", "value"];
    fn encode(&self, out: &mut [u64]) {
        let (kind, value) = match *self {
            FaultReply::Tagged { migrated, deferred } => {
                (0, u64::from(migrated) | u64::from(deferred) << 1)
            }
            FaultReply::AlreadyTagged => (1, 0),
            FaultReply::TagCheck { memory_tag } => (2, u64::from(memory_tag)),
        };
        out[0] = kind;
        out[1] = value;
    }
    fn decode(words: &[u64]) -> Result<FaultReply, DecodeError> {
        Ok(match (words[0], words[1]) {
            (0, v) if v <= 3 => FaultReply::Tagged {
                migrated: v & 1 == 1,
                deferred: v & 2 == 2,
            },
            (1, 0) => FaultReply::AlreadyTagged,
            (2, v) if v <= 0xf => FaultReply::TagCheck {
                memory_tag: v as u8,
            },
            (0..=2, value) => return Err(DecodeError::OutOfRange { word: 1, value }),
            (value, _) => return Err(DecodeError::OutOfRange { word: 0, value }),
        })
    }
}
