//! Firewall at cluster level (`/cluster/firewall/...`) and VM level
//! (`/nodes/{node}/qemu/{vmid}/firewall/...`): options, rules, IP sets, aliases, refs; cluster
//! security groups (`/cluster/firewall/groups/...`) and their rules.
//!
//! Rules are plain data here; their semantics live in a separate crate.

use super::{VmHandle, check_text};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::macros::lenient_enum;
use crate::request::{self, Endpoint, Request};
use crate::types::FirewallName;

lenient_enum! {
    /// Default policy.
    pub enum Policy {
        /// Accept.
        Accept => "ACCEPT",
        /// Drop silently.
        Drop => "DROP",
        /// Reject.
        Reject => "REJECT",
    }
}

/// Firewall options (cluster or VM; fields not applicable to a level are `None`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct FirewallOptions {
    /// Firewall enabled.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub enable: Option<bool>,
    /// Incoming policy.
    #[serde(default)]
    pub policy_in: Option<Policy>,
    /// Outgoing policy.
    #[serde(default)]
    pub policy_out: Option<Policy>,
    /// DHCP allowed (VM).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub dhcp: Option<bool>,
    /// NDP allowed (VM).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub ndp: Option<bool>,
    /// Router advertisements allowed (VM).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub radv: Option<bool>,
    /// MAC filter (VM).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub macfilter: Option<bool>,
    /// IP filter / anti-spoofing (VM).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub ipfilter: Option<bool>,
    /// Log level incoming (VM).
    #[serde(default)]
    pub log_level_in: Option<String>,
    /// Log level outgoing (VM).
    #[serde(default)]
    pub log_level_out: Option<String>,
    /// ebtables (cluster).
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub ebtables: Option<bool>,
    /// Digest for optimistic concurrency.
    #[serde(default)]
    pub digest: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Changes to firewall options.
#[derive(Debug, Clone, Default)]
pub struct FirewallOptionsUpdate {
    enable: Option<bool>,
    policy_in: Option<Policy>,
    policy_out: Option<Policy>,
    dhcp: Option<bool>,
    ndp: Option<bool>,
    radv: Option<bool>,
    macfilter: Option<bool>,
    ipfilter: Option<bool>,
    delete: Vec<String>,
    digest: Option<String>,
}

macro_rules! setters {
    ($($(#[$m:meta])* $f:ident: $t:ty),*) => {$(
        $(#[$m])*
        pub fn $f(mut self, v: $t) -> Self {
            self.$f = Some(v);
            self
        }
    )*};
}

impl FirewallOptionsUpdate {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        /// Enable the firewall.
        enable: bool,
        /// Incoming policy.
        policy_in: Policy,
        /// Outgoing policy.
        policy_out: Policy,
        /// Allow DHCP (VM level only).
        dhcp: bool,
        /// Allow NDP (VM level only).
        ndp: bool,
        /// Allow router advertisements (VM level only).
        radv: bool,
        /// MAC filter (VM level only).
        macfilter: bool,
        /// IP filter (VM level only).
        ipfilter: bool
    }
    /// Reset an option to its default.
    pub fn delete(mut self, key: &str) -> Result<Self> {
        check_name_like("option", key)?;
        self.delete.push(key.to_owned());
        Ok(self)
    }
    /// Only apply if the options still have this digest.
    pub fn digest(mut self, d: &str) -> Result<Self> {
        check_digest(d)?;
        self.digest = Some(d.to_owned());
        Ok(self)
    }
}

/// A firewall rule as PVE returns it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct FirewallRule {
    /// Position.
    #[serde(deserialize_with = "crate::de::u64")]
    pub pos: u64,
    /// `in`, `out`, `forward` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `ACCEPT`, `DROP`, `REJECT` or a group name.
    pub action: String,
    /// Macro.
    #[serde(default, rename = "macro")]
    pub macro_name: Option<String>,
    /// Interface.
    #[serde(default)]
    pub iface: Option<String>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Destination.
    #[serde(default)]
    pub dest: Option<String>,
    /// Protocol.
    #[serde(default)]
    pub proto: Option<String>,
    /// Source port(s).
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub sport: Option<String>,
    /// Destination port(s).
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub dport: Option<String>,
    /// ICMP type.
    #[serde(default, rename = "icmp-type")]
    pub icmp_type: Option<String>,
    /// Log level.
    #[serde(default)]
    pub log: Option<String>,
    /// Enabled.
    #[serde(default, deserialize_with = "crate::de::bool")]
    pub enable: bool,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// IP version derived by PVE.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub ipversion: Option<u64>,
    /// Digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Fields of a rule to create or update. Unset fields are not sent.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    fields: Vec<(&'static str, String)>,
    enable: Option<bool>,
    moveto: Option<u64>,
    delete: Vec<String>,
    digest: Option<String>,
}

