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

mod declare;
mod ops;
mod status;
mod table;
mod values;

pub use ops::{dispatch, Api, Op, Request, Response, Serve};
pub use status::{busy, ArgumentRule, DecodeError, Error, Status};
pub use table::{ClientEntry, ClientTable, TableError, TableRule, MAX_TABLE_CLIENTS};
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
