//! Reinstall: validate, store the plan, carry out each step idempotently, resume.

use secrecy::SecretString;

use super::{ClientArea, api_node, api_snapshot, api_storage, api_vmid};
use crate::error::Error;
use crate::ids::VmId;
use crate::notify::Notification;
use crate::outcomes::{Ending, OperationKind};
use crate::permissions::Feature;
use crate::reconcile::ReconcileStep;
use crate::reinstall::{
    self, NextStep, OperationPlan, PlanId, RedeployAction, ReinstallStep, StoredPlan,
};
use crate::service::Service;

/// A finished reinstall.
#[derive(Debug, Clone, PartialEq)]
pub struct ReinstallOutcome {
    /// The stored plan's id.
    pub plan: PlanId,
    /// The template's display name.
    pub template: String,
}

impl ClientArea {
    /// Reinstalls from an allowed template: `confirmation` must be exactly `REINSTALL` and no
    /// lock may hold. Backups are untouched; VMID, MACs, bridge, VLAN, rate and addresses are
    /// kept; the customer's firewall (options, rules, IP sets, aliases) is saved in the plan
    /// and written back. The plan is
    /// stored before each step; [`ClientArea::resume`] continues an interrupted one. The new
    /// password is handed to the notifier only.
    pub async fn reinstall(
        &self,
        service: &Service,
        template: VmId,
        confirmation: &str,
    ) -> Result<ReinstallOutcome, Error> {
        // Cheap refusals first (Access Denied, wrong word, template) before any request.
        let product = self.product_with(service, Feature::Reinstall)?;
        let idle = crate::permissions::VmState::default();
        reinstall::validate(product, &idle, template, confirmation)?;
        // A failed restore leaves a plan; choosing reinstall gives it up.
        for p in self.inner.plans.unfinished().await? {
            if p.vm == service.vm && matches!(p.plan, OperationPlan::Restore(_)) {
                self.inner.plans.remove(&p.id).await?;
            }
        }
        self.check_not_busy(service).await?;
        // Under the VM's lease: no other worker's cron work runs on it meanwhile.
        let vm_lease = self.vm_lease_for_plan(service).await?;
        let result = self
            .plan_and_run_reinstall(service, product, template, confirmation)
            .await;
        super::backup_ops::release_vm(vm_lease).await;
        result
    }

    async fn plan_and_run_reinstall(
        &self,
        service: &Service,
        product: &crate::product::Product,
        template: VmId,
        confirmation: &str,
    ) -> Result<ReinstallOutcome, Error> {
        let live = self.require(service, Feature::Reinstall).await?;
        let snaps = self.snapshot_listing(service).await?;
        let plan = reinstall::plan(
            product,
            service,
            &live.state,
            &live.config,
            &snaps,
            template,
            confirmation,
        )?;
        let (stored, _lease) = self
            .save_new_plan("reinstall", service, OperationPlan::Reinstall(plan))
            .await?;
        self.run_reinstall(service, stored).await
    }

    pub(crate) async fn run_reinstall(
        &self,
        service: &Service,
        stored: StoredPlan,
    ) -> Result<ReinstallOutcome, Error> {
        let _busy = self.mark_busy(service, "reinstall")?;
        let lease = self.plan_lease(&stored.id).await?;
        // Another worker may have moved it on before its lease expired: continue from there.
        let stored = self.inner.plans.load(&stored.id).await?.unwrap_or(stored);
        let OperationPlan::Reinstall(rp) = &stored.plan else {
            return Err(Error::invalid(
                "plan",
                stored.id.as_str(),
                "not a reinstall",
            ));
        };
        let mut password: Option<SecretString> = None;
        let start = reinstall::resume_point(&stored.plan, stored.done);
        for i in start..stored.plan.len() {
            let Some(NextStep::Reinstall(step)) = reinstall::next_step(&stored.plan, i) else {
                break;
            };
            lease.check_held()?;
            if let Err(e) = self
                .reinstall_step(service, &stored.id, rp, step, &mut password)
                .await
            {
                tracing::warn!(vm = %service.vm, plan = %stored.id, step = i, "reinstall stopped: {e}");
                self.record_outcome(
                    service,
                    &stored.id,
                    OperationKind::Reinstall,
                    Ending::Failed {
                        reason: e.to_string(),
                    },
                )
                .await;
                if let Err(e) = lease.release().await {
                    tracing::warn!(plan = %stored.id, error = %e, "cannot release the plan lease");
                }
                return Err(e);
            }
            if i + 1 > stored.done {
                self.inner.plans.record_progress(&stored.id, i + 1).await?;
            }
        }
        self.record_outcome(
            service,
            &stored.id,
            OperationKind::Reinstall,
            Ending::Succeeded,
        )
        .await;
        if let Err(e) = lease.complete().await {
            tracing::warn!(plan = %stored.id, error = %e, "cannot mark the plan lease done");
        }
        Ok(ReinstallOutcome {
            plan: stored.id,
            template: rp.template.name.clone(),
        })
    }

