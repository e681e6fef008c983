//! The seL4 backend, as far as it exists: a link stub.
//!
//! What is real: every PD builds for `aarch64-unknown-none` against this API,
//! and links into an AArch64 ELF with an entry point. What is not: the
//! syscalls. [`run`] runs `init` against an environment whose kernel calls
//! halt the PD, so the ELF is a link check, not a bootable PD; the README
//! says so. The real backend will implement [`Env`] with `seL4_Call`,
//! `seL4_Signal` and `seL4_ReplyRecv` on the Microkit ABI.

use crate::{Channel, Child, Env, Handler, MessageInfo, Stopped};

/// An environment whose every kernel call halts: the link stub.
pub struct HaltingEnv {
    name: &'static str,
}

impl HaltingEnv {
    /// The environment of PD `name`.
    pub const fn new(name: &'static str) -> HaltingEnv {
        HaltingEnv { name }
    }
}

/// Stops this PD for good (the stub's answer to every kernel call).
pub fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

impl Env for HaltingEnv {
    fn pd_name(&self) -> &str {
        self.name
    }
    fn mr(&self, _index: usize) -> u64 {
        halt()
    }
    fn set_mr(&mut self, _index: usize, _value: u64) {
        halt()
    }
    fn ppcall(&mut self, _channel: Channel, _info: MessageInfo) -> Result<MessageInfo, Stopped> {
        halt()
    }
    fn notify(&mut self, _channel: Channel) {
        halt()
    }
    fn pd_stop(&mut self, _child: Child) {
        halt()
    }
    fn pd_restart(&mut self, _child: Child) {
        halt()
    }
    fn debug_print(&mut self, _text: &str) {}
    fn region(&self, _name: &str) -> Option<&[u8]> {
        None
    }
    fn take_region_mut(&mut self, _name: &str) -> Option<&'static mut [u8]> {
        None
    }
    fn load(&mut self, _pointer: u64, _out: &mut [u8]) -> Result<(), Stopped> {
        halt()
    }
    fn store(&mut self, _pointer: u64, _bytes: &[u8]) -> Result<(), Stopped> {
        halt()
    }
    fn irg(&mut self, _pointer: u64, _exclude: u16) -> u64 {
        halt()
    }
    fn set_tags(&mut self, _pointer: u64, _len: usize) -> Result<(), Stopped> {
        halt()
    }
}

/// The PD's main: `init`, then the event loop (here: halt).
pub fn run<H: Handler>(mut handler: H, name: &'static str) -> ! {
    let mut env = HaltingEnv::new(name);
    // An error ends the PD either way: the stub has no console to report it.
    let _ = handler.init(&mut env);
    halt()
}

/// Declares a PD's program image: its `_start` entry runs `init` of the
/// handler `$handler`, and a panic halts the PD.
#[macro_export]
macro_rules! protection_domain {
    ($handler:expr, $name:literal) => {
        // `no_mangle` is an unsafe attribute (two symbols of one name would
        // clash). SAFETY: each PD image defines `_start` exactly once, here;
        // it is the entry the loader jumps to.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() -> ! {
            $crate::sel4::run($handler, $name)
        }

        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            $crate::sel4::halt()
        }
    };
}
