//! The runtime API every tagloan protection domain is written against.
//!
//! It is shaped like rust-sel4's `sel4-microkit`: a PD is a [`Handler`] whose
//! entry points return a `Result` with the handler's own error type; it
//! talks through [`Channel`]s with [`MessageInfo`] and message registers,
//! calls `pp_call` and `notify`, and a parent stops and restarts its
//! [`Child`]ren. The one difference is that the kernel is reached through an
//! [`Env`] passed to each entry point instead of free functions over a
//! global IPC buffer: that is what lets the simulator run every PD of a
//! system in one host process. On seL4 each `env.x(...)` is the
//! `sel4-microkit` function or method of the same name.
//!
//! The API carries nothing a backend alone needs. The memory server's kernel
//! operations (map, unmap, copy, zero, tags) are the pool's `Kernel` and
//! `TagOps`, which the backend that builds the server hands to it; what the
//! simulator observes of a PD (counters, invariants, frame pictures) is the
//! simulator's business (`tagloan_sim::Hosted::observed`).
//!
//! Backends: the simulator (`tagloan-sim`, the default) and seL4
//! (`sel4/runtime`, on rust-sel4; see docs/sel4.md for what is real there).
#![no_std]

/// Microkit's limits, from libmicrokit's `microkit.h` (2.3.0) and the
/// `microkit` tool (`tool/microkit/src/lib.rs`, `sdf.rs`): written once, here.
pub mod limits {
    /// `MICROKIT_MAX_CHANNELS`: channel ids run from 0 to 61.
    pub const MAX_CHANNELS: usize = 62;
    /// `MICROKIT_MAX_CHANNEL_ID`.
    pub const MAX_CHANNEL_ID: usize = MAX_CHANNELS - 1;
    /// The tool's `PD_MAX_ID`: a child's `id` under its parent is 0 to 61.
    pub const MAX_CHILD_ID: usize = 61;
    /// The tool's `MAX_PDS`.
    pub const MAX_PDS: usize = 63;
    /// `MICROKIT_PD_NAME_LENGTH`, the tool's `PD_MAX_NAME_LENGTH`.
    pub const PD_NAME_LENGTH: usize = 64;
    /// `MICROKIT_MAX_USER_CAPS`: the slots of `<cspace>` user caps.
    pub const MAX_USER_CAPS: usize = 128;
    /// `PD_ROOT_CAP_SIZE`: the slots of a PD's root CNode; `<cspace>` caps
    /// use 1 to 63 (slot 0 holds the PD's own CNode).
    pub const PD_ROOT_CAP_SIZE: usize = 64;
}

/// What the seL4 backend's memory server provisions at start-up
/// (`sel4/runtime/src/machine.rs`), written once so that `tagloan check`
/// can report and check it beside the image that uses it.
pub mod sel4_provisioning {
    /// Bits of the frame CNode: one slot per pool frame and table.
    pub const FRAMES_CNODE_BITS: usize = 16;
    /// Bytes of one CNode slot (seL4's `seL4_SlotBits` is 5).
    pub const SLOT_BYTES: u64 = 32;
    /// Bytes of one translation table.
    pub const TABLE_BYTES: u64 = 4096;
    /// Bytes a leaf translation table covers.
    pub const LEAF_TABLE_SPAN: u64 = 2 << 20;
    /// Bytes the table above a leaf covers.
    pub const LEVEL2_TABLE_SPAN: u64 = 1 << 30;
    /// The server's scratch window (two pages), for copies and zeroes.
    pub const SCRATCH_VADDR: u64 = 0x1000_0000;
    /// Window pages the server's page map tracks, 4 bytes each.
    pub const MAX_WINDOW_PAGES: usize = 1 << 16;
    /// Where Microkit puts a PD's program image.
    pub const PROGRAM_BASE: u64 = 0x20_0000;
    /// The server's root CNode (64 slots): `<cap_vspace slot="1">` of
    /// itself, then `<cap_vspace slot="2 + i">` of client `i` of the client
    /// table, and its frame CNode in the last slot, which the SDF must leave
    /// free (`tagloan check` holds it to all three).
    pub const OWN_VSPACE_SLOT: u8 = 1;
    pub const FIRST_CLIENT_VSPACE_SLOT: u8 = 2;
    pub const FRAMES_ROOT_SLOT: u8 = 63;
}

