//! The fault handler PD (DESIGN §1 and §5): the parent of every client.
//!
//! - A VM fault on a page awaiting tags (metadata-none, after
//!   `enable_tagging`) is resolved through the server, and the client resumes:
//!   this is the lazy, mprotect(PROT_MTE)-like path. If the server has no
//!   memory for the tags, the client is stopped and its frames reclaimed (the
//!   RFC's VM_FAULT_OOM).
//! - An MTE tag-check fault is reported with the address and both tags; the
//!   client is stopped and the server reclaims its frames.
//! - Any other fault (an instruction abort among them: client pages are
//!   execute-never) is reported, the client's frames are reclaimed, and it
//!   is restarted clean, at most [`MAX_RESTARTS`] times; after that it is
//!   stopped.
//!
//! Only the faults lazy tagging explains are sent to the server to resolve:
//! a data abort (translation or permission fault) from a client, and only a
//! page the server maps tagged for it (`Tagged`) resumes the client. Any other
//! fault, and a page that was already tagged (a permission fault on a tagged
//! page, which would fault again for ever), is a real fault.
//!
//! It also paces its clients: each client notifies it after a unit of work
//! (and once from `init`), and it notifies the client back, so clients of
//! equal priority interleave (on seL4 as in the simulator). A client that
//! finishes says so on its done channel; when every client has finished or
//! been stopped, the fault handler prints its final line and notifies the
//! server, which prints its own.
#![no_std]

use tagloan_client::{
    channels, console, Api, ClientTable, FaultKind, FaultReply, Reclaimed, Server, Status,
};
use tagloan_microkit::{
    fsr, Channel, ChannelSet, Child, Env, Fault, Handler, Infallible, MessageInfo, MSG_MAX_LENGTH,
};

const MAX_CLIENTS: usize = tagloan_client::MAX_TABLE_CLIENTS;
/// Restarts a client gets before a further fault stops it for good.
pub const MAX_RESTARTS: u32 = 3;

/// Counts of what the handler did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub resolved: u64,
    pub tag_check: u64,
    pub out_of_memory: u64,
    pub other: u64,
    pub stops: u64,
    pub restarts: u64,
    pub reclaimed_frames: u64,
    pub paced: u64,
}

/// The fault handler.
pub struct FaultHandler {
    table: Option<ClientTable>,
    stopped: [bool; MAX_CLIENTS],
    finished: [bool; MAX_CLIENTS],
    /// The final line was printed: the run is over.
    reported_final: bool,
    restarts: [u32; MAX_CLIENTS],
    counts: Counts,
}

impl Default for FaultHandler {
    fn default() -> FaultHandler {
        FaultHandler::new()
    }
}

fn server_channel() -> Channel {
    Channel::new(channels::FAULT_HANDLER_TO_SERVER as usize)
}

fn server() -> Server {
    Server::new(server_channel())
}

impl FaultHandler {
    pub const fn new() -> FaultHandler {
        FaultHandler {
            table: None,
            stopped: [false; MAX_CLIENTS],
            finished: [false; MAX_CLIENTS],
            reported_final: false,
            restarts: [0; MAX_CLIENTS],
            counts: Counts {
                resolved: 0,
                tag_check: 0,
                out_of_memory: 0,
                other: 0,
                stops: 0,
                restarts: 0,
                reclaimed_frames: 0,
                paced: 0,
            },
        }
    }

