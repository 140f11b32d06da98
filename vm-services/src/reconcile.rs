//! Restore with reconciliation: after PVE restores an archive, bring the VM back to the
//! package and the service's identity.
//!
//! [`plan`] diffs what PVE holds ([`Observed`]) against the product and service and gives
//! ordered steps; steps already satisfied are skipped. [`apply`] simulates a step on the
//! observed state, so `plan(apply*(plan(x))) == []` can be checked for any `x`.

use serde::{Deserialize, Serialize};

use crate::backups::{BackupItem, validate_restore_archive};
use crate::error::Error;
use crate::firewall::{IpsetDiff, IpsetEntry, apply_ipset_diff, desired_ipfilter, diff_ipset};
use crate::ids::{DomainName, StorageId, VolumeId};
use crate::permissions::{Feature, VmState, require};
use crate::product::{DiskPackage, Product};
use crate::pve::{
    DiskLimits, DiskSize, DiskSpec, Ip4Setting, Ip6Setting, IpConfig, Nameservers, NetDevice,
    VmConfig,
};
use crate::service::Service;

/// What PVE holds for the VM: its config, the `ipfilter-net0` entries and whether it runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Observed {
    /// `GET .../config`.
    pub config: VmConfig,
    /// `GET .../firewall/ipset/ipfilter-net0`.
    pub ipfilter: Vec<IpsetEntry>,
    /// Whether the VM runs.
    pub running: bool,
}

/// One reconciliation step, in the order [`plan`] emits them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReconcileStep {
    /// `PUT config` `cores`, `sockets`.
    SetCpu {
        /// Cores per socket.
        cores: u32,
        /// Sockets.
        sockets: u32,
    },
    /// `PUT config` `memory` (MiB).
    SetMemory {
        /// MiB.
        mib: u64,
    },
    /// `PUT resize` `disk`, `size` (absolute; grow only).
    ResizeDisk {
        /// Disk key.
        key: String,
        /// New size.
        size: DiskSize,
    },
    /// `PUT config` `<key>=<drive>`: the drive with the package's limits.
    SetDrive {
        /// Disk key.
        key: String,
        /// The full drive value.
        drive: DiskSpec,
    },
    /// `PUT config` `<key>=<storage>:<size_gib>,<limits>`: allocate a new disk.
    CreateDisk {
        /// Disk key.
        key: String,
        /// Storage to allocate on.
        storage: StorageId,
        /// Size in GiB.
        size_gib: u64,
        /// Limits.
        limits: DiskLimits,
    },
    /// `PUT config` `<key>=<device>`: bridge, tag, rate, model and the MAC written explicitly.
    SetNetwork {
        /// NIC key.
        key: String,
        /// The full device value.
        device: NetDevice,
    },
    /// `PUT config` `ipconfig0` (cloud-init).
    SetIpConfig {
        /// Key.
        key: String,
        /// The value.
        config: IpConfig,
    },
    /// `PUT config` `nameserver`, `searchdomain` (absent values are deleted).
    SetDns {
        /// Nameservers.
        nameserver: Option<Nameservers>,
        /// Search domain.
        searchdomain: Option<DomainName>,
    },
    /// Add and remove `ipfilter-net0` entries.
    SyncIpFilter {
        /// The change.
        diff: IpsetDiff,
    },
    /// `POST status/start`.
    Start,
}

/// A config write: keys to set and keys to delete (`PUT config` with `delete=`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// Keys to set.
    pub set: Vec<(String, String)>,
    /// Keys to delete.
    pub delete: Vec<String>,
}

fn allocation(storage: &StorageId, size_gib: u64, limits: &DiskLimits) -> String {
    let d = DiskSpec {
        volume: format!("{storage}:{size_gib}"),
        media: None,
        size: None,
        limits: *limits,
        extra: Vec::new(),
    };
    d.to_string()
}