/// Most message registers (seL4's `seL4_MsgMaxLength`).
pub const MSG_MAX_LENGTH: usize = 120;
pub use limits::{MAX_CHANNEL_ID, MAX_CHILD_ID};

/// One end of a channel, by its id in this PD (`id=` in `system.xml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(u8);

impl Channel {
    /// The channel with id `index`. Panics above [`MAX_CHANNEL_ID`], as a
    /// constant in a PD is a build-time fact (so does `sel4-microkit`).
    pub const fn new(index: usize) -> Channel {
        assert!(index <= MAX_CHANNEL_ID, "Microkit channel ids are 0 to 61");
        Channel(index as u8)
    }

    /// The id.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A child PD, by its `id=` under this PD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Child(u8);

impl Child {
    /// The child with id `index`.
    pub const fn new(index: usize) -> Child {
        assert!(index <= MAX_CHILD_ID, "Microkit child ids are 0 to 61");
        Child(index as u8)
    }

    /// The id.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The channels a notification wakeup carries (like `sel4-microkit`'s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelSet(u64);

impl ChannelSet {
    /// A set from a badge: bit `i` is channel `i`.
    pub const fn from_badge(badge: u64) -> ChannelSet {
        ChannelSet(badge)
    }

    /// The badge.
    pub const fn badge(self) -> u64 {
        self.0
    }

    /// Whether `channel` is in the set.
    pub const fn contains(self, channel: Channel) -> bool {
        self.0 >> channel.0 & 1 == 1
    }

    /// The channels, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        (0..=MAX_CHANNEL_ID)
            .filter(move |&i| self.0 >> i & 1 == 1)
            .map(Channel::new)
    }
}

/// A message: its label and how many message registers it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageInfo {
    label: u64,
    count: usize,
}

impl MessageInfo {
    /// seL4 labels are 52 bits wide.
    pub const LABEL_BITS: u32 = 52;

    /// A message. The label is truncated to 52 bits and the count clamped to
    /// [`MSG_MAX_LENGTH`], as the kernel does.
    pub const fn new(label: u64, count: usize) -> MessageInfo {
        MessageInfo {
            label: label & ((1 << Self::LABEL_BITS) - 1),
            count: if count > MSG_MAX_LENGTH {
                MSG_MAX_LENGTH
            } else {
                count
            },
        }
    }

    /// The label.
    pub const fn label(&self) -> u64 {
        self.label
    }

    /// The number of message registers.
    pub const fn count(&self) -> usize {
        self.count
    }
}

/// Returned by a blocking call when the calling PD was stopped or restarted
/// by its parent while blocked (for example, on a fault it took). On seL4 the
/// thread never returns; in the simulator the handler must return at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stopped;

/// seL4 fault labels on AArch64 with the MCS kernel, which Microkit uses
/// (`libsel4/arch_include/arm/sel4/arch/shared_types.bf`: with
/// `CONFIG_KERNEL_MCS`, `Timeout` is 5 and `VMFault` 6).
pub mod fault_label {
    pub const CAP_FAULT: u64 = 1;
    pub const UNKNOWN_SYSCALL: u64 = 2;
    pub const USER_EXCEPTION: u64 = 3;
    pub const TIMEOUT: u64 = 5;
    pub const VM_FAULT: u64 = 6;
}

/// Message register layouts of the faults (AArch64: libsel4's
/// `sel4_arch/constants.h`, `seL4_VMFault_*` and friends).
mod fault_mr {
    /// VMFault: IP, Addr, PrefetchFault, FSR.
    pub const VM_IP: usize = 0;
    pub const VM_ADDR: usize = 1;
    pub const VM_PREFETCH: usize = 2;
    pub const VM_FSR: usize = 3;
    pub const VM_LENGTH: usize = 4;
    /// UserException: FaultIP, SP, SPSR, Number, Code.
    pub const USER_IP: usize = 0;
    pub const USER_NUMBER: usize = 3;
    pub const USER_CODE: usize = 4;
    pub const USER_LENGTH: usize = 5;
    /// UnknownSyscall: X0 to X7, FaultIP, SP, LR, SPSR, Syscall.
    pub const SYSCALL_IP: usize = 8;
    pub const SYSCALL_NUMBER: usize = 12;
    pub const SYSCALL_LENGTH: usize = 13;
}

