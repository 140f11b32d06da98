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
        Some(d) if d != fw.digest() => Err(modified()),
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

/// The IP version of an address as written in a rule or alias (`None` for aliases and IP
/// set references, which name no address).
fn ip_version(addr: &str) -> Option<u8> {
    let first = addr.split(',').next()?.trim().trim_start_matches('!');
    if first.starts_with('+') || first.is_empty() {
        return None;
    }
    let host = first.split(['/', '-']).next()?;
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        Some(6)
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        Some(4)
    } else {
        None
    }
}

fn rule_json(pos: usize, r: &Rule, digest: &str) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("pos".into(), json!(pos));
    for (k, v) in &r.fields {
        o.insert(k.clone(), int_or_str(k, v));
    }
    // FACT (recorded cluster firewall rules, proxmox-api tests/fixtures/real): PVE adds the
    // `ipversion` its addresses imply (4 or 6).
    if !o.contains_key("ipversion")
        && let Some(v) = ["source", "dest"]
            .iter()
            .find_map(|k| r.fields.get(*k).and_then(|a| ip_version(a)))
    {
        o.insert("ipversion".into(), json!(v));
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

/// The rule list a request addresses: a security group's (`{group}` in the path), the VM's
/// or the cluster's, with the digest of the file that holds it.
struct RuleList<'a> {
    rules: &'a mut Vec<Rule>,
    digest: String,
}

impl RuleList<'_> {
    fn check_digest(&self, req: &Req) -> Result<(), ApiError> {
        match req.arg("digest") {
            Some(d) if d != self.digest => Err(modified()),
            _ => Ok(()),
        }
    }
}

fn modified() -> ApiError {
    ApiError::fail("detected modified configuration - file changed by other user? Try again.")
}

fn no_such_group(name: &str) -> ApiError {
    ApiError::fail(format!("no such security group '{name}'"))
}

fn rule_list<'a>(st: &'a mut State, req: &Req) -> Result<RuleList<'a>, ApiError> {
    if let Some(group) = req.path.get("group") {
        let digest = st.cluster_fw.digest();
        let g = st
            .cluster_fw
            .groups
            .get_mut(group)
            .ok_or_else(|| no_such_group(group))?;
        return Ok(RuleList {
            rules: &mut g.rules,
            digest,
        });
    }
    let fw = fw_mut(st, req)?;
    let digest = fw.digest();
    Ok(RuleList {
        rules: &mut fw.rules,
        digest,
    })
}

