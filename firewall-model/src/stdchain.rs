//! Packet state the standard chains look at (connection tracking, address types, TCP flags),
//! and the standard chains themselves: what pve-firewall (`src/PVE/Firewall.pm`, iptables) and
//! proxmox-firewall (`proxmox-firewall/resources/proxmox-firewall.nft` and
//! `proxmox-firewall/src/firewall.rs`, nftables) put around the user's rules.
//!
//! Every standard rule is a match (a conjunction of simple conditions) with a verdict
//! and a name, so the reference evaluator tests it directly and the compiled evaluator turns it
//! into intervals like any user rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::addr::{Cidr, Family};
use crate::error::{Error, Result};
use crate::text::{Iface, Verdict};

/// The connection-tracking state of a packet (`--ctstate` / `ct state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CtState {
    /// The first packet of a connection (the default).
    #[default]
    New,
    /// A packet of a connection already accepted (a reply, or later packets).
    Established,
    /// A packet related to an accepted connection (an ICMP error, an FTP data connection).
    Related,
    /// A packet conntrack cannot place (out of window, a stray RST).
    Invalid,
}

impl CtState {
    /// Every state.
    pub const ALL: [CtState; 4] = [
        CtState::New,
        CtState::Established,
        CtState::Related,
        CtState::Invalid,
    ];
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
    fn from_code(c: u16) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }
}

impl FromStr for CtState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "NEW" => Ok(CtState::New),
            "ESTABLISHED" => Ok(CtState::Established),
            "RELATED" => Ok(CtState::Related),
            "INVALID" => Ok(CtState::Invalid),
            _ => Err(Error::invalid(
                "conntrack state",
                s,
                "expected NEW, ESTABLISHED, RELATED or INVALID",
            )),
        }
    }
}

impl fmt::Display for CtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
        })
    }
}

/// The kernel's type of an address (`-m addrtype --src-type/--dst-type`, `meta pkttype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AddrType {
    /// An ordinary unicast address (the default).
    #[default]
    Unicast,
    /// An address of the host itself.
    Local,
    /// A broadcast address (limited or of a subnet).
    Broadcast,
    /// A multicast address.
    Multicast,
    /// An anycast address.
    Anycast,
}

impl AddrType {
    /// Every type.
    pub const ALL: [AddrType; 5] = [
        AddrType::Unicast,
        AddrType::Local,
        AddrType::Broadcast,
        AddrType::Multicast,
        AddrType::Anycast,
    ];
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
    fn from_code(c: u16) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }
    /// The type the kernel gives `ip` without knowing the host's subnets: multicast ranges,
    /// the limited broadcast address, one of `local` addresses, else unicast.
    pub fn classify(ip: &IpAddr, local: &[IpAddr]) -> AddrType {
        if ip.is_multicast() {
            AddrType::Multicast
        } else if *ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            AddrType::Broadcast
        } else if local.contains(ip) {
            AddrType::Local
        } else {
            AddrType::Unicast
        }
    }
}

impl FromStr for AddrType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "UNICAST" => Ok(AddrType::Unicast),
            "LOCAL" => Ok(AddrType::Local),
            "BROADCAST" => Ok(AddrType::Broadcast),
            "MULTICAST" => Ok(AddrType::Multicast),
            "ANYCAST" => Ok(AddrType::Anycast),
            _ => Err(Error::invalid(
                "address type",
                s,
                "expected UNICAST, LOCAL, BROADCAST, MULTICAST or ANYCAST",
            )),
        }
    }
}

/// TCP flag bits as carried in [`Packet::tcp_flags`](crate::eval::Packet::tcp_flags).
pub mod tcp {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// All six flags.
    pub const ALL: u8 = 0x3f;

