//! The customer's VM: where it lives, its addresses and its identity.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{ClusterName, DomainName, MacAddr, NodeName, ProductId, VmId};

/// Where a VM lives: its node and VMID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VmRef {
    node: NodeName,
    vmid: VmId,
}

impl VmRef {
    /// A VM on a node.
    pub fn new(node: NodeName, vmid: VmId) -> Self {
        Self { node, vmid }
    }

    /// The node.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The VMID.
    pub fn vmid(&self) -> VmId {
        self.vmid
    }
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.vmid)
    }
}

/// The IPv4 addresses assigned to a service: a primary with prefix and gateway, plus extras.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Assignment {
    /// The primary address with its prefix (configured by cloud-init).
    pub primary: Ipv4Net,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// Additional addresses (configured by the customer inside the VM).
    pub extra: Vec<Ipv4Addr>,
}

/// The IPv6 addresses assigned to a service: a primary with prefix and gateway, plus extras.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6Assignment {
    /// The primary address with its prefix (configured by cloud-init).
    pub primary: Ipv6Net,
    /// The gateway.
    pub gateway: Ipv6Addr,
    /// Additional addresses (configured by the customer inside the VM).
    pub extra: Vec<Ipv6Addr>,
}

/// The customer's VM as the billing side knows it. Every operation takes a `Service`: no call
/// path takes a raw VMID from a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Where the VM lives.
    pub vm: VmRef,
    /// The product it was sold under.
    pub product: ProductId,
    /// IPv4 assignment, if any.
    pub ipv4: Option<Ipv4Assignment>,
    /// IPv6 assignment, if any.
    pub ipv6: Option<Ipv6Assignment>,
    /// DNS servers (primary first).
    pub dns: Vec<IpAddr>,
    /// The VM's domain (also its hostname).
    pub domain: DomainName,
    /// The MAC of `net0`, kept across reinstall and restore.
    pub mac: MacAddr,
    /// The cluster the VM lives in (`default` when not given, so single-cluster configs keep
    /// working); a [`Fleet`](crate::Fleet) routes every operation to it.
    #[serde(default, skip_serializing_if = "ClusterName::is_default")]
    pub cluster: ClusterName,
}

impl Service {
    /// The VMID.
    pub fn vmid(&self) -> VmId {
        self.vm.vmid()
    }

    /// Refuses a VMID that is not this service's own.
    pub fn check_vmid(&self, vmid: VmId) -> Result<(), Error> {
        if vmid == self.vmid() {
            Ok(())
        } else {
            Err(Error::ForeignVmid {
                expected: self.vmid(),
                got: vmid,
            })
        }
    }

    /// Every assigned address (primary IPv4, extra IPv4, primary IPv6, extra IPv6).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut v = Vec::new();
        if let Some(a) = &self.ipv4 {
            v.push(IpAddr::V4(a.primary.addr()));
            v.extend(a.extra.iter().copied().map(IpAddr::V4));
        }
        if let Some(a) = &self.ipv6 {
            v.push(IpAddr::V6(a.primary.addr()));
            v.extend(a.extra.iter().copied().map(IpAddr::V6));
        }
        v
    }

    /// Every assigned address as a host network (`/32`, `/128`).
    pub fn host_nets(&self) -> Vec<IpNet> {
        self.addresses().into_iter().map(IpNet::from).collect()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// The service the guide's screenshots show.
    pub(crate) fn service() -> Service {
        Service {
            vm: VmRef::new("pve1".parse().unwrap(), VmId::new(100).unwrap()),
            product: "vps-small".parse().unwrap(),
            ipv4: Some(Ipv4Assignment {
                primary: "192.168.130.2/24".parse().unwrap(),
                gateway: "192.168.130.1".parse().unwrap(),
                extra: vec!["192.168.130.3".parse().unwrap()],
            }),
            ipv6: Some(Ipv6Assignment {
                primary: "2001:db8::3/120".parse().unwrap(),
                gateway: "2001:db8::1".parse().unwrap(),
                extra: vec![
                    "2001:db8::4".parse().unwrap(),
                    "2001:db8::5".parse().unwrap(),
                ],
            }),
            dns: vec!["8.8.8.8".parse().unwrap(), "1.1.1.1".parse().unwrap()],
            domain: "5546-1775785707.puqcloud.com".parse().unwrap(),
            mac: "BC:24:11:7A:40:98".parse().unwrap(),
            cluster: Default::default(),
        }
    }

    pub(crate) fn product() -> crate::product::Product {
        let c = crate::product::Catalog::from_toml_str(include_str!("../examples/products.toml"))
            .unwrap();
        c.get(&"vps-small".parse().unwrap()).unwrap().clone()
    }

    pub(crate) fn large_product() -> crate::product::Product {
        let c = crate::product::Catalog::from_toml_str(include_str!("../examples/products.toml"))
            .unwrap();
        c.get(&"vps-large".parse().unwrap()).unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_vmid_is_denied() {
        let s = fixtures::service();
        assert!(s.check_vmid(VmId::new(100).unwrap()).is_ok());
        let e = s.check_vmid(VmId::new(101).unwrap()).unwrap_err();
        assert!(e.is_denied());
        assert_eq!(s.addresses().len(), 5);
    }

    #[test]
    fn the_cluster_defaults_and_validates() {
        let s = fixtures::service();
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("cluster").is_none(), "the default is not written");
        let back: Service = serde_json::from_value(json.clone()).unwrap();
        assert!(back.cluster.is_default());
        let mut east = json.clone();
        east["cluster"] = "east-1".into();
        let back: Service = serde_json::from_value(east).unwrap();
        assert_eq!(back.cluster.as_str(), "east-1");
        assert_eq!(serde_json::to_value(&back).unwrap()["cluster"], "east-1");
        for bad in ["", "East", "1east", "east west", &"x".repeat(33)] {
            let mut j = json.clone();
            j["cluster"] = bad.into();
            assert!(serde_json::from_value::<Service>(j).is_err(), "{bad:?}");
            assert!(bad.parse::<ClusterName>().unwrap_err().is_invalid_input());
        }
    }
}
