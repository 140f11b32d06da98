//! The flow model: a packet from one zone of a node to another crosses the sender's OUT chain
//! and the receiver's IN chain.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

use crate::addr::Cidr;
use crate::addr::Family;
use crate::error::{Error, Result};
use crate::eval::{ChainDecision, ChainId, DecidedBy, Evaluator, Packet, Reference};
use crate::model::{FileKind, FwFile};
use crate::node::{ClusterMember, Corosync, Guest, GuestKind, MacAddr, Nic, Node, VnetName};
use crate::proto::{IcmpType, Protocol};
use crate::stdchain::{AddrType, Backend, CtState};
use crate::text::{Iface, Verdict};

/// Where a packet comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// Anything beyond the node (not filtered by this node).
    Outside,
    /// The node itself.
    Host,
    /// A guest; with no NIC given, the NIC owning the packet's address, else the first.
    Guest {
        /// VM id.
        vmid: u32,
        /// NIC index.
        nic: Option<u8>,
    },
}

impl FromStr for Zone {
    type Err = Error;
    /// `outside`, `host`, `vm100`, `ct100`, `100`, optionally `:netN` for a guest.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "outside" => return Ok(Zone::Outside),
            "host" => return Ok(Zone::Host),
            _ => {}
        }
        let bad = || Error::invalid("zone", s, "expected outside, host, vmID or vmID:netN");
        let (g, nic) = match s.split_once(':') {
            Some((g, n)) => (
                g,
                Some(
                    n.strip_prefix("net")
                        .ok_or_else(bad)?
                        .parse::<u8>()
                        .map_err(|_| bad())?,
                ),
            ),
            None => (s, None),
        };
        let id = g
            .strip_prefix("vm")
            .or_else(|| g.strip_prefix("ct"))
            .unwrap_or(g);
        let vmid = id.parse::<u32>().map_err(|_| bad())?;
        Ok(Zone::Guest { vmid, nic })
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Outside => f.write_str("outside"),
            Zone::Host => f.write_str("host"),
            Zone::Guest { vmid, nic: None } => write!(f, "vm{vmid}"),
            Zone::Guest { vmid, nic: Some(n) } => write!(f, "vm{vmid}:net{n}"),
        }
    }
}

use crate::lenient::Lenient;

#[derive(Deserialize)]
struct RawFlow {
    from: String,
    to: String,
    proto: Lenient,
    source: Option<String>,
    dest: Option<String>,
    sport: Option<Lenient>,
    dport: Option<Lenient>,
    #[serde(alias = "icmp-type")]
    icmp_type: Option<Lenient>,
    icmp_code: Option<Lenient>,
    source_mac: Option<String>,
    iface: Option<String>,
    #[serde(default, alias = "state")]
    ct: Option<String>,
    srctype: Option<String>,
    dsttype: Option<String>,
    tcp_flags: Option<Lenient>,
    #[serde(default)]
    routed: Option<Lenient>,
}

/// A packet between two zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowPacket {
    /// Sender.
    pub from: Zone,
    /// Receiver.
    pub to: Zone,
    /// Protocol number.
    pub proto: u8,
    /// Source address; defaults to the sender's first address.
    pub source: Option<IpAddr>,
    /// Destination address; defaults to the receiver's first address of the source's family.
    pub dest: Option<IpAddr>,
    /// Source port.
    pub sport: Option<u16>,
    /// Destination port.
    pub dport: Option<u16>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// Source MAC (defaults to the sending NIC's).
    pub source_mac: Option<MacAddr>,
    /// Host interface the packet uses, for host rules with `-i`.
    pub iface: Option<Iface>,
    /// Connection-tracking state: `NEW` for the first packet, `ESTABLISHED` for a reply.
    pub ct: CtState,
    /// Source address type; by default derived from the address.
    pub srctype: Option<AddrType>,
    /// Destination address type; by default derived from the address (multicast, the limited
    /// broadcast, the host's own addresses when the host receives it).
    pub dsttype: Option<AddrType>,
    /// TCP flags; by default SYN for TCP.
    pub tcp_flags: Option<u8>,
    /// The host routes the packet (it crosses the host's FORWARD chain); always true from
    /// `outside` to `outside`.
    pub routed: bool,
}

impl FlowPacket {
    /// A packet from `from` to `to` with protocol `proto` and nothing else set.
    pub fn new(from: Zone, to: Zone, proto: u8) -> Self {
        FlowPacket {
            from,
            to,
            proto,
            source: None,
            dest: None,
            sport: None,
            dport: None,
            icmp: None,
            source_mac: None,
            iface: None,
            ct: CtState::New,
            srctype: None,
            dsttype: None,
            tcp_flags: None,
            routed: false,
        }
    }
}

