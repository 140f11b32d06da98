//! The `pve-sim` binary starts, prints its URL, fingerprint and token, and serves them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_serves_the_demo_scenario() {
    common::timed(async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pve-sim"))
            .args(["--port", "0", "--seed", "demo", "--task-ms", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut url = String::new();
        let mut fingerprint = String::new();
        let mut token = String::new();
        // The binary prints its banner and ends it with the login line.
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with("login: ") {
                break;
            }
            if let Some(u) = line.strip_prefix("pve-sim listening on ") {
                url = u.to_string();
            } else if let Some(f) = line.strip_prefix("certificate fingerprint (SHA-256): ") {
                fingerprint = f.to_string();
            } else if let Some(t) = line.strip_prefix("API token: Authorization: ") {
                token = t.to_string();
            }
        }
        let client = common::http_client(&fingerprint);
        let body: serde_json::Value = client
            .get(format!("{url}/cluster/resources?type=vm"))
            .header("Authorization", token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let vmids: Vec<u64> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["vmid"].as_u64().unwrap())
            .collect();
        assert!(vmids.contains(&9000) && vmids.contains(&100));
        child.kill().expect("kill");
        let _ = child.wait();
    })
    .await;
}
