//! Task listing: `GET /nodes/{node}/tasks`.

use super::NodeHandle;
use crate::error::Result;
use crate::request::{self, Request};
use crate::types::VmId;

/// One entry of the task list.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct TaskListItem {
    /// Task id.
    pub upid: String,
    /// Worker type.
    #[serde(rename = "type")]
    pub worker_type: String,
    /// Worker id.
    #[serde(default)]
    pub id: Option<String>,
    /// User.
    pub user: String,
    /// Start time (Unix seconds).
    #[serde(default, deserialize_with = "crate::de::opt_i64")]
    pub starttime: Option<i64>,
    /// End time (Unix seconds), once finished.
    #[serde(default, deserialize_with = "crate::de::opt_i64")]
    pub endtime: Option<i64>,
    /// Exit status once finished (`OK`, `WARNINGS: N`, error text).
    #[serde(default)]
    pub status: Option<String>,
}

/// Filter for [`NodeHandle::tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    vmid: Option<VmId>,
    limit: Option<u64>,
    errors: Option<bool>,
    typefilter: Option<String>,
}

impl TaskFilter {
    /// No filter.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only tasks of this guest.
    pub fn vmid(mut self, v: VmId) -> Self {
        self.vmid = Some(v);
        self
    }
    /// At most `n` entries.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
    /// Only failed tasks.
    pub fn errors_only(mut self, yes: bool) -> Self {
        self.errors = Some(yes);
        self
    }
    /// Only this worker type (`vzdump`, `qmstart`, ...).
    pub fn worker_type(mut self, t: &str) -> crate::Result<Self> {
        super::check_text("worker type", t, false)?;
        self.typefilter = Some(t.to_owned());
        Ok(self)
    }
}

impl NodeHandle {
    /// `GET /nodes/{node}/tasks`.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskListItem>> {
        let node = self.node.to_string();
        let req = Request::new(&request::TASK_LIST, &[&node])
            .opt("vmid", filter.vmid)
            .opt("limit", filter.limit)
            .opt("errors", filter.errors)
            .opt("typefilter", filter.typefilter.as_deref());
        self.client.call(req).await
    }
}
