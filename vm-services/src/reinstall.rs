//! Reinstall: validation, the identity that survives it, and the ordered plan.
//!
//! The plan is a value: it is stored (see [`crate::stores::PlanStore`]) with the number of steps
//! done, so an interrupted reinstall resumes where it stopped. Secrets are never part of a
//! plan: the new password is generated when [`ReinstallStep::SetPassword`] runs, and
//! [`resume_point`] sends a resumed plan back to that step if the password was not yet mailed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::{DomainName, StorageId, VmId, VolumeId, serde_via_str};
use crate::permissions::{Feature, VmState, require};
use crate::product::{OsTemplate, Product};
use crate::pve::{IpConfig, Nameservers, NetDevice, VmConfig};
use crate::reconcile::{RestorePlan, RestoreStep, desired_ipconfig};
use crate::service::{Service, VmRef};
use crate::snapshots::{SnapshotEntry, SnapshotName};

pub use crate::stores::PlanStore;

/// The word the customer must type.
pub const CONFIRMATION_WORD: &str = "REINSTALL";

/// The user cloud-init creates.
pub const DEFAULT_USER: &str = "root";

/// Checks a reinstall request: the product allows it, no lock holds, the confirmation is
/// exactly `REINSTALL` and the template is one the product offers.
pub fn validate<'p>(
    product: &'p Product,
    state: &VmState,
    template: VmId,
    confirmation: &str,
) -> Result<&'p OsTemplate, Error> {
    require(product, Feature::Reinstall, state)?;
    if confirmation != CONFIRMATION_WORD {
        return Err(Error::WrongConfirmation {
            got: confirmation
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect(),
        });
    }
    product
        .template(template)
        .ok_or(Error::TemplateNotAllowed { template })
}

/// What a reinstall keeps: VMID, every NIC with its MAC, VLAN, bridge and rate, and the
/// service's addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The VMID.
    pub vmid: VmId,
    /// Every `netN` as it was (net0 carries the service's MAC).
    pub nics: Vec<(String, NetDevice)>,
    /// `ipconfig0` from the service's addresses.
    pub ipconfig0: IpConfig,
}

/// Extracts the identity from the current config. The service is authoritative for net0's
/// MAC and for the addresses; a NIC that does not parse is an error (it would lose its MAC).
pub fn extract_identity(config: &VmConfig, service: &Service) -> Result<Identity, Error> {
    let mut nics = config.nets()?;
    match nics.iter_mut().find(|(k, _)| k == "net0") {
        Some((_, d)) => d.mac = Some(service.mac),
        None => {
            let mut d = NetDevice::new(crate::pve::NicModel::virtio(), Some(service.mac));
            d.firewall = Some(true);
            nics.insert(0, ("net0".into(), d));
        }
    }
    Ok(Identity {
        vmid: service.vmid(),
        nics,
        ipconfig0: desired_ipconfig(service),
    })
}

