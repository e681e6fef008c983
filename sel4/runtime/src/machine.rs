//! The pool's machine on seL4: `Kernel` and `TagOps` over the capabilities
//! tagloan's initial task hands the memory server (see [`crate::frames`]).
//!
//! At start-up, [`Sel4Machine::provision`] makes everything a later call
//! needs, so that no map, unmap, copy or zero can fail afterwards (the
//! pool's commits have no undo):
//!
//! - a CNode of 2^16 slots, retyped from the server-objects Untyped and
//!   placed in root slot [`FRAMES_ROOT_SLOT`] with a guard that makes its
//!   slots CPtrs of their own (`slot 63 << 58 | index`);
//! - a frame cap for every frame of the pool, retyped in address order from
//!   the pool's Untypeds into that CNode (data frames first, then tag
//!   storage), so frame `i` of the pool's layout is slot `i`;
//! - every translation table of every client window (through the clients'
//!   `<cap_vspace>`), and of the server's scratch window, where it maps a
//!   copy of a frame cap to copy, zero or tag a frame.
//!
//! What a call does then: `map` is one `seL4_ARM_Page_Map` of the frame's
//! cap into the client's VSpace (no rights at all for no-access: the page
//! is then the kernel's only, and any user access is a permission fault);
//! `unmap` is `seL4_ARM_Page_Unmap` of the cap recorded for that page. Every
//! mapping of a pool frame is execute-never (a heap hands out data, and
//! AArch64 would make a no-rights page execute-only for EL0). Data
//! and tags are reached through the scratch window. Caches: every mapping
//! is normal cacheable memory, and AArch64 data caches are physically
//! tagged, so the server's copy and the client's mapping see the same data
//! with no maintenance.
//!
//! MTE: with our kernel patch (`sel4/patches/sel4-user-mte.patch`, the
//! kernel option `KernelArmUserMTE`, seen here as `cfg(tagloan_user_mte)`),
//! provisioning asks the kernel for one `seL4_ARM_Tagged` mapping. If it
//! takes it ([`KernelTags::Enforced`]), tagged pages are mapped Tagged, so a
//! client's access through a wrong pointer tag is a tag-check fault, and
//! the server reaches tags with STG and LDG through a Tagged scratch
//! mapping. Data is always copied and zeroed through a Normal one: those
//! accesses are unchecked, so the server needs no pointer tags. Otherwise
//! (a stock kernel, or a patched one that refused: no MTE2 on this CPU)
//! tagged pages are mapped Normal and no tag instruction is ever run: the
//! tags read as zero and the server's probe says they are not stored.
#![allow(unsafe_code)]

use sel4::{CapRights, ObjectBlueprint, ObjectBlueprintArch, VmAttributes};
use tagloan_mte::{Access, FrameTags, Kernel, Pfn, TagOps, FRAME_BYTES, TAG_BYTES_PER_FRAME};

use crate::frames::{FIRST_FREE_SLOT, ROOT_CNODE_COPY};

/// A Microkit CNode slot of the server's (after the frame CNode's), where
/// provisioning asks each pool Untyped for an Untyped twice its region:
/// the retype must fail, so the slot stays empty.
const PROBE_SLOT: u64 = FIRST_FREE_SLOT + 1;

/// The root CNode slot of the server's frame CNode: the last, after the
/// client VSpaces (`tagloan check` keeps the SDF out of it).
pub const FRAMES_ROOT_SLOT: u64 = tagloan_microkit::sel4_provisioning::FRAMES_ROOT_SLOT as u64;
/// Bits of the frame CNode: 65,536 slots.
pub use tagloan_microkit::sel4_provisioning::FRAMES_CNODE_BITS;
/// Bits of a PD's root CNode (`PD_ROOT_CAP_BITS`).
const ROOT_CNODE_BITS: usize = 6;
/// The frame CNode's last two slots: copies of frame caps for the scratch
/// window.
const SCRATCH_SLOTS: u64 = (1 << FRAMES_CNODE_BITS) - 2;
/// The server's scratch window: two pages, outside every mapping of it.
pub const SCRATCH_VADDR: usize = tagloan_microkit::sel4_provisioning::SCRATCH_VADDR as usize;
/// The server's own VSpace: `<cap_vspace slot="1">`.
const OWN_VSPACE_ROOT_SLOT: u64 = tagloan_microkit::sel4_provisioning::OWN_VSPACE_SLOT as u64;
/// Client `i`'s VSpace is `<cap_vspace slot="2 + i">` (the client table's
/// order).
const FIRST_CLIENT_VSPACE_ROOT_SLOT: u64 =
    tagloan_microkit::sel4_provisioning::FIRST_CLIENT_VSPACE_SLOT as u64;
