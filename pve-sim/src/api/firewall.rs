//! Firewall for the cluster (`/cluster/firewall`) and per VM: options, rules, IP sets, aliases.
//!
//! Rule creation inserts at the top and defaults to `enable=0`; `moveto` follows PVE's splice;
//! every write checks `digest` against the digest of the whole firewall file.

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Reply, Req, vm_mut};
use crate::model::{Firewall, IpSet, Rule, State};

const RULE_FIELDS: &[&str] = &[
    "type",
    "action",
    "macro",
    "iface",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "comment",
    "log",
    "icmp-type",
    "enable",
    "ipversion",
];

fn fw_mut<'a>(st: &'a mut State, req: &Req) -> Result<&'a mut Firewall, ApiError> {
    if req.path.contains_key("vmid") {
        Ok(&mut vm_mut(st, req)?.firewall)
    } else {
        Ok(&mut st.cluster_fw)
    }
}

fn check_digest(fw: &Firewall, req: &Req) -> Result<(), ApiError> {
    match req.arg("digest") {
        Some(d) if d != fw.digest() => Err(ApiError::fail(
            "detected modified configuration - file changed by other user? Try again.",
        )),
        _ => Ok(()),
    }
}

fn int_or_str(k: &str, v: &str) -> Value {
    if matches!(k, "enable" | "ipversion" | "pos") {
        v.parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(v))
    } else {
        json!(v)
    }
}

fn rule_json(pos: usize, r: &Rule, digest: &str) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("pos".into(), json!(pos));
    for (k, v) in &r.fields {
        o.insert(k.clone(), int_or_str(k, v));
    }
    o.insert("digest".into(), json!(digest));
    Value::Object(o)
}

pub(super) fn get_options(st: &mut State, req: &Req) -> ApiResult {
    let vm_scope = req.path.contains_key("vmid");
    let fw = fw_mut(st, req)?;
    let mut o = serde_json::Map::new();
    for (k, v) in &fw.options {
        let val = if k.starts_with("policy") || k.starts_with("log_level") || k == "log_ratelimit" {
            json!(v)
        } else {
            v.parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(v))
        };
        o.insert(k.clone(), val);
    }
    let _ = vm_scope;
    o.insert("digest".into(), json!(fw.digest()));
    Reply::json(Value::Object(o))
}

pub(super) fn set_options(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    for (k, v) in &req.args {
        if matches!(k.as_str(), "digest" | "delete" | "node" | "vmid") {
            continue;
        }
        let v = match v.as_str() {
            "true" => "1".to_string(),
            "false" => "0".to_string(),
            _ => v.clone(),
        };
        fw.options.insert(k.clone(), v);
    }
    if let Some(d) = req.arg("delete") {
        for k in d.split(',') {
            fw.options.remove(k);
        }
    }
    Reply::null()
}

pub(super) fn list_rules(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    Reply::json(Value::Array(
        fw.rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_json(i, r, &d))
            .collect(),
    ))
}

fn rule_from_args(req: &Req, base: Option<&Rule>) -> Result<Rule, ApiError> {
    let mut rule = base.cloned().unwrap_or_default();
    for f in RULE_FIELDS {
        if let Some(v) = req.args.get(*f) {
            if v.is_empty() {
                rule.fields.remove(*f);
            } else {
                rule.fields.insert((*f).to_string(), v.clone());
            }
        }
    }
    if let Some(del) = req.arg("delete") {
        for f in del.split(',') {
            rule.fields.remove(f);
        }
    }
    match rule.fields.get("type").map(String::as_str) {
        Some("in" | "out" | "group" | "forward") => {}
        Some(other) => {
            return Err(ApiError::param(
                "type",
                &format!(
                    "value '{other}' does not have a value in the enumeration 'in, out, group, forward'"
                ),
            ));
        }
        None => {
            return Err(ApiError::param(
                "type",
                "property is missing and it is not optional",
            ));
        }
    }
    if !rule.fields.contains_key("action") {
        return Err(ApiError::param(
            "action",
            "property is missing and it is not optional",
        ));
    }
    Ok(rule)
}

pub(super) fn create_rule(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let mut rule = rule_from_args(req, None)?;
    // PVE: new rules are disabled unless `enable` is sent, and always go to the top (`pos` is ignored).
    rule.fields
        .entry("enable".into())
        .or_insert_with(|| "0".into());
    fw.rules.insert(0, rule);
    Reply::null()
}

fn pos(req: &Req, fw: &Firewall) -> Result<usize, ApiError> {
    let p = req.p("pos");
    let n: usize = p.parse().map_err(|_| {
        ApiError::param("pos", &format!("type check ('integer') failed - got '{p}'"))
    })?;
    if n >= fw.rules.len() {
        return Err(ApiError::fail(format!("no rule at position {n}")));
    }
    Ok(n)
}

pub(super) fn get_rule(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    let n = pos(req, fw)?;
    let d = fw.digest();
    Reply::json(rule_json(n, &fw.rules[n], &d))
}

