//! One round of the scheduled work (the `cron` binary runs it on an interval) in one cluster
//! ([`round`], or [`cluster_round_observed`] for one cluster of a
//! [`Fleet`](pve_vps_services::Fleet)), and the lease store
//! wrapper that logs what this worker does with its leases.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pve_vps_services::ClientArea;
use pve_vps_services::ids::ClusterName;
use pve_vps_services::leases::{self, Claim, Lease, LeaseKey, WorkerId};
use pve_vps_services::service::Service;
use pve_vps_services::stores::LeaseStore;
use pve_vps_services::time::OffsetDateTime;
use tracing::{Instrument, debug, error, info, warn};

use crate::metrics::Metrics;

/// Leases that expired this long ago are forgotten at the end of a round (one row per VM and
/// scheduled backup slot accumulates otherwise).
pub const LEASE_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Scheduled backups created.
    pub backups_created: usize,
    /// Old archives deleted by the rotation.
    pub backups_deleted: usize,
    /// Expired snapshots removed.
    pub snapshots_removed: usize,
    /// Interrupted operations resumed to the end.
    pub resumed: usize,
    /// Problems (logged; retried next round).
    pub problems: Vec<String>,
}

/// Which optional phases a round runs; the backup tick and resuming plans always run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// The snapshot expiry sweep (one snapshot listing per VM): the `cron` binary runs it
    /// every `CRON_SWEEP_SECS`, not every round.
    pub sweep: bool,
}

impl Default for Phases {
    /// Every phase.
    fn default() -> Self {
        Self { sweep: true }
    }
}

/// The backup schedule tick, the snapshot expiry sweep, then resuming restores and reinstalls
/// left unfinished in the plan store. Safe to run on several hosts at once sharing one store:
/// each scheduled backup slot and each unfinished plan is leased to one worker, and
/// vm-services re-checks the lock and today's backups right before each action.
pub async fn round(area: &ClientArea, services: &[Service]) -> RoundReport {
    round_observed(area, services, None).await
}

/// [`round`], with each phase in a tracing span (`scheduler_phase{phase=...}`) and, given
/// `metrics`, its duration in `scheduler_tick_duration_seconds{phase}` (`backup`,
/// `snapshot_sweep`, `resume`, and `round` for the whole) and each problem counted in
/// `errors_total{source="scheduler"}`.
pub async fn round_observed(
    area: &ClientArea,
    services: &[Service],
    metrics: Option<&Metrics>,
) -> RoundReport {
    let started = Instant::now();
    let report = cluster_round(area, services, metrics, None, Phases::default()).await;
    if let Some(m) = metrics {
        m.tick("round", started.elapsed());
    }
    report
}

/// [`round_observed`] in one cluster of a [`Fleet`](pve_vps_services::Fleet) (`area` is the fleet's client area of
/// `cluster`, `services` the services bound to it), in a `scheduler_cluster{cluster=...}`
/// span, ended by one line saying how the cluster's round went (`cluster round done`, or
/// `cluster round had problems` with the first of them). A cluster that is offline or failing
/// costs only its own services their round: each skipped service is logged with the reason,
/// and its problems are counted in `scheduler_cluster_problems_total{cluster}` (0 for a round
/// without problems) and `errors_total{source="scheduler"}`. Given `metrics`, the phases go to
/// `scheduler_cluster_tick_duration_seconds{cluster,phase}` and, as for one cluster, to
/// `scheduler_tick_duration_seconds{phase}`. The `cron` binary runs each cluster's rounds on
/// their own, so that a slow cluster does not hold up the others' next rounds.
pub async fn cluster_round_observed(
    area: &ClientArea,
    services: &[Service],
    metrics: Option<&Metrics>,
    cluster: &ClusterName,
    phases: Phases,
) -> RoundReport {
    let started = Instant::now();
    let span = tracing::info_span!("scheduler_cluster", cluster = %cluster);
    let r = cluster_round(area, services, metrics, Some(cluster), phases)
        .instrument(span)
        .await;
    if let Some(m) = metrics {
        m.tick("round", started.elapsed());
        m.cluster_problems(cluster.as_str(), r.problems.len() as u64);
    }
    if r.problems.is_empty() {
        info!(cluster = %cluster, created = r.backups_created, swept = r.snapshots_removed,
            resumed = r.resumed, "cluster round done");
    } else {
        warn!(cluster = %cluster, created = r.backups_created, swept = r.snapshots_removed,
            resumed = r.resumed, problems = r.problems.len(), first = %r.problems[0],
            "cluster round had problems (retried next round; the other clusters are not \
             held up)");
    }
    r
}