    /// Parses `SYN,ACK` (names in any case, `NONE` for no flag) or a number.
    pub fn parse(s: &str) -> crate::error::Result<u8> {
        if let Ok(n) = s.parse::<u8>() {
            return if n & !ALL == 0 {
                Ok(n)
            } else {
                Err(crate::error::Error::invalid(
                    "tcp flags",
                    s,
                    "only the six low bits exist",
                ))
            };
        }
        let mut v = 0;
        for part in s.split(',') {
            v |= match part.trim().to_ascii_uppercase().as_str() {
                "FIN" => FIN,
                "SYN" => SYN,
                "RST" => RST,
                "PSH" => PSH,
                "ACK" => ACK,
                "URG" => URG,
                "NONE" => 0,
                _ => {
                    return Err(crate::error::Error::invalid(
                        "tcp flags",
                        s,
                        "expected FIN, SYN, RST, PSH, ACK, URG or NONE",
                    ));
                }
            };
        }
        Ok(v)
    }
}

/// Which firewall implementation runs on the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `pve-firewall` (iptables), PVE's default.
    #[default]
    Iptables,
    /// `proxmox-firewall` (nftables), `nftables: 1` in `host.fw`.
    Nftables,
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "iptables" => Ok(Backend::Iptables),
            "nftables" => Ok(Backend::Nftables),
            _ => Err(Error::invalid(
                "firewall backend",
                s,
                "expected iptables or nftables",
            )),
        }
    }
}

/// A rule of a standard chain: the chain's name and what the rule is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct StdRule {
    /// The chain as pve-firewall or proxmox-firewall names it (`PVEFW-Drop`, `default-in` ...).
    pub chain: &'static str,
    /// What the rule matches.
    pub rule: &'static str,
}

impl fmt::Display for StdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.chain, self.rule)
    }
}

/// Number of distinct meta keys (conntrack state, destination and source type).
pub(crate) const META_KEYS: u16 = 1 << 8;

/// The meta key of a packet: conntrack state in the high bits (most standard rules test only
/// the state, which then is one interval), then destination type, then source type.
pub(crate) fn meta_key(ct: CtState, src: AddrType, dst: AddrType) -> u16 {
    (ct as u16) << 6 | (dst as u16) << 3 | (src as u16)
}

/// How a REJECT ends for a packet (`PVEFW-reject` / `do-reject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RejectMode {
    /// pve-firewall's `PVEFW-reject`.
    Iptables,
    /// proxmox-firewall's `do-reject` (host and forward chains).
    Nftables,
    /// proxmox-firewall guest chains: REJECT is not possible, the packet is dropped.
    DropOnly,
}

fn multicast4() -> Cidr {
    Cidr::new(IpNet::from(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0))).with_prefix(4))
}

trait WithPrefix {
    fn with_prefix(self, len: u8) -> IpNet;
}
impl WithPrefix for IpNet {
    fn with_prefix(self, len: u8) -> IpNet {
        IpNet::new(self.addr(), len).unwrap_or(self)
    }
}

fn cidr(ip: IpAddr, len: u8) -> Cidr {
    Cidr::new(IpNet::from(ip).with_prefix(len))
}

/// What a REJECT verdict becomes for `pkt`.
pub(crate) fn refine_reject(
    mode: RejectMode,
    fam: Family,
    proto: u8,
    source: &IpAddr,
    dsttype: AddrType,
) -> Verdict {
    let mcast_src = || matches!(source, IpAddr::V4(a) if a.is_multicast());
    let drop = match (mode, fam) {
        (RejectMode::DropOnly, _) => true,
        // PVEFW-reject (IPv4): broadcast destination, multicast source and ICMP are dropped.
        (RejectMode::Iptables, Family::V4) => {
            dsttype == AddrType::Broadcast || mcast_src() || proto == crate::proto::numbers::ICMP
        }
        // PVEFW-reject (IPv6): ICMPv6 is dropped.
        (RejectMode::Iptables, Family::V6) => proto == crate::proto::numbers::ICMPV6,
        // do-reject: link-layer broadcast and multicast sources are dropped.
        (RejectMode::Nftables, _) => dsttype == AddrType::Broadcast || mcast_src(),
    };
    if drop { Verdict::Drop } else { Verdict::Reject }
}

