//! The memory server PD (DESIGN §1, §5, §6).
//!
//! Highest priority and passive: it runs only on its callers' PPCs. At
//! `init` it parses the platform's device tree (the `dtb` region) with
//! `tagloan-platform`, reads the client table, carves the pool's tables out
//! of its bookkeeping region and builds the pool core over them. It then
//! serves every operation of the protocol: the channel a call arrives on (its
//! badge) says who is calling, the fault-handler-only operations are refused
//! to clients, every message is decoded with `tagloan-proto` before anything
//! is touched, and every effect on memory goes through the runtime's kernel
//! and tag operations.
#![no_std]

use tagloan_microkit::{AuditSink, Channel, Env, FrameView, Handler, Machine, MessageInfo};
use tagloan_mte::{granule_tag, untagged_address, FrameTags, GRANULE_BYTES, TAG_BYTES_PER_FRAME};
use tagloan_platform::TagStorage;
use tagloan_pool::{
    AllocRequest, Config, Frame, Mode, PageState, Pool, PoolKind, Resolution, Storage,
};
use tagloan_proto::{
    encode_error, ClientTable, Error, FaultKind, FaultReply, Op, Request, Response, StatsReply,
    Status, MAX_MESSAGE_WORDS,
};

/// Names of the regions the server maps (see `system.xml`).
pub const DTB_REGION: &str = "dtb";
pub const CLIENT_TABLE_REGION: &str = "client_table";
pub const BOOKKEEPING_REGION: &str = "server_bookkeeping";

/// Why the server could not start. It stays up and refuses every request
/// with `unsupported`, so clients see a typed error, not silence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartError {
    NoRegion(&'static str),
    Platform(tagloan_platform::PlatformError),
    Table(tagloan_proto::TableError),
    Pool(tagloan_pool::InitError),
    NoMachine,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::NoRegion(name) => {
                write!(
                    f,
                    "region `{name}` is not mapped into the server; map it in system.xml"
                )
            }
            StartError::Platform(e) => write!(f, "device tree refused: {e}"),
            StartError::Table(e) => write!(f, "{e}"),
            StartError::Pool(e) => write!(f, "pool: {e}"),
            StartError::NoMachine => {
                f.write_str("no frame or VSpace capabilities: this PD does not own the pool")
            }
        }
    }
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Client(u8),
    FaultHandler,
}

struct Serving {
    pool: Pool<'static>,
    table: ClientTable,
    fault_handler_channel: Option<u8>,
    /// Whether the hardware stores tags (the init-time probe).
    probe: TagProbe,
    calls: u64,
    refused_malformed: u64,
    refused_permission: u64,
}

/// The memory server's handler.
pub struct MemoryServer {
    serving: Option<Serving>,
    start_error: Option<StartError>,
    /// Check the pool invariants on every audit (the simulator asks after
    /// each call; on seL4 nothing asks).
    audit_invariants: bool,
}

impl Default for MemoryServer {
    fn default() -> MemoryServer {
        MemoryServer::new()
    }
}

impl MemoryServer {
    pub const fn new() -> MemoryServer {
        MemoryServer {
            serving: None,
            start_error: None,
            audit_invariants: true,
        }
    }

    /// Why start-up failed, if it did.
    pub fn start_error(&self) -> Option<&StartError> {
        self.start_error.as_ref()
    }

    fn start(env: &mut dyn Env) -> Result<Serving, StartError> {
        let dtb = env
            .region(DTB_REGION)
            .ok_or(StartError::NoRegion(DTB_REGION))?;
        let platform = tagloan_platform::parse(dtb, true).map_err(StartError::Platform)?;
        if let TagStorage::Disabled(reason) = platform.tag_storage {
            tagloan_microkit::debug_println!(
                env,
                "memory_server: tag storage reuse disabled: {reason}"
            );
        }
        let table_bytes = env
            .region(CLIENT_TABLE_REGION)
            .ok_or(StartError::NoRegion(CLIENT_TABLE_REGION))?;
        let table = ClientTable::parse(table_bytes).map_err(StartError::Table)?;
        let mut specs = [tagloan_pool::ClientSpec {
            window_base: 0,
            window_pages: 0,
            quota_frames: 0,
        }; tagloan_proto::MAX_TABLE_CLIENTS];
        for (spec, entry) in specs.iter_mut().zip(&table.clients) {
            *spec = tagloan_pool::ClientSpec {
                window_base: entry.window_base,
                window_pages: entry.window_pages,
                quota_frames: entry.quota_frames,
            };
        }
        let specs = &specs[..table.clients.len()];
        let config = Config::default();
        let sizes = Pool::storage_sizes(&platform.layout, specs, &config);
        let region = env
            .take_region_mut(BOOKKEEPING_REGION)
            .ok_or(StartError::NoRegion(BOOKKEEPING_REGION))?;
        let (storage, _) = Storage::carve(region, &sizes).map_err(StartError::Pool)?;
        let mut pool =
            Pool::new(platform.layout, specs, config, storage).map_err(StartError::Pool)?;
        let machine = env.machine().ok_or(StartError::NoMachine)?;
        let probe = probe_tags(&mut pool, machine);
        Ok(Serving {
            pool,
            fault_handler_channel: table.fault_handler.as_ref().map(|(_, c)| *c),
            table,
            probe,
            calls: 0,
            refused_malformed: 0,
            refused_permission: 0,
        })
    }
}

