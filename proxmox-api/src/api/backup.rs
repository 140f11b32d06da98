//! Backups (`POST /nodes/{node}/vzdump`) and storage (`/nodes/{node}/storage/...`).

use super::{NodeHandle, check_text};
use crate::error::{Error, Result};
use crate::macros::wire_enum;
use crate::request::{self, Request};
use crate::task::TaskHandle;
use crate::types::{StorageId, Upid, VmId, VolumeId};

wire_enum! {
    /// Backup mode.
    pub enum BackupMode {
        /// Live backup.
        Snapshot => "snapshot",
        /// Suspend during the backup.
        Suspend => "suspend",
        /// Stop during the backup.
        Stop => "stop",
    }
}

wire_enum! {
    /// Backup compression.
    pub enum Compression {
        /// No compression.
        None => "0",
        /// zstd
        Zstd => "zstd",
        /// gzip
        Gzip => "gzip",
        /// lzo
        Lzo => "lzo",
    }
}

/// `POST /nodes/{node}/vzdump`.
#[derive(Debug, Clone)]
pub struct VzdumpRequest {
    vmids: Vec<VmId>,
    storage: Option<StorageId>,
    mode: Option<BackupMode>,
    compress: Option<Compression>,
    notes_template: Option<String>,
    protected: Option<bool>,
}

impl VzdumpRequest {
    /// Back up `vmid`.
    pub fn new(vmid: VmId) -> Self {
        VzdumpRequest {
            vmids: vec![vmid],
            storage: None,
            mode: None,
            compress: None,
            notes_template: None,
            protected: None,
        }
    }
    /// Also back up `vmid` in the same job.
    pub fn and(mut self, vmid: VmId) -> Self {
        self.vmids.push(vmid);
        self
    }
    /// Target storage.
    pub fn storage(mut self, s: StorageId) -> Self {
        self.storage = Some(s);
        self
    }
    /// Mode.
    pub fn mode(mut self, m: BackupMode) -> Self {
        self.mode = Some(m);
        self
    }
    /// Compression.
    pub fn compress(mut self, c: Compression) -> Self {
        self.compress = Some(c);
        self
    }
    /// Notes template (`{{guestname}}`, `{{vmid}}`, ...).
    pub fn notes_template(mut self, t: &str) -> Result<Self> {
        check_text("notes template", t, true)?;
        self.notes_template = Some(t.to_owned());
        Ok(self)
    }
    /// Mark the backup protected (not pruned).
    pub fn protected(mut self, yes: bool) -> Self {
        self.protected = Some(yes);
        self
    }
}

/// One entry of `GET /nodes/{node}/storage`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct StorageInfo {
    /// Storage id.
    pub storage: String,
    /// Plugin type (`dir`, `lvmthin`, `pbs`, ...).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Allowed content types (comma separated).
    #[serde(default)]
    pub content: Option<String>,
    /// Active.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub active: Option<bool>,
    /// Enabled.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub enabled: Option<bool>,
    /// Shared between nodes.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub shared: Option<bool>,
    /// Total bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub total: Option<u64>,
    /// Used bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub used: Option<u64>,
    /// Available bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub avail: Option<u64>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One entry of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct ContentItem {
    /// Volume id (kept as text: listings may hold names this crate would not send).
    pub volid: String,
    /// Size in bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub size: Option<u64>,
    /// Creation time (Unix seconds).
    #[serde(default, deserialize_with = "crate::de::opt_i64")]
    pub ctime: Option<i64>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Protected from pruning.
    #[serde(default, deserialize_with = "crate::de::bool")]
    pub protected: bool,
    /// Owner guest.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub vmid: Option<u64>,
    /// Format (`vma.zst`, `raw`, `qcow2`, `iso`, ...).
    #[serde(default)]
    pub format: Option<String>,
    /// Content type (`backup`, `images`, `iso`, ...).
    #[serde(default)]
    pub content: Option<String>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ContentItem {
    /// The volume id, validated.
    pub fn volume_id(&self) -> Result<VolumeId> {
        self.volid.parse()
    }
}