macro_rules! rule_fields {
    ($($(#[$m:meta])* $f:ident => $key:literal),*) => {$(
        $(#[$m])*
        pub fn $f(self, v: &str) -> Result<Self> {
            check_text($key, v, $key == "comment" || $key == "source" || $key == "dest" || $key == "sport" || $key == "dport")?;
            Ok(self.field($key, v))
        }
    )*};
}

impl RuleSpec {
    /// A new rule: `kind` is `in`/`out`/`forward`/`group`, `action` `ACCEPT`/`DROP`/`REJECT`
    /// or a group name. Rules are sent with `enable=1` (PVE would otherwise create them
    /// disabled) unless [`enable`](Self::enable) says otherwise.
    pub fn new(kind: &str, action: &str) -> Result<Self> {
        if !matches!(kind, "in" | "out" | "forward" | "group") {
            return Err(Error::invalid(
                "rule type",
                kind,
                "must be in, out, forward or group",
            ));
        }
        check_name_like("rule action", action)?;
        Ok(RuleSpec::default()
            .field("type", kind)
            .field("action", action))
    }
    /// An update changing nothing yet.
    pub fn update() -> Self {
        RuleSpec::default()
    }
    fn field(mut self, k: &'static str, v: &str) -> Self {
        self.fields.retain(|(key, _)| *key != k);
        self.fields.push((k, v.to_owned()));
        self
    }
    rule_fields! {
        /// Macro (e.g. `SSH`).
        macro_name => "macro",
        /// Interface (`net0`).
        iface => "iface",
        /// Source address/set/alias.
        source => "source",
        /// Destination address/set/alias.
        dest => "dest",
        /// Protocol.
        proto => "proto",
        /// Source ports.
        sport => "sport",
        /// Destination ports.
        dport => "dport",
        /// ICMP type.
        icmp_type => "icmp-type",
        /// Log level.
        log => "log",
        /// Comment.
        comment => "comment"
    }
    /// Enable or disable.
    pub fn enable(mut self, on: bool) -> Self {
        self.enable = Some(on);
        self
    }
    /// Move the rule to this position (updates only).
    pub fn move_to(mut self, pos: u64) -> Self {
        self.moveto = Some(pos);
        self
    }
    /// Clear a field (updates only).
    pub fn delete(mut self, key: &str) -> Result<Self> {
        check_name_like("rule field", key)?;
        self.delete.push(key.to_owned());
        Ok(self)
    }
    /// Only apply if the rule set still has this digest.
    pub fn digest(mut self, d: &str) -> Result<Self> {
        check_digest(d)?;
        self.digest = Some(d.to_owned());
        Ok(self)
    }
}

/// An IP set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct IpSet {
    /// Name.
    pub name: String,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Digest.
    #[serde(default)]
    pub digest: Option<String>,
}

/// An IP set entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct IpSetEntry {
    /// Address or network.
    pub cidr: String,
    /// Negated (`!`).
    #[serde(default, deserialize_with = "crate::de::bool")]
    pub nomatch: bool,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Digest.
    #[serde(default)]
    pub digest: Option<String>,
}

/// An alias.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct Alias {
    /// Name.
    pub name: String,
    /// Address or network.
    pub cidr: String,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Digest.
    #[serde(default)]
    pub digest: Option<String>,
}

/// An object rules can refer to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct FirewallRef {
    /// `alias` or `ipset`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name.
    pub name: String,
    /// Reference as used in rules (`+dc/name`, `dc/name`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
}

fn check_name_like(kind: &'static str, v: &str) -> Result<()> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(Error::invalid(
            kind,
            v,
            "must be letters, digits, `_` or `-`",
        ));
    }
    Ok(())
}

