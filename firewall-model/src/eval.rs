//! Packets, decisions, and the reference evaluator (a direct reading of PVE's semantics).

use std::fmt;
use std::net::IpAddr;

use crate::addr::{Address, Cidr, Family, IpSetValue, RefScope};
use crate::model::{Alias, FileKind, FwFile, IpSet, Rule, RuleKind};
use crate::node::{Guest, GuestKind, MacAddr, Nic, Node};
use crate::proto::{IcmpType, PortList, Protocol, numbers};
use crate::text::{Action, Direction, GroupName, Iface, Verdict};

/// A packet as one chain sees it (the first packet of a connection).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub source: IpAddr,
    /// Destination address (same family as `source`).
    pub dest: IpAddr,
    /// Source port, for port protocols.
    pub sport: Option<u16>,
    /// Destination port, for port protocols.
    pub dport: Option<u16>,
    /// ICMP type and code, for ICMP/ICMPv6.
    pub icmp: Option<(u8, u8)>,
    /// Interface the chain sees (`netN` for guest chains, a host interface for host chains).
    pub iface: Option<Iface>,
    /// Source MAC, when the sender's MAC may differ from its NIC's (spoofing tests).
    pub source_mac: Option<MacAddr>,
}

impl Packet {
    /// A TCP packet.
    pub fn tcp(source: IpAddr, dest: IpAddr, dport: u16) -> Self {
        Packet {
            proto: numbers::TCP,
            source,
            dest,
            sport: Some(40000),
            dport: Some(dport),
            icmp: None,
            iface: None,
            source_mac: None,
        }
    }
    /// A UDP packet.
    pub fn udp(source: IpAddr, dest: IpAddr, sport: u16, dport: u16) -> Self {
        Packet {
            proto: numbers::UDP,
            sport: Some(sport),
            ..Packet::tcp(source, dest, dport)
        }
    }
    /// An ICMP (or ICMPv6, by address family) packet.
    pub fn icmp(source: IpAddr, dest: IpAddr, ty: u8, code: u8) -> Self {
        let proto = match source {
            IpAddr::V4(_) => numbers::ICMP,
            IpAddr::V6(_) => numbers::ICMPV6,
        };
        Packet {
            proto,
            sport: None,
            dport: None,
            icmp: Some((ty, code)),
            ..Packet::tcp(source, dest, 0)
        }
    }
    /// Sets the interface.
    pub fn on(mut self, iface: Iface) -> Self {
        self.iface = Some(iface);
        self
    }
    /// The packet's family (that of its source).
    pub fn family(&self) -> Family {
        Family::of(&self.source)
    }
}

/// A chain of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ChainId {
    /// Traffic to the host.
    HostIn,
    /// Traffic from the host.
    HostOut,
    /// Traffic to a guest NIC.
    GuestIn {
        /// VM id.
        vmid: u32,
        /// NIC index.
        nic: u8,
    },
    /// Traffic from a guest NIC.
    GuestOut {
        /// VM id.
        vmid: u32,
        /// NIC index.
        nic: u8,
    },
}

impl ChainId {
    /// The rule direction this chain runs.
    pub fn direction(&self) -> Direction {
        match self {
            ChainId::HostIn | ChainId::GuestIn { .. } => Direction::In,
            ChainId::HostOut | ChainId::GuestOut { .. } => Direction::Out,
        }
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainId::HostIn => f.write_str("host IN"),
            ChainId::HostOut => f.write_str("host OUT"),
            ChainId::GuestIn { vmid, nic } => write!(f, "{vmid}/net{nic} IN"),
            ChainId::GuestOut { vmid, nic } => write!(f, "{vmid}/net{nic} OUT"),
        }
    }
}

/// Which file a rule is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum FileRef {
    /// `cluster.fw`
    Cluster,
    /// `host.fw`
    Host,
    /// `<vmid>.fw`
    Guest(u32),
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRef::Cluster => f.write_str("cluster.fw"),
            FileRef::Host => f.write_str("host.fw"),
            FileRef::Guest(v) => write!(f, "{v}.fw"),
        }
    }
}

