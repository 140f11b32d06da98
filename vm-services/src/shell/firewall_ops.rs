//! Firewall: policies and rules, each validated through `firewall-model` before it is sent,
//! the lockout guard, and the provider-managed `ipfilter-net0`.

use std::collections::BTreeMap;

use pve_vps_api::api::firewall::{FirewallOptionsUpdate, FirewallRule, Policy, RuleSpec};
use pve_vps_firewall::{
    Alias, AliasName, ApiRule, ConnectionCheck, DecidedBy, FileKind, FileRef, FlowDecision, FwFile,
    GroupName, Guest, GuestKind, IpSet, IpSetEntry, IpSetName, ManagementPorts, Nic, Node, Rule,
    RuleKind, SectionRef, SecurityGroup, Zone,
};
use serde::Serialize;

use super::ClientArea;
use crate::error::Error;
use crate::firewall::{
    self as fwcore, ConnectionDecider, ConnectionQuestion, ConnectionTest, SavedAlias,
    SavedFirewall, SavedIpSet, SavedIpSetEntry, TestProto, TrafficDirection,
};
use crate::permissions::Feature;
use crate::product::Proto;
use crate::pve::VmConfig;
use crate::service::Service;

/// One rule as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerRule {
    /// Position (evaluation order).
    pub pos: usize,
    /// The rule as the API sends it.
    pub rule: ApiRule,
    /// The rule in `.fw` syntax (`IN ACCEPT -p tcp -dport 22`).
    pub text: String,
}

/// The firewall page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirewallView {
    /// Whether the VM's firewall is on.
    pub enabled: bool,
    /// Input policy (default DROP).
    pub policy_in: String,
    /// Output policy (default ACCEPT).
    pub policy_out: String,
    /// The rules in order.
    pub rules: Vec<CustomerRule>,
}

fn to_api_rule(r: &FirewallRule) -> ApiRule {
    ApiRule {
        kind: r.kind.clone(),
        action: r.action.clone(),
        macro_name: r.macro_name.clone(),
        iface: r.iface.clone(),
        source: r.source.clone(),
        dest: r.dest.clone(),
        proto: r.proto.clone(),
        sport: r.sport.clone(),
        dport: r.dport.clone(),
        icmp_type: r.icmp_type.clone(),
        log: r.log.clone(),
        enable: Some(u64::from(r.enable)),
        comment: r.comment.clone(),
        pos: Some(r.pos),
        digest: None,
    }
}

fn invalid(source: pve_vps_firewall::Error) -> Error {
    Error::InvalidRule {
        source: Box::new(source),
    }
}

fn api_err(e: pve_vps_api::Error) -> Error {
    Error::invalid("firewall rule", "", e.to_string())
}

/// Validates a customer's rule: `in`/`out` only, every field through the model.
fn validate(rule: &ApiRule) -> Result<Rule, Error> {
    let r = rule.to_rule(FileKind::Guest, false).map_err(invalid)?;
    match r.kind {
        pve_vps_firewall::RuleKind::Group(_) => Err(Error::invalid(
            "firewall rule",
            rule.kind.clone(),
            "security groups are managed by the provider",
        )),
        _ => Ok(r),
    }
}

/// The request fields of a validated rule (strict: what the model prints).
fn spec_of(rule: &Rule) -> Result<RuleSpec, Error> {
    let a = ApiRule::from_rule(rule);
    let mut s = RuleSpec::new(&a.kind, &a.action).map_err(api_err)?;
    let set = |s: RuleSpec,
               v: &Option<String>,
               f: fn(RuleSpec, &str) -> pve_vps_api::Result<RuleSpec>| {
        match v {
            Some(v) => f(s, v).map_err(api_err),
            None => Ok(s),
        }
    };
    s = set(s, &a.macro_name, RuleSpec::macro_name)?;
    s = set(s, &a.iface, RuleSpec::iface)?;
    s = set(s, &a.source, RuleSpec::source)?;
    s = set(s, &a.dest, RuleSpec::dest)?;
    s = set(s, &a.proto, RuleSpec::proto)?;
    s = set(s, &a.sport, RuleSpec::sport)?;
    s = set(s, &a.dport, RuleSpec::dport)?;
    s = set(s, &a.icmp_type, RuleSpec::icmp_type)?;
    s = set(s, &a.log, RuleSpec::log)?;
    s = set(s, &a.comment, RuleSpec::comment)?;
    Ok(s.enable(rule.enabled))
}

