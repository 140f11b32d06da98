//! Every served route exists in the official schema with the same method, and real answers have
//! the shapes the schema declares (required properties present, types compatible).

mod common;

use std::collections::HashMap;

use common::{Api, enc, timed};
use serde_json::Value;

const SCHEMA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../schema/pve-api.json"
));

fn schema() -> HashMap<(String, String), Value> {
    let v: Value = serde_json::from_str(SCHEMA).expect("schema parses");
    v["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                (
                    e["method"].as_str().unwrap().to_string(),
                    e["path"].as_str().unwrap().to_string(),
                ),
                e.clone(),
            )
        })
        .collect()
}

#[test]
fn every_route_is_in_the_schema() {
    let s = schema();
    let mut missing = Vec::new();
    for (m, p) in pve_vps_sim::routes() {
        if !s.contains_key(&(m.to_string(), p.to_string())) {
            missing.push(format!("{m} {p}"));
        }
    }
    assert!(missing.is_empty(), "routes not in schema: {missing:?}");
    assert!(pve_vps_sim::routes().len() > 80);
}

fn optional(v: &Value) -> bool {
    matches!(v.get("optional"), Some(Value::Number(n)) if n.as_u64() == Some(1))
        || v.get("optional") == Some(&Value::Bool(true))
}

/// Check `value` against a schema `returns` fragment; collect mismatches.
fn check(schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
    let ty = schema.get("type").and_then(Value::as_str);
    match ty {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                errs.push(format!("{at}: expected object, got {value}"));
                return;
            };
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    match obj.get(k) {
                        None if !optional(ps) => {
                            errs.push(format!("{at}.{k}: required property missing"))
                        }
                        None => {}
                        Some(v) => check(ps, v, &format!("{at}.{k}"), errs),
                    }
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                errs.push(format!("{at}: expected array, got {value}"));
                return;
            };
            if let Some(is) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check(is, it, &format!("{at}[{i}]"), errs);
                }
            }
        }
        Some("string") => {
            if let Some(s) = value.as_str() {
                if let Some(en) = schema.get("enum").and_then(Value::as_array)
                    && !en.iter().any(|e| e.as_str() == Some(s))
                {
                    errs.push(format!("{at}: `{s}` not in enum {en:?}"));
                }
            } else {
                errs.push(format!("{at}: expected string, got {value}"));
            }
        }
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            errs.push(format!("{at}: expected integer, got {value}"));
        }
        Some("number") if !value.is_number() => {
            errs.push(format!("{at}: expected number, got {value}"));
        }
        // PVE sends booleans as 0/1.
        Some("boolean") => {
            let ok = value.is_boolean() || value.as_u64().is_some_and(|n| n <= 1);
            if !ok {
                errs.push(format!("{at}: expected boolean, got {value}"));
            }
        }
        Some("null") if !value.is_null() => {
            errs.push(format!("{at}: expected null, got {value}"));
        }
        _ => {}
    }
}

