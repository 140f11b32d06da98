//! Backups: schedule, listing with quota, manual backup, removal, restore with reconciliation
//! (stored and resumable), and the scheduled tick.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::exec::TaskRef;
use super::{ClientArea, api_storage, api_vmid, api_volume};
use crate::backups::{self, BackupItem, ScheduledVm, TickAction, WeeklySchedule};
use crate::error::Error;
use crate::ids::{NodeName, StorageId, VmId, VolumeId};
use crate::leases::LeaseKey;
use crate::notify::Notification;
use crate::outcomes::{Ending, OperationKind};
use crate::permissions::Feature;
use crate::quota::QuotaCounter;
use crate::reconcile::{self, ReconcileStep, RestoreStep};
use crate::reinstall::{NextStep, OperationPlan, PlanId, StoredPlan};
use crate::service::{Service, VmRef};

/// One backup as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupView {
    /// The archive.
    pub volid: VolumeId,
    /// Creation time (unix seconds).
    pub ctime: i64,
    /// Notes.
    pub notes: String,
    /// Size in bytes.
    pub size: i64,
    /// Protected archives cannot be removed.
    pub protected: bool,
}

/// The backups page: archives (newest first) and the `N/M` counter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupList {
    /// `N/M`.
    pub quota: QuotaCounter,
    /// The archives.
    pub backups: Vec<BackupView>,
}

/// A finished restore.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreOutcome {
    /// The stored plan's id.
    pub plan: PlanId,
    /// The reconciliation steps that were needed.
    pub reconciled: Vec<ReconcileStep>,
}

/// What a scheduled tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Listing requests sent (one per node and storage).
    pub listing_requests: usize,
    /// Archives deleted to free a slot.
    pub deleted: Vec<VolumeId>,
    /// VMs backed up.
    pub created: Vec<VmRef>,
    /// VMs skipped at the re-check, with the reason (locked, already backed up today).
    pub skipped: Vec<(VmRef, String)>,
    /// Failures.
    pub failed: Vec<(VmRef, String)>,
}

pub(crate) fn backup_item(c: pve_vps_api::api::backup::ContentItem) -> Option<BackupItem> {
    Some(BackupItem {
        volid: c.volid.parse().ok()?,
        size: c.size.unwrap_or(0) as i64,
        ctime: c.ctime.unwrap_or(0),
        notes: c.notes,
        protected: c.protected,
        vmid: c.vmid.and_then(|v| VmId::new(u32::try_from(v).ok()?).ok()),
    })
}

impl ClientArea {
    /// The saved schedule (all days off when none was saved).
    pub async fn backup_schedule(&self, service: &Service) -> Result<WeeklySchedule, Error> {
        self.product_with(service, Feature::Backups)?;
        Ok(self
            .inner
            .schedules
            .get(service.vmid())
            .await?
            .unwrap_or_default())
    }

    /// Saves the schedule ("Save Schedule").
    pub async fn set_backup_schedule(
        &self,
        service: &Service,
        schedule: &WeeklySchedule,
    ) -> Result<(), Error> {
        self.product_with(service, Feature::Backups)?;
        self.inner.schedules.put(service.vmid(), schedule).await
    }

    /// The VM's archives on the product's backup storage.
    pub(crate) async fn backup_listing(&self, service: &Service) -> Result<Vec<BackupItem>, Error> {
        let product = self.product(service)?;
        let items = self
            .node(service.vm.node())?
            .storage(&api_storage(&product.backups.storage)?)
            .content(Some("backup"), Some(api_vmid(service.vmid())?))
            .await
            .map_err(Error::pve("list backups"))?;
        Ok(items
            .into_iter()
            .filter_map(backup_item)
            .filter(|b| b.owner() == Some(service.vmid()))
            .collect())
    }