fn port(v: &Option<Lenient>, what: &'static str) -> Result<Option<u16>> {
    v.as_ref()
        .map(|v| {
            v.text()
                .parse::<u16>()
                .map_err(|_| Error::invalid(what, &v.text(), "not a port"))
        })
        .transpose()
}

impl FlowPacket {
    /// Decodes one JSON line: `{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"1.2.3.4"}`.
    /// Numbers may be strings; `proto` is a name or a number; `icmp_type` a name or number.
    pub fn from_json(line: &str) -> Result<Self> {
        let raw: RawFlow = serde_json::from_str(line)?;
        let proto: Protocol = raw.proto.text().parse()?;
        let ip = |s: &Option<String>, what: &'static str| {
            s.as_ref()
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| Error::invalid(what, s, "not an IP address"))
                })
                .transpose()
        };
        let source = ip(&raw.source, "source")?;
        let v6 = source.is_some_and(|s| s.is_ipv6()) || proto.family() == Some(Family::V6);
        let icmp = match &raw.icmp_type {
            Some(t) => {
                let t = IcmpType::new(t.text())?;
                let code = port(&raw.icmp_code, "icmp code")?.unwrap_or(0);
                match t.resolve(v6) {
                    Some(crate::proto::IcmpMatch::Type(ty, c)) => {
                        Some((ty, c.unwrap_or(u8::try_from(code).unwrap_or(0))))
                    }
                    _ => return Err(Error::invalid("icmp type", t.as_str(), "need one type")),
                }
            }
            None => None,
        };
        Ok(FlowPacket {
            from: raw.from.parse()?,
            to: raw.to.parse()?,
            proto: proto.number(),
            source,
            dest: ip(&raw.dest, "dest")?,
            sport: port(&raw.sport, "sport")?,
            dport: port(&raw.dport, "dport")?,
            icmp,
            source_mac: raw.source_mac.as_deref().map(str::parse).transpose()?,
            iface: raw.iface.map(Iface::new).transpose()?,
            ct: raw
                .ct
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            srctype: raw.srctype.as_deref().map(str::parse).transpose()?,
            dsttype: raw.dsttype.as_deref().map(str::parse).transpose()?,
            tcp_flags: raw
                .tcp_flags
                .map(|f| crate::stdchain::tcp::parse(&f.text()))
                .transpose()?,
            routed: match raw.routed.as_ref().map(Lenient::text).as_deref() {
                None | Some("0") => false,
                Some("1") => true,
                Some(v) => return Err(Error::invalid("routed", v, "expected 0 or 1")),
            },
        })
    }
}

/// The answer for a flow: the verdict, the chain decision that settled it, and every chain
/// crossed (sender's OUT first, then receiver's IN).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlowDecision {
    /// Final verdict.
    pub verdict: Verdict,
    /// The chains evaluated, in order; the last one decided.
    pub chains: Vec<ChainDecision>,
}

impl FlowDecision {
    /// The decision that settled the flow (the first non-accept, or the last chain).
    pub fn deciding(&self) -> Option<&ChainDecision> {
        self.chains.last()
    }
    /// What decided, as text.
    pub fn explain(&self) -> String {
        match self.deciding() {
            Some(d) => format!("{} by {} in {}", self.verdict, d.decided_by, d.chain),
            None => format!("{} (no chain on this node filters this flow)", self.verdict),
        }
    }
}

fn guest_nic(
    node: &Node,
    vmid: u32,
    nic: Option<u8>,
    addr: Option<IpAddr>,
) -> Result<(&Guest, &Nic)> {
    let guest = node.guests.get(&vmid).ok_or_else(|| Error::Unknown {
        what: "guest",
        name: vmid.to_string(),
    })?;
    let nic = match nic {
        Some(i) => guest.nic(i),
        None => addr
            .and_then(|a| guest.nics.iter().find(|n| n.ips.contains(&a)))
            .or_else(|| guest.nics.first()),
    }
    .ok_or_else(|| Error::Unknown {
        what: "nic",
        name: format!("{vmid}:{nic:?}"),
    })?;
    Ok((guest, nic))
}

fn zone_ips(node: &Node, zone: Zone, hint: Option<IpAddr>) -> Result<Vec<IpAddr>> {
    Ok(match zone {
        Zone::Outside => Vec::new(),
        Zone::Host => node.host_ips.clone(),
        Zone::Guest { vmid, nic } => guest_nic(node, vmid, nic, hint)?.1.ips.clone(),
    })
}