#[tokio::test]
async fn sampled_answers_match_the_schema() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let s = schema();
        let upid = api
            .post(
                "/nodes/pve1/vzdump",
                &[("vmid", "101"), ("storage", "backup")],
            )
            .await;
        let upid_s = upid.as_str().unwrap().to_string();
        api.wait(&upid).await;
        let backup = sim.backup_volids(101).pop().unwrap();
        let vnc = "/nodes/pve1/qemu/100/vncproxy";
        // (method, schema path, concrete path, args)
        type Sample<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>);
        let samples: Vec<Sample<'_>> = vec![
            ("GET", "/version", "/version".into(), vec![]),
            ("GET", "/nodes", "/nodes".into(), vec![]),
            (
                "GET",
                "/nodes/{node}/status",
                "/nodes/pve1/status".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/resources",
                "/cluster/resources".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/resources",
                "/cluster/resources".into(),
                vec![("type", "vm")],
            ),
            ("GET", "/cluster/status", "/cluster/status".into(), vec![]),
            (
                "GET",
                "/nodes/{node}/qemu",
                "/nodes/pve1/qemu".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/status/current",
                "/nodes/pve1/qemu/100/status/current".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/status/current",
                "/nodes/pve2/qemu/102/status/current".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/config",
                "/nodes/pve1/qemu/100/config".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/pending",
                "/nodes/pve1/qemu/100/pending".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/snapshot",
                "/nodes/pve1/qemu/100/snapshot".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
                "/nodes/pve1/qemu/100/snapshot/before-upgrade/config".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/rrddata",
                "/nodes/pve1/qemu/100/rrddata".into(),
                vec![("timeframe", "hour"), ("cf", "AVERAGE")],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/cloudinit",
                "/nodes/pve1/qemu/100/cloudinit".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/cloudinit/dump",
                "/nodes/pve1/qemu/100/cloudinit/dump".into(),
                vec![("type", "user")],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
                "/nodes/pve1/qemu/100/agent/network-get-interfaces".into(),
                vec![],
            ),
            (
                "POST",
                "/nodes/{node}/qemu/{vmid}/agent/ping",
                "/nodes/pve1/qemu/100/agent/ping".into(),
                vec![],
            ),
            (
                "POST",
                "/nodes/{node}/qemu/{vmid}/vncproxy",
                vnc.into(),
                vec![("websocket", "1")],
            ),
            (
                "GET",
                "/nodes/{node}/storage",
                "/nodes/pve1/storage".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/storage/{storage}/status",
                "/nodes/pve1/storage/backup/status".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/storage/{storage}/content",
                "/nodes/pve1/storage/backup/content".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/storage/{storage}/content",
                "/nodes/pve1/storage/local/content".into(),
                vec![("content", "iso")],
            ),
            (
                "GET",
                "/nodes/{node}/storage/{storage}/content",
                "/nodes/pve1/storage/local-lvm/content".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/storage/{storage}/content/{volume}",
                format!("/nodes/pve1/storage/backup/content/{}", enc(&backup)),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/tasks",
                "/nodes/pve1/tasks".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/tasks/{upid}/status",
                format!("/nodes/pve1/tasks/{}/status", enc(&upid_s)),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/tasks/{upid}/log",
                format!("/nodes/pve1/tasks/{}/log", enc(&upid_s)),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/options",
                "/cluster/firewall/options".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/rules",
                "/cluster/firewall/rules".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/rules/{pos}",
                "/cluster/firewall/rules/0".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/ipset",
                "/cluster/firewall/ipset".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/ipset/{name}",
                "/cluster/firewall/ipset/management".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/aliases",
                "/cluster/firewall/aliases".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/firewall/options",
                "/nodes/pve1/qemu/100/firewall/options".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/firewall/rules",
                "/nodes/pve1/qemu/100/firewall/rules".into(),
                vec![],
            ),
            (
                "GET",
                "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}",
                "/nodes/pve1/qemu/100/firewall/ipset/ipfilter-net0".into(),
                vec![],
            ),
            (
                "PUT",
                "/nodes/{node}/qemu/{vmid}/config",
                "/nodes/pve2/qemu/102/config".into(),
                vec![("description", "x")],
            ),
            (
                "POST",
                "/nodes/{node}/qemu/{vmid}/snapshot",
                "/nodes/pve2/qemu/102/snapshot".into(),
                vec![("snapname", "fidelity")],
            ),
            // security groups: every write route, in order
            (
                "POST",
                "/cluster/firewall/groups",
                "/cluster/firewall/groups".into(),
                vec![("group", "fidelity"), ("comment", "schema")],
            ),
            (
                "POST",
                "/cluster/firewall/groups/{group}",
                "/cluster/firewall/groups/fidelity".into(),
                vec![
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("proto", "tcp"),
                    ("dport", "22"),
                ],
            ),
            (
                "GET",
                "/cluster/firewall/groups",
                "/cluster/firewall/groups".into(),
                vec![],
            ),
            (
                "GET",
                "/cluster/firewall/groups/{group}/{pos}",
                "/cluster/firewall/groups/fidelity/0".into(),
                vec![],
            ),
            (
                "PUT",
                "/cluster/firewall/groups/{group}/{pos}",
                "/cluster/firewall/groups/fidelity/0".into(),
                vec![("enable", "1"), ("comment", "ssh")],
            ),
            (
                "DELETE",
                "/cluster/firewall/groups/{group}/{pos}",
                "/cluster/firewall/groups/fidelity/0".into(),
                vec![],
            ),
            (
                "DELETE",
                "/cluster/firewall/groups/{group}",
                "/cluster/firewall/groups/fidelity".into(),
                vec![],
            ),
            (
                "POST",
                "/nodes/{node}/qemu/{vmid}/status/start",
                "/nodes/pve1/qemu/9000/status/start".into(),
                vec![],
            ),
        ];
        let mut errs = Vec::new();
        for (m, schema_path, path, args) in &samples {
            let ep = s
                .get(&(m.to_string(), schema_path.to_string()))
                .unwrap_or_else(|| panic!("{m} {schema_path} in schema"));
            let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
            let (status, body) = api.call(method, path, args).await;
            if *schema_path == "/nodes/{node}/qemu/{vmid}/status/start" {
                // like PVE, a template refuses to start inside the qmstart worker
                assert_eq!(status, 200, "{body}");
                assert_eq!(
                    api.wait(&body["data"]).await,
                    "you can't start a vm if it's a template"
                );
                continue;
            }
            assert_eq!(status, 200, "{m} {path}: {body}");
            check(
                &ep["returns"],
                &body["data"],
                &format!("{m} {path}"),
                &mut errs,
            );
        }
        assert!(errs.is_empty(), "schema mismatches:\n{}", errs.join("\n"));
        sim.shutdown().await;
    })
    .await;
}

