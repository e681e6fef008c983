//! What `check_invariants()` reports: the invariant, the frame, block, list
//! or client it found broken, the rule, and the expected and found values.

use crate::frame::Class;
use crate::layout::{FrameIndex, PoolKind};

/// Which invariant a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// I1: every frame is in exactly one state, one owner, one mapping.
    Ownership,
    /// I2: a tagged frame's tag block is reserved.
    TagsNeedStorage,
    /// I3: tag storage is never tagged, pinned, unmovable or server data.
    TagStorageUse,
    /// I4: a block's refcount equals its tagged frames plus holds.
    Refcount,
    /// I5: no frame of a reserved block is mapped as data.
    ReservedUnmapped,
    /// I7: deferred tags exist only for owned frames not mapped tagged.
    DeferredTags,
    /// I8: counters equal the lists and tables; quotas hold.
    Accounting,
    /// I11: only the owner's page map reaches a frame.
    Authority,
    /// The free lists and buddy structure are well formed (part of I1, I8).
    FreeLists,
}

impl Invariant {
    /// The short name used in the design, e.g. `I4 refcount`.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Ownership => "I1 ownership",
            Invariant::TagsNeedStorage => "I2 no tags without storage",
            Invariant::TagStorageUse => "I3 tag storage use",
            Invariant::Refcount => "I4 refcount",
            Invariant::ReservedUnmapped => "I5 reserved block unmapped",
            Invariant::DeferredTags => "I7 deferred tags",
            Invariant::Accounting => "I8 accounting",
            Invariant::Authority => "I11 authority",
            Invariant::FreeLists => "free lists",
        }
    }
}

/// What a violation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A frame, by index.
    Frame(FrameIndex),
    /// A tag block.
    Block(u32),
    /// A client.
    Client(u8),
    /// A free list.
    List {
        pool: PoolKind,
        order: u8,
        class: Class,
    },
    /// A deferred-tag slot.
    DeferredSlot(u16),
    /// A pool-wide counter.
    Counter(&'static str),
}

/// The first broken invariant, with enough context to debug it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant broken.
    pub invariant: Invariant,
    /// What it is about.
    pub subject: Subject,
    /// The rule, in words.
    pub rule: &'static str,
    /// The value the rule wants.
    pub expected: u64,
    /// The value found.
    pub found: u64,
}

impl core::fmt::Display for Violation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} violated at {:?}: {} (expected {}, found {})",
            self.invariant.name(),
            self.subject,
            self.rule,
            self.expected,
            self.found
        )
    }
}

pub(crate) fn fail(
    invariant: Invariant,
    subject: Subject,
    rule: &'static str,
    expected: u64,
    found: u64,
) -> Violation {
    Violation {
        invariant,
        subject,
        rule,
        expected,
        found,
    }
}

pub(crate) fn require(
    ok: bool,
    invariant: Invariant,
    subject: Subject,
    rule: &'static str,
    expected: u64,
    found: u64,
) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(fail(invariant, subject, rule, expected, found))
    }
}