/// Frames one retype call makes at most (seL4's `RETYPE_FAN_OUT_LIMIT`).
const RETYPE_BATCH: usize = 256;
/// Bytes a translation table at the leaf level covers.
use tagloan_microkit::sel4_provisioning::LEAF_TABLE_SPAN;
/// Pool regions at most.
pub const MAX_POOL_REGIONS: usize = 4;
/// Client windows at most (the client table's limit).
pub const MAX_WINDOWS: usize = 16;

const fn root_slot_cptr(slot: u64) -> u64 {
    slot << (64 - ROOT_CNODE_BITS)
}

/// The CPtr of slot `index` of the frame CNode.
const fn frame_cptr(index: u64) -> u64 {
    root_slot_cptr(FRAMES_ROOT_SLOT) | index
}

/// A pool region: its Untyped (a Microkit CNode slot) and its frames.
#[derive(Clone, Copy, Debug)]
pub struct PoolRegion {
    pub untyped_slot: u64,
    pub base: Pfn,
    pub frames: u32,
    /// Tag storage (the carve-out), not data.
    pub tag_storage: bool,
}

/// A client's heap window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub base: u64,
    pub pages: u32,
}

/// Which step of provisioning failed, and seL4's answer.
#[derive(Clone, Copy, Debug)]
pub enum ProvisionError {
    /// A kernel call failed.
    Kernel {
        step: &'static str,
        error: sel4::Error,
    },
    /// The Untyped handed over for a pool region is not that region.
    Untyped {
        /// Its slot in the server's Microkit CNode.
        slot: u64,
        /// The region the device tree describes: physical address, bytes.
        base: u64,
        bytes: u64,
        problem: UntypedProblem,
    },
}

/// How an Untyped handed over differs from its device-tree region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UntypedProblem {
    /// The region is not a power of two bytes: no single Untyped is it.
    NotAPowerOfTwo,
    /// The Untyped holds more than the region.
    Larger,
    /// The Untyped cannot hold the region's frames.
    Smaller,
    /// The region's first or last frame, retyped from it, is at this
    /// physical address instead.
    FrameAt { frame: u64, paddr: u64 },
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProvisionError::Kernel { step, error } => write!(f, "{step}: {error:?}"),
            ProvisionError::Untyped {
                slot,
                base,
                bytes,
                problem,
            } => {
                write!(
                    f,
                    "the Untyped in slot {slot} is not the device tree's region at {base:#x} ({bytes:#x} bytes): "
                )?;
                match problem {
                    UntypedProblem::NotAPowerOfTwo => f.write_str(
                        "the region is not a power of two bytes, and each pool region is handed over as one Untyped",
                    ),
                    UntypedProblem::Larger => f.write_str("the Untyped is larger"),
                    UntypedProblem::Smaller => {
                        f.write_str("the Untyped cannot hold the region's frames")
                    }
                    UntypedProblem::FrameAt { frame, paddr } => write!(
                        f,
                        "frame {frame} of it is at {paddr:#x}, not {:#x}",
                        base + frame * FRAME_BYTES as u64
                    ),
                }?;
                f.write_str(
                    "; system.xml's pool regions must be the device tree's (tagloan check says where they differ)",
                )
            }
        }
    }
}

fn step<T>(step: &'static str, result: sel4::Result<T>) -> Result<T, ProvisionError> {
    result.map_err(|error| ProvisionError::Kernel { step, error })
}

/// What provisioning made, for the server's start-up line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Provisioned {
    pub frames: u32,
    pub tables: u32,
    pub cnode_slots: u32,
}

impl Provisioned {
    /// Kernel-object bytes: the frame CNode (32 bytes a slot) and the
    /// translation tables (4 KiB each).
    pub fn kernel_bytes(&self) -> u64 {
        (u64::from(self.cnode_slots) << 5) + u64::from(self.tables) * 4096
    }
}

/// What the kernel does with tagged mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelTags {
    /// The kernel has no `seL4_ARM_Tagged` (stock seL4).
    NotInKernel,
    /// The patched kernel refused `seL4_ARM_Tagged`: it could not enable
    /// MTE on this CPU (no MTE2, or a loader that did not prepare it).
    Refused,
    /// The kernel maps `seL4_ARM_Tagged` frames as Tagged Normal memory.
    Enforced,
}