fn unspecified(f: Family) -> IpAddr {
    match f {
        Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Evaluates a flow with any evaluator.
pub fn evaluate_flow<E: Evaluator>(node: &Node, eval: &E, fp: &FlowPacket) -> Result<FlowDecision> {
    let source = match fp.source {
        Some(s) => s,
        None => {
            let want = fp.dest.map(|d| Family::of(&d));
            zone_ips(node, fp.from, None)?
                .into_iter()
                .find(|ip| want.is_none_or(|f| Family::of(ip) == f))
                .ok_or_else(|| {
                    Error::invalid(
                        "flow",
                        &fp.from.to_string(),
                        "no source address given or known",
                    )
                })?
        }
    };
    let fam = Family::of(&source);
    let dest = match fp.dest {
        Some(d) => d,
        None => zone_ips(node, fp.to, None)?
            .into_iter()
            .find(|ip| Family::of(ip) == fam)
            .unwrap_or_else(|| unspecified(fam)),
    };
    let nft = node.effective_backend() == Backend::Nftables;
    let mut chains: Vec<(ChainId, Option<Iface>, Option<MacAddr>)> = Vec::new();
    // The VNets the packet passes: the sender's, then the receiver's (proxmox-firewall only).
    let mut vnets: Vec<VnetName> = Vec::new();
    let mut vnet_of = |n: &Nic| {
        if let Ok(v) = VnetName::new(&n.bridge)
            && node.vnets.contains_key(&v)
            && !vnets.contains(&v)
        {
            vnets.push(v);
        }
    };
    match fp.from {
        Zone::Outside => {}
        Zone::Host => chains.push((ChainId::HostOut, fp.iface.clone(), None)),
        Zone::Guest { vmid, nic } => {
            let (_, n) = guest_nic(node, vmid, nic, Some(source))?;
            let iface = Iface::new(format!("net{}", n.index))?;
            let mac = fp.source_mac.or(Some(n.mac));
            chains.push((ChainId::GuestOut { vmid, nic: n.index }, Some(iface), mac));
            vnet_of(n);
        }
    }
    let receiver = match fp.to {
        Zone::Outside => None,
        Zone::Host => Some((ChainId::HostIn, fp.iface.clone())),
        Zone::Guest { vmid, nic } => {
            let (_, n) = guest_nic(node, vmid, nic, Some(dest))?;
            let iface = Iface::new(format!("net{}", n.index))?;
            vnet_of(n);
            Some((ChainId::GuestIn { vmid, nic: n.index }, Some(iface)))
        }
    };
    if nft {
        for v in vnets {
            chains.push((ChainId::VnetForward { vnet: v }, None, None));
        }
    }
    if fp.routed || (fp.from == Zone::Outside && fp.to == Zone::Outside) {
        chains.push((ChainId::HostForward, fp.iface.clone(), None));
    }
    if let Some((id, iface)) = receiver {
        chains.push((id, iface, None));
    }
    let dsttype = fp.dsttype.unwrap_or_else(|| {
        let local: &[IpAddr] = if fp.to == Zone::Host {
            &node.host_ips
        } else {
            &[]
        };
        AddrType::classify(&dest, local)
    });
    let srctype = fp.srctype.unwrap_or_else(|| {
        let local: &[IpAddr] = if fp.from == Zone::Host {
            &node.host_ips
        } else {
            &[]
        };
        AddrType::classify(&source, local)
    });
    let tcp_flags = fp
        .tcp_flags
        .unwrap_or(if fp.proto == crate::proto::numbers::TCP {
            crate::stdchain::tcp::SYN
        } else {
            0
        });
    let mut out = Vec::new();
    for (id, iface, mac) in chains {
        let pkt = Packet {
            proto: fp.proto,
            source,
            dest,
            sport: fp.sport,
            dport: fp.dport,
            icmp: fp.icmp,
            iface,
            source_mac: mac,
            ct: fp.ct,
            srctype,
            dsttype,
            tcp_flags,
        };
        let d = eval
            .evaluate_chain(id, &pkt)
            .ok_or_else(|| Error::Unknown {
                what: "chain",
                name: id.to_string(),
            })?;
        let stop = d.verdict != Verdict::Accept;
        out.push(d);
        if stop {
            break;
        }
    }
    let verdict = out.last().map_or(Verdict::Accept, |d| d.verdict);
    Ok(FlowDecision {
        verdict,
        chains: out,
    })
}

impl Node {
    /// Evaluates a flow with the reference evaluator.
    pub fn evaluate(&self, fp: &FlowPacket) -> Result<FlowDecision> {
        evaluate_flow(self, &Reference(self), fp)
    }
}

#[derive(Deserialize)]
struct RawNic {
    net: u8,
    mac: String,
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    firewall: Option<Lenient>,
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Deserialize)]
struct RawGuest {
    vmid: Lenient,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    nics: Vec<RawNic>,
}

#[derive(Deserialize)]
struct RawMember {
    name: String,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    links: Vec<Option<String>>,
}

#[derive(Deserialize)]
struct RawCorosync {
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    nodes: Vec<RawMember>,
}

/// The topology file of `fw-eval`: host addresses, the node's network, corosync members,
/// the backend, VNets and guests with NICs.
#[derive(Deserialize)]
pub struct Topology {
    #[serde(default)]
    host_ips: Vec<String>,
    #[serde(default)]
    local_network: Option<String>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    corosync: Option<RawCorosync>,
    #[serde(default)]
    guests: Vec<RawGuest>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("guests", &self.guests.len())
            .finish()
    }
}

