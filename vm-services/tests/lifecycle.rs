//! End-to-end use of the public API, the way an executor drives it: load products, plan,
//! store, "execute" with the pure simulations, resume, plan again.

use std::collections::HashMap;

use pve_vps_services::backups::{self, ScheduledVm, WeeklySchedule};
use pve_vps_services::ids::VmId;
use pve_vps_services::permissions::VmState;
use pve_vps_services::product::Catalog;
use pve_vps_services::reconcile::{self, Observed};
use pve_vps_services::reinstall::{self, NextStep, OperationPlan, PlanId, StoredPlan};
use pve_vps_services::service::{Ipv4Assignment, Service, VmRef};
use pve_vps_services::stores::{PlanStore, ScheduleStore, SqliteStore};
use pve_vps_services::time::{OffsetDateTime, UtcOffset};

fn service() -> Service {
    Service {
        vm: VmRef::new("pve1".parse().unwrap(), VmId::new(100).unwrap()),
        product: "vps-small".parse().unwrap(),
        ipv4: Some(Ipv4Assignment {
            primary: "192.0.2.10/24".parse().unwrap(),
            gateway: "192.0.2.1".parse().unwrap(),
            extra: vec![],
        }),
        ipv6: None,
        dns: vec!["8.8.8.8".parse().unwrap()],
        domain: "vm100.example.com".parse().unwrap(),
        mac: "BC:24:11:7A:40:98".parse().unwrap(),
        cluster: Default::default(),
    }
}

#[test]
fn example_products_load_from_toml_and_json() {
    let toml_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/products.toml"
    ))
    .unwrap();
    let from_toml = Catalog::from_toml_str(&toml_text).unwrap();
    let json =
        serde_json::to_string(&toml::from_str::<serde_json::Value>(&toml_text).unwrap()).unwrap();
    assert_eq!(Catalog::from_json_str(&json).unwrap(), from_toml);
    assert!(
        from_toml
            .get(&"vps-large".parse().unwrap())
            .unwrap()
            .additional_disk
            .is_some()
    );
}

#[tokio::test]
async fn schedule_saved_then_ticked() {
    let store = SqliteStore::open_in_memory().unwrap();
    let sched = WeeklySchedule::from_form([(true, "03:00"); 7]).unwrap();
    let svc = service();
    store.put(svc.vmid(), &sched).await.unwrap();
    let catalog = Catalog::from_toml_str(include_str!("../examples/products.toml")).unwrap();
    let product = catalog.get(&svc.product).unwrap();
    let vms: Vec<ScheduledVm> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, schedule)| ScheduledVm {
            vm: svc.vm.clone(),
            storage: product.backups.storage.clone(),
            quota: product.backups.quota,
            schedule,
        })
        .collect();
    let now = OffsetDateTime::from_unix_timestamp(1_775_973_600).unwrap();
    let mut existing = HashMap::new();
    let plan = backups::plan_tick(&vms, &existing, now, UtcOffset::UTC);
    assert_eq!(plan.actions.len(), 1);
    backups::apply_tick(&mut existing, &plan, now);
    assert!(
        backups::plan_tick(&vms, &existing, now, UtcOffset::UTC)
            .actions
            .is_empty()
    );
}

#[tokio::test]
async fn interrupted_reinstall_resumes_from_the_store() {
    let catalog = Catalog::from_toml_str(include_str!("../examples/products.toml")).unwrap();
    let svc = service();
    let product = catalog.get(&svc.product).unwrap();
    let config = [
        (
            "net0",
            "virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1",
        ),
        ("scsi0", "local-lvm:vm-100-disk-0,size=100G"),
    ]
    .into_iter()
    .collect();
    let plan = reinstall::plan(
        product,
        &svc,
        &VmState::default(),
        &config,
        &[],
        VmId::new(9000).unwrap(),
        "REINSTALL",
    )
    .unwrap();
    let now = OffsetDateTime::from_unix_timestamp(1_775_973_600).unwrap();
    let stored = StoredPlan {
        id: PlanId::generate("reinstall", svc.vmid(), now).unwrap(),
        vm: svc.vm.clone(),
        plan: OperationPlan::Reinstall(plan),
        done: 0,
    };
    let store = SqliteStore::open_in_memory().unwrap();
    store.save(&stored).await.unwrap();
    // The executor runs three steps, then the process dies.
    for done in 1..=3 {
        store.record_progress(&stored.id, done).await.unwrap();
    }
    let resumed = store.unfinished().await.unwrap().pop().unwrap();
    let at = reinstall::resume_point(&resumed.plan, resumed.done);
    assert_eq!(at, 3);
    assert!(matches!(
        reinstall::next_step(&resumed.plan, at),
        Some(NextStep::Reinstall(_))
    ));

    // ApplyPackage runs reconcile on the freshly cloned VM; the simulation converges.
    let fresh = Observed {
        config: [("scsi0", "local-lvm:base-9000-disk-0,size=2G")]
            .into_iter()
            .collect(),
        ipfilter: vec![],
        running: false,
    };
    let mut o = fresh;
    for step in reconcile::plan(&o, product, &svc).unwrap().steps {
        o = reconcile::apply(o, &step);
    }
    assert!(reconcile::plan(&o, product, &svc).unwrap().steps.is_empty());
}
