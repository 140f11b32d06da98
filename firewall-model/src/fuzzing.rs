//! Bodies of the fuzz targets, shared with the test suite (which runs them over the committed
//! corpus and over proptest-generated inputs). Not a stable API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::compiled::CompiledNode;
use crate::eval::{ChainId, Evaluator, Packet, Reference};
use crate::model::{FileKind, FwFile};
use crate::node::{
    Backend, ClusterMember, Corosync, Guest, GuestKind, MacAddr, Nic, Node, VnetName,
};
use crate::parse::{parse, parse_lenient};
use crate::stdchain::{AddrType, CtState, tcp};
use crate::text::Iface;

/// Parser target: never panics; whatever parses leniently prints and reparses strictly to the
/// same model.
pub fn parse_roundtrip(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    for kind in [
        FileKind::Cluster,
        FileKind::Host,
        FileKind::Guest,
        FileKind::Vnet,
    ] {
        let (file, _) = parse_lenient(&text, kind);
        roundtrip(&file)?;
    }
    Ok(())
}

/// Prints a file and parses it again; the models must be equal.
pub fn roundtrip(file: &FwFile) -> Result<(), String> {
    let printed = file.to_string();
    let again =
        parse(&printed, file.kind).map_err(|e| format!("reparse failed: {e:?}\n{printed}"))?;
    if &again != file {
        return Err(format!("round trip changed the model:\n{printed}"));
    }
    Ok(())
}

/// Turns bytes into choices.
#[derive(Debug)]
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    /// Reads from `data`; past its end every choice is the first option.
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, pos: 0 }
    }
    /// Next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// Picks one of `opts` (the first when out of data or `opts` is empty).
    pub fn pick<T: Copy + Default>(&mut self, opts: &[T]) -> T {
        let n = opts.len().max(1);
        opts.get(usize::from(self.byte()) % n)
            .copied()
            .unwrap_or_default()
    }
    /// True with probability about `percent`%.
    pub fn chance(&mut self, percent: u8) -> bool {
        u16::from(self.byte()) * 100 < u16::from(percent) * 256
    }
    /// A count below `max`.
    pub fn count(&mut self, max: u8) -> usize {
        usize::from(self.byte() % max.max(1))
    }
}

const ADDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3",
    "10.1.2.0-10.1.2.100",
    "10.0.0.1,10.2.0.0/16",
    "192.168.1.0/24",
    "2001:db8::/32",
    "2001:db8::5",
    "fe80::/10",
    "2001:db8::1-2001:db8::ff",
    "+s1",
    "+dc/s2",
    "+guest/s1",
    "+management",
    "a1",
    "dc/a2",
    "guest/a1",
    "a3",
];
const MACROS: &[&str] = &[
    "SSH",
    "DNS",
    "Ping",
    "HTTP",
    "Web",
    "Trcrt",
    "IPsec",
    "DHCPfwd",
    "NeighborDiscovery",
    "GRE",
    "DHCPv6",
];
const PROTOS: &[&str] = &["tcp", "udp", "icmp", "icmpv6", "47", "sctp", "6"];
const PORTS: &[&str] = &["22", "80:90", "53,443", "1:1024", "ssh", "67,68,546:547"];
const ICMPS: &[&str] = &[
    "echo-request",
    "any",
    "3",
    "3/1",
    "134",
    "neighbor-solicitation",
];
const SET_ENTRIES: &[&str] = &[
    "10.0.0.0/8",
    "!10.1.0.0/16",
    "10.1.2.3",
    "!10.1.2.0/24",
    "2001:db8::/32",
    "!2001:db8::/64",
    "a1",
    "dc/a2",
    "!10.0.0.1",
    "192.168.1.1",
    "2001:db8::5",
];

