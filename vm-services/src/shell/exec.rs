//! Carrying out plans: tasks, config writes, reconciliation steps, the anti-spoofing IP set.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ClientArea, api_storage};
use crate::error::Error;
use crate::firewall::{IPFILTER_NET0, IpsetEntry, desired_ipfilter, diff_ipset};
use crate::pve::{DiskSize, VmConfig};
use crate::reconcile::{ConfigUpdate, Observed, ReconcileStep};
use crate::service::Service;

/// A PVE task the UI can poll with [`ClientArea::task_progress`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    upid: String,
}

impl TaskRef {
    pub(crate) fn new(upid: &pve_vps_api::Upid) -> Self {
        Self {
            upid: upid.as_str().to_owned(),
        }
    }

    /// Parses a reference the UI kept (a UPID).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let u: pve_vps_api::Upid = s
            .parse()
            .map_err(|e: pve_vps_api::Error| Error::invalid("task reference", s, e.to_string()))?;
        Ok(Self::new(&u))
    }

    /// The UPID.
    pub fn as_str(&self) -> &str {
        &self.upid
    }
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.upid)
    }
}

/// How a task is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Still running.
    pub running: bool,
    /// Finished successfully (`OK` or `WARNINGS: N`); `None` while running.
    pub ok: Option<bool>,
    /// PVE's exit status once finished.
    pub exit_status: Option<String>,
    /// The last log lines (at most 10).
    pub last_lines: Vec<String>,
    /// The last percentage the log printed (vzdump, restore, clone).
    pub percent: Option<f32>,
}

impl ClientArea {
    fn task_handle(&self, task: &TaskRef) -> Result<pve_vps_api::TaskHandle, Error> {
        let upid: pve_vps_api::Upid = task.upid.parse().map_err(|e: pve_vps_api::Error| {
            Error::invalid("task reference", task.upid.clone(), e.to_string())
        })?;
        Ok(self
            .inner
            .client
            .task(upid)
            .timeout(self.inner.task_timeout)
            .poll_interval(Duration::from_millis(if cfg!(test) { 20 } else { 1000 })))
    }

    /// Status, last log lines and percentage of a task of this service. A task of another VM
    /// is refused.
    pub async fn task_progress(
        &self,
        service: &Service,
        task: &TaskRef,
    ) -> Result<TaskProgress, Error> {
        let h = self.task_handle(task)?;
        if h.upid().id() != service.vmid().to_string()
            || h.upid().node().as_str() != service.vm.node().as_str()
        {
            return Err(Error::invalid(
                "task reference",
                task.upid.clone(),
                "belongs to another vm",
            ));
        }
        let status = h.status().await.map_err(Error::pve("read task status"))?;
        let log = h
            .log(0, 100_000)
            .await
            .map_err(Error::pve("read task log"))?;
        let lines: Vec<String> = log.into_iter().map(|l| l.t).collect();
        let last_lines = lines[lines.len().saturating_sub(10)..].to_vec();
        let running = status.status == pve_vps_api::task::TaskState::Running;
        let exit = status.exitstatus.clone().filter(|_| !running);
        Ok(TaskProgress {
            running,
            ok: exit
                .as_deref()
                .map(|e| pve_vps_api::task::classify_exit_status(e).is_some()),
            exit_status: exit,
            percent: crate::tasks::percent(&lines),
            last_lines,
        })
    }

    /// Waits until a task of this service stops and returns its final progress.
    pub async fn wait_task(
        &self,
        service: &Service,
        task: &TaskRef,
    ) -> Result<TaskProgress, Error> {
        let h = self.task_handle(task)?;
        let _ = h.wait().await;
        self.task_progress(service, task).await
    }

    /// Waits for a task; a failure is an error.
    pub(crate) async fn wait(&self, h: pve_vps_api::TaskHandle, what: &str) -> Result<(), Error> {
        h.timeout(self.inner.task_timeout)
            .poll_interval(Duration::from_millis(25))
            .wait()
            .await
            .map(|_| ())
            .map_err(Error::pve(what.to_owned()))
    }

    /// Writes a config update given as keys to set and delete, in one schema-checked
    /// `PUT config`: typed where proxmox-api has a setter, `ConfigUpdate::set_other` for the
    /// other declared keys (`tags`, `boot`, `unusedN`, ...) and the validated `delete`. A key
    /// the API does not declare, or a value that does not fit its type, is refused as invalid
    /// input before anything is sent.
    pub(crate) async fn write_config(
        &self,
        service: &Service,
        update: &ConfigUpdate,
    ) -> Result<(), Error> {
        if update.set.is_empty() && update.delete.is_empty() {
            return Ok(());
        }
        let u = api_config_update(update)?;
        self.vm(service)?
            .update_config(&u)
            .await
            .map_err(Error::pve("write vm config"))
    }