/// One cluster's round: phases timed (per cluster too when `cluster` is given), problems
/// counted, old leases pruned. The caller times the whole round.
async fn cluster_round(
    area: &ClientArea,
    services: &[Service],
    metrics: Option<&Metrics>,
    cluster: Option<&ClusterName>,
    phases: Phases,
) -> RoundReport {
    let started = Instant::now();
    let mut phase_start = Instant::now();
    let mut phase_end = |phase: &'static str| {
        if let Some(m) = metrics {
            m.tick(phase, phase_start.elapsed());
            if let Some(c) = cluster {
                m.cluster_tick(c.as_str(), phase, phase_start.elapsed());
            }
        }
        phase_start = Instant::now();
    };
    let mut report = RoundReport::default();
    let span = |phase: &'static str| tracing::info_span!("scheduler_phase", phase);
    match area.backup_tick(services).instrument(span("backup")).await {
        Ok(r) => {
            info!(
                created = r.created.len(),
                deleted = r.deleted.len(),
                skipped = r.skipped.len(),
                failed = r.failed.len(),
                listings = r.listing_requests,
                "backup tick"
            );
            for vm in &r.created {
                info!(%vm, "scheduled backup created");
            }
            for (vm, why) in &r.skipped {
                info!(%vm, reason = %why, "scheduled backup left to another worker or round");
            }
            for (vm, why) in &r.failed {
                warn!(%vm, reason = %why, "scheduled backup failed (retried next round)");
            }
            report.backups_created = r.created.len();
            report.backups_deleted = r.deleted.len();
            report.problems.extend(
                r.failed
                    .iter()
                    .map(|(vm, why)| format!("backup of {vm}: {why}")),
            );
        }
        Err(e) => {
            // With its causes: "list backups" alone does not say the cluster answered 503.
            let e = with_causes(&e);
            error!(error = %e, "backup tick failed");
            for s in services {
                warn!(vm = %s.vm, domain = %s.domain, reason = %e,
                    "service skipped: its scheduled backup could not be checked (retried next \
                     round)");
            }
            report.problems.push(format!("backup tick: {e}"));
        }
    }
    phase_end("backup");
    if phases.sweep {
        sweep_phase(area, services, &mut report).await;
        phase_end("snapshot_sweep");
    }
    // Interrupted restores and reinstalls: each is taken (leased) by exactly one worker; one
    // whose worker died is taken over once its lease expired.
    match area
        .resume_unfinished(services)
        .instrument(span("resume"))
        .await
    {
        Ok(r) => {
            for id in &r.finished {
                info!(plan = %id, "interrupted operation resumed and finished");
            }
            for (id, why) in &r.skipped {
                info!(plan = %id, reason = %why, "unfinished plan left alone");
            }
            for (id, e) in &r.failed {
                warn!(plan = %id, error = %e, "resume failed (retried next round)");
                report.problems.push(format!("resume {id}: {e}"));
            }
            report.resumed = r.finished.len();
        }
        Err(e) => {
            let e = with_causes(&e);
            error!(error = %e, "cannot read the plan store");
            report.problems.push(format!("plan store: {e}"));
        }
    }
    phase_end("resume");
    if let Some(m) = metrics {
        if let Some(c) = cluster {
            m.cluster_tick(c.as_str(), "round", started.elapsed());
        }
        for _ in &report.problems {
            m.error("scheduler");
        }
    }
    match area.prune_leases(LEASE_RETENTION).await {
        Ok(0) => {}
        Ok(n) => info!(pruned = n, "old leases forgotten"),
        Err(e) => warn!(error = %e, "cannot prune old leases"),
    }
    report
}

/// `e` and each of its sources, `: `-separated (a source already in the message is not
/// repeated).
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

/// A [`LeaseStore`] that logs every lease this worker claims, renews, takes over from an
/// expired holder, completes or releases (one line each, with the lease key and the worker),
/// and remembers which leases it holds, so that a worker shutting down can give them back
/// ([`release_held`](Self::release_held)). The decisions stay with the wrapped store.
#[derive(Debug)]
pub struct LoggedLeases {
    inner: Arc<dyn LeaseStore>,
    held: Mutex<BTreeSet<LeaseKey>>,
}