fn valid_content(c: &str) -> Result<()> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(Error::invalid(
            "content type",
            c,
            "must be like `backup`, `images`, `iso`",
        ));
    }
    Ok(())
}

/// Calls on one storage of one node (`client.node(&n).storage(&id)`).
#[derive(Debug, Clone)]
pub struct StorageHandle {
    node: NodeHandle,
    storage: StorageId,
}

impl NodeHandle {
    /// `POST /nodes/{node}/vzdump` (a task). The archive's volid appears in the task log and in
    /// the storage content listing.
    pub async fn vzdump(&self, req: &VzdumpRequest) -> Result<TaskHandle> {
        let node = self.node.to_string();
        let ids: Vec<String> = req.vmids.iter().map(ToString::to_string).collect();
        let r = Request::new(&request::VZDUMP, &[&node])
            .param("vmid", ids.join(","))
            .opt("storage", req.storage.as_ref().map(|s| s.to_string()))
            .opt("mode", req.mode.map(|m| m.as_str()))
            .opt("compress", req.compress.map(|c| c.as_str()))
            .opt("notes-template", req.notes_template.as_deref())
            .opt("protected", req.protected);
        self.client.call_task(r).await
    }

    /// `GET /nodes/{node}/storage`, optionally only storages allowing `content`.
    pub async fn storages(&self, content: Option<&str>) -> Result<Vec<StorageInfo>> {
        if let Some(c) = content {
            valid_content(c)?;
        }
        let node = self.node.to_string();
        self.client
            .call(Request::new(&request::STORAGE_LIST, &[&node]).opt("content", content))
            .await
    }

    /// Calls on storage `storage` of this node.
    pub fn storage(&self, storage: &StorageId) -> StorageHandle {
        StorageHandle {
            node: self.clone(),
            storage: storage.clone(),
        }
    }
}

impl StorageHandle {
    /// `GET .../content[?content=&vmid=]`.
    pub async fn content(
        &self,
        content: Option<&str>,
        vmid: Option<VmId>,
    ) -> Result<Vec<ContentItem>> {
        if let Some(c) = content {
            valid_content(c)?;
        }
        let (n, s) = (self.node.node.to_string(), self.storage.to_string());
        let req = Request::new(&request::STORAGE_CONTENT, &[&n, &s])
            .opt("content", content)
            .opt("vmid", vmid);
        self.node.client.call(req).await
    }

    fn check_volume(&self, volume: &VolumeId) -> Result<()> {
        if volume.storage() != self.storage {
            return Err(Error::invalid(
                "volume id",
                volume.to_string(),
                "belongs to another storage",
            ));
        }
        Ok(())
    }

    /// `DELETE .../content/{volume}`; a task on PVE versions that run it as one.
    pub async fn delete_volume(&self, volume: &VolumeId) -> Result<Option<TaskHandle>> {
        self.check_volume(volume)?;
        let (n, s) = (self.node.node.to_string(), self.storage.to_string());
        let req = Request::new(&request::STORAGE_CONTENT_DELETE, &[&n, &s, volume.as_str()]);
        let upid: Option<Upid> = self.node.client.call(req).await?;
        Ok(upid.map(|u| TaskHandle::new(self.node.client.clone(), u)))
    }

    /// `PUT .../content/{volume}`: set notes and/or the protected flag.
    pub async fn update_volume(
        &self,
        volume: &VolumeId,
        notes: Option<&str>,
        protected: Option<bool>,
    ) -> Result<()> {
        self.check_volume(volume)?;
        if let Some(t) = notes {
            check_text("notes", t, true)?;
        }
        let (n, s) = (self.node.node.to_string(), self.storage.to_string());
        let req = Request::new(&request::STORAGE_CONTENT_UPDATE, &[&n, &s, volume.as_str()])
            .opt("notes", notes)
            .opt("protected", protected);
        self.node.client.call_unit(req).await
    }
}