fn rule_line(c: &mut Choices<'_>, out: &mut String, allow_group: bool) {
    if c.chance(10) {
        out.push('|');
    }
    let dir = c.pick(&["IN", "OUT", "IN", "OUT", "FORWARD"]);
    let action = c.pick(&["ACCEPT", "DROP", "REJECT"]);
    match c.byte() % 8 {
        0 | 1 => {
            let _ = write!(out, "{dir} {}({action})", c.pick(MACROS));
        }
        2 if allow_group => {
            let _ = write!(out, "GROUP {}", c.pick(&["g1", "g2", "nosuch"]));
            if c.chance(30) {
                let _ = write!(out, " -i {}", c.pick(&["net0", "net1"]));
            }
            out.push('\n');
            return;
        }
        _ => {
            let _ = write!(out, "{dir} {action}");
        }
    }
    // Each flag in turn: how often (percent) and its possible values.
    let flags: [(u8, &str, &[&str]); 8] = [
        (15, "-i", &["net0", "net1", "vmbr0"]),
        (40, "-source", ADDRS),
        (30, "-dest", ADDRS),
        (60, "-p", PROTOS),
        (40, "-dport", PORTS),
        (15, "-sport", PORTS),
        (15, "-icmp-type", ICMPS),
        (10, "-log", &["nolog", "info"]),
    ];
    for (percent, flag, values) in flags {
        if c.chance(percent) {
            let _ = write!(out, " {flag} {}", c.pick(values));
        }
    }
    if c.chance(10) {
        out.push_str(" # note # with hash");
    }
    out.push('\n');
}

/// A rule that matches few packets (one port of 3,000), so big rule sets get deep matches.
fn narrow_rule(c: &mut Choices<'_>, out: &mut String) {
    let port = (u16::from(c.byte()) << 8 | u16::from(c.byte())) % NARROW_PORTS;
    let _ = write!(
        out,
        "{} {} -p {} -dport {port}",
        c.pick(&["IN", "OUT"]),
        c.pick(&["ACCEPT", "DROP", "REJECT"]),
        c.pick(&["tcp", "udp"])
    );
    if c.chance(30) {
        let _ = write!(out, " -source {}", c.pick(ADDRS));
    }
    out.push('\n');
}

const NARROW_PORTS: u16 = 3000;

fn ipset(c: &mut Choices<'_>, name: &str, out: &mut String) {
    let _ = writeln!(out, "[IPSET {name}]");
    for _ in 0..c.count(5) {
        let _ = writeln!(out, "{}", c.pick(SET_ENTRIES));
    }
    out.push('\n');
}

/// `[OPTIONS]` and an `enable` line (on nine times in ten).
fn options_start(c: &mut Choices<'_>) -> String {
    let mut out = String::from("[OPTIONS]\n");
    let _ = writeln!(out, "enable: {}", u8::from(c.chance(90)));
    out
}

/// `policy_in` and `policy_out` lines, each written `percent` times in a hundred.
fn policies(c: &mut Choices<'_>, out: &mut String, percent: u8) {
    for opt in ["policy_in", "policy_out"] {
        if c.chance(percent) {
            let _ = writeln!(out, "{opt}: {}", c.pick(&["ACCEPT", "DROP", "REJECT"]));
        }
    }
}

/// Generates `cluster.fw`, `host.fw` and `100.fw` texts from bytes (lenient parsing drops the
/// invalid combinations).
pub fn config_texts(c: &mut Choices<'_>) -> (String, String, String) {
    let n = c.count(12);
    config_texts_sized(c, n)
}

/// Like [`config_texts`] with `guest_rules` rules in the guest file.
pub fn config_texts_sized(c: &mut Choices<'_>, guest_rules: usize) -> (String, String, String) {
    let mut cluster = options_start(c);
    policies(c, &mut cluster, 30);
    if c.chance(30) {
        let _ = writeln!(cluster, "policy_forward: {}", c.pick(&["ACCEPT", "DROP"]));
    }
    cluster.push_str("\n[ALIASES]\na1 10.1.0.0/16\na2 2001:db8::/48 # v6\n\n");
    ipset(c, "s2", &mut cluster);
    if c.chance(30) {
        ipset(c, "management", &mut cluster);
    }
    if c.chance(20) {
        ipset(c, "blacklist", &mut cluster);
    }
    cluster.push_str("[RULES]\n");
    for _ in 0..c.count(5) {
        rule_line(c, &mut cluster, true);
    }
    for g in ["g1", "g2"] {
        let _ = writeln!(cluster, "\n[group {g}]");
        for _ in 0..c.count(5) {
            rule_line(c, &mut cluster, false);
        }
    }
    let mut host = options_start(c);
    for opt in [
        "nosmurfs",
        "tcpflags",
        "nf_conntrack_allow_invalid",
        "ndp",
        "nftables",
    ] {
        if c.chance(30) {
            let _ = writeln!(host, "{opt}: {}", u8::from(c.chance(50)));
        }
    }
    host.push_str("[RULES]\n");
    for _ in 0..c.count(4) {
        rule_line(c, &mut host, true);
    }
    let mut guest = options_start(c);
    for opt in ["dhcp", "ndp", "radv", "macfilter", "ipfilter"] {
        if c.chance(40) {
            let _ = writeln!(guest, "{opt}: {}", u8::from(c.chance(50)));
        }
    }
    policies(c, &mut guest, 40);
    guest.push_str("\n[ALIASES]\na1 10.2.0.0/16\n\n");
    ipset(c, "s1", &mut guest);
    if c.chance(40) {
        ipset(c, "ipfilter-net0", &mut guest);
    }
    guest.push_str("[RULES]\n");
    let narrow = guest_rules > 64;
    for _ in 0..guest_rules {
        if narrow && c.chance(99) {
            narrow_rule(c, &mut guest);
        } else {
            rule_line(c, &mut guest, true);
        }
    }
    (cluster, host, guest)
}

