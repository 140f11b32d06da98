//! Protocols, port lists and ICMP types, with PVE's limits.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Protocol names accepted by name (a subset of `/etc/protocols`, plus `icmpv6`).
const PROTO_NAMES: &[(&str, u8)] = &[
    ("ip", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ggp", 3),
    ("ipencap", 4),
    ("st", 5),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("pup", 12),
    ("udp", 17),
    ("hmp", 20),
    ("xns-idp", 22),
    ("rdp", 27),
    ("iso-tp4", 29),
    ("dccp", 33),
    ("xtp", 36),
    ("ddp", 37),
    ("idpr-cmtp", 38),
    ("ipv6", 41),
    ("ipv6-route", 43),
    ("ipv6-frag", 44),
    ("idrp", 45),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("skip", 57),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("rspf", 73),
    ("vmtp", 81),
    ("eigrp", 88),
    ("ospf", 89),
    ("ax.25", 93),
    ("ipip", 94),
    ("etherip", 97),
    ("encap", 98),
    ("pim", 103),
    ("ipcomp", 108),
    ("vrrp", 112),
    ("l2tp", 115),
    ("isis", 124),
    ("sctp", 132),
    ("fc", 133),
    ("mobility-header", 135),
    ("udplite", 136),
    ("mpls-in-ip", 137),
    ("manet", 138),
    ("hip", 139),
    ("shim6", 140),
    ("wesp", 141),
    ("rohc", 142),
];

/// IANA numbers of well-known protocols.
pub mod numbers {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// DCCP.
    pub const DCCP: u8 = 33;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// UDP-Lite.
    pub const UDPLITE: u8 = 136;
}

/// Does the protocol carry ports (tcp, udp, udplite, dccp, sctp)?
pub fn has_ports(proto: u8) -> bool {
    matches!(
        proto,
        numbers::TCP | numbers::UDP | numbers::UDPLITE | numbers::DCCP | numbers::SCTP
    )
}

/// A protocol given by name or number; it prints back the way it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Protocol {
    number: u8,
    name: Option<&'static str>,
}

impl Protocol {
    /// The protocol by IANA number (printed as a number).
    pub fn from_number(number: u8) -> Self {
        Protocol { number, name: None }
    }
    /// tcp
    pub const TCP: Protocol = Protocol {
        number: 6,
        name: Some("tcp"),
    };
    /// udp
    pub const UDP: Protocol = Protocol {
        number: 17,
        name: Some("udp"),
    };
    /// icmp
    pub const ICMP: Protocol = Protocol {
        number: 1,
        name: Some("icmp"),
    };
    /// icmpv6
    pub const ICMPV6: Protocol = Protocol {
        number: 58,
        name: Some("icmpv6"),
    };
    /// The IANA number.
    pub fn number(&self) -> u8 {
        self.number
    }
    /// Does it carry ports?
    pub fn has_ports(&self) -> bool {
        has_ports(self.number)
    }
    /// Is it ICMP (v4) or ICMPv6?
    pub fn is_icmp(&self) -> bool {
        self.number == numbers::ICMP || self.number == numbers::ICMPV6
    }
    /// The family it is restricted to (`icmp` is IPv4-only, `icmpv6` IPv6-only).
    pub fn family(&self) -> Option<crate::addr::Family> {
        match self.number {
            numbers::ICMP => Some(crate::addr::Family::V4),
            numbers::ICMPV6 => Some(crate::addr::Family::V6),
            _ => None,
        }
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u8>()
                .map(Protocol::from_number)
                .map_err(|_| Error::invalid("protocol", s, "number above 255"));
        }
        PROTO_NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(n, num)| Protocol {
                number: *num,
                name: Some(n),
            })
            .ok_or_else(|| Error::invalid("protocol", s, "unknown protocol name"))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.number),
        }
    }
}