/// Which section a rule is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SectionRef {
    /// `[RULES]`
    Rules,
    /// `[group name]`
    Group(String),
}

/// Where a rule is: file, section, 0-based index in the section, and source line if known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RuleRef {
    /// File.
    pub file: FileRef,
    /// Section.
    pub section: SectionRef,
    /// 0-based position in the section.
    pub index: usize,
    /// 1-based line in the file, when parsed from text.
    pub line: Option<usize>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.section {
            SectionRef::Rules => write!(f, "{} [RULES] #{}", self.file, self.index)?,
            SectionRef::Group(g) => write!(f, "{} [group {g}] #{}", self.file, self.index)?,
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        Ok(())
    }
}

/// Built-in rules PVE generates around the user's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Builtin {
    /// `dhcp: 1` lets DHCP through.
    Dhcp,
    /// `macfilter` (default on) drops frames whose source MAC is not the NIC's.
    MacFilter,
    /// Router advertisements from a guest are dropped unless `radv: 1`.
    RouterAdvertisement,
    /// `ipfilter-netN` / `ipfilter: 1` drops spoofed source addresses.
    IpFilter,
    /// `ndp` (on unless `ndp: 0`) lets neighbor discovery through.
    Ndp,
    /// Management access to the host from the `management` IP set.
    Management,
    /// Sources in the cluster's `blacklist` IP set are dropped.
    Blacklist,
    /// A packet whose source and destination families differ.
    InvalidPacket,
}

/// Why a chain did not filter at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NotFiltered {
    /// `cluster.fw` has no `enable: 1`.
    ClusterDisabled,
    /// `host.fw` has `enable: 0`.
    HostDisabled,
    /// The guest's `<vmid>.fw` has no `enable: 1`.
    GuestDisabled,
    /// The NIC has no `firewall=1`.
    NicDisabled,
}

/// What decided a chain's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DecidedBy {
    /// A user rule.
    Rule(RuleRef),
    /// The chain's default policy.
    Policy,
    /// A built-in rule.
    Builtin(Builtin),
    /// The firewall does not apply to this chain: the packet passes.
    NotFiltered(NotFiltered),
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecidedBy::Rule(r) => write!(f, "rule {r}"),
            DecidedBy::Policy => f.write_str("policy"),
            DecidedBy::Builtin(b) => write!(f, "builtin {b:?}"),
            DecidedBy::NotFiltered(n) => write!(f, "not filtered ({n:?})"),
        }
    }
}

/// One step of an explanation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TraceStep {
    /// Evaluation of a chain started.
    EnterChain(ChainId),
    /// A `GROUP` rule jumped into a security group.
    EnterGroup {
        /// The group.
        group: String,
        /// The `GROUP` line.
        via: RuleRef,
    },
    /// The group had no matching rule: evaluation continues after the `GROUP` line.
    ReturnFromGroup(String),
    /// A `GROUP` line names a group that does not exist; PVE skips it.
    MissingGroup(String),
    /// The verdict was reached.
    Decided(Verdict),
}

/// The answer of one chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainDecision {
    /// The chain.
    pub chain: ChainId,
    /// Verdict.
    pub verdict: Verdict,
    /// What decided it.
    pub decided_by: DecidedBy,
    /// Chains and groups visited (the compiled evaluator records only enter and decide).
    pub trace: Vec<TraceStep>,
}

/// Finds aliases and IP sets the way PVE does for one chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolver<'a> {
    pub(crate) cluster: &'a FwFile,
    /// The guest's file, for guest chains.
    pub(crate) local: Option<&'a FwFile>,
}

impl<'a> Resolver<'a> {
    /// The datacenter's resolver: the cluster file's aliases and IP sets only.
    pub(crate) fn datacenter(cluster: &'a FwFile) -> Self {
        Self {
            cluster,
            local: None,
        }
    }

