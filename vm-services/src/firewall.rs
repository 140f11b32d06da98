//! Firewall decisions that do not need the rule model: positions, moves and the anti-spoofing
//! IP set.
//!
//! PVE inserts a new rule at position 0 (ignoring `pos`) and moves a rule with
//! `PUT .../rules/{pos}` `moveto=N`, which places the rule *before the rule that was at `N`*
//! (so moving down to final index `p` needs `moveto = p + 1`). [`apply_move`] is that
//! algorithm, used to check every plan here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::MacAddr;
use crate::service::Service;

/// A VM's firewall as the customer set it (options and rules), kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SavedFirewall {
    /// `enable`.
    pub enable: Option<bool>,
    /// `policy_in` (`ACCEPT`, `DROP`, `REJECT`).
    pub policy_in: Option<String>,
    /// `policy_out`.
    pub policy_out: Option<String>,
    /// The rules in order, as the API sends them.
    pub rules: Vec<pve_vps_firewall::ApiRule>,
    /// The VM's IP sets with their entries, except the provider's `ipfilter-netN` (rebuilt
    /// from the service). Plans stored before this field existed read it as empty.
    #[serde(default)]
    pub ipsets: Vec<SavedIpSet>,
    /// The VM's aliases.
    #[serde(default)]
    pub aliases: Vec<SavedAlias>,
}

/// A VM-level IP set kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedIpSet {
    /// The set's name.
    pub name: String,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// The entries, as PVE lists them.
    pub entries: Vec<SavedIpSetEntry>,
}

/// One entry of a [`SavedIpSet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedIpSetEntry {
    /// An address, network, range or alias name, as PVE lists it.
    pub cidr: String,
    /// `!` entries.
    #[serde(default)]
    pub nomatch: bool,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A VM-level alias kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAlias {
    /// The alias's name.
    pub name: String,
    /// Its address or network.
    pub cidr: String,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The anti-spoofing IP set of `net0`, managed by the provider.
pub const IPFILTER_NET0: &str = "ipfilter-net0";

/// One `PUT .../firewall/rules/{pos}` with `moveto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMove {
    /// The rule's current position.
    pub pos: usize,
    /// PVE's `moveto`: the rule is placed before the rule currently at this position.
    pub moveto: usize,
}

/// PVE's move algorithm on any list (the reference the plans are checked against).
pub fn apply_move<T: Clone>(rules: &[T], mv: RuleMove) -> Vec<T> {
    if mv.pos >= rules.len() || mv.pos == mv.moveto {
        return rules.to_vec();
    }
    let rule = rules[mv.pos].clone();
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        if i == mv.pos {
            continue;
        }
        if i == mv.moveto {
            out.push(rule.clone());
        }
        out.push(r.clone());
    }
    if mv.moveto >= rules.len() {
        out.push(rule);
    }
    out
}

/// The move that takes the rule at `from` to final index `to`.
pub fn move_to_index(from: usize, to: usize) -> RuleMove {
    RuleMove {
        pos: from,
        moveto: if to > from { to + 1 } else { to },
    }
}

/// Adding a rule at customer position `position` in a list of `len` rules: create it (PVE
/// puts it at 0; send `enable=1` or PVE disables it), then this move, if any.
pub fn insert_position(position: usize, len: usize) -> Result<Option<RuleMove>, Error> {
    if position > len {
        return Err(Error::RulePosition { pos: position, len });
    }
    Ok((position != 0).then(|| move_to_index(0, position)))
}

/// A drag-and-drop: the rule at `from` dropped at index `to`.
pub fn drag(from: usize, to: usize, len: usize) -> Result<Option<RuleMove>, Error> {
    for p in [from, to] {
        if p >= len {
            return Err(Error::RulePosition { pos: p, len });
        }
    }
    Ok((from != to).then(|| move_to_index(from, to)))
}

/// The moves that reorder `current` into `desired` (the same items, e.g. rule digests or
/// ids), to be sent in order. Returns `None` when `desired` is not a permutation of `current`.
pub fn reorder_plan<T: PartialEq + Clone>(current: &[T], desired: &[T]) -> Option<Vec<RuleMove>> {
    if current.len() != desired.len() {
        return None;
    }
    let mut work = current.to_vec();
    let mut moves = Vec::new();
    for (i, want) in desired.iter().enumerate() {
        let j = i + work[i..].iter().position(|x| x == want)?;
        if j != i {
            let mv = move_to_index(j, i);
            work = apply_move(&work, mv);
            moves.push(mv);
        }
    }
    Some(moves)
}

