//! The simulator answers at least what a real PVE answers: for every recorded real response
//! (proxmox-api's `tests/fixtures/real`, listed in its `manifest.json`) whose path pve-sim
//! serves, the same request against the simulator must carry every field of the real answer
//! with a compatible JSON type (PVE types loosely: a number may come as a string, a boolean as
//! 0/1), recursing into objects and into the first element of arrays (of each `type` for
//! mixed lists such as `/cluster/resources`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Api, enc, timed};
use pve_vps_sim::{PveSim, SimConfig, VmSpec};
use reqwest::Method;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proxmox-api/tests/fixtures/real")
}

/// One manifest entry.
#[derive(Debug, Clone)]
struct Entry {
    file: String,
    method: String,
    path: String,
}

fn manifest() -> Vec<Entry> {
    let p = fixtures_dir().join("manifest.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "the recorded PVE answers are missing: cannot read {} ({e}); they are committed \
             under proxmox-api/tests/fixtures/real",
            p.display()
        )
    });
    let v: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    v.as_array()
        .expect("manifest.json is an array")
        .iter()
        .map(|e| Entry {
            file: e["file"].as_str().expect("file").to_string(),
            method: e["method"].as_str().expect("method").to_string(),
            path: e["path"].as_str().expect("path").to_string(),
        })
        .collect()
}

/// Fields a fixture has that the simulator deliberately does not produce in the state it is
/// asked about: `(fixture file or "*" for every fixture, field path, why)`.
const EXEMPT: &[(&str, &str, &str)] = &[
    (
        "*",
        "data[type=node].hastate",
        "the simulator has no HA manager, so nodes report no HA state",
    ),
    (
        "*",
        "data[type=qemu].hastate",
        "the simulator has no HA manager, so no VM is an HA resource with a state",
    ),
    (
        "qemu_status_current_pve9.2_stopped_ha.json",
        "data.ha.state",
        "the recorded VM is HA-managed; the simulator has no HA manager (ha.managed is 0)",
    ),
    (
        "*",
        "data[type=pool]",
        "the simulator has no resource pools",
    ),
    (
        "*",
        "data[type=qemu].pool",
        "the simulated VMs belong to no resource pool",
    ),
    ("*", "data[type=lxc]", "the simulator has no containers"),
    (
        "*",
        "data[type=network]",
        "the simulator has no SDN networks",
    ),
    (
        "*",
        "data[type=sdn]",
        "the simulator has no SDN zones (recorded listings show `localnetwork` per node)",
    ),
    (
        "qemu_status_current_pve5.0_stopped_template_empty.json",
        "data.template",
        "PVE 5.0 sent `template: \"\"` (Perl's false) for every VM; later releases send the key \
     only for templates (the PVE 8.0 and 9.x status fixtures of ordinary VMs have none), as the \
     simulator does",
    ),
    (
        "storage_content_pve5.0_zfs_images_vmid_string.json",
        "data[0].name",
        "the recorded listing is a ZFS pool's, whose entries carry the zvol name; the simulated \
     guest disks live on an LVM-thin storage, listed without it",
    ),
    (
        "storage_content_pve5.0_zfs_images_vmid_string.json",
        "data[0].parent",
        "the recorded ZFS pool listing carries `parent: null` for volumes not cloned from a base \
     image; the simulated LVM-thin listing has no linked clones and omits the key",
    ),
    (
        "agent_net_pve6.2_unsupported.json",
        "data.result",
        "the recorded guest agent did not support the command (PVE passed its error object \
     through with HTTP 200); the simulated agents always support it",
    ),
];

/// Objects whose keys are data (device names), not field names: their first values are
/// compared.
const DATA_KEYED: &[&str] = &["data.nics", "data.blockstat"];

