//! The tagloan IPC protocol (DESIGN §6), declared once and shared by the
//! memory server, the fault handler and every client. It is an interface
//! crate: it depends on nothing of the server's.
//!
//! A request is a Microkit protected procedure call: the message label is the
//! operation ([`Op`]), message register 0 is the header word (the protocol
//! version; every other bit reserved and zero), and the following registers
//! are the arguments. The reply label is a [`Status`], and the reply registers
//! are the results, or two detail words for an error.
//!
//! Every operation is one row of the table in `ops.rs`; `protocol!`
//! (`declare.rs`) makes [`Op`], [`Request`], [`Response`], the client methods
//! ([`Api`]) and the server's skeleton ([`Serve`], [`dispatch`]) from it.
//! Each register has a [`Codec`] that decoding checks, so decoding is total:
//! anything malformed gives a [`DecodeError`] naming the word and the rule,
//! and a request that decodes re-encodes to the same words.
#![no_std]

mod c_header;
mod declare;
mod ops;
mod status;
mod table;
mod values;

pub use c_header::{for_each_constant, write_c_header};
pub use ops::{dispatch, Api, Op, Request, Response, Serve};
pub use status::{busy, ArgumentRule, DecodeError, Error, Status};
pub use table::{
    ClientEntry, ClientTable, TableError, TableRule, MAX_CLIENT_CHILD_ID, MAX_TABLE_CLIENTS,
    MICROKIT_DEFAULT_ENTRY,
};
pub use values::{
    AllocFlags, AllocSpec, Allocated, Bit, ClientId, ClientIndex, Codec, Count, FaultKind,
    FaultReply, Freed, Kind, Message, PageInfo, PageState, Pages, Plain, Reclaimed, Spec,
    StatsReply, Vaddr,
};

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
pub const MAX_ORDER: u8 = 9;

/// Who may ask for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallerKind {
    /// Any client, for its own window.
    Client,
    /// The fault handler alone (checked by its channel's badge).
    FaultHandler,
}

/// Who is calling, as the server learns it from the channel's badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    Client(ClientId),
    FaultHandler,
}

/// How a client reaches the server: sends one request and decodes the reply
/// as that operation's. `tagloan-client` implements it over a Microkit
/// channel; [`Api`] gives every operation's method on top.
pub trait Transport {
    /// What each call needs besides the request (the PD's environment,
    /// which lives no longer than the call: hence the lifetime).
    type Context<'c>: ?Sized;
    /// Returned when the caller is stopped while blocked.
    type Stopped;
    /// One call.
    fn transact(
        &self,
        cx: &mut Self::Context<'_>,
        request: Request,
    ) -> Result<Result<Response, Error>, Self::Stopped>;
}

#[doc(hidden)]
pub fn header_word() -> u64 {
    PROTOCOL_VERSION
}

#[doc(hidden)]
pub fn check_header(header: u64) -> Result<(), DecodeError> {
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

/// A reply's refusal, if its label says it is one (two detail words).
#[doc(hidden)]
pub fn decode_refusal(label: u64, words: &[u64]) -> Result<Option<Error>, DecodeError> {
    let status = Status::from_label(label).ok_or(DecodeError::UnknownStatus { label })?;
    if status == Status::Ok {
        return Ok(None);
    }
    match words {
        [first, second] => Ok(Some(Error {
            status,
            detail: [*first, *second],
        })),
        _ => Err(DecodeError::WrongCount {
            expected: 2,
            found: words.len(),
        }),
    }
}

/// A client's console line, printed by its supervisor (the fault handler):
/// a PPC on [`channels::CLIENT_TO_SUPERVISOR`] with label [`console::LABEL`]
/// and the line's UTF-8 bytes packed little-endian into the registers. On
/// seL4 a PD prints one character per system call, so lines of PDs that run
/// at the same time interleave; the supervisor runs at a higher priority than
/// every client, so a line it prints is whole.
pub mod console {
    /// The label of a console PPC.
    pub const LABEL: u64 = 0xc0;
    /// Registers of text at most (320 bytes).
    pub const MAX_WORDS: usize = 40;

    /// Packs `text` into `words`; returns the register count. Text past
    /// [`MAX_WORDS`] registers is cut at a character boundary.
    pub fn pack(text: &str, words: &mut [u64; MAX_WORDS]) -> usize {
        let mut end = text.len().min(MAX_WORDS * 8);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = &text.as_bytes()[..end];
        *words = [0; MAX_WORDS];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            words[i] = u64::from_le_bytes(word);
        }
        bytes.len().div_ceil(8)
    }

    /// The text in `words` (trailing NULs dropped), or `None` if it is not
    /// UTF-8.
    pub fn unpack(words: &[u64], out: &mut [u8; MAX_WORDS * 8]) -> Option<usize> {
        let count = words.len().min(MAX_WORDS);
        for (i, word) in words[..count].iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        let len = out[..count * 8]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |p| p + 1);
        core::str::from_utf8(&out[..len]).ok().map(|s| s.len())
    }
}

/// The channel ids every PD of a tagloan system uses at its own end. The
/// server's ends are in the client table (each client's badge).
pub mod channels {
    /// A client's channel to the memory server (pp).
    pub const CLIENT_TO_SERVER: u8 = 0;
    /// A client's channel to the fault handler, which paces it (notify, both
    /// ways) and prints its console lines (pp from the client; see
    /// [`console`](crate::console)).
    pub const CLIENT_TO_SUPERVISOR: u8 = 1;
    /// A client's channel to the fault handler that says it has finished
    /// (notify), so the fault handler knows when the run is over.
    pub const CLIENT_DONE: u8 = 2;
    /// The fault handler's end of a client's done channel is this plus the
    /// client's child id (so child ids of clients are 1 to 29, which the
    /// client table's parser holds them to: `MAX_CLIENT_CHILD_ID`).
    pub const FAULT_HANDLER_DONE_BASE: u8 = 32;
    /// The fault handler's channel to the memory server (pp). Its channel to
    /// each client has the client's child id.
    pub const FAULT_HANDLER_TO_SERVER: u8 = 0;
}
