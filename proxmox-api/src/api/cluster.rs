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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterResource {
    /// e.g. `qemu/100`
    pub id: String,
    /// Kind.
    pub kind: ResourceKind,
    /// Node.
    pub node: Option<String>,
    /// Guest id.
    pub vmid: Option<u64>,
    /// Guest name.
    pub name: Option<String>,
    /// Status (`running`, `stopped`, `online`, `available`, ...).
    pub status: Option<String>,
    /// CPU usage (0..maxcpu).
    pub cpu: Option<f64>,
    /// CPUs.
    pub maxcpu: Option<f64>,
    /// Used memory, bytes.
    pub mem: Option<u64>,
    /// Memory, bytes.
    pub maxmem: Option<u64>,
    /// Used disk, bytes.
    pub disk: Option<u64>,
    /// Disk size, bytes.
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    pub uptime: Option<u64>,
    /// Network in, bytes.
    pub netin: Option<u64>,
    /// Network out, bytes.
    pub netout: Option<u64>,
    /// Disk read, bytes.
    pub diskread: Option<u64>,
    /// Disk written, bytes.
    pub diskwrite: Option<u64>,
    /// Is a template.
    pub template: bool,
    /// Lock held, if any.
    pub lock: Option<String>,
    /// Tags (`;`-separated).
    pub tags: Option<String>,
    /// Pool.
    pub pool: Option<String>,
    /// HA state.
    pub hastate: Option<String>,
    /// Storage id (storage entries).
    pub storage: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Hand-written so that unknown fields land in `extra` without `#[serde(flatten)]`, which
/// buffers every entry and more than doubled the decode time of a 10,000-guest listing.
impl<'de> serde::Deserialize<'de> for ClusterResource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(ClusterResourceVisitor)
    }
}

struct ClusterResourceVisitor;

impl<'de> serde::de::Visitor<'de> for ClusterResourceVisitor {
    type Value = ClusterResource;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a cluster resource object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<ClusterResource, A::Error> {
        use crate::de::{Flag, Key, OptF64, OptStr, OptU64};
        let mut id: Option<String> = None;
        let mut kind: Option<ResourceKind> = None;
        let mut r = ClusterResource {
            id: String::new(),
            kind: ResourceKind::Other(String::new()),
            node: None,
            vmid: None,
            name: None,
            status: None,
            cpu: None,
            maxcpu: None,
            mem: None,
            maxmem: None,
            disk: None,
            maxdisk: None,
            uptime: None,
            netin: None,
            netout: None,
            diskread: None,
            diskwrite: None,
            template: false,
            lock: None,
            tags: None,
            pool: None,
            hastate: None,
            storage: None,
            extra: std::collections::BTreeMap::new(),
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "id" => id = Some(map.next_value()?),
                "type" => kind = Some(map.next_value()?),
                "node" => r.node = map.next_value()?,
                "vmid" => r.vmid = map.next_value::<OptU64>()?.0,
                "name" => r.name = map.next_value::<OptStr>()?.0,
                "status" => r.status = map.next_value()?,
                "cpu" => r.cpu = map.next_value::<OptF64>()?.0,
                "maxcpu" => r.maxcpu = map.next_value::<OptF64>()?.0,
                "mem" => r.mem = map.next_value::<OptU64>()?.0,
                "maxmem" => r.maxmem = map.next_value::<OptU64>()?.0,
                "disk" => r.disk = map.next_value::<OptU64>()?.0,
                "maxdisk" => r.maxdisk = map.next_value::<OptU64>()?.0,
                "uptime" => r.uptime = map.next_value::<OptU64>()?.0,
                "netin" => r.netin = map.next_value::<OptU64>()?.0,
                "netout" => r.netout = map.next_value::<OptU64>()?.0,
                "diskread" => r.diskread = map.next_value::<OptU64>()?.0,
                "diskwrite" => r.diskwrite = map.next_value::<OptU64>()?.0,
                "template" => r.template = map.next_value::<Flag>()?.0,
                "lock" => r.lock = map.next_value()?,
                "tags" => r.tags = map.next_value()?,
                "pool" => r.pool = map.next_value()?,
                "hastate" => r.hastate = map.next_value()?,
                "storage" => r.storage = map.next_value()?,
                _ => {
                    let v: serde_json::Value = map.next_value()?;
                    r.extra.insert(key.into_owned(), v);
                }
            }
        }
        r.id = id.ok_or_else(|| serde::de::Error::missing_field("id"))?;
        r.kind = kind.ok_or_else(|| serde::de::Error::missing_field("type"))?;
        Ok(r)
    }
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
