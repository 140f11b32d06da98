//! The thin async shell: [`ClientArea`] fetches what the pure core needs through
//! `proxmox-api`, asks the core, and carries out its plans.
//!
//! Every method takes the customer's [`Service`] and touches only that VM: vm-services' ids are
//! mapped to proxmox-api's newtypes here, at the boundary, and nothing else is addressed.

mod backup_ops;
mod basic;
mod exec;
mod firewall_ops;
mod fleet;
mod hub;
mod lease_ops;
mod reinstall_ops;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::{OffsetDateTime, UtcOffset};

use crate::console::ConsoleTokens;
use crate::error::Error;
use crate::ids::{ClusterName, NodeName, StorageId, VmId, VolumeId};
use crate::leases::WorkerId;
use crate::notify::Notifier;
use crate::permissions::{self, Access, Feature, VmState};
use crate::product::{Catalog, Product};
use crate::pve::VmConfig;
use crate::service::Service;
use crate::stores::{LeaseStore, OutcomeStore, PlanStore, ScheduleStore};

pub use backup_ops::{BackupList, BackupView, RestoreOutcome, Resumed, TickReport};
pub use basic::{
    ConsoleLink, ConsoleSession, IsoPage, PasswordReset, SnapshotList, SnapshotView, SweepReport,
};
pub use exec::{TaskProgress, TaskRef};
pub use firewall_ops::{CustomerRule, FirewallView};
pub use fleet::{Fleet, ServiceStatus};
pub use hub::{
    LiveUpdate, LiveView, LiveWatch, OverviewHub, OverviewUpdate, OverviewWatch, REFRESH,
    TickStats, resource_row, row_shape,
};
pub use lease_ops::ResumeReport;
pub use reinstall_ops::ReinstallOutcome;

