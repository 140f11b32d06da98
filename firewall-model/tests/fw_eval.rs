//! Runs the `fw-eval` example's logic over the sample directory `tests/data/node1`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pve_vps_firewall::cli::{NodeFiles, eval_lines, load_node};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/node1")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap()
}

#[test]
fn sample_directory_gives_the_expected_verdicts() {
    let mut guests = BTreeMap::new();
    guests.insert(100, read("100.fw"));
    guests.insert(101, read("101.fw"));
    let files = NodeFiles {
        cluster: Some(read("cluster.fw")),
        host: Some(read("host.fw")),
        guests,
        vnets: BTreeMap::new(),
        topology: read("topology.json"),
    };
    let (node, warnings) = load_node(&files).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].file.as_str(), warnings[0].error.line),
        ("100.fw", 17)
    );
    let got = eval_lines(&node, &read("packets.jsonl"));
    let want: Vec<String> = read("expected.jsonl").lines().map(String::from).collect();
    assert_eq!(got, want);
    // The compiled evaluator gives the same verdicts on the same flows.
    let compiled = pve_vps_firewall::CompiledNode::compile(&node);
    for line in read("packets.jsonl").lines() {
        let Ok(fp) = pve_vps_firewall::FlowPacket::from_json(line) else {
            continue;
        };
        let (Ok(r), Ok(c)) = (node.evaluate(&fp), compiled.evaluate(&fp)) else {
            continue;
        };
        assert_eq!(r.verdict, c.verdict, "{line}");
    }
}
