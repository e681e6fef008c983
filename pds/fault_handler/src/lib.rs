//! The fault handler PD (DESIGN §1 and §5): the parent of every client.
//!
//! - A VM fault on a page awaiting tags (metadata-none, after
//!   `enable_tagging`) is resolved through the server, and the client resumes:
//!   this is the lazy, mprotect(PROT_MTE)-like path. If the server has no
//!   memory for the tags, the client is stopped and its frames reclaimed (the
//!   RFC's VM_FAULT_OOM).
//! - An MTE tag-check fault is reported with the address and both tags; the
//!   client is stopped and the server reclaims its frames.
//! - Any other fault is reported, the client's frames are reclaimed, and it
//!   is restarted clean, at most [`MAX_RESTARTS`] times; after that it is
//!   stopped.
//!
//! It also paces its clients: each client notifies it after a unit of work
//! (and once from `init`), and it notifies the client back, so clients of
//! equal priority interleave (on seL4 as in the simulator).
#![no_std]

use tagloan_client::{
    channels, Api, ClientTable, FaultKind, FaultReply, Reclaimed, Server, Status,
};
use tagloan_microkit::{
    Channel, ChannelSet, Child, Env, Fault, Handler, Infallible, MessageInfo, MSG_MAX_LENGTH,
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
    restarts: [u32; MAX_CLIENTS],
    counts: Counts,
}

impl Default for FaultHandler {
    fn default() -> FaultHandler {
        FaultHandler::new()
    }
}

fn server() -> Server {
    Server::new(Channel::new(channels::FAULT_HANDLER_TO_SERVER as usize))
}

impl FaultHandler {
    pub const fn new() -> FaultHandler {
        FaultHandler {
            table: None,
            stopped: [false; MAX_CLIENTS],
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
        env.pd_restart(child);
        self.counts.restarts += 1;
        if let Some(s) = self.stopped.get_mut(usize::from(client)) {
            *s = false;
        }
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
        // Clients announce themselves from their own `init`.
        self.table = Some(table);
        Ok(())
    }

    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Infallible> {
        let Some(table) = self.table.as_ref() else {
            return Ok(());
        };
        for channel in channels.iter() {
            // A client finished a unit of work and yields: let it go on.
            if let Some((client, _)) = table.by_child(channel.index() as u8) {
                if !self.stopped[usize::from(client)] {
                    self.counts.paced += 1;
                    env.notify(channel);
                }
            }
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
            Fault::VmFault { addr, .. } if fault.is_tag_check() => {
                self.counts.tag_check += 1;
                let pointer_tag = (addr >> 56) & 0xf;
                let vaddr = addr & ((1 << 56) - 1);
                match server().resolve_fault(env, client, vaddr, FaultKind::TagCheck) {
                    Ok(Ok(FaultReply::TagCheck { memory_tag })) => tagloan_microkit::debug_println!(
                        env,
                        "fault_handler: MTE tag-check fault in {name} at {vaddr:#x}: pointer tag {pointer_tag:#x}, memory tag {memory_tag:#x}; stopping it"
                    ),
                    Ok(other) => tagloan_microkit::debug_println!(
                        env,
                        "fault_handler: MTE tag-check fault in {name} at {vaddr:#x}: pointer tag {pointer_tag:#x}, memory tag unknown ({other:?}); stopping it"
                    ),
                    Err(_) => return None,
                }
                self.stop(env, child, client, &name);
                None
            }
            Fault::VmFault { addr, .. } => {
                // FAR keeps the pointer's top byte (its tag): the server
                // wants the address alone.
                let addr = addr & ((1 << 56) - 1);
                match server().resolve_fault(env, client, addr, FaultKind::Access) {
                    Ok(Ok(_)) => {
                        self.counts.resolved += 1;
                        Some(MessageInfo::new(0, 0))
                    }
                    Ok(Err(error)) if error.status == Status::NoMemory => {
                        self.counts.out_of_memory += 1;
                        tagloan_microkit::debug_println!(env, "fault_handler: no memory for the tags of {name} at {addr:#x}; stopping it (VM_FAULT_OOM)");
                        self.stop(env, child, client, &name);
                        None
                    }
                    Ok(Err(error)) => {
                        self.counts.other += 1;
                        tagloan_microkit::debug_println!(env, "fault_handler: {name} faulted at {addr:#x}, not a lazy-tagging fault ({error})");
                        self.restart(env, child, client, &name);
                        None
                    }
                    Err(_) => None,
                }
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
