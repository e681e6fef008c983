//! The tagloan runtime API on seL4: [`tagloan_microkit::Env`] and
//! [`tagloan_microkit::Handler`] over rust-sel4's `sel4-microkit`.
//!
//! Everything kernel-facing is rust-sel4's and Microkit's, not ours: the
//! message registers are the IPC buffer's (`sel4_microkit::get_mr`,
//! `set_mr`), a PPC is `Channel::pp_call` (seL4_Call on the channel's
//! endpoint cap), a notification `Channel::notify`, the event loop and the
//! fault entry are `sel4_microkit::Handler::run`, and the cap layout is
//! Microkit's (a child's TCB at `BASE_TCB_CAP + id`). What this crate adds:
//!
//! - [`Sel4Env`]: the `Env` of one PD, with its memory regions found
//!   through the symbols the `microkit` tool patches (`setvar_vaddr`,
//!   `setvar_size`), declared by [`regions!`];
//! - [`Sel4Pd`]: a `sel4_microkit::Handler` that runs a tagloan handler;
//! - [`tagloan_pd!`]: a PD's `#[protection_domain]` entry.
//!
//! Client loads and stores are real memory accesses: a fault is a real
//! VMFault delivered by the kernel to the PD's parent, and the access runs
//! again if the parent resumes the thread. IRG and STG are the real
//! instructions of `tagloan_mte::hw`.
#![no_std]
#![allow(unsafe_code)]
#![feature(used_with_arg)]

pub mod frames;
pub mod machine;

use tagloan_microkit::{Channel, ChannelSet, Child, Env, Handler, MessageInfo, Stopped};

/// A memory region this PD maps, as the `microkit` tool describes it: the
/// values of its `setvar_vaddr` and `setvar_size` symbols.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// The region's name in `system.xml`.
    pub name: &'static str,
    /// Its virtual address (0 if the tool did not patch the symbol).
    pub vaddr: usize,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it is mapped writable (so it can be taken as `&mut`).
    pub writable: bool,
}