pub(super) fn update_rule(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let n = pos(req, fw)?;
    if let Some(m) = req.int("moveto")? {
        let m = m.max(0) as usize;
        if m != n {
            let rule = fw.rules[n].clone();
            let mut out = Vec::with_capacity(fw.rules.len());
            for (i, r) in fw.rules.iter().enumerate() {
                if i == n {
                    continue;
                }
                if i == m {
                    out.push(rule.clone());
                }
                out.push(r.clone());
            }
            if m >= fw.rules.len() {
                out.push(rule);
            }
            fw.rules = out;
        }
        return Reply::null();
    }
    let updated = rule_from_args(req, Some(&fw.rules[n]))?;
    fw.rules[n] = updated;
    Reply::null()
}

pub(super) fn delete_rule(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let n = pos(req, fw)?;
    fw.rules.remove(n);
    Reply::null()
}

pub(super) fn list_ipsets(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    let out: Vec<Value> = fw
        .ipsets
        .iter()
        .map(|(name, s)| {
            let mut o = json!({ "name": name, "digest": d });
            if let Some(c) = &s.comment {
                o["comment"] = json!(c);
            }
            o
        })
        .collect();
    Reply::json(Value::Array(out))
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

pub(super) fn create_ipset(st: &mut State, req: &Req) -> ApiResult {
    let name = req.req_arg("name")?.to_string();
    if !valid_name(&name) {
        return Err(ApiError::param("name", "invalid format"));
    }
    let comment = req.arg("comment").map(str::to_string);
    let rename = req.arg("rename").map(str::to_string);
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    if let Some(old) = rename {
        let set = fw
            .ipsets
            .remove(&old)
            .ok_or_else(|| ApiError::fail(format!("IPSet '{old}' does not exist")))?;
        if fw.ipsets.contains_key(&name) {
            fw.ipsets.insert(old, set);
            return Err(ApiError::fail(format!("IPSet '{name}' already exists")));
        }
        fw.ipsets.insert(
            name,
            IpSet {
                comment: comment.or(set.comment),
                entries: set.entries,
            },
        );
        return Reply::null();
    }
    if fw.ipsets.contains_key(&name) {
        return Err(ApiError::fail(format!("IPSet '{name}' already exists")));
    }
    fw.ipsets.insert(
        name,
        IpSet {
            comment,
            entries: Default::default(),
        },
    );
    Reply::null()
}

fn ipset_mut<'a>(fw: &'a mut Firewall, name: &str) -> Result<&'a mut IpSet, ApiError> {
    fw.ipsets
        .get_mut(name)
        .ok_or_else(|| ApiError::fail(format!("no such IPSet '{name}'")))
}

pub(super) fn delete_ipset(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let force = req.flag("force");
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let set = ipset_mut(fw, &name)?;
    if !set.entries.is_empty() && !force {
        return Err(ApiError::fail(format!("IPSet '{name}' is not empty")));
    }
    fw.ipsets.remove(&name);
    Reply::null()
}

pub(super) fn list_ipset_entries(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    let set = ipset_mut(fw, &name)?;
    let out: Vec<Value> = set
        .entries
        .iter()
        .map(|(cidr, (comment, nomatch))| entry_json(cidr, comment, *nomatch, &d))
        .collect();
    Reply::json(Value::Array(out))
}

/// An IP set entry as PVE lists it.
fn entry_json(cidr: &str, comment: &Option<String>, nomatch: bool, digest: &str) -> Value {
    let mut o = json!({ "cidr": cidr, "digest": digest });
    if let Some(c) = comment {
        o["comment"] = json!(c);
    }
    if nomatch {
        o["nomatch"] = json!(1);
    }
    o
}

/// PVE's answer to a `cidr` that is not an address or network.
fn bad_cidr(cidr: &str) -> ApiError {
    ApiError::param(
        "cidr",
        &format!("value does not look like a valid CIDR network: '{cidr}'"),
    )
}

fn valid_cidr(c: &str) -> bool {
    let (ip, prefix) = c.split_once('/').unwrap_or((c, ""));
    let ip_ok = ip.parse::<std::net::IpAddr>().is_ok();
    let max = if ip.contains(':') { 128 } else { 32 };
    ip_ok && (prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max))
}

pub(super) fn add_ipset_entry(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let cidr = req.req_arg("cidr")?.to_string();
    if !valid_cidr(&cidr) && !cidr.starts_with("dc/") && !cidr.starts_with("guest/") {
        return Err(bad_cidr(&cidr));
    }
    let comment = req.arg("comment").map(str::to_string);
    let nomatch = req.flag("nomatch");
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let set = ipset_mut(fw, &name)?;
    if set.entries.contains_key(&cidr) {
        return Err(ApiError::fail(format!("entry for '{cidr}' already exists")));
    }
    set.entries.insert(cidr, (comment, nomatch));
    Reply::null()
}