/// One step of a reinstall, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReinstallStep {
    /// Stop the VM (skip when stopped).
    Stop,
    /// Delete one snapshot.
    DeleteSnapshot {
        /// Its name.
        name: SnapshotName,
    },
    /// Destroy one of the VM's disks (never a backup volume).
    DestroyDisk {
        /// Config key.
        key: String,
        /// The volume.
        volume: VolumeId,
    },
    /// Remove the emptied VM definition and full-clone the template into the same VMID.
    ///
    /// Removing a VM also removes its `<vmid>.fw`: the executor reads the customer's firewall
    /// options, rules, IP sets and aliases before this step, keeps them in the stored plan, and
    /// writes them back after it (the `ipfilter-netN` sets are not kept: they are rebuilt by
    /// [`ReinstallStep::ApplyPackage`]).
    Redeploy {
        /// The template VMID.
        template: VmId,
        /// The storage for the clone's disks (the package's system disk storage).
        storage: StorageId,
    },
    /// Write every NIC back with its MAC, bridge, VLAN and rate.
    ReattachIdentity {
        /// The NICs.
        nics: Vec<(String, NetDevice)>,
    },
    /// Apply the package: run [`crate::reconcile::plan`] on the new VM and carry out every
    /// step except `Start` (CPU, RAM, disk sizes and limits, additional disk, network, ipfilter).
    ApplyPackage,
    /// Cloud-init: hostname, addresses, gateways, DNS and user.
    CloudInit {
        /// `name` and hostname.
        hostname: DomainName,
        /// `ipconfig0`.
        ipconfig0: IpConfig,
        /// `nameserver`.
        nameserver: Option<Nameservers>,
        /// `searchdomain`.
        searchdomain: DomainName,
        /// `ciuser`.
        user: String,
    },
    /// Generate a new password (with [`crate::password::generate`]) and set `cipassword`.
    SetPassword,
    /// `PUT .../cloudinit` (regenerate the drive).
    RegenerateCloudInit,
    /// Start the VM.
    Start,
    /// Send "reinstall done" with the new password.
    Notify,
}

/// A validated reinstall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReinstallPlan {
    /// The chosen template.
    pub template: OsTemplate,
    /// What is kept.
    pub identity: Identity,
    /// The steps.
    pub steps: Vec<ReinstallStep>,
    /// The customer's firewall, saved by the executor right before [`ReinstallStep::Redeploy`]
    /// destroys `<vmid>.fw`, and written back after the clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::firewall::SavedFirewall>,
    /// What the executor has done of [`ReinstallStep::Redeploy`], recorded as it goes so a
    /// resumed redeploy knows the old VM from the clone. `None` in plans stored before this
    /// was recorded (they fall back to looking at the VM's disks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeploy: Option<Box<RedeployProgress>>,
}

/// The recorded progress of [`ReinstallStep::Redeploy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeployProgress {
    /// The UPID of the task destroying the old VM, once requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy_task: Option<String>,
    /// The old VM is gone (its destroy task finished, or the VM was found missing).
    #[serde(default)]
    pub destroyed: bool,
    /// The UPID of the clone task, once requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_task: Option<String>,
}

/// What [`ReinstallStep::Redeploy`] does next, from its recorded progress and the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeployAction {
    /// The VM is the old one: save the customer's firewall (unless already saved), destroy it.
    Destroy,
    /// Wait for the recorded destroy task.
    WaitDestroy(String),
    /// No VM: clone the template.
    Clone,
    /// Wait for the recorded clone task: its success is the clone's.
    WaitClone(String),
    /// A VM exists after the old one was destroyed but its clone task was not recorded (the
    /// executor stopped between the request and the record): the clone; wait for its lock.
    WaitCloneLock,
    /// The clone is in place.
    Done,
}

/// Decides the next action of a redeploy. With recorded progress the decision never looks
/// at the VM's disks, so a pass-through device or an `unusedN` disk left on the old VM
/// cannot pass it off as the clone; plans without progress (stored by an older version) use
/// the old rule: a VM with non-CD disks or a `clone` lock is the clone.
pub fn redeploy_action(
    progress: Option<&RedeployProgress>,
    vm: Option<&VmConfig>,
) -> Result<RedeployAction, Error> {
    let Some(p) = progress else {
        return Ok(match vm {
            None => RedeployAction::Clone,
            Some(c) if c.lock()? == Some(crate::pve::LockKind::Clone) => {
                RedeployAction::WaitCloneLock
            }
            Some(c) if !c.disks()?.is_empty() => RedeployAction::Done,
            Some(_) => RedeployAction::Destroy,
        });
    };
    Ok(match (&p.clone_task, p.destroyed, &p.destroy_task, vm) {
        (Some(upid), _, _, _) => RedeployAction::WaitClone(upid.clone()),
        (None, true, _, Some(_)) => RedeployAction::WaitCloneLock,
        (None, true, _, None) => RedeployAction::Clone,
        (None, false, Some(upid), _) => RedeployAction::WaitDestroy(upid.clone()),
        (None, false, None, Some(_)) => RedeployAction::Destroy,
        // The old VM is gone without a recorded destroy: nothing left to destroy.
        (None, false, None, None) => RedeployAction::Clone,
    })
}