fn check_digest(d: &str) -> Result<()> {
    if d.is_empty() || d.len() > 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid("digest", d, "must be hex"));
    }
    Ok(())
}

/// [`check_digest`] when a digest is given.
fn check_opt_digest(d: Option<&str>) -> Result<()> {
    d.map_or(Ok(()), check_digest)
}

/// A free-text comment, when one is given (see [`check_text`]).
fn check_opt_comment(c: Option<&str>) -> Result<()> {
    c.map_or(Ok(()), |c| check_text("comment", c, true))
}

/// Validate an IP set entry / alias address: IPv4/IPv6 address or network, or a range.
fn check_cidr(v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/' | b'-'))
        && (v.contains('.') || v.contains(':'));
    if !ok {
        return Err(Error::invalid(
            "cidr",
            v,
            "must be an IP address, network or range",
        ));
    }
    Ok(())
}

struct Endpoints {
    options_get: &'static Endpoint,
    options_put: &'static Endpoint,
    rules: RuleEndpoints,
    ipsets: &'static Endpoint,
    ipset_create: &'static Endpoint,
    ipset_delete: &'static Endpoint,
    ipset_entries: &'static Endpoint,
    ipset_add: &'static Endpoint,
    ipset_update: &'static Endpoint,
    ipset_remove: &'static Endpoint,
    aliases: &'static Endpoint,
    alias_create: &'static Endpoint,
    alias_update: &'static Endpoint,
    alias_delete: &'static Endpoint,
    refs: &'static Endpoint,
}

static CLUSTER: Endpoints = Endpoints {
    options_get: &request::CLUSTER_FW_OPTIONS_GET,
    options_put: &request::CLUSTER_FW_OPTIONS_PUT,
    rules: RuleEndpoints {
        list: &request::CLUSTER_FW_RULES,
        get: &request::CLUSTER_FW_RULE_GET,
        create: &request::CLUSTER_FW_RULE_CREATE,
        update: &request::CLUSTER_FW_RULE_UPDATE,
        delete: &request::CLUSTER_FW_RULE_DELETE,
    },
    ipsets: &request::CLUSTER_FW_IPSETS,
    ipset_create: &request::CLUSTER_FW_IPSET_CREATE,
    ipset_delete: &request::CLUSTER_FW_IPSET_DELETE,
    ipset_entries: &request::CLUSTER_FW_IPSET_ENTRIES,
    ipset_add: &request::CLUSTER_FW_IPSET_ADD,
    ipset_update: &request::CLUSTER_FW_IPSET_UPDATE,
    ipset_remove: &request::CLUSTER_FW_IPSET_REMOVE,
    aliases: &request::CLUSTER_FW_ALIASES,
    alias_create: &request::CLUSTER_FW_ALIAS_CREATE,
    alias_update: &request::CLUSTER_FW_ALIAS_UPDATE,
    alias_delete: &request::CLUSTER_FW_ALIAS_DELETE,
    refs: &request::CLUSTER_FW_REFS,
};

static VM: Endpoints = Endpoints {
    options_get: &request::VM_FW_OPTIONS_GET,
    options_put: &request::VM_FW_OPTIONS_PUT,
    rules: RuleEndpoints {
        list: &request::VM_FW_RULES,
        get: &request::VM_FW_RULE_GET,
        create: &request::VM_FW_RULE_CREATE,
        update: &request::VM_FW_RULE_UPDATE,
        delete: &request::VM_FW_RULE_DELETE,
    },
    ipsets: &request::VM_FW_IPSETS,
    ipset_create: &request::VM_FW_IPSET_CREATE,
    ipset_delete: &request::VM_FW_IPSET_DELETE,
    ipset_entries: &request::VM_FW_IPSET_ENTRIES,
    ipset_add: &request::VM_FW_IPSET_ADD,
    ipset_update: &request::VM_FW_IPSET_UPDATE,
    ipset_remove: &request::VM_FW_IPSET_REMOVE,
    aliases: &request::VM_FW_ALIASES,
    alias_create: &request::VM_FW_ALIAS_CREATE,
    alias_update: &request::VM_FW_ALIAS_UPDATE,
    alias_delete: &request::VM_FW_ALIAS_DELETE,
    refs: &request::VM_FW_REFS,
};