const NIC_MAC: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 1, 0]);

/// Builds a node (one guest, VM 100, with net0 and net1) from bytes.
pub fn node_from(c: &mut Choices<'_>) -> Node {
    let n = c.count(12);
    node_sized(c, n)
}

/// Like [`node_from`] with `guest_rules` rules in the guest file.
pub fn node_sized(c: &mut Choices<'_>, guest_rules: usize) -> Node {
    let (cl, h, g) = config_texts_sized(c, guest_rules);
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let kind = if c.chance(30) {
        GuestKind::Ct
    } else {
        GuestKind::Vm
    };
    let nics = vec![
        Nic {
            index: 0,
            mac: NIC_MAC,
            bridge: "vmbr0".into(),
            firewall: c.chance(90),
            ips: ["10.1.2.3", "2001:db8::5"]
                .iter()
                .filter_map(|s| ip(s))
                .collect(),
        },
        Nic {
            index: 1,
            mac: MacAddr::new([0x52, 0x54, 0, 0, 1, 1]),
            bridge: "vnet0".into(),
            firewall: true,
            ips: Vec::new(),
        },
    ];
    let mut guests = BTreeMap::new();
    guests.insert(
        100,
        Guest {
            vmid: 100,
            kind,
            firewall: parse_lenient(&g, FileKind::Guest).0,
            nics,
        },
    );
    let mut node = Node::new();
    node.cluster = parse_lenient(&cl, FileKind::Cluster).0;
    node.host = parse_lenient(&h, FileKind::Host).0;
    node.host_ips = ip("10.0.0.1").into_iter().collect();
    node.guests = guests;
    node.backend = match c.byte() % 4 {
        0 => Some(Backend::Iptables),
        1 => Some(Backend::Nftables),
        _ => None,
    };
    node.local_network = match c.byte() % 3 {
        0 => "10.0.0.0/8".parse().ok(),
        1 => "2001:db8::/48".parse().ok(),
        _ => None,
    };
    if c.chance(50) {
        node.corosync = Some(Corosync {
            multicast: c.chance(50),
            local: vec![ip("10.0.0.1"), ip("2001:db8::1")],
            peers: vec![ClusterMember {
                name: "pve2".into(),
                links: vec![ip(c.pick(&["10.0.0.2", "10.1.2.3"])), None],
            }],
        });
    }
    if c.chance(60)
        && let Ok(name) = VnetName::new("vnet0")
    {
        let mut text = options_start(c);
        if c.chance(50) {
            let _ = writeln!(text, "policy_forward: {}", c.pick(&["ACCEPT", "DROP"]));
        }
        text.push_str("[RULES]\n");
        for _ in 0..c.count(5) {
            rule_line(c, &mut text, false);
        }
        node.vnets
            .insert(name, parse_lenient(&text, FileKind::Vnet).0);
    }
    node
}

const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "224.0.0.5",
    "255.255.255.255",
    "0.0.0.0",
    "127.0.0.1",
    "ff02::1",
    "10.1.2.3",
    "10.1.2.50",
    "10.1.9.9",
    "10.2.3.4",
    "192.168.1.1",
    "8.8.8.8",
    "2001:db8::5",
    "2001:db8::1:1",
    "2001:db8:0:1::7",
    "fe80::5054:ff:fe00:100",
    "fe80::1",
    "::1",
];

