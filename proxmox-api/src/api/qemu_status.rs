//! Power state: `/nodes/{node}/qemu/{vmid}/status/*`.

use super::VmHandle;
use crate::error::Result;
use crate::macros::lenient_enum;
use crate::request::{self, Request};
use crate::task::TaskHandle;

lenient_enum! {
    /// Guest power state.
    pub enum VmState {
        /// Running.
        Running => "running",
        /// Stopped.
        Stopped => "stopped",
    }
}

/// `GET .../status/current`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct VmStatus {
    /// Power state.
    pub status: VmState,
    /// QMP status (`running`, `paused`, `prelaunch`, ...).
    #[serde(default)]
    pub qmpstatus: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub name: Option<String>,
    /// CPU usage.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub cpu: Option<f64>,
    /// Number of CPUs.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub cpus: Option<f64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub mem: Option<u64>,
    /// Memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxmem: Option<u64>,
    /// Disk size, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Uptime, seconds.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub uptime: Option<u64>,
    /// QEMU process id.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub pid: Option<u64>,
    /// Lock held, if any.
    #[serde(default)]
    pub lock: Option<String>,
    /// Guest agent enabled in the config.
    #[serde(default, deserialize_with = "crate::de::opt_bool")]
    pub agent: Option<bool>,
    /// Network in, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub netin: Option<u64>,
    /// Network out, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub netout: Option<u64>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<String>,
    /// Is a template.
    #[serde(default, deserialize_with = "crate::de::bool")]
    pub template: bool,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Options of a clean shutdown.
#[derive(Debug, Clone, Default)]
pub struct ShutdownOptions {
    timeout: Option<u64>,
    force_stop: Option<bool>,
}

impl ShutdownOptions {
    /// Defaults (PVE waits its default time, does not force).
    pub fn new() -> Self {
        Self::default()
    }
    /// Seconds to wait for the guest.
    pub fn timeout(mut self, secs: u64) -> Self {
        self.timeout = Some(secs);
        self
    }
    /// Stop hard when the timeout expires.
    pub fn force_stop(mut self, yes: bool) -> Self {
        self.force_stop = Some(yes);
        self
    }
}

impl VmHandle {
    /// `GET .../status/current`.
    pub async fn status(&self) -> Result<VmStatus> {
        let (n, v) = self.args();
        self.client
            .call(Request::new(&request::QEMU_STATUS, &[&n, &v]))
            .await
    }

    /// `POST .../status/start` (a task).
    pub async fn start(&self) -> Result<TaskHandle> {
        let (n, v) = self.args();
        self.client
            .call_task(Request::new(&request::QEMU_START, &[&n, &v]))
            .await
    }

    /// `POST .../status/shutdown` (a task): ACPI shutdown.
    pub async fn shutdown(&self, opts: &ShutdownOptions) -> Result<TaskHandle> {
        let (n, v) = self.args();
        let req = Request::new(&request::QEMU_SHUTDOWN, &[&n, &v])
            .opt("timeout", opts.timeout)
            .opt("forceStop", opts.force_stop);
        self.client.call_task(req).await
    }

    /// `POST .../status/stop` (a task): hard stop.
    pub async fn stop(&self) -> Result<TaskHandle> {
        let (n, v) = self.args();
        self.client
            .call_task(Request::new(&request::QEMU_STOP, &[&n, &v]))
            .await
    }

    /// `POST .../status/reboot` (a task), waiting at most `timeout` seconds for the shutdown.
    pub async fn reboot(&self, timeout: Option<u64>) -> Result<TaskHandle> {
        let (n, v) = self.args();
        self.client
            .call_task(Request::new(&request::QEMU_REBOOT, &[&n, &v]).opt("timeout", timeout))
            .await
    }

    /// `POST .../status/reset` (a task `qmreset`): hard reset, like pressing the reset
    /// button. The guest OS gets no chance to shut down; unsaved data in the guest is lost.
    /// Use [`reboot`](Self::reboot) for a clean restart.
    ///
    /// FACT (qemu-server, PVE/API2/Qemu.pm `vm_reset`): the call forks a `qmreset` worker
    /// and answers its UPID; it fails with `VM <vmid> not running` on a stopped guest.
    pub async fn reset(&self) -> Result<TaskHandle> {
        let (n, v) = self.args();
        self.client
            .call_task(Request::new(&request::QEMU_RESET, &[&n, &v]))
            .await
    }
}