/// Where `now` comes from; tests pass a clock they control.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: OffsetDateTime) -> Self {
        Self(Mutex::new(t))
    }

    /// Sets the time.
    pub fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves the time forward.
    pub fn advance(&self, d: time::Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds a [`ClientArea`]; everything but the client and catalog has a default.
#[derive(Debug)]
pub struct ClientAreaBuilder {
    client: pve_vps_api::Client,
    catalog: Catalog,
    plans: Option<Arc<dyn PlanStore>>,
    schedules: Option<Arc<dyn ScheduleStore>>,
    leases: Option<Arc<dyn LeaseStore>>,
    outcomes: Option<Arc<dyn OutcomeStore>>,
    worker: Option<WorkerId>,
    lease_ttl: Duration,
    cluster: ClusterName,
    notifier: Arc<dyn Notifier>,
    rdns: Option<Arc<dyn pve_vps_dns::ReverseDns>>,
    clock: Arc<dyn Clock>,
    offset: UtcOffset,
    lockout_probe: IpAddr,
    management_sources: Vec<ipnet::IpNet>,
    task_timeout: Duration,
    sqlite_path: Option<std::path::PathBuf>,
}

impl ClientAreaBuilder {
    /// Plans of interrupted restores and reinstalls (default: the SQLite store).
    pub fn plan_store(mut self, s: Arc<dyn PlanStore>) -> Self {
        self.plans = Some(s);
        self
    }

    /// Backup schedules (default: the SQLite store).
    pub fn schedule_store(mut self, s: Arc<dyn ScheduleStore>) -> Self {
        self.schedules = Some(s);
        self
    }

    /// Leases on shared work between workers (default: the SQLite store; several processes
    /// need a shared one: [`crate::stores::PgStore`] or one SQLite file).
    pub fn lease_store(mut self, s: Arc<dyn LeaseStore>) -> Self {
        self.leases = Some(s);
        self
    }

    /// How restores and reinstalls ended (default: the SQLite store).
    pub fn outcome_store(mut self, s: Arc<dyn OutcomeStore>) -> Self {
        self.outcomes = Some(s);
        self
    }

    /// Every store from one backend, e.g. a [`crate::stores::PgStore`] shared by all portal
    /// instances and scheduler workers.
    pub fn stores<S>(self, s: Arc<S>) -> Self
    where
        S: ScheduleStore + PlanStore + LeaseStore + OutcomeStore + 'static,
    {
        self.plan_store(s.clone())
            .schedule_store(s.clone())
            .lease_store(s.clone())
            .outcome_store(s)
    }

    /// This worker's name in leases (default: `worker-<pid>-<random>`). Name each scheduler
    /// process and portal instance so the logs and `InProgress` refusals say who holds what.
    pub fn worker(mut self, w: WorkerId) -> Self {
        self.worker = Some(w);
        self
    }

    /// How long a lease lasts without renewal (default 60 s; renewed every third of it while
    /// the work runs). A worker that dies is taken over this long after its last renewal.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.lease_ttl = d.max(Duration::from_millis(300));
        self
    }

    /// The cluster this client area serves (default `default`); services of another cluster
    /// are refused with [`Error::WrongCluster`] before any request.
    pub fn cluster(mut self, name: ClusterName) -> Self {
        self.cluster = name;
        self
    }

    /// The stores not set otherwise in one SQLite file (the default is an in-memory SQLite database).
    pub fn sqlite_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.sqlite_path = Some(path.into());
        self
    }

    /// Who tells the customer (default: [`crate::notify::LoggingNotifier`]).
    pub fn notifier(mut self, n: Arc<dyn Notifier>) -> Self {
        self.notifier = n;
        self
    }

    /// The reverse-DNS provider (without one, the rDNS calls answer `NotConfigured`).
    pub fn reverse_dns(mut self, r: Arc<dyn pve_vps_dns::ReverseDns>) -> Self {
        self.rdns = Some(r);
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, c: Arc<dyn Clock>) -> Self {
        self.clock = c;
        self
    }

    /// The operator's UTC offset for backup schedules (default UTC).
    pub fn schedule_offset(mut self, o: UtcOffset) -> Self {
        self.offset = o;
        self
    }

    /// The outside address the firewall lockout guard checks from (default `203.0.113.9`),
    /// used when no [`management_sources`](Self::management_sources) are set.
    pub fn lockout_probe(mut self, ip: IpAddr) -> Self {
        self.lockout_probe = ip;
        self
    }

    /// The addresses and networks customers manage their VMs from. The lockout guard refuses
    /// a change that makes a product management port unreachable from any address of any of
    /// them (a network is checked at every address where the firewall's answer can change).
    /// Empty (the default): the [`lockout_probe`](Self::lockout_probe) address alone.
    pub fn management_sources(mut self, sources: impl IntoIterator<Item = ipnet::IpNet>) -> Self {
        self.management_sources = sources.into_iter().collect();
        self
    }

    /// How long to wait for one PVE task (default 3 h: backups of large VMs).
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = d;
        self
    }

    /// Builds it.
    pub fn build(self) -> Result<ClientArea, Error> {
        let (plans, schedules, leases, outcomes) =
            match (self.plans, self.schedules, self.leases, self.outcomes) {
                (Some(p), Some(s), Some(l), Some(o)) => (p, s, l, o),
                (p, s, l, o) => {
                    let db = Arc::new(match &self.sqlite_path {
                        Some(path) => crate::stores::SqliteStore::open(path)?,
                        None => crate::stores::SqliteStore::open_in_memory()?,
                    });
                    (
                        p.unwrap_or_else(|| db.clone() as Arc<dyn PlanStore>),
                        s.unwrap_or_else(|| db.clone() as Arc<dyn ScheduleStore>),
                        l.unwrap_or_else(|| db.clone() as Arc<dyn LeaseStore>),
                        o.unwrap_or(db as Arc<dyn OutcomeStore>),
                    )
                }
            };
        let worker = match self.worker {
            Some(w) => w,
            None => WorkerId::random(&mut rand::rng()),
        };
        Ok(ClientArea {
            inner: Arc::new(Inner {
                client: self.client,
                catalog: self.catalog,
                plans,
                schedules,
                leases,
                outcomes,
                worker,
                lease_ttl: self.lease_ttl,
                cluster: self.cluster,
                notifier: self.notifier,
                rdns: self.rdns,
                clock: self.clock,
                offset: self.offset,
                lockout_sources: if self.management_sources.is_empty() {
                    vec![ipnet::IpNet::from(self.lockout_probe)]
                } else {
                    self.management_sources
                },
                task_timeout: self.task_timeout,
                tokens: ConsoleTokens::new(),
                busy: Mutex::new(HashMap::new()),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    client: pve_vps_api::Client,
    catalog: Catalog,
    plans: Arc<dyn PlanStore>,
    schedules: Arc<dyn ScheduleStore>,
    leases: Arc<dyn LeaseStore>,
    outcomes: Arc<dyn OutcomeStore>,
    worker: WorkerId,
    lease_ttl: Duration,
    cluster: ClusterName,
    notifier: Arc<dyn Notifier>,
    rdns: Option<Arc<dyn pve_vps_dns::ReverseDns>>,
    clock: Arc<dyn Clock>,
    offset: UtcOffset,
    lockout_sources: Vec<ipnet::IpNet>,
    task_timeout: Duration,
    tokens: ConsoleTokens,
    // Long operations running in this process, per VMID: refuses a second one at once.
    busy: Mutex<HashMap<VmId, &'static str>>,
}

/// The client-area facade the portal and the scheduler use. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientArea {
    inner: Arc<Inner>,
}

/// Holds a VM's "busy" mark while a long operation runs in this process.
#[derive(Debug)]
pub(crate) struct BusyGuard {
    inner: Arc<Inner>,
    vmid: VmId,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.vmid);
    }
}

/// What a VM looks like right now: state for permission checks and the parsed config.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) state: VmState,
    pub(crate) config: VmConfig,
}

