//! The platform parser on arbitrary blobs: a typed error or a layout, never
//! a panic; a layout it accepts has memory in it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mte in [true, false] {
        if let Ok(platform) = tagloan_platform::parse(data, mte) {
            assert!(platform.layout.frames_total() > 0);
        }
    }
});