/// Service names accepted in port lists (a subset of `/etc/services`).
const SERVICE_NAMES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("http", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("ntp", 123),
    ("imap2", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("submissions", 465),
    ("syslog", 514),
    ("submission", 587),
    ("ldaps", 636),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("mysql", 3306),
    ("postgresql", 5432),
];

/// One entry of a port list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortEntry {
    /// A single port, with the service name it was written as, if any.
    Port(u16, Option<&'static str>),
    /// An inclusive range `lo:hi`.
    Range(u16, u16),
}

impl PortEntry {
    /// Inclusive bounds.
    pub fn bounds(&self) -> (u16, u16) {
        match *self {
            PortEntry::Port(p, _) => (p, p),
            PortEntry::Range(a, b) => (a, b),
        }
    }
    fn weight(&self) -> usize {
        match self {
            PortEntry::Port(..) => 1,
            PortEntry::Range(..) => 2,
        }
    }
}

fn parse_port(s: &str, whole: &str) -> Result<(u16, Option<&'static str>)> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u16>()
            .map(|p| (p, None))
            .map_err(|_| Error::invalid("port list", whole, format!("port `{s}` above 65535")));
    }
    SERVICE_NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(n, p)| (*p, Some(*n)))
        .ok_or_else(|| Error::invalid("port list", whole, format!("unknown service `{s}`")))
}

/// A `-sport`/`-dport` value: at most 15 entries, a range counting as 2.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortList(Vec<PortEntry>);

impl PortList {
    /// Maximum weight of a list (multiport's limit).
    pub const MAX_ENTRIES: usize = 15;

    /// Builds a list, enforcing the limits.
    pub fn new(entries: Vec<PortEntry>) -> Result<Self> {
        let list = PortList(entries);
        let text = list.to_string();
        if list.0.is_empty() {
            return Err(Error::invalid("port list", &text, "empty"));
        }
        for e in &list.0 {
            if let PortEntry::Range(a, b) = e
                && a > b
            {
                return Err(Error::invalid("port list", &text, "range start after end"));
            }
        }
        let weight: usize = list.0.iter().map(PortEntry::weight).sum();
        if weight > Self::MAX_ENTRIES {
            return Err(Error::invalid(
                "port list",
                &text,
                format!("{weight} entries (a range counts 2), at most 15 allowed"),
            ));
        }
        Ok(list)
    }
    /// The entries.
    pub fn entries(&self) -> &[PortEntry] {
        &self.0
    }
    /// Does the list contain `port`?
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|e| {
            let (a, b) = e.bounds();
            a <= port && port <= b
        })
    }
}

impl FromStr for PortList {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut v = Vec::new();
        for part in s.split(',') {
            if let Some((a, b)) = part.split_once(':') {
                let (a, _) = parse_port(a, s)?;
                let (b, _) = parse_port(b, s)?;
                v.push(PortEntry::Range(a, b));
            } else {
                let (p, n) = parse_port(part, s)?;
                v.push(PortEntry::Port(p, n));
            }
        }
        PortList::new(v)
    }
}

impl fmt::Display for PortList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match e {
                PortEntry::Port(_, Some(n)) => f.write_str(n)?,
                PortEntry::Port(p, None) => write!(f, "{p}")?,
                PortEntry::Range(a, b) => write!(f, "{a}:{b}")?,
            }
        }
        Ok(())
    }
}

