//! One round of the scheduled work (the `cron` binary runs it on an interval).

use pve_vps_services::ClientArea;
use pve_vps_services::service::Service;
use std::time::Instant;

use tracing::{Instrument, error, info, warn};

use crate::metrics::Metrics;

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
    let mut phase_start = Instant::now();
    let mut phase_end = |phase: &'static str| {
        if let Some(m) = metrics {
            m.tick(phase, phase_start.elapsed());
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
            report.backups_created = r.created.len();
            report.backups_deleted = r.deleted.len();
            report.problems.extend(
                r.failed
                    .iter()
                    .map(|(vm, why)| format!("backup of {vm}: {why}")),
            );
        }
        Err(e) => {
            error!(error = %e, "backup tick failed");
            report.problems.push(format!("backup tick: {e}"));
        }
    }
    phase_end("backup");
    let sweep = area
        .sweep_expired_snapshots(services)
        .instrument(span("snapshot_sweep"))
        .await;
    for (vm, name) in &sweep.removed {
        info!(%vm, snapshot = %name, "expired snapshot removed");
    }
    for (vm, why) in &sweep.skipped {
        warn!(%vm, reason = %why, "snapshot sweep skipped a vm (retried next round)");
        report
            .problems
            .push(format!("snapshot sweep of {vm}: {why}"));
    }
    report.snapshots_removed = sweep.removed.len();
    phase_end("snapshot_sweep");
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
            error!(error = %e, "cannot read the plan store");
            report.problems.push(format!("plan store: {e}"));
        }
    }
    phase_end("resume");
    if let Some(m) = metrics {
        m.tick("round", started.elapsed());
        for _ in &report.problems {
            m.error("scheduler");
        }
    }
    report
}