    pub(crate) fn alias(&self, scope: RefScope, name: &str) -> Option<&'a Alias> {
        match scope {
            RefScope::Auto => self
                .local
                .and_then(|l| l.alias(name))
                .or_else(|| self.cluster.alias(name)),
            RefScope::Dc => self.cluster.alias(name),
            RefScope::Guest => self.local.and_then(|l| l.alias(name)),
        }
    }

    /// The set and the resolver its alias entries are looked up with.
    pub(crate) fn ipset(&self, scope: RefScope, name: &str) -> Option<(&'a IpSet, Resolver<'a>)> {
        let dc = Resolver::datacenter(self.cluster);
        let local = || self.local.and_then(|l| l.ipset(name)).map(|s| (s, *self));
        match scope {
            RefScope::Auto => local().or_else(|| self.cluster.ipset(name).map(|s| (s, dc))),
            RefScope::Dc => self.cluster.ipset(name).map(|s| (s, dc)),
            RefScope::Guest => local(),
        }
    }

    pub(crate) fn entry_cidr(&self, v: &IpSetValue) -> Option<Cidr> {
        match v {
            IpSetValue::Cidr(c) => Some(*c),
            IpSetValue::Alias(sc, n) => self.alias(*sc, n.as_str()).map(|a| a.cidr),
        }
    }

    /// ipset `hash:net` semantics: the most specific matching entry decides; `!` excludes.
    pub(crate) fn set_contains(&self, set: &IpSet, ip: &IpAddr) -> bool {
        let mut best: Option<(u8, bool)> = None;
        for e in &set.entries {
            let Some(c) = self.entry_cidr(&e.value) else {
                continue;
            };
            if c.contains(ip) {
                let key = (c.net().prefix_len(), e.nomatch);
                if best.is_none_or(|b| key > b) {
                    best = Some(key);
                }
            }
        }
        best.is_some_and(|(_, nomatch)| !nomatch)
    }

    pub(crate) fn addr_contains(&self, a: &Address, ip: &IpAddr) -> bool {
        match a {
            Address::List(items) => items.iter().any(|i| i.contains(ip)),
            Address::Alias(sc, n) => self
                .alias(*sc, n.as_str())
                .is_some_and(|a| a.cidr.contains(ip)),
            Address::IpSet(sc, n) => self
                .ipset(*sc, n.as_str())
                .is_some_and(|(s, r)| r.set_contains(s, ip)),
        }
    }
}

/// The protocol/port/ICMP part of a rule after macro expansion.
#[derive(Clone, Debug)]
pub(crate) struct Alt<'a> {
    pub(crate) proto: Option<Protocol>,
    pub(crate) dport: Option<&'a PortList>,
    pub(crate) sport: Option<&'a PortList>,
    pub(crate) icmp: Option<&'a IcmpType>,
}

/// The alternatives a rule stands for in one family (a macro has several).
pub(crate) fn alternatives(rule: &Rule, fam: Family) -> Vec<Alt<'_>> {
    match &rule.kind {
        RuleKind::Macro(_, m, _) => m
            .def()
            .map(|d| d.templates(fam))
            .unwrap_or_default()
            .iter()
            .map(|t| Alt {
                proto: Some(t.proto),
                dport: t.dport.as_ref().or(rule.dport.as_ref()),
                sport: t.sport.as_ref().or(rule.sport.as_ref()),
                icmp: t.icmp_type.as_ref().or(rule.icmp_type.as_ref()),
            })
            .collect(),
        _ => vec![Alt {
            proto: rule.proto,
            dport: rule.dport.as_ref(),
            sport: rule.sport.as_ref(),
            icmp: rule.icmp_type.as_ref(),
        }],
    }
}