impl LoggedLeases {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn LeaseStore>) -> Self {
        Self {
            inner,
            held: Mutex::new(BTreeSet::new()),
        }
    }

    /// The leases this process holds: granted, neither completed nor released.
    pub fn held(&self) -> Vec<LeaseKey> {
        self.lock().iter().cloned().collect()
    }

    /// Gives back the leases this process still holds after its work was stopped: a backup
    /// slot is released at once (whoever takes it re-lists the archives and re-checks the
    /// lock before creating one), a plan's lease is left to expire, so that the PVE task its
    /// interrupted step started has ended before another worker resumes the plan. What was
    /// released.
    pub async fn release_held(&self, holder: &WorkerId) -> Vec<LeaseKey> {
        let mut released = Vec::new();
        for key in self.held() {
            if key.as_str().starts_with("plan:") {
                info!(lease = %key, worker = %holder,
                    "plan lease left to expire: another worker resumes the plan after it");
                self.lock().remove(&key);
                continue;
            }
            match self.release(&key, holder).await {
                Ok(true) => released.push(key),
                Ok(false) => {}
                Err(e) => warn!(lease = %key, worker = %holder, error = %e,
                    "cannot release the lease (it expires by itself)"),
            }
        }
        released
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<LeaseKey>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LeaseStore for LoggedLeases {
    async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, pve_vps_services::Error> {
        let renewing = self.lock().contains(key);
        // Only a first claim reads the row first, to say whom it is taken over from.
        let before = if renewing {
            None
        } else {
            self.inner.lease(key).await?
        };
        let granted = self.inner.acquire(key, holder, now, ttl).await?;
        let secs = ttl.as_secs_f64();
        if granted {
            self.lock().insert(key.clone());
            if renewing {
                info!(lease = %key, worker = %holder, lease_secs = secs, "lease renewed");
            } else {
                match leases::decide(before.as_ref(), holder, now) {
                    Claim::TakeOver { from } => info!(lease = %key, worker = %holder,
                        from = %from, lease_secs = secs,
                        "lease taken over: its holder stopped renewing and it expired"),
                    _ => info!(lease = %key, worker = %holder, lease_secs = secs, "lease claimed"),
                }
            }
        } else if renewing {
            self.lock().remove(key);
            warn!(lease = %key, worker = %holder, "lease lost: another worker took it over");
        } else {
            match before {
                Some(Lease { done: true, .. }) => {
                    debug!(lease = %key, worker = %holder, "lease refused: the work is done")
                }
                Some(l) => debug!(lease = %key, worker = %holder, by = %l.holder,
                    "lease refused: held by another worker"),
                None => debug!(lease = %key, worker = %holder, "lease refused"),
            }
        }
        Ok(granted)
    }

    async fn complete(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
    ) -> Result<bool, pve_vps_services::Error> {
        let ok = self.inner.complete(key, holder).await?;
        self.lock().remove(key);
        if ok {
            info!(lease = %key, worker = %holder, "lease completed: the work is done");
        } else {
            warn!(lease = %key, worker = %holder, "lease not completed: no longer held");
        }
        Ok(ok)
    }

    async fn release(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
    ) -> Result<bool, pve_vps_services::Error> {
        let ok = self.inner.release(key, holder).await?;
        self.lock().remove(key);
        if ok {
            info!(lease = %key, worker = %holder, "lease released");
        } else {
            warn!(lease = %key, worker = %holder, "lease not released: no longer held");
        }
        Ok(ok)
    }

    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, pve_vps_services::Error> {
        self.inner.lease(key).await
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<usize, pve_vps_services::Error> {
        self.inner.prune(before).await
    }
}

/// The snapshot expiry sweep of one round, logged, its problems added to `report`.
async fn sweep_phase(area: &ClientArea, services: &[Service], report: &mut RoundReport) {
    let sweep = area
        .sweep_expired_snapshots(services)
        .instrument(tracing::info_span!(
            "scheduler_phase",
            phase = "snapshot_sweep"
        ))
        .await;
    for (vm, name) in &sweep.removed {
        info!(%vm, snapshot = %name, "expired snapshot removed");
    }
    for (vm, why) in &sweep.deferred {
        info!(%vm, reason = %why, "snapshot sweep left a vm to the worker holding it");
    }
    for (vm, why) in &sweep.skipped {
        warn!(%vm, reason = %why, "snapshot sweep skipped a vm (retried at the next sweep)");
        report
            .problems
            .push(format!("snapshot sweep of {vm}: {why}"));
    }
    report.snapshots_removed = sweep.removed.len();
}
