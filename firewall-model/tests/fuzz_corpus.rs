//! Runs each fuzz target's body over its committed corpus (`fuzz/corpus/<target>/`), so CI
//! exercises the targets without a fuzzer.

use std::path::PathBuf;

use pve_vps_firewall::fuzzing;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

#[test]
fn parse_roundtrip_corpus() {
    for (name, data) in corpus("parse_roundtrip") {
        if let Err(e) = fuzzing::parse_roundtrip(&data) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn differential_corpus() {
    for (name, data) in corpus("differential") {
        if let Err(e) = fuzzing::differential(&data) {
            panic!("{name}: {e}");
        }
    }
}