impl ReconcileStep {
    /// The `PUT config` this step is, when it is one (resize, ipfilter and start are not).
    pub fn config_update(&self) -> Option<ConfigUpdate> {
        let set = |k: &str, v: String| ConfigUpdate {
            set: vec![(k.to_owned(), v)],
            delete: vec![],
        };
        Some(match self {
            Self::SetCpu { cores, sockets } => ConfigUpdate {
                set: vec![
                    ("cores".into(), cores.to_string()),
                    ("sockets".into(), sockets.to_string()),
                ],
                delete: vec![],
            },
            Self::SetMemory { mib } => set("memory", mib.to_string()),
            Self::SetDrive { key, drive } => set(key, drive.to_string()),
            Self::CreateDisk {
                key,
                storage,
                size_gib,
                limits,
            } => set(key, allocation(storage, *size_gib, limits)),
            Self::SetNetwork { key, device } => set(key, device.to_string()),
            // PVE refuses an empty property string: no address at all means no key.
            Self::SetIpConfig { key, config } if *config == IpConfig::default() => ConfigUpdate {
                set: vec![],
                delete: vec![key.clone()],
            },
            Self::SetIpConfig { key, config } => set(key, config.to_string()),
            Self::SetDns {
                nameserver,
                searchdomain,
            } => {
                let mut u = ConfigUpdate::default();
                match nameserver {
                    Some(n) => u.set.push(("nameserver".into(), n.to_string())),
                    None => u.delete.push("nameserver".into()),
                }
                match searchdomain {
                    Some(d) => u.set.push(("searchdomain".into(), d.to_string())),
                    None => u.delete.push("searchdomain".into()),
                }
                u
            }
            Self::ResizeDisk { .. } | Self::SyncIpFilter { .. } | Self::Start => return None,
        })
    }
}

/// Something the plan will not do but the operator should know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconcileWarning {
    /// The restored disk is larger than the package: disks are never shrunk.
    ShrinkNeeded {
        /// Disk key.
        key: String,
        /// Size on the VM.
        current: DiskSize,
        /// Size of the package.
        package: DiskSize,
    },
    /// The system disk is missing from the restored config (it had `backup=0`?).
    SystemDiskMissing {
        /// Disk key.
        key: String,
    },
}

/// The steps and warnings of a reconciliation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReconcilePlan {
    /// Ordered steps; empty when everything matches.
    pub steps: Vec<ReconcileStep>,
    /// Warnings.
    pub warnings: Vec<ReconcileWarning>,
}

fn disk_steps(
    current: &DiskSpec,
    pkg: &DiskPackage,
    steps: &mut Vec<ReconcileStep>,
    warnings: &mut Vec<ReconcileWarning>,
) {
    let want = DiskSize::from_gib(pkg.size_gib);
    let mut drive = current.clone();
    match current.size {
        Some(s) if s > want => warnings.push(ReconcileWarning::ShrinkNeeded {
            key: pkg.key.clone(),
            current: s,
            package: want,
        }),
        Some(s) if s == want => {}
        _ => {
            steps.push(ReconcileStep::ResizeDisk {
                key: pkg.key.clone(),
                size: want,
            });
            drive.size = Some(want);
        }
    }
    if current.limits != pkg.limits {
        drive.limits = pkg.limits;
        steps.push(ReconcileStep::SetDrive {
            key: pkg.key.clone(),
            drive,
        });
    }
}

/// The `ipconfig0` the service needs.
pub fn desired_ipconfig(service: &Service) -> IpConfig {
    IpConfig {
        ip: service.ipv4.as_ref().map(|a| Ip4Setting::Static(a.primary)),
        gw: service.ipv4.as_ref().map(|a| a.gateway),
        ip6: service.ipv6.as_ref().map(|a| Ip6Setting::Static(a.primary)),
        gw6: service.ipv6.as_ref().map(|a| a.gateway),
    }
}