fn alt_matches(alt: &Alt<'_>, pkt: &Packet, fam: Family) -> bool {
    let Some(p) = alt.proto else {
        // Ports or ICMP types without a protocol never match (and never validate).
        return alt.dport.is_none() && alt.sport.is_none() && alt.icmp.is_none();
    };
    if p.number() != pkt.proto || p.family().is_some_and(|f| f != fam) {
        return false;
    }
    for (list, port) in [(alt.dport, pkt.dport), (alt.sport, pkt.sport)] {
        if let Some(list) = list
            && (!p.has_ports() || !port.is_some_and(|x| list.contains(x)))
        {
            return false;
        }
    }
    if let Some(t) = alt.icmp {
        if !p.is_icmp() {
            return false;
        }
        let Some(m) = t.resolve(fam == Family::V6) else {
            return false;
        };
        if !pkt.icmp.is_some_and(|(ty, code)| m.matches(ty, code)) {
            return false;
        }
    }
    true
}

/// Does a non-group rule match? (`group_iface` is the `-i` of the `GROUP` line, if any.)
pub(crate) fn rule_matches(rule: &Rule, pkt: &Packet, res: &Resolver<'_>) -> bool {
    if let Some(i) = &rule.iface
        && pkt.iface.as_ref() != Some(i)
    {
        return false;
    }
    if let Some(a) = &rule.source
        && !res.addr_contains(a, &pkt.source)
    {
        return false;
    }
    if let Some(a) = &rule.dest
        && !res.addr_contains(a, &pkt.dest)
    {
        return false;
    }
    let fam = pkt.family();
    alternatives(rule, fam)
        .iter()
        .any(|alt| alt_matches(alt, pkt, fam))
}

/// Built-in steps of a chain, in PVE's order.
#[derive(Clone, Debug)]
pub(crate) enum BuiltinStep<'a> {
    /// Accept udp with these ports for this family.
    Dhcp { fam: Family, sport: u16, dport: u16 },
    /// Drop when the packet's source MAC is given and differs.
    MacFilter(MacAddr),
    /// Drop ICMPv6 router advertisements.
    RouterAdv,
    /// Drop when the source is not allowed.
    IpFilter(IpFilterSet<'a>),
    /// Accept ICMPv6 neighbor discovery (types 133 to 136).
    Ndp,
    /// Accept management ports from the `management` IP set.
    Management(&'a IpSet),
    /// Drop sources in the cluster's `blacklist` IP set.
    Blacklist(&'a IpSet),
}

/// The ports PVE opens to the `management` IP set.
pub(crate) const MANAGEMENT_PORTS: &[(u16, u16)] =
    &[(22, 22), (3128, 3128), (5900, 5999), (8006, 8006)];

/// The anti-spoofing set of one NIC.
#[derive(Clone, Debug)]
pub(crate) struct IpFilterSet<'a> {
    pub(crate) explicit: Option<&'a IpSet>,
    /// Implicit entries (`ipfilter: 1`): the MAC's link-local address, containers' IPs.
    pub(crate) implicit: Vec<IpAddr>,
}

impl IpFilterSet<'_> {
    pub(crate) fn allows(&self, res: &Resolver<'_>, ip: &IpAddr) -> bool {
        self.implicit.contains(ip) || self.explicit.is_some_and(|s| res.set_contains(s, ip))
    }
}

