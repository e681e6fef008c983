//! The memory server's request handler over the whole simulated system:
//! every client PD of `system.xml` plays its records of the input (requests
//! well formed or not, from its own badge, and loads and stores in its
//! window; see `tagloan_scenarios::Scripted`). Whatever the input, the
//! server's invariant checks (after every call) find nothing, no client is
//! resumed on a fault nothing fixed, a stopped client holds nothing, and
//! every data frame is free, the server's or a client's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tagloan_scenarios::{check_scripted, run_script, Options};

fuzz_target!(|data: &[u8]| {
    let options = Options {
        // Bounds a run whatever the script (restarts replay it).
        max_steps: 400_000,
        ..Options::default()
    };
    let report = run_script(data, &options).expect("the repo's system.xml loads (make platforms)");
    if let Err(why) = check_scripted(&report) {
        panic!("{why}");
    }
});