/// Firewall calls at one level (`client.cluster_firewall()` or `vm.firewall()`).
#[derive(Debug, Clone)]
pub struct Firewall {
    client: Client,
    /// Path arguments of the level: empty (cluster) or node and vmid.
    scope: Vec<String>,
}

impl Client {
    /// Cluster-level firewall (`/cluster/firewall`).
    pub fn cluster_firewall(&self) -> Firewall {
        Firewall {
            client: self.clone(),
            scope: Vec::new(),
        }
    }
}

impl VmHandle {
    /// VM-level firewall (`/nodes/{node}/qemu/{vmid}/firewall`).
    pub fn firewall(&self) -> Firewall {
        let (n, v) = self.args();
        Firewall {
            client: self.client.clone(),
            scope: vec![n, v],
        }
    }
}

impl Firewall {
    fn eps(&self) -> &'static Endpoints {
        if self.scope.is_empty() { &CLUSTER } else { &VM }
    }

    fn is_vm(&self) -> bool {
        !self.scope.is_empty()
    }

    fn req(&self, ep: &'static Endpoint, extra: &[&str]) -> Request {
        scoped(ep, &self.scope, extra)
    }

    /// `GET .../options`.
    pub async fn options(&self) -> Result<FirewallOptions> {
        self.client
            .call(self.req(self.eps().options_get, &[]))
            .await
    }

    /// `PUT .../options`. VM-only fields on the cluster level are rejected before sending.
    pub async fn set_options(&self, u: &FirewallOptionsUpdate) -> Result<()> {
        let vm_only = [u.dhcp, u.ndp, u.radv, u.macfilter, u.ipfilter];
        if !self.is_vm() && vm_only.iter().any(Option::is_some) {
            return Err(Error::invalid(
                "firewall option",
                "dhcp/ndp/radv/macfilter/ipfilter",
                "only exists at VM level",
            ));
        }
        let mut req = self.req(self.eps().options_put, &[]);
        if let Some(e) = u.enable {
            if self.is_vm() {
                req.push("enable", e);
            } else {
                req.push("enable", u8::from(e));
            }
        }
        req = req
            .opt("policy_in", u.policy_in.as_ref().map(|p| p.to_string()))
            .opt("policy_out", u.policy_out.as_ref().map(|p| p.to_string()))
            .opt("dhcp", u.dhcp)
            .opt("ndp", u.ndp)
            .opt("radv", u.radv)
            .opt("macfilter", u.macfilter)
            .opt("ipfilter", u.ipfilter)
            .opt("digest", u.digest.as_deref());
        if !u.delete.is_empty() {
            req.push("delete", u.delete.join(","));
        }
        self.client.call_unit(req).await
    }

    fn rule_eps(&self) -> &'static RuleEndpoints {
        &self.eps().rules
    }

    /// `GET .../rules`.
    pub async fn rules(&self) -> Result<Vec<FirewallRule>> {
        self.rule_eps().list(&self.client, &self.scope).await
    }

    /// `GET .../rules/{pos}`.
    pub async fn rule(&self, pos: u64) -> Result<FirewallRule> {
        self.rule_eps().get(&self.client, &self.scope, pos).await
    }

    /// `POST .../rules`: PVE inserts new rules at the top (position 0).
    pub async fn create_rule(&self, spec: &RuleSpec) -> Result<()> {
        self.rule_eps()
            .create(&self.client, &self.scope, spec)
            .await
    }

    /// `PUT .../rules/{pos}`: change fields and/or move (`move_to`).
    pub async fn update_rule(&self, pos: u64, spec: &RuleSpec) -> Result<()> {
        self.rule_eps()
            .update(&self.client, &self.scope, pos, spec)
            .await
    }

    /// `DELETE .../rules/{pos}`.
    pub async fn delete_rule(&self, pos: u64, digest: Option<&str>) -> Result<()> {
        self.rule_eps()
            .delete(&self.client, &self.scope, pos, digest)
            .await
    }

    /// `GET .../ipset`.
    pub async fn ipsets(&self) -> Result<Vec<IpSet>> {
        self.client.call(self.req(self.eps().ipsets, &[])).await
    }

    /// `POST .../ipset`.
    pub async fn create_ipset(&self, name: &FirewallName, comment: Option<&str>) -> Result<()> {
        check_opt_comment(comment)?;
        let req = self
            .req(self.eps().ipset_create, &[])
            .param("name", name.as_str())
            .opt("comment", comment);
        self.client.call_unit(req).await
    }

    /// `DELETE .../ipset/{name}`; `force` also deletes a non-empty set.
    pub async fn delete_ipset(&self, name: &FirewallName, force: bool) -> Result<()> {
        let req = self
            .req(self.eps().ipset_delete, &[name.as_str()])
            .opt("force", force.then_some(true));
        self.client.call_unit(req).await
    }

    /// `GET .../ipset/{name}`.
    pub async fn ipset_entries(&self, name: &FirewallName) -> Result<Vec<IpSetEntry>> {
        self.client
            .call(self.req(self.eps().ipset_entries, &[name.as_str()]))
            .await
    }

    /// `POST .../ipset/{name}`: add `cidr`; `nomatch` negates it.
    pub async fn add_ipset_entry(
        &self,
        name: &FirewallName,
        cidr: &str,
        nomatch: bool,
        comment: Option<&str>,
    ) -> Result<()> {
        check_cidr(cidr)?;
        check_opt_comment(comment)?;
        let req = self
            .req(self.eps().ipset_add, &[name.as_str()])
            .param("cidr", cidr)
            .opt("nomatch", nomatch.then_some(true))
            .opt("comment", comment);
        self.client.call_unit(req).await
    }

    /// `PUT .../ipset/{name}/{cidr}`.
    pub async fn update_ipset_entry(
        &self,
        name: &FirewallName,
        cidr: &str,
        nomatch: Option<bool>,
        comment: Option<&str>,
        digest: Option<&str>,
    ) -> Result<()> {
        check_cidr(cidr)?;
        check_opt_comment(comment)?;
        check_opt_digest(digest)?;
        let req = self
            .req(self.eps().ipset_update, &[name.as_str(), cidr])
            .opt("nomatch", nomatch)
            .opt("comment", comment)
            .opt("digest", digest);
        self.client.call_unit(req).await
    }

    /// `DELETE .../ipset/{name}/{cidr}`.
    pub async fn remove_ipset_entry(
        &self,
        name: &FirewallName,
        cidr: &str,
        digest: Option<&str>,
    ) -> Result<()> {
        check_cidr(cidr)?;
        check_opt_digest(digest)?;
        self.client
            .call_unit(
                self.req(self.eps().ipset_remove, &[name.as_str(), cidr])
                    .opt("digest", digest),
            )
            .await
    }

    /// `GET .../aliases`.
    pub async fn aliases(&self) -> Result<Vec<Alias>> {
        self.client.call(self.req(self.eps().aliases, &[])).await
    }

    /// `POST .../aliases`.
    pub async fn create_alias(
        &self,
        name: &FirewallName,
        cidr: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        check_cidr(cidr)?;
        check_opt_comment(comment)?;
        let req = self
            .req(self.eps().alias_create, &[])
            .param("name", name.as_str())
            .param("cidr", cidr)
            .opt("comment", comment);
        self.client.call_unit(req).await
    }

    /// `PUT .../aliases/{name}`.
    pub async fn update_alias(
        &self,
        name: &FirewallName,
        cidr: &str,
        comment: Option<&str>,
        digest: Option<&str>,
    ) -> Result<()> {
        check_cidr(cidr)?;
        check_opt_comment(comment)?;
        check_opt_digest(digest)?;
        let req = self
            .req(self.eps().alias_update, &[name.as_str()])
            .param("cidr", cidr)
            .opt("comment", comment)
            .opt("digest", digest);
        self.client.call_unit(req).await
    }

    /// `DELETE .../aliases/{name}`.
    pub async fn delete_alias(&self, name: &FirewallName, digest: Option<&str>) -> Result<()> {
        check_opt_digest(digest)?;
        self.client
            .call_unit(
                self.req(self.eps().alias_delete, &[name.as_str()])
                    .opt("digest", digest),
            )
            .await
    }

    /// `GET .../refs[?type=alias|ipset]`.
    pub async fn refs(&self, kind: Option<&str>) -> Result<Vec<FirewallRef>> {
        if let Some(k) = kind
            && !matches!(k, "alias" | "ipset")
        {
            return Err(Error::invalid("ref type", k, "must be alias or ipset"));
        }
        self.client
            .call(self.req(self.eps().refs, &[]).opt("type", kind))
            .await
    }
}