/// The attributes of every mapping of pool frames, a client's or the
/// server's own: cacheable and execute-never. A heap server hands out data
/// (W^X), and a no-access (metadata-none) page must not be executable
/// either: AArch64 gives EL0 execute permission by UXN alone, so a page
/// mapped with no rights and without ExecuteNever would be execute-only.
const DATA: VmAttributes = VmAttributes::from_inner(
    VmAttributes::DEFAULT.into_inner() | VmAttributes::EXECUTE_NEVER.into_inner(),
);

/// The attributes of a Tagged mapping (our kernel patch's
/// `seL4_ARM_Tagged`, from the patched SDK's libsel4), execute-never too.
#[cfg(tagloan_user_mte)]
const TAGGED: VmAttributes =
    VmAttributes::from_inner(DATA.into_inner() | sel4::sys::seL4_ARM_VMAttributes::seL4_ARM_Tagged);

/// The pool's machine on seL4.
pub struct Sel4Machine {
    regions: [Option<PoolRegion>; MAX_POOL_REGIONS],
    windows: [Option<(Window, usize)>; MAX_WINDOWS],
    /// Per window page (each window's pages from its offset): the frame CNode
    /// slot mapped there, plus one; 0 when nothing is.
    mapped: &'static mut [u32],
    provisioned: Provisioned,
    tags: KernelTags,
}

/// The root CNode seen through its copy: the destination of retypes and
/// copies.
fn root() -> sel4::cap::CNode {
    sel4::cap::CNode::from_bits(ROOT_CNODE_COPY)
}

fn absolute(cptr: u64) -> sel4::AbsoluteCPtr {
    root().absolute_cptr_from_bits_with_depth(cptr, 64)
}

impl Sel4Machine {
    /// Window pages all windows together may have, for `mapped`.
    pub fn pages_needed(windows: &[Window]) -> usize {
        windows.iter().map(|w| w.pages as usize).sum()
    }

