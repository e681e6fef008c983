//! `client_c`, the C client PD (`client_c.c`), in the simulator: its C
//! entry points run on the host libmicrokit (`tagloan-libmicrokit-host`),
//! with its heap window's loads, stores and tags on the simulated MMU.
//! On seL4 the same C file is the PD (tools/sel4/image builds it with the
//! SDK's libmicrokit).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

use tagloan_libmicrokit_host::{CEntry, CPd};
use tagloan_microkit::{ChannelSet, Env, Handler, Infallible};

extern "C" {
    fn client_c_init();
    fn client_c_notified(channel: u32);
    fn client_c_state(size: *mut usize) -> *mut u8;
    fn client_c_set_use_after_free(on: i32);
    fn client_c_set_client_table(vaddr: usize, size: usize);
    fn client_c_counters(
        report: extern "C" fn(*mut c_void, *const c_char, u64),
        context: *mut c_void,
    );
}

/// The C image's state before any call.
static PRISTINE: OnceLock<Vec<u8>> = OnceLock::new();

/// What the C client does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CPlan {
    /// After retagging half its objects, write through a stale pointer.
    pub use_after_free: bool,
}

/// The C client PD in the simulator.
pub struct ClientC {
    pd: CPd,
    /// A copy of the `client_table` region, which the C code reads through
    /// its `client_table_vaddr` (host memory: see the host `microkit.h`).
    table: Vec<u8>,
}

impl ClientC {
    pub fn new(plan: CPlan) -> ClientC {
        let mut pd = CPd::new(
            CEntry {
                init: client_c_init,
                notified: client_c_notified,
                state: client_c_state,
            },
            &PRISTINE,
        );
        // SAFETY: sets the plan in this PD's state; no microkit call.
        pd.with_state(|| unsafe { client_c_set_use_after_free(i32::from(plan.use_after_free)) });
        ClientC {
            pd,
            table: Vec::new(),
        }
    }

    /// Its counters, by name (what its `finished` line prints).
    pub fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        extern "C" fn trampoline(context: *mut c_void, name: *const c_char, value: u64) {
            // SAFETY: `context` is the `&mut dyn FnMut` below, for this
            // call; `name` is a C string literal of client_c.c.
            let report = unsafe { &mut *(context as *mut &mut dyn FnMut(&str, u64)) };
            let name = unsafe { CStr::from_ptr(name) }.to_str().unwrap_or("?");
            report(name, value);
        }
        let mut report = report;
        let context = &mut report as *mut &mut dyn FnMut(&str, u64) as *mut c_void;
        // SAFETY: reads this PD's state; no microkit call.
        self.pd
            .peek(|| unsafe { client_c_counters(trampoline, context) });
    }
}

impl Handler for ClientC {
    type Error = Infallible;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), Infallible> {
        self.table = env
            .region("client_table")
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let (vaddr, size) = (self.table.as_ptr() as usize, self.table.len());
        self.pd.run(Some(env), |entry| {
            // SAFETY: the table copy lives as long as this PD; the C code
            // reads it only in `init`. Then the PD's `init`.
            unsafe {
                client_c_set_client_table(vaddr, size);
                (entry.init)();
            }
        });
        Ok(())
    }

    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Infallible> {
        self.pd.notified(env, channels)
    }
}
