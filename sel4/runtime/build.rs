//! Whether the kernel this image is built for gives user threads MTE: our
//! kernel patch's `KernelArmUserMTE` (`sel4/patches/sel4-user-mte.patch`),
//! read from the kernel configuration in the SDK's headers
//! (`SEL4_INCLUDE_DIRS`, as rust-sel4's `sel4-config` reads it). It sets
//! `cfg(tagloan_user_mte)`, under which the runtime names
//! `seL4_ARM_Tagged`, a constant only the patched headers have. A name the
//! stock kernel configuration lacks cannot be asked of `sel4_cfg!`, which
//! refuses unknown keys, hence this script.
use std::env;
use std::fs;
use std::path::Path;

const KEY: &str = "\"ARM_USER_MTE\"";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tagloan_user_mte)");
    println!("cargo::rerun-if-env-changed=SEL4_INCLUDE_DIRS");
    let Ok(dirs) = env::var("SEL4_INCLUDE_DIRS") else {
        return;
    };
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let config = Path::new(dir).join("kernel/gen_config.json");
        println!("cargo::rerun-if-changed={}", config.display());
        let Ok(text) = fs::read_to_string(&config) else {
            continue;
        };
        // One `"KEY": value,` per line, as the kernel's build writes it.
        let on = text.lines().any(|line| {
            let line = line.trim().trim_end_matches(',');
            line.strip_prefix(KEY)
                .and_then(|rest| rest.trim_start().strip_prefix(':'))
                .is_some_and(|value| value.trim() == "true")
        });
        if on {
            println!("cargo::rustc-cfg=tagloan_user_mte");
        }
        return;
    }
}
