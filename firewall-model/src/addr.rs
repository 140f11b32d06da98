//! Address specifications: IPs, CIDRs, ranges, lists, IP set and alias references.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::text::{AliasName, IpSetName};

/// IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// An address as a number in a family-independent space (IPv4 fits in the low 32 bits).
pub(crate) fn ip_to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// Inclusive numeric bounds of a network.
pub(crate) fn net_bounds(net: &IpNet) -> (u128, u128) {
    (ip_to_u128(&net.network()), ip_to_u128(&net.broadcast()))
}

/// Which configuration a reference is looked up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RefScope {
    /// No prefix: the guest's own definitions first, then the cluster's.
    #[default]
    Auto,
    /// `dc/`: only the cluster (datacenter) definitions.
    Dc,
    /// `guest/`: only the guest's definitions.
    Guest,
}

impl RefScope {
    fn prefix(self) -> &'static str {
        match self {
            RefScope::Auto => "",
            RefScope::Dc => "dc/",
            RefScope::Guest => "guest/",
        }
    }
    fn split(s: &str) -> (RefScope, &str) {
        if let Some(r) = s.strip_prefix("dc/") {
            (RefScope::Dc, r)
        } else if let Some(r) = s.strip_prefix("guest/") {
            (RefScope::Guest, r)
        } else {
            (RefScope::Auto, s)
        }
    }
}

/// A single literal address item of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrItem {
    /// One address.
    Ip(IpAddr),
    /// A network in CIDR notation (host bits are kept as written).
    Cidr(IpNet),
    /// An inclusive range `a-b` of one family.
    Range(IpAddr, IpAddr),
}

impl AddrItem {
    /// The family of the item.
    pub fn family(&self) -> Family {
        match self {
            AddrItem::Ip(ip) | AddrItem::Range(ip, _) => Family::of(ip),
            AddrItem::Cidr(n) => Family::of(&n.addr()),
        }
    }
    /// Inclusive numeric bounds.
    pub(crate) fn bounds(&self) -> (u128, u128) {
        match self {
            AddrItem::Ip(ip) => (ip_to_u128(ip), ip_to_u128(ip)),
            AddrItem::Cidr(n) => net_bounds(n),
            AddrItem::Range(a, b) => (ip_to_u128(a), ip_to_u128(b)),
        }
    }
    /// Does the item contain `ip`?
    pub fn contains(&self, ip: &IpAddr) -> bool {
        if Family::of(ip) != self.family() {
            return false;
        }
        let (lo, hi) = self.bounds();
        let v = ip_to_u128(ip);
        lo <= v && v <= hi
    }
}

impl FromStr for AddrItem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a
                .parse()
                .map_err(|_| Error::invalid("address range", s, "bad start address"))?;
            let b: IpAddr = b
                .parse()
                .map_err(|_| Error::invalid("address range", s, "bad end address"))?;
            if Family::of(&a) != Family::of(&b) {
                return Err(Error::invalid("address range", s, "mixes IPv4 and IPv6"));
            }
            if ip_to_u128(&a) > ip_to_u128(&b) {
                return Err(Error::invalid("address range", s, "start is after end"));
            }
            return Ok(AddrItem::Range(a, b));
        }
        if s.contains('/') {
            return s
                .parse::<IpNet>()
                .map(AddrItem::Cidr)
                .map_err(|_| Error::invalid("address", s, "bad CIDR"));
        }
        s.parse::<IpAddr>()
            .map(AddrItem::Ip)
            .map_err(|_| Error::invalid("address", s, "not an IP, CIDR, range, alias or +ipset"))
    }
}

impl fmt::Display for AddrItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrItem::Ip(ip) => write!(f, "{ip}"),
            AddrItem::Cidr(n) => write!(f, "{n}"),
            AddrItem::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// A rule's `-source` or `-dest` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A non-empty comma list of literal items of one family.
    List(Vec<AddrItem>),
    /// `+name`, `+dc/name` or `+guest/name`.
    IpSet(RefScope, IpSetName),
    /// `name`, `dc/name` or `guest/name`.
    Alias(RefScope, AliasName),
}