    /// Makes every capability and table a later call needs (see the module
    /// documentation). `objects_untyped_slot` is the Untyped for the
    /// server's kernel objects; `mapped` has a slot per window page.
    pub fn provision(
        objects_untyped_slot: u64,
        regions: &[PoolRegion],
        windows: &[Window],
        mapped: &'static mut [u32],
    ) -> Result<Sel4Machine, ProvisionError> {
        assert!(regions.len() <= MAX_POOL_REGIONS && windows.len() <= MAX_WINDOWS);
        assert!(mapped.len() >= Self::pages_needed(windows));
        let objects = sel4::cap::Untyped::from_bits(objects_untyped_slot);
        let microkit_cnode = root().absolute_cptr_from_bits_with_depth(0, ROOT_CNODE_BITS);
        // The frame CNode, then its cap in a root slot with a guard that
        // takes the bits the root and it leave: 64 - 6 - 16 = 42.
        step(
            "retype the frame CNode",
            objects.untyped_retype(
                &ObjectBlueprint::CNode {
                    size_bits: FRAMES_CNODE_BITS,
                },
                &microkit_cnode,
                FIRST_FREE_SLOT as usize,
                1,
            ),
        )?;
        let guard_bits = (64 - ROOT_CNODE_BITS - FRAMES_CNODE_BITS) as u64;
        step(
            "place the frame CNode in the root CNode",
            root()
                .absolute_cptr_from_bits_with_depth(FRAMES_ROOT_SLOT, ROOT_CNODE_BITS)
                .mint(&absolute(FIRST_FREE_SLOT), CapRights::all(), guard_bits),
        )?;
        let frames_cnode =
            root().absolute_cptr_from_bits_with_depth(FRAMES_ROOT_SLOT, ROOT_CNODE_BITS);
        let mut machine = Sel4Machine {
            regions: [None; MAX_POOL_REGIONS],
            windows: [None; MAX_WINDOWS],
            mapped,
            provisioned: Provisioned {
                cnode_slots: 1 << FRAMES_CNODE_BITS,
                ..Provisioned::default()
            },
            tags: KernelTags::NotInKernel,
        };
        // Every frame of the pool, in address order.
        let mut index = 0usize;
        for (slot, region) in machine.regions.iter_mut().zip(regions) {
            *slot = Some(*region);
            let untyped = sel4::cap::Untyped::from_bits(region.untyped_slot);
            let base = region.base * FRAME_BYTES as u64;
            let bytes = u64::from(region.frames) * FRAME_BYTES as u64;
            let mismatch = |problem| ProvisionError::Untyped {
                slot: region.untyped_slot,
                base,
                bytes,
                problem,
            };
            // Not larger than the region: an Untyped twice its size cannot
            // be retyped from it (and nothing is made when it cannot).
            if !bytes.is_power_of_two() {
                return Err(mismatch(UntypedProblem::NotAPowerOfTwo));
            }
            match untyped.untyped_retype(
                &ObjectBlueprint::Untyped {
                    size_bits: bytes.trailing_zeros() as usize + 1,
                },
                &microkit_cnode,
                PROBE_SLOT as usize,
                1,
            ) {
                Err(sel4::Error::NotEnoughMemory) => {}
                Ok(()) => return Err(mismatch(UntypedProblem::Larger)),
                Err(error) => {
                    return Err(ProvisionError::Kernel {
                        step: "ask an Untyped for twice its region",
                        error,
                    })
                }
            }
            let mut done = 0usize;
            while done < region.frames as usize {
                let batch = RETYPE_BATCH.min(region.frames as usize - done);
                match untyped.untyped_retype(
                    &ObjectBlueprint::Arch(ObjectBlueprintArch::SmallPage),
                    &frames_cnode,
                    index + done,
                    batch,
                ) {
                    Ok(()) => {}
                    Err(sel4::Error::NotEnoughMemory) => {
                        return Err(mismatch(UntypedProblem::Smaller))
                    }
                    Err(error) => {
                        return Err(ProvisionError::Kernel {
                            step: "retype the pool's frames",
                            error,
                        })
                    }
                }
                done += batch;
            }
            // At the region's address: its first and last frames are where
            // the device tree says (frames are retyped in address order).
            for frame in [0, done as u64 - 1] {
                let paddr = step(
                    "ask a pool frame its physical address",
                    sel4::cap::Granule::from_bits(frame_cptr(index as u64 + frame))
                        .frame_get_address(),
                )? as u64;
                if paddr != base + frame * FRAME_BYTES as u64 {
                    return Err(mismatch(UntypedProblem::FrameAt { frame, paddr }));
                }
            }
            index += done;
        }
        machine.provisioned.frames = index as u32;
        // The tables of every window, and of the scratch window.
        let mut tables = TableMaker {
            objects,
            frames_cnode: &frames_cnode,
            next: index as u64,
            spare: false,
        };
        let mut offset = 0;
        for (i, (slot, window)) in machine.windows.iter_mut().zip(windows).enumerate() {
            *slot = Some((*window, offset));
            offset += window.pages as usize;
            let vspace = sel4::cap::VSpace::from_bits(root_slot_cptr(
                FIRST_CLIENT_VSPACE_ROOT_SLOT + i as u64,
            ));
            let end = window.base + u64::from(window.pages) * FRAME_BYTES as u64;
            let mut at = window.base & !(LEAF_TABLE_SPAN - 1);
            while at < end {
                machine.provisioned.tables += tables.ensure(vspace, at as usize)?;
                at += LEAF_TABLE_SPAN;
            }
        }
        let own = sel4::cap::VSpace::from_bits(root_slot_cptr(OWN_VSPACE_ROOT_SLOT));
        machine.provisioned.tables += tables.ensure(own, SCRATCH_VADDR)?;
        for entry in machine.mapped.iter_mut() {
            *entry = 0;
        }
        machine.tags = machine.ask_for_tagged_mapping()?;
        Ok(machine)
    }

