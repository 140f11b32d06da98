//! `/version`, `/nodes`, `/cluster/resources`.

use crate::client::Client;
use crate::error::Result;
use crate::macros::{lenient_enum, wire_enum};
use crate::request::{self, Request};

/// `GET /version`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// e.g. `8.2.4`
    pub version: String,
    /// e.g. `8.2`
    pub release: String,
    /// Git repository id.
    #[serde(default)]
    pub repoid: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

lenient_enum! {
    /// Node online state.
    pub enum NodeStatus {
        /// Online.
        Online => "online",
        /// Offline.
        Offline => "offline",
        /// Unknown.
        Unknown => "unknown",
    }
}

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// Online state.
    pub status: NodeStatus,
    /// CPU usage (0..1).
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub cpu: Option<f64>,
    /// Number of CPUs.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxcpu: Option<u64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub mem: Option<u64>,
    /// Total memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub uptime: Option<u64>,
    /// Fingerprint of the node's certificate.
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

lenient_enum! {
    /// Kind of a cluster resource.
    pub enum ResourceKind {
        /// QEMU VM.
        Qemu => "qemu",
        /// LXC container.
        Lxc => "lxc",
        /// Node.
        Node => "node",
        /// Storage.
        Storage => "storage",
        /// Pool.
        Pool => "pool",
        /// SDN zone.
        Sdn => "sdn",
    }
}

wire_enum! {
    /// Filter of `GET /cluster/resources`.
    pub enum ResourceFilter {
        /// Guests (QEMU and LXC).
        Vm => "vm",
        /// Storages.
        Storage => "storage",
        /// Nodes.
        Node => "node",
        /// SDN.
        Sdn => "sdn",
    }
}

/// One entry of `GET /cluster/resources`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct ClusterResource {
    /// e.g. `qemu/100`
    pub id: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// Guest id.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub vmid: Option<u64>,
    /// Guest name.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub name: Option<String>,
    /// Status (`running`, `stopped`, `online`, `available`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// CPU usage (0..maxcpu).
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub cpu: Option<f64>,
    /// CPUs.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub mem: Option<u64>,
    /// Memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used disk, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub disk: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub uptime: Option<u64>,
    /// Network in, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub netin: Option<u64>,
    /// Network out, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub netout: Option<u64>,
    /// Disk read, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub diskread: Option<u64>,
    /// Disk written, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub diskwrite: Option<u64>,
    /// Is a template.
    #[serde(default, deserialize_with = "crate::de::bool")]
    pub template: bool,
    /// Lock held, if any.
    #[serde(default)]
    pub lock: Option<String>,
    /// Tags (`;`-separated).
    #[serde(default)]
    pub tags: Option<String>,
    /// Pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// HA state.
    #[serde(default)]
    pub hastate: Option<String>,
    /// Storage id (storage entries).
    #[serde(default)]
    pub storage: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Client {
    /// `GET /version`.
    pub async fn version(&self) -> Result<Version> {
        self.call(Request::new(&request::VERSION, &[])).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.call(Request::new(&request::NODES, &[])).await
    }

    /// `GET /cluster/resources[?type=]`: every guest/node/storage of the cluster in one call.
    pub async fn cluster_resources(
        &self,
        filter: Option<ResourceFilter>,
    ) -> Result<Vec<ClusterResource>> {
        let req =
            Request::new(&request::CLUSTER_RESOURCES, &[]).opt("type", filter.map(|f| f.as_str()));
        self.call(req).await
    }
}
