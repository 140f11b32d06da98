//! The overview cache: any number of watchers, one `/cluster/resources` call per tick, and a
//! VM's config fetched again only when its resources row says the VM changed.
//!
//! Besides the overview ([`OverviewHub::watch`]) a watcher can ask for the live panel
//! ([`OverviewHub::watch_live`]): the same overview plus the VM's state (running, lock) from the
//! same row and the per-feature access computed by [`permissions::check_all`] from the product
//! and that state, at no extra API call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::ClientArea;
use crate::overview::{self, Overview, ResourceRow};
use crate::permissions::{self, Access, Feature, VmState};
use crate::pve::VmConfig;
use crate::service::{Service, VmRef};
use pve_vps_api::api::cluster::ClusterResource;

// Where a tick's rows came from.
enum Listing {
    Fresh(Arc<Vec<ClusterResource>>),
    Reused,
    Failed,
}

/// What a watcher sees: the latest overview, or why there is none ("Something went wrong").
#[derive(Debug, Clone, PartialEq)]
pub enum OverviewUpdate {
    /// No tick has run yet.
    Pending,
    /// The overview of the last tick.
    Ready(Box<Overview>),
    /// The VM is gone or the cluster could not be reached.
    Failed(String),
}

/// A watcher: `changed().await`, then `borrow()`. Dropping it stops watching.
pub type OverviewWatch = watch::Receiver<OverviewUpdate>;

/// What the live panel shows about a VM, from one `/cluster/resources` row and the cached config.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveView {
    /// The overview page.
    pub overview: Overview,
    /// Running or not, and the lock if any, as the row says.
    pub state: VmState,
    /// Every feature's access for the product in that state ([`permissions::check_all`]).
    pub access: Vec<(Feature, Access)>,
}

/// What a live watcher sees: the latest [`LiveView`], or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    /// No tick has run for this VM yet.
    Pending,
    /// The live view of the last tick.
    Ready(Box<LiveView>),
    /// The VM is gone, the cluster could not be reached, or its row could not be read.
    Failed(String),
}

/// A live watcher: `changed().await`, then `borrow()`. Dropping it stops watching.
pub type LiveWatch = watch::Receiver<LiveUpdate>;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    /// API requests sent (1 `/cluster/resources` + configs that changed).
    pub requests: usize,
    /// VMs with at least one watcher.
    pub vms: usize,
    /// Watchers served.
    pub watchers: usize,
}

#[derive(Debug)]
struct Watched {
    service: Service,
    tx: watch::Sender<OverviewUpdate>,
    live: watch::Sender<LiveUpdate>,
    // Watched or invalidated since the last publish: `tick_if_due` ticks for it.
    due: bool,
    // What the config was fetched for; a different row shape refetches it.
    shape: Option<String>,
    config: Option<VmConfig>,
}

/// Serves overviews to many watchers of one cluster from one `/cluster/resources` call per
/// tick (every [`REFRESH`], 7 seconds, when [`OverviewHub::spawn`]ed, or the interval given to
/// [`OverviewHub::with_interval`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct OverviewHub {
    area: ClientArea,
    interval: Duration,
    // When the last tick that saw no invalidation started (`None`: none yet, or invalidated).
    fresh: Arc<Mutex<Freshness>>,
    vms: Arc<Mutex<HashMap<VmRef, Watched>>>,
    // One tick at a time: a caller arriving while one runs waits for it and shares its
    // result instead of sending requests of its own (coalescing).
    ticking: Arc<tokio::sync::Mutex<TickStats>>,
}

/// The client area's refresh period.
pub const REFRESH: Duration = Duration::from_secs(7);

/// The fields of a `/cluster/resources` row that only change when the VM's config does (or a
/// lock/status change may have): a config cached for one shape is fetched again on another.
pub fn row_shape(r: &pve_vps_api::api::cluster::ClusterResource) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        r.maxcpu, r.maxmem, r.maxdisk, r.lock, r.name, r.status
    )
}

/// The overview's fields of a `/cluster/resources` row (missing numbers read as 0).
pub fn resource_row(r: &pve_vps_api::api::cluster::ClusterResource) -> ResourceRow {
    ResourceRow {
        status: r.status.clone().unwrap_or_default(),
        uptime: r.uptime.unwrap_or(0),
        cpu: r.cpu.unwrap_or(0.0),
        maxcpu: r.maxcpu.unwrap_or(0.0),
        mem: r.mem.unwrap_or(0),
        maxmem: r.maxmem.unwrap_or(0),
    }
}

#[derive(Debug, Default)]
struct Freshness {
    last: Option<Instant>,
    // The listing of that tick: VMs watched since are served from it while it is fresh.
    rows: Option<Arc<Vec<ClusterResource>>>,
    // Bumped by every invalidation: a tick that overlapped one does not count as fresh.
    epoch: u64,
}

