//! A host libmicrokit for the simulator: the C API of `microkit.h` (the
//! host header is `include/microkit.h`) backed by a [`tagloan_microkit::Env`],
//! so that a Microkit PD written in C runs in the simulator next to the Rust
//! PDs, from the same source it is built from for seL4.
//!
//! A C PD is a [`CPd`]: its entry points (`init`, `notified`) and its
//! mutable state. The simulator hands a PD its `Env` for each entry call;
//! [`CPd`] makes it the current one for the C functions below, which are
//! what the PD's `microkit_*` calls reach:
//!
//! - `microkit_ppcall` (through `tagloan_host_ppcall`), `microkit_notify`,
//!   `microkit_mr_set` and `microkit_mr_get`, `microkit_dbg_puts`;
//! - `tagloan_client.h`'s accessors: loads, stores, IRG and STG on the
//!   simulated MMU, with its faults and tag checks.
//!
//! Limits (also in the header): a C PD's globals are one per process, not
//! one per PD, so each `CPd` keeps its own copy of them and swaps it in for
//! each call, under a process-wide lock (two simulations in two threads may
//! run the same C PD); the PD must keep its mutable state in what its state
//! function returns. Once the simulator reports the PD stopped, every call
//! is a no-op that reads 0 until the entry point returns.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::sync::{Mutex, OnceLock};

use tagloan_microkit::{Channel, ChannelSet, Env, Handler, Infallible, MessageInfo};

/// A C PD's entry points and state, as its build exports them.
#[derive(Clone, Copy)]
pub struct CEntry {
    /// Its `init`.
    pub init: unsafe extern "C" fn(),
    /// Its `notified`.
    pub notified: unsafe extern "C" fn(u32),
    /// Its mutable state: a pointer to it, and its size through the
    /// argument.
    pub state: unsafe extern "C" fn(*mut usize) -> *mut u8,
}

/// One C PD in a simulation.
pub struct CPd {
    entry: CEntry,
    /// This PD's copy of the C state.
    state: Vec<u8>,
    /// The state as the program image has it before any call, for each
    /// entry (shared by every `CPd` of it).
    pristine: &'static OnceLock<Vec<u8>>,
}

/// One C call at a time in the process: the C globals are shared.
static C_CALLS: Mutex<()> = Mutex::new(());

/// The `Env` of the call in progress on this thread, and whether the
/// simulator stopped the PD during it.
struct Current {
    env: Option<*mut (dyn Env + 'static)>,
    stopped: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

impl CPd {
    /// A C PD with `entry`; `pristine` holds the image's initial state
    /// (one `static` per program image: `static PRISTINE: OnceLock<Vec<u8>>`).
    pub fn new(entry: CEntry, pristine: &'static OnceLock<Vec<u8>>) -> CPd {
        let _lock = C_CALLS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = pristine
            .get_or_init(|| {
                let (pointer, size) = state_of(&entry);
                // SAFETY: the PD's state function gives its state's address
                // and size; every call restores it to this copy afterwards,
                // so it is pristine whenever the lock is free.
                unsafe { std::slice::from_raw_parts(pointer, size) }.to_vec()
            })
            .clone();
        CPd {
            entry,
            state,
            pristine,
        }
    }

    /// Runs `f` on the C side with this PD's state swapped in, and `env` as
    /// the current `Env` (none for a call that makes no microkit call, such
    /// as reading counters). A PD whose entry needs more set up first (its
    /// regions) does it inside `f`, under the same lock.
    pub fn run<R>(&mut self, env: Option<&mut dyn Env>, f: impl FnOnce(&CEntry) -> R) -> R {
        let reentered = CURRENT.with(|current| current.borrow().is_some());
        assert!(
            !reentered,
            "a C PD was entered again from inside one of its own calls: the simulator must not do that"
        );
        let _lock = C_CALLS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pointer, size) = state_of(&self.entry);
        assert_eq!(size, self.state.len(), "the C state changed size");
        let env = env.map(|env| {
            let env: *mut (dyn Env + '_) = env;
            // SAFETY: the pointer is only used during this call: `CURRENT`
            // is cleared before `run` returns, while `env` is still
            // borrowed.
            unsafe { std::mem::transmute::<*mut (dyn Env + '_), *mut (dyn Env + 'static)>(env) }
        });
        CURRENT.with(|current| {
            *current.borrow_mut() = Some(Current {
                env,
                stopped: false,
            })
        });
        // SAFETY: the state function gives `size` writable bytes, and the
        // lock keeps every other C call out.
        let c_state = unsafe { std::slice::from_raw_parts_mut(pointer, size) };
        c_state.copy_from_slice(&self.state);
        let result = f(&self.entry);
        self.state.copy_from_slice(c_state);
        c_state.copy_from_slice(self.pristine.get().expect("set by CPd::new"));
        CURRENT.with(|current| *current.borrow_mut() = None);
        result
    }

    /// Runs `f` on the C side with this PD's state, outside any entry call
    /// (to set its plan). `f` must make no microkit call.
    pub fn with_state<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.run(None, |_| f())
    }

    /// Runs `f` on the C side with a copy of this PD's state, which `f`
    /// must not change (to read its counters). No microkit call either.
    pub fn peek<R>(&self, f: impl FnOnce() -> R) -> R {
        let _lock = C_CALLS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pointer, size) = state_of(&self.entry);
        assert_eq!(size, self.state.len(), "the C state changed size");
        // SAFETY: as in `run`; no Env is current, so a microkit call from
        // `f` panics.
        let c_state = unsafe { std::slice::from_raw_parts_mut(pointer, size) };
        c_state.copy_from_slice(&self.state);
        let result = f();
        c_state.copy_from_slice(self.pristine.get().expect("set by CPd::new"));
        result
    }
}