/// Whether a real value and the simulator's are the same kind under PVE's loose typing.
fn compatible(real: &Value, sim: &Value) -> bool {
    let numeric = |s: &str| s.trim().parse::<f64>().is_ok();
    let boolish = |v: &Value| match v {
        Value::Bool(_) => true,
        Value::Number(n) => n.as_i64().is_some_and(|i| i == 0 || i == 1),
        Value::String(s) => s == "0" || s == "1",
        _ => false,
    };
    match (real, sim) {
        (Value::Null, _) => true,
        (Value::Bool(_), _) | (_, Value::Bool(_)) => boolish(real) && boolish(sim),
        (Value::Number(_), Value::Number(_)) => true,
        (Value::Number(_), Value::String(s)) | (Value::String(s), Value::Number(_)) => numeric(s),
        (Value::String(_), Value::String(_)) => true,
        (Value::Array(_), Value::Array(_)) => true,
        (Value::Object(_), Value::Object(_)) => true,
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Lists whose elements are told apart by their `type` (`/cluster/resources`): the first
/// element of each type is compared with the simulator's first of that type.
const TYPED_LISTS: &[(&str, &str)] = &[("/cluster/resources", "data")];

/// Check that `sim` carries every field of `real`; problems go to `errs`. `typed` names the
/// lists to pair by `type`.
fn superset(
    real: &Value,
    sim: &Value,
    path: &str,
    exempt: &[&str],
    typed: &[&str],
    errs: &mut Vec<String>,
) {
    if exempt.contains(&path) {
        return;
    }
    if !compatible(real, sim) {
        errs.push(format!(
            "{path}: real {} {} vs simulated {} {}",
            kind(real),
            short(real),
            kind(sim),
            short(sim)
        ));
        return;
    }
    match (real, sim) {
        (Value::Object(r), Value::Object(s)) if DATA_KEYED.contains(&path) => {
            if let Some((rk, rv)) = r.iter().next() {
                match s.iter().next() {
                    Some((sk, sv)) => superset(
                        rv,
                        sv,
                        &format!("{path}.{{{rk}~{sk}}}"),
                        exempt,
                        typed,
                        errs,
                    ),
                    None => errs.push(format!("{path}: the simulator's map is empty")),
                }
            }
        }
        (Value::Object(r), Value::Object(s)) => {
            for (k, rv) in r {
                let p = format!("{path}.{k}");
                if exempt.contains(&p.as_str()) {
                    continue;
                }
                match s.get(k) {
                    Some(sv) => superset(rv, sv, &p, exempt, typed, errs),
                    None => errs.push(format!("{p}: missing (real: {})", short(rv))),
                }
            }
        }
        (Value::Array(r), Value::Array(s)) => {
            if r.is_empty() {
                return;
            }
            if s.is_empty() {
                errs.push(format!("{path}: the simulator's list is empty"));
                return;
            }
            // Mixed lists pair the first element of each `type`.
            if typed.contains(&path) {
                let mut seen = Vec::new();
                for re in r {
                    let t = re["type"].as_str().unwrap_or_default();
                    if seen.contains(&t) {
                        continue;
                    }
                    seen.push(t);
                    if exempt.contains(&format!("{path}[type={t}]").as_str()) {
                        continue;
                    }
                    match s.iter().find(|se| se["type"] == t) {
                        Some(se) => {
                            superset(re, se, &format!("{path}[type={t}]"), exempt, typed, errs)
                        }
                        None => errs.push(format!("{path}: no element of type `{t}`")),
                    }
                }
            } else {
                superset(&r[0], &s[0], &format!("{path}[0]"), exempt, typed, errs);
            }
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..60])
    } else {
        s
    }
}

/// The simulator with tasks long enough to be caught running.
async fn start() -> PveSim {
    PveSim::start(
        SimConfig::for_tests().task_durations(Duration::from_millis(300), Duration::from_secs(3)),
    )
    .await
    .expect("sim starts")
}

/// Issue the fixture's request against the simulator, with demo values (and, for a config,
/// a VM built from the recorded config); `None` when the fixture needs a state the test cannot
/// set up (reported, not silently passed).
async fn simulated(
    sim: &PveSim,
    api: &Api,
    e: &Entry,
    real: &Value,
    n: u32,
) -> Result<Value, String> {
    let anon = Api::with_header(sim, None);
    let (status, body) = match (e.method.as_str(), e.path.as_str()) {
        ("POST", "/access/ticket") => {
            let (u, p) = sim.user_password().unwrap();
            anon.call(
                Method::POST,
                "/access/ticket",
                &[("username", u), ("password", p)],
            )
            .await
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => {
            // A VM with the recorded config, so the comparison is about the answer's shape.
            let vmid = 7000 + n;
            let mut spec = VmSpec::new(vmid, "pve1");
            spec.config = real["data"]
                .as_object()
                .ok_or("config fixture without an object")?
                .iter()
                .filter(|(k, _)| k.as_str() != "digest")
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect::<BTreeMap<_, _>>();
            sim.add_vm(spec).map_err(|e| e.to_string())?;
            api.call(Method::GET, &format!("/nodes/pve1/qemu/{vmid}/config"), &[])
                .await
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => {
            // A VM in the recorded state: template 9000 (with a serial console), stopped VM
            // 102, or running VM 100 (guest agent).
            let d = &real["data"];
            let (vmid, vm) = if d["template"] == 1 {
                (9000, "/nodes/pve1/qemu/9000")
            } else if d["status"] == "stopped" {
                (102, "/nodes/pve2/qemu/102")
            } else {
                (100, "/nodes/pve1/qemu/100")
            };
            // A VM recorded under a lock (a clone running into it) gets the same lock for the
            // duration of the request.
            let lock = d["lock"].as_str();
            // The recorded VM has a serial port (and a display setting when `clipboard`
            // shows): give ours the same.
            let mut form = Vec::new();
            if d.get("serial").is_some() {
                form.push(("serial0", "socket"));
            }
            if d.get("clipboard").is_some() {
                form.push(("vga", "serial0"));
            }
            if !form.is_empty() {
                api.put(&format!("{vm}/config"), &form).await;
            }
            if lock.is_some() {
                sim.set_lock(vmid, lock).map_err(|e| e.to_string())?;
            }
            let answer = api
                .call(Method::GET, &format!("{vm}/status/current"), &[])
                .await;
            if lock.is_some() {
                sim.set_lock(vmid, None).map_err(|e| e.to_string())?;
            }
            answer
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/rrddata") => {
            // A running VM's hour (VM 100) when the first recorded row has figures, else a
            // stopped one's (VM 102).
            let vm = if real["data"][0].get("cpu").is_some() {
                "/nodes/pve1/qemu/100"
            } else {
                "/nodes/pve2/qemu/102"
            };
            api.call(
                Method::GET,
                &format!("{vm}/rrddata"),
                &[("timeframe", "hour")],
            )
            .await
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/snapshot") => {
            // A stopped VM with as many snapshots as recorded: VM 105 (stopped, none).
            let want = real["data"]
                .as_array()
                .map_or(0, |a| a.len().saturating_sub(1));
            let vm = "/nodes/pve3/qemu/105";
            let have = sim.snapshot_names(105).len();
            for i in have..want {
                let t = api
                    .post(
                        &format!("{vm}/snapshot"),
                        &[("snapname", &format!("snap{i}"))],
                    )
                    .await;
                api.wait(&t).await;
            }
            api.call(Method::GET, &format!("{vm}/snapshot"), &[]).await
        }
        ("POST", "/nodes/{node}/qemu") => {
            let vmid = (7200 + n).to_string();
            api.call(
                Method::POST,
                "/nodes/pve1/qemu",
                &[("vmid", &vmid), ("name", "fixture"), ("memory", "512")],
            )
            .await
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => {
            // A stopped VM of our own.
            let vmid = 7300 + n;
            sim.add_vm(VmSpec::new(vmid, "pve1"))
                .map_err(|e| e.to_string())?;
            api.call(Method::DELETE, &format!("/nodes/pve1/qemu/{vmid}"), &[])
                .await
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/snapshot") => {
            api.call(
                Method::POST,
                "/nodes/pve2/qemu/103/snapshot",
                &[("snapname", &format!("fixture{n}"))],
            )
            .await
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback") => {
            let name = format!("fixture{n}");
            let t = api
                .post("/nodes/pve2/qemu/103/snapshot", &[("snapname", &name)])
                .await;
            api.wait(&t).await;
            api.call(
                Method::POST,
                &format!("/nodes/pve2/qemu/103/snapshot/{name}/rollback"),
                &[("start", "1")],
            )
            .await
        }
        ("POST", p) if p.starts_with("/nodes/{node}/qemu/{vmid}/status/") => {
            // Power actions on VM 103 (pve2), so the demo VMs the other fixtures read keep
            // their state; reboot and reset need it running.
            let action = p.rsplit('/').next().unwrap_or_default();
            let vm = "/nodes/pve2/qemu/103";
            if matches!(action, "reboot" | "reset") && sim.vm_status(103) != Some("running") {
                let t = api.post(&format!("{vm}/status/start"), &[]).await;
                api.wait(&t).await;
            }
            let r = api
                .call(Method::POST, &format!("{vm}/status/{action}"), &[])
                .await;
            if let Some(u) = r.1["data"].as_str() {
                api.wait(&Value::from(u)).await;
            }
            r
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status") => {
            // A running backup or a finished start, as the fixture shows.
            let running = real["data"]["status"] == "running";
            let upid = if running {
                api.post(
                    "/nodes/pve1/vzdump",
                    &[("vmid", "101"), ("storage", "backup")],
                )
                .await
            } else {
                let t = api.post("/nodes/pve2/qemu/102/status/start", &[]).await;
                api.wait(&t).await;
                t
            };
            let u = upid.as_str().unwrap().to_string();
            let node = u.split(':').nth(1).unwrap().to_string();
            api.call(
                Method::GET,
                &format!("/nodes/{node}/tasks/{}/status", enc(&u)),
                &[],
            )
            .await
        }
        ("GET", "/cluster/firewall/rules") => {
            // A rule like the recorded first one (new rules go to the top).
            let first = real["data"][0]
                .as_object()
                .ok_or("no rule in the fixture")?;
            let form: Vec<(String, String)> = first
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "pos" | "digest" | "ipversion"))
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map(str::to_string).unwrap_or(v.to_string()),
                    )
                })
                .collect();
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            api.post("/cluster/firewall/rules", &form).await;
            api.call(Method::GET, "/cluster/firewall/rules", &[]).await
        }
        ("GET", "/cluster/firewall/groups") => {
            api.post("/cluster/firewall/groups", &[("group", &format!("grp{n}"))])
                .await;
            api.call(Method::GET, "/cluster/firewall/groups", &[]).await
        }
        ("GET", "/cluster/firewall/aliases") => {
            let first = &real["data"][0];
            let name = format!("alias{n}");
            api.post(
                "/cluster/firewall/aliases",
                &[
                    ("name", &name),
                    ("cidr", first["cidr"].as_str().unwrap_or("10.0.0.0/8")),
                ],
            )
            .await;
            api.call(Method::GET, "/cluster/firewall/aliases", &[])
                .await
        }
        ("GET", "/cluster/firewall/ipset") => {
            api.post("/cluster/firewall/ipset", &[("name", &format!("set{n}"))])
                .await;
            api.call(Method::GET, "/cluster/firewall/ipset", &[]).await
        }
        ("GET", "/cluster/firewall/ipset/{name}") => {
            // An IP set holding an entry like the recorded first one.
            let first = &real["data"][0];
            let name = format!("set{n}");
            api.post("/cluster/firewall/ipset", &[("name", &name)])
                .await;
            let mut form = vec![("cidr", first["cidr"].as_str().unwrap_or("192.0.2.1"))];
            if let Some(c) = first["comment"].as_str() {
                form.push(("comment", c));
            }
            api.post(&format!("/cluster/firewall/ipset/{name}"), &form)
                .await;
            api.call(Method::GET, &format!("/cluster/firewall/ipset/{name}"), &[])
                .await
        }
        ("GET", "/nodes/{node}/storage/{storage}/content") => {
            // The demo storage holding what the fixture lists first: backups on `backup`,
            // guest disks on `local-lvm`, ISO images on `local` (a recorded container
            // template is compared with an ISO entry: the simulator keeps no templates,
            // and both kinds of file carry the same fields).
            let (storage, content) = match real["data"][0]["content"].as_str() {
                Some("images" | "rootdir") => ("local-lvm", "images"),
                Some("iso" | "vztmpl") => ("local", "iso"),
                _ => ("backup", "backup"),
            };
            api.call(
                Method::GET,
                &format!("/nodes/pve1/storage/{storage}/content"),
                &[("content", content)],
            )
            .await
        }
        ("GET", "/nodes/{node}/tasks/{upid}/log") => {
            let t = api
                .post("/nodes/pve1/qemu/100/snapshot", &[("snapname", "logged")])
                .await;
            api.wait(&t).await;
            let u = t.as_str().unwrap();
            api.call(
                Method::GET,
                &format!("/nodes/pve1/tasks/{}/log", enc(u)),
                &[],
            )
            .await
        }
        (m, p) => {
            // Everything else: VM 100 (running, guest agent) on pve1.
            let path = p.replace("{node}", "pve1").replace("{vmid}", "100");
            if path.contains('{') {
                return Err(format!("no demo value for a parameter of {p}"));
            }
            let method = Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())?;
            api.call(method, &path, &[]).await
        }
    };
    if status != 200 {
        return Err(format!("answered {status}: {body}"));
    }
    Ok(body)
}