pub(super) fn list_rules(st: &mut State, req: &Req) -> ApiResult {
    let list = rule_list(st, req)?;
    Reply::json(Value::Array(
        list.rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule_json(i, r, &list.digest))
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
        Some("group") if req.path.contains_key("group") => {
            // PVE's verify_rule: a security group cannot contain a group rule.
            return Err(ApiError::param("type", "security groups not allowed"));
        }
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

/// PVE's verify_rule: a `group` rule must name an existing security group.
fn check_group_exists(st: &State, rule: &Rule) -> Result<(), ApiError> {
    if rule.fields.get("type").map(String::as_str) == Some("group") {
        let action = rule.fields.get("action").map(String::as_str).unwrap_or("");
        if !st.cluster_fw.groups.contains_key(action) {
            return Err(ApiError::param(
                "action",
                &format!("security group '{action}' does not exist"),
            ));
        }
    }
    Ok(())
}

pub(super) fn create_rule(st: &mut State, req: &Req) -> ApiResult {
    let mut rule = rule_from_args(req, None)?;
    check_group_exists(st, &rule)?;
    let list = rule_list(st, req)?;
    list.check_digest(req)?;
    // PVE: new rules are disabled unless `enable` is sent, and always go to the top (`pos` is ignored).
    rule.fields
        .entry("enable".into())
        .or_insert_with(|| "0".into());
    list.rules.insert(0, rule);
    Reply::null()
}

fn pos(req: &Req, rules: &[Rule]) -> Result<usize, ApiError> {
    let p = req.p("pos");
    let n: usize = p.parse().map_err(|_| {
        ApiError::param("pos", &format!("type check ('integer') failed - got '{p}'"))
    })?;
    if n >= rules.len() {
        return Err(ApiError::fail(format!("no rule at position {n}")));
    }
    Ok(n)
}

pub(super) fn get_rule(st: &mut State, req: &Req) -> ApiResult {
    let list = rule_list(st, req)?;
    let n = pos(req, list.rules)?;
    Reply::json(rule_json(n, &list.rules[n], &list.digest))
}

pub(super) fn update_rule(st: &mut State, req: &Req) -> ApiResult {
    let moveto = req.int("moveto")?;
    let (n, updated) = {
        let list = rule_list(st, req)?;
        list.check_digest(req)?;
        let n = pos(req, list.rules)?;
        if let Some(m) = moveto {
            let m = m.max(0) as usize;
            if m != n {
                let rule = list.rules[n].clone();
                let mut out = Vec::with_capacity(list.rules.len());
                for (i, r) in list.rules.iter().enumerate() {
                    if i == n {
                        continue;
                    }
                    if i == m {
                        out.push(rule.clone());
                    }
                    out.push(r.clone());
                }
                if m >= list.rules.len() {
                    out.push(rule);
                }
                *list.rules = out;
            }
            return Reply::null();
        }
        (n, rule_from_args(req, Some(&list.rules[n]))?)
    };
    check_group_exists(st, &updated)?;
    rule_list(st, req)?.rules[n] = updated;
    Reply::null()
}

pub(super) fn delete_rule(st: &mut State, req: &Req) -> ApiResult {
    let list = rule_list(st, req)?;
    list.check_digest(req)?;
    let n = pos(req, list.rules)?;
    list.rules.remove(n);
    Reply::null()
}

/// PVE's security group name: `[A-Za-z][A-Za-z0-9\-\_]+`, 2 to 18 characters.
fn check_group_name(param: &str, name: &str) -> Result<(), ApiError> {
    if name.len() > 18 {
        return Err(ApiError::param(
            param,
            "value may only be 18 characters long",
        ));
    }
    if !valid_name(name) {
        return Err(ApiError::param(
            param,
            "value does not match the regex pattern",
        ));
    }
    Ok(())
}

fn group_json(name: &str, comment: &Option<String>, digest: &str) -> Value {
    let mut o = json!({ "group": name, "digest": digest });
    if let Some(c) = comment {
        o["comment"] = json!(c);
    }
    o
}

/// `GET /cluster/firewall/groups`.
pub(super) fn list_groups(st: &mut State, _req: &Req) -> ApiResult {
    let d = st.cluster_fw.digest();
    Reply::json(Value::Array(
        st.cluster_fw
            .groups
            .iter()
            .map(|(name, g)| group_json(name, &g.comment, &d))
            .collect(),
    ))
}

/// Every `group` rule naming `group`, in the cluster's and the VMs' rule lists.
fn group_rules_mut<'a>(st: &'a mut State, group: &'a str) -> impl Iterator<Item = &'a mut Rule> {
    let State {
        cluster_fw, vms, ..
    } = st;
    cluster_fw
        .rules
        .iter_mut()
        .chain(vms.values_mut().flat_map(|vm| vm.firewall.rules.iter_mut()))
        .filter(move |r| {
            r.fields.get("type").map(String::as_str) == Some("group")
                && r.fields.get("action").map(String::as_str) == Some(group)
        })
}

/// `POST /cluster/firewall/groups`: create a group, or with `rename` rename one (updating the
/// rules that reference it) or, with `rename` equal to `group`, change its comment.
pub(super) fn create_group(st: &mut State, req: &Req) -> ApiResult {
    let name = req.req_arg("group")?.to_string();
    check_group_name("group", &name)?;
    let rename = req.arg("rename").map(str::to_string);
    if let Some(old) = &rename {
        check_group_name("rename", old)?;
    }
    let comment = req.arg("comment").map(str::to_string);
    if req
        .arg("digest")
        .is_some_and(|d| d != st.cluster_fw.digest())
    {
        return Err(modified());
    }
    let groups = &mut st.cluster_fw.groups;
    match rename {
        Some(old) => {
            if !groups.contains_key(&old) {
                return Err(ApiError::fail(format!(
                    "Security group '{old}' does not exist"
                )));
            }
            if old == name {
                if let Some(c) = comment {
                    groups.get_mut(&old).expect("checked").comment = Some(c);
                }
                return Reply::null();
            }
            if groups.contains_key(&name) {
                return Err(ApiError::fail(format!(
                    "Security group '{name}' does exist"
                )));
            }
            let mut g = groups.remove(&old).expect("checked");
            if comment.is_some() {
                g.comment = comment;
            }
            groups.insert(name.clone(), g);
            for r in group_rules_mut(st, &old) {
                r.fields.insert("action".into(), name.clone());
            }
        }
        None => {
            if groups.contains_key(&name) {
                return Err(ApiError::param(
                    "group",
                    &format!("Security group '{name}' already exists"),
                ));
            }
            groups.insert(
                name,
                crate::model::SecurityGroup {
                    comment,
                    rules: Vec::new(),
                },
            );
        }
    }
    Reply::null()
}

/// `DELETE /cluster/firewall/groups/{group}`: refused while the group has rules or while a
/// cluster or VM rule references it.
pub(super) fn delete_group(st: &mut State, req: &Req) -> ApiResult {
    let name = req.p("group").to_string();
    if req
        .arg("digest")
        .is_some_and(|d| d != st.cluster_fw.digest())
    {
        return Err(modified());
    }
    let g = st
        .cluster_fw
        .groups
        .get(&name)
        .ok_or_else(|| no_such_group(&name))?;
    if !g.rules.is_empty() {
        return Err(ApiError::fail(format!(
            "Security group '{name}' is not empty"
        )));
    }
    let mut users: Vec<String> = Vec::new();
    let is_ref = |r: &Rule| {
        r.fields.get("type").map(String::as_str) == Some("group")
            && r.fields.get("action") == Some(&name)
    };
    if st.cluster_fw.rules.iter().any(is_ref) {
        users.push("cluster".into());
    }
    for (vmid, vm) in &st.vms {
        if vm.firewall.rules.iter().any(is_ref) {
            users.push(format!("VM {vmid}"));
        }
    }
    if !users.is_empty() {
        return Err(ApiError::fail(format!(
            "Security group '{name}' is still in use by {}",
            users.join(", ")
        )));
    }
    st.cluster_fw.groups.remove(&name);
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
    // FACT (recorded cluster aliases, proxmox-api tests/fixtures/real): each alias carries
    // the `ipversion` of its address.
    if let Some(v) = ip_version(cidr) {
        o["ipversion"] = json!(v);
    }
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

#[cfg(test)]
mod tests {
    use super::ip_version;
    use proptest::prelude::*;

    #[test]
    fn versions_of_rule_addresses() {
        assert_eq!(ip_version("1.1.1.1"), Some(4));
        assert_eq!(ip_version("10.0.0.0/8,192.0.2.1"), Some(4));
        assert_eq!(ip_version("10.0.0.1-10.0.0.9"), Some(4));
        assert_eq!(ip_version("2001:db8::/32"), Some(6));
        assert_eq!(ip_version("!fe80::1"), Some(6));
        assert_eq!(ip_version("+dc/blocked"), None);
        assert_eq!(ip_version("myalias"), None);
    }

    proptest! {
        #[test]
        fn any_ipv4_is_4_and_any_ipv6_is_6(a in any::<u32>(), b in any::<u128>(), p in 0u8..=32) {
            let v4 = std::net::Ipv4Addr::from(a);
            let v6 = std::net::Ipv6Addr::from(b);
            prop_assert_eq!(ip_version(&format!("{v4}/{p}")), Some(4));
            prop_assert_eq!(ip_version(&v6.to_string()), Some(6));
        }
    }
}
