//! The memory server's frames on seL4: the capabilities tagloan's initial
//! task hands it (`tools/sel4/initialiser`, `sel4/patches/`), and the first
//! use of them.
//!
//! Where they are, in the server's Microkit CNode: one Untyped per pool
//! region (in the order of its `<setvar region_paddr>`), from slot
//! [`POOL_UNTYPED_FIRST`], and a copy of its root CNode cap at
//! [`ROOT_CNODE_COPY`], the destination a retype into its own CSpace needs.
//! Its VSpace cap is `<cap_vspace slot="1">` of itself, root slot 1.
//!
//! This module so far proves the route end to end ([`probe_pool`]); the
//! pool's `Kernel` over these caps is the next step.

use sel4::{CapRights, ObjectBlueprint, ObjectBlueprintArch, VmAttributes};

/// The Microkit CNode slot of the first pool Untyped (the initial task's
/// `POOL_FIRST_SLOT`).
pub const POOL_UNTYPED_FIRST: u64 = 507;
/// The slot of the copy of the server's root CNode cap.
pub const ROOT_CNODE_COPY: u64 = 511;
/// The first slot of the Microkit CNode free for the server's own objects:
/// Microkit 2.3 uses slots below 458 (`BASE_USER_CAPS`).
pub const FIRST_FREE_SLOT: u64 = 458;
/// The server's own VSpace: root CNode slot 1 (`<cap_vspace slot="1">`).
const OWN_VSPACE_ROOT_SLOT: u64 = 1;
/// Bits of a PD's root CNode (`PD_ROOT_CAP_BITS`).
const ROOT_CNODE_BITS: usize = 6;
/// Translation tables a map may need below the VSpace root.
const MAX_TABLES: usize = 3;

/// A root CNode slot as a CPtr (libmicrokit's
/// `microkit_cspace_root_slot_to_cptr`).
const fn root_slot_cptr(slot: u64) -> u64 {
    slot << (64 - ROOT_CNODE_BITS)
}

/// What [`probe_pool`] did.
#[derive(Clone, Copy, Debug)]
pub struct PoolProbe {
    /// The physical address of the frame retyped from the first Untyped.
    pub paddr: usize,
    /// Translation tables retyped to map it.
    pub tables: usize,
    /// Bytes written through the mapping and read back equal.
    pub verified: usize,
}

/// Which step of the probe failed, and seL4's answer.
#[derive(Clone, Copy, Debug)]
pub struct ProbeError {
    pub step: &'static str,
    pub error: sel4::Error,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {:?}", self.step, self.error)
    }
}

fn step<T>(step: &'static str, result: sel4::Result<T>) -> Result<T, ProbeError> {
    result.map_err(|error| ProbeError { step, error })
}

/// Retypes one 4 KiB frame (and the translation tables it needs) from the
/// first pool Untyped into the server's own CSpace, maps it at `vaddr` in
/// the server's own VSpace, writes a pattern and reads it back, then
/// revokes the Untyped so the pool is untouched.
pub fn probe_pool(vaddr: usize) -> Result<PoolProbe, ProbeError> {
    let root = sel4::cap::CNode::from_bits(ROOT_CNODE_COPY);
    // The Microkit CNode, seen from the root CNode: its slot 0.
    let microkit_cnode = root.absolute_cptr_from_bits_with_depth(0, ROOT_CNODE_BITS);
    let untyped = sel4::cap::Untyped::from_bits(POOL_UNTYPED_FIRST);
    let vspace = sel4::cap::VSpace::from_bits(root_slot_cptr(OWN_VSPACE_ROOT_SLOT));
    let frame_slot = FIRST_FREE_SLOT;
    step(
        "retype a frame from the pool Untyped",
        untyped.untyped_retype(
            &ObjectBlueprint::Arch(ObjectBlueprintArch::SmallPage),
            &microkit_cnode,
            frame_slot as usize,
            1,
        ),
    )?;
    let frame = sel4::cap::Granule::from_bits(frame_slot);
    let mut tables = 0;
    loop {
        match frame.frame_map(
            vspace,
            vaddr,
            CapRights::read_write(),
            VmAttributes::DEFAULT,
        ) {
            Ok(()) => break,
            // No table covers `vaddr` yet at some level: make one, map it,
            // and try again.
            Err(sel4::Error::FailedLookup) if tables < MAX_TABLES => {
                let slot = frame_slot + 1 + tables as u64;
                step(
                    "retype a translation table",
                    untyped.untyped_retype(
                        &ObjectBlueprint::Arch(ObjectBlueprintArch::PT),
                        &microkit_cnode,
                        slot as usize,
                        1,
                    ),
                )?;
                step(
                    "map the translation table",
                    sel4::cap::PT::from_bits(slot).pt_map(vspace, vaddr, VmAttributes::DEFAULT),
                )?;
                tables += 1;
            }
            Err(error) => {
                return Err(ProbeError {
                    step: "map the frame",
                    error,
                })
            }
        }
    }
    let paddr = step("read the frame's address", frame.frame_get_address())?;
    let mut verified = 0;
    for i in 0..512usize {
        let word = (vaddr + i * 8) as *mut u64;
        let pattern = 0x7a91_0000_0000_0000 ^ (paddr + i * 8) as u64;
        // SAFETY: the frame was just mapped read-write at `vaddr` in this
        // PD's own VSpace, and nothing else uses that range.
        let back = unsafe {
            word.write_volatile(pattern);
            word.read_volatile()
        };
        if back == pattern {
            verified += 8;
        }
    }
    step("unmap the frame", frame.frame_unmap())?;
    // Deleting the frame and the tables (the Untyped's children) resets it.
    step(
        "revoke the pool Untyped",
        root.absolute_cptr_from_bits_with_depth(POOL_UNTYPED_FIRST, 64)
            .revoke(),
    )?;
    Ok(PoolProbe {
        paddr,
        tables,
        verified,
    })
}
