//! Two scheduler workers sharing one SQLite store against one pve-sim: cron work on one VM is
//! serialized by the per-VM lease. One worker's snapshot expiry sweep and the other's scheduled
//! backup of the same VM, run at the same moment, no longer make the backup fail "VM is
//! locked" (the sweep's `snapshot-delete` lock under the starting vzdump), and two sweepers never
//! delete the same snapshot.

mod common;

use std::sync::Arc;
use std::time::Duration;

use pve_vps_services::backups::{DaySchedule, WeeklySchedule};
use pve_vps_services::stores::{ScheduleStore, SqliteStore};
use pve_vps_services::time::OffsetDateTime;
use pve_vps_services::{ClientArea, Clock, ManualClock};
use pve_vps_sim::{PveSim, SimConfig};

struct Setup {
    sim: PveSim,
    clock: Arc<ManualClock>,
    a: ClientArea,
    b: ClientArea,
    db: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.db);
    }
}

async fn setup(name: &str) -> Setup {
    let sim = PveSim::start(SimConfig::for_tests()).await.unwrap();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let db = std::env::temp_dir().join(format!("vm-lease-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    // Every day at 00:00: due whenever this runs, and again on each later day.
    let daily = DaySchedule {
        enabled: true,
        time: "00:00".parse().unwrap(),
    };
    store
        .put(common::svc104().vmid(), &WeeklySchedule::new([daily; 7]))
        .await
        .unwrap();
    let worker = |n: &str| {
        ClientArea::builder(common::client(&sim), common::catalog())
            .stores(store.clone())
            .clock(clock.clone())
            .worker(n.parse().unwrap())
            .lease_ttl(Duration::from_secs(10))
            .task_timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (a, b) = (worker("cron-a"), worker("cron-b"));
    Setup {
        sim,
        clock,
        a,
        b,
        db,
    }
}

/// Takes a snapshot of VM 104 (through worker `a`) and lets a day and a minute pass, so it is
/// expired (lifetime one day) and today's backup slot is a new one.
async fn expired_snapshot(s: &Setup) -> String {
    let svc = common::svc104();
    let (name, t) = s.a.create_snapshot(&svc, "to expire").await.unwrap();
    assert!(s.a.wait_task(&svc, &t).await.unwrap().ok.unwrap());
    common::wait_unlocked(&s.sim, 104).await;
    s.clock
        .advance(pve_vps_services::time::Duration::minutes(24 * 60 + 1));
    name.to_string()
}

#[test]
fn a_sweep_and_a_backup_of_one_vm_by_two_workers_both_succeed() {
    common::run(240, async {
        let s = setup("sweep-backup").await;
        let services = vec![common::svc104()];
        for i in 0..10u64 {
            let snap = expired_snapshot(&s).await;
            let backups_before = s.sim.backup_volids(104).len();
            // Worker `a` is at its round's sweep while worker `b` runs its whole round (the
            // backup tick, then the sweep); `a` starts a little later each time so the sweep's
            // delete meets the backup at different points.
            let sweep_a = async {
                tokio::time::sleep(Duration::from_millis(i * 7)).await;
                s.a.sweep_expired_snapshots(&services).await
            };
            let round_b = async {
                let tick = s.b.backup_tick(&services).await.unwrap();
                let sweep = s.b.sweep_expired_snapshots(&services).await;
                (tick, sweep)
            };
            let (ra, (tick, rb)) = tokio::join!(sweep_a, round_b);
            let ctx = format!("iteration {i}: sweep a {ra:?}, tick b {tick:?}, sweep b {rb:?}");
            assert_eq!(tick.created, vec![common::svc104().vm], "{ctx}");
            assert!(tick.failed.is_empty(), "{ctx}");
            let removed: Vec<String> = ra
                .removed
                .iter()
                .chain(&rb.removed)
                .map(|(_, n)| n.to_string())
                .collect();
            assert_eq!(removed, vec![snap.clone()], "removed once: {ctx}");
            assert!(!s.sim.snapshot_names(104).contains(&snap), "{ctx}");
            // The backup was made (a full quota rotates one archive out first).
            let after = s.sim.backup_volids(104);
            assert!(
                after.len() == backups_before + 1 || !tick.deleted.is_empty(),
                "{ctx}"
            );
            common::wait_unlocked(&s.sim, 104).await;
        }
    });
}

#[test]
fn two_sweepers_never_delete_one_snapshot_twice() {
    common::run(240, async {
        let s = setup("two-sweeps").await;
        let services = vec![common::svc104()];
        for i in 0..10u64 {
            let snap = expired_snapshot(&s).await;
            let (ra, rb) = tokio::join!(
                async {
                    tokio::time::sleep(Duration::from_millis(i * 3)).await;
                    s.a.sweep_expired_snapshots(&services).await
                },
                s.b.sweep_expired_snapshots(&services)
            );
            let ctx = format!("iteration {i}: sweep a {ra:?}, sweep b {rb:?}");
            let removed: Vec<String> = ra
                .removed
                .iter()
                .chain(&rb.removed)
                .map(|(_, n)| n.to_string())
                .collect();
            assert_eq!(removed, vec![snap.clone()], "removed once: {ctx}");
            // The worker that did not remove it either found the VM held (deferred, retried
            // next round) or swept after the other and found nothing due; never an error.
            assert!(ra.skipped.is_empty() && rb.skipped.is_empty(), "{ctx}");
            for (_, why) in ra.deferred.iter().chain(&rb.deferred) {
                assert!(why.contains("worked on by worker `cron-"), "{ctx}");
            }
            assert!(!s.sim.snapshot_names(104).contains(&snap), "{ctx}");
        }
    });
}

#[test]
fn a_restore_is_refused_while_another_worker_holds_the_vm() {
    common::run(60, async {
        let s = setup("restore").await;
        let svc = common::svc104();
        // Worker `b` is sweeping VM 104 (holding its lease) ...
        let key = pve_vps_services::leases::LeaseKey::vm(svc.vmid());
        let store = SqliteStore::open(&s.db).unwrap();
        use pve_vps_services::stores::LeaseStore;
        assert!(
            store
                .acquire(
                    &key,
                    &"cron-b".parse().unwrap(),
                    s.clock.now(),
                    Duration::from_secs(10)
                )
                .await
                .unwrap()
        );
        // ... so a restore through worker `a` is refused naming it, and changes nothing.
        let archive = s.sim.backup_volids(104)[0].parse().unwrap();
        let err = s.a.restore(&svc, &archive).await.unwrap_err();
        assert!(err.is_locked(), "{err}");
        assert!(err.to_string().contains("cron-b"), "{err}");
        // No plan was stored for a scheduler to pick up later.
        let resumed =
            s.a.resume_unfinished(std::slice::from_ref(&svc))
                .await
                .unwrap();
        assert!(
            resumed.finished.is_empty() && resumed.skipped.is_empty() && resumed.failed.is_empty(),
            "{resumed:?}"
        );
        // Once `b` released the VM, the restore runs and releases it in turn.
        assert!(
            store
                .release(&key, &"cron-b".parse().unwrap())
                .await
                .unwrap()
        );
        s.a.restore(&svc, &archive).await.unwrap();
        assert!(store.lease(&key).await.unwrap().is_none());
    });
}