    async fn reinstall_step(
        &self,
        service: &Service,
        id: &PlanId,
        rp: &reinstall::ReinstallPlan,
        step: &ReinstallStep,
        password: &mut Option<SecretString>,
    ) -> Result<(), Error> {
        let vm = self.vm(service)?;
        match step {
            ReinstallStep::Stop => self.ensure_stopped(service).await,
            ReinstallStep::DeleteSnapshot { name } => {
                let listing = self.snapshot_listing(service).await?;
                if !listing.iter().any(|e| e.name == name.as_str()) {
                    return Ok(());
                }
                let t = vm
                    .snapshots()
                    .delete(&api_snapshot(name)?, false)
                    .await
                    .map_err(Error::pve("delete snapshot"))?;
                self.wait(t, "delete snapshot").await
            }
            ReinstallStep::DestroyDisk { key, volume } => {
                let config = self.config(service).await?;
                let vol = volume.to_string();
                let mut delete = Vec::new();
                if config.disk(key)?.is_some_and(|d| d.volume == vol) {
                    delete.push(key.clone());
                }
                // On PVE a deleted disk becomes `unusedN`; deleting that frees the volume.
                for (k, v) in config.as_map() {
                    if k.starts_with("unused") && v.split(',').next() == Some(vol.as_str()) {
                        delete.push(k.clone());
                    }
                }
                self.write_config(
                    service,
                    &crate::reconcile::ConfigUpdate {
                        set: vec![],
                        delete,
                    },
                )
                .await?;
                // Real PVE moves the key to `unusedN` on the first delete: free it too.
                let config = self.config(service).await?;
                let unused: Vec<String> = config
                    .as_map()
                    .iter()
                    .filter(|(k, v)| {
                        k.starts_with("unused") && v.split(',').next() == Some(vol.as_str())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                self.write_config(
                    service,
                    &crate::reconcile::ConfigUpdate {
                        set: vec![],
                        delete: unused,
                    },
                )
                .await
            }
            ReinstallStep::Redeploy { template, storage } => {
                self.redeploy(service, id, *template, storage).await
            }
            ReinstallStep::ReattachIdentity { nics } => {
                let config = self.config(service).await?;
                let set: Vec<(String, String)> = nics
                    .iter()
                    .filter(|(k, d)| config.get(k) != Some(d.to_string().as_str()))
                    .map(|(k, d)| (k.clone(), d.to_string()))
                    .collect();
                self.set_keys(service, set).await
            }
            ReinstallStep::ApplyPackage => {
                let steps = self.reconcile(service, false).await?;
                debug_assert!(!steps.contains(&ReconcileStep::Start));
                Ok(())
            }
            ReinstallStep::CloudInit {
                hostname,
                ipconfig0,
                nameserver,
                searchdomain,
                user,
            } => {
                let mut u = crate::reconcile::ConfigUpdate::default();
                // A VM name is one DNS name of at most 63 characters.
                if hostname.as_str().len() <= 63 {
                    u.set.push(("name".into(), hostname.to_string()));
                }
                if *ipconfig0 == crate::pve::IpConfig::default() {
                    u.delete.push("ipconfig0".into());
                } else {
                    u.set.push(("ipconfig0".into(), ipconfig0.to_string()));
                }
                match nameserver {
                    Some(n) => u.set.push(("nameserver".into(), n.to_string())),
                    None => u.delete.push("nameserver".into()),
                }
                u.set
                    .push(("searchdomain".into(), searchdomain.to_string()));
                u.set.push(("ciuser".into(), user.clone()));
                self.write_config(service, &u).await
            }
            ReinstallStep::SetPassword => {
                let pw = crate::password::generate(&mut super::basic::os_rng(), 20)?;
                let u = pve_vps_api::api::qemu_config::ConfigUpdate::new().cipassword(pw.clone());
                vm.update_config(&u)
                    .await
                    .map_err(Error::pve("set cloud-init password"))?;
                *password = Some(pw);
                Ok(())
            }
            ReinstallStep::RegenerateCloudInit => vm
                .cloudinit_regenerate()
                .await
                .map_err(Error::pve("regenerate cloud-init")),
            ReinstallStep::Start => {
                if self.state(service).await?.running {
                    return Ok(());
                }
                let t = vm.start().await.map_err(Error::pve("start vm"))?;
                self.wait(t, "start vm").await
            }
            ReinstallStep::Notify => {
                let Some(pw) = password.clone() else {
                    // resume_point sends a resumed plan back to SetPassword; never mail nothing.
                    return Err(Error::InvalidProgress {
                        id: id.to_string(),
                        reason: "no password in memory at notify".into(),
                    });
                };
                self.inner
                    .notifier
                    .notify(
                        service,
                        &Notification::ReinstallDone {
                            template: rp.template.name.clone(),
                            password: pw,
                        },
                    )
                    .await
            }
        }
    }

    /// Destroys the emptied VM and full-clones the template into the same VMID on the same
    /// node and storage, keeping the customer's firewall. Idempotent and resumable: the destroy
    /// and clone task UPIDs are recorded in the stored plan as they are requested, and
    /// [`reinstall::redeploy_action`] decides from them (not from the VM's disks) whether the
    /// VM is the old one or the clone.
    async fn redeploy(
        &self,
        service: &Service,
        id: &PlanId,
        template: VmId,
        storage: &crate::ids::StorageId,
    ) -> Result<(), Error> {
        let vm = self.vm(service)?;
        // Each pass moves the redeploy forward by one action; a handful is plenty.
        let mut finished = false;
        for _ in 0..8 {
            let plan = self.stored_reinstall(id).await?;
            let config = self.config_if_exists(service).await?;
            match reinstall::redeploy_action(plan.redeploy.as_deref(), config.as_ref())? {
                RedeployAction::Destroy => {
                    // Destroying the VM deletes `<vmid>.fw`: save the customer's firewall
                    // first, in the plan store, so a crash after the destroy does not lose it
                    // (and never again once saved: a resumed pass must not overwrite it).
                    if plan.firewall.is_none() {
                        let saved = self.save_firewall(service).await?;
                        self.update_reinstall(id, |p| p.firewall = Some(saved))
                            .await?;
                    }
                    let t = vm
                        .destroy(false, false)
                        .await
                        .map_err(Error::pve("remove old vm definition"))?;
                    let upid = t.upid().to_string();
                    self.update_reinstall(id, |p| {
                        p.redeploy.get_or_insert_with(Default::default).destroy_task = Some(upid)
                    })
                    .await?;
                }
                RedeployAction::WaitDestroy(upid) => {
                    let waited = self
                        .wait(self.upid_task(&upid)?, "remove old vm definition")
                        .await;
                    if self.config_if_exists(service).await?.is_none() {
                        self.update_reinstall(id, |p| {
                            let r = p.redeploy.get_or_insert_with(Default::default);
                            r.destroyed = true;
                        })
                        .await?;
                    } else {
                        if waited.is_ok() || !self.task_running(&upid).await? {
                            // The destroy ended and the VM is still there: destroy it again
                            // (the saved firewall is kept).
                            self.update_reinstall(id, |p| {
                                p.redeploy.get_or_insert_with(Default::default).destroy_task = None
                            })
                            .await?;
                        }
                        waited?;
                    }
                }
                RedeployAction::Clone => {
                    let tpl = self.template_node(template).await?;
                    let opts =
                        pve_vps_api::api::qemu_config::CloneOptions::new(api_vmid(service.vmid())?)
                            .full(true)
                            .target(api_node(service.vm.node())?)
                            .storage(api_storage(storage)?);
                    let opts = if service.domain.as_str().len() <= 63 {
                        opts.name(service.domain.as_str()).map_err(|e| {
                            Error::invalid("vm name", service.domain.to_string(), e.to_string())
                        })?
                    } else {
                        opts
                    };
                    let t = self
                        .inner
                        .client
                        .node(&tpl)
                        .qemu(api_vmid(template)?)
                        .clone_vm(&opts)
                        .await
                        .map_err(Error::pve("clone template"))?;
                    let upid = t.upid().to_string();
                    self.update_reinstall(id, |p| {
                        let r = p.redeploy.get_or_insert_with(Default::default);
                        r.destroyed = true;
                        r.clone_task = Some(upid);
                    })
                    .await?;
                }
                RedeployAction::WaitClone(upid) => {
                    let waited = self.wait(self.upid_task(&upid)?, "clone template").await;
                    if waited.is_err() && !self.task_running(&upid).await? {
                        // The clone failed: clone again next time; a VM it left behind is
                        // not the customer's old VM and is destroyed first.
                        let leftover = self.config_if_exists(service).await?.is_some();
                        self.update_reinstall(id, |p| {
                            let r = p.redeploy.get_or_insert_with(Default::default);
                            r.clone_task = None;
                            if leftover {
                                r.destroyed = false;
                                r.destroy_task = None;
                            }
                        })
                        .await?;
                    }
                    waited?;
                    finished = true;
                    break;
                }
                RedeployAction::WaitCloneLock => {
                    for _ in 0..(self.inner.task_timeout.as_millis() / 50).max(1) {
                        if self.state(service).await?.lock.is_none() {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    finished = true;
                    break;
                }
                RedeployAction::Done => {
                    finished = true;
                    break;
                }
            }
        }
        if !finished {
            return Err(Error::InvalidProgress {
                id: id.to_string(),
                reason: "redeploy did not reach the clone".into(),
            });
        }
        if let Some(saved) = self.stored_reinstall(id).await?.firewall {
            self.restore_firewall(service, &saved).await?;
        }
        Ok(())
    }

    /// The VM's config, or `None` when the VM does not exist.
    async fn config_if_exists(
        &self,
        service: &Service,
    ) -> Result<Option<crate::pve::VmConfig>, Error> {
        match self.vm(service)?.config().await {
            Ok(c) => Ok(Some(crate::pve::VmConfig::from_map(c.raw))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Error::pve("read vm config")(e)),
        }
    }

    fn upid_task(&self, upid: &str) -> Result<pve_vps_api::TaskHandle, Error> {
        let u: pve_vps_api::Upid = upid.parse().map_err(|e: pve_vps_api::Error| {
            Error::invalid("task reference", upid, e.to_string())
        })?;
        Ok(self.inner.client.task(u))
    }

    /// Whether a task still runs (a status that cannot be read counts as running: unknown).
    async fn task_running(&self, upid: &str) -> Result<bool, Error> {
        Ok(match self.upid_task(upid)?.status().await {
            Ok(st) => st.status == pve_vps_api::task::TaskState::Running,
            Err(_) => true,
        })
    }

    /// The stored reinstall plan.
    async fn stored_reinstall(&self, id: &PlanId) -> Result<reinstall::ReinstallPlan, Error> {
        match self.inner.plans.load(id).await? {
            Some(StoredPlan {
                plan: OperationPlan::Reinstall(p),
                ..
            }) => Ok(p),
            _ => Err(Error::invalid(
                "plan id",
                id.as_str(),
                "no such reinstall plan",
            )),
        }
    }

    /// Changes the stored reinstall plan.
    async fn update_reinstall(
        &self,
        id: &PlanId,
        f: impl FnOnce(&mut reinstall::ReinstallPlan) + Send,
    ) -> Result<(), Error> {
        let mut stored = self
            .inner
            .plans
            .load(id)
            .await?
            .ok_or_else(|| Error::invalid("plan id", id.as_str(), "no such plan"))?;
        if let OperationPlan::Reinstall(p) = &mut stored.plan {
            f(p);
        }
        self.inner.plans.save(&stored).await
    }

    async fn template_node(&self, template: VmId) -> Result<pve_vps_api::NodeName, Error> {
        let rows = self
            .inner
            .client
            .cluster_resources(Some(pve_vps_api::api::cluster::ResourceFilter::Vm))
            .await
            .map_err(Error::pve("find template"))?;
        let node = rows
            .iter()
            .find(|r| r.vmid == Some(u64::from(template.get())))
            .and_then(|r| r.node.clone())
            .ok_or_else(|| {
                Error::invalid("template", template.to_string(), "not found on the cluster")
            })?;
        node.parse().map_err(|e: pve_vps_api::Error| {
            Error::invalid("node name", node.clone(), e.to_string())
        })
    }
}