/// The five rule endpoints of one rule list (cluster, VM or security group).
struct RuleEndpoints {
    list: &'static Endpoint,
    get: &'static Endpoint,
    create: &'static Endpoint,
    update: &'static Endpoint,
    delete: &'static Endpoint,
}

fn scoped(ep: &'static Endpoint, scope: &[String], extra: &[&str]) -> Request {
    let mut args: Vec<&str> = scope.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    Request::new(ep, &args)
}

fn apply_rule(req: &mut Request, spec: &RuleSpec) {
    for (k, v) in &spec.fields {
        req.push(k, v.as_str());
    }
    if let Some(e) = spec.enable {
        req.push("enable", u8::from(e));
    }
    if let Some(d) = &spec.digest {
        req.push("digest", d.as_str());
    }
}

impl RuleEndpoints {
    async fn list(&self, client: &Client, scope: &[String]) -> Result<Vec<FirewallRule>> {
        client.call(scoped(self.list, scope, &[])).await
    }

    async fn get(&self, client: &Client, scope: &[String], pos: u64) -> Result<FirewallRule> {
        let p = pos.to_string();
        client.call(scoped(self.get, scope, &[&p])).await
    }

    async fn create(&self, client: &Client, scope: &[String], spec: &RuleSpec) -> Result<()> {
        if !spec.fields.iter().any(|(k, _)| *k == "type")
            || spec.moveto.is_some()
            || !spec.delete.is_empty()
        {
            return Err(Error::invalid(
                "rule",
                "update spec",
                "create needs RuleSpec::new without move_to/delete",
            ));
        }
        let mut req = scoped(self.create, scope, &[]);
        let spec = if spec.enable.is_none() {
            spec.clone().enable(true)
        } else {
            spec.clone()
        };
        apply_rule(&mut req, &spec);
        client.call_unit(req).await
    }