impl OverviewHub {
    /// A hub over the client area's cluster, refreshed every [`REFRESH`] (7 s).
    pub fn new(area: ClientArea) -> Self {
        Self::with_interval(area, REFRESH)
    }

    /// A hub refreshed every `interval` ([`OverviewHub::spawn`], [`OverviewHub::tick_if_due`]).
    pub fn with_interval(area: ClientArea, interval: Duration) -> Self {
        Self {
            area,
            interval,
            fresh: Arc::new(Mutex::new(Freshness::default())),
            vms: Arc::new(Mutex::new(HashMap::new())),
            ticking: Arc::new(tokio::sync::Mutex::new(TickStats::default())),
        }
    }

    /// The refresh interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn entry<R>(&self, service: &Service, f: impl FnOnce(&mut Watched) -> R) -> R {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        let w = vms.entry(service.vm.clone()).or_insert_with(|| Watched {
            service: service.clone(),
            tx: watch::channel(OverviewUpdate::Pending).0,
            live: watch::channel(LiveUpdate::Pending).0,
            due: true,
            shape: None,
            config: None,
        });
        f(w)
    }

    /// Starts watching a service's overview.
    pub fn watch(&self, service: &Service) -> OverviewWatch {
        self.entry(service, |w| w.tx.subscribe())
    }

    /// Starts watching a service's live view: overview, state and per-feature access.
    pub fn watch_live(&self, service: &Service) -> LiveWatch {
        self.entry(service, |w| w.live.subscribe())
    }

    /// Forgets a watched VM's cached config (after an action changed it) and makes the next
    /// [`OverviewHub::tick_if_due`] tick.
    pub fn invalidate(&self, service: &Service) {
        {
            let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = vms.get_mut(&service.vm) {
                w.shape = None;
                w.config = None;
                w.due = true;
            }
        }
        let mut f = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
        f.last = None;
        f.rows = None;
        f.epoch += 1;
    }

    fn due(&self) -> bool {
        let stale = {
            let f = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            f.last.is_none_or(|t| t.elapsed() >= self.interval)
        };
        stale || self.any_vm_due()
    }

    fn any_vm_due(&self) -> bool {
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.values().any(|w| w.due)
    }

    /// Ticks only if the last tick is older than the interval, a VM was watched since, or
    /// something was invalidated: callers on demand (a web request) share one tick per
    /// interval. A VM watched while the last listing is younger than the interval is served
    /// from that listing (its config is the only request); an invalidation forces a new
    /// listing. Returns the requests it sent (0 when nothing was due).
    pub async fn tick_if_due(&self) -> TickStats {
        let mut total = TickStats::default();
        // A tick already running (shared: 0 requests of ours) may have started before the
        // invalidation or the watch: tick again then. Our own tick is not repeated, even failed.
        for _ in 0..2 {
            if !self.due() {
                break;
            }
            let s = self.tick_with(true).await;
            total = TickStats {
                requests: total.requests + s.requests,
                ..s
            };
            if s.requests > 0 {
                break;
            }
        }
        total
    }

    /// Runs ticks every interval ([`REFRESH`] unless set) until the returned handle is aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(hub.interval);
            loop {
                iv.tick().await;
                let _ = hub.tick().await;
            }
        })
    }

    /// One refresh: one `/cluster/resources` call, plus the config of each watched VM whose
    /// row changed shape since its config was read. Watchers that went away are forgotten.
    /// A call made while another tick runs waits for that tick and returns its figures, unless
    /// a VM was watched or invalidated after that tick started: then it ticks for it too.
    pub async fn tick(&self) -> TickStats {
        self.tick_with(false).await
    }

    // `reuse`: VMs that are due are served from the last listing while it is fresh (no call).
    async fn tick_with(&self, reuse: bool) -> TickStats {
        let mut last = match self.ticking.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let g = self.ticking.lock().await;
                // The tick waited for reached the cluster but started before a VM was
                // watched or invalidated: tick for it now rather than leave it pending.
                let reached = self
                    .fresh
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last
                    .is_some();
                if !(reached && self.any_vm_due()) {
                    return TickStats { requests: 0, ..*g };
                }
                g
            }
        };
        let (started, epoch) = {
            let f = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            (Instant::now(), f.epoch)
        };
        let (stats, listing) = self.tick_inner(reuse).await;
        {
            let mut f = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            match listing {
                // A failed listing is not reused: the next `tick_if_due` tries again.
                Listing::Failed => {
                    f.last = None;
                    f.rows = None;
                }
                Listing::Fresh(rows) if f.epoch == epoch => {
                    f.last = Some(started);
                    f.rows = Some(rows);
                }
                _ => {}
            }
        }
        *last = stats;
        stats
    }

    // The figures, and where the rows came from.
    async fn tick_inner(&self, reuse: bool) -> (TickStats, Listing) {
        let mut stats = TickStats::default();
        let cached = if reuse {
            let f = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            f.last
                .filter(|t| t.elapsed() < self.interval)
                .and(f.rows.clone())
        } else {
            None
        };
        let targets: Vec<(VmRef, Service, Option<String>)> = {
            let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
            vms.retain(|_, w| w.tx.receiver_count() + w.live.receiver_count() > 0);
            stats.vms = vms.len();
            stats.watchers = vms
                .values()
                .map(|w| w.tx.receiver_count() + w.live.receiver_count())
                .sum();
            vms.iter()
                .filter(|(_, w)| cached.is_none() || w.due)
                .map(|(k, w)| (k.clone(), w.service.clone(), w.shape.clone()))
                .collect()
        };
        if targets.is_empty() {
            return (stats, Listing::Reused);
        }
        let rows = match cached {
            Some(rows) => Ok(rows),
            None => {
                stats.requests += 1;
                self.area
                    .client()
                    .cluster_resources(Some(pve_vps_api::api::cluster::ResourceFilter::Vm))
                    .await
                    .map(Arc::new)
            }
        };
        let reused = stats.requests == 0;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("cannot reach the cluster: {e}");
                let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
                for w in vms.values_mut() {
                    w.tx.send_replace(OverviewUpdate::Failed(msg.clone()));
                    w.live.send_replace(LiveUpdate::Failed(msg.clone()));
                }
                return (stats, Listing::Failed);
            }
        };
        let by_id: HashMap<u64, &pve_vps_api::api::cluster::ClusterResource> =
            rows.iter().filter_map(|r| Some((r.vmid?, r))).collect();
        for (vm, service, old_shape) in targets {
            let update = match by_id.get(&u64::from(vm.vmid().get())) {
                None => Err("the vm is no longer present".to_owned()),
                Some(r) if r.node.as_deref() != Some(vm.node().as_str()) => {
                    Err("the vm moved to another node".to_owned())
                }
                Some(r) => {
                    let new_shape = row_shape(r);
                    let mut config = None;
                    if old_shape.as_deref() != Some(new_shape.as_str()) {
                        stats.requests += 1;
                        match self.area.config(&service).await {
                            Ok(c) => config = Some(c),
                            Err(e) => {
                                self.publish(&vm, Err(e.to_string()), None);
                                // Not reused either: the next `tick_if_due` reads it again.
                                self.invalidate_vm(&vm);
                                continue;
                            }
                        }
                    }
                    let cfg = match config.clone() {
                        Some(c) => c,
                        None => self.cached_config(&vm).unwrap_or_default(),
                    };
                    let row = resource_row(r);
                    let view = self.area.product(&service).and_then(|p| {
                        let overview = overview::build(&row, &cfg, &service, p)?;
                        let state = VmState {
                            lock: r.lock.as_deref().map(str::parse).transpose()?,
                            running: r.status.as_deref() == Some("running"),
                        };
                        let access = permissions::check_all(p, &state);
                        Ok(LiveView {
                            overview,
                            state,
                            access,
                        })
                    });
                    let view = view.map_err(|e| e.to_string());
                    self.publish(&vm, view, config.map(|c| (new_shape, c)));
                    continue;
                }
            };
            self.publish(&vm, update, None);
        }
        let listing = if reused {
            Listing::Reused
        } else {
            Listing::Fresh(rows)
        };
        (stats, listing)
    }

    fn invalidate_vm(&self, vm: &VmRef) {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = vms.get_mut(vm) {
            w.due = true;
        }
    }

    fn cached_config(&self, vm: &VmRef) -> Option<VmConfig> {
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.get(vm).and_then(|w| w.config.clone())
    }

    fn publish(
        &self,
        vm: &VmRef,
        view: Result<LiveView, String>,
        fetched: Option<(String, VmConfig)>,
    ) {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = vms.get_mut(vm) {
            if let Some((s, c)) = fetched {
                w.shape = Some(s);
                w.config = Some(c);
            }
            w.due = false;
            match view {
                Ok(v) => {
                    w.tx.send_replace(OverviewUpdate::Ready(Box::new(v.overview.clone())));
                    w.live.send_replace(LiveUpdate::Ready(Box::new(v)));
                }
                Err(e) => {
                    w.tx.send_replace(OverviewUpdate::Failed(e.clone()));
                    w.live.send_replace(LiveUpdate::Failed(e));
                }
            }
        }
    }
}