/// A packet from bytes.
pub fn packet_from(c: &mut Choices<'_>) -> (ChainId, Packet) {
    let chain = match c.byte() % 8 {
        0 => ChainId::GuestIn { vmid: 100, nic: 0 },
        1 => ChainId::GuestOut { vmid: 100, nic: 0 },
        2 => ChainId::GuestIn { vmid: 100, nic: 1 },
        3 => ChainId::GuestOut { vmid: 100, nic: 1 },
        4 => ChainId::HostIn,
        5 => ChainId::HostOut,
        6 => ChainId::HostForward,
        _ => match VnetName::new("vnet0") {
            Ok(vnet) => ChainId::VnetForward { vnet },
            Err(_) => ChainId::HostForward,
        },
    };
    let v6 = c.chance(40);
    let pool: Vec<&str> = IPS
        .iter()
        .copied()
        .filter(|s| s.contains(':') == v6)
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let source = ip(c.pick(&pool)).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let mut dest = ip(c.pick(&pool)).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if c.chance(2) {
        dest = IpAddr::from([0u16; 8]);
    }
    let proto = c.pick(&[6u8, 17, 1, 58, 47, 132, 50, 2, 6, 17]);
    let ports: &[u16] = &[
        22, 53, 67, 68, 80, 85, 443, 546, 547, 1000, 3128, 5901, 8006, 0, 43, 137, 445, 1900, 5404,
        5405, 60010,
    ];
    let has_ports = matches!(proto, 6 | 17 | 132);
    let sport = (has_ports && c.chance(90)).then(|| c.pick(ports));
    let dport = (has_ports && c.chance(95)).then(|| {
        if c.chance(50) {
            (u16::from(c.byte()) << 8 | u16::from(c.byte())) % NARROW_PORTS
        } else {
            c.pick(ports)
        }
    });
    let icmp = (matches!(proto, 1 | 58) && c.chance(90)).then(|| {
        c.pick(&[
            (8u8, 0u8),
            (128, 0),
            (3, 1),
            (3, 3),
            (134, 0),
            (135, 0),
            (1, 4),
            (3, 4),
            (11, 0),
            (2, 0),
            (4, 0),
            (137, 0),
            (133, 0),
        ])
    });
    let iface = match c.byte() % 5 {
        0 => None,
        4 => Iface::new("lo").ok(),
        1 => Iface::new("net1").ok(),
        2 => Iface::new("vmbr0").ok(),
        _ => Iface::new("net0").ok(),
    };
    let source_mac = match c.byte() % 8 {
        0 => Some(MacAddr::new([2, 0, 0, 0, 0, 9])),
        1 => Some(NIC_MAC),
        _ => None,
    };
    (
        chain,
        Packet {
            proto,
            source,
            dest,
            sport,
            dport,
            icmp,
            iface,
            source_mac,
            ct: c.pick(&CtState::ALL),
            srctype: c.pick(&AddrType::ALL),
            dsttype: c.pick(&AddrType::ALL),
            tcp_flags: if c.chance(70) {
                tcp::SYN
            } else {
                c.byte() & tcp::ALL
            },
        },
    )
}

/// Differential target: the compiled evaluator gives the reference's verdict and reason for
/// every packet; the configs also round-trip.
pub fn differential(data: &[u8]) -> Result<(), String> {
    let mut c = Choices::new(data);
    let node = node_from(&mut c);
    compare(&node, &mut c, 32)
}

/// Differential check on a big guest rule set (many bitset words), `packets` packets.
pub fn differential_sized(data: &[u8], guest_rules: usize, packets: usize) -> Result<(), String> {
    let mut c = Choices::new(data);
    let node = node_sized(&mut c, guest_rules);
    compare(&node, &mut c, packets)
}

fn compare(node: &Node, c: &mut Choices<'_>, packets: usize) -> Result<(), String> {
    roundtrip(&node.cluster)?;
    roundtrip(&node.host)?;
    for g in node.guests.values() {
        roundtrip(&g.firewall)?;
    }
    let compiled = CompiledNode::compile(node);
    let reference = Reference(node);
    for _ in 0..packets {
        let (chain, pkt) = packet_from(c);
        let r = reference.evaluate_chain(chain, &pkt);
        let k = compiled.evaluate_chain(chain, &pkt);
        let fast = compiled.chain(chain).map(|ch| ch.verdict(&pkt));
        match (&r, &k) {
            (Some(r), Some(k))
                if r.verdict == k.verdict
                    && r.decided_by == k.decided_by
                    && fast == Some(r.verdict) => {}
            (None, None) => {}
            _ => {
                return Err(format!(
                    "disagreement on {chain} {pkt:?}\nreference: {r:?}\ncompiled: {k:?}\nfast: {fast:?}\ncluster:\n{}\nhost:\n{}\nguest:\n{}",
                    node.cluster,
                    node.host,
                    node.guests
                        .get(&100)
                        .map(|g| g.firewall.to_string())
                        .unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}