/// The `net0` the package and service need, keeping the other keys of `current`.
pub fn desired_net0(
    current: Option<&NetDevice>,
    product: &Product,
    service: &Service,
) -> NetDevice {
    let mut d = current
        .cloned()
        .unwrap_or_else(|| NetDevice::new(product.network.model.clone(), None));
    d.model = product.network.model.clone();
    d.mac = Some(service.mac);
    d.bridge = Some(product.network.bridge.clone());
    d.tag = product.network.vlan_tag;
    d.rate = product.network.rate;
    d.firewall = Some(true);
    d
}

/// Plans the reconciliation. Fails only when a disk of the package does not parse.
pub fn plan(
    observed: &Observed,
    product: &Product,
    service: &Service,
) -> Result<ReconcilePlan, Error> {
    let c = &observed.config;
    let mut steps = Vec::new();
    let mut warnings = Vec::new();

    let (cores, sockets) = (
        c.cores().ok().flatten().unwrap_or(1),
        c.sockets().ok().flatten().unwrap_or(1),
    );
    if cores != u64::from(product.cpu.cores) || sockets != u64::from(product.cpu.sockets) {
        steps.push(ReconcileStep::SetCpu {
            cores: product.cpu.cores,
            sockets: product.cpu.sockets,
        });
    }
    if c.memory_mib().ok().flatten().unwrap_or(512) != product.memory_mib {
        steps.push(ReconcileStep::SetMemory {
            mib: product.memory_mib,
        });
    }

    match c.disk(&product.system_disk.key)? {
        Some(d) => disk_steps(&d, &product.system_disk, &mut steps, &mut warnings),
        None => warnings.push(ReconcileWarning::SystemDiskMissing {
            key: product.system_disk.key.clone(),
        }),
    }
    if let Some(pkg) = &product.additional_disk {
        match c.disk(&pkg.key)? {
            Some(d) => disk_steps(&d, pkg, &mut steps, &mut warnings),
            None => steps.push(ReconcileStep::CreateDisk {
                key: pkg.key.clone(),
                storage: pkg.storage.clone(),
                size_gib: pkg.size_gib,
                limits: pkg.limits,
            }),
        }
    }

    // An unparsable value is rewritten rather than failing the restore.
    let net0 = c.net(0).ok().flatten();
    let want = desired_net0(net0.as_ref(), product, service);
    if net0.as_ref() != Some(&want) {
        steps.push(ReconcileStep::SetNetwork {
            key: "net0".into(),
            device: want,
        });
    }
    let ip = desired_ipconfig(service);
    let cur_ip = match c.get("ipconfig0") {
        None => Some(IpConfig::default()),
        Some(_) => c.ipconfig(0).ok().flatten(),
    };
    if cur_ip != Some(ip) {
        steps.push(ReconcileStep::SetIpConfig {
            key: "ipconfig0".into(),
            config: ip,
        });
    }
    let ns = (!service.dns.is_empty()).then(|| Nameservers(service.dns.clone()));
    let sd = Some(service.domain.clone());
    let cur_ns = c.nameservers().ok().flatten();
    let cur_sd = c.searchdomain().and_then(|s| s.parse::<DomainName>().ok());
    if cur_ns != ns || cur_sd != sd || (ns.is_none() && c.get("nameserver").is_some()) {
        steps.push(ReconcileStep::SetDns {
            nameserver: ns,
            searchdomain: sd,
        });
    }
    let diff = diff_ipset(&observed.ipfilter, &desired_ipfilter(service));
    if !diff.is_empty() {
        steps.push(ReconcileStep::SyncIpFilter { diff });
    }
    if !observed.running {
        steps.push(ReconcileStep::Start);
    }
    Ok(ReconcilePlan { steps, warnings })
}

