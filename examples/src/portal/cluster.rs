//! The portal's thin shell over the cluster: it fetches what a decision of `vm-services`' pure
//! core needs and carries out the plan the core returns.
//!
//! This is interim glue until `vm-services` ships its async executor facade; it holds no domain
//! rule of its own (permissions, quotas, names, validations all come from `vm-services`). It adds
//! the two things a portal with many customers needs: a short-lived cache of
//! `/cluster/resources` and of VM configs shared by every customer, refreshed once for everyone
//! (single flight), and a count of the API calls it makes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proxmox_api::api::cluster::{ClusterResource, ResourceFilter};
use proxmox_api::{Client, TaskHandle};
use tokio::sync::Mutex;
use vm_services::permissions::VmState;
use vm_services::pve::VmConfig;
use vm_services::service::Service;

/// How long the shared `/cluster/resources` answer is reused.
pub const RESOURCES_TTL: Duration = Duration::from_secs(2);
/// The longest a VM config is reused. Within it, a config is fetched again as soon as the VM's
/// resource row changes shape (sizes, name, status, lock: what changes with the config), and
/// actions through the portal invalidate it at once.
pub const CONFIG_TTL: Duration = Duration::from_secs(600);

/// A cached config: when it was read, the row shape it was read for, the config.
type CachedConfig = (Instant, String, Arc<VmConfig>);

/// An error of the shell: the cluster could not be reached or refused, or the core refused.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The cluster answered with an error or could not be reached.
    #[error(transparent)]
    Api(#[from] proxmox_api::Error),
    /// The domain core refused (permission, lock, quota, invalid input).
    #[error(transparent)]
    Domain(#[from] vm_services::Error),
    /// The VM is not in the cluster's resource list.
    #[error("the vm is not in the cluster's resource list")]
    Missing,
}

impl ShellError {
    /// Whether the cluster itself is the problem ("Something went wrong").
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Api(_) | Self::Missing)
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
    pub tls: proxmox_api::Tls,
    /// Console login, if configured.
    pub console_login: Option<ConsoleLogin>,
    resources: Mutex<Option<(Instant, Arc<Vec<ClusterResource>>)>>,
    configs: Mutex<HashMap<u32, CachedConfig>>,
    calls: AtomicU64,
}

/// What the live panel needs about a VM.
#[derive(Debug, Clone)]
pub struct Live {
    /// The `/cluster/resources` row.
    pub row: ClusterResource,
    /// The VM config.
    pub config: Arc<VmConfig>,
    /// State for permission checks.
    pub state: VmState,
}

impl Cluster {
    /// Wraps a client.
    pub fn new(
        client: Client,
        base_url: String,
        tls: proxmox_api::Tls,
        console_login: Option<ConsoleLogin>,
    ) -> Self {
        Self {
            client,
            base_url,
            tls,
            console_login,
            resources: Mutex::new(None),
            configs: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// API calls made so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts one API call.
    pub fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The shared resource list, refreshed at most every [`RESOURCES_TTL`], once for everyone.
    pub async fn resources(&self) -> Result<Arc<Vec<ClusterResource>>, ShellError> {
        let mut guard = self.resources.lock().await;
        if let Some((at, list)) = guard.as_ref()
            && at.elapsed() < RESOURCES_TTL
        {
            return Ok(list.clone());
        }
        self.count();
        let list = Arc::new(
            self.client
                .cluster_resources(Some(ResourceFilter::Vm))
                .await?,
        );
        *guard = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The VM config, reused while the VM's resource row keeps its shape (at most
    /// [`CONFIG_TTL`]).
    async fn config(
        &self,
        service: &Service,
        row: &ClusterResource,
    ) -> Result<Arc<VmConfig>, ShellError> {
        let vmid = service.vmid().get();
        let now_shape = vm_services::shell::row_shape(row);
        if let Some((at, sh, c)) = self.configs.lock().await.get(&vmid)
            && at.elapsed() < CONFIG_TTL
            && *sh == now_shape
        {
            return Ok(c.clone());
        }
        self.count();
        let cfg = self.vm(service)?.config().await?;
        let cfg: Arc<VmConfig> = Arc::new(cfg.raw.into_iter().collect());
        self.configs
            .lock()
            .await
            .insert(vmid, (Instant::now(), now_shape, cfg.clone()));
        Ok(cfg)
    }

    /// Forgets cached state after an action, so the next read is fresh.
    pub async fn invalidate(&self, service: &Service) {
        self.configs.lock().await.remove(&service.vmid().get());
        *self.resources.lock().await = None;
    }

    /// The resource row, config and permission state of a VM.
    pub async fn live(&self, service: &Service) -> Result<Live, ShellError> {
        let resources = self.resources().await?;
        let row = resources
            .iter()
            .find(|r| r.vmid == Some(u64::from(service.vmid().get())))
            .cloned()
            .ok_or(ShellError::Missing)?;
        let config = self.config(service, &row).await?;
        // `/cluster/resources` carries the lock too, so the live state is as fresh as the row.
        let lock = match row.lock.as_deref() {
            Some(l) => Some(l.parse()?),
            None => None,
        };
        let state = VmState {
            lock,
            running: row.status.as_deref() == Some("running"),
        };
        Ok(Live { row, config, state })
    }

    /// The API handle of a service's VM.
    pub fn vm(&self, service: &Service) -> Result<proxmox_api::api::VmHandle, ShellError> {
        let node: proxmox_api::NodeName = service
            .vm
            .node()
            .as_str()
            .parse()
            .map_err(ShellError::Api)?;
        let vmid = proxmox_api::VmId::new(service.vmid().get()).map_err(ShellError::Api)?;
        Ok(self.client.node(&node).qemu(vmid))
    }

    /// The API handle of a service's node.
    pub fn node(&self, service: &Service) -> Result<proxmox_api::api::NodeHandle, ShellError> {
        let node: proxmox_api::NodeName = service.vm.node().as_str().parse()?;
        Ok(self.client.node(&node))
    }

    /// A task handle for a UPID string (progress polling).
    pub fn task(&self, upid: &str) -> Result<TaskHandle, ShellError> {
        Ok(self.client.task(upid.parse()?))
    }
}
