//! The overview cache: any number of watchers, one `/cluster/resources` call per tick, and a
//! VM's config fetched again only when its resources row says the VM changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::ClientArea;
use crate::overview::{self, Overview, ResourceRow};
use crate::pve::VmConfig;
use crate::service::{Service, VmRef};

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
    // What the config was fetched for; a different row shape refetches it.
    shape: Option<String>,
    config: Option<VmConfig>,
}

/// Serves overviews to many watchers of one cluster from one `/cluster/resources` call per
/// tick (every 7 seconds when [`OverviewHub::spawn`]ed). Cheap to clone.
#[derive(Debug, Clone)]
pub struct OverviewHub {
    area: ClientArea,
    vms: Arc<Mutex<HashMap<VmRef, Watched>>>,
    // One tick at a time: a caller arriving while one runs waits for it and shares its
    // result instead of sending requests of its own (coalescing).
    ticking: Arc<tokio::sync::Mutex<TickStats>>,
}

/// The client area's refresh period.
pub const REFRESH: Duration = Duration::from_secs(7);

/// The fields of a `/cluster/resources` row that only change when the VM's config does (or a
/// lock/status change may have): a config cached for one shape is fetched again on another.
pub fn row_shape(r: &proxmox_api::api::cluster::ClusterResource) -> String {
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        r.maxcpu, r.maxmem, r.maxdisk, r.lock, r.name, r.status
    )
}

/// The overview's fields of a `/cluster/resources` row (missing numbers read as 0).
pub fn resource_row(r: &proxmox_api::api::cluster::ClusterResource) -> ResourceRow {
    ResourceRow {
        status: r.status.clone().unwrap_or_default(),
        uptime: r.uptime.unwrap_or(0),
        cpu: r.cpu.unwrap_or(0.0),
        maxcpu: r.maxcpu.unwrap_or(0.0),
        mem: r.mem.unwrap_or(0),
        maxmem: r.maxmem.unwrap_or(0),
    }
}

impl OverviewHub {
    /// A hub over the client area's cluster.
    pub fn new(area: ClientArea) -> Self {
        Self {
            area,
            vms: Arc::new(Mutex::new(HashMap::new())),
            ticking: Arc::new(tokio::sync::Mutex::new(TickStats::default())),
        }
    }

    /// Starts watching a service's overview.
    pub fn watch(&self, service: &Service) -> OverviewWatch {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        let w = vms.entry(service.vm.clone()).or_insert_with(|| Watched {
            service: service.clone(),
            tx: watch::channel(OverviewUpdate::Pending).0,
            shape: None,
            config: None,
        });
        w.tx.subscribe()
    }

    /// Runs ticks every [`REFRESH`] until the returned handle is aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(REFRESH);
            loop {
                iv.tick().await;
                let _ = hub.tick().await;
            }
        })
    }

    /// One refresh: one `/cluster/resources` call, plus the config of each watched VM whose
    /// row changed shape since its config was read. Watchers that went away are forgotten.
    /// A call made while another tick runs waits for that tick and returns its figures.
    pub async fn tick(&self) -> TickStats {
        let mut last = match self.ticking.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let g = self.ticking.lock().await;
                return TickStats { requests: 0, ..*g };
            }
        };
        let stats = self.tick_inner().await;
        *last = stats;
        stats
    }

    async fn tick_inner(&self) -> TickStats {
        let mut stats = TickStats::default();
        let targets: Vec<(VmRef, Service, Option<String>)> = {
            let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
            vms.retain(|_, w| w.tx.receiver_count() > 0);
            stats.vms = vms.len();
            stats.watchers = vms.values().map(|w| w.tx.receiver_count()).sum();
            vms.iter()
                .map(|(k, w)| (k.clone(), w.service.clone(), w.shape.clone()))
                .collect()
        };
        if targets.is_empty() {
            return stats;
        }
        stats.requests += 1;
        let rows = match self
            .area
            .client()
            .cluster_resources(Some(proxmox_api::api::cluster::ResourceFilter::Vm))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("cannot reach the cluster: {e}");
                let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
                for w in vms.values() {
                    w.tx.send_replace(OverviewUpdate::Failed(msg.clone()));
                }
                return stats;
            }
        };
        let by_id: HashMap<u64, &proxmox_api::api::cluster::ClusterResource> =
            rows.iter().filter_map(|r| Some((r.vmid?, r))).collect();
        for (vm, service, old_shape) in targets {
            let update = match by_id.get(&u64::from(vm.vmid().get())) {
                None => OverviewUpdate::Failed("the vm is no longer present".into()),
                Some(r) if r.node.as_deref() != Some(vm.node().as_str()) => {
                    OverviewUpdate::Failed("the vm moved to another node".into())
                }
                Some(r) => {
                    let new_shape = row_shape(r);
                    let mut config = None;
                    if old_shape.as_deref() != Some(new_shape.as_str()) {
                        stats.requests += 1;
                        match self.area.config(&service).await {
                            Ok(c) => config = Some(c),
                            Err(e) => {
                                self.publish(&vm, OverviewUpdate::Failed(e.to_string()), None);
                                continue;
                            }
                        }
                    }
                    let cfg = match config.clone() {
                        Some(c) => c,
                        None => self.cached_config(&vm).unwrap_or_default(),
                    };
                    let row = resource_row(r);
                    let update = match self
                        .area
                        .product(&service)
                        .and_then(|p| overview::build(&row, &cfg, &service, p))
                    {
                        Ok(o) => OverviewUpdate::Ready(Box::new(o)),
                        Err(e) => OverviewUpdate::Failed(e.to_string()),
                    };
                    self.publish(&vm, update, config.map(|c| (new_shape, c)));
                    continue;
                }
            };
            self.publish(&vm, update, None);
        }
        stats
    }

    fn cached_config(&self, vm: &VmRef) -> Option<VmConfig> {
        let vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        vms.get(vm).and_then(|w| w.config.clone())
    }

    fn publish(&self, vm: &VmRef, update: OverviewUpdate, fetched: Option<(String, VmConfig)>) {
        let mut vms = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = vms.get_mut(vm) {
            if let Some((s, c)) = fetched {
                w.shape = Some(s);
                w.config = Some(c);
            }
            w.tx.send_replace(update);
        }
    }
}