impl Address {
    /// The family, when it is known without resolving references.
    pub fn literal_family(&self) -> Option<Family> {
        match self {
            Address::List(items) => items.first().map(AddrItem::family),
            _ => None,
        }
    }
}

fn looks_like_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !s.contains(':')
}

impl FromStr for Address {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::invalid("address", s, "empty"));
        }
        if let Some(rest) = s.strip_prefix('+') {
            let (scope, name) = RefScope::split(rest);
            return Ok(Address::IpSet(scope, IpSetName::new(name)?));
        }
        let (scope, name) = RefScope::split(s);
        if scope != RefScope::Auto || (looks_like_name(s) && !s.contains(',')) {
            return Ok(Address::Alias(scope, AliasName::new(name)?));
        }
        let mut items = Vec::new();
        for part in s.split(',') {
            items.push(part.parse::<AddrItem>()?);
        }
        let fam = items.first().map(AddrItem::family);
        if items.iter().any(|i| Some(i.family()) != fam) {
            return Err(Error::invalid("address list", s, "mixes IPv4 and IPv6"));
        }
        Ok(Address::List(items))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::List(items) => {
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{it}")?;
                }
                Ok(())
            }
            Address::IpSet(sc, n) => write!(f, "+{}{}", sc.prefix(), n),
            Address::Alias(sc, n) => write!(f, "{}{}", sc.prefix(), n),
        }
    }
}

/// What an IP set entry or alias holds: an address or network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Wraps a network.
    pub fn new(net: IpNet) -> Self {
        Cidr(net)
    }
    /// The network.
    pub fn net(&self) -> IpNet {
        self.0
    }
    /// Family.
    pub fn family(&self) -> Family {
        Family::of(&self.0.addr())
    }
    /// Does it contain `ip`?
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.contains('/') {
            s.parse::<IpNet>()
                .map(Cidr)
                .map_err(|_| Error::invalid("cidr", s, "bad CIDR"))
        } else {
            s.parse::<IpAddr>()
                .map(|ip| Cidr(IpNet::from(ip)))
                .map_err(|_| Error::invalid("cidr", s, "not an IP or CIDR"))
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A host address is printed without its /32 or /128, as PVE does.
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The value of an IP set entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IpSetValue {
    /// An address or network.
    Cidr(Cidr),
    /// An alias name (resolved like rule aliases).
    Alias(RefScope, AliasName),
}

impl FromStr for IpSetValue {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (scope, name) = RefScope::split(s);
        if scope != RefScope::Auto || looks_like_name(s) {
            Ok(IpSetValue::Alias(scope, AliasName::new(name)?))
        } else {
            s.parse().map(IpSetValue::Cidr)
        }
    }
}

impl fmt::Display for IpSetValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpSetValue::Cidr(c) => write!(f, "{c}"),
            IpSetValue::Alias(sc, n) => write!(f, "{}{}", sc.prefix(), n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_address_forms() {
        let a: Address = "10.0.0.1,10.1.0.0/16,10.2.0.1-10.2.0.9".parse().unwrap();
        assert_eq!(a.to_string(), "10.0.0.1,10.1.0.0/16,10.2.0.1-10.2.0.9");
        assert!(matches!(
            "+dc/web".parse::<Address>().unwrap(),
            Address::IpSet(RefScope::Dc, _)
        ));
        assert!(matches!(
            "guest/office".parse::<Address>().unwrap(),
            Address::Alias(RefScope::Guest, _)
        ));
        assert!(matches!(
            "office".parse::<Address>().unwrap(),
            Address::Alias(RefScope::Auto, _)
        ));
        assert!(matches!(
            "fe80::1".parse::<Address>().unwrap(),
            Address::List(_)
        ));
    }

    #[test]
    fn rejects_mixed_families_and_junk() {
        assert!("10.0.0.1,fe80::1".parse::<Address>().is_err());
        assert!("10.0.0.1-fe80::1".parse::<Address>().is_err());
        assert!("10.0.0.9-10.0.0.1".parse::<Address>().is_err());
        assert!("10.0.0.1#x".parse::<Address>().is_err());
        assert!("".parse::<Address>().is_err());
    }
}
