//! Overview, power, console, charts, snapshots, ISO, password reset and reverse DNS.

use std::fmt;
use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use super::exec::TaskRef;
use super::{ClientArea, api_snapshot};
use crate::charts::{self, Charts, RrdRow, Timeframe};
use crate::console::ConsoleToken;
use crate::error::Error;
use crate::ids::VolumeId;
use crate::iso::{self, IsoFolder, IsoItem};
use crate::notify::Notification;
use crate::overview::{self, Overview, ResourceRow};
use crate::password::{self, ResetStep};
use crate::permissions::Feature;
use crate::quota::QuotaCounter;
use crate::service::{Service, VmRef};
use crate::snapshots::{self, SnapshotEntry, SnapshotName};

/// A console link: show `token.to_hex()` in the CONNECT button; valid once, for 10 seconds.
#[derive(Debug, Clone)]
pub struct ConsoleLink {
    /// The one-time token (its `Debug` is redacted).
    pub token: ConsoleToken,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// What a websocket relay needs to connect to the VM's VNC console. Every secret is redacted
/// in `Debug`.
pub struct ConsoleSession {
    /// The VM.
    pub vm: VmRef,
    /// The VNC ticket (also the VNC password when PVE generated none).
    pub ticket: SecretString,
    /// The VNC port on the node.
    pub port: u64,
    /// The generated VNC password, if any.
    pub password: Option<SecretString>,
    /// `wss://.../vncwebsocket?port=..&vncticket=..` (contains the ticket: a secret).
    pub websocket_url: SecretString,
    /// The node's certificate (PEM) the relay may pin.
    pub cert: String,
}

impl fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("vm", &self.vm)
            .field("port", &self.port)
            .field("ticket", &"<redacted>")
            .field("websocket_url", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One snapshot with its countdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotView {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time (unix seconds).
    pub snaptime: Option<i64>,
    /// Whether RAM was saved.
    pub vmstate: bool,
    /// Remaining lifetime in seconds.
    pub remaining_secs: i64,
    /// Remaining lifetime as the page shows it (`0 days 23:59:54`).
    pub remaining: String,
}

/// The snapshots page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotList {
    /// `N/M`.
    pub quota: QuotaCounter,
    /// The snapshots, oldest first.
    pub snapshots: Vec<SnapshotView>,
}

/// What the expiry sweep did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    /// Snapshots removed.
    pub removed: Vec<(VmRef, SnapshotName)>,
    /// VMs skipped, with the reason (locked, unreachable ...): worth a look if it lasts.
    pub skipped: Vec<(VmRef, String)>,
    /// VMs left alone because another worker holds their lease (it is backing them up or
    /// sweeping them right now): the normal share of work between workers, retried on the
    /// next run.
    pub deferred: Vec<(VmRef, String)>,
}

/// The ISO page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsoPage {
    /// What the product's CD drive (`iso.drive`, default `ide2`) holds.
    pub mounted: Option<VolumeId>,
    /// The product's ISO storage in folders.
    pub folders: Vec<IsoFolder>,
}

/// A password reset's result: the password is shown once and was handed to the notifier.
pub struct PasswordReset {
    /// The new password.
    pub password: SecretString,
    /// Whether the guest agent applied it right away.
    pub applied_by_agent: bool,
}

impl fmt::Debug for PasswordReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordReset")
            .field("password", &"<redacted>")
            .field("applied_by_agent", &self.applied_by_agent)
            .finish()
    }
}

pub(crate) fn os_rng() -> impl rand::CryptoRng {
    use rand::TryRngCore;
    rand::rngs::OsRng.unwrap_err()
}

pub(crate) fn snapshot_entries(
    list: Vec<pve_vps_api::api::snapshot::SnapshotInfo>,
) -> Vec<SnapshotEntry> {
    list.into_iter()
        .map(|s| SnapshotEntry {
            name: s.name,
            snaptime: s.snaptime,
            description: s.description.unwrap_or_default(),
            vmstate: s.vmstate.unwrap_or(false),
        })
        .collect()
}