    /// What it has done so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn reclaim(&mut self, env: &mut dyn Env, client: u8, name: &str) {
        match server().reclaim_client(env, client) {
            Ok(Ok(Reclaimed { frames })) => {
                self.counts.reclaimed_frames += u64::from(frames);
                tagloan_microkit::debug_println!(
                    env,
                    "fault_handler: reclaimed {frames} frames of {name}"
                );
            }
            Ok(Err(error)) => tagloan_microkit::debug_println!(
                env,
                "fault_handler: reclaiming {name} failed: {error}"
            ),
            Err(_) => tagloan_microkit::debug_println!(
                env,
                "fault_handler: stopped while reclaiming {name}"
            ),
        }
    }

    fn stop(&mut self, env: &mut dyn Env, child: Child, client: u8, name: &str) {
        env.pd_stop(child);
        self.counts.stops += 1;
        if let Some(s) = self.stopped.get_mut(usize::from(client)) {
            *s = true;
        }
        self.reclaim(env, client, name);
        self.report_if_over(env);
    }

    /// Once every client has finished or been stopped: the final line, and
    /// the server told, so it prints its own.
    fn report_if_over(&mut self, env: &mut dyn Env) {
        let Some(table) = self.table.as_ref() else {
            return;
        };
        let clients = table.clients.len();
        let over = (0..clients).all(|i| self.finished[i] || self.stopped[i]);
        if !over || self.reported_final {
            return;
        }
        self.reported_final = true;
        let finished = self.finished[..clients].iter().filter(|f| **f).count();
        env.notify(server_channel());
        let mut line = tagloan_microkit::DebugLine::new();
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(
                "fault_handler: final: {finished} clients finished, {} stopped:",
                clients - finished
            ),
        );
        self.counters(&mut |name, value| {
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {name}={value}"));
        });
        env.debug_print(line.as_str());
        env.debug_print("tagloan: run complete");
    }

    fn restart(&mut self, env: &mut dyn Env, child: Child, client: u8, name: &str) {
        let restarts = &mut self.restarts[usize::from(client)];
        if *restarts >= MAX_RESTARTS {
            // A client that keeps faulting would be restarted for ever.
            tagloan_microkit::debug_println!(
                env,
                "fault_handler: {name} faulted after {MAX_RESTARTS} restarts; stopping it"
            );
            self.stop(env, child, client, name);
            return;
        }
        *restarts += 1;
        tagloan_microkit::debug_println!(
            env,
            "fault_handler: restarting {name} clean ({} of {MAX_RESTARTS})",
            *restarts
        );
        // Reclaim first, so the client starts clean, with nothing mapped.
        self.reclaim(env, client, name);
        let entry = self
            .table
            .as_ref()
            .and_then(|t| t.clients.get(usize::from(client)))
            .map_or(tagloan_client::MICROKIT_DEFAULT_ENTRY, |c| {
                c.restart_entry()
            });
        env.pd_restart(child, entry);
        self.counts.restarts += 1;
        if let Some(s) = self.stopped.get_mut(usize::from(client)) {
            *s = false;
        }
        if let Some(f) = self.finished.get_mut(usize::from(client)) {
            *f = false;
        }
        // The run goes on: a final line comes again when it is over.
        self.reported_final = false;
    }
}

impl Handler for FaultHandler {
    /// The handler never ends: a bad table leaves it up, pacing no one.
    type Error = Infallible;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), Infallible> {
        let table = match env.region("client_table").map(ClientTable::parse) {
            Some(Ok(table)) => table,
            Some(Err(error)) => {
                tagloan_microkit::debug_println!(
                    env,
                    "fault_handler: client table refused: {error}"
                );
                return Ok(());
            }
            None => {
                tagloan_microkit::debug_println!(
                    env,
                    "fault_handler: region `client_table` is not mapped"
                );
                return Ok(());
            }
        };
        tagloan_microkit::debug_println!(
            env,
            "fault_handler: started: {} clients, at most {MAX_RESTARTS} restarts each",
            table.clients.len()
        );
        // Clients announce themselves from their own `init`.
        self.table = Some(table);
        Ok(())
    }

    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Infallible> {
        let Some(table) = self.table.as_ref() else {
            return Ok(());
        };
        let mut any_finished = false;
        for channel in channels.iter() {
            let id = channel.index() as u8;
            // A client finished a unit of work and yields: let it go on.
            if let Some((client, _)) = table.by_child(id) {
                if !self.stopped[usize::from(client)] {
                    self.counts.paced += 1;
                    env.notify(channel);
                }
            }
            // A client says it has finished.
            if let Some((client, _)) = id
                .checked_sub(channels::FAULT_HANDLER_DONE_BASE)
                .and_then(|child| table.by_child(child))
            {
                self.finished[usize::from(client)] = true;
                any_finished = true;
            }
        }
        if any_finished {
            self.report_if_over(env);
        }
        Ok(())
    }

    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, Infallible> {
        Ok(self.handle_fault(env, child, info))
    }

    /// A client's console line (`tagloan_proto::console`): printed whole.
    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, Infallible> {
        let is_client = self
            .table
            .as_ref()
            .is_some_and(|t| t.by_child(channel.index() as u8).is_some());
        let count = info.count();
        if !is_client || info.label() != console::LABEL || count > console::MAX_WORDS {
            env.debug_print("fault_handler: a PPC that is not a client's console line: refused");
            return Ok(MessageInfo::new(1, 0));
        }
        let mut words = [0u64; console::MAX_WORDS];
        for (i, word) in words[..count].iter_mut().enumerate() {
            *word = env.mr(i);
        }
        let mut bytes = [0u8; console::MAX_WORDS * 8];
        match console::unpack(&words[..count], &mut bytes) {
            Some(len) => {
                // `unpack` checked the bytes are UTF-8.
                let text = core::str::from_utf8(&bytes[..len]).unwrap_or("");
                env.debug_print(text);
                Ok(MessageInfo::new(0, 0))
            }
            None => {
                env.debug_print("fault_handler: a console line that is not UTF-8: refused");
                Ok(MessageInfo::new(1, 0))
            }
        }
    }
}