    /// Sets single keys.
    pub(crate) async fn set_keys(
        &self,
        service: &Service,
        set: Vec<(String, String)>,
    ) -> Result<(), Error> {
        self.write_config(
            service,
            &ConfigUpdate {
                set,
                delete: vec![],
            },
        )
        .await
    }

    /// The config (current values).
    pub(crate) async fn config(&self, service: &Service) -> Result<VmConfig, Error> {
        let c = self
            .vm(service)?
            .config()
            .await
            .map_err(Error::pve("read vm config"))?;
        Ok(VmConfig::from_map(c.raw))
    }

    /// `ipfilter-net0` entries; a missing set is empty.
    pub(crate) async fn ipfilter(
        &self,
        service: &Service,
    ) -> Result<Option<Vec<IpsetEntry>>, Error> {
        let fw = self.vm(service)?.firewall();
        let name: pve_vps_api::FirewallName =
            IPFILTER_NET0.parse().map_err(|e: pve_vps_api::Error| {
                Error::invalid("ipset", IPFILTER_NET0, e.to_string())
            })?;
        let sets = fw.ipsets().await.map_err(Error::pve("list ipsets"))?;
        if !sets
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(IPFILTER_NET0))
        {
            return Ok(None);
        }
        let entries = fw
            .ipset_entries(&name)
            .await
            .map_err(Error::pve("read ipfilter-net0"))?;
        Ok(Some(
            entries
                .into_iter()
                .filter_map(|e| {
                    Some(IpsetEntry {
                        cidr: parse_net(&e.cidr)?,
                        nomatch: e.nomatch,
                    })
                })
                .collect(),
        ))
    }

    /// Makes `ipfilter-net0` hold exactly the service's addresses (creating the set if needed).
    pub(crate) async fn sync_ipfilter(
        &self,
        service: &Service,
        diff: Option<&crate::firewall::IpsetDiff>,
    ) -> Result<(), Error> {
        let fw = self.vm(service)?.firewall();
        let name: pve_vps_api::FirewallName =
            IPFILTER_NET0.parse().map_err(|e: pve_vps_api::Error| {
                Error::invalid("ipset", IPFILTER_NET0, e.to_string())
            })?;
        let current = self.ipfilter(service).await?;
        if current.is_none() {
            fw.create_ipset(&name, Some("anti-spoofing, managed by the provider"))
                .await
                .map_err(Error::pve("create ipfilter-net0"))?;
        }
        let computed;
        let diff = match diff {
            Some(d) if current.is_some() => d,
            _ => {
                computed = diff_ipset(&current.unwrap_or_default(), &desired_ipfilter(service));
                &computed
            }
        };
        for r in &diff.remove {
            match fw.remove_ipset_entry(&name, &host_or_net(r), None).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(Error::pve("remove ipfilter entry")(e)),
            }
        }
        for a in &diff.add {
            let cidr = host_or_net(a);
            match fw.add_ipset_entry(&name, &cidr, false, None).await {
                Ok(()) => {}
                // Already there (a resumed step): fine.
                Err(e) if e.message().is_some_and(|m| m.contains("already")) => {}
                Err(e) => return Err(Error::pve("add ipfilter entry")(e)),
            }
        }
        Ok(())
    }

    /// What reconciliation needs to know.
    pub(crate) async fn observe(&self, service: &Service) -> Result<Observed, Error> {
        let live = self.live(service).await?;
        Ok(Observed {
            config: live.config,
            ipfilter: self.ipfilter(service).await?.unwrap_or_default(),
            running: live.state.running,
        })
    }

    /// Carries out one reconciliation step (each is idempotent).
    pub(crate) async fn run_reconcile_step(
        &self,
        service: &Service,
        step: &ReconcileStep,
    ) -> Result<(), Error> {
        match step {
            ReconcileStep::ResizeDisk { key, size } => {
                let slot: pve_vps_api::DiskSlot =
                    key.parse().map_err(|e: pve_vps_api::Error| {
                        Error::invalid("disk key", key.clone(), e.to_string())
                    })?;
                let current = self.config(service).await?.disk(key)?.and_then(|d| d.size);
                if current.is_some_and(|c: DiskSize| c >= *size) {
                    return Ok(());
                }
                if let Some(t) = self
                    .vm(service)?
                    .resize_disk(slot, &size.to_string(), None)
                    .await
                    .map_err(Error::pve("resize disk"))?
                {
                    self.wait(t, "resize disk").await?;
                }
                Ok(())
            }
            ReconcileStep::SyncIpFilter { diff } => self.sync_ipfilter(service, Some(diff)).await,
            ReconcileStep::Start => {
                if self.state(service).await?.running {
                    return Ok(());
                }
                let t = self
                    .vm(service)?
                    .start()
                    .await
                    .map_err(Error::pve("start vm"))?;
                self.wait(t, "start vm").await
            }
            ReconcileStep::CreateDisk { key, storage, .. } => {
                // Allocation happens on write; skip when the key already holds a disk.
                if self.config(service).await?.get(key).is_some() {
                    return Ok(());
                }
                let _ = api_storage(storage)?;
                match step.config_update() {
                    Some(u) => self.write_config(service, &u).await,
                    None => Ok(()),
                }
            }
            other => match other.config_update() {
                Some(u) => self.write_config(service, &u).await,
                None => Ok(()),
            },
        }
    }

    /// Reconciles the VM with its package and identity; `start` says whether the final start
    /// runs. Returns the steps carried out.
    pub(crate) async fn reconcile(
        &self,
        service: &Service,
        start: bool,
    ) -> Result<Vec<ReconcileStep>, Error> {
        let product = self.product(service)?;
        let observed = self.observe(service).await?;
        let plan = crate::reconcile::plan(&observed, product, service)?;
        for w in &plan.warnings {
            tracing::warn!(vm = %service.vm, warning = ?w, "reconcile warning");
        }
        let mut done = Vec::new();
        for step in plan.steps {
            if step == ReconcileStep::Start && !start {
                continue;
            }
            self.run_reconcile_step(service, &step).await?;
            done.push(step);
        }
        Ok(done)
    }
}

