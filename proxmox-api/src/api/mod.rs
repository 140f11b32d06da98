//! Typed endpoints, one file per area. Entry points are methods on [`Client`] (cluster-wide
//! calls), [`NodeHandle`] (`client.node(&node)`) and [`VmHandle`] (`client.node(&node).qemu(vmid)`).

pub mod agent;
pub mod backup;
pub mod cloudinit;
pub mod cluster;
pub mod console;
pub mod firewall;
pub mod qemu_config;
pub mod qemu_status;
pub mod rrd;
pub mod snapshot;
pub mod tasks;

use crate::client::Client;
use crate::task::TaskHandle;
use crate::types::{NodeName, Upid, VmId};

/// Calls scoped to one node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) client: Client,
    pub(crate) node: NodeName,
}

/// Calls scoped to one QEMU guest.
#[derive(Debug, Clone)]
pub struct VmHandle {
    pub(crate) client: Client,
    pub(crate) node: NodeName,
    pub(crate) vmid: VmId,
}

impl Client {
    /// Calls on `node`.
    pub fn node(&self, node: &NodeName) -> NodeHandle {
        NodeHandle {
            client: self.clone(),
            node: node.clone(),
        }
    }

    /// Handle for a task started elsewhere.
    pub fn task(&self, upid: Upid) -> TaskHandle {
        TaskHandle::new(self.clone(), upid)
    }
}

impl NodeHandle {
    /// The node's name.
    pub fn name(&self) -> &NodeName {
        &self.node
    }

    /// Calls on QEMU guest `vmid` of this node.
    pub fn qemu(&self, vmid: VmId) -> VmHandle {
        VmHandle {
            client: self.client.clone(),
            node: self.node.clone(),
            vmid,
        }
    }
}

impl VmHandle {
    /// The guest's node.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// The guest's id.
    pub fn vmid(&self) -> VmId {
        self.vmid
    }

    pub(crate) fn args(&self) -> (String, String) {
        (self.node.to_string(), self.vmid.to_string())
    }

    pub(crate) fn task(&self, upid: Upid) -> TaskHandle {
        TaskHandle::new(self.client.clone(), upid)
    }
}

/// Reject values that would corrupt a PVE property string or form field. Free text
/// (`free_text`) may hold `,`, `=` and line breaks; other control characters are never allowed.
pub(crate) fn check_text(kind: &'static str, v: &str, free_text: bool) -> crate::Result<()> {
    let bad_control = v
        .chars()
        .any(|c| c.is_control() && !(free_text && (c == '\n' || c == '\r')));
    if bad_control || (!free_text && (v.contains(',') || v.contains('='))) {
        return Err(crate::Error::invalid(
            kind,
            v,
            "contains a control character, `,` or `=`",
        ));
    }
    Ok(())
}
