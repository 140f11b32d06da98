//! Every endpoint the client can call exists in the official schema extract, with every
//! parameter it can send declared there with a compatible type.

use proxmox_api::request::{Endpoint, Method, ParamKind, catalogue, param_name_matches};
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