/// Declares this PD's regions: for each, a `setvar_vaddr` and a
/// `setvar_size` symbol that the `microkit` tool patches, in `.data`.
/// Expands to a `[Region; N]`.
#[macro_export]
macro_rules! regions {
    ($($name:literal => $vaddr:ident, $size:ident, $writable:literal);* $(;)?) => {
        [$($crate::Region {
            name: $name,
            vaddr: *sel4_microkit::var!(#[used(linker)] $vaddr: usize = 0),
            size: *sel4_microkit::var!(#[used(linker)] $size: usize = 0),
            writable: $writable,
        }),*]
    };
}

/// Whether the kernel this image is built for has our user-MTE patch
/// (`KernelArmUserMTE`, read from the SDK's kernel configuration by
/// `build.rs`). Whether MTE is on is the kernel's answer at run time: see
/// [`machine::KernelTags`].
pub const KERNEL_HAS_USER_MTE: bool = cfg!(tagloan_user_mte);

/// Most regions one PD declares.
pub const MAX_REGIONS: usize = 8;

/// The `Env` of one PD on seL4.
pub struct Sel4Env {
    regions: [Option<Region>; MAX_REGIONS],
    /// Writable regions already handed out (each is handed out once).
    taken: [bool; MAX_REGIONS],
}

impl Sel4Env {
    /// The environment of this PD, with the regions it maps.
    pub fn new(regions: &[Region]) -> Sel4Env {
        assert!(
            regions.len() <= MAX_REGIONS,
            "a PD declares at most {MAX_REGIONS} regions"
        );
        let mut table = [None; MAX_REGIONS];
        for (slot, region) in table.iter_mut().zip(regions) {
            *slot = Some(*region);
        }
        Sel4Env {
            regions: table,
            taken: [false; MAX_REGIONS],
        }
    }

    fn find(&self, name: &str) -> Option<(usize, Region)> {
        self.regions
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.filter(|r| r.name == name).map(|r| (i, r)))
            .filter(|(_, r)| r.vaddr != 0 && r.size != 0)
    }
}

/// One line on the debug console: the kernel's `seL4_DebugPutChar`, which
/// only a kernel built with printing has (Microkit's `debug` config).
#[sel4::sel4_cfg(PRINTING)]
pub fn print_line(text: &str) {
    sel4_microkit::debug_println!("{text}");
}

/// A `release` kernel prints nothing (as libmicrokit's `microkit_dbg_puts`).
#[sel4::sel4_cfg(not(PRINTING))]
pub fn print_line(_text: &str) {}

fn to_sel4(info: MessageInfo) -> sel4_microkit::MessageInfo {
    sel4_microkit::MessageInfo::new(info.label(), info.count())
}

fn from_sel4(info: sel4_microkit::MessageInfo) -> MessageInfo {
    MessageInfo::new(info.label(), info.count())
}

impl Env for Sel4Env {
    fn pd_name(&self) -> &str {
        sel4_microkit::pd_name().unwrap_or("?")
    }

    fn mr(&self, index: usize) -> u64 {
        sel4_microkit::get_mr(index)
    }

    fn set_mr(&mut self, index: usize, value: u64) {
        sel4_microkit::set_mr(index, value)
    }

    fn ppcall(&mut self, channel: Channel, info: MessageInfo) -> Result<MessageInfo, Stopped> {
        // On seL4 a stopped caller never returns from the call, so there is
        // no `Stopped` to give.
        Ok(from_sel4(
            sel4_microkit::Channel::new(channel.index()).pp_call(to_sel4(info)),
        ))
    }

    fn notify(&mut self, channel: Channel) {
        sel4_microkit::Channel::new(channel.index()).notify()
    }

    fn pd_stop(&mut self, child: Child) {
        // libmicrokit's microkit_pd_stop: suspend the child's TCB.
        if let Err(error) = sel4_microkit::Child::new(child.index()).tcb().tcb_suspend() {
            let mut line = tagloan_microkit::DebugLine::new();
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!("pd_stop of child {}: {error:?}", child.index()),
            );
            print_line(line.as_str());
        }
    }

    fn pd_restart(&mut self, child: Child, entry_point: u64) {
        // libmicrokit's microkit_pd_restart writes the PC alone, so the
        // child would keep the rest of its PSTATE: a child that set
        // PSTATE.TCO (tag checks off) before it faulted would run on with
        // its tag checks off. Write the PC, SP and SPSR (the first three
        // registers of seL4_UserContext on AArch64): seL4 sanitises the SPSR
        // to a fresh thread's (`sanitiseRegister`: the NZCV flags kept,
        // `PSTATE_USER` for the rest), so TCO, the DAIF masks and the mode
        // are what a new PD starts with; 0 keeps no flag either. The SP is
        // set again by the restart entry, which moves to the static stack.
        let mut context = sel4::UserContext::default();
        *context.pc_mut() = entry_point;
        *context.sp_mut() = 0;
        *context.spsr_mut() = 0;
        if let Err(error) = sel4_microkit::Child::new(child.index())
            .tcb()
            .tcb_write_registers(true, 3, &mut context)
        {
            let mut line = tagloan_microkit::DebugLine::new();
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!("pd_restart of child {}: {error:?}", child.index()),
            );
            print_line(line.as_str());
        }
    }

    fn debug_print(&mut self, text: &str) {
        print_line(text);
    }

    fn cycles(&self) -> Option<u64> {
        let count: u64;
        // SAFETY: reading CNTPCT_EL0 has no side effect; Microkit's kernel
        // exports it to EL0 (CONFIG_EXPORT_PCNT_USER). The ISB keeps the
        // read from moving across the code being timed.
        unsafe {
            core::arch::asm!("isb", "mrs {c}, cntpct_el0", c = out(reg) count, options(nomem, nostack, preserves_flags));
        }
        Some(count)
    }

    fn region(&self, name: &str) -> Option<&[u8]> {
        let (index, region) = self.find(name)?;
        // A region handed out writable is no longer shared.
        if self.taken[index] {
            return None;
        }
        // SAFETY: the microkit tool mapped `size` bytes at `vaddr` into this
        // PD for its whole life (the symbols say so), and nothing in this PD
        // writes a region it hands out shared.
        Some(unsafe { core::slice::from_raw_parts(region.vaddr as *const u8, region.size) })
    }

    fn take_region_mut(&mut self, name: &str) -> Option<&'static mut [u8]> {
        let (index, region) = self.find(name)?;
        if !region.writable || self.taken[index] {
            return None;
        }
        self.taken[index] = true;
        // SAFETY: the region is mapped read-write for the PD's life, and it is
        // handed out once, so this is the only reference to it.
        Some(unsafe { core::slice::from_raw_parts_mut(region.vaddr as *mut u8, region.size) })
    }

    fn load(&mut self, pointer: u64, out: &mut [u8]) -> Result<(), Stopped> {
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: a client's access to its own window is the point: if the
            // page is not mapped the kernel delivers a VMFault to the parent,
            // which maps it and resumes this load, or stops this PD.
            *byte = unsafe { core::ptr::read_volatile((pointer as usize + i) as *const u8) };
        }
        Ok(())
    }

    fn store(&mut self, pointer: u64, bytes: &[u8]) -> Result<(), Stopped> {
        for (i, byte) in bytes.iter().enumerate() {
            // SAFETY: as for `load`.
            unsafe { core::ptr::write_volatile((pointer as usize + i) as *mut u8, *byte) };
        }
        Ok(())
    }

    fn execute(&mut self, pointer: u64) -> Result<(), Stopped> {
        // No cache maintenance: the code is expected never to run (every
        // client page is execute-never). On QEMU, which has no instruction
        // cache, a page that wrongly allowed it would run the bytes stored.
        //
        // SAFETY: this is the test of a mapping's execute permission. The
        // kernel delivers the instruction abort to the parent, which
        // restarts or stops this PD; a page that wrongly runs code runs the
        // caller's `ret`, which returns here.
        unsafe {
            let code: extern "C" fn() = core::mem::transmute(pointer as usize);
            code();
        }
        Ok(())
    }

    fn irg(&mut self, pointer: u64, exclude: u16) -> u64 {
        // SAFETY: the boards tagloan runs on have FEAT_MTE (QEMU `mte=on`);
        // with tag access disabled for EL0, IRG gives tag 0.
        unsafe { tagloan_mte::hw::irg(pointer, exclude) }
    }

    fn set_tags(&mut self, pointer: u64, len: usize) -> Result<(), Stopped> {
        let granule = tagloan_mte::GRANULE_BYTES;
        for offset in (0..len).step_by(granule) {
            // SAFETY: the caller's own tagged page; with tag access disabled
            // for EL0 (stock seL4), STG stores nothing.
            unsafe { tagloan_mte::hw::stg(pointer + offset as u64) };
        }
        Ok(())
    }
}