/// Simulates one step on the observed state (what PVE would hold afterwards).
pub fn apply(mut observed: Observed, step: &ReconcileStep) -> Observed {
    let c = &mut observed.config;
    match step {
        ReconcileStep::ResizeDisk { key, size } => {
            if let Ok(Some(mut d)) = c.disk(key) {
                d.size = Some(*size);
                c.set(key.clone(), d.to_string());
            }
        }
        ReconcileStep::CreateDisk {
            key,
            storage,
            size_gib,
            limits,
        } => {
            let d = DiskSpec {
                volume: format!("{storage}:vm-disk-{key}"),
                media: None,
                size: Some(DiskSize::from_gib(*size_gib)),
                limits: *limits,
                extra: Vec::new(),
            };
            c.set(key.clone(), d.to_string());
        }
        ReconcileStep::SyncIpFilter { diff } => {
            observed.ipfilter = apply_ipset_diff(&observed.ipfilter, diff);
        }
        ReconcileStep::Start => observed.running = true,
        other => {
            if let Some(u) = other.config_update() {
                for (k, v) in u.set {
                    c.set(k, v);
                }
                for k in u.delete {
                    c.remove(&k);
                }
            }
        }
    }
    observed
}

/// The top-level steps of a restore; [`RestoreStep::Reconcile`] runs [`plan`] on the restored
/// VM (it is idempotent, so a resumed restore simply plans again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreStep {
    /// Stop the VM (skip when stopped).
    Stop,
    /// `POST /nodes/{node}/qemu` `vmid`, `archive`, `force=1` (never `unique=1`: it would change
    /// the MAC).
    Restore {
        /// The archive.
        archive: VolumeId,
    },
    /// Re-apply the package and identity, then start (see [`plan`]).
    Reconcile,
    /// Send the "backup restored" email.
    Notify,
}

/// A validated restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The archive.
    pub archive: VolumeId,
    /// The steps.
    pub steps: Vec<RestoreStep>,
}