/// A conjunction of simple conditions; empty lists and zero masks match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StdMatch {
    pub(crate) fam: Option<Family>,
    pub(crate) iface: Option<Iface>,
    pub(crate) proto: Option<u8>,
    pub(crate) dport: Vec<(u16, u16)>,
    pub(crate) sport: Vec<(u16, u16)>,
    /// ICMP types, each with an optional code.
    pub(crate) icmp: Vec<(u8, Option<u8>)>,
    pub(crate) src: Vec<Cidr>,
    pub(crate) src_not: Vec<Cidr>,
    pub(crate) dst: Vec<Cidr>,
    /// Bit mask of [`CtState`]s.
    pub(crate) ct: u8,
    /// Bit mask of source [`AddrType`]s.
    pub(crate) srctype: u8,
    /// Bit mask of destination [`AddrType`]s.
    pub(crate) dsttype: u8,
    /// `(mask, value, equal)`: the packet's `flags & mask == value` must be `equal`.
    pub(crate) flags: Option<(u8, u8, bool)>,
}

fn in_ranges(ranges: &[(u16, u16)], p: Option<u16>) -> bool {
    ranges.is_empty() || p.is_some_and(|p| ranges.iter().any(|(a, b)| *a <= p && p <= *b))
}

impl StdMatch {
    /// Do the state and address-type conditions accept this combination?
    pub(crate) fn meta_matches(&self, ct: CtState, src: AddrType, dst: AddrType) -> bool {
        (self.ct == 0 || self.ct & ct.bit() != 0)
            && (self.srctype == 0 || self.srctype & src.bit() != 0)
            && (self.dsttype == 0 || self.dsttype & dst.bit() != 0)
    }

    /// Does the TCP flag condition accept these flags?
    pub(crate) fn flags_match(&self, flags: u8) -> bool {
        self.flags
            .is_none_or(|(mask, value, equal)| (flags & mask == value) == equal)
    }

    /// Is any state or address-type condition set?
    pub(crate) fn has_meta(&self) -> bool {
        self.ct != 0 || self.srctype != 0 || self.dsttype != 0
    }

    /// The meta keys ([`meta_key`]) it accepts, as inclusive intervals.
    pub(crate) fn meta_intervals(&self) -> Vec<(u128, u128)> {
        let mut out: Vec<(u128, u128)> = Vec::new();
        for k in 0..META_KEYS {
            let (Some(ct), Some(d), Some(s)) = (
                CtState::from_code(k >> 6),
                AddrType::from_code((k >> 3) & 7),
                AddrType::from_code(k & 7),
            ) else {
                continue;
            };
            if self.meta_matches(ct, s, d) {
                push_key(&mut out, u128::from(k));
            }
        }
        out
    }

    /// The TCP flag values (0 to 63) it accepts, as inclusive intervals.
    pub(crate) fn flag_intervals(&self) -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        for f in 0..=tcp::ALL {
            if self.flags_match(f) {
                push_key(&mut out, u128::from(f));
            }
        }
        out
    }

    #[inline]
    pub(crate) fn matches(&self, pkt: &crate::eval::Packet) -> bool {
        // Cheapest and most selective tests first.
        self.proto.is_none_or(|p| p == pkt.proto)
            && self.fam.is_none_or(|f| f == pkt.family())
            && self.meta_matches(pkt.ct, pkt.srctype, pkt.dsttype)
            && self.flags_match(pkt.tcp_flags)
            && in_ranges(&self.dport, pkt.dport)
            && in_ranges(&self.sport, pkt.sport)
            && (self.icmp.is_empty()
                || pkt.icmp.is_some_and(|(t, c)| {
                    self.icmp
                        .iter()
                        .any(|(mt, mc)| *mt == t && mc.is_none_or(|mc| mc == c))
                }))
            && (self.src.is_empty() || self.src.iter().any(|c| c.contains(&pkt.source)))
            && !self.src_not.iter().any(|c| c.contains(&pkt.source))
            && (self.dst.is_empty() || self.dst.iter().any(|c| c.contains(&pkt.dest)))
            && self
                .iface
                .as_ref()
                .is_none_or(|i| pkt.iface.as_ref() == Some(i))
    }
}

