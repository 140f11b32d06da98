//! The portal's thin shell over the cluster: it fetches what a decision of `vm-services`' pure
//! core needs and carries out the plan the core returns.
//!
//! It holds no domain rule of its own (permissions, quotas, names, validations all come from
//! `vm-services`) and no cache: the live panel reads `vm-services`' `OverviewHub` (one
//! `/cluster/resources` per refresh shared by every customer). It counts the API calls the
//! portal makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pve_vps_api::{Client, TaskHandle};
use pve_vps_services::ids::ClusterName;
use pve_vps_services::overview::Overview;
use pve_vps_services::permissions::VmState;
use pve_vps_services::service::Service;

/// How often the live panel's overview hub refreshes: at most one `/cluster/resources` call per
/// 2 seconds, shared by every customer; a VM's config is read again only when its row changes
/// shape or an action through the portal invalidated it.
pub const LIVE_REFRESH: Duration = Duration::from_secs(2);

/// An error of the shell: the cluster could not be reached or refused, or the core refused.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The cluster answered with an error or could not be reached.
    #[error(transparent)]
    Api(#[from] pve_vps_api::Error),
    /// The domain core refused (permission, lock, quota, invalid input).
    #[error(transparent)]
    Domain(#[from] pve_vps_services::Error),
    /// The VM is not in the cluster's resource list.
    #[error("the vm is not in the cluster's resource list")]
    Missing,
    /// The live view could not be read (the overview hub's reason).
    #[error("{0}")]
    Live(String),
    /// The service's cluster cannot be reached or did not answer in time: its services are
    /// temporarily unavailable while the other clusters' work.
    #[error("cluster `{cluster}` is unavailable: {reason}")]
    Unavailable {
        /// The cluster.
        cluster: ClusterName,
        /// Why, short and safe to show (no secret, no backtrace).
        reason: String,
    },
}

impl ShellError {
    /// Whether the cluster itself is the problem ("Something went wrong").
    pub fn is_cluster(&self) -> bool {
        matches!(
            self,
            Self::Api(_) | Self::Missing | Self::Live(_) | Self::Unavailable { .. }
        )
    }
}

/// How `vm-services`' overview hub words a failed `/cluster/resources` listing: the whole
/// cluster could not be read (connection refused, TLS, timeouts, 5xx after retries).
const UNREACHABLE: &str = "cannot reach the cluster";

/// Whether a live view's failure is its whole cluster failing (not one VM missing).
pub fn is_unreachable(reason: &str) -> bool {
    reason.starts_with(UNREACHABLE)
}

/// A live view's failure as a [`ShellError`]: [`ShellError::Unavailable`] when the cluster
/// as a whole could not be read (the reason cut to its first line, 160 characters), else
/// [`ShellError::Live`].
pub fn classify_live_failure(cluster: &ClusterName, reason: String) -> ShellError {
    if !is_unreachable(&reason) {
        return ShellError::Live(reason);
    }
    let first = reason.lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(160).collect();
    if short.len() < first.len() {
        short.push('…');
    }
    ShellError::Unavailable {
        cluster: cluster.clone(),
        reason: short,
    }
}

/// Credentials the console relay logs in with (PVE's vncwebsocket needs a ticket session).
#[derive(Clone)]
pub struct ConsoleLogin {
    /// `user@realm`.
    pub userid: String,
    /// The password.
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for ConsoleLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleLogin")
            .field("userid", &self.userid)
            .finish_non_exhaustive()
    }
}

/// The cluster as the portal sees it.
#[derive(Debug)]
pub struct Cluster {
    /// The typed API client.
    pub client: Client,
    /// Base URL (`https://host:port`).
    pub base_url: String,
    /// How the cluster's certificate is checked (the console relay connects the same way).
    pub tls: pve_vps_api::Tls,
    /// Console login, if configured.
    pub console_login: Option<ConsoleLogin>,
    calls: AtomicU64,
}

/// What the live panel needs about a VM (from `vm-services`' `OverviewHub`).
#[derive(Debug, Clone)]
pub struct Live {
    /// The overview page.
    pub overview: Overview,
    /// State for permission checks (the row's lock, or a restore/reinstall this portal runs).
    pub state: VmState,
}

impl Cluster {
    /// Wraps a client.
    pub fn new(
        client: Client,
        base_url: String,
        tls: pve_vps_api::Tls,
        console_login: Option<ConsoleLogin>,
    ) -> Self {
        Self {
            client,
            base_url,
            tls,
            console_login,
            calls: AtomicU64::new(0),
        }
    }

    /// API calls made so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts one API call.
    pub fn count(&self) {
        self.count_n(1);
    }

    /// Counts `n` API calls (an overview hub tick's).
    pub fn count_n(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// The API handle of a service's VM.
    pub fn vm(&self, service: &Service) -> Result<pve_vps_api::api::VmHandle, ShellError> {
        let node: pve_vps_api::NodeName = service
            .vm
            .node()
            .as_str()
            .parse()
            .map_err(ShellError::Api)?;
        let vmid = pve_vps_api::VmId::new(service.vmid().get()).map_err(ShellError::Api)?;
        Ok(self.client.node(&node).qemu(vmid))
    }

    /// The API handle of a service's node.
    pub fn node(&self, service: &Service) -> Result<pve_vps_api::api::NodeHandle, ShellError> {
        let node: pve_vps_api::NodeName = service.vm.node().as_str().parse()?;
        Ok(self.client.node(&node))
    }

    /// A task handle for a UPID string (progress polling).
    pub fn task(&self, upid: &str) -> Result<TaskHandle, ShellError> {
        Ok(self.client.task(upid.parse()?))
    }
}
