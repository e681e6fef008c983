//! The program image of `client_rogue` on seL4: every bad request, then a
//! real fault to end each run (a load from an unmapped page of its window,
//! or code run from a page it holds), after which its parent restarts it.
//!
//! On seL4 it also checks what a restart leaves behind: each run starts by
//! saying whether PSTATE.TCO (tag checks overridden) is set, then sets it,
//! so a restart that kept the thread's PSTATE would start the next run with
//! tag checks off. A PD starts with TCO clear; `make test-sel4-boot` checks
//! every run says so.
#![no_std]
#![no_main]
#![feature(used_with_arg)]

use core::sync::atomic::{AtomicU64, Ordering};

use tagloan_microkit::{Channel, ChannelSet, Child, Env, Handler, MessageInfo};

/// A handler that reports PSTATE.TCO when it starts, then sets it.
struct TcoWitness<H>(H);

impl<H: Handler> Handler for TcoWitness<H> {
    type Error = H::Error;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), H::Error> {
        // The boards tagloan runs on have FEAT_MTE's instructions (QEMU's
        // `mte=off` keeps them), so TCO is there to read and set.
        let tco = tagloan_mte::hw::tag_checks_overridden();
        tagloan_microkit::debug_println!(
            env,
            "{}: started with PSTATE.TCO={}",
            env.pd_name(),
            u8::from(tco)
        );
        tagloan_mte::hw::override_tag_checks();
        self.0.init(env)
    }

    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), H::Error> {
        self.0.notified(env, channels)
    }

    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, H::Error> {
        self.0.protected(env, channel, info)
    }

    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, H::Error> {
        self.0.fault(env, child, info)
    }
}

/// Runs started before this one. A restart enters the PD's main again but
/// leaves its memory as it was, so this counts on across restarts, and the
/// rogue knows which fault its run ends in.
static RUNS_BEFORE: AtomicU64 = AtomicU64::new(0);

tagloan_sel4::tagloan_pd!(
    TcoWitness(client_rogue::ClientRogue::new(
        client_rogue::Rogue::touching_unmapped_after(RUNS_BEFORE.fetch_add(1, Ordering::Relaxed))
    )),
    tagloan_sel4::regions!["client_table" => client_table_vaddr, client_table_size, false]
);