/// AArch64 fault status codes (ESR.ISS.DFSC) the system uses.
pub mod fsr {
    /// Translation fault, level 3: the page is not mapped.
    pub const TRANSLATION_L3: u64 = 0x07;
    /// Permission fault, level 3: mapped with no access.
    pub const PERMISSION_L3: u64 = 0x0f;
    /// Synchronous tag check fault (FEAT_MTE).
    pub const SYNC_TAG_CHECK: u64 = 0x11;

    /// Whether a data abort with this FSR (ESR) is one that lazy tagging
    /// can cause: a translation fault (the page is not mapped) or a
    /// permission fault (mapped with no access), at any level (DFSC 0x04 to
    /// 0x07, 0x0c to 0x0f).
    pub const fn lazy_tagging_explains(fsr: u64) -> bool {
        let dfsc = fsr & 0x3f;
        matches!(dfsc, 0x04..=0x07 | 0x0c..=0x0f)
    }
}

/// A fault message as the parent receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A data or instruction abort. With top-byte-ignore, `addr` (FAR_EL1)
    /// keeps the pointer's top byte, so bits 59:56 are its logical tag.
    VmFault {
        ip: u64,
        addr: u64,
        prefetch: bool,
        fsr: u64,
    },
    /// An exception the kernel forwards (an undefined instruction, a crash).
    UserException { ip: u64, number: u64, code: u64 },
    /// A system call the kernel does not know.
    UnknownSyscall { ip: u64, number: u64 },
    /// Any other label (a cap fault, a timeout), raw.
    Other { label: u64 },
}

impl Fault {
    /// Writes the fault's registers as the kernel lays them out (registers
    /// the simulator does not model, such as SP and SPSR, are zero); returns
    /// the message info.
    pub fn encode(&self, mrs: &mut [u64]) -> MessageInfo {
        use fault_mr::*;
        match *self {
            Fault::VmFault {
                ip,
                addr,
                prefetch,
                fsr,
            } => {
                mrs[..VM_LENGTH].fill(0);
                mrs[VM_IP] = ip;
                mrs[VM_ADDR] = addr;
                mrs[VM_PREFETCH] = u64::from(prefetch);
                mrs[VM_FSR] = fsr;
                MessageInfo::new(fault_label::VM_FAULT, VM_LENGTH)
            }
            Fault::UserException { ip, number, code } => {
                mrs[..USER_LENGTH].fill(0);
                mrs[USER_IP] = ip;
                mrs[USER_NUMBER] = number;
                mrs[USER_CODE] = code;
                MessageInfo::new(fault_label::USER_EXCEPTION, USER_LENGTH)
            }
            Fault::UnknownSyscall { ip, number } => {
                mrs[..SYSCALL_LENGTH].fill(0);
                mrs[SYSCALL_IP] = ip;
                mrs[SYSCALL_NUMBER] = number;
                MessageInfo::new(fault_label::UNKNOWN_SYSCALL, SYSCALL_LENGTH)
            }
            Fault::Other { label } => MessageInfo::new(label, 0),
        }
    }

    /// Reads a fault message.
    pub fn decode(info: MessageInfo, mrs: &[u64]) -> Fault {
        use fault_mr::*;
        let mr = |i: usize| mrs.get(i).copied().unwrap_or(0);
        match (info.label(), info.count()) {
            (fault_label::VM_FAULT, VM_LENGTH..) => Fault::VmFault {
                ip: mr(VM_IP),
                addr: mr(VM_ADDR),
                prefetch: mr(VM_PREFETCH) != 0,
                fsr: mr(VM_FSR),
            },
            (fault_label::USER_EXCEPTION, USER_LENGTH..) => Fault::UserException {
                ip: mr(USER_IP),
                number: mr(USER_NUMBER),
                code: mr(USER_CODE),
            },
            (fault_label::UNKNOWN_SYSCALL, SYSCALL_LENGTH..) => Fault::UnknownSyscall {
                ip: mr(SYSCALL_IP),
                number: mr(SYSCALL_NUMBER),
            },
            (label, _) => Fault::Other { label },
        }
    }