fn push_key(out: &mut Vec<(u128, u128)>, k: u128) {
    match out.last_mut() {
        Some(last) if last.1 + 1 == k => last.1 = k,
        _ => out.push((k, k)),
    }
}

/// One standard rule: what it matches, what it does, and its name.
#[derive(Clone, Debug)]
pub(crate) struct StdEntry {
    pub(crate) m: StdMatch,
    pub(crate) verdict: Verdict,
    pub(crate) by: crate::eval::DecidedBy,
}

fn std(chain: &'static str, rule: &'static str, m: StdMatch, verdict: Verdict) -> StdEntry {
    StdEntry {
        m,
        verdict,
        by: crate::eval::DecidedBy::Standard(StdRule { chain, rule }),
    }
}

use crate::proto::numbers::{ICMP, ICMPV6, TCP, UDP};

fn m() -> StdMatch {
    StdMatch::default()
}
fn proto(p: u8) -> StdMatch {
    StdMatch {
        proto: Some(p),
        ..m()
    }
}
fn dports(p: u8, ports: &[(u16, u16)]) -> StdMatch {
    StdMatch {
        dport: ports.to_vec(),
        ..proto(p)
    }
}
fn v4(mut x: StdMatch) -> StdMatch {
    x.fam = Some(Family::V4);
    x
}
fn v6(mut x: StdMatch) -> StdMatch {
    x.fam = Some(Family::V6);
    x
}
fn icmp4(types: &[(u8, Option<u8>)]) -> StdMatch {
    StdMatch {
        icmp: types.to_vec(),
        ..v4(proto(ICMP))
    }
}
fn icmp6(types: &[(u8, Option<u8>)]) -> StdMatch {
    StdMatch {
        icmp: types.to_vec(),
        ..v6(proto(ICMPV6))
    }
}
fn ct(states: &[CtState]) -> StdMatch {
    StdMatch {
        ct: states.iter().fold(0, |a, s| a | s.bit()),
        ..m()
    }
}

/// `-m conntrack --ctstate INVALID -j DROP` (unless `nf_conntrack_allow_invalid: 1`) and
/// `--ctstate RELATED,ESTABLISHED -j ACCEPT` (`ruleset_chain_add_conn_filters`).
pub(crate) fn conn_filters(chain: &'static str, allow_invalid: bool) -> Vec<StdEntry> {
    let mut out = Vec::new();
    if !allow_invalid {
        out.push(std(
            chain,
            "conntrack INVALID",
            ct(&[CtState::Invalid]),
            Verdict::Drop,
        ));
    }
    out.push(std(
        chain,
        "conntrack RELATED,ESTABLISHED",
        ct(&[CtState::Established, CtState::Related]),
        Verdict::Accept,
    ));
    out
}

/// `PVEFW-smurfs` (IPv4, packets in state NEW or INVALID): a broadcast or multicast source is
/// dropped; `0.0.0.0` (DHCP) returns first.
pub(crate) fn smurfs() -> Vec<StdEntry> {
    let zero = cidr(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 32);
    let base = StdMatch {
        src_not: vec![zero],
        ..v4(ct(&[CtState::New, CtState::Invalid]))
    };
    vec![
        std(
            "PVEFW-smurfs",
            "broadcast source",
            StdMatch {
                srctype: AddrType::Broadcast.bit(),
                ..base.clone()
            },
            Verdict::Drop,
        ),
        std(
            "PVEFW-smurfs",
            "multicast source 224.0.0.0/4",
            StdMatch {
                src: vec![multicast4()],
                ..base
            },
            Verdict::Drop,
        ),
    ]
}

