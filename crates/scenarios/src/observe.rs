//! What the scenarios observe of each PD, read from the PD's public state
//! after the calls it serves: the memory server's counters, its pool's
//! invariants and frame states, and every other PD's counters. The PDs know
//! nothing of this; the simulator asks (`tagloan_sim::Hosted::observed`).

use memory_server::{MemoryServer, TagProbe};
use tagloan_client::{Paced, Worker};
use tagloan_pool::{Frame, Mode, PoolKind};
use tagloan_sim::{AuditSink, FrameView, SharedMachine};

/// The memory server: counters, the invariant check, and frame states when
/// the sink wants a picture.
pub fn server(server: &MemoryServer<SharedMachine>, sink: &mut dyn AuditSink) {
    let Some(pool) = server.pool() else {
        return;
    };
    let counters = server.counters();
    let s = pool.stats();
    for (name, value) in [
        ("calls", counters.calls),
        ("refused_malformed", counters.refused_malformed),
        ("refused_permission", counters.refused_permission),
        ("data_frames_total", u64::from(s.data_frames_total)),
        ("data_frames_free", u64::from(s.data_frames_free)),
        ("tag_frames_total", u64::from(s.tag_frames_total)),
        ("tag_frames_free", u64::from(s.tag_frames_free)),
        ("tag_frames_lent", u64::from(s.tag_frames_lent)),
        ("blocks_reserved", u64::from(s.blocks_reserved)),
        ("frames_tagged", u64::from(s.frames_tagged)),
        ("frames_server", u64::from(s.frames_server)),
        ("migrations", s.migrations),
        ("recalls", s.recalls),
        ("deferred_parked", s.deferred_parked),
        ("deferred_restored", s.deferred_restored),
        ("failures", s.failures.total()),
        ("no_memory", s.failures.no_memory),
        (
            "tags_stored",
            u64::from(server.probe() == Some(TagProbe::Stored)),
        ),
    ] {
        sink.counter(name, value);
    }
    if let Some(table) = server.table() {
        for (client, entry) in table.clients.iter().enumerate() {
            let used = pool.client(client as u8).map_or(0, |c| c.frames_used());
            sink.counter(&format!("frames_used.{}", entry.name), u64::from(used));
        }
    }
    match pool.check_invariants() {
        Ok(()) => sink.invariants(None),
        Err(violation) => sink.invariants(Some(&violation)),
    }
    if sink.wants_frames() {
        let layout = pool.layout();
        for index in 0..layout.frames_total() {
            let in_tag_storage = layout
                .locate(index)
                .is_some_and(|l| l.pool == PoolKind::Tag);
            let view = match pool.frame(index) {
                Some(Ok(Frame::FreeHead { .. } | Frame::FreeTail)) if in_tag_storage => {
                    FrameView::TagFree
                }
                Some(Ok(Frame::FreeHead { .. } | Frame::FreeTail)) => FrameView::DataFree,
                Some(Ok(Frame::Owned(_))) if in_tag_storage => FrameView::TagLent,
                Some(Ok(Frame::Owned(o))) if o.pinned => FrameView::Pinned,
                Some(Ok(Frame::Owned(o))) => match o.mode {
                    Mode::Untagged => FrameView::OwnedUntagged,
                    Mode::Tagged => FrameView::OwnedTagged,
                    Mode::MetadataNone => FrameView::MetadataNone,
                },
                Some(Ok(Frame::TagReserved { .. } | Frame::TagReservedTail)) => {
                    FrameView::TagReserved
                }
                Some(Ok(Frame::Server { .. })) => FrameView::Server,
                Some(Err(_)) | None => FrameView::Server,
            };
            sink.frame(index, view);
        }
    }
}

/// The fault handler's counters.
pub fn fault_handler(handler: &fault_handler::FaultHandler, sink: &mut dyn AuditSink) {
    handler.counters(&mut |name, value| sink.counter(name, value));
}

/// A paced client's counters.
pub fn client<W: Worker>(client: &Paced<W>, sink: &mut dyn AuditSink) {
    client.counters(&mut |name, value| sink.counter(name, value));
}