const ICMP4_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("echo-reply", 0, None),
    ("destination-unreachable", 3, None),
    ("network-unreachable", 3, Some(0)),
    ("host-unreachable", 3, Some(1)),
    ("protocol-unreachable", 3, Some(2)),
    ("port-unreachable", 3, Some(3)),
    ("fragmentation-needed", 3, Some(4)),
    ("source-route-failed", 3, Some(5)),
    ("network-unknown", 3, Some(6)),
    ("host-unknown", 3, Some(7)),
    ("network-prohibited", 3, Some(9)),
    ("host-prohibited", 3, Some(10)),
    ("TOS-network-unreachable", 3, Some(11)),
    ("TOS-host-unreachable", 3, Some(12)),
    ("communication-prohibited", 3, Some(13)),
    ("host-precedence-violation", 3, Some(14)),
    ("precedence-cutoff", 3, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("TOS-network-redirect", 5, Some(2)),
    ("TOS-host-redirect", 5, Some(3)),
    ("echo-request", 8, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", 11, None),
    ("ttl-zero-during-transit", 11, Some(0)),
    ("ttl-zero-during-reassembly", 11, Some(1)),
    ("parameter-problem", 12, None),
    ("ip-header-bad", 12, Some(0)),
    ("required-option-missing", 12, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

const ICMP6_NAMES: &[(&str, u8, Option<u8>)] = &[
    ("destination-unreachable", 1, None),
    ("no-route", 1, Some(0)),
    ("communication-prohibited", 1, Some(1)),
    ("beyond-scope", 1, Some(2)),
    ("address-unreachable", 1, Some(3)),
    ("port-unreachable", 1, Some(4)),
    ("failed-policy", 1, Some(5)),
    ("reject-route", 1, Some(6)),
    ("packet-too-big", 2, None),
    ("time-exceeded", 3, None),
    ("ttl-zero-during-transit", 3, Some(0)),
    ("ttl-zero-during-reassembly", 3, Some(1)),
    ("parameter-problem", 4, None),
    ("bad-header", 4, Some(0)),
    ("unknown-header-type", 4, Some(1)),
    ("unknown-option", 4, Some(2)),
    ("echo-request", 128, None),
    ("echo-reply", 129, None),
    ("router-solicitation", 133, None),
    ("router-advertisement", 134, None),
    ("neighbor-solicitation", 135, None),
    ("neighbour-solicitation", 135, None),
    ("neighbor-advertisement", 136, None),
    ("neighbour-advertisement", 136, None),
    ("redirect", 137, None),
];

/// What an ICMP type matches: every type, or one type with an optional code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpMatch {
    /// `any`.
    Any,
    /// A type, optionally narrowed to a code.
    Type(u8, Option<u8>),
}

impl IcmpMatch {
    /// Does a packet with this type and code match?
    pub fn matches(&self, ty: u8, code: u8) -> bool {
        match *self {
            IcmpMatch::Any => true,
            IcmpMatch::Type(t, None) => t == ty,
            IcmpMatch::Type(t, Some(c)) => t == ty && c == code,
        }
    }
}

/// An `-icmp-type` value: `any`, a name (`echo-request`), a number or `type/code`.
///
/// Names are looked up in the ICMP or ICMPv6 table depending on the rule's protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IcmpType(String);

impl IcmpType {
    /// Validates the syntax (names must exist in the ICMP or ICMPv6 table).
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        let t = IcmpType(s);
        if t.resolve(false).is_none() && t.resolve(true).is_none() {
            return Err(Error::invalid("icmp type", &t.0, "unknown ICMP type"));
        }
        Ok(t)
    }
    /// Resolves the value for ICMP (`v6 == false`) or ICMPv6.
    pub fn resolve(&self, v6: bool) -> Option<IcmpMatch> {
        let s = self.0.as_str();
        if s == "any" {
            return Some(IcmpMatch::Any);
        }
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            let (t, c) = match s.split_once('/') {
                Some((t, c)) => (t, Some(c)),
                None => (s, None),
            };
            let t = t.parse::<u8>().ok()?;
            let c = match c {
                Some(c) => Some(c.parse::<u8>().ok()?),
                None => None,
            };
            return Some(IcmpMatch::Type(t, c));
        }
        let table = if v6 { ICMP6_NAMES } else { ICMP4_NAMES };
        table
            .iter()
            .find(|(n, _, _)| *n == s)
            .map(|(_, t, c)| IcmpMatch::Type(*t, *c))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::text::text_traits!(IcmpType);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_list_limits() {
        assert!("22,80,443,8000:8080".parse::<PortList>().is_ok());
        let fifteen = (1..=15)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(fifteen.parse::<PortList>().is_ok());
        let sixteen = format!("{fifteen},16");
        assert!(sixteen.parse::<PortList>().is_err());
        // 13 singles plus a range (counting 2) is 15: fine; 14 singles plus a range is not.
        let r13 = (1..=13)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(format!("{r13},100:200").parse::<PortList>().is_ok());
        assert!(format!("{r13},14,100:200").parse::<PortList>().is_err());
        assert!("70000".parse::<PortList>().is_err());
        assert!("90:80".parse::<PortList>().is_err());
        assert_eq!("ssh,80".parse::<PortList>().unwrap().to_string(), "ssh,80");
        assert!("ssh".parse::<PortList>().unwrap().contains(22));
    }

    #[test]
    fn protocols_and_icmp() {
        assert_eq!("tcp".parse::<Protocol>().unwrap().number(), 6);
        assert_eq!("47".parse::<Protocol>().unwrap().to_string(), "47");
        assert!("tcpx".parse::<Protocol>().is_err());
        let t = IcmpType::new("echo-request").unwrap();
        assert_eq!(t.resolve(false), Some(IcmpMatch::Type(8, None)));
        assert_eq!(t.resolve(true), Some(IcmpMatch::Type(128, None)));
        assert_eq!(
            IcmpType::new("3/4").unwrap().resolve(false),
            Some(IcmpMatch::Type(3, Some(4)))
        );
        assert!(IcmpType::new("bogus").is_err());
    }
}
