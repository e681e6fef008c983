//! The rig of `tagloan bench` (`tools/tagloan/src/bench/rig.rs`), shared
//! with the criterion suite in `benches/`: the same machines, tables,
//! layouts and frozen pool states, so both measure the same thing.
#[path = "../../tools/tagloan/src/bench/rig.rs"]
pub mod rig;