/// What the start-up tag probe found (DESIGN §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagProbe {
    /// A tag written to a scratch frame read back: tags are stored.
    Stored,
    /// It read back as zero: this kernel does not enable MTE for user
    /// mappings, so tag checks will never fire.
    NotStored,
    /// There is no tag storage to probe with (MTE off, none described, or
    /// reuse disabled): tagged memory is `unsupported`.
    NoTagStorage,
}

/// Stores a non-zero tag on a scratch frame and reads it back. On seL4
/// without kernel MTE support the instructions run but store nothing.
fn probe_tags(pool: &mut Pool<'static>, machine: &mut dyn Machine) -> TagProbe {
    let Ok(frame) = pool.take_server_frame(machine, true) else {
        return TagProbe::NoTagStorage;
    };
    let pattern: FrameTags = [0xa5; TAG_BYTES_PER_FRAME];
    machine.write_tags(frame, &pattern);
    let mut back = [0; TAG_BYTES_PER_FRAME];
    machine.read_tags(frame, &mut back);
    machine.zero_tags(frame);
    if back == pattern {
        TagProbe::Stored
    } else {
        TagProbe::NotStored
    }
}

impl Serving {
    fn caller(&self, channel: Channel) -> Option<Caller> {
        let id = channel.index() as u8;
        if self.fault_handler_channel == Some(id) {
            return Some(Caller::FaultHandler);
        }
        self.table
            .by_channel(id)
            .map(|(client, _)| Caller::Client(client))
    }

    fn serve(
        &mut self,
        machine: &mut dyn Machine,
        caller: Caller,
        request: Request,
    ) -> Result<Response, Error> {
        let op = request.op();
        let client = match (caller, op.fault_handler_only()) {
            (Caller::Client(client), false) => client,
            (Caller::FaultHandler, true) => 0,
            // A client asking for the fault handler's operations, or the
            // fault handler for a client's (it has no window): refused.
            _ => {
                self.refused_permission += 1;
                return Err(Error::permission_denied(op));
            }
        };
        let m = machine;
        let pool = &mut self.pool;
        Ok(match request {
            Request::Alloc {
                vaddr,
                order,
                flags,
            } => {
                let a = pool.alloc(
                    m,
                    client,
                    AllocRequest {
                        vaddr,
                        order,
                        tagged: flags.tagged,
                        pinned: flags.pinned,
                        contiguous: flags.contiguous,
                    },
                )?;
                Response::Alloc {
                    pages: a.pages,
                    first_frame: a.first_frame,
                    in_tag_storage: a.in_tag_storage,
                }
            }
            Request::Free { vaddr } => Response::Freed {
                pages: pool.free(m, client, vaddr)?,
            },
            Request::EnableTagging { vaddr, pages } => {
                pool.enable_tagging(m, client, vaddr, pages)?;
                Response::Done
            }
            Request::DisableTagging { vaddr, pages } => {
                pool.disable_tagging(m, client, vaddr, pages)?;
                Response::Done
            }
            Request::Pin { vaddr } => {
                pool.pin(m, client, vaddr)?;
                Response::Done
            }
            Request::Unpin { vaddr } => {
                pool.unpin(client, vaddr)?;
                Response::Done
            }
            Request::Query { vaddr } => Response::Query(pool.query(client, vaddr)?),
            Request::Stats => {
                let s = pool.stats();
                Response::Stats(StatsReply {
                    metadata_total: u64::from(s.tag_frames_total),
                    metadata_free: u64::from(s.tag_frames_free),
                    lent: u64::from(s.tag_frames_lent),
                    reserved_blocks: u64::from(s.blocks_reserved),
                    migrations: s.migrations,
                    recalls: s.recalls,
                    // Every refusal counts, the decoder's and the
                    // authority check's as well as the pool's.
                    failures: s.failures.total() + self.refused_malformed + self.refused_permission,
                    data_total: u64::from(s.data_frames_total),
                    data_free: u64::from(s.data_frames_free),
                })
            }
            Request::ResolveFault {
                client,
                vaddr,
                kind: FaultKind::Access,
            } => Response::Resolved(match pool.resolve_fault(m, client, vaddr & !0xfff)? {
                Resolution::Tagged {
                    migrated,
                    deferred_restored,
                } => FaultReply::Tagged {
                    migrated,
                    deferred: deferred_restored,
                },
                Resolution::AlreadyTagged => FaultReply::AlreadyTagged,
            }),
            Request::ResolveFault {
                client,
                vaddr,
                kind: FaultKind::TagCheck,
            } => {
                // Report the allocation tag of the faulting granule; change
                // nothing. The page must be the client's and mapped tagged.
                let info = pool.query(client, vaddr & !0xfff)?;
                if info.state != PageState::Tagged {
                    return Err(Error {
                        status: Status::InvalidArgument,
                        detail: [
                            tagloan_proto::argument_rule_code(
                                tagloan_pool::ArgumentRule::NotAwaitingTags,
                            ),
                            vaddr,
                        ],
                    });
                }
                let mut tags = [0; TAG_BYTES_PER_FRAME];
                m.read_tags(info.frame, &mut tags);
                let granule = (untagged_address(vaddr) % 4096) as usize / GRANULE_BYTES;
                Response::Resolved(FaultReply::TagCheck {
                    memory_tag: granule_tag(&tags, granule).value(),
                })
            }
            Request::ReclaimClient { client } => Response::Reclaimed {
                frames: pool.reclaim_client(m, client)?,
            },
        })
    }
}

