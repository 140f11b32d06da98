//! Packets, decisions, and the reference evaluator (a direct reading of PVE's semantics).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::addr::{Address, Cidr, Family, IpSetValue, RefScope};
use crate::model::{FileKind, FwFile, IpSet, Rule, RuleKind};
use crate::node::{Backend, Guest, GuestKind, MacAddr, Nic, Node, VnetName};
use crate::proto::{IcmpType, PortList, Protocol, numbers};
use crate::stdchain::{self, AddrType, CtState, RejectMode, StdEntry, StdRule};
use crate::text::{Action, Direction, GroupName, Iface, Verdict};

/// A packet as one chain sees it.
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
    /// Connection-tracking state (`NEW` for the first packet of a connection).
    pub ct: CtState,
    /// Type of the source address.
    pub srctype: AddrType,
    /// Type of the destination address.
    pub dsttype: AddrType,
    /// TCP flags ([`stdchain::tcp`] bits; a connection opens with SYN).
    pub tcp_flags: u8,
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
            ct: CtState::New,
            srctype: AddrType::Unicast,
            dsttype: AddrType::Unicast,
            tcp_flags: stdchain::tcp::SYN,
        }
    }
    /// A UDP packet.
    pub fn udp(source: IpAddr, dest: IpAddr, sport: u16, dport: u16) -> Self {
        Packet {
            proto: numbers::UDP,
            sport: Some(sport),
            tcp_flags: 0,
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
            tcp_flags: 0,
            ..Packet::tcp(source, dest, 0)
        }
    }
    /// The same packet in another conntrack state (`ESTABLISHED` for a reply).
    pub fn with_ct(mut self, ct: CtState) -> Self {
        self.ct = ct;
        self
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
    /// Traffic routed by the host (`FORWARD`).
    HostForward,
    /// Traffic passing an SDN VNet (`FORWARD` rules of the VNet's file).
    VnetForward {
        /// The VNet.
        vnet: VnetName,
    },
}

impl ChainId {
    /// The rule direction this chain runs.
    pub fn direction(&self) -> Direction {
        match self {
            ChainId::HostIn | ChainId::GuestIn { .. } => Direction::In,
            ChainId::HostOut | ChainId::GuestOut { .. } => Direction::Out,
            ChainId::HostForward | ChainId::VnetForward { .. } => Direction::Forward,
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
            ChainId::HostForward => f.write_str("host FORWARD"),
            ChainId::VnetForward { vnet } => write!(f, "vnet {vnet} FORWARD"),
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
    /// `sdn/firewall/<vnet>.fw`
    Vnet(VnetName),
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileRef::Cluster => f.write_str("cluster.fw"),
            FileRef::Host => f.write_str("host.fw"),
            FileRef::Guest(v) => write!(f, "{v}.fw"),
            FileRef::Vnet(v) => write!(f, "sdn/firewall/{v}.fw"),
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
    /// DHCP for a guest (accepted unless `dhcp: 0`; proxmox-firewall drops it with `dhcp: 0`).
    Dhcp,
    /// `macfilter` (default on) drops frames whose source MAC is not the NIC's.
    MacFilter,
    /// Router advertisements from a guest are dropped unless `radv: 1`.
    RouterAdvertisement,
    /// `ipfilter-netN` / `ipfilter: 1` drops spoofed source addresses.
    IpFilter,
    /// `ndp` (on unless `ndp: 0`) lets neighbor discovery through.
    Ndp,
    /// Management access to the host from the `management` IP set (which PVE extends with
    /// `local_network`).
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
    /// The VNet's file has no `enable: 1`.
    VnetDisabled,
    /// pve-firewall (iptables) ignores VNet firewall files.
    IptablesBackend,
}

/// What decided a chain's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DecidedBy {
    /// A user rule.
    Rule(RuleRef),
    /// The chain's default policy.
    Policy,
    /// A rule of a standard chain pve-firewall or proxmox-firewall generates.
    Standard(StdRule),
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
            DecidedBy::Standard(r) => write!(f, "standard chain {r}"),
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
    /// The automatic `local_network` alias (cluster scope), when no file defines one.
    pub(crate) localnet: Option<Cidr>,
}

impl<'a> Resolver<'a> {
    /// The same resolver without the guest's file (datacenter scope).
    pub(crate) fn dc(&self) -> Resolver<'a> {
        Resolver {
            local: None,
            ..*self
        }
    }