    async fn update(
        &self,
        client: &Client,
        scope: &[String],
        pos: u64,
        spec: &RuleSpec,
    ) -> Result<()> {
        let p = pos.to_string();
        let mut req = scoped(self.update, scope, &[&p]);
        apply_rule(&mut req, spec);
        if let Some(m) = spec.moveto {
            req.push("moveto", m);
        }
        if !spec.delete.is_empty() {
            req.push("delete", spec.delete.join(","));
        }
        client.call_unit(req).await
    }

    async fn delete(
        &self,
        client: &Client,
        scope: &[String],
        pos: u64,
        digest: Option<&str>,
    ) -> Result<()> {
        check_opt_digest(digest)?;
        let p = pos.to_string();
        client
            .call_unit(scoped(self.delete, scope, &[&p]).opt("digest", digest))
            .await
    }
}

/// A security group as listed by `GET /cluster/firewall/groups`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct SecurityGroupInfo {
    /// Name (use it in VM rules as `RuleSpec::new("group", name)`).
    pub group: String,
    /// Comment.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub comment: Option<String>,
    /// Digest of the cluster firewall config.
    #[serde(default)]
    pub digest: Option<String>,
}

/// Security groups of the cluster firewall (`client.security_groups()`):
/// `/cluster/firewall/groups`.
#[derive(Debug, Clone)]
pub struct SecurityGroups {
    client: Client,
}

/// The rules of one security group (`client.security_groups().group(&name)`):
/// `/cluster/firewall/groups/{group}`.
#[derive(Debug, Clone)]
pub struct SecurityGroup {
    client: Client,
    /// Path argument: the group name.
    scope: Vec<String>,
}

static GROUP_RULES: RuleEndpoints = RuleEndpoints {
    list: &request::FW_GROUP_RULES,
    get: &request::FW_GROUP_RULE_GET,
    create: &request::FW_GROUP_RULE_CREATE,
    update: &request::FW_GROUP_RULE_UPDATE,
    delete: &request::FW_GROUP_RULE_DELETE,
};

/// PVE limits security group names to 18 characters (on top of [`FirewallName`]'s pattern).
fn check_group_name(name: &FirewallName) -> Result<()> {
    if name.as_str().len() > 18 {
        return Err(Error::invalid(
            "security group name",
            name.as_str(),
            "must be at most 18 characters",
        ));
    }
    Ok(())
}

