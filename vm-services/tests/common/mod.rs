//! Shared setup: a pve-sim demo cluster, a client pinned to its certificate, the test
//! products and services for the demo VMs.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pve_vps_services::notify::{Notification, Notifier};
use pve_vps_services::product::Catalog;
use pve_vps_services::service::{Ipv4Assignment, Service, VmRef};
use pve_vps_services::stores::MemoryPlanStore;
use pve_vps_services::stores::MemoryScheduleStore;
use pve_vps_services::time::OffsetDateTime;
use pve_vps_services::{ClientArea, ManualClock};
use pve_vps_sim::{PveSim, SimConfig};

pub fn catalog() -> Catalog {
    Catalog::from_toml_str(include_str!("../data/sim-products.toml")).expect("test products")
}

/// Runs a test body under a timeout on a multi-threaded runtime.
pub fn run<F: Future<Output = ()>>(secs: u64, f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(secs), f)
            .await
            .expect("test timed out");
    });
}

/// Records notifications; the password is exposed only to the test.
#[derive(Debug, Default)]
pub struct Recorder(pub Mutex<Vec<Notification>>);

#[async_trait::async_trait]
impl Notifier for Recorder {
    async fn notify(
        &self,
        _service: &Service,
        n: &Notification,
    ) -> Result<(), pve_vps_services::Error> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}

impl Recorder {
    pub fn kinds(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|n| n.describe())
            .collect()
    }
}

pub struct Env {
    pub sim: PveSim,
    pub area: ClientArea,
    pub clock: Arc<ManualClock>,
    pub notes: Arc<Recorder>,
    pub plans: Arc<MemoryPlanStore>,
}

pub fn client(sim: &PveSim) -> pve_vps_api::Client {
    pve_vps_api::Client::builder(sim.https_url())
        .auth(
            pve_vps_api::Auth::api_token("root@pam!sim", pve_vps_sim::DEFAULT_TOKEN_SECRET)
                .expect("token"),
        )
        .tls(pve_vps_api::Tls::Pinned(
            sim.fingerprint().parse().expect("fingerprint"),
        ))
        .retry(pve_vps_api::RetryPolicy::none())
        .task_poll_interval(Duration::from_millis(20))
        .build()
        .expect("client")
}

pub async fn env() -> Env {
    env_with(|b| b).await
}

pub async fn env_with(
    f: impl FnOnce(pve_vps_services::ClientAreaBuilder) -> pve_vps_services::ClientAreaBuilder,
) -> Env {
    env_cfg(SimConfig::for_tests(), f).await
}

pub async fn env_cfg(
    cfg: SimConfig,
    f: impl FnOnce(pve_vps_services::ClientAreaBuilder) -> pve_vps_services::ClientAreaBuilder,
) -> Env {
    let sim = PveSim::start(cfg).await.expect("sim");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let notes = Arc::new(Recorder::default());
    let plans = Arc::new(MemoryPlanStore::new());
    let b = ClientArea::builder(client(&sim), catalog())
        .clock(clock.clone())
        .notifier(notes.clone())
        .plan_store(plans.clone())
        .schedule_store(Arc::new(MemoryScheduleStore::new()))
        .task_timeout(Duration::from_secs(30));
    let area = f(b).build().expect("client area");
    Env {
        sim,
        area,
        clock,
        notes,
        plans,
    }
}

/// VM 104 `customer-vps-104` on pve3 (running, one protected backup).
pub fn svc104() -> Service {
    Service {
        vm: VmRef::new("pve3".parse().unwrap(), 104.try_into().unwrap()),
        product: "vps".parse().unwrap(),
        ipv4: Some(Ipv4Assignment {
            primary: "198.51.100.104/24".parse().unwrap(),
            gateway: "198.51.100.1".parse().unwrap(),
            extra: vec!["198.51.100.105".parse().unwrap()],
        }),
        ipv6: None,
        dns: vec!["1.1.1.1".parse().unwrap()],
        domain: "vps104.example.com".parse().unwrap(),
        mac: pve_vps_sim::mac_for(104, 0).parse().unwrap(),
        cluster: Default::default(),
    }
}

/// VM 100 `web-01` on pve1 (running, ISO in ide2, cloud-init in ide0, snapshots, backups).
pub fn svc100() -> Service {
    Service {
        vm: VmRef::new("pve1".parse().unwrap(), 100.try_into().unwrap()),
        product: "vps".parse().unwrap(),
        ipv4: Some(Ipv4Assignment {
            primary: "203.0.113.10/24".parse().unwrap(),
            gateway: "203.0.113.1".parse().unwrap(),
            extra: vec![],
        }),
        ipv6: None,
        dns: vec!["1.1.1.1".parse().unwrap()],
        domain: "web01.example.com".parse().unwrap(),
        mac: pve_vps_sim::mac_for(100, 0).parse().unwrap(),
        cluster: Default::default(),
    }
}

/// VM 101 `db-01` on pve1 (running, two NICs).
pub fn svc101() -> Service {
    Service {
        vm: VmRef::new("pve1".parse().unwrap(), 101.try_into().unwrap()),
        product: "vps".parse().unwrap(),
        ipv4: Some(Ipv4Assignment {
            primary: "203.0.113.11/24".parse().unwrap(),
            gateway: "203.0.113.1".parse().unwrap(),
            extra: vec![],
        }),
        ipv6: None,
        dns: vec!["9.9.9.9".parse().unwrap()],
        domain: "db01.example.com".parse().unwrap(),
        mac: pve_vps_sim::mac_for(101, 0).parse().unwrap(),
        cluster: Default::default(),
    }
}

/// VM 102 `mail-01` on pve2 (stopped) under the product that allows nothing optional.
pub fn svc102_bare() -> Service {
    Service {
        vm: VmRef::new("pve2".parse().unwrap(), 102.try_into().unwrap()),
        product: "bare".parse().unwrap(),
        ipv4: Some(Ipv4Assignment {
            primary: "203.0.113.12/24".parse().unwrap(),
            gateway: "203.0.113.1".parse().unwrap(),
            extra: vec![],
        }),
        ipv6: None,
        dns: vec![],
        domain: "mail01.example.com".parse().unwrap(),
        mac: pve_vps_sim::mac_for(102, 0).parse().unwrap(),
        cluster: Default::default(),
    }
}

/// Polls the simulator until the VM has no lock.
pub async fn wait_unlocked(sim: &PveSim, vmid: u32) {
    for _ in 0..500 {
        if sim.vm_lock(vmid).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("vm {vmid} stays locked");
}