/// Refuses a customer edit of a provider-managed IP set (`ipfilter-netN`).
pub fn check_customer_ipset(name: &str) -> Result<(), Error> {
    let lower = name.to_ascii_lowercase();
    let reserved = lower
        .strip_prefix("ipfilter-net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if reserved {
        Err(Error::Reserved {
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The IPv6 link-local address PVE derives from a MAC (EUI-64); NDP needs it in the ipfilter.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let b = mac.bytes();
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// One entry of an IP set as PVE lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsetEntry {
    /// The address or network.
    pub cidr: IpNet,
    /// `!` entries (no-match).
    #[serde(default)]
    pub nomatch: bool,
}

/// The entries `ipfilter-net0` must hold: every assigned address as a host entry, and the
/// link-local address of the MAC when the service has IPv6.
pub fn desired_ipfilter(service: &Service) -> BTreeSet<IpNet> {
    let mut s: BTreeSet<IpNet> = service.host_nets().into_iter().collect();
    if service.ipv6.is_some() {
        s.insert(IpNet::from(IpAddr::V6(link_local(service.mac))));
    }
    s
}

/// What to add to and remove from an IP set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpsetDiff {
    /// Entries to add (`POST .../ipset/{name}`).
    pub add: Vec<IpNet>,
    /// Entries to remove (`DELETE .../ipset/{name}/{cidr}`).
    pub remove: Vec<IpNet>,
}

impl IpsetDiff {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The diff that makes `current` equal `desired`. Entries are compared as networks with host
/// bits cleared; a no-match entry is always removed (it would let spoofed traffic through
/// nothing, but it is not ours).
pub fn diff_ipset(current: &[IpsetEntry], desired: &BTreeSet<IpNet>) -> IpsetDiff {
    let mut d = IpsetDiff::default();
    let mut have = BTreeSet::new();
    for e in current {
        let n = e.cidr.trunc();
        if e.nomatch || !desired.contains(&n) || !have.insert(n) {
            d.remove.push(e.cidr);
        }
    }
    d.add = desired
        .iter()
        .filter(|n| !have.contains(*n))
        .copied()
        .collect();
    d
}

/// Applies a diff to a listing (what PVE would hold afterwards); used by tests and simulators.
pub fn apply_ipset_diff(current: &[IpsetEntry], diff: &IpsetDiff) -> Vec<IpsetEntry> {
    let mut out: Vec<IpsetEntry> = current.to_vec();
    for r in &diff.remove {
        if let Some(i) = out.iter().position(|e| e.cidr == *r) {
            out.remove(i);
        }
    }
    out.extend(diff.add.iter().map(|n| IpsetEntry {
        cidr: *n,
        nomatch: false,
    }));
    out
}

/// Which way a tested connection goes, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrafficDirection {
    /// From the remote address to the VM (`IN` rules, `policy_in`).
    In,
    /// From the VM to the remote address (`OUT` rules, `policy_out`).
    Out,
}

impl std::fmt::Display for TrafficDirection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrafficDirection::In => "IN",
            TrafficDirection::Out => "OUT",
        })
    }
}

/// The protocol of a tested connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TestProto {
    /// TCP (a new connection: SYN).
    Tcp,
    /// UDP.
    Udp,
    /// ICMP echo request (ICMPv6 for an IPv6 address).
    Icmp,
}

impl TestProto {
    /// The name the firewall uses (`tcp`, `udp`, `icmp`).
    pub fn as_str(self) -> &'static str {
        match self {
            TestProto::Tcp => "tcp",
            TestProto::Udp => "udp",
            TestProto::Icmp => "icmp",
        }
    }
}

/// A customer's "can this connection pass?" question, validated: a port (1-65535) for TCP
/// and UDP and none for ICMP.
///
/// ```
/// use pve_vps_services::firewall::{ConnectionQuestion, TrafficDirection};
///
/// let q = ConnectionQuestion::parse("in", "tcp", "22", "198.51.100.7")?;
/// assert_eq!(q.direction(), TrafficDirection::In);
/// assert_eq!(q.port(), Some(22));
/// assert!(ConnectionQuestion::parse("in", "tcp", "70000", "198.51.100.7").is_err());
/// assert!(ConnectionQuestion::parse("in", "icmp", "8", "198.51.100.7").is_err());
/// # Ok::<(), pve_vps_services::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConnectionQuestion {
    direction: TrafficDirection,
    proto: TestProto,
    port: Option<u16>,
    remote: IpAddr,
}