impl Client {
    /// Cluster firewall security groups (`/cluster/firewall/groups`).
    pub fn security_groups(&self) -> SecurityGroups {
        SecurityGroups {
            client: self.clone(),
        }
    }
}

impl SecurityGroups {
    /// `GET /cluster/firewall/groups`.
    pub async fn list(&self) -> Result<Vec<SecurityGroupInfo>> {
        self.client
            .call(Request::new(&request::FW_GROUPS, &[]))
            .await
    }

    /// `POST /cluster/firewall/groups`: create a group (at most 18 characters).
    pub async fn create(&self, name: &FirewallName, comment: Option<&str>) -> Result<()> {
        check_group_name(name)?;
        if let Some(c) = comment {
            check_text("comment", c, false)?;
        }
        let req = Request::new(&request::FW_GROUP_CREATE, &[])
            .param("group", name.as_str())
            .opt("comment", comment);
        self.client.call_unit(req).await
    }

    /// `POST /cluster/firewall/groups` with `rename` = `group`: change the comment of an
    /// existing group, only if the config still has `digest` (when given).
    pub async fn set_comment(
        &self,
        name: &FirewallName,
        comment: &str,
        digest: Option<&str>,
    ) -> Result<()> {
        check_text("comment", comment, false)?;
        check_opt_digest(digest)?;
        let req = Request::new(&request::FW_GROUP_CREATE, &[])
            .param("group", name.as_str())
            .param("rename", name.as_str())
            .param("comment", comment)
            .opt("digest", digest);
        self.client.call_unit(req).await
    }

    /// `POST /cluster/firewall/groups` with `rename`: rename group `from` to `to` (PVE updates
    /// the references in rules).
    pub async fn rename(
        &self,
        from: &FirewallName,
        to: &FirewallName,
        digest: Option<&str>,
    ) -> Result<()> {
        check_group_name(to)?;
        check_opt_digest(digest)?;
        let req = Request::new(&request::FW_GROUP_CREATE, &[])
            .param("group", to.as_str())
            .param("rename", from.as_str())
            .opt("digest", digest);
        self.client.call_unit(req).await
    }

    /// `DELETE /cluster/firewall/groups/{group}` (PVE refuses while the group has rules).
    pub async fn delete(&self, name: &FirewallName) -> Result<()> {
        self.client
            .call_unit(Request::new(&request::FW_GROUP_DELETE, &[name.as_str()]))
            .await
    }

    /// Rule calls of group `name`.
    pub fn group(&self, name: &FirewallName) -> SecurityGroup {
        SecurityGroup {
            client: self.client.clone(),
            scope: vec![name.to_string()],
        }
    }
}

impl SecurityGroup {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.scope[0]
    }

    /// `GET /cluster/firewall/groups/{group}`: the group's rules.
    pub async fn rules(&self) -> Result<Vec<FirewallRule>> {
        GROUP_RULES.list(&self.client, &self.scope).await
    }

    /// `GET /cluster/firewall/groups/{group}/{pos}`.
    pub async fn rule(&self, pos: u64) -> Result<FirewallRule> {
        GROUP_RULES.get(&self.client, &self.scope, pos).await
    }

    /// `POST /cluster/firewall/groups/{group}`: PVE inserts new rules at the top. Sent with
    /// `enable=1` unless the spec says otherwise, like [`Firewall::create_rule`].
    pub async fn create_rule(&self, spec: &RuleSpec) -> Result<()> {
        GROUP_RULES.create(&self.client, &self.scope, spec).await
    }

    /// `PUT /cluster/firewall/groups/{group}/{pos}`: change fields and/or move.
    pub async fn update_rule(&self, pos: u64, spec: &RuleSpec) -> Result<()> {
        GROUP_RULES
            .update(&self.client, &self.scope, pos, spec)
            .await
    }

    /// `DELETE /cluster/firewall/groups/{group}/{pos}`, only if the group still has `digest`
    /// (when given).
    pub async fn delete_rule(&self, pos: u64, digest: Option<&str>) -> Result<()> {
        GROUP_RULES
            .delete(&self.client, &self.scope, pos, digest)
            .await
    }
}