    pub(crate) fn alias(&self, scope: RefScope, name: &str) -> Option<Cidr> {
        let dc = || {
            self.cluster.alias(name).map(|a| a.cidr).or_else(|| {
                self.localnet
                    .filter(|_| name.eq_ignore_ascii_case("local_network"))
            })
        };
        match scope {
            RefScope::Auto => self
                .local
                .and_then(|l| l.alias(name))
                .map(|a| a.cidr)
                .or_else(dc),
            RefScope::Dc => dc(),
            RefScope::Guest => self.local.and_then(|l| l.alias(name)).map(|a| a.cidr),
        }
    }

    /// The set and the resolver its alias entries are looked up with.
    pub(crate) fn ipset(&self, scope: RefScope, name: &str) -> Option<(&'a IpSet, Resolver<'a>)> {
        let dc = self.dc();
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
            IpSetValue::Alias(sc, n) => self.alias(*sc, n.as_str()),
        }
    }

    /// ipset `hash:net` semantics: the most specific matching entry decides; `!` excludes.
    pub(crate) fn set_contains(&self, set: &IpSet, ip: &IpAddr) -> bool {
        self.set_contains_with(Some(set), None, ip)
    }

    /// Like [`Resolver::set_contains`] with one more (matching) entry PVE adds to the set.
    pub(crate) fn set_contains_with(
        &self,
        set: Option<&IpSet>,
        extra: Option<Cidr>,
        ip: &IpAddr,
    ) -> bool {
        let mut best: Option<(u8, bool)> = None;
        let entries = set.map_or(&[][..], |s| s.entries.as_slice());
        let listed = entries
            .iter()
            .map(|e| (self.entry_cidr(&e.value), e.nomatch));
        for (c, nomatch) in listed.chain(extra.map(|c| (Some(c), false))) {
            let Some(c) = c else {
                continue;
            };
            if c.contains(ip) {
                let key = (c.net().prefix_len(), nomatch);
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
            Address::Alias(sc, n) => self.alias(*sc, n.as_str()).is_some_and(|c| c.contains(ip)),
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

/// Built-in steps of a chain that depend on sets or the MAC, in PVE's order.
#[derive(Clone, Debug)]
pub(crate) enum BuiltinStep<'a> {
    /// Drop when the packet's source MAC is given and differs.
    MacFilter(MacAddr),
    /// Drop when the source is not allowed.
    IpFilter(IpFilterSet<'a>),
    /// Accept management ports from the `management` IP set (plus `local_network`).
    Management(ManagementSet<'a>),
    /// Drop sources in the cluster's `blacklist` IP set.
    Blacklist(&'a IpSet),
}

/// The ports pve-firewall opens to the `management` IP set (`enable_host_firewall`): API,
/// VNC console, SPICE proxy, SSH, migration.
pub(crate) const MANAGEMENT_PORTS: &[(u16, u16)] = &[
    (8006, 8006),
    (5900, 5999),
    (3128, 3128),
    (22, 22),
    (60000, 60050),
];

/// The ports proxmox-firewall's `default-in` opens to the management set.
pub(crate) const NFT_MANAGEMENT_PORTS: &[(u16, u16)] =
    &[(8006, 8006), (5900, 5999), (3128, 3128), (22, 22)];

/// The management source set: the cluster's `management` IP set, plus an entry PVE adds
/// (`local_network`).
#[derive(Clone, Debug)]
pub(crate) struct ManagementSet<'a> {
    pub(crate) set: Option<&'a IpSet>,
    pub(crate) extra: Option<Cidr>,
    pub(crate) ports: &'static [(u16, u16)],
}

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
            BuiltinStep::MacFilter(_) => Builtin::MacFilter,
            BuiltinStep::IpFilter(_) => Builtin::IpFilter,
            BuiltinStep::Management(_) => Builtin::Management,
            BuiltinStep::Blacklist(_) => Builtin::Blacklist,
        }
    }
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            BuiltinStep::Management(_) => Verdict::Accept,
            _ => Verdict::Drop,
        }
    }
    fn matches(&self, pkt: &Packet, res: &Resolver<'_>) -> bool {
        match self {
            BuiltinStep::MacFilter(mac) => pkt.source_mac.is_some_and(|m| m != *mac),
            BuiltinStep::IpFilter(set) => !set.allows(res, &pkt.source),
            BuiltinStep::Blacklist(set) => res.dc().set_contains(set, &pkt.source),
            BuiltinStep::Management(m) => {
                pkt.proto == numbers::TCP
                    && pkt
                        .dport
                        .is_some_and(|p| m.ports.iter().any(|(a, b)| *a <= p && p <= *b))
                    && res.dc().set_contains_with(m.set, m.extra, &pkt.source)
            }
        }
    }
}