/// A cluster or VM alias for the model; one the model cannot read is skipped, as
/// `pve-firewall` skips a bad line.
fn model_alias(a: &pve_vps_api::api::firewall::Alias) -> Option<Alias> {
    Some(Alias {
        name: AliasName::new(&a.name).ok()?,
        cidr: a.cidr.parse().ok()?,
        comment: None,
    })
}

/// A security group for the model, its rules in order (unreadable ones skipped).
fn model_group(name: GroupName, mut rules: Vec<FirewallRule>) -> SecurityGroup {
    rules.sort_by_key(|r| r.pos);
    SecurityGroup {
        name,
        comment: None,
        rules: rules
            .iter()
            .filter_map(|r| to_api_rule(r).to_rule(FileKind::Cluster, true).ok())
            .collect(),
    }
}

/// Every IP set of one level with its entries, for the model (unreadable entries skipped).
async fn read_ipsets(
    fw: &pve_vps_api::api::firewall::Firewall,
    level: &'static str,
) -> Result<Vec<IpSet>, Error> {
    let sets = fw
        .ipsets()
        .await
        .map_err(Error::pve(format!("list {level} ipsets")))?;
    let reads = sets.iter().filter_map(|set| {
        let name = IpSetName::new(&set.name).ok()?;
        let api_name: pve_vps_api::FirewallName = set.name.parse().ok()?;
        Some(async move {
            let entries = fw
                .ipset_entries(&api_name)
                .await
                .map_err(Error::pve(format!("read {level} ipset")))?;
            Ok::<_, Error>(IpSet {
                name,
                comment: None,
                entries: entries
                    .iter()
                    .filter_map(|e| {
                        Some(IpSetEntry {
                            nomatch: e.nomatch,
                            value: e.cidr.parse().ok()?,
                            comment: None,
                        })
                    })
                    .collect(),
            })
        })
    });
    futures_util::future::try_join_all(reads).await
}

/// An address, network or range (what proxmox-api's typed IP set call accepts).
fn is_literal_cidr(v: &str) -> bool {
    v.split('-')
        .all(|p| p.parse::<std::net::IpAddr>().is_ok() || p.parse::<ipnet::IpNet>().is_ok())
}

/// `pos` names one of the `len` rules.
fn check_position(pos: usize, len: usize) -> Result<(), Error> {
    if pos >= len {
        return Err(Error::RulePosition { pos, len });
    }
    Ok(())
}

/// The rules PVE holds, read strictly (for a change that rewrites them): one the model cannot
/// read refuses the change.
fn strict_rules(api: &[ApiRule]) -> Result<Vec<Rule>, Error> {
    api.iter()
        .map(|r| r.to_rule(FileKind::Guest, false).map_err(invalid))
        .collect()
}

fn parse_policy(s: &str) -> Result<Policy, Error> {
    match s.to_ascii_uppercase().as_str() {
        "ACCEPT" => Ok(Policy::Accept),
        "DROP" => Ok(Policy::Drop),
        "REJECT" => Ok(Policy::Reject),
        _ => Err(Error::invalid(
            "firewall policy",
            s,
            "must be ACCEPT, DROP or REJECT",
        )),
    }
}

/// What the model needs to evaluate the guest: its options, rules and NIC.
#[derive(Debug, Clone)]
struct FwState {
    enabled: bool,
    policy_in: String,
    policy_out: String,
    rules: Vec<Rule>,
    /// The table position of each of `rules` (a rule the model cannot read is left out).
    rule_pos: Vec<usize>,
    api: Vec<ApiRule>,
}

impl FwState {
    fn file(&self) -> Result<FwFile, Error> {
        let mut f = FwFile::new(FileKind::Guest);
        f.options.enable = Some(self.enabled);
        f.options.policy_in = Some(self.policy_in.parse().map_err(invalid)?);
        f.options.policy_out = Some(self.policy_out.parse().map_err(invalid)?);
        f.rules = self.rules.clone();
        Ok(f)
    }
}