    /// The backups page.
    pub async fn backups(&self, service: &Service) -> Result<BackupList, Error> {
        let product = self.product_with(service, Feature::Backups)?;
        let listing = self.backup_listing(service).await?;
        let mut views: Vec<BackupView> = listing
            .iter()
            .filter(|b| b.volid.storage() == &product.backups.storage)
            .map(|b| BackupView {
                volid: b.volid.clone(),
                ctime: b.ctime,
                notes: b.notes.clone().unwrap_or_default(),
                size: b.size,
                protected: b.protected,
            })
            .collect();
        views.sort_by(|a, b| b.ctime.cmp(&a.ctime).then(a.volid.cmp(&b.volid)));
        Ok(BackupList {
            quota: backups::quota(product, service, &listing),
            backups: views,
        })
    }

    /// "Backup now": refused while locked or when the quota is full (a manual backup never
    /// rotates). The task can be polled; while it runs the VM holds the `backup` lock and
    /// every other operation is refused with that reason.
    pub async fn backup_now(&self, service: &Service, notes: &str) -> Result<TaskRef, Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Backups).await?;
        let listing = self.backup_listing(service).await?;
        let plan = backups::plan_manual(product, service, &live.state, &listing, notes)?;
        self.start_vzdump(&plan).await
    }

    async fn start_vzdump(&self, plan: &backups::CreateBackup) -> Result<TaskRef, Error> {
        use pve_vps_api::api::backup::{BackupMode, Compression, VzdumpRequest};
        let mut req = VzdumpRequest::new(api_vmid(plan.vm.vmid())?)
            .storage(api_storage(&plan.storage)?)
            .mode(BackupMode::Snapshot)
            .compress(Compression::Zstd);
        if !plan.notes.is_empty() {
            req = req
                .notes_template(&plan.notes)
                .map_err(|e| Error::invalid("backup notes", plan.notes.clone(), e.to_string()))?;
        }
        let t = self
            .node(plan.vm.node())?
            .vzdump(&req)
            .await
            .map_err(Error::pve("start backup"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Removes a backup of this VM (never a protected one, never another VM's).
    pub async fn remove_backup(&self, service: &Service, volid: &VolumeId) -> Result<(), Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Backups).await?;
        let listing = self.backup_listing(service).await?;
        backups::check_remove(product, service, &live.state, &listing, volid)?;
        self.delete_archive(service.vm.node(), volid).await
    }

    async fn delete_archive(&self, node: &NodeName, volid: &VolumeId) -> Result<(), Error> {
        let storage = self.node(node)?.storage(&api_storage(volid.storage())?);
        match storage.delete_volume(&api_volume(volid)?).await {
            // The delete runs as an `imgdel` task: wait for it so a failure is reported.
            Ok(Some(t)) => self.wait(t, "remove backup").await,
            Ok(None) => Ok(()),
            Err(e) => Err(Error::pve("remove backup")(e)),
        }
    }

    /// Restores an archive of this VM: stop, restore (`force`, never `unique`), reconcile with
    /// the package and identity, start, notify. The plan and the step reached are stored before
    /// each step. On failure the customer is notified and the error ([`Error::is_restore_failed`])
    /// names the plan: [`ClientArea::resume`] retries with the same archive, or reinstall.
    pub async fn restore(
        &self,
        service: &Service,
        archive: &VolumeId,
    ) -> Result<RestoreOutcome, Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        // Under the VM's lease: no other worker's cron work (a scheduled backup, a snapshot
        // sweep) runs on it meanwhile.
        let vm_lease = self.vm_lease_for_plan(service).await?;
        let result = async {
            let live = self.require(service, Feature::Backups).await?;
            let listing = self.backup_listing(service).await?;
            let plan = reconcile::plan_restore(product, service, &live.state, &listing, archive)?;
            let (stored, _lease) = self
                .save_new_plan("restore", service, OperationPlan::Restore(plan))
                .await?;
            self.run_restore(service, stored).await
        }
        .await;
        release_vm(vm_lease).await;
        result
    }

    /// Resumes an interrupted or failed restore or reinstall from its stored step, under the
    /// VM's lease and the plan's lease: refused ([`Error::is_locked`], naming the worker) while another worker
    /// (a scheduler, another portal instance) holds it; its outcome is recorded for every
    /// instance to show ([`ClientArea::last_outcome`]).
    pub async fn resume(&self, service: &Service, plan: &PlanId) -> Result<Resumed, Error> {
        let stored = self
            .inner
            .plans
            .load(plan)
            .await?
            .ok_or_else(|| Error::invalid("plan id", plan.as_str(), "no such plan"))?;
        if stored.vm != service.vm {
            return Err(Error::ForeignVmid {
                expected: service.vmid(),
                got: stored.vm.vmid(),
            });
        }
        let vm_lease = self.vm_lease_for_plan(service).await?;
        let result = match &stored.plan {
            OperationPlan::Restore(_) => self
                .run_restore(service, stored)
                .await
                .map(Resumed::Restore),
            OperationPlan::Reinstall(_) => self
                .run_reinstall(service, stored)
                .await
                .map(Resumed::Reinstall),
        };
        release_vm(vm_lease).await;
        result
    }

    /// Gives up an unfinished plan (e.g. the customer chose reinstall after a failed restore).
    pub async fn abandon(&self, service: &Service, plan: &PlanId) -> Result<bool, Error> {
        match self.inner.plans.load(plan).await? {
            Some(p) if p.vm == service.vm => self.inner.plans.remove(plan).await,
            Some(p) => Err(Error::ForeignVmid {
                expected: service.vmid(),
                got: p.vm.vmid(),
            }),
            None => Ok(false),
        }
    }

    async fn run_restore(
        &self,
        service: &Service,
        stored: StoredPlan,
    ) -> Result<RestoreOutcome, Error> {
        let _busy = self.mark_busy(service, "restore")?;
        let lease = self.plan_lease(&stored.id).await?;
        // Another worker may have moved it on before its lease expired: continue from there.
        let stored = self.inner.plans.load(&stored.id).await?.unwrap_or(stored);
        let OperationPlan::Restore(rp) = &stored.plan else {
            return Err(Error::invalid("plan", stored.id.as_str(), "not a restore"));
        };
        let archive = rp.archive.clone();
        let mut reconciled = Vec::new();
        let start = crate::reinstall::resume_point(&stored.plan, stored.done);
        for i in start..stored.plan.len() {
            let Some(NextStep::Restore(step)) = crate::reinstall::next_step(&stored.plan, i) else {
                break;
            };
            lease.check_held()?;
            let result = match step {
                RestoreStep::Stop => self.ensure_stopped(service).await,
                RestoreStep::Restore { archive } => self.restore_archive(service, archive).await,
                RestoreStep::Reconcile => match self.reconcile(service, true).await {
                    Ok(steps) => {
                        reconciled = steps;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                RestoreStep::Notify => {
                    self.inner
                        .notifier
                        .notify(
                            service,
                            &Notification::BackupRestored {
                                archive: archive.clone(),
                            },
                        )
                        .await
                }
            };
            if let Err(e) = result {
                let reason = e.to_string();
                let _ = self
                    .inner
                    .notifier
                    .notify(
                        service,
                        &Notification::RestoreFailed {
                            archive: archive.clone(),
                            reason: reason.clone(),
                        },
                    )
                    .await;
                tracing::warn!(vm = %service.vm, plan = %stored.id, step = i, "restore failed: {reason}");
                self.record_outcome(
                    service,
                    &stored.id,
                    OperationKind::Restore,
                    Ending::NeedsRetryOrReinstall {
                        reason: reason.clone(),
                    },
                )
                .await;
                if let Err(e) = lease.release().await {
                    tracing::warn!(plan = %stored.id, error = %e, "cannot release the plan lease");
                }
                return Err(Error::RestoreFailed {
                    archive,
                    plan: stored.id.to_string(),
                    reason,
                });
            }
            self.inner.plans.record_progress(&stored.id, i + 1).await?;
        }
        self.record_outcome(
            service,
            &stored.id,
            OperationKind::Restore,
            Ending::Succeeded,
        )
        .await;
        if let Err(e) = lease.complete().await {
            tracing::warn!(plan = %stored.id, error = %e, "cannot mark the plan lease done");
        }
        Ok(RestoreOutcome {
            plan: stored.id,
            reconciled,
        })
    }

    /// Stops the VM if it runs (idempotent).
    pub(crate) async fn ensure_stopped(&self, service: &Service) -> Result<(), Error> {
        if !self.state(service).await?.running {
            return Ok(());
        }
        let t = self
            .vm(service)?
            .stop()
            .await
            .map_err(Error::pve("stop vm"))?;
        self.wait(t, "stop vm").await
    }

    async fn restore_archive(&self, service: &Service, archive: &VolumeId) -> Result<(), Error> {
        let spec = pve_vps_api::api::qemu_config::CreateVm::restore(
            api_vmid(service.vmid())?,
            api_volume(archive)?,
        )
        .force(true);
        let t = self
            .node(service.vm.node())?
            .create_vm(&spec)
            .await
            .map_err(Error::pve("restore backup"))?;
        self.wait(t, "restore backup").await
    }

    /// The scheduled backup tick (cron): lists backups once per node and storage, plans with
    /// the pure planner, then before each action re-checks the lock and today's backup, so
    /// two workers running at once create one backup. Waits for each backup task.
    pub async fn backup_tick(&self, services: &[Service]) -> Result<TickReport, Error> {
        let now = self.now();
        let mut report = TickReport::default();
        let mut vms = Vec::new();
        let mut by_vm: HashMap<VmRef, &Service> = HashMap::new();
        for s in services {
            let Ok(product) = self.product(s) else {
                continue;
            };
            if !product.permissions.backups {
                continue;
            }
            let Some(schedule) = self.inner.schedules.get(s.vmid()).await? else {
                continue;
            };
            vms.push(ScheduledVm {
                vm: s.vm.clone(),
                storage: product.backups.storage.clone(),
                quota: product.backups.quota,
                schedule,
            });
            by_vm.insert(s.vm.clone(), s);
        }
        // Only VMs due now need listings; list each (node, storage) once.
        let due = backups::plan_tick(&vms, &HashMap::new(), now, self.inner.offset);
        let due_vms: BTreeSet<VmRef> = due
            .actions
            .iter()
            .filter_map(|a| match a {
                TickAction::Create(c) => Some(c.vm.clone()),
                TickAction::Delete { .. } => None,
            })
            .collect();
        let pairs: BTreeSet<(NodeName, StorageId)> = vms
            .iter()
            .filter(|v| due_vms.contains(&v.vm))
            .map(|v| (v.vm.node().clone(), v.storage.clone()))
            .collect();
        let mut listing: HashMap<VmId, Vec<BackupItem>> = HashMap::new();
        let mut seen = BTreeSet::new();
        for (node, storage) in pairs {
            report.listing_requests += 1;
            let items = self
                .node(&node)?
                .storage(&api_storage(&storage)?)
                .content(Some("backup"), None)
                .await
                .map_err(Error::pve("list backups"))?;
            for b in items.into_iter().filter_map(backup_item) {
                if let Some(v) = b.owner()
                    && seen.insert(b.volid.clone())
                {
                    listing.entry(v).or_default().push(b);
                }
            }
        }
        let plan = backups::plan_tick(&vms, &listing, now, self.inner.offset);
        for (vm, why) in &plan.blocked {
            report.failed.push((vm.clone(), format!("{why:?}")));
        }
        // One VM's actions (rotation deletes, then the backup) run under the lease of its
        // scheduled slot, so across workers each scheduled backup is made once; the fresh
        // listing in `tick_action` is the second guard.
        let mut order: Vec<&VmRef> = Vec::new();
        let mut actions: HashMap<&VmRef, Vec<&TickAction>> = HashMap::new();
        for action in &plan.actions {
            let vm = match action {
                TickAction::Delete { vm, .. } => vm,
                TickAction::Create(c) => &c.vm,
            };
            if !actions.contains_key(vm) {
                order.push(vm);
            }
            actions.entry(vm).or_default().push(action);
        }
        for vm in order {
            let Some(service) = by_vm.get(vm).copied() else {
                continue;
            };
            let Some(slot) = vms
                .iter()
                .find(|v| &v.vm == vm)
                .and_then(|v| backups::due_slot(&v.schedule, now, self.inner.offset))
            else {
                continue;
            };
            let key = LeaseKey::backup_slot(vm.vmid(), slot);
            // The VM first (no other worker's cron work on it may lock it under the backup),
            // then the slot.
            let vm_lease = match self.vm_lease(vm.vmid(), Some(&key)).await? {
                Ok(g) => g,
                Err(why) => {
                    report.skipped.push((vm.clone(), why));
                    continue;
                }
            };
            let Some(lease) = self.take_lease(key.clone()).await? else {
                let why = match self.inner.leases.lease(&key).await? {
                    Some(l) if l.done => "this slot's backup is done".to_owned(),
                    Some(l) => format!("claimed by worker `{}`", l.holder),
                    None => "claimed by another worker".to_owned(),
                };
                release_vm(vm_lease).await;
                report.skipped.push((vm.clone(), why));
                continue;
            };
            let mut result = Ok(());
            for action in actions.get(vm).into_iter().flatten() {
                result = match vm_lease.check_held() {
                    Ok(()) => self.tick_action(service, action, now, &mut report).await,
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    break;
                }
            }
            match result {
                Ok(()) => {
                    // The backup exists; a slot left open only costs a later re-check.
                    if let Err(e) = lease.complete().await {
                        tracing::warn!(lease = %key, error = %e, "cannot mark the slot done");
                    }
                }
                Err(e) => {
                    // Give the slot back: a later round (or another worker) tries again.
                    if let Err(r) = lease.release().await {
                        tracing::warn!(lease = %key, error = %r, "cannot release the slot");
                    }
                    if e.is_locked() {
                        report.skipped.push((vm.clone(), e.to_string()));
                    } else {
                        report.failed.push((vm.clone(), e.to_string()));
                    }
                }
            }
            release_vm(vm_lease).await;
        }
        Ok(report)
    }

    async fn tick_action(
        &self,
        service: &Service,
        action: &TickAction,
        now: time::OffsetDateTime,
        report: &mut TickReport,
    ) -> Result<(), Error> {
        // Re-check right before acting: another worker may have started or finished.
        self.check_not_busy(service).await?;
        if let Some(lock) = self.state(service).await?.lock {
            return Err(Error::Locked { lock });
        }
        let fresh = self.backup_listing(service).await?;
        let local = now.to_offset(self.inner.offset);
        let day_start = local.replace_time(time::Time::MIDNIGHT).unix_timestamp();
        let product = self.product(service)?;
        let today = fresh.iter().any(|b| {
            b.volid.storage() == &product.backups.storage
                && (day_start..day_start + 86_400).contains(&b.ctime)
        });
        if today {
            report
                .skipped
                .push((service.vm.clone(), "already backed up today".into()));
            return Ok(());
        }
        match action {
            TickAction::Delete { vm, volid } => {
                if !fresh.iter().any(|b| &b.volid == volid && !b.protected) {
                    return Ok(());
                }
                self.delete_archive(vm.node(), volid).await?;
                report.deleted.push(volid.clone());
            }
            TickAction::Create(c) => {
                let _busy = self.mark_busy(service, "backup")?;
                let t = self.start_vzdump(c).await?;
                let h = self.inner.client.task(t.as_str().parse().map_err(
                    |e: pve_vps_api::Error| Error::invalid("upid", t.as_str(), e.to_string()),
                )?);
                self.wait(h, "scheduled backup").await?;
                report.created.push(c.vm.clone());
            }
        }
        Ok(())
    }
}

/// Gives a per-VM lease back (a failure only delays other workers until it expires).
pub(crate) async fn release_vm(lease: super::lease_ops::LeaseGuard) {
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "cannot release the vm lease");
    }
}

/// What [`ClientArea::resume`] finished.
#[derive(Debug, Clone, PartialEq)]
pub enum Resumed {
    /// A restore.
    Restore(RestoreOutcome),
    /// A reinstall.
    Reinstall(super::ReinstallOutcome),
}
