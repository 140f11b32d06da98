//! Snapshots: `/nodes/{node}/qemu/{vmid}/snapshot/...`.

use super::{VmHandle, check_text};
use crate::error::Result;
use crate::request::{self, Request};
use crate::task::TaskHandle;
use crate::types::{SnapshotName, Upid};
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
        let upid: Upid = self.vm.client.call(req).await?;
        Ok(self.vm.task(upid))
    }

    /// `DELETE .../snapshot/{snapname}` (a task).
    pub async fn delete(&self, name: &SnapshotName, force: bool) -> Result<TaskHandle> {
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_DELETE, &[&n, &v, name.as_str()])
            .opt("force", force.then_some(true));
        let upid: Upid = self.vm.client.call(req).await?;
        Ok(self.vm.task(upid))
    }

    /// `POST .../snapshot/{snapname}/rollback` (a task); `start` starts the VM afterwards.
    pub async fn rollback(&self, name: &SnapshotName, start: bool) -> Result<TaskHandle> {
        let (n, v) = self.vm.args();
        let req = Request::new(&request::SNAPSHOT_ROLLBACK, &[&n, &v, name.as_str()])
            .opt("start", start.then_some(true));
        let upid: Upid = self.vm.client.call(req).await?;
        Ok(self.vm.task(upid))
    }

    /// `GET .../snapshot/{snapname}/config`: the VM config saved in the snapshot.
    pub async fn config(&self, name: &SnapshotName) -> Result<BTreeMap<String, serde_json::Value>> {
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
        let _: serde_json::Value = self.vm.client.call(req).await?;
        Ok(())
    }
}