impl Topology {
    /// Decodes the topology JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Builds the node from the topology and the parsed files. Guests without a file get an
    /// empty one (firewall disabled).
    pub fn into_node(
        self,
        cluster: FwFile,
        host: FwFile,
        mut guest_files: BTreeMap<u32, FwFile>,
    ) -> Result<Node> {
        let mut node = Node::new();
        node.cluster = cluster;
        node.host = host;
        node.local_network = self
            .local_network
            .as_deref()
            .map(str::parse::<Cidr>)
            .transpose()?;
        node.backend = self
            .backend
            .as_deref()
            .map(str::parse::<Backend>)
            .transpose()?;
        if let Some(c) = &self.corosync {
            node.corosync = Some(corosync(c)?);
        }
        for ip in &self.host_ips {
            node.host_ips.push(
                ip.parse()
                    .map_err(|_| Error::invalid("host ip", ip, "not an IP"))?,
            );
        }
        for g in self.guests {
            let vmid: u32 = g
                .vmid
                .text()
                .parse()
                .map_err(|_| Error::invalid("vmid", &g.vmid.text(), "not a number"))?;
            let kind = match g.kind.as_deref() {
                None | Some("vm") | Some("qemu") => GuestKind::Vm,
                Some("ct") | Some("lxc") => GuestKind::Ct,
                Some(k) => return Err(Error::invalid("guest kind", k, "expected vm or ct")),
            };
            let mut nics = Vec::new();
            for n in g.nics {
                let firewall = match n.firewall.as_ref().map(Lenient::text).as_deref() {
                    None | Some("0") | Some("false") => false,
                    Some("1") | Some("true") => true,
                    Some(v) => {
                        return Err(Error::invalid("nic firewall flag", v, "expected 0 or 1"));
                    }
                };
                let mut ips = Vec::new();
                for ip in &n.ips {
                    ips.push(
                        ip.parse()
                            .map_err(|_| Error::invalid("nic ip", ip, "not an IP"))?,
                    );
                }
                nics.push(Nic {
                    index: n.net,
                    mac: n.mac.parse()?,
                    bridge: n.bridge.unwrap_or_else(|| "vmbr0".into()),
                    firewall,
                    ips,
                });
            }
            let firewall = guest_files
                .remove(&vmid)
                .unwrap_or_else(|| FwFile::new(FileKind::Guest));
            node.guests.insert(
                vmid,
                Guest {
                    vmid,
                    kind,
                    firewall,
                    nics,
                },
            );
        }
        if let Some(vmid) = guest_files.keys().next() {
            return Err(Error::Unknown {
                what: "guest in topology",
                name: vmid.to_string(),
            });
        }
        Ok(node)
    }
}

fn corosync(raw: &RawCorosync) -> Result<Corosync> {
    let mut out = Corosync {
        multicast: raw.transport.as_deref() == Some("udp"),
        ..Corosync::default()
    };
    let mut found_local = false;
    for m in &raw.nodes {
        let mut links = Vec::new();
        for l in &m.links {
            links.push(
                l.as_deref()
                    .map(|ip| {
                        ip.parse::<IpAddr>()
                            .map_err(|_| Error::invalid("corosync address", ip, "not an IP"))
                    })
                    .transpose()?,
            );
        }
        if m.local {
            if found_local {
                return Err(Error::invalid(
                    "corosync",
                    &m.name,
                    "more than one node is marked local",
                ));
            }
            found_local = true;
            out.local = links;
        } else {
            out.peers.push(ClusterMember {
                name: m.name.clone(),
                links,
            });
        }
    }
    Ok(out)
}

impl DecidedBy {
    /// Is this a user rule?
    pub fn is_rule(&self) -> bool {
        matches!(self, DecidedBy::Rule(_))
    }
}
