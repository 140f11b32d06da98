//! One round of the scheduled work (the `cron` binary runs it on an interval).

use pve_vps_services::ClientArea;
use pve_vps_services::service::Service;
use tracing::{error, info, warn};

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
    let mut report = RoundReport::default();
    match area.backup_tick(services).await {
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
    let sweep = area.sweep_expired_snapshots(services).await;
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
    // Interrupted restores and reinstalls: each is taken (leased) by exactly one worker; one
    // whose worker died is taken over once its lease expired.
    match area.resume_unfinished(services).await {
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
    report
}
