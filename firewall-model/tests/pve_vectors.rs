//! Test vectors derived from pve-firewall's and proxmox-firewall's source and documentation
//! (`tests/data/pve/*.json`, each group names its source in `source`): configuration files plus
//! packets with the verdict and explanation PVE's generated ruleset gives. The reference and the
//! compiled evaluator must both give them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pve_vps_firewall::cli::{NodeFiles, load_node};
use pve_vps_firewall::{CompiledNode, FlowPacket};
use serde_json::Value;

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

#[test]
fn every_vector_gives_pves_verdict_in_both_evaluators() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pve");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "{paths:?}");
    let mut count = 0;
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let group: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            !text(&group, "source").is_empty(),
            "{name}: every group names its source"
        );
        let map = |key: &str| -> BTreeMap<String, String> {
            group[key]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let files = NodeFiles {
            cluster: Some(text(&group, "cluster")),
            host: Some(text(&group, "host")),
            guests: map("guests")
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap(), v))
                .collect(),
            vnets: map("vnets"),
            topology: group["topology"].to_string(),
        };
        let (node, warnings) = load_node(&files).unwrap();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        let compiled = CompiledNode::compile(&node);
        for vector in group["vectors"].as_array().unwrap() {
            let packet = vector["packet"].to_string();
            let fp = FlowPacket::from_json(&packet).unwrap();
            let r = node.evaluate(&fp).unwrap();
            let c = compiled.evaluate(&fp).unwrap();
            let want = (text(vector, "verdict"), text(vector, "why"));
            assert_eq!(
                (r.verdict.to_string(), r.explain()),
                want,
                "{name}: reference on {packet}"
            );
            assert_eq!(
                (c.verdict.to_string(), c.explain()),
                want,
                "{name}: compiled on {packet}"
            );
            count += 1;
        }
    }
    assert!(count >= 80, "{count} vectors");
}