/// What decided `d`, in the customer's terms: a rule of the VM's own file by its table
/// position (`st.rule_pos`), any other rule by where it is.
fn describe_decision(
    node: &Node,
    d: &FlowDecision,
    st: &FwState,
    vmid: u32,
    dir: TrafficDirection,
) -> ConnectionTest {
    let decider = match d.deciding().map(|c| &c.decided_by) {
        Some(DecidedBy::Rule(r)) => {
            let text = node.rule(r).map_or_else(String::new, |m| m.to_string());
            match (&r.file, &r.section, st.rule_pos.get(r.index)) {
                (FileRef::Guest(id), SectionRef::Rules, Some(pos)) if *id == vmid => {
                    ConnectionDecider::Rule { pos: *pos, text }
                }
                _ => ConnectionDecider::ProviderRule {
                    location: r.to_string(),
                    text,
                },
            }
        }
        Some(DecidedBy::Policy) => ConnectionDecider::Policy {
            direction: dir,
            policy: match dir {
                TrafficDirection::In => st.policy_in.clone(),
                TrafficDirection::Out => st.policy_out.clone(),
            },
        },
        Some(DecidedBy::NotFiltered(_)) | None => ConnectionDecider::NotFiltered {
            reason: if st.enabled {
                "the firewall does not filter this connection".into()
            } else {
                "the VM's firewall is off: nothing is filtered".into()
            },
        },
        Some(other) => ConnectionDecider::Standard {
            what: other.to_string(),
        },
    };
    ConnectionTest {
        verdict: d.verdict.to_string(),
        decider,
    }
}

impl ClientArea {
    async fn fw_state(&self, service: &Service) -> Result<FwState, Error> {
        let fw = self.vm(service)?.firewall();
        let (opts, rules) = futures_util::future::try_join(
            async {
                fw.options()
                    .await
                    .map_err(Error::pve("read firewall options"))
            },
            async { fw.rules().await.map_err(Error::pve("read firewall rules")) },
        )
        .await?;
        let mut rules = rules;
        rules.sort_by_key(|r| r.pos);
        let api: Vec<ApiRule> = rules.iter().map(to_api_rule).collect();
        // Rules PVE holds are read leniently: one the model cannot read is kept out of the
        // lockout evaluation but still listed.
        let (rule_pos, model) = api
            .iter()
            .enumerate()
            .filter_map(|(pos, r)| Some((pos, r.to_rule(FileKind::Guest, false).ok()?)))
            .unzip();
        Ok(FwState {
            enabled: opts.enable.unwrap_or(false),
            policy_in: opts
                .policy_in
                .map_or_else(|| "DROP".to_owned(), |p| p.as_str().to_owned()),
            policy_out: opts
                .policy_out
                .map_or_else(|| "ACCEPT".to_owned(), |p| p.as_str().to_owned()),
            rules: model,
            rule_pos,
            api,
        })
    }

    /// The firewall page.
    pub async fn firewall(&self, service: &Service) -> Result<FirewallView, Error> {
        self.product_with(service, Feature::Firewall)?;
        let st = self.fw_state(service).await?;
        Ok(FirewallView {
            enabled: st.enabled,
            policy_in: st.policy_in.clone(),
            policy_out: st.policy_out.clone(),
            rules: st
                .api
                .iter()
                .enumerate()
                .map(|(pos, r)| CustomerRule {
                    pos,
                    text: r
                        .to_rule(FileKind::Guest, false)
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    rule: ApiRule {
                        pos: Some(pos as u64),
                        ..r.clone()
                    },
                })
                .collect(),
        })
    }