pub(super) fn get_ipset_entry(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let cidr = req.p("cidr").to_string();
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    let set = ipset_mut(fw, &name)?;
    let (comment, nomatch) = set
        .entries
        .get(&cidr)
        .ok_or_else(|| ApiError::fail(format!("no such IP/Network '{cidr}'")))?;
    Reply::json(entry_json(&cidr, comment, *nomatch, &d))
}

pub(super) fn update_ipset_entry(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let cidr = req.p("cidr").to_string();
    let comment = req.args.get("comment").cloned();
    let nomatch = req.arg("nomatch").map(|_| req.flag("nomatch"));
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let set = ipset_mut(fw, &name)?;
    let e = set
        .entries
        .get_mut(&cidr)
        .ok_or_else(|| ApiError::fail(format!("no such IP/Network '{cidr}'")))?;
    if let Some(c) = comment {
        e.0 = if c.is_empty() { None } else { Some(c) };
    }
    if let Some(n) = nomatch {
        e.1 = n;
    }
    Reply::null()
}

pub(super) fn delete_ipset_entry(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_string();
    let cidr = req.p("cidr").to_string();
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    let set = ipset_mut(fw, &name)?;
    if set.entries.remove(&cidr).is_none() {
        return Err(ApiError::fail(format!("no such IP/Network '{cidr}'")));
    }
    Reply::null()
}

/// An alias as PVE lists it.
fn alias_json(name: &str, cidr: &str, comment: &Option<String>, digest: &str) -> Value {
    let mut o = json!({ "name": name, "cidr": cidr, "digest": digest });
    if let Some(c) = comment {
        o["comment"] = json!(c);
    }
    o
}

pub(super) fn list_aliases(st: &mut State, req: &Req) -> ApiResult {
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    let out: Vec<Value> = fw
        .aliases
        .iter()
        .map(|(name, (cidr, comment))| alias_json(name, cidr, comment, &d))
        .collect();
    Reply::json(Value::Array(out))
}

pub(super) fn create_alias(st: &mut State, req: &Req) -> ApiResult {
    let name = req.req_arg("name")?.to_ascii_lowercase();
    if !valid_name(&name) {
        return Err(ApiError::param("name", "invalid format"));
    }
    let cidr = req.req_arg("cidr")?.to_string();
    if !valid_cidr(&cidr) {
        return Err(bad_cidr(&cidr));
    }
    let comment = req.arg("comment").map(str::to_string);
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    if fw.aliases.contains_key(&name) {
        return Err(ApiError::fail(format!("alias '{name}' already exists")));
    }
    fw.aliases.insert(name, (cidr, comment));
    Reply::null()
}

pub(super) fn get_alias(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_ascii_lowercase();
    let fw = fw_mut(st, req)?;
    let d = fw.digest();
    let (cidr, comment) = fw
        .aliases
        .get(&name)
        .ok_or_else(|| ApiError::fail(format!("no such alias '{name}'")))?;
    Reply::json(alias_json(&name, cidr, comment, &d))
}

pub(super) fn update_alias(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_ascii_lowercase();
    let cidr = req.req_arg("cidr")?.to_string();
    if !valid_cidr(&cidr) {
        return Err(bad_cidr(&cidr));
    }
    let comment = req.arg("comment").map(str::to_string);
    let rename = req.arg("rename").map(|s| s.to_ascii_lowercase());
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    if fw.aliases.remove(&name).is_none() {
        return Err(ApiError::fail(format!("no such alias '{name}'")));
    }
    fw.aliases.insert(rename.unwrap_or(name), (cidr, comment));
    Reply::null()
}

pub(super) fn delete_alias(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("name").to_ascii_lowercase();
    let fw = fw_mut(st, req)?;
    check_digest(fw, req)?;
    if fw.aliases.remove(&name).is_none() {
        return Err(ApiError::fail(format!("no such alias '{name}'")));
    }
    Reply::null()
}

/// `GET .../firewall/refs`: IP sets and aliases usable as source/dest (cluster ones everywhere,
/// guest ones for a VM).
pub(super) fn refs(st: &mut State, req: &Req) -> ApiResult {
    let kind = req.arg("type");
    let mut out = Vec::new();
    let mut add = |fw: &Firewall, scope: &str| {
        if kind.is_none_or(|k| k == "alias") {
            for (name, (_, comment)) in &fw.aliases {
                let mut o = json!({ "type": "alias", "name": name, "ref": format!("{scope}/{name}"), "scope": scope });
                if let Some(c) = comment {
                    o["comment"] = json!(c);
                }
                out.push(o);
            }
        }
        if kind.is_none_or(|k| k == "ipset") {
            for (name, set) in &fw.ipsets {
                let mut o = json!({ "type": "ipset", "name": name, "ref": format!("+{scope}/{name}"), "scope": scope });
                if let Some(c) = &set.comment {
                    o["comment"] = json!(c);
                }
                out.push(o);
            }
        }
    };
    add(&st.cluster_fw.clone(), "dc");
    if req.path.contains_key("vmid") {
        let fw = vm_mut(st, req)?.firewall.clone();
        add(&fw, "guest");
    }
    Reply::json(Value::Array(out))
}