pub(crate) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// A host network is written as a bare address (PVE lists it so).
fn host_or_net(n: &ipnet::IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.to_string()
    }
}

/// The proxmox-api update for `update`: every key through a typed setter or the checked
/// `set_other`/`delete`, so undeclared keys and ill-typed values never reach PVE.
fn api_config_update(
    update: &ConfigUpdate,
) -> Result<pve_vps_api::api::qemu_config::ConfigUpdate, Error> {
    use pve_vps_api::api::qemu_config::{self as qc};
    let mut u = qc::ConfigUpdate::new();
    let bad = |k: &str, v: &str, e: pve_vps_api::Error| {
        Error::invalid("config value", format!("{k}: {v}"), e.to_string())
    };
    for (k, v) in &update.set {
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| Error::invalid("config value", format!("{k}: {v}"), "not a number"))
        };
        // `onboot` and `agent` have typed boolean setters (an `agent` property string with
        // options cannot be written through them and is refused).
        let flag = |v: &str| match v {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(Error::invalid(
                "config value",
                format!("{k}: {v}"),
                "must be a boolean",
            )),
        };
        u = match k.as_str() {
            "cores" => u.cores(num(v)? as u32),
            "sockets" => u.sockets(num(v)? as u32),
            "memory" => u.memory_mib(num(v)?),
            "description" => u.description(v),
            "onboot" => u.onboot(flag(v)?),
            "agent" => u.agent(flag(v)?),
            "cipassword" => u.cipassword(secrecy::SecretString::from(v.clone())),
            "nameserver" => u.nameserver(v).map_err(|e| bad(k, v, e))?,
            "searchdomain" => u.searchdomain(v).map_err(|e| bad(k, v, e))?,
            "ciuser" => u.ciuser(v).map_err(|e| bad(k, v, e))?,
            "name" => u.name(v).map_err(|e| bad(k, v, e))?,
            _ if k.starts_with("net") && k[3..].parse::<u32>().is_ok() => {
                let spec = qc::NetSpec::parse(v);
                u.net(k[3..].parse().unwrap_or(0), &spec)
                    .map_err(|e| bad(k, v, e))?
            }
            _ if k.starts_with("ipconfig") && k[8..].parse::<u32>().is_ok() => {
                u.ipconfig(k[8..].parse().unwrap_or(0), &qc::IpConfig::parse(v))
            }
            _ => match k.parse::<pve_vps_api::DiskSlot>() {
                Ok(slot) => u.disk(slot, v).map_err(|e| bad(k, v, e))?,
                Err(_) => u.set_other(k, v).map_err(|e| bad(k, v, e))?,
            },
        };
    }
    for k in &update.delete {
        u = u.delete(k).map_err(|e| bad(k, "", e))?;
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::product::Catalog;
    use crate::service::{Ipv4Assignment, VmRef};
    use crate::stores::{MemoryPlanStore, MemoryScheduleStore};

    fn set(kv: &[(&str, &str)]) -> ConfigUpdate {
        ConfigUpdate {
            set: kv
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            delete: vec![],
        }
    }

    #[test]
    fn undeclared_keys_and_ill_typed_values_are_refused_before_sending() {
        for bad in [
            set(&[("bogus", "1")]),
            set(&[("unused300", "local-lvm:vm-104-disk-9")]),
            set(&[("digest", "abc")]),
            set(&[("tags", "")]),
            set(&[("balloon", "lots")]),
            set(&[("onboot", "maybe")]),
            ConfigUpdate {
                set: vec![],
                delete: vec!["bogus".into()],
            },
        ] {
            let err = api_config_update(&bad).unwrap_err();
            assert!(err.is_invalid_input(), "{bad:?}: {err}");
        }
        for good in [
            set(&[("tags", "web;prod"), ("boot", "order=scsi0;net0")]),
            set(&[("unused0", "local-lvm:vm-104-disk-9"), ("balloon", "512")]),
            set(&[("description", "x"), ("onboot", "1"), ("agent", "0")]),
            set(&[
                ("cores", "2"),
                ("scsi1", "local-lvm:4"),
                ("ipconfig0", "ip=dhcp"),
            ]),
        ] {
            api_config_update(&good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }

    /// Keys without a typed setter still reach PVE (through `set_other`, in the same `PUT`);
    /// an undeclared key sends nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn untyped_keys_are_written_through_the_checked_path() {
        let sim = pve_vps_sim::PveSim::start(pve_vps_sim::SimConfig::for_tests())
            .await
            .unwrap();
        let client = pve_vps_api::Client::builder(sim.https_url())
            .auth(
                pve_vps_api::Auth::api_token("root@pam!sim", pve_vps_sim::DEFAULT_TOKEN_SECRET)
                    .unwrap(),
            )
            .tls(pve_vps_api::Tls::Pinned(sim.fingerprint().parse().unwrap()))
            .retry(pve_vps_api::RetryPolicy::none())
            .build()
            .unwrap();
        let catalog =
            Catalog::from_toml_str(include_str!("../../tests/data/sim-products.toml")).unwrap();
        let area = ClientArea::builder(client, catalog)
            .plan_store(Arc::new(MemoryPlanStore::new()))
            .schedule_store(Arc::new(MemoryScheduleStore::new()))
            .build()
            .unwrap();
        let service = Service {
            vm: VmRef::new("pve3".parse().unwrap(), 104.try_into().unwrap()),
            product: "vps".parse().unwrap(),
            ipv4: Some(Ipv4Assignment {
                primary: "198.51.100.104/24".parse().unwrap(),
                gateway: "198.51.100.1".parse().unwrap(),
                extra: vec![],
            }),
            ipv6: None,
            dns: vec!["1.1.1.1".parse().unwrap()],
            domain: "vps104.example.com".parse().unwrap(),
            mac: pve_vps_sim::mac_for(104, 0).parse().unwrap(),
            cluster: Default::default(),
        };
        area.write_config(
            &service,
            &set(&[
                ("tags", "web;prod"),
                ("description", "customer vps"),
                ("onboot", "yes"),
                ("cores", "2"),
            ]),
        )
        .await
        .unwrap();
        let c = sim.vm_config(104).unwrap();
        assert_eq!(c["tags"], "web;prod");
        assert_eq!(c["description"], "customer vps");
        assert_eq!(c["onboot"], "1");
        // VM 104 runs: the CPU change waits in pending, in the same PUT.
        let cores = || sim.vm_pending(104).unwrap().get("cores").cloned().flatten();
        assert_eq!(cores().as_deref(), Some("2"));
        area.write_config(
            &service,
            &ConfigUpdate {
                set: vec![],
                delete: vec!["tags".into()],
            },
        )
        .await
        .unwrap();
        assert!(!sim.vm_config(104).unwrap().contains_key("tags"));

        let before = sim.request_count();
        let err = area
            .write_config(&service, &set(&[("cores", "4"), ("bogus", "1")]))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert_eq!(sim.request_count(), before, "nothing sent");
        assert_eq!(cores().as_deref(), Some("2"));
        sim.shutdown().await;
    }
}