/// `PVEFW-tcpflags` / `block-invalid-tcp`: illegal combinations of TCP flags are dropped.
pub(crate) fn tcpflags(chain: &'static str) -> Vec<StdEntry> {
    use tcp::*;
    let f = |mask: u8, value: u8| StdMatch {
        flags: Some((mask, value, true)),
        ..proto(TCP)
    };
    vec![
        std(chain, "FIN,PSH,URG", f(ALL, FIN | PSH | URG), Verdict::Drop),
        std(chain, "no flags", f(ALL, 0), Verdict::Drop),
        std(chain, "SYN,RST", f(SYN | RST, SYN | RST), Verdict::Drop),
        std(chain, "FIN,SYN", f(FIN | SYN, FIN | SYN), Verdict::Drop),
        std(
            chain,
            "SYN from port 0",
            StdMatch {
                sport: vec![(0, 0)],
                ..f(FIN | SYN | RST | ACK, SYN)
            },
            Verdict::Drop,
        ),
    ]
}

/// NDP accepted (`ruleset_chain_add_ndp`, iptables): router solicitation, router advertisement
/// (not outbound unless `radv`), neighbor solicitation and advertisement.
pub(crate) fn ndp_iptables(with_ra: bool) -> StdEntry {
    let mut types = vec![(133, None), (135, None), (136, None)];
    if with_ra {
        types.push((134, None));
    }
    StdEntry {
        m: icmp6(&types),
        verdict: Verdict::Accept,
        by: crate::eval::DecidedBy::Builtin(crate::eval::Builtin::Ndp),
    }
}

/// NDP in proxmox-firewall: `allow-ndp-*` accepts, `block-ndp-*` drops; inbound also covers
/// router advertisements and redirects.
pub(crate) fn ndp_nftables(inbound: bool, allow: bool) -> StdEntry {
    let types: &[(u8, Option<u8>)] = if inbound {
        &[
            (133, None),
            (134, None),
            (135, None),
            (136, None),
            (137, None),
        ]
    } else {
        &[(133, None), (135, None), (136, None)]
    };
    StdEntry {
        m: icmp6(types),
        verdict: if allow {
            Verdict::Accept
        } else {
            Verdict::Drop
        },
        by: crate::eval::DecidedBy::Builtin(crate::eval::Builtin::Ndp),
    }
}

/// DHCP for a guest: client to server going out, server to client coming in, both families.
pub(crate) fn dhcp(out: bool, verdict: Verdict) -> Vec<StdEntry> {
    let (s4, d4, s6, d6) = if out {
        (68, 67, 546, 547)
    } else {
        (67, 68, 547, 546)
    };
    let e = |fam: fn(StdMatch) -> StdMatch, s: u16, d: u16| StdEntry {
        m: fam(StdMatch {
            sport: vec![(s, s)],
            dport: vec![(d, d)],
            ..proto(UDP)
        }),
        verdict,
        by: crate::eval::DecidedBy::Builtin(crate::eval::Builtin::Dhcp),
    };
    vec![e(v4, s4, d4), e(v6, s6, d6)]
}

/// Router advertisements from a guest: iptables drops type 134 unless `radv`; proxmox-firewall
/// accepts or drops advertisements and redirects.
pub(crate) fn router_adv(types: &[(u8, Option<u8>)], verdict: Verdict) -> StdEntry {
    StdEntry {
        m: icmp6(types),
        verdict,
        by: crate::eval::DecidedBy::Builtin(crate::eval::Builtin::RouterAdvertisement),
    }
}

/// `-p igmp -j ACCEPT` on the host chains ("important for multicast").
pub(crate) fn igmp(chain: &'static str) -> StdEntry {
    std(chain, "igmp", proto(2), Verdict::Accept)
}

