//! Several scheduler workers sharing one PostgreSQL database (pg-test) against one pve-sim:
//! every due scheduled backup is made exactly once, and a worker killed mid-plan is taken over
//! once its lease expired.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pve_vps_services::backups::{DaySchedule, WeeklySchedule};
use pve_vps_services::leases::LeaseKey;
use pve_vps_services::outcomes::{Ending, OperationKind};
use pve_vps_services::service::Service;
use pve_vps_services::stores::{PgStore, PlanStore, ScheduleStore};
use pve_vps_services::time::OffsetDateTime;
use pve_vps_services::{ClientArea, Clock, ManualClock};
use pve_vps_sim::{PveSim, SimConfig};

fn worker(
    sim: &PveSim,
    store: &Arc<PgStore>,
    clock: &Arc<ManualClock>,
    name: &str,
    ttl: Duration,
) -> ClientArea {
    ClientArea::builder(common::client(sim), common::catalog())
        .stores(store.clone())
        .clock(clock.clone())
        .worker(name.parse().unwrap())
        .lease_ttl(ttl)
        .task_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn every_due_backup_is_made_once_by_concurrent_workers() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("backups_once");
    common::run(120, async move {
        let sim = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let services: Vec<Service> = vec![common::svc100(), common::svc101(), common::svc104()];
        // Every day at 00:00: due whenever this runs.
        let daily = DaySchedule {
            enabled: true,
            time: "00:00".parse().unwrap(),
        };
        for s in &services {
            store
                .put(s.vmid(), &WeeklySchedule::new([daily; 7]))
                .await
                .unwrap();
        }
        let before: BTreeMap<u32, Vec<String>> = services
            .iter()
            .map(|s| (s.vmid().get(), sim.backup_volids(s.vmid().get())))
            .collect();
        let ttl = Duration::from_secs(30);
        let workers: Vec<ClientArea> = ["cron-a", "cron-b", "cron-c"]
            .iter()
            .map(|n| worker(&sim, &store, &clock, n, ttl))
            .collect();

        // Three workers tick at the same moment.
        let reports = futures_util::future::join_all(workers.iter().map(|w| {
            let w = w.clone();
            let services = services.clone();
            tokio::spawn(async move { w.backup_tick(&services).await.unwrap() })
        }))
        .await;
        let reports: Vec<_> = reports.into_iter().map(|r| r.unwrap()).collect();
        let mut created: Vec<u32> = reports
            .iter()
            .flat_map(|r| r.created.iter().map(|v| v.vmid().get()))
            .collect();
        created.sort_unstable();
        assert_eq!(
            created,
            vec![100, 101, 104],
            "each due backup created once, by one worker: {reports:#?}"
        );
        for r in &reports {
            assert!(r.failed.is_empty(), "{reports:#?}");
        }
        for s in &services {
            let vmid = s.vmid().get();
            let now: Vec<String> = sim.backup_volids(vmid);
            let new: Vec<&String> = now.iter().filter(|v| !before[&vmid].contains(v)).collect();
            assert_eq!(new.len(), 1, "vm {vmid}: exactly one new archive: {new:?}");
            // The slot's lease is done: nobody takes it again today.
            let slot = pve_vps_services::backups::due_slot(
                &WeeklySchedule::new([daily; 7]),
                clock.now(),
                pve_vps_services::time::UtcOffset::UTC,
            )
            .unwrap();
            let lease = pve_vps_services::stores::LeaseStore::lease(
                store.as_ref(),
                &LeaseKey::backup_slot(s.vmid(), slot),
            )
            .await
            .unwrap()
            .expect("slot lease stored");
            assert!(lease.done, "{lease:?}");
        }

        // A later round by any worker creates nothing: the slots are served.
        let later =
            futures_util::future::join_all(workers.iter().map(|w| w.backup_tick(&services))).await;
        for r in later {
            let r = r.unwrap();
            assert!(r.created.is_empty(), "{r:?}");
        }
        for s in &services {
            let vmid = s.vmid().get();
            assert_eq!(sim.backup_volids(vmid).len(), before[&vmid].len() + 1);
        }
        sim.shutdown().await;
    });
}

