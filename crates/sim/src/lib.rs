//! The deterministic simulator of the seL4/Microkit semantics tagloan relies on.
//!
//! Today this crate holds the simulated memory system: sparse RAM, per-client
//! VSpaces with page attributes, and MTE allocation tags stored *physically
//! inside the tag storage frames* of that RAM (DESIGN §2 arithmetic). A
//! server bug that lends a block still holding tags therefore corrupts data
//! and tags exactly as hardware would. The PD runtime, SDF loading and fault
//! delivery are not built yet (see the README).

pub mod memory;

pub use memory::{AccessFault, Ram, SimMachine};