impl BuiltinStep<'_> {
    pub(crate) fn kind(&self) -> Builtin {
        match self {
            BuiltinStep::Dhcp { .. } => Builtin::Dhcp,
            BuiltinStep::MacFilter(_) => Builtin::MacFilter,
            BuiltinStep::RouterAdv => Builtin::RouterAdvertisement,
            BuiltinStep::IpFilter(_) => Builtin::IpFilter,
            BuiltinStep::Ndp => Builtin::Ndp,
            BuiltinStep::Management(_) => Builtin::Management,
            BuiltinStep::Blacklist(_) => Builtin::Blacklist,
        }
    }
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            BuiltinStep::Dhcp { .. } | BuiltinStep::Ndp | BuiltinStep::Management(_) => {
                Verdict::Accept
            }
            _ => Verdict::Drop,
        }
    }
    fn matches(&self, pkt: &Packet, res: &Resolver<'_>) -> bool {
        let v6 = pkt.family() == Family::V6;
        let icmp6_type = |lo: u8, hi: u8| {
            v6 && pkt.proto == numbers::ICMPV6 && pkt.icmp.is_some_and(|(t, _)| lo <= t && t <= hi)
        };
        match self {
            BuiltinStep::Dhcp { fam, sport, dport } => {
                pkt.family() == *fam
                    && pkt.proto == numbers::UDP
                    && pkt.sport == Some(*sport)
                    && pkt.dport == Some(*dport)
            }
            BuiltinStep::MacFilter(mac) => pkt.source_mac.is_some_and(|m| m != *mac),
            BuiltinStep::RouterAdv => icmp6_type(134, 134),
            BuiltinStep::IpFilter(set) => !set.allows(res, &pkt.source),
            BuiltinStep::Ndp => icmp6_type(133, 136),
            BuiltinStep::Blacklist(set) => {
                let dc = Resolver::datacenter(res.cluster);
                dc.set_contains(set, &pkt.source)
            }
            BuiltinStep::Management(set) => {
                pkt.proto == numbers::TCP
                    && pkt
                        .dport
                        .is_some_and(|p| MANAGEMENT_PORTS.iter().any(|(a, b)| *a <= p && p <= *b))
                    && res.set_contains(set, &pkt.source)
            }
        }
    }
}

/// One step of a chain, in evaluation order.
#[derive(Clone, Debug)]
pub(crate) enum Step<'a> {
    Builtin(BuiltinStep<'a>),
    EnterGroup {
        name: &'a GroupName,
        via: RuleRef,
        iface: Option<&'a Iface>,
    },
    LeaveGroup(&'a GroupName),
    MissingGroup(&'a GroupName, RuleRef),
    Rule {
        rule: &'a Rule,
        at: RuleRef,
        group_iface: Option<&'a Iface>,
        action: Action,
    },
}

/// A chain, flattened: what both evaluators run.
#[derive(Clone, Debug)]
pub(crate) struct ChainPlan<'a> {
    pub(crate) id: ChainId,
    pub(crate) resolver: Resolver<'a>,
    pub(crate) steps: Vec<Step<'a>>,
    pub(crate) policy: Action,
    pub(crate) not_filtered: Option<NotFiltered>,
}

fn push_rules<'a>(
    steps: &mut Vec<Step<'a>>,
    file: FileRef,
    rules: &'a [Rule],
    cluster: &'a FwFile,
    dir: Direction,
) {
    for (index, rule) in rules.iter().enumerate() {
        if !rule.enabled {
            continue;
        }
        let at = RuleRef {
            file,
            section: SectionRef::Rules,
            index,
            line: rule.line.0,
        };
        match &rule.kind {
            RuleKind::Group(name) => match cluster.group(name.as_str()) {
                Some(g) => {
                    steps.push(Step::EnterGroup {
                        name,
                        via: at,
                        iface: rule.iface.as_ref(),
                    });
                    for (gi, gr) in g.rules.iter().enumerate() {
                        if !gr.enabled || gr.kind.direction() != Some(dir) {
                            continue;
                        }
                        let Some(action) = gr.kind.action() else {
                            continue;
                        };
                        steps.push(Step::Rule {
                            rule: gr,
                            at: RuleRef {
                                file: FileRef::Cluster,
                                section: SectionRef::Group(name.as_str().to_string()),
                                index: gi,
                                line: gr.line.0,
                            },
                            group_iface: rule.iface.as_ref(),
                            action,
                        });
                    }
                    steps.push(Step::LeaveGroup(name));
                }
                None => steps.push(Step::MissingGroup(name, at)),
            },
            k => {
                if let (Some(d), Some(action)) = (k.direction(), k.action())
                    && d == dir
                {
                    steps.push(Step::Rule {
                        rule,
                        at,
                        group_iface: None,
                        action,
                    });
                }
            }
        }
    }
}

