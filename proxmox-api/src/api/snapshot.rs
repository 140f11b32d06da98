//! Snapshots: `/nodes/{node}/qemu/{vmid}/snapshot/...`.

use super::qemu_config::VmConfig;
use super::{VmHandle, check_text};
use crate::error::Result;
use crate::request::{self, Request};
use crate::task::TaskHandle;
use crate::types::SnapshotName;
use std::collections::BTreeMap;

/// One entry of the snapshot list. The list includes a pseudo-entry named `current` (the live
/// state), see [`is_current`](Self::is_current).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Name (`current` for the live state).
    pub name: String,
    /// Description.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub description: Option<String>,
    /// Parent snapshot.
    #[serde(default)]
    pub parent: Option<String>,
    /// Creation time (Unix seconds).
    #[serde(default, deserialize_with = "crate::de::opt_i64")]
    pub snaptime: Option<i64>,
    /// RAM state included.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub vmstate: Option<bool>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl SnapshotInfo {
    /// Is this the `current` pseudo-entry?
    pub fn is_current(&self) -> bool {
        self.name == "current"
    }

    /// The validated name, or `None` for the `current` pseudo-entry.
    pub fn snapshot_name(&self) -> Option<SnapshotName> {
        self.name.parse().ok()
    }
}

/// The VM config saved in a snapshot (`GET .../snapshot/{snapname}/config`): the same typed
/// [`VmConfig`] as [`VmHandle::config`] (every key kept in its `raw` map), plus the snapshot's
/// own metadata.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// The VM config as it was when the snapshot was taken.
    pub config: VmConfig,
    /// Snapshot description (also in `config.description`).
    pub description: Option<String>,
    /// Parent snapshot.
    pub parent: Option<String>,
    /// Creation time (Unix seconds).
    pub snaptime: Option<i64>,
    /// Volume holding the saved RAM state, when the snapshot includes it.
    pub vmstate: Option<String>,
    /// `prepare` or `delete` while a snapshot task is in progress.
    pub snapstate: Option<String>,
    /// Machine type the VM was running with (snapshots with RAM state).
    pub runningmachine: Option<String>,
    /// CPU flags the VM was running with (snapshots with RAM state).
    pub runningcpu: Option<String>,
}

impl SnapshotConfig {
    /// Build from the key/value map PVE returns.
    pub fn from_map(map: BTreeMap<String, serde_json::Value>) -> Self {
        let config = VmConfig::from_map(map);
        let s = |k: &str| config.raw.get(k).cloned();
        SnapshotConfig {
            description: s("description"),
            parent: s("parent"),
            snaptime: config
                .raw
                .get("snaptime")
                .and_then(|v| v.trim().parse().ok()),
            vmstate: s("vmstate"),
            snapstate: s("snapstate"),
            runningmachine: s("runningmachine"),
            runningcpu: s("runningcpu"),
            config,
        }
    }

    /// Does the snapshot include the RAM state?
    pub fn has_vmstate(&self) -> bool {
        self.vmstate.as_deref().is_some_and(|v| !v.is_empty())
    }
}

impl<'de> serde::Deserialize<'de> for SnapshotConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        Ok(SnapshotConfig::from_map(map))
    }
}

/// Snapshot calls of one VM (`client.node(&n).qemu(id).snapshots()`).
#[derive(Debug, Clone)]
pub struct Snapshots {
    vm: VmHandle,
}

impl VmHandle {
    /// Snapshot calls.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots { vm: self.clone() }
    }
}

impl Snapshots {
    /// `GET .../snapshot` (includes `current`).
    pub async fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let (n, v) = self.vm.args();
        self.vm
            .client
            .call(Request::new(&request::SNAPSHOT_LIST, &[&n, &v]))
            .await
    }

    /// `POST .../snapshot` (a task). `vmstate` saves the RAM of a running VM.
    pub async fn create(
        &self,
        name: &SnapshotName,
        description: Option<&str>,
        vmstate: bool,
    ) -> Result<TaskHandle> {
        if let Some(d) = description {
            check_text("description", d, true)?;
        }
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_CREATE, &[&n, &v])
            .param("snapname", name.as_str())
            .opt("description", description)
            .opt("vmstate", vmstate.then_some(true));
        self.vm.client.call_task(req).await
    }

    /// `DELETE .../snapshot/{snapname}` (a task).
    pub async fn delete(&self, name: &SnapshotName, force: bool) -> Result<TaskHandle> {
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_DELETE, &[&n, &v, name.as_str()])
            .opt("force", force.then_some(true));
        self.vm.client.call_task(req).await
    }

    /// `POST .../snapshot/{snapname}/rollback` (a task); `start` starts the VM afterwards.
    pub async fn rollback(&self, name: &SnapshotName, start: bool) -> Result<TaskHandle> {
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_ROLLBACK, &[&n, &v, name.as_str()])
            .opt("start", start.then_some(true));
        self.vm.client.call_task(req).await
    }

    /// `GET .../snapshot/{snapname}/config`: the VM config saved in the snapshot, typed like
    /// [`VmHandle::config`] plus the snapshot metadata.
    pub async fn typed_config(&self, name: &SnapshotName) -> Result<SnapshotConfig> {
        self.get_config(name).await
    }

    /// `GET .../snapshot/{snapname}/config` as an untyped map; prefer
    /// [`typed_config`](Self::typed_config).
    pub async fn config(&self, name: &SnapshotName) -> Result<BTreeMap<String, serde_json::Value>> {
        self.get_config(name).await
    }

    async fn get_config<T: serde::de::DeserializeOwned>(&self, name: &SnapshotName) -> Result<T> {
        let (n, v) = self.vm.args();
        self.vm
            .client
            .call(Request::new(
                &request::SNAPSHOT_CONFIG_GET,
                &[&n, &v, name.as_str()],
            ))
            .await
    }

    /// `PUT .../snapshot/{snapname}/config`: change the description.
    pub async fn set_description(&self, name: &SnapshotName, description: &str) -> Result<()> {
        check_text("description", description, true)?;
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_CONFIG_PUT, &[&n, &v, name.as_str()])
            .param("description", description);
        self.vm.client.call_unit(req).await
    }
}