impl ConnectionQuestion {
    /// A question; a port is required for TCP and UDP (not 0) and refused for ICMP.
    pub fn new(
        direction: TrafficDirection,
        proto: TestProto,
        port: Option<u16>,
        remote: IpAddr,
    ) -> Result<Self, Error> {
        let bad = |value: String, reason: &str| Error::InvalidValue {
            what: "port",
            value,
            reason: reason.into(),
        };
        match (proto, port) {
            (TestProto::Icmp, Some(p)) => return Err(bad(p.to_string(), "icmp has no ports")),
            (TestProto::Tcp | TestProto::Udp, None) => {
                return Err(bad(String::new(), "tcp and udp need a port"));
            }
            (_, Some(0)) => return Err(bad("0".into(), "must be from 1 to 65535")),
            _ => {}
        }
        Ok(ConnectionQuestion {
            direction,
            proto,
            port,
            remote,
        })
    }

    /// A question from a form's text fields: direction `in`/`out` (empty: `in`), protocol
    /// `tcp`/`udp`/`icmp` (any case), port (empty for ICMP) and an IPv4 or IPv6 address;
    /// surrounding spaces are ignored.
    pub fn parse(direction: &str, proto: &str, port: &str, remote: &str) -> Result<Self, Error> {
        let direction = match direction.trim().to_ascii_lowercase().as_str() {
            "" | "in" => TrafficDirection::In,
            "out" => TrafficDirection::Out,
            _ => {
                return Err(Error::InvalidValue {
                    what: "direction",
                    value: direction.into(),
                    reason: "choose in or out".into(),
                });
            }
        };
        let proto = match proto.trim().to_ascii_lowercase().as_str() {
            "tcp" => TestProto::Tcp,
            "udp" => TestProto::Udp,
            "icmp" => TestProto::Icmp,
            _ => {
                return Err(Error::InvalidValue {
                    what: "protocol",
                    value: proto.into(),
                    reason: "choose tcp, udp or icmp".into(),
                });
            }
        };
        let port = match port.trim() {
            "" => None,
            p => Some(p.parse::<u16>().map_err(|_| Error::InvalidValue {
                what: "port",
                value: p.into(),
                reason: "must be a number from 1 to 65535".into(),
            })?),
        };
        let remote = remote.trim();
        let remote: IpAddr = remote.parse().map_err(|_| Error::InvalidValue {
            what: "address",
            value: remote.into(),
            reason: "must be an IPv4 or IPv6 address like 198.51.100.7".into(),
        })?;
        Self::new(direction, proto, port, remote)
    }

    /// The direction.
    pub fn direction(&self) -> TrafficDirection {
        self.direction
    }

    /// The protocol.
    pub fn proto(&self) -> TestProto {
        self.proto
    }

    /// The destination port (TCP, UDP).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The remote address: the source of an incoming connection, the destination of an
    /// outgoing one.
    pub fn remote(&self) -> IpAddr {
        self.remote
    }
}

/// What decided a tested connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum ConnectionDecider {
    /// One of the VM's own rules, at this position of its table.
    Rule {
        /// Position in the VM's rule table.
        pos: usize,
        /// The rule in `.fw` syntax.
        text: String,
    },
    /// A rule the provider keeps outside the VM's table: in the cluster's file or in a
    /// security group a `GROUP` rule of the VM names.
    ProviderRule {
        /// Where it is (`cluster.fw [group webservers] #0`).
        location: String,
        /// The rule in `.fw` syntax.
        text: String,
    },
    /// No rule matched: the VM's policy for the direction.
    Policy {
        /// The direction whose policy decided.
        direction: TrafficDirection,
        /// `ACCEPT`, `DROP` or `REJECT`.
        policy: String,
    },
    /// A rule of the firewall's standard chains (anti-spoofing, connection tracking, the
    /// standard DROP/REJECT noise filters).
    Standard {
        /// Which one.
        what: String,
    },
    /// The firewall does not filter this connection.
    NotFiltered {
        /// Why (the VM's firewall is off, its NIC has no `firewall=1`, the cluster firewall
        /// is off).
        reason: String,
    },
}

/// The answer to a [`ConnectionQuestion`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionTest {
    /// `ACCEPT`, `DROP` or `REJECT`.
    pub verdict: String,
    /// What decided.
    pub decider: ConnectionDecider,
}

impl ConnectionTest {
    /// Whether the connection passes.
    pub fn accepted(&self) -> bool {
        self.verdict == "ACCEPT"
    }