    /// Maps the pool's first frame Tagged in the scratch window, and unmaps
    /// it: the kernel's answer says whether tags are real. The patched
    /// kernel answers `InvalidArgument` when user MTE is off; nothing here
    /// runs a tag instruction, so this is safe on a CPU without MTE.
    #[cfg(tagloan_user_mte)]
    fn ask_for_tagged_mapping(&mut self) -> Result<KernelTags, ProvisionError> {
        let own = sel4::cap::VSpace::from_bits(root_slot_cptr(OWN_VSPACE_ROOT_SLOT));
        step(
            "copy a frame cap to ask for a Tagged mapping",
            absolute(frame_cptr(SCRATCH_SLOTS)).copy(&absolute(frame_cptr(0)), CapRights::all()),
        )?;
        let copy = sel4::cap::Granule::from_bits(frame_cptr(SCRATCH_SLOTS));
        let answer = match copy.frame_map(own, SCRATCH_VADDR, CapRights::read_write(), TAGGED) {
            Ok(()) => {
                step("unmap the Tagged scratch mapping", copy.frame_unmap())?;
                Ok(KernelTags::Enforced)
            }
            Err(sel4::Error::InvalidArgument) => Ok(KernelTags::Refused),
            Err(error) => Err(ProvisionError::Kernel {
                step: "map a frame with seL4_ARM_Tagged",
                error,
            }),
        };
        step(
            "delete the scratch copy",
            absolute(frame_cptr(SCRATCH_SLOTS)).delete(),
        )?;
        answer
    }

    /// A stock kernel has no `seL4_ARM_Tagged` to ask for.
    #[cfg(not(tagloan_user_mte))]
    fn ask_for_tagged_mapping(&mut self) -> Result<KernelTags, ProvisionError> {
        Ok(KernelTags::NotInKernel)
    }

    /// What the kernel does with tagged mappings (asked at provisioning).
    pub fn kernel_tags(&self) -> KernelTags {
        self.tags
    }

    /// The attributes of a mapping with `access`.
    fn attributes(&self, access: Access) -> VmAttributes {
        match (access, self.tags) {
            #[cfg(tagloan_user_mte)]
            (Access::Tagged, KernelTags::Enforced) => TAGGED,
            // Tagged is mapped Normal where the kernel gives no tags.
            _ => DATA,
        }
    }

    /// What provisioning made.
    pub fn provisioned(&self) -> Provisioned {
        self.provisioned
    }

    /// The frame CNode slot of `pfn`.
    fn slot_of(&self, pfn: Pfn) -> u64 {
        let mut index = 0u64;
        for region in self.regions.iter().flatten() {
            if pfn >= region.base && pfn < region.base + u64::from(region.frames) {
                let mut nth = pfn - region.base;
                if cfg!(feature = "inject-rotate-tag-frames") && region.tag_storage {
                    // Injected bug (tests/sel4/mte-test): every operation
                    // on tag storage frame `i` (map, copy, zero, read)
                    // reaches frame `i + 1` of the carve-out. The pool's
                    // tables and the clients' data stay consistent; only
                    // tags in the carve-out show that data now lands on
                    // the tags of the next block.
                    nth = (nth + 1) % u64::from(region.frames);
                }
                return index + nth;
            }
            index += u64::from(region.frames);
        }
        panic!("frame {pfn:#x} is not a frame of the pool")
    }

    /// The `mapped` entry of `client`'s page at `vaddr`.
    fn page_of(&self, client: u8, vaddr: u64) -> usize {
        let (window, offset) = self.windows[usize::from(client)]
            .unwrap_or_else(|| panic!("client {client} has no window"));
        let page = (vaddr - window.base) / FRAME_BYTES as u64;
        assert!(
            page < u64::from(window.pages),
            "{vaddr:#x} is outside client {client}'s window"
        );
        offset + page as usize
    }

    /// Runs `f` with `pfns` mapped read-write in the scratch window (a copy
    /// of each frame cap, so a frame a client maps can be reached too), with
    /// `access`'s attributes: Normal for data, Tagged for tags.
    fn with_scratch<R>(
        &mut self,
        pfns: &[Pfn],
        access: Access,
        f: impl FnOnce(&[usize]) -> R,
    ) -> R {
        let attributes = self.attributes(access);
        let own = sel4::cap::VSpace::from_bits(root_slot_cptr(OWN_VSPACE_ROOT_SLOT));
        let mut vaddrs = [0usize; 2];
        for (k, pfn) in pfns.iter().enumerate() {
            let copy = SCRATCH_SLOTS + k as u64;
            absolute(frame_cptr(copy))
                .copy(&absolute(frame_cptr(self.slot_of(*pfn))), CapRights::all())
                .expect("a scratch slot is free");
            vaddrs[k] = SCRATCH_VADDR + k * FRAME_BYTES;
            sel4::cap::Granule::from_bits(frame_cptr(copy))
                .frame_map(own, vaddrs[k], CapRights::read_write(), attributes)
                .expect("the scratch window's tables were made at start-up");
        }
        let result = f(&vaddrs[..pfns.len()]);
        for k in 0..pfns.len() {
            let copy = SCRATCH_SLOTS + k as u64;
            sel4::cap::Granule::from_bits(frame_cptr(copy))
                .frame_unmap()
                .expect("the scratch copy is mapped");
            absolute(frame_cptr(copy))
                .delete()
                .expect("the scratch copy exists");
        }
        result
    }
}

