//! Several Proxmox VE clusters: one [`ClientArea`] and one [`OverviewHub`] per named cluster,
//! every operation routed to the service's own cluster. A cluster that cannot be reached
//! (connection refused, errors, no answer in time) shows its services as unavailable with the
//! reason, while the other clusters keep working.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{ClientArea, OverviewHub, OverviewUpdate, OverviewWatch, ResumeReport, TickReport};
use crate::error::Error;
use crate::ids::ClusterName;
use crate::overview::Overview;
use crate::service::Service;

#[derive(Debug)]
struct Member {
    area: ClientArea,
    hub: OverviewHub,
}

/// The clusters of a hosting company, by name. Cheap to clone.
///
/// Build it from one [`ClientArea`] per cluster (each built with
/// [`ClientAreaBuilder::cluster`](super::ClientAreaBuilder::cluster)); services name their
/// cluster in [`Service::cluster`] (`default` when they name none).
#[derive(Debug, Clone)]
pub struct Fleet {
    members: Arc<BTreeMap<ClusterName, Member>>,
    timeout: Duration,
}

/// A service as the fleet overview shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceStatus {
    /// Its cluster answered: the overview.
    Available(Box<Overview>),
    /// Its cluster could not be reached, or the VM could not be read: why.
    Unavailable {
        /// The service's cluster.
        cluster: ClusterName,
        /// Why (safe to show: no secrets).
        reason: String,
    },
}

impl Fleet {
    /// A fleet of these client areas, one per cluster, with overview hubs refreshing every
    /// `interval` at most. Two areas of one cluster are refused.
    pub fn new(
        areas: impl IntoIterator<Item = ClientArea>,
        interval: Duration,
    ) -> Result<Self, Error> {
        let mut members = BTreeMap::new();
        for area in areas {
            let name = area.cluster_name().clone();
            if members.contains_key(&name) {
                return Err(Error::invalid(
                    "cluster name",
                    name.as_str(),
                    "configured twice",
                ));
            }
            let hub = OverviewHub::with_interval(area.clone(), interval);
            members.insert(name, Member { area, hub });
        }
        Ok(Self {
            members: Arc::new(members),
            timeout: Duration::from_secs(10),
        })
    }

    /// How long a cluster may take to answer a fleet-wide read (default 10 s): one that takes
    /// longer is shown as unavailable instead of holding up the others.
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The cluster names.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterName> {
        self.members.keys()
    }

    fn member(&self, cluster: &ClusterName) -> Result<&Member, Error> {
        self.members
            .get(cluster)
            .ok_or_else(|| Error::UnknownCluster {
                cluster: cluster.clone(),
            })
    }

    /// The client area of the service's cluster: every [`ClientArea`] operation goes through
    /// it (`fleet.area(&service)?.start(&service).await`).
    pub fn area(&self, service: &Service) -> Result<&ClientArea, Error> {
        Ok(&self.member(&service.cluster)?.area)
    }

    /// The client area of a cluster by name.
    pub fn cluster(&self, name: &ClusterName) -> Result<&ClientArea, Error> {
        Ok(&self.member(name)?.area)
    }

    /// The overview hub of the service's cluster.
    pub fn hub(&self, service: &Service) -> Result<&OverviewHub, Error> {
        Ok(&self.member(&service.cluster)?.hub)
    }

    /// Watches a service's overview through its cluster's hub.
    pub fn watch(&self, service: &Service) -> Result<OverviewWatch, Error> {
        Ok(self.hub(service)?.watch(service))
    }

    /// Ticks every cluster's hub at once, each under the fleet timeout; the clusters that
    /// did not finish in time.
    pub async fn tick_all(&self) -> Vec<ClusterName> {
        let timeout = self.timeout;
        let results = join_all(self.members.iter().map(|(name, m)| async move {
            (
                name.clone(),
                tokio::time::timeout(timeout, m.hub.tick()).await.is_ok(),
            )
        }))
        .await;
        results
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n)
            .collect()
    }

    /// The overview of every service, one `/cluster/resources` per cluster, all clusters at
    /// once. A service whose cluster is unknown, unreachable, failing or slower than the
    /// timeout is [`ServiceStatus::Unavailable`] with the reason; the others are unaffected.
    pub async fn overviews(&self, services: &[Service]) -> Vec<(Service, ServiceStatus)> {
        let watches: Vec<Result<OverviewWatch, Error>> =
            services.iter().map(|s| self.watch(s)).collect();
        let late = self.tick_all().await;
        services
            .iter()
            .zip(watches)
            .map(|(s, w)| {
                let unavailable = |reason: String| ServiceStatus::Unavailable {
                    cluster: s.cluster.clone(),
                    reason,
                };
                let status = match w {
                    Err(e) => unavailable(e.to_string()),
                    Ok(_) if late.contains(&s.cluster) => unavailable(
                        Error::ClusterTimeout {
                            cluster: s.cluster.clone(),
                            secs: self.timeout.as_secs().max(1),
                        }
                        .to_string(),
                    ),
                    Ok(w) => match &*w.borrow() {
                        OverviewUpdate::Ready(o) => ServiceStatus::Available(o.clone()),
                        OverviewUpdate::Failed(why) => unavailable(why.clone()),
                        OverviewUpdate::Pending => unavailable("no answer yet".to_owned()),
                    },
                };
                (s.clone(), status)
            })
            .collect()
    }

    fn by_cluster<'a>(&self, services: &'a [Service]) -> BTreeMap<ClusterName, Vec<&'a Service>> {
        let mut m: BTreeMap<ClusterName, Vec<&Service>> = BTreeMap::new();
        for s in services {
            m.entry(s.cluster.clone()).or_default().push(s);
        }
        m
    }

    /// The scheduled backup tick of every cluster at once (see [`ClientArea::backup_tick`]);
    /// each cluster's result on its own, so an offline cluster does not stop the others.
    pub async fn backup_tick(
        &self,
        services: &[Service],
    ) -> BTreeMap<ClusterName, Result<TickReport, Error>> {
        let groups = self.by_cluster(services);
        join_all(groups.into_iter().map(|(name, svcs)| async move {
            let svcs: Vec<Service> = svcs.into_iter().cloned().collect();
            let r = match self.member(&name) {
                Ok(m) => m.area.backup_tick(&svcs).await,
                Err(e) => Err(e),
            };
            (name, r)
        }))
        .await
        .into_iter()
        .collect()
    }

    /// Resumes interrupted plans in every cluster at once (see
    /// [`ClientArea::resume_unfinished`]), each cluster's result on its own.
    pub async fn resume_unfinished(
        &self,
        services: &[Service],
    ) -> BTreeMap<ClusterName, Result<ResumeReport, Error>> {
        let groups = self.by_cluster(services);
        join_all(groups.into_iter().map(|(name, svcs)| async move {
            let svcs: Vec<Service> = svcs.into_iter().cloned().collect();
            let r = match self.member(&name) {
                Ok(m) => m.area.resume_unfinished(&svcs).await,
                Err(e) => Err(e),
            };
            (name, r)
        }))
        .await
        .into_iter()
        .collect()
    }
}