fn guest_builtins<'a>(guest: &'a Guest, nic: &'a Nic, dir: Direction, steps: &mut Vec<Step<'a>>) {
    let o = &guest.firewall.options;
    if o.dhcp == Some(true) {
        let (s4, d4, s6, d6) = match dir {
            Direction::Out => (68, 67, 546, 547),
            _ => (67, 68, 547, 546),
        };
        steps.push(Step::Builtin(BuiltinStep::Dhcp {
            fam: Family::V4,
            sport: s4,
            dport: d4,
        }));
        steps.push(Step::Builtin(BuiltinStep::Dhcp {
            fam: Family::V6,
            sport: s6,
            dport: d6,
        }));
    }
    if dir == Direction::Out {
        if o.macfilter != Some(false) {
            steps.push(Step::Builtin(BuiltinStep::MacFilter(nic.mac)));
        }
        if o.radv != Some(true) {
            steps.push(Step::Builtin(BuiltinStep::RouterAdv));
        }
        let explicit = guest.firewall.ipset(&format!("ipfilter-net{}", nic.index));
        let implicit_on = o.ipfilter == Some(true);
        if explicit.is_some() || implicit_on {
            let mut implicit = Vec::new();
            if implicit_on {
                implicit.push(nic.mac.link_local());
                if guest.kind == GuestKind::Ct {
                    implicit.extend(nic.ips.iter().copied());
                }
            }
            steps.push(Step::Builtin(BuiltinStep::IpFilter(IpFilterSet {
                explicit,
                implicit,
            })));
        }
    }
    // NDP is on by default for guests (the admin guide: "enabled on both host and VM level").
    if o.ndp != Some(false) {
        steps.push(Step::Builtin(BuiltinStep::Ndp));
    }
}

impl Node {
    /// Flattens one chain. `None` when the guest or NIC does not exist.
    pub(crate) fn plan(&self, id: ChainId) -> Option<ChainPlan<'_>> {
        let cluster = &self.cluster;
        let dir = id.direction();
        let mut steps = Vec::new();
        let cluster_on = cluster.options.enabled_or_default(FileKind::Cluster);
        match id {
            ChainId::HostIn | ChainId::HostOut => {
                let not_filtered = if !cluster_on {
                    Some(NotFiltered::ClusterDisabled)
                } else if !self.host.options.enabled_or_default(FileKind::Host) {
                    Some(NotFiltered::HostDisabled)
                } else {
                    None
                };
                if dir == Direction::In
                    && let Some(set) = cluster.ipset("blacklist")
                {
                    steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
                }
                if dir == Direction::In
                    && let Some(set) = cluster.ipset("management")
                {
                    steps.push(Step::Builtin(BuiltinStep::Management(set)));
                }
                // Host rules come first so they can override cluster-wide rules.
                push_rules(&mut steps, FileRef::Host, &self.host.rules, cluster, dir);
                push_rules(&mut steps, FileRef::Cluster, &cluster.rules, cluster, dir);
                let policy = match dir {
                    Direction::In => cluster.options.policy_in_or_default(),
                    _ => cluster.options.policy_out_or_default(),
                };
                Some(ChainPlan {
                    id,
                    resolver: Resolver::datacenter(cluster),
                    steps,
                    policy,
                    not_filtered,
                })
            }
            ChainId::GuestIn { vmid, nic } | ChainId::GuestOut { vmid, nic } => {
                let guest = self.guests.get(&vmid)?;
                let nic = guest.nic(nic)?;
                let fw = &guest.firewall;
                let not_filtered = if !cluster_on {
                    Some(NotFiltered::ClusterDisabled)
                } else if !fw.options.enabled_or_default(FileKind::Guest) {
                    Some(NotFiltered::GuestDisabled)
                } else if !nic.firewall {
                    Some(NotFiltered::NicDisabled)
                } else {
                    None
                };
                if let Some(set) = cluster.ipset("blacklist") {
                    steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
                }
                guest_builtins(guest, nic, dir, &mut steps);
                push_rules(&mut steps, FileRef::Guest(vmid), &fw.rules, cluster, dir);
                let policy = match dir {
                    Direction::In => fw.options.policy_in_or_default(),
                    _ => fw.options.policy_out_or_default(),
                };
                Some(ChainPlan {
                    id,
                    resolver: Resolver {
                        cluster,
                        local: Some(fw),
                    },
                    steps,
                    policy,
                    not_filtered,
                })
            }
        }
    }
}