/// The memory server's probe of its own mapping (`OwnMappingProbe`): stores
/// tag 0xa on the first granule of `region` with STG, reads it back with
/// LDG, and restores tag 0. The pointers keep a zero top byte (a stock seL4
/// PD has no top-byte-ignore). With tag access disabled for EL0, as stock
/// seL4 leaves it, STG stores nothing and LDG reads 0.
pub fn probe_tags_on_own_mapping(region: &mut [u8]) -> bool {
    let address = region.as_mut_ptr() as u64;
    if region.len() < tagloan_mte::GRANULE_BYTES || !address.is_multiple_of(16) {
        return false;
    }
    let tagged = tagloan_mte::with_pointer_tag(address, tagloan_mte::Tag::from_low_bits(0xa));
    // SAFETY: the granule is the server's own read-write mapping, which it
    // does not use for anything else until the probe is over.
    let read_back = unsafe {
        tagloan_mte::hw::stg_from(tagged, address);
        let tag = tagloan_mte::hw::ldg(address);
        tagloan_mte::hw::stg_from(address, address);
        tag
    };
    read_back.value() == 0xa
}

/// A tagloan handler run by `sel4-microkit`'s event loop.
pub struct Sel4Pd<H: Handler> {
    handler: H,
    env: Sel4Env,
}