#[test]
fn a_killed_worker_is_taken_over_after_its_lease_expired() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("takeover");
    common::run(120, async move {
        // Slow tasks, so that the restore is surely mid-plan when its worker dies.
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(400), Duration::from_millis(200)),
        )
        .await
        .unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let ttl = Duration::from_secs(20);
        let a = worker(&sim, &store, &clock, "cron-a", ttl);
        let b = worker(&sim, &store, &clock, "cron-b", ttl);
        let s = common::svc104();
        let archive = a.backups(&s).await.unwrap().backups[0].volid.clone();

        // Worker A starts a restore and is killed after the first step (the VM stopped).
        let a_task = {
            let a = a.clone();
            let s = s.clone();
            let archive = archive.clone();
            tokio::spawn(async move { a.restore(&s, &archive).await })
        };
        let plan = loop {
            let unfinished = store.unfinished().await.unwrap();
            if let Some(p) = unfinished.iter().find(|p| p.done >= 1) {
                break p.clone();
            }
            assert!(
                !a_task.is_finished(),
                "the restore ended before it was killed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        a_task.abort();
        assert!(a_task.await.unwrap_err().is_cancelled());
        let lease =
            pve_vps_services::stores::LeaseStore::lease(store.as_ref(), &LeaseKey::plan(&plan.id))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(lease.holder.as_str(), "cron-a");
        assert!(!lease.done);
        // A's restore task in PVE runs on to its end regardless.
        common::wait_unlocked(&sim, 104).await;

        // While A's lease is valid, B leaves the plan alone; portal calls are refused too.
        let r = b.resume_unfinished(std::slice::from_ref(&s)).await.unwrap();
        assert!(r.finished.is_empty(), "{r:?}");
        assert!(
            r.skipped
                .iter()
                .any(|(id, why)| id == &plan.id && why.contains("cron-a")),
            "{r:?}"
        );
        let err = b.resume(&s, &plan.id).await.unwrap_err();
        assert!(err.is_locked(), "{err}");
        assert!(err.to_string().contains("cron-a"), "{err}");

        // A stopped renewing: once the lease expired, B takes the plan over and finishes it.
        clock.advance(pve_vps_services::time::Duration::seconds(21));
        let r = b.resume_unfinished(std::slice::from_ref(&s)).await.unwrap();
        assert_eq!(r.finished, vec![plan.id.clone()], "{r:?}");
        assert!(store.unfinished().await.unwrap().is_empty());
        assert_eq!(sim.vm_status(104), Some("running"));
        let lease =
            pve_vps_services::stores::LeaseStore::lease(store.as_ref(), &LeaseKey::plan(&plan.id))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(lease.holder.as_str(), "cron-b");
        assert!(lease.done);

        // Any instance shows the outcome, whoever ran it.
        let portal = worker(&sim, &store, &clock, "portal-1", ttl);
        let o = portal.last_outcome(&s).await.unwrap().expect("outcome");
        assert_eq!(o.plan, plan.id);
        assert_eq!(o.operation, OperationKind::Restore);
        assert_eq!(o.ending, Ending::Succeeded);

        // A finished plan is not run again by anyone.
        let r = a.resume_unfinished(std::slice::from_ref(&s)).await.unwrap();
        assert!(r.finished.is_empty() && r.failed.is_empty(), "{r:?}");
        sim.shutdown().await;
    });
}

#[test]
fn a_failed_restore_is_recorded_for_every_instance() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("outcomes");
    common::run(120, async move {
        let sim = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let ttl = Duration::from_secs(20);
        let a = worker(&sim, &store, &clock, "portal-a", ttl);
        let b = worker(&sim, &store, &clock, "portal-b", ttl);
        let s = common::svc104();
        let archive = a.backups(&s).await.unwrap().backups[0].volid.clone();
        sim.fail_next_task("qmrestore", "simulated restore failure");
        let err = a.restore(&s, &archive).await.unwrap_err();
        assert!(err.is_restore_failed(), "{err}");
        // The other instance shows it, and the scheduler (B) may retry at once: the lease
        // was released.
        let o = b.last_outcome(&s).await.unwrap().expect("outcome");
        assert!(
            matches!(&o.ending, Ending::NeedsRetryOrReinstall { reason } if reason.contains("restore")),
            "{o:?}"
        );
        common::wait_unlocked(&sim, 104).await;
        let r = b.resume_unfinished(std::slice::from_ref(&s)).await.unwrap();
        assert_eq!(r.finished, vec![o.plan.clone()], "{r:?}");
        assert_eq!(
            b.last_outcome(&s).await.unwrap().unwrap().ending,
            Ending::Succeeded
        );
        sim.shutdown().await;
    });
}

#[test]
fn a_stalled_worker_that_lost_its_lease_stops_before_the_next_step() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("stalled");
    common::run(120, async move {
        // Long tasks: the restore step outlasts a few renewal periods.
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(1500), Duration::from_millis(200)),
        )
        .await
        .unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        // Renewed every 300 ms of real time.
        let ttl = Duration::from_millis(900);
        let a = worker(&sim, &store, &clock, "cron-a", ttl);
        let b = worker(&sim, &store, &clock, "cron-b", ttl);
        let s = common::svc104();
        let archive = a.backups(&s).await.unwrap().backups[0].volid.clone();
        let a_task = {
            let (a, s, archive) = (a.clone(), s.clone(), archive.clone());
            tokio::spawn(async move { a.restore(&s, &archive).await })
        };
        let plan = loop {
            if let Some(p) = store
                .unfinished()
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.done >= 1)
            {
                break p;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // A looks dead from the store's point of view (its clock says the lease expired), and
        // B takes the plan's lease.
        clock.advance(pve_vps_services::time::Duration::seconds(2));
        let key = LeaseKey::plan(&plan.id);
        assert!(
            pve_vps_services::stores::LeaseStore::acquire(
                store.as_ref(),
                &key,
                b.worker(),
                clock.now(),
                ttl,
            )
            .await
            .unwrap()
        );
        // A's renewal finds the lease gone and A stops before its next step.
        let err = a_task.await.unwrap().unwrap_err();
        assert!(err.is_locked(), "{err}");
        assert!(err.to_string().contains("taken over"), "{err}");
        let left = store.load(&plan.id).await.unwrap().unwrap();
        assert!(left.done < left.plan.len(), "{left:?}");
        // B, the holder, finishes it.
        common::wait_unlocked(&sim, 104).await;
        b.resume(&s, &plan.id).await.unwrap();
        assert!(store.unfinished().await.unwrap().is_empty());
        assert_eq!(sim.vm_status(104), Some("running"));
        sim.shutdown().await;
    });
}