/// Writes `response` or `error` into the reply registers.
fn reply(env: &mut dyn Env, result: Result<Response, Error>) -> MessageInfo {
    let mut words = [0u64; MAX_MESSAGE_WORDS];
    let (label, count) = match result {
        Ok(response) => (Status::Ok as u64, response.encode(&mut words)),
        Err(error) => encode_error(&error, &mut words),
    };
    for (i, w) in words[..count].iter().enumerate() {
        env.set_mr(i, *w);
    }
    MessageInfo::new(label, count)
}

impl Handler for MemoryServer {
    fn init(&mut self, env: &mut dyn Env) {
        match MemoryServer::start(env) {
            Ok(serving) => {
                let s = serving.pool.stats();
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: {} data frames, {} tag storage frames in {} blocks, {} clients; tags {}",
                    s.data_frames_total,
                    s.tag_frames_total,
                    s.blocks_total,
                    serving.table.clients.len(),
                    match serving.probe {
                        TagProbe::Stored => "stored: tag checks are enforced",
                        TagProbe::NotStored =>
                            "NOT stored by this kernel: tagged memory is served, but no tag check will ever fire",
                        TagProbe::NoTagStorage =>
                            "no tag storage to probe: tagged requests get `unsupported`",
                    }
                );
                self.serving = Some(serving);
            }
            Err(error) => {
                tagloan_microkit::debug_println!(
                    env,
                    "memory_server: cannot start: {error}; every request gets `unsupported`"
                );
                self.start_error = Some(error);
            }
        }
    }

    fn protected(&mut self, env: &mut dyn Env, channel: Channel, info: MessageInfo) -> MessageInfo {
        let Some(serving) = self.serving.as_mut() else {
            return reply(
                env,
                Err(Error {
                    status: Status::Unsupported,
                    detail: [0, 0],
                }),
            );
        };
        serving.calls += 1;
        let Some(caller) = serving.caller(channel) else {
            serving.refused_permission += 1;
            return reply(env, Err(Error::permission_denied(Op::Stats)));
        };
        if info.count() > MAX_MESSAGE_WORDS {
            serving.refused_malformed += 1;
            return reply(
                env,
                Err(Error::malformed(tagloan_proto::DecodeError::WrongCount {
                    expected: Op::from_label(info.label()).map_or(0, Op::request_words),
                    found: info.count(),
                })),
            );
        }
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        for (i, w) in words[..info.count()].iter_mut().enumerate() {
            *w = env.mr(i);
        }
        let request = match Request::decode(info.label(), &words[..info.count()]) {
            Ok(request) => request,
            Err(error) => {
                serving.refused_malformed += 1;
                return reply(env, Err(Error::malformed(error)));
            }
        };
        let Some(machine) = env.machine() else {
            return reply(
                env,
                Err(Error {
                    status: Status::Unsupported,
                    detail: [0, 0],
                }),
            );
        };
        let result = serving.serve(machine, caller, request);
        reply(env, result)
    }

    fn audit(&mut self, sink: &mut dyn AuditSink) {
        let Some(serving) = self.serving.as_ref() else {
            return;
        };
        let pool = &serving.pool;
        let s = pool.stats();
        for (name, value) in [
            ("calls", serving.calls),
            ("refused_malformed", serving.refused_malformed),
            ("refused_permission", serving.refused_permission),
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
            ("tags_stored", u64::from(serving.probe == TagProbe::Stored)),
        ] {
            sink.counter(name, value);
        }
        for (client, c) in serving.table.clients.iter().enumerate() {
            let used = pool.client(client as u8).map_or(0, |s| s.frames_used());
            let mut name = tagloan_microkit::DebugLine::new();
            let _ = core::fmt::Write::write_fmt(&mut name, format_args!("frames_used.{}", c.name));
            sink.counter(name.as_str(), u64::from(used));
        }
        if self.audit_invariants {
            match pool.check_invariants() {
                Ok(()) => sink.invariants(None),
                Err(violation) => sink.invariants(Some(&violation)),
            }
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
}