    /// "Test a connection": whether a new connection to the VM (or from it) passes its
    /// firewall, decided by `firewall-model` as `pve-firewall` decides it, with what decided
    /// it (one of the VM's rules with its table position, a provider rule of the cluster or
    /// of a security group, the VM's policy, a standard chain, or nothing filtering it).
    ///
    /// The VM is evaluated as PVE holds it: its rules, options and `ipfilter`, the cluster
    /// `enable` option, the cluster's and the VM's IP sets and aliases (so rules naming
    /// `+dc/management` or an alias are decided on their members), the security groups its
    /// `GROUP` rules name, and `net0` with its `firewall=` flag. An outgoing connection
    /// leaves from the service's address of the remote address's family. Nothing is sent to
    /// the VM and nothing changes; it is read-only, so it works while a lock holds too.
    ///
    /// ```no_run
    /// # async fn demo(area: &pve_vps_services::ClientArea, svc: &pve_vps_services::service::Service)
    /// # -> Result<(), pve_vps_services::Error> {
    /// use pve_vps_services::firewall::ConnectionQuestion;
    ///
    /// let q = ConnectionQuestion::parse("in", "tcp", "443", "198.51.100.7")?;
    /// let answer = area.test_connection(svc, &q).await?;
    /// println!("{}: {}", answer.verdict, answer.sentence());
    /// # Ok(()) }
    /// ```
    pub async fn test_connection(
        &self,
        service: &Service,
        question: &ConnectionQuestion,
    ) -> Result<ConnectionTest, Error> {
        self.product_with(service, Feature::Firewall)?;
        let (st, config) =
            futures_util::future::try_join(self.fw_state(service), self.config(service)).await?;
        let Some(node) = self
            .firewall_nodes(service, &config, &[&st])
            .await?
            .and_then(|mut n| n.pop())
        else {
            return Ok(ConnectionTest {
                verdict: "ACCEPT".into(),
                decider: ConnectionDecider::NotFiltered {
                    reason: "the firewall does not filter this VM's network (its NIC's or the \
                             cluster's firewall is off)"
                        .into(),
                },
            });
        };
        let vmid = service.vmid().get();
        let remote = question.remote();
        let proto = match (question.proto(), remote) {
            (TestProto::Icmp, std::net::IpAddr::V6(_)) => "icmpv6",
            (p, _) => p.as_str(),
        };
        let check = ConnectionCheck::to_guest(vmid, proto, question.port(), remote);
        let mut packet = check.packet().map_err(invalid)?;
        if question.direction() == TrafficDirection::Out {
            packet.from = Zone::Guest { vmid, nic: Some(0) };
            packet.to = Zone::Outside;
            packet.source = service
                .addresses()
                .into_iter()
                .find(|a| a.is_ipv4() == remote.is_ipv4());
            packet.dest = Some(remote);
        }
        let decision = node.evaluate(&packet).map_err(invalid)?;
        Ok(describe_decision(
            &node,
            &decision,
            &st,
            vmid,
            question.direction(),
        ))
    }