impl<H: Handler> Sel4Pd<H> {
    /// Runs `handler`'s `init` with the PD's regions; an error ends the PD
    /// (as a panic does), with the error printed.
    pub fn start(mut handler: H, regions: &[Region]) -> Sel4Pd<H> {
        let mut env = Sel4Env::new(regions);
        if let Err(error) = handler.init(&mut env) {
            panic!("init failed: {error}");
        }
        Sel4Pd { handler, env }
    }
}

impl<H: Handler> sel4_microkit::Handler for Sel4Pd<H> {
    type Error = H::Error;

    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), H::Error> {
        let badge = channels
            .iter()
            .fold(0u64, |bits, channel| bits | 1 << channel.index());
        self.handler
            .notified(&mut self.env, ChannelSet::from_badge(badge))
    }

    fn protected(
        &mut self,
        channel: sel4_microkit::Channel,
        info: sel4_microkit::MessageInfo,
    ) -> Result<sel4_microkit::MessageInfo, H::Error> {
        self.handler
            .protected(
                &mut self.env,
                Channel::new(channel.index()),
                from_sel4(info),
            )
            .map(to_sel4)
    }

    fn fault(
        &mut self,
        child: sel4_microkit::Child,
        info: sel4_microkit::MessageInfo,
    ) -> Result<Option<sel4_microkit::MessageInfo>, H::Error> {
        Ok(self
            .handler
            .fault(&mut self.env, Child::new(child.index()), from_sel4(info))?
            .map(to_sel4))
    }
}

// The entry point a parent restarts a child PD at (`pd_restart`; `make
// image` writes its address into the client table as `entry=`).
//
// sel4-microkit's `_start` runs its one-time set-up (the panic hook, the
// constructors) and would panic the second time, so a restarted PD enters
// here instead: a fresh stack (the same static one `_start` uses), then the
// PD's main, which builds a new handler and runs its `init` again. The rest
// of the thread's state (the IPC buffer, TLS) is the PD's own and stays.
core::arch::global_asm!(
    r#"
        .section .text.tagloan_restart, "ax", %progbits
        .global tagloan_restart
        tagloan_restart:
            ldr x9, =__sel4_runtime_common__stack_bottom
            ldr x9, [x9]
            mov sp, x9
            bl tagloan_restart_main
        1:  b 1b
    "#
);

unsafe extern "C" {
    /// The PD's main, which `#[protection_domain]` declares. It is defined
    /// as a Rust-ABI `fn` and declared `extern "C"` here, as sel4-microkit's
    /// own entry does: for a function without arguments or result the two
    /// calls are the same on AArch64, but the mismatch is formally outside
    /// Rust's guarantees.
    fn __sel4_microkit__main();
    /// The restart entry above.
    fn tagloan_restart();
}

/// Keeps the restart entry in the image: nothing in the PD calls it, and the
/// linker would collect its section.
#[used(linker)]
static KEEP_RESTART_ENTRY: unsafe extern "C" fn() = tagloan_restart;

#[unsafe(no_mangle)]
extern "C" fn tagloan_restart_main() {
    // SAFETY: the same call sel4-microkit's entry makes once the one-time
    // set-up is done; it builds the handler afresh and never returns.
    unsafe { __sel4_microkit__main() }
}

/// Bytes of each PD's stack. It is a static of the image, not Microkit's
/// 4 KiB default stack: `_start` points SP at its top, so a PD restarted at
/// its entry point (`pd_restart`) starts on a fresh stack too.
pub const STACK_BYTES: usize = 128 * 1024;

/// A PD's entry: `tagloan_pd!(handler expression, regions![...])`.
#[macro_export]
macro_rules! tagloan_pd {
    ($handler:expr, $regions:expr) => {
        #[sel4_microkit::protection_domain(stack_size = $crate::STACK_BYTES)]
        fn init() -> impl sel4_microkit::Handler {
            let regions = $regions;
            $crate::Sel4Pd::start($handler, &regions)
        }
    };
}