fn is_backup_volume(v: &VolumeId, product: &Product) -> bool {
    v.storage() == &product.backups.storage
        || v.volname().starts_with("backup/")
        || v.file_name().starts_with("vzdump-")
}

/// Validates and plans a reinstall from the current config and snapshot listing.
pub fn plan(
    product: &Product,
    service: &Service,
    state: &VmState,
    config: &VmConfig,
    snapshots: &[SnapshotEntry],
    template: VmId,
    confirmation: &str,
) -> Result<ReinstallPlan, Error> {
    let template = validate(product, state, template, confirmation)?.clone();
    if let Some(lock) = config.lock()? {
        return Err(Error::Locked { lock });
    }
    let identity = extract_identity(config, service)?;
    let mut steps = vec![ReinstallStep::Stop];
    steps.extend(
        snapshots
            .iter()
            .filter(|s| s.is_real())
            .filter_map(|s| s.name.parse().ok())
            .map(|name| ReinstallStep::DeleteSnapshot { name }),
    );
    for (key, disk) in config.disks()? {
        // Pass-through devices (no volume id) are not ours to destroy.
        let Some(volume) = disk.volume_id() else {
            continue;
        };
        if is_backup_volume(&volume, product) {
            continue;
        }
        steps.push(ReinstallStep::DestroyDisk { key, volume });
    }
    steps.push(ReinstallStep::Redeploy {
        template: template.vmid,
        storage: product.system_disk.storage.clone(),
    });
    steps.push(ReinstallStep::ReattachIdentity {
        nics: identity.nics.clone(),
    });
    steps.push(ReinstallStep::ApplyPackage);
    steps.push(ReinstallStep::CloudInit {
        hostname: service.domain.clone(),
        ipconfig0: identity.ipconfig0,
        nameserver: (!service.dns.is_empty()).then(|| Nameservers(service.dns.clone())),
        searchdomain: service.domain.clone(),
        user: DEFAULT_USER.to_owned(),
    });
    steps.extend([
        ReinstallStep::SetPassword,
        ReinstallStep::RegenerateCloudInit,
        ReinstallStep::Start,
        ReinstallStep::Notify,
    ]);
    Ok(ReinstallPlan {
        template,
        identity,
        steps,
        firewall: None,
        redeploy: Some(Box::default()),
    })
}

/// The id of a stored plan: letters, digits, `-`, `_`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlanId(String);

impl PlanId {
    /// `<kind>-<vmid>-<unix time>`, e.g. `reinstall-100-1775793519`.
    pub fn generate(kind: &str, vmid: VmId, now: OffsetDateTime) -> Result<Self, Error> {
        format!("{kind}-{vmid}-{}", now.unix_timestamp()).parse()
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PlanId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "plan id",
                s,
                "must be 1 to 64 letters, digits, `-` or `_`",
            ))
        }
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(PlanId);

/// A long operation that can be interrupted and resumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationPlan {
    /// A reinstall.
    Reinstall(ReinstallPlan),
    /// A restore.
    Restore(RestorePlan),
}

