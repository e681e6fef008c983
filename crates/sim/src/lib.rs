//! The deterministic simulator of the seL4/Microkit semantics tagloan relies
//! on (DESIGN §7).
//!
//! - [`sdf`]: loads `system.xml` with Microkit's rules, errors located.
//! - [`system`]: binds the SDF, the platform device tree and the client table.
//! - [`kernel`]: PDs, priorities, PPCs, notifications, fault delivery, fault
//!   injection and the [`tagloan_microkit::Env`] each PD runs against.
//! - [`memory`]: sparse RAM, per-client VSpaces with page attributes, and MTE
//!   tags stored *physically inside the tag storage frames* of that RAM, so a
//!   server bug that lends a block still holding tags corrupts data and tags
//!   exactly as hardware would.
//! - [`trace`]: the structured event log and its summary.
//!
//! One seed drives every choice; the same seed gives a byte-identical trace.

pub mod kernel;
pub mod memory;
mod rng;
pub mod sdf;
pub mod system;
pub mod trace;

pub use kernel::{Audit, Config, Constructor, Injection, Registry, Sim, SimError};
pub use memory::{AccessFault, Ram, SimMachine};
pub use rng::Rng;
pub use sdf::{Sdf, SdfError};
pub use system::{System, SystemError};
pub use trace::{CallCounts, Event, Summary, Trace};
