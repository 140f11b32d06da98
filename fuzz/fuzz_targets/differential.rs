//! The compiled evaluator agrees with the reference evaluator on configs and packets built from
//! the input bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = pve_vps_firewall::fuzzing::differential(data) {
        panic!("{e}");
    }
});