    /// Whether it is a synchronous MTE tag-check fault.
    pub fn is_tag_check(&self) -> bool {
        matches!(self, Fault::VmFault { fsr, .. } if fsr & 0x3f == fsr::SYNC_TAG_CHECK)
    }

    /// The registers a handler must read to decode a fault.
    pub const MAX_LENGTH: usize = fault_mr::SYSCALL_LENGTH;
}

/// What a PD can ask of the kernel and of Microkit. One per PD.
pub trait Env {
    /// This PD's name in `system.xml`.
    fn pd_name(&self) -> &str;

    /// Message register `index`.
    fn mr(&self, index: usize) -> u64;
    /// Sets message register `index`.
    fn set_mr(&mut self, index: usize, value: u64);

    /// A protected procedure call on `channel`; returns the reply's info.
    fn ppcall(&mut self, channel: Channel, info: MessageInfo) -> Result<MessageInfo, Stopped>;
    /// Signals the notification of `channel`.
    fn notify(&mut self, channel: Channel);

    /// Stops `child` (Microkit `microkit_pd_stop`).
    fn pd_stop(&mut self, child: Child);
    /// Restarts `child` at `entry_point`, its program image's entry
    /// (`microkit_pd_restart`). The simulator runs the child's `init` again
    /// and ignores the address.
    fn pd_restart(&mut self, child: Child, entry_point: u64);

    /// Writes to the debug console.
    fn debug_print(&mut self, text: &str);

    /// The architected counter (CNTPCT_EL0 on AArch64), if this backend
    /// gives one: for benchmarks only, never for behaviour. The simulator
    /// has no time and gives none.
    fn cycles(&self) -> Option<u64> {
        None
    }

    /// A memory region mapped into this PD, by its name in `system.xml`
    /// (on seL4, found through `setvar_vaddr`).
    fn region(&self, name: &str) -> Option<&[u8]>;
    /// A writable region, handed out once, for a server's bookkeeping.
    fn take_region_mut(&mut self, name: &str) -> Option<&'static mut [u8]>;

    /// A load through `pointer` (bits 59:56 are the logical tag). A fault on
    /// it goes to the parent; the load is retried if the parent resumes us.
    fn load(&mut self, pointer: u64, out: &mut [u8]) -> Result<(), Stopped>;
    /// A store through `pointer`.
    fn store(&mut self, pointer: u64, bytes: &[u8]) -> Result<(), Stopped>;
    /// An instruction fetch: branches to `pointer` as to a function, which
    /// the caller has stored there (an AArch64 `ret`, 0xd65f03c0). Returns
    /// if the code ran and came back, which it must not on a page a server
    /// maps: every client mapping is execute-never (DESIGN I6, W^X). A
    /// fault (an instruction abort) goes to the parent as a VMFault with
    /// its prefetch flag set.
    fn execute(&mut self, pointer: u64) -> Result<(), Stopped>;
    /// IRG: `pointer` with a random logical tag, avoiding the tags whose bits
    /// are set in `exclude`.
    fn irg(&mut self, pointer: u64, exclude: u16) -> u64;
    /// STG over `len` bytes (granule multiples) at `pointer`: the granules
    /// take the pointer's logical tag. Only on this PD's tagged pages.
    fn set_tags(&mut self, pointer: u64, len: usize) -> Result<(), Stopped>;
}

/// The event handler of a PD (`sel4_microkit::Handler`). An entry point
/// that returns an error ends the PD, as a panic does on seL4: the backend
/// reports the error and the PD's parent (or the Microkit monitor) sees it
/// stop. Refusals a PD answers with (a server's typed error replies) are not
/// errors of the handler.
pub trait Handler {
    /// What ends the PD.
    type Error: core::fmt::Display;