/// Translation tables as provisioning makes them: retyped from the
/// server-objects Untyped into the frame CNode, one slot after another.
struct TableMaker<'a> {
    objects: sel4::cap::Untyped,
    frames_cnode: &'a sel4::AbsoluteCPtr,
    /// The slot of the next table.
    next: u64,
    /// A table is already retyped at `next`, not yet mapped.
    spare: bool,
}

impl TableMaker<'_> {
    /// Makes the translation tables `vaddr` needs in `vspace`, down to the
    /// leaf; returns how many it made.
    fn ensure(&mut self, vspace: sel4::cap::VSpace, vaddr: usize) -> Result<u32, ProvisionError> {
        let mut made = 0;
        loop {
            if !self.spare {
                if self.next >= SCRATCH_SLOTS {
                    return Err(ProvisionError::Kernel {
                        step: "find a slot for a translation table",
                        error: sel4::Error::NotEnoughMemory,
                    });
                }
                step(
                    "retype a translation table",
                    self.objects.untyped_retype(
                        &ObjectBlueprint::Arch(ObjectBlueprintArch::PT),
                        self.frames_cnode,
                        self.next as usize,
                        1,
                    ),
                )?;
                self.spare = true;
            }
            let table = sel4::cap::PT::from_bits(frame_cptr(self.next));
            match table.pt_map(vspace, vaddr, VmAttributes::DEFAULT) {
                Ok(()) => {
                    made += 1;
                    self.next += 1;
                    self.spare = false;
                }
                // Every level is there already: the spare waits for the next.
                Err(sel4::Error::DeleteFirst) => return Ok(made),
                Err(error) => {
                    return Err(ProvisionError::Kernel {
                        step: "map a translation table",
                        error,
                    })
                }
            }
        }
    }
}

impl Kernel for Sel4Machine {
    fn map(&mut self, client: u8, vaddr: u64, frame: Pfn, access: Access) {
        let vspace = sel4::cap::VSpace::from_bits(root_slot_cptr(
            FIRST_CLIENT_VSPACE_ROOT_SLOT + u64::from(client),
        ));
        let slot = self.slot_of(frame);
        let rights = match access {
            Access::Normal | Access::Tagged => CapRights::read_write(),
            // No rights: the kernel's only, so any access faults.
            Access::NoAccess => CapRights::none(),
        };
        let attributes = self.attributes(access);
        sel4::cap::Granule::from_bits(frame_cptr(slot))
            .frame_map(vspace, vaddr as usize, rights, attributes)
            .unwrap_or_else(|e| {
                panic!("map of frame {frame:#x} at {vaddr:#x} for client {client}: {e:?}")
            });
        let page = self.page_of(client, vaddr);
        self.mapped[page] = slot as u32 + 1;
    }

    fn unmap(&mut self, client: u8, vaddr: u64) {
        let page = self.page_of(client, vaddr);
        let slot = self.mapped[page].checked_sub(1).unwrap_or_else(|| {
            panic!("unmap of {vaddr:#x}, which is not mapped for client {client}")
        });
        sel4::cap::Granule::from_bits(frame_cptr(u64::from(slot)))
            .frame_unmap()
            .unwrap_or_else(|e| panic!("unmap of {vaddr:#x} for client {client}: {e:?}"));
        self.mapped[page] = 0;
    }

    fn copy_frame(&mut self, source: Pfn, destination: Pfn) {
        self.with_scratch(&[source, destination], Access::Normal, |at| {
            // SAFETY: both frames are mapped read-write at these scratch
            // addresses for the duration of the closure, and nothing else
            // uses the scratch window.
            unsafe {
                core::ptr::copy_nonoverlapping(at[0] as *const u8, at[1] as *mut u8, FRAME_BYTES)
            }
        });
    }

    fn zero_frame(&mut self, frame: Pfn) {
        self.with_scratch(&[frame], Access::Normal, |at| {
            // SAFETY: as for `copy_frame`, for one frame.
            unsafe { core::ptr::write_bytes(at[0] as *mut u8, 0, FRAME_BYTES) }
        });
    }