/// Validates a restore request (permission, lock, archive of this VMID on the product's
/// storage) and gives its steps.
pub fn plan_restore(
    product: &Product,
    service: &Service,
    state: &VmState,
    listing: &[BackupItem],
    archive: &VolumeId,
) -> Result<RestorePlan, Error> {
    require(product, Feature::Backups, state)?;
    validate_restore_archive(product, service, listing, archive)?;
    Ok(RestorePlan {
        archive: archive.clone(),
        steps: vec![
            RestoreStep::Stop,
            RestoreStep::Restore {
                archive: archive.clone(),
            },
            RestoreStep::Reconcile,
            RestoreStep::Notify,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MacAddr;
    use crate::pve::MbPerSec;
    use crate::service::fixtures;
    use proptest::prelude::*;

    fn run(mut o: Observed, product: &Product, service: &Service) -> (Observed, ReconcilePlan) {
        let p = plan(&o, product, service).unwrap();
        for s in &p.steps {
            o = apply(o, s);
        }
        (o, p)
    }

    #[test]
    fn restored_vm_gets_the_package_back() {
        let product = fixtures::large_product();
        let service = fixtures::service();
        let o = Observed {
            config: [
                ("cores", "2"),
                ("memory", "8192"),
                (
                    "scsi0",
                    "local-lvm:vm-100-disk-0,size=300G,mbps_rd=1,iops_rd=5",
                ),
                ("net0", "e1000=BC:24:11:00:00:01,bridge=vmbr9"),
            ]
            .into_iter()
            .collect(),
            ipfilter: vec![],
            running: false,
        };
        let (after, p) = run(o, &product, &service);
        let kinds: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                ReconcileStep::SetCpu { .. } => "cpu",
                ReconcileStep::SetMemory { .. } => "mem",
                ReconcileStep::ResizeDisk { .. } => "resize",
                ReconcileStep::SetDrive { .. } => "limits",
                ReconcileStep::CreateDisk { .. } => "create",
                ReconcileStep::SetNetwork { .. } => "net",
                ReconcileStep::SetIpConfig { .. } => "ip",
                ReconcileStep::SetDns { .. } => "dns",
                ReconcileStep::SyncIpFilter { .. } => "ipfilter",
                ReconcileStep::Start => "start",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "cpu", "limits", "create", "net", "ip", "dns", "ipfilter", "start"
            ]
        );
        assert_eq!(
            p.warnings,
            vec![ReconcileWarning::ShrinkNeeded {
                key: "scsi0".into(),
                current: DiskSize::from_gib(300),
                package: DiskSize::from_gib(200)
            }]
        );
        assert_eq!(
            after.config.get("net0"),
            Some("virtio=BC:24:11:7A:40:98,bridge=vmbr0,rate=125,firewall=1")
        );
        assert_eq!(plan(&after, &product, &service).unwrap().steps, vec![]);
        let create = p
            .steps
            .iter()
            .find(|s| matches!(s, ReconcileStep::CreateDisk { .. }))
            .unwrap();
        assert_eq!(
            create.config_update().unwrap().set,
            vec![(
                "scsi1".into(),
                "local-lvm:200,mbps_rd=200,mbps_wr=200,iops_rd=200,iops_wr=200".into()
            )]
        );
    }

    #[test]
    fn restore_validation() {
        let product = fixtures::product();
        let service = fixtures::service();
        let item = |s: &str| BackupItem {
            volid: s.parse().unwrap(),
            size: 1,
            ctime: 1,
            notes: None,
            protected: false,
            vmid: None,
        };
        let listing = vec![
            item("backup-store:backup/vzdump-qemu-100-2026_04_10-03_59_27.vma.zst"),
            item("backup-store:backup/vzdump-qemu-101-2026_04_10-03_59_27.vma.zst"),
        ];
        let idle = VmState::default();
        let p = plan_restore(&product, &service, &idle, &listing, &listing[0].volid).unwrap();
        assert_eq!(p.steps.len(), 4);
        assert!(
            plan_restore(&product, &service, &idle, &listing, &listing[1].volid)
                .unwrap_err()
                .is_invalid_input()
        );
        let locked = VmState {
            lock: Some(crate::pve::LockKind::Backup),
            running: false,
        };
        assert!(
            plan_restore(&product, &service, &locked, &listing, &listing[0].volid)
                .unwrap_err()
                .is_locked()
        );
    }

    fn arb_limits() -> impl Strategy<Value = DiskLimits> {
        let r =
            || proptest::option::of((0u32..500).prop_map(|n| MbPerSec::new(f64::from(n)).unwrap()));
        let i = || proptest::option::of(0u64..2000);
        (r(), r(), i(), i()).prop_map(|(a, b, c, d)| DiskLimits {
            mbps_rd: a,
            mbps_wr: b,
            iops_rd: c,
            iops_wr: d,
        })
    }

    fn opt_disk(key: &'static str) -> impl Strategy<Value = Option<(String, String)>> {
        proptest::option::of((1u64..400, arb_limits()).prop_map(move |(g, l)| {
            let d = DiskSpec {
                volume: format!("local-lvm:vm-100-{key}"),
                media: None,
                size: Some(DiskSize::from_gib(g)),
                limits: l,
                extra: vec![("discard".into(), "on".into())],
            };
            (key.to_owned(), d.to_string())
        }))
    }

    prop_compose! {
        fn arb_observed()(
            cores in proptest::option::of(1u32..16), sockets in proptest::option::of(1u32..3),
            mem in proptest::option::of(256u64..16384), scsi0 in opt_disk("scsi0"), scsi1 in opt_disk("scsi1"),
            net in proptest::option::of((any::<[u8; 6]>(), proptest::option::of(1u16..4094), any::<bool>())),
            ip in proptest::option::of(Just("ip=10.0.0.2/8,gw=10.0.0.1")), ns in proptest::option::of(Just("9.9.9.9")),
            garbage_net in any::<bool>(), running in any::<bool>(),
            ipf in proptest::collection::vec((any::<u32>(), any::<bool>()), 0..4),
        ) -> Observed {
            let mut c = VmConfig::new();
            if let Some(v) = cores { c.set("cores", v.to_string()); }
            if let Some(v) = sockets { c.set("sockets", v.to_string()); }
            if let Some(v) = mem { c.set("memory", v.to_string()); }
            for (k, v) in [scsi0, scsi1].into_iter().flatten() { c.set(k, v); }
            if let Some((mac, tag, fw)) = net {
                let mut d = NetDevice::new("e1000".parse().unwrap(), Some(MacAddr::from_bytes(mac)));
                d.tag = tag;
                d.firewall = Some(fw);
                d.extra = vec![("queues".into(), "2".into())];
                c.set("net0", d.to_string());
            }
            if garbage_net { c.set("net0", "garbage"); }
            if let Some(v) = ip { c.set("ipconfig0", v); }
            if let Some(v) = ns { c.set("nameserver", v); }
            let ipfilter = ipf.into_iter().map(|(a, nm)| IpsetEntry { cidr: ipnet::IpNet::from(std::net::IpAddr::V4(a.into())), nomatch: nm }).collect();
            Observed { config: c, ipfilter, running }
        }
    }

    prop_compose! {
        fn arb_product()(large in any::<bool>(), sys in 1u64..400, add in 1u64..400, l1 in arb_limits(), l2 in arb_limits(),
            tag in proptest::option::of(1u16..4094), cores in 1u32..16, mem in 256u64..16384) -> Product {
            let mut p = if large { fixtures::large_product() } else { fixtures::product() };
            p.system_disk.size_gib = sys;
            p.system_disk.limits = l1;
            if let Some(a) = &mut p.additional_disk { a.size_gib = add; a.limits = l2; }
            p.network.vlan_tag = tag;
            p.cpu.cores = cores;
            p.memory_mib = mem;
            p
        }
    }

    proptest! {
        #[test]
        fn reconcile_converges(o in arb_observed(), product in arb_product()) {
            let service = fixtures::service();
            let (after, first) = run(o.clone(), &product, &service);
            let again = plan(&after, &product, &service).unwrap();
            prop_assert_eq!(&again.steps, &vec![]);
            // The result matches the package.
            let c = &after.config;
            prop_assert_eq!(c.cores().unwrap().unwrap_or(1), u64::from(product.cpu.cores));
            prop_assert_eq!(c.memory_mib().unwrap().unwrap_or(512), product.memory_mib);
            for pkg in std::iter::once(&product.system_disk).chain(product.additional_disk.as_ref()) {
                if let Some(d) = c.disk(&pkg.key).unwrap() {
                    prop_assert!(d.size.unwrap() >= DiskSize::from_gib(pkg.size_gib));
                    prop_assert_eq!(d.limits, pkg.limits);
                    // Never shrunk: a bigger disk stays as restored.
                    if let Ok(Some(before)) = o.config.disk(&pkg.key) {
                        prop_assert!(d.size >= before.size);
                    }
                } else {
                    prop_assert_eq!(&pkg.key, &product.system_disk.key);
                }
            }
            let net = c.net(0).unwrap().unwrap();
            prop_assert_eq!(net.mac, Some(service.mac));
            prop_assert_eq!(net.tag, product.network.vlan_tag);
            prop_assert_eq!(net.bridge.as_deref(), Some(product.network.bridge.as_str()));
            prop_assert_eq!(c.ipconfig(0).unwrap(), Some(desired_ipconfig(&service)));
            // Without addresses, ipconfig0 is removed rather than written empty.
            let mut bare = service.clone();
            bare.ipv4 = None;
            bare.ipv6 = None;
            let (after_bare, _) = run(after.clone(), &product, &bare);
            prop_assert_eq!(after_bare.config.get("ipconfig0"), None);
            prop_assert!(plan(&after_bare, &product, &bare).unwrap().steps.is_empty());
            prop_assert!(after.running);
            prop_assert!(diff_ipset(&after.ipfilter, &desired_ipfilter(&service)).is_empty());
            // No step is planned for what already matched.
            prop_assert!(!(o.running && first.steps.contains(&ReconcileStep::Start)));
        }
    }
}