#[tokio::test]
async fn every_served_real_answer_is_a_subset_of_the_simulators() {
    timed(async {
        let entries = manifest();
        assert!(
            !entries.is_empty(),
            "the manifest lists no recorded answers"
        );
        let served = pve_vps_sim::routes();
        let sim = start().await;
        let api = Api::token(&sim);
        let mut checked = 0;
        let mut not_served = Vec::new();
        let mut errs = Vec::new();
        for (n, e) in entries.iter().enumerate() {
            if !served.iter().any(|(m, p)| *m == e.method && *p == e.path) {
                not_served.push(format!("{} {} ({})", e.method, e.path, e.file));
                continue;
            }
            let file = fixtures_dir().join(&e.file);
            let real: Value = serde_json::from_str(
                &std::fs::read_to_string(&file)
                    .unwrap_or_else(|err| panic!("{}: {err}", file.display())),
            )
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
            let exempt: Vec<&str> = EXEMPT
                .iter()
                .filter(|(f, _, _)| *f == e.file || *f == "*")
                .map(|(_, p, _)| *p)
                .collect();
            match simulated(&sim, &api, e, &real, n as u32).await {
                Ok(body) => {
                    let mut local = Vec::new();
                    let typed: Vec<&str> = TYPED_LISTS
                        .iter()
                        .filter(|(p, _)| *p == e.path)
                        .map(|(_, j)| *j)
                        .collect();
                    superset(
                        &real["data"],
                        &body["data"],
                        "data",
                        &exempt,
                        &typed,
                        &mut local,
                    );
                    errs.extend(
                        local
                            .into_iter()
                            .map(|m| format!("{} {}: {m}", e.method, e.file)),
                    );
                    checked += 1;
                }
                Err(why) => errs.push(format!("{} {}: {why}", e.method, e.file)),
            }
        }
        if !not_served.is_empty() {
            eprintln!("recorded answers for paths pve-sim does not serve: {not_served:#?}");
        }
        assert!(checked > 0, "no recorded answer was for a served path");
        assert!(
            errs.is_empty(),
            "the simulator lacks fields or types of real PVE answers:\n{}",
            errs.join("\n")
        );
        sim.shutdown().await;
    })
    .await;
}

#[test]
fn loose_typing_rules() {
    use serde_json::json;
    assert!(compatible(&json!(1), &json!("1")));
    assert!(compatible(&json!("4"), &json!(4)));
    assert!(!compatible(&json!("four"), &json!(4)));
    assert!(compatible(&json!(true), &json!(1)));
    assert!(compatible(&json!(0), &json!(false)));
    assert!(!compatible(&json!(true), &json!(2)));
    assert!(!compatible(&json!({}), &json!([])));
    let mut errs = Vec::new();
    superset(
        &json!({"a": 1, "b": {"c": "x"}, "l": [{"type": "node", "n": 1}, {"type": "qemu", "q": 1}]}),
        &json!({"a": "1", "b": {"c": "y", "d": 2}, "l": [{"type": "qemu", "q": 2}, {"type": "node"}]}),
        "",
        &[],
        &[".l"],
        &mut errs,
    );
    assert_eq!(errs, vec![".l[type=node].n: missing (real: 1)".to_string()]);
}