/// One step of a chain, in evaluation order.
#[derive(Clone, Debug)]
pub(crate) enum Step<'a> {
    Builtin(BuiltinStep<'a>),
    /// A rule of a standard chain (or a built-in expressed as a plain match); the fixed
    /// tables are shared, not rebuilt for every plan.
    Std(Cow<'a, StdEntry>),
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
    /// How a REJECT ends in this chain.
    pub(crate) reject: RejectMode,
    /// What the end of the chain is reported as (the policy, or why nothing filtered).
    pub(crate) policy_by: DecidedBy,
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

fn push_std<'a>(steps: &mut Vec<Step<'a>>, entries: impl IntoIterator<Item = StdEntry>) {
    steps.extend(entries.into_iter().map(|e| Step::Std(Cow::Owned(e))));
}

fn push_std_static(steps: &mut Vec<Step<'_>>, entries: &'static [StdEntry]) {
    steps.extend(entries.iter().map(|e| Step::Std(Cow::Borrowed(e))));
}

/// Host options pve-firewall and proxmox-firewall read from `host.fw`.
#[derive(Clone, Copy, Debug)]
struct HostOpts {
    allow_invalid: bool,
    smurfs: bool,
    tcpflags: bool,
    ndp: bool,
}

impl HostOpts {
    fn of(node: &Node) -> Self {
        HostOpts {
            allow_invalid: node.host_option("nf_conntrack_allow_invalid") == Some(true),
            // `nosmurfs: 1` enables the filter; only an explicit 0 turns it off.
            smurfs: node.host_option("nosmurfs") != Some(false),
            tcpflags: node.host_option("tcpflags") == Some(true),
            ndp: node.host_option("ndp") != Some(false),
        }
    }
}

/// The anti-spoofing set of a NIC, when `ipfilter-netN` exists or `ipfilter: 1`.
fn ipfilter<'a>(guest: &'a Guest, nic: &'a Nic) -> Option<IpFilterSet<'a>> {
    let o = &guest.firewall.options;
    let explicit = guest.firewall.ipset(&format!("ipfilter-net{}", nic.index));
    let implicit_on = o.ipfilter == Some(true);
    if explicit.is_none() && !implicit_on {
        return None;
    }
    let mut implicit = Vec::new();
    if implicit_on {
        implicit.push(nic.mac.link_local());
        if guest.kind == GuestKind::Ct {
            implicit.extend(nic.ips.iter().copied());
        }
    }
    Some(IpFilterSet { explicit, implicit })
}

/// pve-firewall's tap chain head (`ruleset_create_vm_chain`): DHCP (on unless `dhcp: 0`);
/// outbound: MAC filter, router advertisements, IP filter; then NDP.
fn guest_head_iptables<'a>(
    guest: &'a Guest,
    nic: &'a Nic,
    dir: Direction,
    steps: &mut Vec<Step<'a>>,
) {
    let o = &guest.firewall.options;
    let out = dir == Direction::Out;
    if o.dhcp != Some(false) {
        push_std(steps, stdchain::dhcp(out, Verdict::Accept));
    }
    if out {
        if o.macfilter != Some(false) {
            steps.push(Step::Builtin(BuiltinStep::MacFilter(nic.mac)));
        }
        if o.radv != Some(true) {
            push_std(steps, [stdchain::router_adv(&[(134, None)], Verdict::Drop)]);
        }
        if let Some(f) = ipfilter(guest, nic) {
            steps.push(Step::Builtin(BuiltinStep::IpFilter(f)));
        }
    }
    if o.ndp != Some(false) {
        push_std(
            steps,
            [stdchain::ndp_iptables(!out || o.radv == Some(true))],
        );
    }
}

