//! How the simulator hosts a PD: the object-safe face of a
//! [`Handler`](tagloan_microkit::Handler), what an observer reads of it, and
//! the machine the memory server is built over.
//!
//! None of this is part of the runtime API: a PD crate implements `Handler`
//! and nothing else. A scenario wraps it in [`Hosted`], optionally with an
//! observer that reads the PD's public state (counters, the pool's
//! invariants, frame states) into an [`AuditSink`] after the calls it serves.

use std::cell::RefCell;
use std::rc::Rc;

use tagloan_microkit::{Channel, ChannelSet, Child, Env, Handler, MessageInfo};
use tagloan_mte::{FrameTags, Pfn, TagOps};
use tagloan_pool::{Access, ClientId, Kernel};

use tagloan_ram::SimMachine;

/// A PD as the simulator runs it: each entry point of its handler, with the
/// handler's error formatted, and its audit.
pub trait Pd {
    fn init(&mut self, env: &mut dyn Env) -> Result<(), String>;
    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), String>;
    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, String>;
    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, String>;
    /// Reports what the observer sees of the PD.
    fn audit(&mut self, sink: &mut dyn AuditSink);
}

/// Reads a PD's state into a sink.
pub type Observer<H> = Box<dyn Fn(&H, &mut dyn AuditSink)>;

/// A handler, and what observes it.
pub struct Hosted<H> {
    handler: H,
    observer: Option<Observer<H>>,
}

impl<H: Handler + 'static> Hosted<H> {
    /// A PD nobody observes.
    pub fn plain(handler: H) -> Box<dyn Pd> {
        Box::new(Hosted {
            handler,
            observer: None,
        })
    }

    /// A PD whose state `observer` reports at each audit.
    pub fn observed(
        handler: H,
        observer: impl Fn(&H, &mut dyn AuditSink) + 'static,
    ) -> Box<dyn Pd> {
        Box::new(Hosted {
            handler,
            observer: Some(Box::new(observer)),
        })
    }
}

impl<H: Handler> Pd for Hosted<H> {
    fn init(&mut self, env: &mut dyn Env) -> Result<(), String> {
        self.handler.init(env).map_err(|e| e.to_string())
    }
    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), String> {
        self.handler
            .notified(env, channels)
            .map_err(|e| e.to_string())
    }
    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, String> {
        self.handler
            .protected(env, channel, info)
            .map_err(|e| e.to_string())
    }
    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, String> {
        self.handler
            .fault(env, child, info)
            .map_err(|e| e.to_string())
    }
    fn audit(&mut self, sink: &mut dyn AuditSink) {
        if let Some(observe) = &self.observer {
            observe(&self.handler, sink);
        }
    }
}

/// Receives what an observer reports.
pub trait AuditSink {
    /// A named counter.
    fn counter(&mut self, name: &str, value: u64);
    /// The result of an invariant check: `None` if it held, else the
    /// violation, formatted.
    fn invariants(&mut self, violation: Option<&dyn std::fmt::Display>);
    /// Whether the sink wants every managed frame's state (for pictures).
    fn wants_frames(&self) -> bool {
        false
    }
    /// A frame's state (only when [`AuditSink::wants_frames`]).
    fn frame(&mut self, index: u32, state: FrameView) {
        let _ = (index, state);
    }
}

/// The state of a frame as a picture shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameView {
    DataFree,
    OwnedUntagged,
    OwnedTagged,
    MetadataNone,
    Pinned,
    TagFree,
    TagLent,
    TagReserved,
    Server,
}

/// The simulated machine as the memory server holds it: the same RAM, tags
/// and VSpaces the kernel uses for the clients' loads and stores.
#[derive(Clone)]
pub struct SharedMachine(pub(crate) Rc<RefCell<SimMachine>>);

impl Kernel for SharedMachine {
    fn map(&mut self, client: ClientId, vaddr: u64, frame: Pfn, access: Access) {
        self.0.borrow_mut().map(client, vaddr, frame, access)
    }
    fn unmap(&mut self, client: ClientId, vaddr: u64) {
        self.0.borrow_mut().unmap(client, vaddr)
    }
    fn copy_frame(&mut self, source: Pfn, destination: Pfn) {
        self.0.borrow_mut().copy_frame(source, destination)
    }
    fn zero_frame(&mut self, frame: Pfn) {
        self.0.borrow_mut().zero_frame(frame)
    }
    fn read_frame(&mut self, frame: Pfn, offset: usize, bytes: &mut [u8]) {
        self.0.borrow_mut().read_frame(frame, offset, bytes)
    }
}

impl TagOps for SharedMachine {
    fn zero_tags(&mut self, frame: Pfn) {
        self.0.borrow_mut().zero_tags(frame)
    }
    fn copy_tags(&mut self, source: Pfn, destination: Pfn) {
        self.0.borrow_mut().copy_tags(source, destination)
    }
    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags) {
        self.0.borrow_mut().read_tags(frame, tags)
    }
    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags) {
        self.0.borrow_mut().write_tags(frame, tags)
    }
    fn clean_for_tags(&mut self, tag_frame: Pfn) {
        self.0.borrow_mut().clean_for_tags(tag_frame)
    }
    fn clean_tags(&mut self, frame: Pfn) {
        self.0.borrow_mut().clean_tags(frame)
    }
}