    fn read_frame(&mut self, frame: Pfn, offset: usize, bytes: &mut [u8]) {
        assert!(offset + bytes.len() <= FRAME_BYTES, "a read past the frame");
        self.with_scratch(&[frame], Access::Normal, |at| {
            // SAFETY: as for `copy_frame`; the range is inside the frame.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (at[0] + offset) as *const u8,
                    bytes.as_mut_ptr(),
                    bytes.len(),
                )
            }
        });
    }
}

/// The tags of a frame, through a Tagged scratch mapping with STG and LDG,
/// when the kernel maps Tagged ([`KernelTags::Enforced`]). Otherwise there
/// are no tags to reach: they read as zero and writes store nothing, as the
/// hardware does for memory that is not Tagged, and no tag instruction runs
/// (it would be undefined on a CPU without MTE).
impl TagOps for Sel4Machine {
    fn zero_tags(&mut self, frame: Pfn) {
        self.write_tags(frame, &[0; TAG_BYTES_PER_FRAME]);
    }

    fn copy_tags(&mut self, source: Pfn, destination: Pfn) {
        let mut tags = [0; TAG_BYTES_PER_FRAME];
        self.read_tags(source, &mut tags);
        self.write_tags(destination, &tags);
    }

    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags) {
        if self.tags != KernelTags::Enforced {
            *tags = [0; TAG_BYTES_PER_FRAME];
            return;
        }
        self.with_scratch(&[frame], Access::Tagged, |at| {
            for granule in 0..tagloan_mte::GRANULES_PER_FRAME {
                let address = (at[0] + granule * tagloan_mte::GRANULE_BYTES) as u64;
                // SAFETY: the granule is in the frame mapped Tagged at the
                // scratch window for the closure, and the kernel enabled
                // EL0 tag access (it took the Tagged mapping).
                let tag = unsafe { tagloan_mte::hw::ldg(address) };
                tagloan_mte::set_granule_tag(tags, granule, tag);
            }
        });
    }

    /// The kernel's `seL4_ARM_Page_CleanInvalidate_Data` on the frame's
    /// scratch mapping (the invocation needs a mapped frame cap): DC CIVAC
    /// over its 4 KiB by the kernel, to the point of coherency.
    fn clean_for_tags(&mut self, tag_frame: Pfn) {
        self.with_scratch(&[tag_frame], Access::Normal, |_| {
            let error = sel4::with_ipc_buffer_mut(|buffer| {
                buffer.inner_mut().seL4_ARM_Page_CleanInvalidate_Data(
                    frame_cptr(SCRATCH_SLOTS),
                    0,
                    FRAME_BYTES as u64,
                )
            });
            if let Some(error) = sel4::Error::from_sys(error) {
                panic!("seL4_ARM_Page_CleanInvalidate_Data of tag frame {tag_frame:#x}: {error:?}");
            }
        });
    }

    /// DC CIGVAC over the frame through a Tagged scratch mapping, at EL0:
    /// seL4 has no invocation for tag cache lines, and lets user threads
    /// clean by address where it is built with `AARCH64_USER_CACHE_ENABLE`
    /// (SCTLR_EL1.UCI), as Microkit's QEMU boards are. Where the kernel
    /// gives no Tagged mapping there are no tags, and nothing to clean.
    fn clean_tags(&mut self, frame: Pfn) {
        if self.tags != KernelTags::Enforced {
            return;
        }
        self.with_scratch(&[frame], Access::Tagged, |at| {
            // SAFETY: the frame is mapped Tagged at the scratch window for
            // the closure; the kernel allows EL0 cache maintenance (UCI).
            unsafe { tagloan_mte::hw::clean_invalidate_tags(at[0] as u64, FRAME_BYTES) }
        });
    }

    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags) {
        if self.tags != KernelTags::Enforced {
            return;
        }
        self.with_scratch(&[frame], Access::Tagged, |at| {
            for granule in 0..tagloan_mte::GRANULES_PER_FRAME {
                let address = (at[0] + granule * tagloan_mte::GRANULE_BYTES) as u64;
                let tag = tagloan_mte::granule_tag(tags, granule);
                // SAFETY: as for `read_tags`; the pointer's top byte is only
                // the STG's tag source, the address stays untagged.
                unsafe {
                    tagloan_mte::hw::stg_from(tagloan_mte::with_pointer_tag(address, tag), address)
                };
            }
        });
    }
}
