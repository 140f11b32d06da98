//! The `.fw` parser never panics, and what it accepts prints and parses back to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = pve_vps_firewall::fuzzing::parse_roundtrip(data) {
        panic!("{e}");
    }
});