    /// One sentence for a customer: `decided by rule #0`, `no rule matched: decided by the
    /// incoming policy (DROP)`.
    pub fn sentence(&self) -> String {
        match &self.decider {
            ConnectionDecider::Rule { pos, .. } => format!("decided by rule #{pos}"),
            ConnectionDecider::ProviderRule { location, .. } => {
                format!("decided by your provider's rule {location}")
            }
            ConnectionDecider::Policy { direction, policy } => {
                let word = match direction {
                    TrafficDirection::In => "incoming",
                    TrafficDirection::Out => "outgoing",
                };
                format!("no rule matched: decided by the {word} policy ({policy})")
            }
            ConnectionDecider::Standard { what } => {
                format!("decided by the firewall's standard chain: {what}")
            }
            ConnectionDecider::NotFiltered { reason } => reason.clone(),
        }
    }
}

/// The addresses the lockout guard evaluates for the management `sources`: for each source
/// network, its first address and every address inside it where a boundary of an address,
/// network, range, IP set entry or alias of `files` starts or ends. The firewall's answer for
/// a source address can only change at such a boundary, so checking these addresses checks
/// every address of the networks.
pub fn probe_addresses(sources: &[IpNet], files: &[&pve_vps_firewall::FwFile]) -> Vec<IpAddr> {
    use pve_vps_firewall::{AddrItem, Address, IpSetValue};
    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }
    // (is IPv4, start) of every interval boundary: an item [lo, hi] gives lo and hi + 1.
    let mut cuts: BTreeSet<(bool, u128)> = BTreeSet::new();
    let mut span = |lo: IpAddr, hi: IpAddr| {
        cuts.insert((lo.is_ipv4(), to_u128(lo)));
        cuts.insert((hi.is_ipv4(), to_u128(hi).saturating_add(1)));
    };
    for f in files {
        let rules = f.rules.iter().chain(f.groups.iter().flat_map(|g| &g.rules));
        for r in rules {
            for a in [&r.source, &r.dest].into_iter().flatten() {
                if let Address::List(items) = a {
                    for it in items {
                        match *it {
                            AddrItem::Ip(ip) => span(ip, ip),
                            AddrItem::Cidr(n) => span(n.network(), n.broadcast()),
                            AddrItem::Range(lo, hi) => span(lo, hi),
                        }
                    }
                }
            }
        }
        for set in &f.ipsets {
            for e in &set.entries {
                if let IpSetValue::Cidr(c) = &e.value {
                    span(c.net().network(), c.net().broadcast());
                }
            }
        }
        for a in &f.aliases {
            span(a.cidr.net().network(), a.cidr.net().broadcast());
        }
    }
    let mut out = BTreeSet::new();
    for net in sources {
        let (v4, lo, hi) = (
            net.addr().is_ipv4(),
            to_u128(net.network()),
            to_u128(net.broadcast()),
        );
        out.insert(net.network());
        if hi == lo {
            continue;
        }
        for &(_, c) in cuts.range((v4, lo + 1)..=(v4, hi)) {
            out.insert(if v4 {
                IpAddr::from(std::net::Ipv4Addr::from(c as u32))
            } else {
                IpAddr::from(Ipv6Addr::from(c))
            });
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;
    use proptest::prelude::*;

    #[test]
    fn pve_move_semantics() {
        let r = ["n", "a", "b", "c"];
        assert_eq!(
            apply_move(&r, RuleMove { pos: 0, moveto: 2 }),
            ["a", "n", "b", "c"]
        );
        assert_eq!(apply_move(&r, move_to_index(0, 2)), ["a", "b", "n", "c"]);
        assert_eq!(apply_move(&r, move_to_index(3, 1)), ["n", "c", "a", "b"]);
        assert_eq!(apply_move(&r, move_to_index(0, 3)), ["a", "b", "c", "n"]);
        assert!(insert_position(5, 4).unwrap_err().is_invalid_input());
        assert_eq!(insert_position(0, 4).unwrap(), None);
    }

    #[test]
    fn ipfilter() {
        let s = fixtures::service();
        let want = desired_ipfilter(&s);
        assert!(want.contains(&"fe80::be24:11ff:fe7a:4098/128".parse().unwrap()));
        assert_eq!(want.len(), 6);
        let current = vec![
            IpsetEntry {
                cidr: "192.168.130.2/32".parse().unwrap(),
                nomatch: false,
            },
            IpsetEntry {
                cidr: "10.0.0.1/32".parse().unwrap(),
                nomatch: false,
            },
            IpsetEntry {
                cidr: "192.168.130.3/32".parse().unwrap(),
                nomatch: true,
            },
        ];
        let d = diff_ipset(&current, &want);
        assert_eq!(d.remove.len(), 2);
        assert_eq!(d.add.len(), 5);
        let after = apply_ipset_diff(&current, &d);
        assert!(diff_ipset(&after, &want).is_empty());
        assert!(
            check_customer_ipset("ipfilter-net0")
                .unwrap_err()
                .is_denied()
        );
        assert!(check_customer_ipset("IPFILTER-NET1").is_err());
        assert!(check_customer_ipset("office").is_ok());
    }

    #[test]
    fn probes_cover_every_boundary_inside_the_sources() {
        use pve_vps_firewall::{FileKind, parse};
        let f = parse(
            "[ALIASES]\nadmin 198.51.100.7\n\n[IPSET blocked]\n198.51.100.128/25\n!198.51.100.200\n\n\
             [RULES]\nIN DROP -source 10.0.0.0/8\nIN DROP -source 198.51.100.10-198.51.100.12\n",
            FileKind::Cluster,
        )
        .unwrap();
        let src: Vec<IpNet> = vec![
            "198.51.100.0/24".parse().unwrap(),
            "192.0.2.9/32".parse().unwrap(),
        ];
        let got: Vec<String> = probe_addresses(&src, &[&f])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.9",
                "198.51.100.0",
                "198.51.100.7",
                "198.51.100.8",
                "198.51.100.10",
                "198.51.100.13",
                "198.51.100.128",
                "198.51.100.200",
                "198.51.100.201",
            ]
        );
        // Without any boundary, one address per source.
        assert_eq!(probe_addresses(&src, &[]).len(), 2);
    }

    proptest! {
        /// A form's question is taken exactly when its port fits its protocol: 1-65535 for
        /// TCP/UDP, none for ICMP; whatever else is typed is refused with a typed error.
        #[test]
        fn connection_question_takes_exactly_the_valid_ports(
            port in prop_oneof![Just(String::new()), (0u32..200_000).prop_map(|p| p.to_string()), "[ a-z0-9.-]{0,6}"],
            proto in prop_oneof![Just("tcp"), Just("UDP"), Just("icmp"), Just("sctp")],
            dir in prop_oneof![Just("in"), Just("OUT"), Just(""), Just("both")],
            a in any::<u32>(),
            v6 in any::<bool>(),
        ) {
            let remote = if v6 { IpAddr::from(Ipv6Addr::from(u128::from(a) << 64)) } else { IpAddr::from(std::net::Ipv4Addr::from(a)) };
            let got = ConnectionQuestion::parse(dir, proto, &port, &remote.to_string());
            let n: Option<u32> = port.trim().parse().ok();
            let icmp = proto.eq_ignore_ascii_case("icmp");
            let valid = ["in", "out", ""].contains(&dir.to_ascii_lowercase().as_str())
                && ["tcp", "udp", "icmp"].contains(&proto.to_ascii_lowercase().as_str())
                && if icmp { port.trim().is_empty() } else { matches!(n, Some(1..=65535)) };
            match got {
                Ok(q) => {
                    prop_assert!(valid, "{q:?} taken from {port:?}");
                    prop_assert_eq!(q.remote(), remote);
                    prop_assert_eq!(q.port().map(u32::from), if icmp { None } else { n });
                }
                Err(e) => {
                    prop_assert!(!valid, "{e}");
                    prop_assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
                }
            }
        }

        #[test]
        fn insert_lands_where_asked(len in 0usize..20, pos in 0usize..21) {
            prop_assume!(pos <= len);
            let mut rules: Vec<usize> = (1..=len).collect();
            rules.insert(0, 0); // PVE puts the new rule (0) on top
            if let Some(mv) = insert_position(pos, len).unwrap() {
                rules = apply_move(&rules, mv);
            }
            prop_assert_eq!(rules.iter().position(|r| *r == 0), Some(pos));
        }

        #[test]
        fn drag_lands_where_dropped(len in 1usize..20, a in 0usize..20, b in 0usize..20) {
            prop_assume!(a < len && b < len);
            let rules: Vec<usize> = (0..len).collect();
            let out = match drag(a, b, len).unwrap() { Some(mv) => apply_move(&rules, mv), None => rules.clone() };
            prop_assert_eq!(out[b], a);
            let mut expect = rules.clone();
            let x = expect.remove(a);
            expect.insert(b, x);
            prop_assert_eq!(out, expect);
        }

        #[test]
        fn reorder_reaches_any_permutation(perm in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
            let current: Vec<usize> = (0..perm.len()).collect();
            let moves = reorder_plan(&current, &perm).unwrap();
            prop_assert!(moves.len() < perm.len().max(1));
            let out = moves.iter().fold(current, |acc, mv| apply_move(&acc, *mv));
            prop_assert_eq!(out, perm);
        }
    }
}