#[test]
fn a_worker_killed_mid_backup_is_not_followed_by_a_second_backup() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("killed_backup");
    common::run(120, async move {
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(50), Duration::from_millis(1500)),
        )
        .await
        .unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let ttl = Duration::from_secs(20);
        let a = worker(&sim, &store, &clock, "cron-a", ttl);
        let b = worker(&sim, &store, &clock, "cron-b", ttl);
        let s = common::svc101();
        let daily = DaySchedule {
            enabled: true,
            time: "00:00".parse().unwrap(),
        };
        store
            .put(s.vmid(), &WeeklySchedule::new([daily; 7]))
            .await
            .unwrap();
        let before = sim.backup_volids(101).len();
        // A claims the slot and starts the backup, then dies while vzdump runs.
        let a_task = {
            let (a, s) = (a.clone(), s.clone());
            tokio::spawn(async move { a.backup_tick(std::slice::from_ref(&s)).await })
        };
        while sim.vm_lock(101).as_deref() != Some("backup") {
            assert!(
                !a_task.is_finished(),
                "the tick ended before the backup started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a_task.abort();
        assert!(a_task.await.unwrap_err().is_cancelled());
        // B, while A's slot lease is valid: leaves it alone.
        let r = b.backup_tick(std::slice::from_ref(&s)).await.unwrap();
        assert!(r.created.is_empty(), "{r:?}");
        assert!(
            r.skipped.iter().any(|(_, why)| why.contains("cron-a")),
            "{r:?}"
        );
        // The backup A started finishes in PVE. After A's lease expired, any worker may take
        // the slot, but the storage listing shows today's archive: no second backup.
        common::wait_unlocked(&sim, 101).await;
        clock.advance(pve_vps_services::time::Duration::seconds(21));
        for w in [&b, &a] {
            let r = w.backup_tick(std::slice::from_ref(&s)).await.unwrap();
            assert!(r.created.is_empty() && r.failed.is_empty(), "{r:?}");
        }
        assert_eq!(sim.backup_volids(101).len(), before + 1);
        sim.shutdown().await;
    });
}

#[test]
fn a_slot_claimed_by_a_worker_that_died_before_acting_is_not_lost() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("dead_claim");
    common::run(120, async move {
        let sim = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let store = Arc::new(PgStore::connect(&url).await.unwrap());
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let ttl = Duration::from_secs(20);
        let b = worker(&sim, &store, &clock, "cron-b", ttl);
        let s = common::svc101();
        let schedule = WeeklySchedule::new(
            [DaySchedule {
                enabled: true,
                time: "00:00".parse().unwrap(),
            }; 7],
        );
        store.put(s.vmid(), &schedule).await.unwrap();
        // A worker claimed today's slot and died before it did anything.
        let slot = pve_vps_services::backups::due_slot(
            &schedule,
            clock.now(),
            pve_vps_services::time::UtcOffset::UTC,
        )
        .unwrap();
        let key = LeaseKey::backup_slot(s.vmid(), slot);
        assert!(
            pve_vps_services::stores::LeaseStore::acquire(
                store.as_ref(),
                &key,
                &"cron-dead".parse().unwrap(),
                clock.now(),
                ttl,
            )
            .await
            .unwrap()
        );
        let before = sim.backup_volids(101).len();
        let r = b.backup_tick(std::slice::from_ref(&s)).await.unwrap();
        assert!(r.created.is_empty(), "{r:?}");
        assert!(
            r.skipped.iter().any(|(_, why)| why.contains("cron-dead")),
            "{r:?}"
        );
        // Once its lease expired, B takes the slot over and makes the backup.
        clock.advance(pve_vps_services::time::Duration::seconds(21));
        let r = b.backup_tick(std::slice::from_ref(&s)).await.unwrap();
        assert_eq!(r.created.len(), 1, "{r:?}");
        assert_eq!(sim.backup_volids(101).len(), before + 1);
        let lease = pve_vps_services::stores::LeaseStore::lease(store.as_ref(), &key)
            .await
            .unwrap()
            .unwrap();
        assert!(lease.done && lease.holder.as_str() == "cron-b", "{lease:?}");
        sim.shutdown().await;
    });
}