/// The loopback interface is accepted first on the host chains.
pub(crate) fn loopback(chain: &'static str) -> StdEntry {
    std(
        chain,
        "loopback",
        StdMatch {
            iface: Iface::new("lo").ok(),
            ..m()
        },
        Verdict::Accept,
    )
}

/// The ports the host chains open to `local_network` outbound (iptables `PVEFW-HOST-OUT`).
pub(crate) fn local_network_out(net: Cidr) -> StdEntry {
    std(
        "PVEFW-HOST-OUT",
        "management ports to local_network",
        StdMatch {
            dst: vec![net],
            ..dports(TCP, &[(8006, 8006), (22, 22), (5900, 5999), (3128, 3128)])
        },
        Verdict::Accept,
    )
}

/// Corosync (udp 5404:5405): multicast when the transport is `udp`, and each member's address
/// on the same link (`enable_host_firewall`).
pub(crate) fn corosync(
    chain: &'static str,
    inbound: bool,
    members: &crate::node::Corosync,
) -> Vec<StdEntry> {
    let base = || dports(UDP, &[(5404, 5405)]);
    let mut out = Vec::new();
    if members.multicast {
        out.push(std(
            chain,
            "corosync multicast",
            StdMatch {
                dsttype: AddrType::Multicast.bit(),
                ..base()
            },
            Verdict::Accept,
        ));
    }
    for peer in &members.peers {
        for (link, addr) in peer.links.iter().enumerate() {
            let (Some(addr), Some(Some(local))) = (addr, members.local.get(link)) else {
                continue;
            };
            if Family::of(addr) != Family::of(local) {
                continue;
            }
            let (me, them) = (
                Cidr::new(IpNet::from(*local)),
                Cidr::new(IpNet::from(*addr)),
            );
            let (src, dst) = if inbound { (them, me) } else { (me, them) };
            out.push(std(
                chain,
                "corosync with a cluster member",
                StdMatch {
                    src: vec![src],
                    dst: vec![dst],
                    ..base()
                },
                Verdict::Accept,
            ));
        }
    }
    out
}

/// [`policy_chain`], built once.
pub(crate) fn policy_chain_static(reject: bool) -> &'static [StdEntry] {
    static DROP: std::sync::OnceLock<Vec<StdEntry>> = std::sync::OnceLock::new();
    static REJECT: std::sync::OnceLock<Vec<StdEntry>> = std::sync::OnceLock::new();
    let cell = if reject { &REJECT } else { &DROP };
    cell.get_or_init(|| policy_chain(reject))
}

/// [`smurfs`], built once.
pub(crate) fn smurfs_static() -> &'static [StdEntry] {
    static CELL: std::sync::OnceLock<Vec<StdEntry>> = std::sync::OnceLock::new();
    CELL.get_or_init(smurfs)
}