/// proxmox-firewall's guest chain head (`handle_guest_options`): MAC filter, DHCP, NDP and
/// router advertisements always get a rule (accept or drop), then the IP filter.
fn guest_head_nftables<'a>(
    guest: &'a Guest,
    nic: &'a Nic,
    dir: Direction,
    steps: &mut Vec<Step<'a>>,
) {
    let o = &guest.firewall.options;
    let out = dir == Direction::Out;
    let allow = |on: bool| if on { Verdict::Accept } else { Verdict::Drop };
    if out && o.macfilter != Some(false) {
        steps.push(Step::Builtin(BuiltinStep::MacFilter(nic.mac)));
    }
    push_std(steps, stdchain::dhcp(out, allow(o.dhcp != Some(false))));
    push_std(steps, [stdchain::ndp_nftables(!out, o.ndp != Some(false))]);
    if out {
        push_std(
            steps,
            [stdchain::router_adv(
                &[(134, None), (137, None)],
                allow(o.radv == Some(true)),
            )],
        );
        if let Some(f) = ipfilter(guest, nic) {
            steps.push(Step::Builtin(BuiltinStep::IpFilter(f)));
        }
    }
}

/// The policy part of an iptables chain: `PVEFW-Drop`/`PVEFW-Reject` run before the policy.
fn push_policy_chain(steps: &mut Vec<Step<'_>>, backend: Backend, policy: Action) {
    if backend == Backend::Iptables && policy != Action::Accept {
        push_std_static(
            steps,
            stdchain::policy_chain_static(policy == Action::Reject),
        );
    }
}

