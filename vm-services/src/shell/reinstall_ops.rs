//! Reinstall: validate, store the plan, carry out each step idempotently, resume.

use secrecy::SecretString;

use super::{ClientArea, api_node, api_snapshot, api_storage, api_vmid};
use crate::error::Error;
use crate::ids::VmId;
use crate::notify::Notification;
use crate::permissions::Feature;
use crate::reconcile::ReconcileStep;
use crate::reinstall::{self, NextStep, OperationPlan, PlanId, ReinstallStep, StoredPlan};
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
        let product = self.product(service)?;
        // Cheap refusals first (Access Denied, wrong word, template) before any request.
        let idle = crate::permissions::VmState::default();
        if !product.permissions.allows(Feature::Reinstall) {
            return Err(Error::AccessDenied {
                feature: Feature::Reinstall,
            });
        }
        reinstall::validate(product, &idle, template, confirmation)?;
        // A failed restore leaves a plan; choosing reinstall gives it up.
        for p in self.inner.plans.unfinished()? {
            if p.vm == service.vm && matches!(p.plan, OperationPlan::Restore(_)) {
                self.inner.plans.remove(&p.id)?;
            }
        }
        self.check_not_busy(service)?;
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
        let stored = StoredPlan {
            id: PlanId::generate("reinstall", service.vmid(), self.now())?,
            vm: service.vm.clone(),
            plan: OperationPlan::Reinstall(plan),
            done: 0,
        };
        self.inner.plans.save(&stored)?;
        self.run_reinstall(service, stored).await
    }

    pub(crate) async fn run_reinstall(
        &self,
        service: &Service,
        stored: StoredPlan,
    ) -> Result<ReinstallOutcome, Error> {
        let _busy = self.mark_busy(service, "reinstall")?;
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
            self.reinstall_step(service, &stored.id, rp, step, &mut password)
                .await
                .map_err(|e| {
                    tracing::warn!(vm = %service.vm, plan = %stored.id, step = i, "reinstall stopped: {e}");
                    e
                })?;
            if i + 1 > stored.done {
                self.inner.plans.record_progress(&stored.id, i + 1)?;
            }
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
                let u = proxmox_api::api::qemu_config::ConfigUpdate::new().cipassword(pw.clone());
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
    /// node and storage, keeping the customer's firewall. Idempotent: a VM that already has
    /// disks again is the clone; a VM without disks is the old one; no VM means destroyed.
    async fn redeploy(
        &self,
        service: &Service,
        id: &PlanId,
        template: VmId,
        storage: &crate::ids::StorageId,
    ) -> Result<(), Error> {
        let vm = self.vm(service)?;
        let exists = match vm.config().await {
            Ok(c) => Some(crate::pve::VmConfig::from_map(c.raw)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(Error::pve("read vm config")(e)),
        };
        let cloned = exists.as_ref().is_some_and(|c| {
            c.disks().map(|d| !d.is_empty()).unwrap_or(false)
                || c.lock().ok().flatten() == Some(crate::pve::LockKind::Clone)
        });
        if !cloned {
            if let Some(_old) = exists {
                // Destroying the VM deletes `<vmid>.fw`: save the customer's firewall first,
                // in the plan store so a crash after the destroy does not lose it.
                let saved = self.save_firewall(service).await?;
                self.store_saved_firewall(id, saved)?;
                let t = vm
                    .destroy(false, false)
                    .await
                    .map_err(Error::pve("remove old vm definition"))?;
                self.wait(t, "remove old vm definition").await?;
            }
            let tpl = self.template_node(template).await?;
            let opts = proxmox_api::api::qemu_config::CloneOptions::new(api_vmid(service.vmid())?)
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
            self.wait(t, "clone template").await?;
        } else {
            // A clone still running: wait for its lock to go.
            for _ in 0..(self.inner.task_timeout.as_millis() / 50).max(1) {
                if self.state(service).await?.lock.is_none() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let stored = self.inner.plans.load(id)?;
        if let Some(StoredPlan {
            plan:
                OperationPlan::Reinstall(reinstall::ReinstallPlan {
                    firewall: Some(saved),
                    ..
                }),
            ..
        }) = stored
        {
            self.restore_firewall(service, &saved).await?;
        }
        Ok(())
    }

    async fn template_node(&self, template: VmId) -> Result<proxmox_api::NodeName, Error> {
        let rows = self
            .inner
            .client
            .cluster_resources(Some(proxmox_api::api::cluster::ResourceFilter::Vm))
            .await
            .map_err(Error::pve("find template"))?;
        let node = rows
            .iter()
            .find(|r| r.vmid == Some(u64::from(template.get())))
            .and_then(|r| r.node.clone())
            .ok_or_else(|| {
                Error::invalid("template", template.to_string(), "not found on the cluster")
            })?;
        node.parse().map_err(|e: proxmox_api::Error| {
            Error::invalid("node name", node.clone(), e.to_string())
        })
    }

    /// Keeps the customer's firewall in the stored plan before the VM (and its `.fw`) is
    /// destroyed.
    fn store_saved_firewall(
        &self,
        id: &PlanId,
        saved: crate::firewall::SavedFirewall,
    ) -> Result<(), Error> {
        let mut stored = self
            .inner
            .plans
            .load(id)?
            .ok_or_else(|| Error::invalid("plan id", id.as_str(), "no such plan"))?;
        if let OperationPlan::Reinstall(p) = &mut stored.plan {
            p.firewall = Some(saved);
        }
        self.inner.plans.save(&stored)
    }
}