/// Evaluates packets against a node's chains.
pub trait Evaluator {
    /// The decision of one chain. `None` when the chain's guest or NIC does not exist.
    fn evaluate_chain(&self, chain: ChainId, pkt: &Packet) -> Option<ChainDecision>;
}

/// The reference evaluator: walks the configuration directly for every packet.
#[derive(Clone, Copy, Debug)]
pub struct Reference<'a>(pub &'a Node);

pub(crate) fn early_decision(
    id: ChainId,
    not_filtered: Option<NotFiltered>,
    pkt: &Packet,
) -> Option<ChainDecision> {
    let (verdict, decided_by) = if let Some(n) = not_filtered {
        (Verdict::Accept, DecidedBy::NotFiltered(n))
    } else if Family::of(&pkt.source) != Family::of(&pkt.dest) {
        (Verdict::Drop, DecidedBy::Builtin(Builtin::InvalidPacket))
    } else {
        return None;
    };
    Some(ChainDecision {
        chain: id,
        verdict,
        decided_by,
        trace: vec![TraceStep::EnterChain(id), TraceStep::Decided(verdict)],
    })
}

impl Evaluator for Reference<'_> {
    fn evaluate_chain(&self, chain: ChainId, pkt: &Packet) -> Option<ChainDecision> {
        let plan = self.0.plan(chain)?;
        Some(run_plan(&plan, pkt))
    }
}

fn run_plan(plan: &ChainPlan<'_>, pkt: &Packet) -> ChainDecision {
    if let Some(d) = early_decision(plan.id, plan.not_filtered, pkt) {
        return d;
    }
    let mut trace = vec![TraceStep::EnterChain(plan.id)];
    let res = &plan.resolver;
    let mut skipping_group = false;
    let done = |verdict: Verdict, decided_by: DecidedBy, mut trace: Vec<TraceStep>| {
        trace.push(TraceStep::Decided(verdict));
        ChainDecision {
            chain: plan.id,
            verdict,
            decided_by,
            trace,
        }
    };
    for step in &plan.steps {
        match step {
            Step::Builtin(b) => {
                if b.matches(pkt, res) {
                    return done(b.verdict(), DecidedBy::Builtin(b.kind()), trace);
                }
            }
            Step::EnterGroup { name, via, iface } => {
                skipping_group = iface.is_some_and(|i| pkt.iface.as_ref() != Some(i));
                if !skipping_group {
                    trace.push(TraceStep::EnterGroup {
                        group: name.to_string(),
                        via: via.clone(),
                    });
                }
            }
            Step::LeaveGroup(name) => {
                if !skipping_group {
                    trace.push(TraceStep::ReturnFromGroup(name.to_string()));
                }
                skipping_group = false;
            }
            Step::MissingGroup(name, _) => trace.push(TraceStep::MissingGroup(name.to_string())),
            Step::Rule {
                rule, at, action, ..
            } => {
                if !skipping_group && rule_matches(rule, pkt, res) {
                    return done(Verdict::from(*action), DecidedBy::Rule(at.clone()), trace);
                }
            }
        }
    }
    done(Verdict::from(plan.policy), DecidedBy::Policy, trace)
}
