//! Shared work between workers: taking, renewing and finishing leases, resuming interrupted
//! plans that no live worker holds, and recording how operations ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::ClientArea;
use crate::error::Error;
use crate::leases::{self, LeaseKey};
use crate::outcomes::{Ending, OperationKind, OperationOutcome};
use crate::reinstall::PlanId;
use crate::service::Service;

/// A lease this worker holds; renewed every third of the lease time until dropped. Dropping it
/// only stops the renewal (the lease then expires): a worker that dies mid-plan behaves the
/// same, and another worker takes the plan over after expiry. Finish with
/// [`complete`](Self::complete) or give up with [`release`](Self::release).
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    area: ClientArea,
    key: LeaseKey,
    renewer: tokio::task::JoinHandle<()>,
    // Set by the renewer when another worker took the lease over (we were too slow).
    lost: Arc<AtomicBool>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl LeaseGuard {
    /// Refuses to go on once another worker took the lease over (this worker stalled for
    /// longer than the lease time): the plan's next step is that worker's to run.
    pub(crate) fn check_held(&self) -> Result<(), Error> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::InProgress {
                operation: format!("`{}` was taken over by another worker", self.key),
            });
        }
        Ok(())
    }

    /// The work is done: nobody may take it again.
    pub(crate) async fn complete(self) -> Result<bool, Error> {
        self.renewer.abort();
        let i = &self.area.inner;
        i.leases.complete(&self.key, &i.worker).await
    }

    /// Gives the work back for another worker (or a later round) at once.
    pub(crate) async fn release(self) -> Result<bool, Error> {
        self.renewer.abort();
        let i = &self.area.inner;
        i.leases.release(&self.key, &i.worker).await
    }
}

/// What [`ClientArea::resume_unfinished`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeReport {
    /// Plans resumed and finished by this worker.
    pub finished: Vec<PlanId>,
    /// Plans left alone: another worker holds them (with its name) or no service owns them.
    pub skipped: Vec<(PlanId, String)>,
    /// Plans this worker resumed that failed again (retried later), with the reason.
    pub failed: Vec<(PlanId, String)>,
}

impl ClientArea {
    /// This worker's name (leases are held under it).
    pub fn worker(&self) -> &leases::WorkerId {
        &self.inner.worker
    }