impl ClientArea {
    /// Starts a builder from a client for one cluster and the product catalog.
    pub fn builder(client: pve_vps_api::Client, catalog: Catalog) -> ClientAreaBuilder {
        ClientAreaBuilder {
            client,
            catalog,
            plans: None,
            schedules: None,
            leases: None,
            outcomes: None,
            worker: None,
            lease_ttl: Duration::from_secs(60),
            cluster: ClusterName::default(),
            notifier: Arc::new(crate::notify::LoggingNotifier),
            rdns: None,
            clock: Arc::new(SystemClock),
            offset: UtcOffset::UTC,
            lockout_probe: IpAddr::from([203, 0, 113, 9]),
            management_sources: Vec::new(),
            task_timeout: Duration::from_secs(3 * 3600),
            sqlite_path: None,
        }
    }

    /// The proxmox-api client (one cluster).
    pub fn client(&self) -> &pve_vps_api::Client {
        &self.inner.client
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The schedule store.
    pub fn schedules(&self) -> &Arc<dyn ScheduleStore> {
        &self.inner.schedules
    }

    /// The plan store.
    pub fn plans(&self) -> &Arc<dyn PlanStore> {
        &self.inner.plans
    }

    /// The lease store.
    pub fn leases(&self) -> &Arc<dyn LeaseStore> {
        &self.inner.leases
    }

    /// The outcome store.
    pub fn outcome_store(&self) -> &Arc<dyn OutcomeStore> {
        &self.inner.outcomes
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// The cluster this client area serves.
    pub fn cluster_name(&self) -> &ClusterName {
        &self.inner.cluster
    }

    /// The product of a service; an unknown product refuses everything, and so does a service
    /// of another cluster (every operation passes here before its first request).
    pub(crate) fn product(&self, service: &Service) -> Result<&Product, Error> {
        self.check_cluster(service)?;
        self.inner.catalog.get(&service.product).ok_or_else(|| {
            Error::invalid("product", service.product.as_str(), "not in the catalog")
        })
    }

    /// The service's product, refusing a feature its package does not include (Access Denied
    /// needs no request).
    pub(crate) fn product_with(
        &self,
        service: &Service,
        feature: Feature,
    ) -> Result<&Product, Error> {
        let product = self.product(service)?;
        if !product.permissions.allows(feature) {
            return Err(Error::AccessDenied { feature });
        }
        Ok(product)
    }

    fn check_cluster(&self, service: &Service) -> Result<(), Error> {
        if service.cluster != self.inner.cluster {
            return Err(Error::WrongCluster {
                service: service.cluster.clone(),
                area: self.inner.cluster.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn vm(&self, service: &Service) -> Result<pve_vps_api::api::VmHandle, Error> {
        self.check_cluster(service)?;
        Ok(self
            .inner
            .client
            .node(&api_node(service.vm.node())?)
            .qemu(api_vmid(service.vmid())?))
    }

    pub(crate) fn node(&self, node: &NodeName) -> Result<pve_vps_api::api::NodeHandle, Error> {
        Ok(self.inner.client.node(&api_node(node)?))
    }

    /// Live state: one `status/current` and one `config` call.
    pub(crate) async fn live(&self, service: &Service) -> Result<Live, Error> {
        let vm = self.vm(service)?;
        let (status, config) = futures_util::future::try_join(
            async { vm.status().await.map_err(Error::pve("read vm status")) },
            async { vm.config().await.map_err(Error::pve("read vm config")) },
        )
        .await?;
        let config = VmConfig::from_map(config.raw);
        let lock = match status.lock.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => Some(l.parse()?),
            None => config.lock()?,
        };
        Ok(Live {
            state: VmState {
                lock,
                running: status.status == pve_vps_api::api::qemu_status::VmState::Running,
            },
            config,
        })
    }

    /// Live state only (one `status/current` call).
    pub(crate) async fn state(&self, service: &Service) -> Result<VmState, Error> {
        let st = self
            .vm(service)?
            .status()
            .await
            .map_err(Error::pve("read vm status"))?;
        Ok(VmState {
            lock: st
                .lock
                .as_deref()
                .filter(|l| !l.is_empty())
                .map(str::parse)
                .transpose()?,
            running: st.status == pve_vps_api::api::qemu_status::VmState::Running,
        })
    }

    /// Refuses when a long operation of this VM runs in this process or is stored unfinished.
    pub(crate) async fn check_not_busy(&self, service: &Service) -> Result<(), Error> {
        if let Some(op) = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&service.vmid())
        {
            return Err(Error::InProgress {
                operation: (*op).to_owned(),
            });
        }
        if let Some(p) = self
            .inner
            .plans
            .unfinished()
            .await?
            .into_iter()
            .find(|p| p.vm == service.vm)
        {
            return Err(Error::InProgress {
                operation: format!("unfinished plan `{}`", p.id),
            });
        }
        Ok(())
    }

    /// A new long-operation plan of `kind` (`restore`, `reinstall`) for the service, saved in the
    /// plan store before its first step runs, so it can be resumed, with this worker's lease.
    pub(crate) async fn save_new_plan(
        &self,
        kind: &str,
        service: &Service,
        plan: crate::reinstall::OperationPlan,
    ) -> Result<(crate::reinstall::StoredPlan, lease_ops::LeaseGuard), Error> {
        // Ids carry the second: a plan id that a lease still remembers (an earlier operation
        // in the same second) gets a suffix.
        let base = crate::reinstall::PlanId::generate(kind, service.vmid(), self.now())?;
        let mut id = base.clone();
        for n in 1..=20 {
            let key = crate::leases::LeaseKey::plan(&id);
            if self.inner.leases.lease(&key).await?.is_none() {
                break;
            }
            id = format!("{base}-{n}").parse()?;
        }
        let stored = crate::reinstall::StoredPlan {
            id,
            vm: service.vm.clone(),
            plan,
            done: 0,
        };
        // Leased before it is visible, so no scheduler resumes it while it runs here.
        let lease = self.plan_lease(&stored.id).await?;
        self.inner.plans.save(&stored).await?;
        Ok((stored, lease))
    }

    /// Marks the VM busy for a long operation; refused when already busy here.
    pub(crate) fn mark_busy(
        &self,
        service: &Service,
        operation: &'static str,
    ) -> Result<BusyGuard, Error> {
        let mut busy = self.inner.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(op) = busy.get(&service.vmid()) {
            return Err(Error::InProgress {
                operation: (*op).to_owned(),
            });
        }
        busy.insert(service.vmid(), operation);
        Ok(BusyGuard {
            inner: self.inner.clone(),
            vmid: service.vmid(),
        })
    }

    /// Whether `feature` is usable now (Allowed / Denied / Unavailable with the reason): one
    /// `status/current` call. A long operation of this process or an unfinished stored plan
    /// (restore, reinstall) counts as a lock named after it, so the VM-changing features are
    /// unavailable between its steps too.
    pub async fn access(&self, service: &Service, feature: Feature) -> Result<Access, Error> {
        let product = self.product(service)?;
        let state = self.state_with_operations(service).await?;
        Ok(permissions::check(product, feature, &state))
    }

    /// Every feature with its access, in menu order (for dimming buttons): one API call.
    pub async fn access_all(&self, service: &Service) -> Result<Vec<(Feature, Access)>, Error> {
        let product = self.product(service)?;
        let state = self.state_with_operations(service).await?;
        Ok(permissions::check_all(product, &state))
    }

    async fn state_with_operations(&self, service: &Service) -> Result<VmState, Error> {
        let mut state = self.state(service).await?;
        if state.lock.is_none()
            && let Err(Error::InProgress { operation }) = self.check_not_busy(service).await
        {
            let name = if operation.contains("reinstall") {
                "reinstall"
            } else if operation.contains("restore") {
                "restore"
            } else {
                "operation"
            };
            state.lock = Some(crate::pve::LockKind::Other(name.to_owned()));
        }
        Ok(state)
    }

    /// Checks permission and lock on live state only (one `status/current` call).
    pub(crate) async fn require_state(
        &self,
        service: &Service,
        feature: Feature,
    ) -> Result<VmState, Error> {
        let product = self.product_with(service, feature)?;
        let state = self.state(service).await?;
        permissions::require(product, feature, &state)?;
        Ok(state)
    }

    /// Checks permission and lock on live state and returns it with the config.
    pub(crate) async fn require(&self, service: &Service, feature: Feature) -> Result<Live, Error> {
        let product = self.product_with(service, feature)?;
        let live = self.live(service).await?;
        permissions::require(product, feature, &live.state)?;
        Ok(live)
    }
}

pub(crate) fn api_vmid(v: VmId) -> Result<pve_vps_api::VmId, Error> {
    pve_vps_api::VmId::new(v.get())
        .map_err(|e| Error::invalid("vmid", v.to_string(), e.to_string()))
}

pub(crate) fn api_node(n: &NodeName) -> Result<pve_vps_api::NodeName, Error> {
    n.as_str()
        .parse()
        .map_err(|e: pve_vps_api::Error| Error::invalid("node name", n.as_str(), e.to_string()))
}

pub(crate) fn api_storage(s: &StorageId) -> Result<pve_vps_api::StorageId, Error> {
    s.as_str()
        .parse()
        .map_err(|e: pve_vps_api::Error| Error::invalid("storage id", s.as_str(), e.to_string()))
}

pub(crate) fn api_volume(v: &VolumeId) -> Result<pve_vps_api::VolumeId, Error> {
    v.to_string()
        .parse()
        .map_err(|e: pve_vps_api::Error| Error::invalid("volume id", v.to_string(), e.to_string()))
}

pub(crate) fn api_snapshot(
    n: &crate::snapshots::SnapshotName,
) -> Result<pve_vps_api::SnapshotName, Error> {
    n.as_str()
        .parse()
        .map_err(|e: pve_vps_api::Error| Error::invalid("snapshot name", n.as_str(), e.to_string()))
}
