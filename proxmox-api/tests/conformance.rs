//! Every endpoint the client can call exists in the official schema extract, with every
//! parameter it can send declared there with a compatible type.

use pve_vps_api::request::{
    Endpoint, Method, ParamKind, catalogue, param_name_matches, vm_config_index_max,
};
use serde_json::Value;
use std::collections::HashSet;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/pve-api.json");
    let text = std::fs::read_to_string(path).expect("schema/pve-api.json is readable");
    serde_json::from_str(&text).expect("schema is JSON")
}

/// Problems of one endpoint against the schema (empty when it conforms).
fn check(schema: &Value, ep: &Endpoint) -> Vec<String> {
    let mut problems = Vec::new();
    let entry = schema["endpoints"]
        .as_array()
        .expect("endpoints array")
        .iter()
        .find(|e| e["path"] == ep.path && e["method"] == ep.method.as_str());
    let Some(entry) = entry else {
        return vec![format!("{} {} not in schema", ep.method.as_str(), ep.path)];
    };
    let params = entry["params"].as_object().cloned().unwrap_or_default();
    for p in ep.path_params() {
        if !params.contains_key(p) {
            problems.push(format!(
                "{} {}: path parameter `{p}` not declared",
                ep.method.as_str(),
                ep.path
            ));
        }
    }
    for (name, kind) in ep.params {
        // The schema names indexed keys `net[n]`; our declarations use the same spelling.
        let found = params
            .iter()
            .find(|(k, _)| *k == name || param_name_matches(k, name));
        match found {
            None => problems.push(format!(
                "{} {}: parameter `{name}` not in schema",
                ep.method.as_str(),
                ep.path
            )),
            Some((_, decl)) => {
                let ty = decl["type"].as_str().unwrap_or("string");
                if !kind.compatible_with(ty) {
                    problems.push(format!(
                        "{} {}: parameter `{name}` sent as {kind:?}, schema says {ty}",
                        ep.method.as_str(),
                        ep.path
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_catalogued_endpoint_conforms_to_the_schema() {
    let schema = schema();
    let all = catalogue();
    assert!(
        all.len() >= 70,
        "catalogue unexpectedly small: {}",
        all.len()
    );
    let problems: Vec<String> = all.iter().flat_map(|ep| check(&schema, ep)).collect();
    assert!(
        problems.is_empty(),
        "schema conformance problems:\n{}",
        problems.join("\n")
    );
}

/// `ConfigUpdate` (typed setters, `set_other`, `delete`) is applied to `PUT`/`POST .../config`
/// and to `POST /nodes/{node}/qemu`: whatever it accepts for `PUT` must be declared (and so
/// schema-checked above) on the other two as well, and every indexed key needs PVE's range.
#[test]
fn config_keys_are_declared_on_every_config_endpoint() {
    let find = |m: Method, p: &str| {
        *catalogue()
            .iter()
            .find(|e| e.method == m && e.path == p)
            .expect("endpoint catalogued")
    };
    let put = find(Method::Put, "/nodes/{node}/qemu/{vmid}/config");
    let post = find(Method::Post, "/nodes/{node}/qemu/{vmid}/config");
    let create = find(Method::Post, "/nodes/{node}/qemu");
    let control = ["delete", "digest", "skiplock", "revert", "force"];
    assert!(
        put.params.len() > 60,
        "PUT config declares the untyped keys too"
    );
    for (name, kind) in put.params {
        if let Some(prefix) = name.strip_suffix("[n]") {
            assert!(
                vm_config_index_max(prefix).is_some(),
                "no index range for {name}"
            );
        }
        assert!(
            post.params.contains(&(*name, *kind)),
            "POST config lacks {name}"
        );
        if !control.contains(name) {
            assert!(
                create.params.contains(&(*name, *kind)),
                "create lacks {name}"
            );
        }
    }
}

#[test]
fn catalogue_has_no_duplicates() {
    let mut seen = HashSet::new();
    for ep in catalogue() {
        assert!(
            seen.insert((ep.method, ep.path)),
            "duplicate {} {}",
            ep.method.as_str(),
            ep.path
        );
    }
}

#[test]
fn only_safe_endpoints_are_marked_idempotent() {
    for ep in catalogue() {
        if ep.method == Method::Get {
            assert!(ep.idempotent, "GET {} should be retryable", ep.path);
        }
        if ep.method == Method::Post && ep.idempotent {
            // POSTs that start tasks or create objects must never be retried.
            assert!(
                ep.path.ends_with("/agent/ping") || ep.path.ends_with("/agent/set-user-password"),
                "POST {} marked idempotent",
                ep.path
            );
        }
    }
}

static WRONG_PARAM: Endpoint = Endpoint {
    method: Method::Post,
    path: "/nodes/{node}/qemu/{vmid}/snapshot",
    params: &[
        ("snapname", ParamKind::String),
        ("ramstate", ParamKind::Boolean),
    ],
    idempotent: false,
};
static WRONG_KIND: Endpoint = Endpoint {
    method: Method::Post,
    path: "/nodes/{node}/qemu/{vmid}/snapshot",
    params: &[("vmstate", ParamKind::String)],
    idempotent: false,
};
static WRONG_METHOD: Endpoint = Endpoint {
    method: Method::Put,
    path: "/nodes/{node}/qemu/{vmid}/status/start",
    params: &[],
    idempotent: false,
};
static WRONG_PATH_PARAM: Endpoint = Endpoint {
    method: Method::Get,
    path: "/nodes/{nodename}/qemu",
    params: &[],
    idempotent: true,
};
static INDEXED_OK: Endpoint = Endpoint {
    method: Method::Put,
    path: "/nodes/{node}/qemu/{vmid}/config",
    params: &[
        ("net[n]", ParamKind::String),
        ("ipconfig[n]", ParamKind::String),
    ],
    idempotent: false,
};

#[test]
fn checker_rejects_wrong_endpoints() {
    let schema = schema();
    assert_eq!(
        check(&schema, &WRONG_PARAM).len(),
        1,
        "unknown parameter must be reported"
    );
    assert_eq!(
        check(&schema, &WRONG_KIND).len(),
        1,
        "wrong type must be reported"
    );
    assert_eq!(
        check(&schema, &WRONG_METHOD).len(),
        1,
        "wrong method must be reported"
    );
    assert!(
        !check(&schema, &WRONG_PATH_PARAM).is_empty(),
        "unknown path must be reported"
    );
    assert!(
        check(&schema, &INDEXED_OK).is_empty(),
        "{:?}",
        check(&schema, &INDEXED_OK)
    );
}

#[test]
fn power_actions_are_catalogued() {
    for p in ["reboot", "reset", "start", "stop", "shutdown"] {
        let path = format!("/nodes/{{node}}/qemu/{{vmid}}/status/{p}");
        assert!(
            catalogue()
                .iter()
                .any(|e| e.method == Method::Post && e.path == path),
            "POST {path} missing from the catalogue"
        );
    }
}