impl Node {
    /// Flattens one chain. `None` when the guest, NIC or VNet does not exist.
    pub(crate) fn plan(&self, id: ChainId) -> Option<ChainPlan<'_>> {
        let cluster = &self.cluster;
        let dir = id.direction();
        let backend = self.effective_backend();
        let nft = backend == Backend::Nftables;
        let opts = HostOpts::of(self);
        let localnet = self.effective_local_network();
        let mut steps = Vec::new();
        let cluster_on = cluster.options.enabled_or_default(FileKind::Cluster);
        let dc = Resolver {
            cluster,
            local: None,
            localnet: Some(localnet),
        };
        let host_reject = if nft {
            RejectMode::Nftables
        } else {
            RejectMode::Iptables
        };
        let host_not_filtered = if !cluster_on {
            Some(NotFiltered::ClusterDisabled)
        } else if !self.host.options.enabled_or_default(FileKind::Host) {
            Some(NotFiltered::HostDisabled)
        } else {
            None
        };
        let blacklist = cluster.ipset("blacklist");
        match id {
            ChainId::HostIn | ChainId::HostOut => {
                let inbound = dir == Direction::In;
                let policy = if inbound {
                    cluster.options.policy_in_or_default()
                } else {
                    cluster.options.policy_out_or_default()
                };
                if nft {
                    self.host_nftables(inbound, opts, localnet, &mut steps);
                } else {
                    self.host_iptables(inbound, opts, localnet, &mut steps);
                }
                push_policy_chain(&mut steps, backend, policy);
                Some(ChainPlan {
                    id,
                    resolver: dc,
                    steps,
                    policy,
                    not_filtered: host_not_filtered,
                    reject: host_reject,
                    policy_by: DecidedBy::Policy,
                })
            }
            ChainId::HostForward => {
                // FORWARD rules only exist for proxmox-firewall; pve-firewall's PVEFW-FORWARD
                // only filters by connection state for routed traffic.
                if nft {
                    push_std(&mut steps, stdchain::nft_ct_vmap("forward"));
                    push_rules(&mut steps, FileRef::Host, &self.host.rules, cluster, dir);
                    push_rules(&mut steps, FileRef::Cluster, &cluster.rules, cluster, dir);
                } else {
                    push_std(
                        &mut steps,
                        stdchain::conn_filters("PVEFW-FORWARD", opts.allow_invalid),
                    );
                }
                let policy = if nft {
                    cluster.options.policy_forward_or_default()
                } else {
                    Action::Accept
                };
                Some(ChainPlan {
                    id,
                    resolver: dc,
                    steps,
                    policy,
                    not_filtered: host_not_filtered,
                    reject: host_reject,
                    policy_by: DecidedBy::Policy,
                })
            }
            ChainId::VnetForward { vnet } => {
                let fw = self.vnets.get(&vnet)?;
                let not_filtered = if !cluster_on {
                    Some(NotFiltered::ClusterDisabled)
                } else if !nft {
                    Some(NotFiltered::IptablesBackend)
                } else if !fw.options.enabled_or_default(FileKind::Vnet) {
                    Some(NotFiltered::VnetDisabled)
                } else {
                    None
                };
                push_std(&mut steps, stdchain::nft_ct_vmap("vnet forward"));
                push_rules(&mut steps, FileRef::Vnet(vnet), &fw.rules, cluster, dir);
                Some(ChainPlan {
                    id,
                    resolver: dc,
                    steps,
                    policy: fw.options.policy_forward_or_default(),
                    not_filtered,
                    reject: RejectMode::Nftables,
                    policy_by: DecidedBy::Policy,
                })
            }
            ChainId::GuestIn { vmid, nic } | ChainId::GuestOut { vmid, nic } => {
                let guest = self.guests.get(&vmid)?;
                let nic = guest.nic(nic)?;
                let fw = &guest.firewall;
                let guest_on = fw.options.enabled_or_default(FileKind::Guest);
                let not_filtered = if !cluster_on {
                    Some(NotFiltered::ClusterDisabled)
                } else if !nic.firewall {
                    Some(NotFiltered::NicDisabled)
                } else if !guest_on && nft {
                    Some(NotFiltered::GuestDisabled)
                } else {
                    None
                };
                let inbound = dir == Direction::In;
                if !guest_on && !nft {
                    // pve-firewall still plugs the NIC's chains (policy ACCEPT) into
                    // PVEFW-FORWARD and PVEFW-FWBR-IN, whose filters apply
                    // (`generate_tap_rules_direction`).
                    self.guest_input_filters(inbound, opts, &mut steps);
                    return Some(ChainPlan {
                        id,
                        resolver: Resolver {
                            cluster,
                            local: Some(fw),
                            localnet: Some(localnet),
                        },
                        steps,
                        policy: Action::Accept,
                        not_filtered,
                        reject: RejectMode::Iptables,
                        policy_by: DecidedBy::NotFiltered(NotFiltered::GuestDisabled),
                    });
                }
                if nft {
                    push_std(&mut steps, stdchain::nft_allow_icmp("vm-in/vm-out"));
                    if inbound && let Some(set) = blacklist {
                        steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
                    }
                    guest_head_nftables(guest, nic, dir, &mut steps);
                    push_std(&mut steps, stdchain::nft_ct_vmap("pre-vm"));
                } else {
                    self.guest_input_filters(inbound, opts, &mut steps);
                    guest_head_iptables(guest, nic, dir, &mut steps);
                }
                push_rules(&mut steps, FileRef::Guest(vmid), &fw.rules, cluster, dir);
                let policy = if inbound {
                    fw.options.policy_in_or_default()
                } else {
                    fw.options.policy_out_or_default()
                };
                push_policy_chain(&mut steps, backend, policy);
                Some(ChainPlan {
                    id,
                    resolver: Resolver {
                        cluster,
                        local: Some(fw),
                        localnet: Some(localnet),
                    },
                    steps,
                    policy,
                    not_filtered,
                    reject: if nft {
                        RejectMode::DropOnly
                    } else {
                        RejectMode::Iptables
                    },
                    policy_by: DecidedBy::Policy,
                })
            }
        }
    }

    /// pve-firewall's filters before a guest's chain: connection state on `PVEFW-FORWARD`,
    /// then for inbound traffic the host's input filters on `PVEFW-FWBR-IN`.
    fn guest_input_filters<'a>(&'a self, inbound: bool, opts: HostOpts, steps: &mut Vec<Step<'a>>) {
        push_std(
            steps,
            stdchain::conn_filters("PVEFW-FORWARD", opts.allow_invalid),
        );
        if inbound {
            if let Some(set) = self.cluster.ipset("blacklist") {
                steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
            }
            if opts.smurfs {
                push_std_static(steps, stdchain::smurfs_static());
            }
            if opts.tcpflags {
                push_std(steps, stdchain::tcpflags("PVEFW-tcpflags"));
            }
        }
    }

    /// pve-firewall's `PVEFW-HOST-IN` / `PVEFW-HOST-OUT` up to the policy
    /// (`enable_host_firewall`).
    fn host_iptables<'a>(
        &'a self,
        inbound: bool,
        opts: HostOpts,
        localnet: Cidr,
        steps: &mut Vec<Step<'a>>,
    ) {
        let cluster = &self.cluster;
        let chain = if inbound {
            "PVEFW-HOST-IN"
        } else {
            "PVEFW-HOST-OUT"
        };
        push_std(steps, [stdchain::loopback(chain)]);
        push_std(steps, stdchain::conn_filters(chain, opts.allow_invalid));
        if opts.ndp {
            // The host has no `radv` option: router advertisements only inbound.
            push_std(steps, [stdchain::ndp_iptables(inbound)]);
        }
        if inbound {
            if let Some(set) = cluster.ipset("blacklist") {
                steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
            }
            if opts.smurfs {
                push_std_static(steps, stdchain::smurfs_static());
            }
            if opts.tcpflags {
                push_std(steps, stdchain::tcpflags("PVEFW-tcpflags"));
            }
        }
        push_std(steps, [stdchain::igmp(chain)]);
        let dir = if inbound {
            Direction::In
        } else {
            Direction::Out
        };
        // Host rules come first so they can override cluster-wide rules.
        push_rules(steps, FileRef::Host, &self.host.rules, cluster, dir);
        push_rules(steps, FileRef::Cluster, &cluster.rules, cluster, dir);
        if inbound {
            // `local_network` is pushed into the management set.
            steps.push(Step::Builtin(BuiltinStep::Management(ManagementSet {
                set: cluster.ipset("management"),
                extra: Some(localnet),
                ports: MANAGEMENT_PORTS,
            })));
        } else {
            push_std(steps, [stdchain::local_network_out(localnet)]);
        }
        if let Some(c) = &self.corosync {
            push_std(steps, stdchain::corosync(chain, inbound, c));
        }
    }

    /// proxmox-firewall's `input` / `output` chains up to the policy: `default-in`/`-out`,
    /// `option-in`/`-out`, `host-in`/`-out`, `cluster-in`/`-out`.
    fn host_nftables<'a>(
        &'a self,
        inbound: bool,
        opts: HostOpts,
        localnet: Cidr,
        steps: &mut Vec<Step<'a>>,
    ) {
        let cluster = &self.cluster;
        let chain = if inbound { "default-in" } else { "default-out" };
        push_std(steps, [stdchain::loopback(chain)]);
        push_std(steps, stdchain::nft_allow_icmp(chain));
        if inbound {
            push_std(steps, [stdchain::nft_established(chain)]);
            push_std(steps, [stdchain::igmp(chain)]);
            // Without a `management` IP set, one is generated from the host's networks.
            let set = cluster.ipset("management");
            steps.push(Step::Builtin(BuiltinStep::Management(ManagementSet {
                set,
                extra: set.is_none().then_some(localnet),
                ports: NFT_MANAGEMENT_PORTS,
            })));
            push_std(steps, stdchain::nft_default_in_tail());
            if let Some(set) = cluster.ipset("blacklist") {
                steps.push(Step::Builtin(BuiltinStep::Blacklist(set)));
            }
        } else {
            push_std(steps, stdchain::nft_ct_vmap(chain));
        }
        push_std(steps, [stdchain::ndp_nftables(inbound, opts.ndp)]);
        if inbound {
            if opts.tcpflags {
                push_std(steps, stdchain::tcpflags("block-invalid-tcp"));
            }
            if opts.smurfs {
                push_std(steps, stdchain::nft_smurfs());
            }
            if !opts.allow_invalid {
                push_std(steps, [stdchain::nft_block_invalid()]);
            }
        }
        let dir = if inbound {
            Direction::In
        } else {
            Direction::Out
        };
        push_rules(steps, FileRef::Host, &self.host.rules, cluster, dir);
        push_rules(steps, FileRef::Cluster, &cluster.rules, cluster, dir);
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

impl ChainPlan<'_> {
    /// What a verdict becomes for this packet (a REJECT may end as a DROP).
    #[inline]
    pub(crate) fn finish(&self, v: Verdict, pkt: &Packet) -> Verdict {
        finish(self.reject, v, pkt)
    }
}

#[inline]
pub(crate) fn finish(mode: RejectMode, v: Verdict, pkt: &Packet) -> Verdict {
    if v == Verdict::Reject {
        stdchain::refine_reject(mode, pkt.family(), pkt.proto, &pkt.source, pkt.dsttype)
    } else {
        v
    }
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
        let verdict = plan.finish(verdict, pkt);
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
            Step::Std(e) => {
                if e.m.matches(pkt) {
                    return done(e.verdict, e.by.clone(), trace);
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
    done(Verdict::from(plan.policy), plan.policy_by.clone(), trace)
}