/// The step to run next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NextStep<'a> {
    /// A reinstall step.
    Reinstall(&'a ReinstallStep),
    /// A restore step.
    Restore(&'a RestoreStep),
}

impl OperationPlan {
    /// How many steps.
    pub fn len(&self) -> usize {
        match self {
            Self::Reinstall(p) => p.steps.len(),
            Self::Restore(p) => p.steps.len(),
        }
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plan as stored: the VM, the plan and how many steps are done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    /// Id.
    pub id: PlanId,
    /// The VM.
    pub vm: VmRef,
    /// The plan.
    pub plan: OperationPlan,
    /// Steps done (`0..=plan.len()`).
    pub done: usize,
}

impl StoredPlan {
    /// Whether every step is done.
    pub fn is_finished(&self) -> bool {
        self.done >= self.plan.len()
    }
}

/// The step after `done` steps, or `None` when finished.
pub fn next_step(plan: &OperationPlan, done: usize) -> Option<NextStep<'_>> {
    match plan {
        OperationPlan::Reinstall(p) => p.steps.get(done).map(NextStep::Reinstall),
        OperationPlan::Restore(p) => p.steps.get(done).map(NextStep::Restore),
    }
}

/// Where a resumed plan continues. A reinstall interrupted after `SetPassword` but before
/// `Notify` finished goes back to `SetPassword`: the password lived only in memory and the
/// customer must receive the one that is set.
pub fn resume_point(plan: &OperationPlan, done: usize) -> usize {
    if let OperationPlan::Reinstall(p) = plan {
        let set = p
            .steps
            .iter()
            .position(|s| *s == ReinstallStep::SetPassword);
        let notify = p.steps.iter().position(|s| *s == ReinstallStep::Notify);
        if let (Some(set), Some(notify)) = (set, notify)
            && done > set
            && done <= notify
        {
            return set;
        }
    }
    done.min(plan.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::LockKind;
    use crate::service::fixtures;

    #[test]
    fn redeploy_decides_from_recorded_progress_not_disks() {
        let old: VmConfig = [
            ("scsi5", "/dev/disk/by-id/ata-FAKE_1"),
            ("unused0", "backup-store:vm-104-disk-9"),
        ]
        .into_iter()
        .collect();
        let fresh = RedeployProgress::default();
        // Disks left on the old VM do not make it the clone.
        assert_eq!(
            redeploy_action(Some(&fresh), Some(&old)).unwrap(),
            RedeployAction::Destroy
        );
        // The legacy rule would have been fooled.
        assert_eq!(
            redeploy_action(None, Some(&old)).unwrap(),
            RedeployAction::Done
        );
        assert_eq!(
            redeploy_action(Some(&fresh), None).unwrap(),
            RedeployAction::Clone
        );
        let destroying = RedeployProgress {
            destroy_task: Some("UPID:d".into()),
            ..fresh.clone()
        };
        assert_eq!(
            redeploy_action(Some(&destroying), Some(&old)).unwrap(),
            RedeployAction::WaitDestroy("UPID:d".into())
        );
        let destroyed = RedeployProgress {
            destroyed: true,
            ..destroying
        };
        assert_eq!(
            redeploy_action(Some(&destroyed), None).unwrap(),
            RedeployAction::Clone
        );
        assert_eq!(
            redeploy_action(Some(&destroyed), Some(&old)).unwrap(),
            RedeployAction::WaitCloneLock
        );
        let cloning = RedeployProgress {
            clone_task: Some("UPID:c".into()),
            ..destroyed
        };
        assert_eq!(
            redeploy_action(Some(&cloning), Some(&old)).unwrap(),
            RedeployAction::WaitClone("UPID:c".into())
        );
    }

    fn config() -> VmConfig {
        [
            (
                "net0",
                "virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1",
            ),
            ("net1", "virtio=BC:24:11:00:00:02,bridge=vmbr1"),
            ("scsi0", "local-lvm:vm-100-disk-0,size=100G"),
            ("scsi1", "local-lvm:vm-100-disk-1,size=200G"),
            (
                "scsi2",
                "backup-store:backup/vzdump-qemu-100-x.vma.zst,size=1G",
            ),
            (
                "ide2",
                "iso-store:iso/Debian-12.5.0-amd64-netinst.iso,media=cdrom",
            ),
            ("ide0", "local-lvm:vm-100-cloudinit,media=cdrom"),
        ]
        .into_iter()
        .collect()
    }

    fn snaps() -> Vec<SnapshotEntry> {
        ["a", "b", "current"]
            .iter()
            .map(|n| SnapshotEntry {
                name: (*n).into(),
                snaptime: (*n != "current").then_some(1),
                description: String::new(),
                vmstate: false,
            })
            .collect()
    }

    #[test]
    fn validation_refusals() {
        let p = fixtures::product();
        let idle = VmState::default();
        let t = VmId::new(9000).unwrap();
        assert!(validate(&p, &idle, t, "REINSTALL").is_ok());
        for bad in ["reinstall", "REINSTALL ", "", "REINSTAL"] {
            let e = validate(&p, &idle, t, bad).unwrap_err();
            assert!(matches!(e, Error::WrongConfirmation { .. }) && e.is_invalid_input());
        }
        let e = validate(&p, &idle, VmId::new(9999).unwrap(), "REINSTALL").unwrap_err();
        assert!(matches!(e, Error::TemplateNotAllowed { .. }));
        let locked = VmState {
            lock: Some(LockKind::Snapshot),
            running: true,
        };
        assert!(
            validate(&p, &locked, t, "REINSTALL")
                .unwrap_err()
                .is_locked()
        );
        let mut denied = p.clone();
        denied.permissions.reinstall = false;
        assert!(
            validate(&denied, &idle, t, "REINSTALL")
                .unwrap_err()
                .is_denied()
        );
        let mut c = config();
        c.set("lock", "backup");
        let e = plan(&p, &fixtures::service(), &idle, &c, &[], t, "REINSTALL").unwrap_err();
        assert!(e.is_locked());
    }

    #[test]
    fn plan_order_and_backups_survive() {
        let p = fixtures::product();
        let s = fixtures::service();
        let r = plan(
            &p,
            &s,
            &VmState::default(),
            &config(),
            &snaps(),
            VmId::new(9000).unwrap(),
            "REINSTALL",
        )
        .unwrap();
        let names: Vec<String> = r
            .steps
            .iter()
            .map(|s| match s {
                ReinstallStep::DeleteSnapshot { name } => format!("del-snap {name}"),
                ReinstallStep::DestroyDisk { key, .. } => format!("destroy {key}"),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_owned(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "Stop",
                "del-snap a",
                "del-snap b",
                "destroy scsi0",
                "destroy scsi1",
                "Redeploy",
                "ReattachIdentity",
                "ApplyPackage",
                "CloudInit",
                "SetPassword",
                "RegenerateCloudInit",
                "Start",
                "Notify"
            ]
        );
        assert_eq!(r.identity.nics.len(), 2);
        assert_eq!(
            r.identity.nics[1].1.mac.unwrap().to_string(),
            "BC:24:11:00:00:02"
        );
        assert_eq!(r.identity.nics[0].1.tag, Some(10));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ReinstallPlan>(&json).unwrap(), r);
    }

    #[test]
    fn next_and_resume() {
        let p = fixtures::product();
        let s = fixtures::service();
        let r = plan(
            &p,
            &s,
            &VmState::default(),
            &config(),
            &[],
            VmId::new(9000).unwrap(),
            "REINSTALL",
        )
        .unwrap();
        let op = OperationPlan::Reinstall(r);
        assert_eq!(
            next_step(&op, 0),
            Some(NextStep::Reinstall(&ReinstallStep::Stop))
        );
        assert_eq!(next_step(&op, op.len()), None);
        let set = match &op {
            OperationPlan::Reinstall(r) => r
                .steps
                .iter()
                .position(|s| *s == ReinstallStep::SetPassword)
                .unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(resume_point(&op, set), set);
        assert_eq!(resume_point(&op, set + 2), set);
        assert_eq!(resume_point(&op, op.len()), op.len());
        assert_eq!(resume_point(&op, 2), 2);
    }
}