    /// How long a lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.lease_ttl
    }

    /// Takes (or renews) the lease on `key`; `None` when another worker holds it or it is done.
    pub(crate) async fn take_lease(&self, key: LeaseKey) -> Result<Option<LeaseGuard>, Error> {
        let i = &self.inner;
        if !i
            .leases
            .acquire(&key, &i.worker, self.now(), i.lease_ttl)
            .await?
        {
            return Ok(None);
        }
        let area = self.clone();
        let k = key.clone();
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        let renewer = tokio::spawn(async move {
            let every = area.inner.lease_ttl / 3;
            loop {
                tokio::time::sleep(every).await;
                let i = &area.inner;
                match i
                    .leases
                    .acquire(&k, &i.worker, area.now(), i.lease_ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = %k, worker = %i.worker, "lease lost to another worker");
                        lost_flag.store(true, Ordering::SeqCst);
                        break;
                    }
                    Err(e) => tracing::warn!(lease = %k, error = %e, "lease renewal failed"),
                }
            }
        });
        Ok(Some(LeaseGuard {
            area: self.clone(),
            key,
            renewer,
            lost,
        }))
    }

    /// The per-VM lease ([`LeaseKey::vm`]) for cron work on `vmid`, or why not (for the
    /// report). `work` is the work's own lease (a backup slot's): while another worker holds
    /// the VM and that lease is still free for us, the holder is doing short other work (a
    /// sweep), so this waits for it, asking again every twentieth of the lease time, for at
    /// most one lease time ([`leases::vm_lease_then`] decides).
    pub(crate) async fn vm_lease(
        &self,
        vmid: crate::ids::VmId,
        work: Option<&LeaseKey>,
    ) -> Result<Result<LeaseGuard, String>, Error> {
        let key = LeaseKey::vm(vmid);
        let ttl = self.inner.lease_ttl;
        let every = (ttl / 20).max(Duration::from_millis(20));
        let deadline = tokio::time::Instant::now() + ttl;
        loop {
            if let Some(g) = self.take_lease(key.clone()).await? {
                return Ok(Ok(g));
            }
            let vm = self.inner.leases.lease(&key).await?;
            let own = match work {
                Some(k) => Some(self.inner.leases.lease(k).await?),
                None => None,
            };
            let then = leases::vm_lease_then(
                vm.as_ref(),
                own.as_ref().map(Option::as_ref),
                &self.inner.worker,
                self.now(),
            );
            let by = match then {
                leases::VmLeaseThen::Skip { reason } => return Ok(Err(reason)),
                // Freed (or expired) since we asked: ask again (bounded by the deadline).
                leases::VmLeaseThen::Go => None,
                leases::VmLeaseThen::Wait { by } => Some(by),
            };
            if tokio::time::Instant::now() >= deadline {
                let by =
                    by.map_or_else(|| "another worker".to_owned(), |w| format!("worker `{w}`"));
                return Ok(Err(format!("vm worked on by {by}")));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The per-VM lease for a restore or reinstall, or `InProgress` naming the worker whose
    /// cron work (a scheduled backup, a snapshot sweep, another plan) holds the VM.
    pub(crate) async fn vm_lease_for_plan(&self, service: &Service) -> Result<LeaseGuard, Error> {
        match self.vm_lease(service.vmid(), None).await? {
            Ok(g) => Ok(g),
            Err(operation) => Err(Error::InProgress { operation }),
        }
    }

    /// The lease on a plan, or `InProgress` naming the worker that holds it.
    pub(crate) async fn plan_lease(&self, id: &PlanId) -> Result<LeaseGuard, Error> {
        let key = LeaseKey::plan(id);
        match self.take_lease(key.clone()).await? {
            Some(g) => Ok(g),
            None => {
                let by = match self.inner.leases.lease(&key).await? {
                    Some(l) if l.done => "an operation that already finished".to_owned(),
                    Some(l) => format!("worker `{}`", l.holder),
                    None => "another worker".to_owned(),
                };
                Err(Error::InProgress {
                    operation: format!("plan `{id}` is run by {by}"),
                })
            }
        }
    }

    /// Records how a plan ended (a failure to record is logged: the operation itself ended).
    pub(crate) async fn record_outcome(
        &self,
        service: &Service,
        plan: &PlanId,
        operation: OperationKind,
        ending: Ending,
    ) {
        let outcome = OperationOutcome {
            plan: plan.clone(),
            vm: service.vm.clone(),
            operation,
            ending,
            at: self.now(),
        };
        if let Err(e) = self.inner.outcomes.record(&outcome).await {
            tracing::warn!(vm = %service.vm, %plan, error = %e, "cannot record the outcome");
        }
    }

    /// The latest restore or reinstall outcome of the service (whichever portal instance or
    /// worker carried it out).
    pub async fn last_outcome(&self, service: &Service) -> Result<Option<OperationOutcome>, Error> {
        Ok(self
            .inner
            .outcomes
            .latest(service.vmid())
            .await?
            .filter(|o| o.vm == service.vm))
    }

    /// Every stored outcome of the service, newest first.
    pub async fn outcomes(&self, service: &Service) -> Result<Vec<OperationOutcome>, Error> {
        Ok(self
            .inner
            .outcomes
            .list(service.vmid())
            .await?
            .into_iter()
            .filter(|o| o.vm == service.vm)
            .collect())
    }

    /// The scheduler's share of interrupted work: every unfinished plan of `services` whose
    /// lease is free, ours or expired ([`leases::resumable`]) is taken (atomically: of several
    /// workers exactly one gets it) and resumed from its stored step. A plan whose worker died
    /// is taken over once its lease expired.
    pub async fn resume_unfinished(&self, services: &[Service]) -> Result<ResumeReport, Error> {
        let now = self.now();
        let plans = self.inner.plans.unfinished().await?;
        let mut stored = HashMap::new();
        for p in &plans {
            let key = LeaseKey::plan(&p.id);
            if let Some(l) = self.inner.leases.lease(&key).await? {
                stored.insert(key, l);
            }
        }
        let mut report = ResumeReport::default();
        let chosen = leases::resumable(&plans, &stored, &self.inner.worker, now);
        for p in &plans {
            if !chosen.contains(&&p.id) {
                let by = stored
                    .get(&LeaseKey::plan(&p.id))
                    .map(|l| format!("held by worker `{}`", l.holder))
                    .unwrap_or_else(|| "held by another worker".into());
                report.skipped.push((p.id.clone(), by));
            }
        }
        for p in plans.iter().filter(|p| chosen.contains(&&p.id)) {
            let Some(service) = services.iter().find(|s| s.vm == p.vm) else {
                report
                    .skipped
                    .push((p.id.clone(), "no service owns this vm".into()));
                continue;
            };
            match self.resume(service, &p.id).await {
                Ok(_) => report.finished.push(p.id.clone()),
                Err(Error::InProgress { operation }) => {
                    report.skipped.push((p.id.clone(), operation));
                }
                Err(e) => report.failed.push((p.id.clone(), e.to_string())),
            }
        }
        Ok(report)
    }

    /// Forgets leases that expired more than `keep` ago (one row per scheduled backup slot
    /// accumulates otherwise); how many.
    pub async fn prune_leases(&self, keep: Duration) -> Result<usize, Error> {
        let keep = time::Duration::try_from(keep).unwrap_or(time::Duration::days(7));
        self.inner.leases.prune(self.now() - keep).await
    }
}