/// `PVEFW-Drop` (`reject == false`) or `PVEFW-Reject`: what runs before a DROP or REJECT
/// policy. Critical ICMP is accepted, noise is dropped without logging.
pub(crate) fn policy_chain(reject: bool) -> Vec<StdEntry> {
    let name = if reject { "PVEFW-Reject" } else { "PVEFW-Drop" };
    let smb = if reject {
        Verdict::Reject
    } else {
        Verdict::Drop
    };
    let mut out = vec![std(
        name,
        "auth (tcp 43) rejected",
        dports(TCP, &[(43, 43)]),
        Verdict::Reject,
    )];
    let bc = "PVEFW-DropBroadcast";
    for (rule, t) in [
        ("broadcast destination", AddrType::Broadcast),
        ("multicast destination", AddrType::Multicast),
        ("anycast destination", AddrType::Anycast),
    ] {
        out.push(std(
            bc,
            rule,
            StdMatch {
                dsttype: t.bit(),
                ..v4(m())
            },
            Verdict::Drop,
        ));
    }
    out.push(std(
        bc,
        "destination 224.0.0.0/4",
        StdMatch {
            dst: vec![multicast4()],
            ..v4(m())
        },
        Verdict::Drop,
    ));
    out.push(std(
        bc,
        "destination ff00::/8",
        StdMatch {
            dst: vec![cidr(
                IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
                8,
            )],
            ..v6(m())
        },
        Verdict::Drop,
    ));
    for (rule, t) in [
        ("critical ICMP fragmentation-needed", (3, Some(4))),
        ("critical ICMP time-exceeded", (11, None)),
    ] {
        out.push(std(name, rule, icmp4(&[t]), Verdict::Accept));
    }
    for (rule, t) in [
        ("critical ICMPv6 destination-unreachable", 1),
        ("critical ICMPv6 time-exceeded", 3),
        ("critical ICMPv6 packet-too-big", 2),
    ] {
        out.push(std(name, rule, icmp6(&[(t, None)]), Verdict::Accept));
    }
    out.push(std(
        name,
        "conntrack INVALID",
        ct(&[CtState::Invalid]),
        Verdict::Drop,
    ));
    out.push(std(
        name,
        "SMB noise (udp 135,445)",
        dports(UDP, &[(135, 135), (445, 445)]),
        smb,
    ));
    out.push(std(
        name,
        "SMB noise (udp 137:139)",
        dports(UDP, &[(137, 139)]),
        smb,
    ));
    out.push(std(
        name,
        "SMB noise (udp 137 to 1024:65535)",
        StdMatch {
            sport: vec![(137, 137)],
            ..dports(UDP, &[(1024, 65535)])
        },
        smb,
    ));
    out.push(std(
        name,
        "SMB noise (tcp 135,139,445)",
        dports(TCP, &[(135, 135), (139, 139), (445, 445)]),
        smb,
    ));
    out.push(std(
        name,
        "UPnP (udp 1900)",
        dports(UDP, &[(1900, 1900)]),
        Verdict::Drop,
    ));
    out.push(std(
        name,
        "TCP without SYN",
        StdMatch {
            flags: Some((tcp::FIN | tcp::SYN | tcp::RST | tcp::ACK, tcp::SYN, false)),
            ..proto(TCP)
        },
        Verdict::Drop,
    ));
    out.push(std(
        name,
        "DNS replies (udp sport 53)",
        StdMatch {
            sport: vec![(53, 53)],
            ..proto(UDP)
        },
        Verdict::Drop,
    ));
    out
}

/// proxmox-firewall's `allow-icmp`: ICMP destination-unreachable, source-quench and
/// time-exceeded; ICMPv6 destination-unreachable, packet-too-big, time-exceeded and
/// parameter-problem are accepted before anything else.
pub(crate) fn nft_allow_icmp(chain: &'static str) -> Vec<StdEntry> {
    vec![
        std(
            chain,
            "allow-icmp",
            icmp4(&[(3, None), (4, None), (11, None)]),
            Verdict::Accept,
        ),
        std(
            chain,
            "allow-icmp (ICMPv6)",
            icmp6(&[(1, None), (2, None), (3, None), (4, None)]),
            Verdict::Accept,
        ),
    ]
}

/// proxmox-firewall's `default-in` after the management ports: corosync and noise.
pub(crate) fn nft_default_in_tail() -> Vec<StdEntry> {
    let c = "default-in";
    vec![
        std(
            c,
            "corosync (udp 5405-5412)",
            dports(UDP, &[(5405, 5412)]),
            Verdict::Accept,
        ),
        std(
            c,
            "SMB noise (udp 135,137-139,445)",
            dports(UDP, &[(135, 135), (137, 139), (445, 445)]),
            Verdict::Reject,
        ),
        std(
            c,
            "SMB noise (udp 137 to 1024-65535)",
            StdMatch {
                sport: vec![(137, 137)],
                ..dports(UDP, &[(1024, 65535)])
            },
            Verdict::Reject,
        ),
        std(
            c,
            "SMB noise (tcp 135,139,445)",
            dports(TCP, &[(135, 135), (139, 139), (445, 445)]),
            Verdict::Reject,
        ),
        std(
            c,
            "UPnP (udp 1900)",
            dports(UDP, &[(1900, 1900)]),
            Verdict::Drop,
        ),
        std(
            c,
            "DNS replies (udp sport 53)",
            StdMatch {
                sport: vec![(53, 53)],
                ..proto(UDP)
            },
            Verdict::Drop,
        ),
    ]
}

