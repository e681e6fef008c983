//! The memory server's frames on seL4: the capabilities tagloan's initial
//! task hands it (`tools/sel4/initialiser`, `sel4/patches/`).
//!
//! Where they are, in the server's Microkit CNode: one Untyped per region
//! it has a `<setvar region_paddr>` for (the pool's regions and one for its
//! kernel objects), in address order, from slot
//! [`POOL_UNTYPED_FIRST`], and a copy of its root CNode cap at
//! [`ROOT_CNODE_COPY`], the destination a retype into its own CSpace needs.
//! Its VSpace cap is `<cap_vspace slot="1">` of itself, root slot 1.
//!
//! The pool's `Kernel` over these caps is [`crate::machine::Sel4Machine`].

/// The Microkit CNode slot of the first pool Untyped (the initial task's
/// `POOL_FIRST_SLOT`).
pub const POOL_UNTYPED_FIRST: u64 = 507;
/// The slot of the copy of the server's root CNode cap.
pub const ROOT_CNODE_COPY: u64 = 511;
/// The first slot of the Microkit CNode free for the server's own objects:
/// Microkit 2.3 uses slots below 458 (`BASE_USER_CAPS`), and the hand-over
/// takes 507 and up; 458 to 506 are the server's.
pub const FIRST_FREE_SLOT: u64 = 458;
