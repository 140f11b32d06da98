//! A node: cluster and host configuration plus the guests with their NICs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::{FileKind, FwFile};

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// From bytes.
    pub const fn new(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
    /// The bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
    /// The IPv6 link-local address derived from it (EUI-64), which `ipfilter` always allows.
    pub fn link_local(&self) -> IpAddr {
        let [a, b, c, d, e, f] = self.0;
        let seg = |x: u8, y: u8| (u16::from(x) << 8) | u16::from(y);
        IpAddr::V6(Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            seg(a ^ 0x02, b),
            seg(c, 0xff),
            seg(0xfe, d),
            seg(e, f),
        ))
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for slot in &mut out {
            let p = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| Error::invalid("mac address", s, "expected xx:xx:xx:xx:xx:xx"))?;
            *slot = u8::from_str_radix(p, 16)
                .map_err(|_| Error::invalid("mac address", s, "bad hex digit"))?;
        }
        if parts.next().is_some() {
            return Err(Error::invalid("mac address", s, "too many octets"));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// Virtual machine or container (containers' configured IPs are implicitly allowed by
/// `ipfilter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GuestKind {
    /// QEMU VM.
    #[default]
    Vm,
    /// LXC container.
    Ct,
}

/// A guest NIC (`netN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// N of `netN`.
    pub index: u8,
    /// MAC address.
    pub mac: MacAddr,
    /// Bridge (`vmbr0`).
    pub bridge: String,
    /// The NIC's `firewall=1` flag.
    pub firewall: bool,
    /// Addresses the guest uses on this NIC.
    pub ips: Vec<IpAddr>,
}

/// A guest on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    /// VM id.
    pub vmid: u32,
    /// VM or container.
    pub kind: GuestKind,
    /// Its `<vmid>.fw`.
    pub firewall: FwFile,
    /// NICs.
    pub nics: Vec<Nic>,
}

impl Guest {
    /// A NIC by index.
    pub fn nic(&self, index: u8) -> Option<&Nic> {
        self.nics.iter().find(|n| n.index == index)
    }
}

/// Everything that decides a packet's fate on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `cluster.fw`.
    pub cluster: FwFile,
    /// `host.fw`.
    pub host: FwFile,
    /// The host's own addresses.
    pub host_ips: Vec<IpAddr>,
    /// Guests by VM id.
    pub guests: BTreeMap<u32, Guest>,
}

impl Node {
    /// A node with empty configs (cluster firewall disabled) and no guests.
    pub fn new() -> Self {
        Node {
            cluster: FwFile::new(FileKind::Cluster),
            host: FwFile::new(FileKind::Host),
            host_ips: Vec::new(),
            guests: BTreeMap::new(),
        }
    }
}

impl Node {
    /// A copy of the node with one guest's `<vmid>.fw` replaced: the "after" side of a
    /// [`lockout_check`](crate::lint::lockout_check) for a client's proposed change.
    pub fn with_guest_firewall(&self, vmid: u32, firewall: FwFile) -> Result<Node> {
        let mut node = self.clone();
        let guest = node.guests.get_mut(&vmid).ok_or_else(|| Error::Unknown {
            what: "guest",
            name: vmid.to_string(),
        })?;
        guest.firewall = firewall;
        Ok(node)
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_link_local() {
        let m: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:12:34:56");
        assert_eq!(m.link_local().to_string(), "fe80::5054:ff:fe12:3456");
        assert!("52:54:00:12:34".parse::<MacAddr>().is_err());
    }
}
