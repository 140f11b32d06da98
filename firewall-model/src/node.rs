//! A node: cluster and host configuration plus the guests with their NICs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::addr::Cidr;
use crate::error::{Error, Result};
use crate::model::{FileKind, FwFile};
pub use crate::stdchain::Backend;

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

/// A cluster member as corosync knows it: its addresses, one per link (`ring0_addr`,
/// `ring1_addr` ...; `None` for a link it is not on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMember {
    /// Node name.
    pub name: String,
    /// Address per link number.
    pub links: Vec<Option<IpAddr>>,
}

/// Corosync membership as the host firewall uses it (`PVE::Corosync::for_all_corosync_addresses`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Corosync {
    /// `totem.transport` is `udp`: multicast corosync traffic is accepted too.
    pub multicast: bool,
    /// This node's address per link number.
    pub local: Vec<Option<IpAddr>>,
    /// The other members.
    pub peers: Vec<ClusterMember>,
}

/// An SDN VNet name (`[a-z][a-z0-9]*`, at most 8 characters, as PVE's SDN requires).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VnetName {
    bytes: [u8; 8],
    len: u8,
}

impl VnetName {
    /// Validates a name.
    pub fn new(s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 8
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(Error::invalid(
                "vnet name",
                s,
                "expected [a-z][a-z0-9]*, at most 8 characters",
            ));
        }
        let mut bytes = [0u8; 8];
        for (slot, b) in bytes.iter_mut().zip(s.bytes()) {
            *slot = b;
        }
        Ok(VnetName {
            bytes,
            len: u8::try_from(s.len()).unwrap_or(8),
        })
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl FromStr for VnetName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        VnetName::new(s)
    }
}

impl fmt::Display for VnetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for VnetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VnetName({})", self.as_str())
    }
}

impl serde::Serialize for VnetName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
    /// The firewall implementation; `None` follows `host.fw` (`nftables: 1` selects
    /// proxmox-firewall, anything else pve-firewall).
    pub backend: Option<Backend>,
    /// The network of the node's cluster address, as `pve-firewall localnet` detects it. A
    /// `local_network` alias in `cluster.fw` overrides it; without either PVE uses
    /// `127.0.0.0/8`.
    pub local_network: Option<Cidr>,
    /// Corosync membership, for the host's cluster-traffic rules.
    pub corosync: Option<Corosync>,
    /// SDN VNet firewall files (`/etc/pve/sdn/firewall/<vnet>.fw`) by VNet.
    pub vnets: BTreeMap<VnetName, FwFile>,
}

impl Node {
    /// A node with empty configs (cluster firewall disabled) and no guests.
    pub fn new() -> Self {
        Node {
            cluster: FwFile::new(FileKind::Cluster),
            host: FwFile::new(FileKind::Host),
            host_ips: Vec::new(),
            guests: BTreeMap::new(),
            backend: None,
            local_network: None,
            corosync: None,
            vnets: BTreeMap::new(),
        }
    }

    /// The backend in effect: the explicit one, else `host.fw`'s `nftables` option.
    pub fn effective_backend(&self) -> Backend {
        self.backend
            .unwrap_or(if self.host_option("nftables") == Some(true) {
                Backend::Nftables
            } else {
                Backend::Iptables
            })
    }

    /// The `local_network` in effect: the `cluster.fw` alias of that name, else the detected
    /// network, else `127.0.0.0/8` (pve-firewall's fallback).
    pub fn effective_local_network(&self) -> Cidr {
        self.cluster
            .alias("local_network")
            .map(|a| a.cidr)
            .or(self.local_network)
            .unwrap_or_else(crate::stdchain::loopback_net)
    }

    /// A boolean option of `host.fw` (typed or kept verbatim), as pve-firewall reads it.
    pub fn host_option(&self, key: &str) -> Option<bool> {
        let o = &self.host.options;
        match key {
            "ndp" => o.ndp,
            "enable" => o.enable,
            _ => o
                .other
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .and_then(|(_, v)| match v.as_str().to_ascii_lowercase().as_str() {
                    "1" | "on" | "yes" | "true" => Some(true),
                    "0" | "off" | "no" | "false" => Some(false),
                    _ => None,
                }),
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