impl ClientArea {
    /// The overview page of one VM (two API calls). For many watchers use [`super::OverviewHub`].
    pub async fn overview(&self, service: &Service) -> Result<Overview, Error> {
        let product = self.product(service)?;
        let vm = self.vm(service)?;
        let (st, cfg) = futures_util::future::try_join(
            async { vm.status().await.map_err(Error::pve("read vm status")) },
            async { vm.config().await.map_err(Error::pve("read vm config")) },
        )
        .await?;
        let row = ResourceRow {
            status: st.status.as_str().to_owned(),
            uptime: st.uptime.unwrap_or(0),
            cpu: st.cpu.unwrap_or(0.0),
            maxcpu: st.cpus.unwrap_or(0.0),
            mem: st.mem.unwrap_or(0),
            maxmem: st.maxmem.unwrap_or(0),
        };
        overview::build(
            &row,
            &crate::pve::VmConfig::from_map(cfg.raw),
            service,
            product,
        )
    }

    async fn power_checked(&self, service: &Service) -> Result<crate::permissions::VmState, Error> {
        self.check_not_busy(service).await?;
        Ok(self.require(service, Feature::PowerControl).await?.state)
    }

    /// Starts the VM (refused while locked).
    pub async fn start(&self, service: &Service) -> Result<TaskRef, Error> {
        let state = self.power_checked(service).await?;
        if state.running {
            return Err(Error::invalid(
                "power action",
                "start",
                "the vm is already running",
            ));
        }
        let t = self
            .vm(service)?
            .start()
            .await
            .map_err(Error::pve("start vm"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Shuts the VM down through ACPI; `timeout` seconds, then a hard stop when `force`.
    pub async fn shutdown(
        &self,
        service: &Service,
        timeout_secs: Option<u64>,
        force: bool,
    ) -> Result<TaskRef, Error> {
        let state = self.power_checked(service).await?;
        if !state.running {
            return Err(Error::NotRunning);
        }
        let mut o = pve_vps_api::api::qemu_status::ShutdownOptions::new().force_stop(force);
        if let Some(t) = timeout_secs {
            o = o.timeout(t);
        }
        let t = self
            .vm(service)?
            .shutdown(&o)
            .await
            .map_err(Error::pve("shut down vm"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Stops the VM at once (refused while locked).
    pub async fn stop(&self, service: &Service) -> Result<TaskRef, Error> {
        let state = self.power_checked(service).await?;
        if !state.running {
            return Err(Error::NotRunning);
        }
        let t = self
            .vm(service)?
            .stop()
            .await
            .map_err(Error::pve("stop vm"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Reboots the VM gracefully (ACPI shutdown, then start; PVE waits at most `timeout_secs`
    /// for the guest to shut down). The same checks as stop: power control in the package, no
    /// lock, no long operation running, and the VM must be running.
    pub async fn reboot(
        &self,
        service: &Service,
        timeout_secs: Option<u64>,
    ) -> Result<TaskRef, Error> {
        let state = self.power_checked(service).await?;
        if !state.running {
            return Err(Error::NotRunning);
        }
        let t = self
            .vm(service)?
            .reboot(timeout_secs)
            .await
            .map_err(Error::pve("reboot vm"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Hard reset, like pressing the reset button: the guest gets no chance to shut down and
    /// unsaved data in it is lost (offer [`reboot`](Self::reboot) first). The same checks as
    /// stop; the VM must be running.
    pub async fn reset(&self, service: &Service) -> Result<TaskRef, Error> {
        let state = self.power_checked(service).await?;
        if !state.running {
            return Err(Error::NotRunning);
        }
        let t = self
            .vm(service)?
            .reset()
            .await
            .map_err(Error::pve("reset vm"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Issues a one-time console token (OS CSPRNG, 10 s). The VM must be running.
    pub async fn console_link(&self, service: &Service) -> Result<ConsoleLink, Error> {
        self.require(service, Feature::Console).await?;
        let now = self.now();
        let token = self.inner.tokens.issue(service, &mut os_rng(), now);
        Ok(ConsoleLink {
            token,
            expires_at: now + crate::console::TOKEN_TTL,
        })
    }

    /// Redeems a console token (once, within 10 s, for this service, VM running) and opens a
    /// VNC proxy for the websocket relay.
    pub async fn open_console(
        &self,
        token: &ConsoleToken,
        service: &Service,
    ) -> Result<ConsoleSession, Error> {
        let product = self.product(service)?;
        let state = self.state(service).await?;
        let grant = self
            .inner
            .tokens
            .redeem(token, service, &state, self.now())?;
        crate::permissions::require(product, Feature::Console, &state)?;
        let vm = self.vm(service)?;
        let proxy = vm
            .vncproxy(true)
            .await
            .map_err(Error::pve("open vnc proxy"))?;
        let url = vm.vnc_websocket_url(&proxy);
        Ok(ConsoleSession {
            vm: grant.vm,
            ticket: proxy.ticket.clone(),
            port: proxy.port,
            password: proxy.password.clone(),
            websocket_url: SecretString::from(url.to_string()),
            cert: proxy.cert.clone(),
        })
    }

    /// The four charts for a timeframe, from `rrddata` (AVERAGE).
    pub async fn charts(&self, service: &Service, timeframe: Timeframe) -> Result<Charts, Error> {
        self.product_with(service, Feature::Charts)?;
        use pve_vps_api::api::rrd::{Consolidation, Timeframe as T};
        let tf = match timeframe {
            Timeframe::Hour => T::Hour,
            Timeframe::Day => T::Day,
            Timeframe::Week => T::Week,
            Timeframe::Month => T::Month,
            Timeframe::Year => T::Year,
        };
        let rows = self
            .vm(service)?
            .rrddata(tf, Consolidation::Average)
            .await
            .map_err(Error::pve("read rrd data"))?;
        let rows: Vec<RrdRow> = rows
            .into_iter()
            .filter_map(|r| {
                Some(RrdRow {
                    time: r.time?,
                    cpu: r.cpu,
                    maxcpu: r.maxcpu,
                    mem: r.mem,
                    maxmem: r.maxmem,
                    diskread: r.diskread,
                    diskwrite: r.diskwrite,
                    netin: r.netin,
                    netout: r.netout,
                })
            })
            .collect();
        Ok(charts::build(&rows, timeframe))
    }

    pub(crate) async fn snapshot_listing(
        &self,
        service: &Service,
    ) -> Result<Vec<SnapshotEntry>, Error> {
        let list = self
            .vm(service)?
            .snapshots()
            .list()
            .await
            .map_err(Error::pve("list snapshots"))?;
        Ok(snapshot_entries(list))
    }

    /// The snapshots with their remaining lifetime and the quota.
    pub async fn snapshots(&self, service: &Service) -> Result<SnapshotList, Error> {
        let product = self.product_with(service, Feature::Snapshots)?;
        let listing = self.snapshot_listing(service).await?;
        let now = self.now();
        let mut snaps: Vec<SnapshotView> = listing
            .iter()
            .filter(|e| e.is_real())
            .map(|e| {
                let left = e
                    .snaptime
                    .map(|t| snapshots::remaining_lifetime(t, product.snapshots.lifetime, now))
                    .unwrap_or(time::Duration::ZERO);
                SnapshotView {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    snaptime: e.snaptime,
                    vmstate: e.vmstate,
                    remaining_secs: left.whole_seconds(),
                    remaining: snapshots::format_remaining(left),
                }
            })
            .collect();
        snaps.sort_by_key(|s| s.snaptime);
        Ok(SnapshotList {
            quota: snapshots::quota(product, &listing),
            snapshots: snaps,
        })
    }

    /// Takes a snapshot (generated name; RAM when running; quota enforced).
    pub async fn create_snapshot(
        &self,
        service: &Service,
        description: &str,
    ) -> Result<(SnapshotName, TaskRef), Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Snapshots).await?;
        let listing = self.snapshot_listing(service).await?;
        let plan = snapshots::plan_create(product, &live.state, &listing, description, self.now())?;
        let desc = (!plan.description.is_empty()).then_some(plan.description.as_str());
        let t = self
            .vm(service)?
            .snapshots()
            .create(&api_snapshot(&plan.name)?, desc, plan.vmstate)
            .await
            .map_err(Error::pve("create snapshot"))?;
        Ok((plan.name, TaskRef::new(t.upid())))
    }

    /// The checks before acting on an existing snapshot (rollback, removal): no operation of
    /// this client area running, the feature allowed and unlocked, and the snapshot present.
    async fn existing_snapshot(
        &self,
        service: &Service,
        name: &str,
    ) -> Result<snapshots::SnapshotName, Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Snapshots).await?;
        let listing = self.snapshot_listing(service).await?;
        snapshots::check_existing(product, &live.state, &listing, name)
    }

    /// Rolls back to a snapshot (the VM is stopped during the rollback).
    pub async fn rollback_snapshot(&self, service: &Service, name: &str) -> Result<TaskRef, Error> {
        let n = self.existing_snapshot(service, name).await?;
        let t = self
            .vm(service)?
            .snapshots()
            .rollback(&api_snapshot(&n)?, false)
            .await
            .map_err(Error::pve("roll back snapshot"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Removes a snapshot.
    pub async fn remove_snapshot(&self, service: &Service, name: &str) -> Result<TaskRef, Error> {
        let n = self.existing_snapshot(service, name).await?;
        let t = self
            .vm(service)?
            .snapshots()
            .delete(&api_snapshot(&n)?, false)
            .await
            .map_err(Error::pve("remove snapshot"))?;
        Ok(TaskRef::new(t.upid()))
    }

    /// Removes every snapshot older than its product's lifetime (cron). Idempotent: a second
    /// run removes nothing. Each VM is swept under its per-VM lease
    /// ([`LeaseKey::vm`](crate::leases::LeaseKey::vm)), so two workers never delete the same
    /// snapshot and a sweep never locks a VM under another worker's backup; a VM another
    /// worker holds ([`SweepReport::deferred`]) and a locked VM ([`SweepReport::skipped`])
    /// are left alone and retried on the next run.
    pub async fn sweep_expired_snapshots(&self, services: &[Service]) -> SweepReport {
        let mut report = SweepReport::default();
        let now = self.now();
        for s in services {
            let result: Result<Vec<SnapshotName>, Error> = async {
                let product = self.product(s)?;
                let lease = match self.vm_lease(s.vmid(), None).await? {
                    Ok(g) => g,
                    Err(operation) => return Err(Error::InProgress { operation }),
                };
                // Listed under the lease: what another worker removed before is gone.
                let result = async {
                    let listing = self.snapshot_listing(s).await?;
                    let due = snapshots::plan_expiry(&listing, product.snapshots.lifetime, now);
                    let mut removed = Vec::new();
                    for name in due {
                        lease.check_held()?;
                        // Re-check right before acting: a lock may have appeared (a portal
                        // operation holds no lease).
                        if let Some(lock) = self.state(s).await?.lock {
                            return Err(Error::Locked { lock });
                        }
                        let t = self
                            .vm(s)?
                            .snapshots()
                            .delete(&api_snapshot(&name)?, false)
                            .await
                            .map_err(Error::pve("remove expired snapshot"))?;
                        self.wait(t, "remove expired snapshot").await?;
                        removed.push(name);
                    }
                    Ok(removed)
                }
                .await;
                super::backup_ops::release_vm(lease).await;
                result
            }
            .await;
            match result {
                Ok(names) => report
                    .removed
                    .extend(names.into_iter().map(|n| (s.vm.clone(), n))),
                Err(e @ Error::InProgress { .. }) => {
                    report.deferred.push((s.vm.clone(), e.to_string()))
                }
                Err(e) => report.skipped.push((s.vm.clone(), e.to_string())),
            }
        }
        report
    }

    async fn iso_listing(&self, service: &Service) -> Result<Vec<IsoItem>, Error> {
        let product = self.product(service)?;
        let Some(storage) = &product.iso_storage else {
            return Ok(Vec::new());
        };
        let items = self
            .node(service.vm.node())?
            .storage(&super::api_storage(storage)?)
            .content(Some("iso"), None)
            .await
            .map_err(Error::pve("list iso images"))?;
        Ok(items
            .into_iter()
            .filter_map(|i| {
                Some(IsoItem {
                    volid: i.volid.parse().ok()?,
                    size: i.size,
                })
            })
            .collect())
    }

    /// The ISO page: what is mounted and the product's ISO storage in folders.
    pub async fn isos(&self, service: &Service) -> Result<IsoPage, Error> {
        let product = self.product_with(service, Feature::Iso)?;
        let config = self.config(service).await?;
        let listing = self.iso_listing(service).await?;
        Ok(IsoPage {
            mounted: iso::mounted_in(&config, &product.iso_drive)?,
            folders: iso::group(&listing),
        })
    }

    /// Mounts an ISO of the product's ISO storage in the product's CD drive (`iso.drive`,
    /// default `ide2`), replacing any mounted one; refused when that drive holds the
    /// cloud-init drive.
    pub async fn mount_iso(&self, service: &Service, volid: &str) -> Result<(), Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Iso).await?;
        let listing = self.iso_listing(service).await?;
        let change = iso::plan_mount(product, &live.state, &listing, volid)?;
        iso::check_drive_free_in(&live.config, &product.iso_drive)?;
        self.set_keys(service, vec![(change.key, change.value)])
            .await
    }

    /// Ejects the ISO.
    pub async fn unmount_iso(&self, service: &Service) -> Result<(), Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::Iso).await?;
        let change = iso::plan_unmount(product, &live.state)?;
        iso::check_drive_free_in(&live.config, &product.iso_drive)?;
        self.set_keys(service, vec![(change.key, change.value)])
            .await
    }

    /// Generates a new root password (OS CSPRNG), sets it through the guest agent when the VM
    /// runs and the agent answers, and always through cloud-init (`cipassword` + regenerate);
    /// hands it to the notifier and returns it once. It is never logged.
    pub async fn reset_password(&self, service: &Service) -> Result<PasswordReset, Error> {
        self.check_not_busy(service).await?;
        let product = self.product(service)?;
        let live = self.require(service, Feature::ResetPassword).await?;
        let steps = password::plan_reset(product, &live.state)?;
        let pw = password::generate(&mut os_rng(), 20)?;
        let user = live
            .config
            .get("ciuser")
            .unwrap_or(crate::reinstall::DEFAULT_USER)
            .to_owned();
        let vm = self.vm(service)?;
        let mut by_agent = false;
        for step in steps {
            match step {
                ResetStep::SetCloudInitPassword => {
                    let u = pve_vps_api::api::qemu_config::ConfigUpdate::new()
                        .cipassword(SecretString::from(pw.expose_secret().to_owned()));
                    vm.update_config(&u)
                        .await
                        .map_err(Error::pve("set cloud-init password"))?;
                }
                ResetStep::RegenerateCloudInit => vm
                    .cloudinit_regenerate()
                    .await
                    .map_err(Error::pve("regenerate cloud-init"))?,
                ResetStep::AgentSetPassword => {
                    // A missing or silent agent is not an error: cloud-init applies it at boot.
                    match vm.agent_set_user_password(&user, &pw, false).await {
                        Ok(()) => by_agent = true,
                        Err(e) => {
                            tracing::info!(vm = %service.vm, "guest agent did not set the password: {}", e)
                        }
                    }
                }
                ResetStep::Notify => {
                    self.inner
                        .notifier
                        .notify(
                            service,
                            &Notification::NewPassword {
                                password: pw.clone(),
                            },
                        )
                        .await?;
                }
            }
        }
        Ok(PasswordReset {
            password: pw,
            applied_by_agent: by_agent,
        })
    }

    fn rdns(&self, service: &Service) -> Result<&dyn pve_vps_dns::ReverseDns, Error> {
        self.product_with(service, Feature::Rdns)?;
        self.inner.rdns.as_deref().ok_or(Error::NotConfigured {
            what: "reverse dns provider",
        })
    }

    fn own_ip(service: &Service, ip: IpAddr) -> Result<(), Error> {
        if service.addresses().contains(&ip) {
            Ok(())
        } else {
            Err(Error::invalid(
                "ip address",
                ip.to_string(),
                "is not an address of this service",
            ))
        }
    }

    /// Every address of the service with its PTR hostname (if any).
    pub async fn rdns_list(
        &self,
        service: &Service,
    ) -> Result<Vec<(IpAddr, Option<String>)>, Error> {
        let dns = self.rdns(service)?;
        let list = dns
            .list_ptrs(&service.addresses())
            .await
            .map_err(|source| Error::Dns {
                source: Box::new(source),
            })?;
        Ok(list
            .into_iter()
            .map(|(ip, p)| (ip, p.map(|p| p.hostname().as_str().to_owned())))
            .collect())
    }

    /// Points an address of the service to `hostname`; other addresses are refused.
    pub async fn rdns_set(
        &self,
        service: &Service,
        ip: IpAddr,
        hostname: &str,
    ) -> Result<pve_vps_dns::Change, Error> {
        let dns = self.rdns(service)?;
        Self::own_ip(service, ip)?;
        self.require_state(service, Feature::Rdns).await?;
        dns.set_ptr_str(ip, hostname)
            .await
            .map_err(|source| Error::Dns {
                source: Box::new(source),
            })
    }

    /// Removes the PTR of an address of the service.
    pub async fn rdns_remove(
        &self,
        service: &Service,
        ip: IpAddr,
    ) -> Result<pve_vps_dns::Change, Error> {
        let dns = self.rdns(service)?;
        Self::own_ip(service, ip)?;
        self.require_state(service, Feature::Rdns).await?;
        dns.remove_ptr(ip).await.map_err(|source| Error::Dns {
            source: Box::new(source),
        })
    }
}