/// Walk every GET route of the route table with real parameters and check each answer against
/// the schema's `returns`.
#[tokio::test]
async fn every_get_route_answers_in_schema_shape() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let s = schema();
        let upid = api
            .post(
                "/nodes/pve1/vzdump",
                &[("vmid", "100"), ("storage", "backup")],
            )
            .await;
        api.wait(&upid).await;
        let backup = sim.backup_volids(100).pop().unwrap();
        api.post(
            "/cluster/firewall/ipset/management",
            &[("cidr", "203.0.113.0/24")],
        )
        .await;
        api.post(
            "/nodes/pve1/qemu/100/firewall/aliases",
            &[("name", "gw"), ("cidr", "203.0.113.1")],
        )
        .await;
        api.post(
            "/cluster/firewall/groups",
            &[("group", "webserver"), ("comment", "http")],
        )
        .await;
        api.post(
            "/cluster/firewall/groups/webserver",
            &[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "80"),
            ],
        )
        .await;
        let mut errs = Vec::new();
        let mut walked = 0;
        let mut walked_groups = 0;
        for (m, p) in pve_vps_sim::routes() {
            if m != "GET" || p.ends_with("/vncwebsocket") {
                continue;
            }
            let aliases = p.contains("/aliases/");
            let vm_scope = p.contains("/qemu/");
            let path = p
                .replace("{node}", "pve1")
                .replace("{vmid}", "100")
                .replace("{snapname}", "before-upgrade")
                .replace("{storage}", "backup")
                .replace("{volume}", &enc(&backup))
                .replace("{upid}", &enc(upid.as_str().unwrap()))
                .replace("{pos}", "0")
                .replace("{group}", "webserver")
                .replace(
                    "{name}",
                    match (aliases, vm_scope) {
                        (true, true) => "gw",
                        (true, false) => "office",
                        (false, true) => "ipfilter-net0",
                        (false, false) => "management",
                    },
                )
                .replace(
                    "{cidr}",
                    &enc(if vm_scope {
                        "203.0.113.10"
                    } else {
                        "203.0.113.0/24"
                    }),
                );
            let args: Vec<(&str, &str)> = if p.ends_with("/rrddata") {
                vec![("timeframe", "hour")]
            } else if p.ends_with("/cloudinit/dump") {
                vec![("type", "network")]
            } else {
                vec![]
            };
            let (status, body) = api.call(reqwest::Method::GET, &path, &args).await;
            assert_eq!(status, 200, "GET {path}: {body}");
            let ep = &s[&(m.to_string(), p.to_string())];
            check(
                &ep["returns"],
                &body["data"],
                &format!("GET {p}"),
                &mut errs,
            );
            walked += 1;
            walked_groups += usize::from(p.starts_with("/cluster/firewall/groups"));
        }
        assert!(walked >= 30, "walked {walked} GET routes");
        assert_eq!(walked_groups, 3, "the security group GET routes");
        assert!(errs.is_empty(), "schema mismatches:\n{}", errs.join("\n"));
        sim.shutdown().await;
    })
    .await;
}