/// proxmox-firewall's `block-smurfs`: link-layer broadcast or multicast source, `0.0.0.0`
/// returning first.
pub(crate) fn nft_smurfs() -> Vec<StdEntry> {
    let zero = cidr(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 32);
    vec![
        std(
            "block-smurfs",
            "broadcast",
            StdMatch {
                dsttype: AddrType::Broadcast.bit(),
                src_not: vec![zero],
                ..v4(m())
            },
            Verdict::Drop,
        ),
        std(
            "block-smurfs",
            "multicast source 224.0.0.0/4",
            StdMatch {
                src: vec![multicast4()],
                ..v4(m())
            },
            Verdict::Drop,
        ),
    ]
}

/// A conntrack vmap: invalid dropped, established and related accepted.
pub(crate) fn nft_ct_vmap(chain: &'static str) -> Vec<StdEntry> {
    conn_filters(chain, false)
}

/// proxmox-firewall's `block-conntrack-invalid`.
pub(crate) fn nft_block_invalid() -> StdEntry {
    std(
        "block-conntrack-invalid",
        "conntrack INVALID",
        ct(&[CtState::Invalid]),
        Verdict::Drop,
    )
}

/// proxmox-firewall: `ct state related,established accept` at the start of `default-in`.
pub(crate) fn nft_established(chain: &'static str) -> StdEntry {
    std(
        chain,
        "conntrack RELATED,ESTABLISHED",
        ct(&[CtState::Established, CtState::Related]),
        Verdict::Accept,
    )
}

/// The PVE fallback when no network is known: `127.0.0.0/8` (`local_network() ||
/// '127.0.0.0/8'`).
pub(crate) fn loopback_net() -> Cidr {
    cidr(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_cover_each_combination_once() {
        let k = meta_key(CtState::Invalid, AddrType::Anycast, AddrType::Anycast);
        assert!(k < META_KEYS);
        let iv = ct(&[CtState::Invalid]).meta_intervals();
        let count: u128 = iv.iter().map(|(a, b)| b - a + 1).sum();
        assert_eq!(count, 5 * 5);
        assert_eq!(iv.len(), 5, "one run per destination type");
        let no_syn = StdMatch {
            flags: Some((tcp::FIN | tcp::SYN | tcp::RST | tcp::ACK, tcp::SYN, false)),
            ..m()
        };
        let f: u128 = no_syn.flag_intervals().iter().map(|(a, b)| b - a + 1).sum();
        assert_eq!(f, 60);
        assert_eq!(tcp::parse("syn,ACK").unwrap(), tcp::SYN | tcp::ACK);
        assert!(tcp::parse("64").is_err());
    }

    #[test]
    fn reject_becomes_drop_where_pve_drops() {
        let s: IpAddr = "198.51.100.1".parse().unwrap();
        let r = |mode, proto, t| refine_reject(mode, Family::V4, proto, &s, t);
        assert_eq!(
            r(RejectMode::Iptables, TCP, AddrType::Unicast),
            Verdict::Reject
        );
        assert_eq!(
            r(RejectMode::Iptables, ICMP, AddrType::Unicast),
            Verdict::Drop
        );
        assert_eq!(
            r(RejectMode::Iptables, UDP, AddrType::Broadcast),
            Verdict::Drop
        );
        assert_eq!(
            r(RejectMode::Nftables, ICMP, AddrType::Unicast),
            Verdict::Reject
        );
        assert_eq!(
            r(RejectMode::DropOnly, TCP, AddrType::Unicast),
            Verdict::Drop
        );
    }
}