    /// Refuses (unless confirmed) a change that blocks a product management port that was
    /// reachable from one of the configured management sources, evaluated by
    /// `firewall-model` on the cluster's firewall as PVE holds it: the cluster `enable`
    /// option, the cluster's and the VM's IP sets and aliases (so `+dc/name`, `+name`,
    /// `dc/alias` and `alias` rules resolve as `pve-firewall` resolves them), and `net0`'s
    /// `firewall=` flag. When the cluster firewall or the NIC's firewall is off nothing is
    /// filtered, so no change can lock the customer out.
    ///
    /// Customers cannot add `GROUP` rules, but a provider's `GROUP` rule in the VM's file is
    /// evaluated with the security group's rules (read only when such a rule exists; a group
    /// that does not exist is skipped, as `pve-firewall` skips it).
    async fn lockout_guard(
        &self,
        service: &Service,
        config: &VmConfig,
        before: &FwState,
        after: &FwState,
        confirm: bool,
    ) -> Result<(), Error> {
        if confirm {
            return Ok(());
        }
        let product = self.product(service)?;
        let vmid = service.vmid().get();
        let ports = ManagementPorts {
            target: Zone::Guest { vmid, nic: Some(0) },
            ports: product
                .lockout_ports
                .iter()
                .map(|p| {
                    let proto = match p.proto {
                        Proto::Tcp => pve_vps_firewall::Protocol::TCP,
                        Proto::Udp => pve_vps_firewall::Protocol::UDP,
                    };
                    (proto, p.port)
                })
                .collect(),
        };
        if ports.ports.is_empty() || service.addresses().is_empty() {
            return Ok(());
        }
        let Some(nodes) = self
            .firewall_nodes(service, config, &[before, after])
            .await?
        else {
            return Ok(());
        };
        let (nb, na) = (&nodes[0], &nodes[1]);
        let files = [
            &nb.cluster,
            &nb.guests[&vmid].firewall,
            &na.guests[&vmid].firewall,
        ];
        let mut blocked: BTreeMap<(u8, u16), std::net::IpAddr> = BTreeMap::new();
        for src in fwcore::probe_addresses(&self.inner.lockout_sources, &files) {
            let report = pve_vps_firewall::lockout_check(nb, na, &ports, src).map_err(invalid)?;
            for c in report.newly_blocked() {
                blocked.entry((c.proto, c.port)).or_insert(src);
            }
        }
        if blocked.is_empty() {
            return Ok(());
        }
        let ports = blocked
            .iter()
            .map(|((proto, port), src)| {
                let p = if *proto == 17 { "udp" } else { "tcp" };
                format!("{p}/{port} from {src}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::Lockout { ports })
    }

    /// The VM's firewall as `pve-firewall` sees it, once for each of `states` (its own
    /// rules and options in that state): the cluster `enable` option, the cluster's and the
    /// VM's IP sets and aliases, the security groups the rules name, and `net0` with its
    /// bridge and the service's addresses. `None` when nothing is filtered: `net0` has no
    /// `firewall=1` or the cluster firewall is off.
    async fn firewall_nodes(
        &self,
        service: &Service,
        config: &VmConfig,
        states: &[&FwState],
    ) -> Result<Option<Vec<Node>>, Error> {
        let product = self.product(service)?;
        let vmid = service.vmid().get();
        let net0 = config
            .nets()?
            .into_iter()
            .find(|(k, _)| k == "net0")
            .map(|(_, d)| d);
        let Some(net0) = net0.filter(|d| d.firewall == Some(true)) else {
            // PVE does not filter a NIC without `firewall=1`.
            return Ok(None);
        };
        let cluster_fw = self.inner.client.cluster_firewall();
        let cluster_opts = cluster_fw
            .options()
            .await
            .map_err(Error::pve("read cluster firewall options"))?;
        if !cluster_opts.enable.unwrap_or(false) {
            // The cluster firewall is off: PVE filters nothing, on any VM.
            return Ok(None);
        }
        let vm_fw = self.vm(service)?.firewall();
        let (cluster_sets, cluster_aliases, vm_sets, vm_aliases) = futures_util::future::try_join4(
            read_ipsets(&cluster_fw, "cluster"),
            async {
                cluster_fw
                    .aliases()
                    .await
                    .map_err(Error::pve("read cluster firewall aliases"))
            },
            read_ipsets(&vm_fw, "vm"),
            async {
                vm_fw
                    .aliases()
                    .await
                    .map_err(Error::pve("read vm firewall aliases"))
            },
        )
        .await?;
        let mut cluster = FwFile::new(FileKind::Cluster);
        cluster.options.enable = Some(true);
        cluster.groups = self.read_groups(states).await?;
        cluster.ipsets = cluster_sets;
        cluster.aliases = cluster_aliases.iter().filter_map(model_alias).collect();
        let vm_aliases: Vec<Alias> = vm_aliases.iter().filter_map(model_alias).collect();
        let mac: pve_vps_firewall::MacAddr = service.mac.to_string().parse().map_err(invalid)?;
        let node = |st: &FwState| -> Result<Node, Error> {
            let mut file = st.file()?;
            file.ipsets = vm_sets.clone();
            file.aliases = vm_aliases.clone();
            let mut n = Node::new();
            n.cluster = cluster.clone();
            n.guests.insert(
                vmid,
                Guest {
                    vmid,
                    kind: GuestKind::Vm,
                    firewall: file,
                    nics: vec![Nic {
                        index: 0,
                        mac,
                        bridge: net0
                            .bridge
                            .clone()
                            .unwrap_or_else(|| product.network.bridge.clone()),
                        firewall: true,
                        ips: service.addresses(),
                    }],
                },
            );
            Ok(n)
        };
        states
            .iter()
            .map(|st| node(st))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The security groups the `GROUP` rules of `states` name, with their rules.
    async fn read_groups(&self, states: &[&FwState]) -> Result<Vec<SecurityGroup>, Error> {
        let mut names: Vec<GroupName> = Vec::new();
        for r in states.iter().flat_map(|st| &st.rules) {
            if let RuleKind::Group(g) = &r.kind
                && !names.contains(g)
            {
                names.push(g.clone());
            }
        }
        let groups = self.inner.client.security_groups();
        let reads = names.into_iter().filter_map(|name| {
            let api_name: pve_vps_api::FirewallName = name.to_string().parse().ok()?;
            let groups = groups.clone();
            Some(async move {
                use pve_vps_api::OptionalExt;
                let rules = groups
                    .group(&api_name)
                    .rules()
                    .await
                    .optional()
                    .map_err(Error::pve("read security group"))?;
                Ok::<_, Error>(rules.map(|r| model_group(name, r)))
            })
        });
        Ok(futures_util::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn fw_prepare(&self, service: &Service) -> Result<(FwState, VmConfig), Error> {
        self.check_not_busy(service).await?;
        let live = self.require(service, Feature::Firewall).await?;
        Ok((self.fw_state(service).await?, live.config))
    }

    /// Sets the input and output policies.
    pub async fn set_firewall_policies(
        &self,
        service: &Service,
        policy_in: &str,
        policy_out: &str,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let (pin, pout) = (parse_policy(policy_in)?, parse_policy(policy_out)?);
        let (before, config) = self.fw_prepare(service).await?;
        let after = FwState {
            policy_in: pin.as_str().to_owned(),
            policy_out: pout.as_str().to_owned(),
            ..before.clone()
        };
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        self.vm(service)?
            .firewall()
            .set_options(&FirewallOptionsUpdate::new().policy_in(pin).policy_out(pout))
            .await
            .map_err(Error::pve("set firewall policies"))?;
        self.sync_ipfilter(service, None).await
    }

    /// Turns the VM's firewall (and the anti-spoofing filter) on or off.
    pub async fn set_firewall_enabled(
        &self,
        service: &Service,
        enabled: bool,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let (before, config) = self.fw_prepare(service).await?;
        let after = FwState {
            enabled,
            ..before.clone()
        };
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        self.sync_ipfilter(service, None).await?;
        self.vm(service)?
            .firewall()
            .set_options(
                &FirewallOptionsUpdate::new()
                    .enable(enabled)
                    .ipfilter(enabled),
            )
            .await
            .map_err(Error::pve("set firewall enable"))
    }

    /// Adds a rule at the customer's position (PVE inserts at the top, then it is moved).
    pub async fn add_firewall_rule(
        &self,
        service: &Service,
        rule: &ApiRule,
        position: usize,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let model = validate(rule)?;
        let (before, config) = self.fw_prepare(service).await?;
        let mv = fwcore::insert_position(position, before.api.len())?;
        let mut after = before.clone();
        after
            .rules
            .insert(position.min(after.rules.len()), model.clone());
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        let fw = self.vm(service)?.firewall();
        fw.create_rule(&spec_of(&model)?)
            .await
            .map_err(Error::pve("create firewall rule"))?;
        if let Some(mv) = mv {
            fw.update_rule(mv.pos as u64, &RuleSpec::update().move_to(mv.moveto as u64))
                .await
                .map_err(Error::pve("move firewall rule"))?;
        }
        self.sync_ipfilter(service, None).await
    }

    /// Replaces the rule at `pos`.
    pub async fn update_firewall_rule(
        &self,
        service: &Service,
        pos: usize,
        rule: &ApiRule,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let model = validate(rule)?;
        let (before, config) = self.fw_prepare(service).await?;
        check_position(pos, before.api.len())?;
        let mut after = before.clone();
        let mut rules = strict_rules(&before.api)?;
        rules[pos] = model.clone();
        after.rules = rules;
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        let mut spec = spec_of(&model)?;
        let sent = ApiRule::from_rule(&model);
        let had = &before.api[pos];
        for (key, v, old) in [
            ("macro", &sent.macro_name, &had.macro_name),
            ("iface", &sent.iface, &had.iface),
            ("source", &sent.source, &had.source),
            ("dest", &sent.dest, &had.dest),
            ("proto", &sent.proto, &had.proto),
            ("sport", &sent.sport, &had.sport),
            ("dport", &sent.dport, &had.dport),
            ("icmp-type", &sent.icmp_type, &had.icmp_type),
            ("log", &sent.log, &had.log),
            ("comment", &sent.comment, &had.comment),
        ] {
            if v.is_none() && old.is_some() {
                spec = spec.delete(key).map_err(api_err)?;
            }
        }
        self.vm(service)?
            .firewall()
            .update_rule(pos as u64, &spec)
            .await
            .map_err(Error::pve("update firewall rule"))?;
        self.sync_ipfilter(service, None).await
    }

    /// Deletes the rule at `pos`.
    pub async fn delete_firewall_rule(
        &self,
        service: &Service,
        pos: usize,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let (before, config) = self.fw_prepare(service).await?;
        check_position(pos, before.api.len())?;
        let mut after = before.clone();
        after.rules = before
            .api
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pos)
            .filter_map(|(_, r)| r.to_rule(FileKind::Guest, false).ok())
            .collect();
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        self.vm(service)?
            .firewall()
            .delete_rule(pos as u64, None)
            .await
            .map_err(Error::pve("delete firewall rule"))?;
        self.sync_ipfilter(service, None).await
    }

    /// Drag and drop: moves the rule at `from` to index `to`.
    pub async fn move_firewall_rule(
        &self,
        service: &Service,
        from: usize,
        to: usize,
        confirm_lockout: bool,
    ) -> Result<(), Error> {
        let (before, config) = self.fw_prepare(service).await?;
        let Some(mv) = fwcore::drag(from, to, before.api.len())? else {
            return Ok(());
        };
        let mut after = before.clone();
        let rules = strict_rules(&before.api)?;
        after.rules = fwcore::apply_move(&rules, mv);
        self.lockout_guard(service, &config, &before, &after, confirm_lockout)
            .await?;
        self.vm(service)?
            .firewall()
            .update_rule(mv.pos as u64, &RuleSpec::update().move_to(mv.moveto as u64))
            .await
            .map_err(Error::pve("move firewall rule"))?;
        self.sync_ipfilter(service, None).await
    }

    /// Reads the customer's firewall (options, rules, IP sets but `ipfilter-netN`, aliases) to
    /// keep it across a reinstall.
    pub(crate) async fn save_firewall(&self, service: &Service) -> Result<SavedFirewall, Error> {
        let fw = self.vm(service)?.firewall();
        let (st, sets, aliases) = futures_util::future::try_join3(
            self.fw_state(service),
            async { fw.ipsets().await.map_err(Error::pve("list vm ipsets")) },
            async { fw.aliases().await.map_err(Error::pve("read vm aliases")) },
        )
        .await?;
        let mut ipsets = Vec::new();
        for set in sets {
            if fwcore::check_customer_ipset(&set.name).is_err() {
                continue;
            }
            let name: pve_vps_api::FirewallName =
                set.name.parse().map_err(|e: pve_vps_api::Error| {
                    Error::invalid("ipset", &set.name, e.to_string())
                })?;
            let entries = fw
                .ipset_entries(&name)
                .await
                .map_err(Error::pve("read vm ipset"))?;
            ipsets.push(SavedIpSet {
                name: set.name,
                comment: set.comment,
                entries: entries
                    .into_iter()
                    .map(|e| SavedIpSetEntry {
                        cidr: e.cidr,
                        nomatch: e.nomatch,
                        comment: e.comment,
                    })
                    .collect(),
            });
        }
        Ok(SavedFirewall {
            enable: Some(st.enabled),
            policy_in: Some(st.policy_in),
            policy_out: Some(st.policy_out),
            rules: st.api,
            ipsets,
            aliases: aliases
                .into_iter()
                .map(|a| SavedAlias {
                    name: a.name,
                    cidr: a.cidr,
                    comment: a.comment,
                })
                .collect(),
        })
    }

    /// Writes saved aliases and IP sets back (idempotent: only what differs is sent; an
    /// alias or set the saved firewall does not have is left alone, an entry of a saved set
    /// that was not saved is removed).
    async fn restore_ipsets_aliases(
        &self,
        service: &Service,
        saved: &SavedFirewall,
    ) -> Result<(), Error> {
        let fw = self.vm(service)?.firewall();
        let fname = |n: &str| -> Result<pve_vps_api::FirewallName, Error> {
            n.parse()
                .map_err(|e: pve_vps_api::Error| Error::invalid("firewall name", n, e.to_string()))
        };
        let current = fw.aliases().await.map_err(Error::pve("read vm aliases"))?;
        for a in &saved.aliases {
            let name = fname(&a.name)?;
            match current
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(&a.name))
            {
                Some(c) if c.cidr == a.cidr && c.comment == a.comment => {}
                Some(_) => fw
                    .update_alias(&name, &a.cidr, a.comment.as_deref(), None)
                    .await
                    .map_err(Error::pve("restore vm alias"))?,
                None => fw
                    .create_alias(&name, &a.cidr, a.comment.as_deref())
                    .await
                    .map_err(Error::pve("restore vm alias"))?,
            }
        }
        let sets = fw.ipsets().await.map_err(Error::pve("list vm ipsets"))?;
        for set in &saved.ipsets {
            let name = fname(&set.name)?;
            let have = if sets.iter().any(|s| s.name.eq_ignore_ascii_case(&set.name)) {
                fw.ipset_entries(&name)
                    .await
                    .map_err(Error::pve("read vm ipset"))?
            } else {
                fw.create_ipset(&name, set.comment.as_deref())
                    .await
                    .map_err(Error::pve("restore vm ipset"))?;
                Vec::new()
            };
            for e in &have {
                if !set.entries.iter().any(|s| s.cidr == e.cidr) {
                    fw.remove_ipset_entry(&name, &e.cidr, None)
                        .await
                        .map_err(Error::pve("restore vm ipset entry"))?;
                }
            }
            for e in &set.entries {
                match have.iter().find(|h| h.cidr == e.cidr) {
                    Some(h) if h.nomatch == e.nomatch && h.comment == e.comment => {}
                    Some(_) => fw
                        .update_ipset_entry(
                            &name,
                            &e.cidr,
                            Some(e.nomatch),
                            e.comment.as_deref(),
                            None,
                        )
                        .await
                        .map_err(Error::pve("restore vm ipset entry"))?,
                    None if is_literal_cidr(&e.cidr) => fw
                        .add_ipset_entry(&name, &e.cidr, e.nomatch, e.comment.as_deref())
                        .await
                        .map_err(Error::pve("restore vm ipset entry"))?,
                    None => {
                        // An alias entry: proxmox-api's typed call takes addresses only.
                        let path = format!(
                            "/nodes/{}/qemu/{}/firewall/ipset/{}",
                            service.vm.node(),
                            service.vmid(),
                            set.name
                        );
                        let mut params = vec![("cidr", e.cidr.as_str())];
                        if e.nomatch {
                            params.push(("nomatch", "1"));
                        }
                        if let Some(c) = &e.comment {
                            params.push(("comment", c.as_str()));
                        }
                        let _: serde_json::Value = self
                            .inner
                            .client
                            .post(&path, &params)
                            .await
                            .map_err(Error::pve("restore vm ipset entry"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a saved firewall back (idempotent: nothing is sent when it already matches).
    pub(crate) async fn restore_firewall(
        &self,
        service: &Service,
        saved: &SavedFirewall,
    ) -> Result<(), Error> {
        let fw = self.vm(service)?.firewall();
        let cur = self.fw_state(service).await?;
        let mut u = FirewallOptionsUpdate::new();
        if let Some(e) = saved.enable {
            u = u.enable(e);
        }
        if let Some(p) = &saved.policy_in {
            u = u.policy_in(parse_policy(p)?);
        }
        if let Some(p) = &saved.policy_out {
            u = u.policy_out(parse_policy(p)?);
        }
        fw.set_options(&u)
            .await
            .map_err(Error::pve("restore firewall options"))?;
        // Rules may refer to the sets and aliases: those first.
        self.restore_ipsets_aliases(service, saved).await?;
        let strip = |r: &ApiRule| ApiRule {
            pos: None,
            digest: None,
            ..r.clone()
        };
        let same = cur.api.len() == saved.rules.len()
            && cur
                .api
                .iter()
                .zip(&saved.rules)
                .all(|(a, b)| strip(a) == strip(b));
        if same {
            return Ok(());
        }
        for _ in 0..cur.api.len() {
            fw.delete_rule(0, None)
                .await
                .map_err(Error::pve("clear firewall rules"))?;
        }
        // Each new rule goes to the top: create them last first.
        for r in saved.rules.iter().rev() {
            let model = r.to_rule(FileKind::Guest, false).map_err(invalid)?;
            fw.create_rule(&spec_of(&model)?)
                .await
                .map_err(Error::pve("restore firewall rule"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_security_group_decides_like_pve() {
        let rules: Vec<FirewallRule> = serde_json::from_str(
            r#"[{"pos":1,"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1},
                {"pos":0,"type":"in","action":"DROP","proto":"tcp","dport":"22","source":"203.0.113.0/24","enable":1}]"#,
        )
        .unwrap();
        let g = model_group(GroupName::new("provider").unwrap(), rules);
        assert_eq!(g.rules.len(), 2);
        assert_eq!(
            g.rules[0].to_string(),
            "IN DROP -source 203.0.113.0/24 -p tcp -dport 22"
        );
        let mut node = Node::new();
        node.cluster.options.enable = Some(true);
        node.cluster.groups = vec![g];
        let mut guest = FwFile::new(FileKind::Guest);
        guest.options.enable = Some(true);
        guest.rules = vec![
            ApiRule::from_json(r#"{"type":"group","action":"provider","enable":1}"#)
                .unwrap()
                .to_rule(FileKind::Guest, false)
                .unwrap(),
        ];
        node.guests.insert(
            104,
            Guest {
                vmid: 104,
                kind: GuestKind::Vm,
                firewall: guest,
                nics: vec![Nic {
                    index: 0,
                    mac: "bc:24:11:00:00:68".parse().unwrap(),
                    bridge: "vmbr0".into(),
                    firewall: true,
                    ips: vec!["198.51.100.104".parse().unwrap()],
                }],
            },
        );
        let ports = ManagementPorts::ssh(Zone::Guest {
            vmid: 104,
            nic: Some(0),
        });
        let from = |ip: &str| {
            pve_vps_firewall::lockout_check(&node, &node, &ports, ip.parse().unwrap())
                .unwrap()
                .reachable_after()
        };
        assert!(!from("203.0.113.9"));
        assert!(from("192.0.2.9"));
    }
}