    /// Runs once when the PD starts, and again after each restart (on seL4,
    /// the body of `#[protection_domain] fn init()`).
    fn init(&mut self, env: &mut dyn Env) -> Result<(), Self::Error>;

    /// Notifications arrived on `channels`.
    fn notified(&mut self, env: &mut dyn Env, channels: ChannelSet) -> Result<(), Self::Error> {
        let _ = channels;
        env.debug_print("notification on a channel this PD does not handle");
        Ok(())
    }

    /// A protected procedure call arrived on `channel`; returns the reply.
    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, Self::Error> {
        let _ = (channel, info);
        env.debug_print("protected procedure call to a PD that serves none");
        Ok(MessageInfo::new(u64::MAX >> 12, 0))
    }

    /// `child` faulted. `Some(reply)` resumes it; `None` leaves it blocked
    /// (the handler has stopped or restarted it).
    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, Self::Error> {
        let _ = (child, info);
        env.debug_print("a child faulted and this PD handles no faults");
        Ok(None)
    }
}

/// The error type of a handler whose entry points cannot fail.
pub use core::convert::Infallible;

/// A line of text formatted into a fixed buffer, for the debug console of a
/// PD without `alloc`. Text past the buffer is cut at a char boundary.
pub struct DebugLine {
    bytes: [u8; DebugLine::CAPACITY],
    len: usize,
}

impl DebugLine {
    /// Bytes a line holds.
    pub const CAPACITY: usize = 512;

    pub const fn new() -> DebugLine {
        DebugLine {
            bytes: [0; DebugLine::CAPACITY],
            len: 0,
        }
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole chars are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Default for DebugLine {
    fn default() -> DebugLine {
        DebugLine::new()
    }
}

impl core::fmt::Write for DebugLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let mut room = (self.bytes.len() - self.len).min(s.len());
        while !s.is_char_boundary(room) {
            room -= 1;
        }
        self.bytes[self.len..self.len + room].copy_from_slice(&s.as_bytes()[..room]);
        self.len += room;
        Ok(())
    }
}

/// `debug_println!(env, "format", args...)`: one formatted line to the
/// PD's debug console (like `sel4_microkit::debug_println!`).
#[macro_export]
macro_rules! debug_println {
    ($env:expr, $($arg:tt)*) => {{
        let mut line = $crate::DebugLine::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        $env.debug_print(line.as_str());
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_labels_and_layouts_are_sel4_mcs_aarch64() {
        // Pinned against seL4's shared_types.bf (MCS) and aarch64 types.bf.
        assert_eq!(fault_label::VM_FAULT, 6);
        assert_eq!(fault_label::TIMEOUT, 5);
        let mut mrs = [0u64; 16];
        let info = Fault::UserException {
            ip: 0x40,
            number: 7,
            code: 9,
        }
        .encode(&mut mrs);
        assert_eq!((info.label(), info.count()), (3, 5));
        assert_eq!(mrs[..5], [0x40, 0, 0, 7, 9]);
        let info = Fault::UnknownSyscall {
            ip: 0x80,
            number: 12,
        }
        .encode(&mut mrs);
        assert_eq!((info.label(), info.count()), (2, 13));
        assert_eq!((mrs[8], mrs[12]), (0x80, 12));
        for fault in [
            Fault::VmFault {
                ip: 1,
                addr: 0x0600_0000_4000_0010,
                prefetch: false,
                fsr: fsr::SYNC_TAG_CHECK,
            },
            Fault::UserException {
                ip: 2,
                number: 3,
                code: 4,
            },
            Fault::UnknownSyscall { ip: 5, number: 6 },
        ] {
            let info = fault.encode(&mut mrs);
            assert_eq!(Fault::decode(info, &mrs), fault);
        }
        assert!(Fault::decode(MessageInfo::new(6, 4), &[0, 0, 0, 0x11]).is_tag_check());
        assert_eq!(
            Fault::decode(MessageInfo::new(5, 2), &[]),
            Fault::Other { label: 5 }
        );
    }
}