impl FaultHandler {
    fn handle_fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Option<MessageInfo> {
        let mut mrs = [0u64; Fault::MAX_LENGTH];
        for (i, w) in mrs
            .iter_mut()
            .enumerate()
            .take(info.count().min(MSG_MAX_LENGTH))
        {
            *w = env.mr(i);
        }
        let fault = Fault::decode(info, &mrs);
        let (client, name) = match self
            .table
            .as_ref()
            .and_then(|t| t.by_child(child.index() as u8))
        {
            Some((client, entry)) => (client, entry.name.clone()),
            None => {
                tagloan_microkit::debug_println!(
                    env,
                    "fault_handler: child {} is not in the client table; stopping it",
                    child.index()
                );
                env.pd_stop(child);
                return None;
            }
        };
        match fault {
            Fault::VmFault { ip, addr, .. } if fault.is_tag_check() => {
                self.counts.tag_check += 1;
                let pointer_tag = (addr >> 56) & 0xf;
                let vaddr = addr & ((1 << 56) - 1);
                match server().resolve_fault(env, client, vaddr, FaultKind::TagCheck) {
                    Ok(Ok(FaultReply::TagCheck { memory_tag })) => tagloan_microkit::debug_println!(
                        env,
                        "fault_handler: MTE tag-check fault in {name} at {vaddr:#x} (pc {ip:#x}): pointer tag {pointer_tag:#x}, memory tag {memory_tag:#x}; stopping it"
                    ),
                    Ok(other) => tagloan_microkit::debug_println!(
                        env,
                        "fault_handler: MTE tag-check fault in {name} at {vaddr:#x} (pc {ip:#x}): pointer tag {pointer_tag:#x}, memory tag unknown ({other:?}); stopping it"
                    ),
                    Err(_) => return None,
                }
                self.stop(env, child, client, &name);
                None
            }
            Fault::VmFault {
                addr,
                prefetch,
                fsr,
                ..
            } if !prefetch && fsr::lazy_tagging_explains(fsr) => {
                // FAR keeps the pointer's top byte (its tag): the server
                // wants the address alone.
                let addr = addr & ((1 << 56) - 1);
                match server().resolve_fault(env, client, addr, FaultKind::Access) {
                    // The page awaited its tags and has them now: the access
                    // will succeed when it runs again.
                    Ok(Ok(FaultReply::Tagged { .. })) => {
                        self.counts.resolved += 1;
                        Some(MessageInfo::new(0, 0))
                    }
                    // Tagged already: lazy tagging does not explain this fault
                    // (a permission fault on a tagged page), and resuming
                    // would fault again for ever.
                    Ok(Ok(reply)) => {
                        self.counts.other += 1;
                        tagloan_microkit::debug_println!(env, "fault_handler: {name} faulted at {addr:#x} (FSR {fsr:#x}) on a page that is not awaiting tags ({reply:?}); a real fault");
                        self.restart(env, child, client, &name);
                        None
                    }
                    Ok(Err(error)) if error.status == Status::NoMemory => {
                        self.counts.out_of_memory += 1;
                        tagloan_microkit::debug_println!(env, "fault_handler: no memory for the tags of {name} at {addr:#x}; stopping it (VM_FAULT_OOM)");
                        self.stop(env, child, client, &name);
                        None
                    }
                    Ok(Err(error)) => {
                        self.counts.other += 1;
                        tagloan_microkit::debug_println!(env, "fault_handler: {name} faulted at {addr:#x} (FSR {fsr:#x}), not a lazy-tagging fault ({error})");
                        self.restart(env, child, client, &name);
                        None
                    }
                    Err(_) => None,
                }
            }
            Fault::VmFault {
                ip,
                addr,
                prefetch: true,
                fsr,
            } => {
                // An instruction abort: client pages are execute-never, and
                // lazy tagging never explains one.
                self.counts.other += 1;
                tagloan_microkit::debug_println!(
                    env,
                    "fault_handler: {name} took an instruction abort at {addr:#x} (pc {ip:#x}, FSR {fsr:#x}): its pages are execute-never"
                );
                self.restart(env, child, client, &name);
                None
            }
            other => {
                self.counts.other += 1;
                tagloan_microkit::debug_println!(env, "fault_handler: {name} took {other:?}");
                self.restart(env, child, client, &name);
                None
            }
        }
    }

    /// What it has done, by counter name (for whoever observes the PD).
    pub fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        let c = self.counts;
        for (name, value) in [
            ("faults_resolved", c.resolved),
            ("faults_tag_check", c.tag_check),
            ("faults_out_of_memory", c.out_of_memory),
            ("faults_other", c.other),
            ("stops", c.stops),
            ("restarts", c.restarts),
            ("reclaimed_frames", c.reclaimed_frames),
            ("paced", c.paced),
        ] {
            report(name, value);
        }
    }
}