fn state_of(entry: &CEntry) -> (*mut u8, usize) {
    let mut size = 0usize;
    // SAFETY: the PD's state function only reports its state.
    let pointer = unsafe { (entry.state)(&mut size) };
    (pointer, size)
}

impl Handler for CPd {
    /// The C entry points return nothing.
    type Error = Infallible;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), Infallible> {
        // SAFETY: the PD's `init`, with its state and Env in place.
        self.run(Some(env), |entry| unsafe { (entry.init)() });
        Ok(())
    }

    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Infallible> {
        for channel in channels.iter() {
            let id = channel.index() as u32;
            // SAFETY: the PD's `notified`, as for `init`.
            self.run(Some(&mut *env), |entry| unsafe { (entry.notified)(id) });
        }
        Ok(())
    }
}

/// Runs `f` with the current call's `Env`, unless the PD was stopped; else
/// gives `stopped`.
fn with_env<R>(
    stopped: R,
    f: impl FnOnce(&mut dyn Env) -> Result<R, tagloan_microkit::Stopped>,
) -> R {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let current = current
            .as_mut()
            .expect("a microkit call outside a C PD's entry point");
        let env = current
            .env
            .expect("a microkit call from a C PD's state or counters function");
        if current.stopped {
            return stopped;
        }
        // SAFETY: set by `CPd::run` for the call in progress, which still
        // borrows the Env.
        match f(unsafe { &mut *env }) {
            Ok(value) => value,
            Err(tagloan_microkit::Stopped) => {
                current.stopped = true;
                stopped
            }
        }
    })
}

/// `microkit_dbg_puts`: the text goes to the PD's debug output.
///
/// # Safety
/// `text` is null or a NUL-terminated string (C calls it so).
#[no_mangle]
pub unsafe extern "C" fn microkit_dbg_puts(text: *const c_char) {
    if text.is_null() {
        return;
    }
    // SAFETY: a C string from the PD.
    let text = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    with_env((), |env| {
        env.debug_print(text.trim_end_matches('\n'));
        Ok(())
    });
}

/// `microkit_notify`.
#[no_mangle]
pub extern "C" fn microkit_notify(channel: u32) {
    with_env((), |env| {
        env.notify(Channel::new(channel as usize));
        Ok(())
    });
}

/// `microkit_ppcall`, with the message info in seL4's layout (label in bits
/// 63:12, length in bits 6:0).
#[no_mangle]
pub extern "C" fn tagloan_host_ppcall(channel: u32, info: u64) -> u64 {
    with_env(0, |env| {
        let reply = env.ppcall(
            Channel::new(channel as usize),
            MessageInfo::new(info >> 12, (info & 0x7f) as usize),
        )?;
        Ok(reply.label() << 12 | reply.count() as u64 & 0x7f)
    })
}

/// `microkit_mr_set`.
#[no_mangle]
pub extern "C" fn microkit_mr_set(register: u8, value: u64) {
    with_env((), |env| {
        env.set_mr(usize::from(register), value);
        Ok(())
    });
}

/// `microkit_mr_get`.
#[no_mangle]
pub extern "C" fn microkit_mr_get(register: u8) -> u64 {
    with_env(0, |env| Ok(env.mr(usize::from(register))))
}

/// `tagloan_load64`: a load through the simulated MMU (its faults and tag
/// checks).
#[no_mangle]
pub extern "C" fn tagloan_host_load64(pointer: u64) -> u64 {
    with_env(0, |env| {
        let mut bytes = [0u8; 8];
        env.load(pointer, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    })
}

/// `tagloan_store64`: a store through the simulated MMU.
#[no_mangle]
pub extern "C" fn tagloan_host_store64(pointer: u64, value: u64) {
    with_env((), |env| env.store(pointer, &value.to_le_bytes()));
}

/// `tagloan_irg`: IRG as the simulator models it.
#[no_mangle]
pub extern "C" fn tagloan_host_irg(pointer: u64, exclude: u64) -> u64 {
    with_env(pointer, |env| Ok(env.irg(pointer, exclude as u16)))
}

/// `tagloan_stg`: STG of one granule.
#[no_mangle]
pub extern "C" fn tagloan_host_stg(pointer: u64) {
    with_env((), |env| env.set_tags(pointer, 16));
}
