//! The deterministic simulator of the seL4/Microkit semantics tagloan relies
//! on (DESIGN §7).
//!
//! - [`sdf`] (`tagloan-sdf`): loads `system.xml` with Microkit's rules,
//!   errors located.
//! - [`system`]: binds the SDF, the platform device tree and the client table.
//! - [`hosted`]: how a PD's handler is hosted and observed, and the machine
//!   the memory server is built over.
//! - [`kernel`]: PDs, priorities, PPCs, notifications, fault delivery, fault
//!   injection and the [`tagloan_microkit::Env`] each PD runs against.
//! - memory: `tagloan-ram`'s [`SimMachine`]: sparse RAM, per-client VSpaces
//!   with page attributes, and MTE tags stored *physically inside the tag
//!   storage frames* of that RAM, so a server bug that lends a block still
//!   holding tags corrupts data and tags exactly as hardware would.
//! - [`trace`]: the structured event log and its summary.
//!
//! One seed drives every choice; the same seed gives a byte-identical trace.

pub mod hosted;
pub mod kernel;
mod rng;
/// The SDF model lives in its own crate; re-exported under its old path.
pub use tagloan_sdf as sdf;
pub mod system;
pub mod trace;

pub use hosted::{AuditSink, FrameView, Hosted, Observer, Pd, SharedMachine};
pub use kernel::{Audit, Build, Config, Constructor, Injection, Registry, Sim, SimError};
pub use rng::Rng;
pub use sdf::{Sdf, SdfError};
pub use system::{System, SystemError};
pub use tagloan_ram::{AccessFault, MachineEvent, Ram, SimMachine};
pub use trace::{CallCounts, Event, Summary, Trace};
