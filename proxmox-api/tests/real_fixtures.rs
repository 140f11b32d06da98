//! Every recorded PVE answer in `tests/fixtures/real/` (see its `manifest.json`) goes through
//! the typed call for its path, over HTTP (wiremock), exactly as a caller would get it.
//! A failure names the fixture file and the field path where decoding stopped.

mod common;

use common::*;
use pve_vps_api::api::firewall::FirewallRule;
use pve_vps_api::api::qemu_config::CreateVm;
use pve_vps_api::api::qemu_status::ShutdownOptions;
use pve_vps_api::api::rrd::{Consolidation, Timeframe};
use pve_vps_api::api::tasks::TaskFilter;
use pve_vps_api::{
    Auth, Client, Error, FirewallName, NodeName, RetryPolicy, SnapshotName, StorageId, Upid, VmId,
};
use serde_json::Value;
use std::time::Duration;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");
const UPID: &str = "UPID:node1:000FF1FD:10F9374C:630D702C:vzdump:110:root@pam:";

#[derive(Debug, serde::Deserialize)]
struct Entry {
    file: String,
    method: String,
    path: String,
    pve_version: String,
    source: String,
    notes: String,
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(format!("{DIR}/manifest.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest is an array of entries")
}

/// The template as a regex for the concrete request path below `/api2/json`.
fn template_regex(template: &str) -> String {
    let mut re = String::from("^/api2/json");
    for seg in template.split('/').skip(1) {
        re.push('/');
        if seg.starts_with('{') {
            re.push_str("[^/]+");
        } else {
            re.push_str(&regex_escape(seg));
        }
    }
    re.push('$');
    re
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

fn client(server: &MockServer) -> Client {
    Client::builder(server.uri())
        .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

fn data_of(body: &Value) -> &Value {
    body.get("data").expect("fixture carries data")
}

/// Run the typed call for `e` against a server answering `body`; check what a caller would.
async fn check(e: &Entry, body: &Value) -> Result<(), String> {
    let server = MockServer::start().await;
    Mock::given(method(e.method.as_str()))
        .and(path_regex(template_regex(&e.path)))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let c = client(&server);
    let node: NodeName = "node1".parse().unwrap();
    let vm = c.node(&node).qemu(VmId::new(100).unwrap());
    let data = data_of(body);
    let fail = |err: Error| {
        let mut msg = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    };
    let expect = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    match (e.method.as_str(), e.path.as_str()) {
        ("GET", "/version") => {
            let v = c.version().await.map_err(fail)?;
            expect(
                Some(v.release.as_str()) == data["release"].as_str(),
                "release differs",
            )
        }
        ("GET", "/nodes") => {
            let n = c.nodes().await.map_err(fail)?;
            expect(n.len() == data.as_array().map_or(0, Vec::len), "node count")
        }
        ("GET", "/cluster/resources") => {
            let r = c.cluster_resources(None).await.map_err(fail)?;
            let ids: Vec<&str> = r.iter().map(|x| x.id.as_str()).collect();
            let want: Vec<&str> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap())
                .collect();
            expect(ids == want, "resource ids differ")?;
            // Fields the model does not name (cgroup-mode, plugintype, shared ...) are kept.
            for (got, raw) in r.iter().zip(data.as_array().unwrap()) {
                for k in ["cgroup-mode", "plugintype", "shared", "content", "memhost"] {
                    if raw.get(k).is_some() && got.extra.get(k) != raw.get(k) {
                        return Err(format!("`{k}` of {} not kept in extra", got.id));
                    }
                }
            }
            Ok(())
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => {
            let s = vm.status().await.map_err(fail)?;
            expect(
                Some(s.status.as_str()) == data["status"].as_str(),
                "status differs",
            )?;
            // `template` comes as 0/1, or as "" (Perl's false) from PVE 5.
            let template = match &data["template"] {
                Value::Number(n) => n.as_u64() == Some(1),
                Value::String(v) => v == "1",
                Value::Bool(b) => *b,
                _ => false,
            };
            expect(s.template == template, "template flag differs")?;
            expect(s.pid == data["pid"].as_u64(), "pid differs")?;
            expect(s.lock.as_deref() == data["lock"].as_str(), "lock differs")?;
            for k in [
                "blockstat",
                "ballooninfo",
                "proxmox-support",
                "running-qemu",
                "ha",
            ] {
                if data.get(k).is_some() && s.extra.get(k) != data.get(k) {
                    return Err(format!("`{k}` not kept in extra"));
                }
            }
            Ok(())
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => {
            let cfg = vm.config().await.map_err(fail)?;
            let keys: Vec<&String> = cfg.raw.keys().collect();
            let mut want: Vec<&String> = data.as_object().unwrap().keys().collect();
            want.sort();
            expect(keys == want, "raw config keys differ")?;
            // PVE sends numbers either as JSON numbers or as strings, by key and version.
            let num = |k: &str| match &data[k] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            expect(cfg.memory == num("memory"), "memory differs")?;
            expect(cfg.cores == num("cores"), "cores differs")?;
            expect(cfg.name.as_deref() == data["name"].as_str(), "name differs")?;
            let nics = data
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    k.strip_prefix("net")
                        .is_some_and(|i| i.parse::<u32>().is_ok())
                })
                .count();
            expect(cfg.nets.len() == nics, "NIC count differs")?;
            if let Some(agent) = data.get("agent") {
                let raw = match agent {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let first = raw.split(',').next().unwrap_or_default();
                let on = first == "1" || first == "enabled=1";
                expect(cfg.agent == Some(on), "agent flag differs")?;
            }
            expect(
                cfg.digest.as_deref() == data["digest"].as_str(),
                "digest differs",
            )
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/rrddata") => {
            let rows = vm
                .rrddata(Timeframe::Hour, Consolidation::Average)
                .await
                .map_err(fail)?;
            expect(
                rows.len() == data.as_array().unwrap().len(),
                "row count differs",
            )?;
            expect(
                rows.first().and_then(|r| r.time) == data[0]["time"].as_i64(),
                "first time differs",
            )?;
            // Rows of a stopped VM carry no cpu/netin; a row missing a value is `None`, not 0.
            for (row, raw) in rows.iter().zip(data.as_array().unwrap()) {
                if row.cpu != raw["cpu"].as_f64() || row.netin != raw["netin"].as_f64() {
                    return Err(format!("cpu/netin of row {:?} differ", row.time));
                }
                if raw.get("memhost").is_some() && row.extra.get("memhost") != raw.get("memhost") {
                    return Err(format!("`memhost` of row {:?} not kept", row.time));
                }
            }
            Ok(())
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") => {
            let result = &data["result"];
            match vm.agent_network_interfaces().await {
                Ok(ifaces) => {
                    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
                    let want: Vec<&str> = result
                        .as_array()
                        .ok_or("typed call succeeded on an agent error")?
                        .iter()
                        .map(|i| i["name"].as_str().unwrap())
                        .collect();
                    expect(names == want, "interface names differ")
                }
                // The agent's own error object is a typed error, not a decode failure.
                Err(Error::GuestAgent { class, .. })
                    if result["error"]["class"].as_str() == Some(class.as_str()) =>
                {
                    Ok(())
                }
                Err(err) => Err(fail(err)),
            }
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status") => {
            let upid: Upid = UPID.parse().unwrap();
            let st = c.task(upid).status().await.map_err(fail)?;
            expect(
                Some(st.status.as_str()) == data["status"].as_str(),
                "status differs",
            )?;
            expect(
                st.exitstatus.as_deref() == data["exitstatus"].as_str(),
                "exitstatus differs",
            )?;
            // Tasks started with an API token name it (PVE 8+); kept, not dropped.
            expect(
                st.extra.get("tokenid") == data.get("tokenid"),
                "`tokenid` not kept in extra",
            )
        }
        ("GET", "/nodes/{node}/tasks/{upid}/log") => {
            let upid: Upid = UPID.parse().unwrap();
            let lines = c.task(upid).log(0, 50).await.map_err(fail)?;
            let want: Vec<(u64, &str)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|l| (l["n"].as_u64().unwrap(), l["t"].as_str().unwrap()))
                .collect();
            let got: Vec<(u64, &str)> = lines.iter().map(|l| (l.n, l.t.as_str())).collect();
            expect(got == want, "log lines differ")
        }
        ("GET", "/nodes/{node}/tasks") => {
            let items = c
                .node(&node)
                .tasks(&TaskFilter::new())
                .await
                .map_err(fail)?;
            let want: Vec<(&str, Option<&str>)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["upid"].as_str().unwrap(), t["status"].as_str()))
                .collect();
            let got: Vec<(&str, Option<&str>)> = items
                .iter()
                .map(|t| (t.upid.as_str(), t.status.as_deref()))
                .collect();
            expect(got == want, "task list differs")
        }
        ("GET", "/cluster/firewall/rules") => {
            let rules = c.cluster_firewall().rules().await.map_err(fail)?;
            let pos: Vec<u64> = rules.iter().map(|r| r.pos).collect();
            let want: Vec<u64> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["pos"].as_u64().unwrap())
                .collect();
            expect(pos == want, "rule positions differ")
        }
        ("GET", "/nodes/{node}/lxc/{vmid}/firewall/rules") => {
            // The client has no container calls; PVE lists guest rules of VMs and containers
            // from one handler, so the recorded answer must decode as the rules
            // `vm.firewall().rules()` returns.
            let rules: Vec<FirewallRule> = c
                .get("/nodes/node1/lxc/100/firewall/rules", &[])
                .await
                .map_err(fail)?;
            let want: Vec<(u64, &str, &str, bool, Option<&str>)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["pos"].as_u64().unwrap(),
                        r["type"].as_str().unwrap(),
                        r["action"].as_str().unwrap(),
                        r["enable"].as_u64() == Some(1),
                        r["digest"].as_str(),
                    )
                })
                .collect();
            let got: Vec<(u64, &str, &str, bool, Option<&str>)> = rules
                .iter()
                .map(|r| {
                    (
                        r.pos,
                        r.kind.as_str(),
                        r.action.as_str(),
                        r.enable,
                        r.digest.as_deref(),
                    )
                })
                .collect();
            expect(got == want, "rules differ")
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/pending") => {
            let items = vm.pending().await.map_err(fail)?;
            let want: Vec<(&str, Option<String>)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let v = i.get("value").map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    (i["key"].as_str().unwrap(), v)
                })
                .collect();
            let got: Vec<(&str, Option<String>)> = items
                .iter()
                .map(|i| (i.key.as_str(), i.value.clone()))
                .collect();
            expect(got == want, "pending keys/values differ")
        }
        ("GET", "/nodes/{node}/storage") => {
            let list = c.node(&node).storages(None).await.map_err(fail)?;
            let want: Vec<(&str, Option<u64>, Option<bool>)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["storage"].as_str().unwrap(),
                        s["avail"].as_u64(),
                        s["shared"].as_u64().map(|v| v == 1),
                    )
                })
                .collect();
            let got: Vec<(&str, Option<u64>, Option<bool>)> = list
                .iter()
                .map(|s| (s.storage.as_str(), s.avail, s.shared))
                .collect();
            expect(got == want, "storages differ")?;
            for (s, raw) in list.iter().zip(data.as_array().unwrap()) {
                if raw.get("used_fraction").is_some()
                    && s.extra.get("used_fraction") != raw.get("used_fraction")
                {
                    return Err(format!("`used_fraction` of {} not kept", s.storage));
                }
            }
            Ok(())
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot") => {
            let snaps = vm.snapshots().list().await.map_err(fail)?;
            let want: Vec<(&str, Option<i64>)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["name"].as_str().unwrap(), s["snaptime"].as_i64()))
                .collect();
            let got: Vec<(&str, Option<i64>)> = snaps
                .iter()
                .map(|s| (s.name.as_str(), s.snaptime))
                .collect();
            expect(got == want, "snapshot names/times differ")?;
            expect(
                snaps.iter().filter(|s| s.is_current()).count()
                    == want.iter().filter(|(n, _)| *n == "current").count(),
                "`current` pseudo-entry not recognised",
            )
        }
        (
            "POST",
            "/nodes/{node}/qemu"
            | "/nodes/{node}/qemu/{vmid}/status/start"
            | "/nodes/{node}/qemu/{vmid}/status/stop"
            | "/nodes/{node}/qemu/{vmid}/status/shutdown"
            | "/nodes/{node}/qemu/{vmid}/status/reboot"
            | "/nodes/{node}/qemu/{vmid}/status/reset"
            | "/nodes/{node}/qemu/{vmid}/snapshot"
            | "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback",
        )
        | ("DELETE", "/nodes/{node}/qemu/{vmid}") => {
            let snap: SnapshotName = "before".parse().unwrap();
            let last = e.path.rsplit('/').next().unwrap();
            let handle = match (e.method.as_str(), last) {
                ("DELETE", _) => vm.destroy(false, false).await,
                (_, "qemu") => {
                    c.node(&node)
                        .create_vm(&CreateVm::new(VmId::new(100).unwrap()))
                        .await
                }
                (_, "start") => vm.start().await,
                (_, "stop") => vm.stop().await,
                (_, "shutdown") => vm.shutdown(&ShutdownOptions::new()).await,
                (_, "reboot") => vm.reboot(None).await,
                (_, "reset") => vm.reset().await,
                (_, "snapshot") => vm.snapshots().create(&snap, None, false).await,
                _ => vm.snapshots().rollback(&snap, false).await,
            }
            .map_err(fail)?;
            // The UPID the caller polls is the one PVE answered, token user and all.
            expect(
                Some(handle.upid().as_str()) == data.as_str(),
                "task id differs",
            )?;
            let raw: Upid = data.as_str().unwrap().parse().map_err(fail)?;
            expect(handle.upid() == &raw, "parsed task id differs")
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/vncproxy") => {
            let p = vm.vncproxy(false).await.map_err(fail)?;
            expect(
                Some(p.port.to_string().as_str()) == data["port"].as_str()
                    || Some(p.port) == data["port"].as_u64(),
                "port differs",
            )?;
            expect(
                Some(p.user.as_str()) == data["user"].as_str(),
                "user differs",
            )?;
            expect(
                Some(p.upid.as_str()) == data["upid"].as_str(),
                "upid differs",
            )?;
            expect(
                Some(p.cert.as_str()) == data["cert"].as_str(),
                "cert differs",
            )?;
            expect(
                p.password.is_some() == data.get("password").is_some(),
                "password presence differs",
            )?;
            // The ticket is what `vncwebsocket` needs; it must reach the URL unchanged.
            let url = vm.vnc_websocket_url(&p);
            let ticket = url
                .query_pairs()
                .find(|(k, _)| k == "vncticket")
                .map(|(_, v)| v.into_owned());
            expect(
                ticket.as_deref() == data["ticket"].as_str(),
                "ticket not passed on",
            )
        }
        ("GET", "/cluster/firewall/options") => {
            let o = c.cluster_firewall().options().await.map_err(fail)?;
            expect(
                o.digest.as_deref() == data["digest"].as_str(),
                "digest differs",
            )?;
            expect(
                o.enable.is_some() == data.get("enable").is_some(),
                "enable presence differs",
            )
        }
        ("GET", "/cluster/firewall/groups") => {
            let groups = c.security_groups().list().await.map_err(fail)?;
            expect(
                groups.len() == data.as_array().unwrap().len(),
                "group count",
            )
        }
        ("GET", "/cluster/firewall/aliases") => {
            let aliases = c.cluster_firewall().aliases().await.map_err(fail)?;
            let got: Vec<(&str, &str)> = aliases
                .iter()
                .map(|a| (a.name.as_str(), a.cidr.as_str()))
                .collect();
            let want: Vec<(&str, &str)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["name"].as_str().unwrap(), a["cidr"].as_str().unwrap()))
                .collect();
            expect(got == want, "aliases differ")
        }
        ("GET", "/cluster/firewall/ipset") => {
            let sets = c.cluster_firewall().ipsets().await.map_err(fail)?;
            expect(sets.len() == data.as_array().unwrap().len(), "ipset count")
        }
        ("GET", "/cluster/firewall/ipset/{name}") => {
            let name: FirewallName = "test_ipset".parse().unwrap();
            let entries = c
                .cluster_firewall()
                .ipset_entries(&name)
                .await
                .map_err(fail)?;
            let want: Vec<(&str, bool)> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["cidr"].as_str().unwrap(),
                        e["nomatch"].as_u64() == Some(1),
                    )
                })
                .collect();
            let got: Vec<(&str, bool)> = entries
                .iter()
                .map(|e| (e.cidr.as_str(), e.nomatch))
                .collect();
            expect(got == want, "entries differ")
        }
        ("GET", "/nodes/{node}/storage/{storage}/content") => {
            let storage: StorageId = "datastore".parse().unwrap();
            let items = c
                .node(&node)
                .storage(&storage)
                .content(None, None)
                .await
                .map_err(fail)?;
            let got: Vec<&str> = items.iter().map(|i| i.volid.as_str()).collect();
            let want: Vec<&str> = data
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["volid"].as_str().unwrap())
                .collect();
            expect(got == want, "volids differ")?;
            // The owner comes as a number, or as a string on PVE 5; the format is kept.
            for (item, raw) in items.iter().zip(data.as_array().unwrap()) {
                let vmid = match &raw["vmid"] {
                    Value::Number(n) => n.as_u64(),
                    Value::String(v) => v.parse().ok(),
                    _ => None,
                };
                if item.vmid != vmid || item.format.as_deref() != raw["format"].as_str() {
                    return Err(format!("vmid/format of {} differ", item.volid));
                }
                if item.ctime != raw["ctime"].as_i64() || item.size != raw["size"].as_u64() {
                    return Err(format!("ctime/size of {} differ", item.volid));
                }
            }
            Ok(())
        }
        ("POST", "/access/ticket") => {
            // Log in with the recorded answer; the next call must carry its ticket.
            let login = Client::builder(server.uri())
                .auth(Auth::password("root", "pam", "pw").unwrap())
                .retry(RetryPolicy::none())
                .build()
                .unwrap();
            Mock::given(method("GET"))
                .and(path_regex("^/api2/json/version$"))
                .respond_with(ResponseTemplate::new(200).set_body_json(common::data(
                    serde_json::json!({"release": "x", "version": "x"}),
                )))
                .mount(&server)
                .await;
            login.version().await.map_err(fail)?;
            let reqs = server.received_requests().await.unwrap_or_default();
            let get = reqs
                .iter()
                .find(|r| r.method.as_str() == "GET")
                .ok_or("no GET sent")?;
            let cookie = get
                .headers
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            expect(
                cookie == format!("PVEAuthCookie={}", data["ticket"].as_str().unwrap()),
                "ticket not used",
            )
        }
        (m, p) => Err(format!(
            "no typed call mapped for {m} {p}: add it to this test"
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_fixture_decodes_through_its_typed_call() {
    let entries = manifest();
    let mut failures = Vec::new();
    for e in &entries {
        let text = std::fs::read_to_string(format!("{DIR}/{}", e.file))
            .unwrap_or_else(|_| panic!("{} listed but missing", e.file));
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{} is not JSON: {err}", e.file));
        let outcome = tokio::time::timeout(Duration::from_secs(10), check(e, &body))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        if let Err(why) = outcome {
            failures.push(format!(
                "{} ({} {}, PVE {}): {why}",
                e.file, e.method, e.path, e.pve_version
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} real fixtures fail:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
}

#[test]
fn manifest_lists_every_fixture_once_with_a_source() {
    let entries = manifest();
    let mut listed: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    listed.sort();
    let before = listed.len();
    listed.dedup();
    assert_eq!(before, listed.len(), "a file is listed twice");
    let mut on_disk: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "manifest.json")
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk, "manifest and directory disagree");
    for e in &entries {
        assert!(!e.source.trim().is_empty(), "{}: no source", e.file);
        assert!(!e.notes.trim().is_empty(), "{}: no notes", e.file);
        assert!(
            e.pve_version == "unknown"
                || e.pve_version
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "{}: pve_version `{}` is neither `unknown` nor like `8.2`",
            e.file,
            e.pve_version
        );
        assert!(
            matches!(e.method.as_str(), "GET" | "POST" | "PUT" | "DELETE"),
            "{}: method",
            e.file
        );
        assert!(e.path.starts_with('/'), "{}: path", e.file);
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{}", e.file)).unwrap())
                .unwrap();
        assert!(
            body.get("data").is_some(),
            "{}: not a full body {{\"data\": ...}}",
            e.file
        );
    }
}

#[test]
fn decode_failures_name_the_field_path() {
    // A recorded answer with one field made impossible: the error points at it.
    let text = std::fs::read_to_string(format!("{DIR}/cluster_resources_mixed.json")).unwrap();
    let mut body: Value = serde_json::from_str(&text).unwrap();
    body["data"][3]["maxmem"] = Value::String("lots".into());
    let bytes = serde_json::to_vec(&body).unwrap();
    let err =
        pve_vps_api::decode_response::<Vec<pve_vps_api::api::cluster::ClusterResource>>(&bytes)
            .unwrap_err();
    match &err {
        Error::Decode { field, .. } => assert_eq!(field, "data[3].maxmem"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(err.to_string().contains("data[3].maxmem"), "{err}");
}
