//! Where schedules, interrupted plans, leases and operation outcomes are kept: four async
//! traits, each with an in-memory, an SQLite (bundled, the embedded default: a file or
//! `:memory:`) and a PostgreSQL implementation (shared by several portal instances and
//! scheduler workers), and one conformance suite per trait that every backend runs.
//!
//! The traits are async so that a networked store never blocks the runtime. SQLite calls take
//! microseconds and run inline. Each SQL store creates its schema itself: numbered,
//! idempotent migrations recorded in a `vm_services_schema` version table.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::backups::WeeklySchedule;
use crate::error::Error;
use crate::ids::VmId;
use crate::leases::{Lease, LeaseKey, WorkerId};
use crate::outcomes::OperationOutcome;
use crate::reinstall::{PlanId, StoredPlan};

mod memory;
mod postgres;
mod sqlite;

pub use memory::{MemoryLeaseStore, MemoryOutcomeStore, MemoryPlanStore, MemoryScheduleStore};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Stores each VM's backup schedule.
#[async_trait]
pub trait ScheduleStore: Send + Sync + std::fmt::Debug {
    /// The schedule of a VM, if saved.
    async fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error>;
    /// Saves (replaces) a VM's schedule.
    async fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error>;
    /// Removes a VM's schedule; whether there was one.
    async fn delete(&self, vmid: VmId) -> Result<bool, Error>;
    /// Every saved schedule, by VMID.
    async fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error>;
}

/// Stores plans of interrupted operations and how far they got.
#[async_trait]
pub trait PlanStore: Send + Sync + std::fmt::Debug {
    /// Saves (replaces) a plan.
    async fn save(&self, plan: &StoredPlan) -> Result<(), Error>;
    /// A plan by id.
    async fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error>;
    /// Records that `done` steps are finished. Progress only moves forward and never past the
    /// plan's length; an unknown id is an error.
    async fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error>;
    /// Plans not finished yet, by id.
    async fn unfinished(&self) -> Result<Vec<StoredPlan>, Error>;
    /// Removes a plan; whether there was one.
    async fn remove(&self, id: &PlanId) -> Result<bool, Error>;
}

/// Leases on shared work (see [`crate::leases`]): each decision is atomic across every
/// worker using the same store.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Takes or renews the lease on `key` for `holder` until `now + ttl`, as
    /// [`crate::leases::decide`] allows: granted when nobody holds it, when `holder` holds it,
    /// or when it expired; never when it is done. Whether it was granted.
    async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
        now: OffsetDateTime,
        ttl: std::time::Duration,
    ) -> Result<bool, Error>;
    /// Marks the work done (only by its holder): nobody can take the lease again. Whether
    /// `holder` held it.
    async fn complete(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error>;
    /// Gives an unfinished lease up (only by its holder) so another worker may take it at
    /// once. Whether `holder` held it.
    async fn release(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error>;
    /// The stored lease.
    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error>;
    /// Forgets leases that expired before `before` (done or not); how many.
    async fn prune(&self, before: OffsetDateTime) -> Result<usize, Error>;
}

/// How restores and reinstalls ended, for any portal instance to show.
#[async_trait]
pub trait OutcomeStore: Send + Sync + std::fmt::Debug {
    /// Records (replaces, per plan) an outcome.
    async fn record(&self, outcome: &OperationOutcome) -> Result<(), Error>;
    /// The VM's latest outcome.
    async fn latest(&self, vmid: VmId) -> Result<Option<OperationOutcome>, Error> {
        Ok(self.list(vmid).await?.into_iter().next())
    }
    /// The VM's outcomes, newest first (by time, then plan id).
    async fn list(&self, vmid: VmId) -> Result<Vec<OperationOutcome>, Error>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `done` steps fit in the plan (checked when a plan is saved with its own `done`).
fn check_within(plan: &StoredPlan, done: usize) -> Result<(), Error> {
    if done > plan.plan.len() {
        return Err(Error::InvalidProgress {
            id: plan.id.to_string(),
            reason: format!("{done} steps done but the plan has {}", plan.plan.len()),
        });
    }
    Ok(())
}

fn check_progress(plan: &StoredPlan, done: usize) -> Result<(), Error> {
    check_within(plan, done)?;
    if done < plan.done {
        return Err(Error::InvalidProgress {
            id: plan.id.to_string(),
            reason: format!("progress cannot go back from {} to {done}", plan.done),
        });
    }
    Ok(())
}

fn unknown_plan(id: &PlanId) -> Error {
    Error::InvalidProgress {
        id: id.to_string(),
        reason: "no such plan".into(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::store(format!("decode {what}"), e))
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::store(format!("encode {what}"), e))
}

fn ttl_millis(ttl: std::time::Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Conformance suites every backend must pass; they panic on the first failure.
pub mod conformance {
    use super::*;
    use crate::backups::DaySchedule;
    use crate::leases::from_unix_millis;
    use crate::outcomes::{Ending, OperationKind};
    use crate::reconcile::{RestorePlan, RestoreStep};
    use crate::reinstall::OperationPlan;
    use crate::service::VmRef;

    fn vmid(n: u32) -> VmId {
        VmId::new(n).expect("valid vmid")
    }

    /// Checks a [`ScheduleStore`] that starts empty.
    pub async fn schedule_store(store: &dyn ScheduleStore) {
        assert_eq!(store.get(vmid(100)).await.expect("get"), None);
        assert!(store.list().await.expect("list").is_empty());
        let mut s = WeeklySchedule::default();
        store.put(vmid(101), &s).await.expect("put");
        let on = DaySchedule {
            enabled: true,
            time: "07:00".parse().expect("time"),
        };
        let mut days = *s.days();
        days[0] = on;
        s = WeeklySchedule::new(days);
        store.put(vmid(100), &s).await.expect("put");
        assert_eq!(store.get(vmid(100)).await.expect("get"), Some(s));
        store
            .put(vmid(100), &WeeklySchedule::default())
            .await
            .expect("replace");
        assert_eq!(
            store.get(vmid(100)).await.expect("get"),
            Some(WeeklySchedule::default())
        );
        let ids: Vec<u32> = store
            .list()
            .await
            .expect("list")
            .iter()
            .map(|(v, _)| v.get())
            .collect();
        assert_eq!(ids, vec![100, 101]);
        assert!(store.delete(vmid(100)).await.expect("delete"));
        assert!(!store.delete(vmid(100)).await.expect("delete again"));
        assert_eq!(store.get(vmid(100)).await.expect("get"), None);
    }

    fn plan(id: &str) -> StoredPlan {
        let archive = "backup-store:backup/vzdump-qemu-100-1.vma.zst"
            .parse()
            .expect("volid");
        StoredPlan {
            id: id.parse().expect("plan id"),
            vm: VmRef::new("pve1".parse().expect("node"), vmid(100)),
            plan: OperationPlan::Restore(RestorePlan {
                archive,
                steps: vec![
                    RestoreStep::Stop,
                    RestoreStep::Reconcile,
                    RestoreStep::Notify,
                ],
            }),
            done: 0,
        }
    }

    /// Checks a [`PlanStore`] that starts empty.
    pub async fn plan_store(store: &dyn PlanStore) {
        let a = plan("restore-100-1");
        let id = a.id.clone();
        assert_eq!(store.load(&id).await.expect("load"), None);
        assert!(store.record_progress(&id, 1).await.is_err(), "unknown plan");
        store.save(&a).await.expect("save");
        assert_eq!(store.load(&id).await.expect("load"), Some(a.clone()));
        store.record_progress(&id, 2).await.expect("progress");
        assert_eq!(
            store.load(&id).await.expect("load").expect("present").done,
            2
        );
        assert!(
            store.record_progress(&id, 1).await.is_err(),
            "progress went back"
        );
        assert!(
            store.record_progress(&id, 4).await.is_err(),
            "progress past the end"
        );
        assert_eq!(
            store.load(&id).await.expect("load").expect("present").done,
            2,
            "a refused progress changes nothing"
        );
        let b = plan("restore-100-2");
        store.save(&b).await.expect("save");
        let ids: Vec<String> = store
            .unfinished()
            .await
            .expect("unfinished")
            .iter()
            .map(|p| p.id.to_string())
            .collect();
        assert_eq!(ids, vec!["restore-100-1", "restore-100-2"]);
        store.record_progress(&id, 3).await.expect("finish");
        let ids: Vec<String> = store
            .unfinished()
            .await
            .expect("unfinished")
            .iter()
            .map(|p| p.id.to_string())
            .collect();
        assert_eq!(ids, vec!["restore-100-2"]);
        assert!(
            store
                .save(&StoredPlan {
                    done: 9,
                    ..b.clone()
                })
                .await
                .is_err()
        );
        assert!(store.remove(&id).await.expect("remove"));
        assert!(!store.remove(&id).await.expect("remove again"));
        assert_eq!(store.load(&id).await.expect("load"), None);
    }

    /// Checks a [`LeaseStore`] that starts empty: the decisions of
    /// [`crate::leases::decide`], completion, release, pruning, and that of many workers
    /// asking at once for one lease exactly one gets it.
    pub async fn lease_store(store: &dyn LeaseStore) {
        let a: WorkerId = "worker-a".parse().expect("name");
        let b: WorkerId = "worker-b".parse().expect("name");
        let key: LeaseKey = "plan:restore-100-1".parse().expect("key");
        let t0 = from_unix_millis(1_775_793_600_000);
        let ttl = std::time::Duration::from_secs(30);
        let s = |n: i64| t0 + time::Duration::seconds(n);

        assert_eq!(store.lease(&key).await.expect("get"), None);
        assert!(store.acquire(&key, &a, t0, ttl).await.expect("free"));
        let held = store.lease(&key).await.expect("get").expect("stored");
        assert_eq!(held.holder, a);
        assert_eq!(held.expires, s(30));
        assert!(!held.done);
        assert!(
            !store.acquire(&key, &b, s(29), ttl).await.expect("held"),
            "another worker waits while the lease is valid"
        );
        assert!(store.acquire(&key, &a, s(20), ttl).await.expect("renew"));
        assert_eq!(
            store
                .lease(&key)
                .await
                .expect("get")
                .expect("stored")
                .expires,
            s(50)
        );
        assert!(!store.acquire(&key, &b, s(49), ttl).await.expect("renewed"));
        assert!(
            store.acquire(&key, &b, s(50), ttl).await.expect("expired"),
            "an expired lease is taken over"
        );
        assert_eq!(
            store
                .lease(&key)
                .await
                .expect("get")
                .expect("stored")
                .holder,
            b
        );
        assert!(
            !store.complete(&key, &a).await.expect("not the holder"),
            "only the holder completes"
        );
        assert!(!store.release(&key, &a).await.expect("not the holder"));
        assert!(store.complete(&key, &b).await.expect("complete"));
        assert!(store.lease(&key).await.expect("get").expect("stored").done);
        assert!(
            !store.acquire(&key, &a, s(10_000), ttl).await.expect("done"),
            "a finished lease is never taken again"
        );
        assert!(!store.acquire(&key, &b, s(10_000), ttl).await.expect("done"));
        assert!(!store.release(&key, &b).await.expect("done stays"));

        let other: LeaseKey = "backup:100:1775793600".parse().expect("key");
        assert!(store.acquire(&other, &a, t0, ttl).await.expect("free"));
        assert!(store.release(&other, &a).await.expect("release"));
        assert_eq!(store.lease(&other).await.expect("get"), None);
        assert!(
            store.acquire(&other, &b, t0, ttl).await.expect("released"),
            "a released lease is free at once"
        );

        // Pruning forgets what expired before the cut, done or not.
        assert_eq!(store.prune(s(31)).await.expect("prune"), 1, "`other`");
        assert_eq!(store.lease(&other).await.expect("get"), None);
        assert!(store.lease(&key).await.expect("get").is_some());
        assert_eq!(store.prune(s(100_000)).await.expect("prune"), 1, "`key`");

        // Many workers at once, one lease: exactly one winner.
        let race: LeaseKey = "backup:101:1775793600".parse().expect("key");
        let workers: Vec<WorkerId> = (0..8)
            .map(|i| format!("racer-{i}").parse().expect("name"))
            .collect();
        let results = futures_util::future::join_all(
            workers.iter().map(|w| store.acquire(&race, w, t0, ttl)),
        )
        .await;
        let winners = results
            .into_iter()
            .map(|r| r.expect("acquire"))
            .filter(|g| *g)
            .count();
        assert_eq!(winners, 1, "exactly one of the concurrent workers wins");
    }

    fn outcome(plan: &str, vm: u32, at: i64, ending: Ending) -> OperationOutcome {
        OperationOutcome {
            plan: plan.parse().expect("plan id"),
            vm: VmRef::new("pve1".parse().expect("node"), vmid(vm)),
            operation: OperationKind::Restore,
            ending,
            at: OffsetDateTime::from_unix_timestamp(at).expect("time"),
        }
    }

    /// Checks an [`OutcomeStore`] that starts empty.
    pub async fn outcome_store(store: &dyn OutcomeStore) {
        assert_eq!(store.latest(vmid(100)).await.expect("latest"), None);
        let failed = outcome(
            "restore-100-1",
            100,
            1_000,
            Ending::NeedsRetryOrReinstall {
                reason: "restore backup: task failed".into(),
            },
        );
        store.record(&failed).await.expect("record");
        let other_vm = outcome("restore-101-1", 101, 5_000, Ending::Succeeded);
        store.record(&other_vm).await.expect("record");
        assert_eq!(
            store.latest(vmid(100)).await.expect("latest"),
            Some(failed.clone())
        );
        let mut reinstall = outcome(
            "reinstall-100-2",
            100,
            2_000,
            Ending::Failed {
                reason: "clone template: timeout".into(),
            },
        );
        reinstall.operation = OperationKind::Reinstall;
        store.record(&reinstall).await.expect("record");
        assert_eq!(
            store.list(vmid(100)).await.expect("list"),
            vec![reinstall.clone(), failed.clone()]
        );
        // The resumed plan finished: its outcome replaces the earlier one.
        let resumed = OperationOutcome {
            ending: Ending::Succeeded,
            at: OffsetDateTime::from_unix_timestamp(3_000).expect("time"),
            ..failed
        };
        store.record(&resumed).await.expect("replace");
        assert_eq!(
            store.list(vmid(100)).await.expect("list"),
            vec![resumed.clone(), reinstall]
        );
        assert_eq!(
            store.latest(vmid(100)).await.expect("latest"),
            Some(resumed)
        );
        assert_eq!(store.list(vmid(102)).await.expect("list"), vec![]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_backends_conform() {
        conformance::schedule_store(&MemoryScheduleStore::new()).await;
        conformance::plan_store(&MemoryPlanStore::new()).await;
        conformance::lease_store(&MemoryLeaseStore::new()).await;
        conformance::outcome_store(&MemoryOutcomeStore::new()).await;
    }

    #[tokio::test]
    async fn sqlite_backends_conform() {
        let s = SqliteStore::open_in_memory().unwrap();
        conformance::schedule_store(&s).await;
        conformance::plan_store(&s).await;
        conformance::lease_store(&s).await;
        conformance::outcome_store(&s).await;
    }

    #[derive(Debug, Clone)]
    enum Op {
        Acquire {
            key: usize,
            who: usize,
            at: i64,
            ttl: u64,
        },
        Complete {
            key: usize,
            who: usize,
        },
        Release {
            key: usize,
            who: usize,
        },
        Prune {
            before: i64,
        },
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0usize..3, 0usize..3, 0i64..60, 1u64..20)
                .prop_map(|(key, who, at, ttl)| Op::Acquire { key, who, at, ttl }),
            1 => (0usize..3, 0usize..3).prop_map(|(key, who)| Op::Complete { key, who }),
            1 => (0usize..3, 0usize..3).prop_map(|(key, who)| Op::Release { key, who }),
            1 => (0i64..80).prop_map(|before| Op::Prune { before }),
        ]
    }

    proptest::proptest! {
        /// The SQLite lease store (one conditional upsert per decision) answers every sequence
        /// of operations exactly as the in-memory store, which applies `leases::decide`.
        #[test]
        fn sqlite_leases_match_the_pure_decision(ops in proptest::collection::vec(arb_op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mem = MemoryLeaseStore::new();
                let sql = SqliteStore::open_in_memory().unwrap();
                let keys: Vec<LeaseKey> = (0..3).map(|i| format!("plan:p{i}").parse().unwrap()).collect();
                let who: Vec<WorkerId> = (0..3).map(|i| format!("w{i}").parse().unwrap()).collect();
                let t = |s: i64| crate::leases::from_unix_millis(1_775_793_600_000 + s * 1000);
                for op in ops {
                    let (a, b) = match &op {
                        Op::Acquire { key, who: w, at, ttl } => {
                            let d = std::time::Duration::from_secs(*ttl);
                            (mem.acquire(&keys[*key], &who[*w], t(*at), d).await.unwrap() as usize,
                             sql.acquire(&keys[*key], &who[*w], t(*at), d).await.unwrap() as usize)
                        }
                        Op::Complete { key, who: w } => (
                            mem.complete(&keys[*key], &who[*w]).await.unwrap() as usize,
                            sql.complete(&keys[*key], &who[*w]).await.unwrap() as usize,
                        ),
                        Op::Release { key, who: w } => (
                            mem.release(&keys[*key], &who[*w]).await.unwrap() as usize,
                            sql.release(&keys[*key], &who[*w]).await.unwrap() as usize,
                        ),
                        Op::Prune { before } => (
                            mem.prune(t(*before)).await.unwrap(),
                            sql.prune(t(*before)).await.unwrap(),
                        ),
                    };
                    assert_eq!(a, b, "{op:?}");
                    for k in &keys {
                        assert_eq!(mem.lease(k).await.unwrap(), sql.lease(k).await.unwrap(), "after {op:?}");
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn sqlite_file_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("vm-services-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let s = SqliteStore::open(&path).unwrap();
            conformance::schedule_store(&s).await;
            s.put(
                VmId::new(200).unwrap(),
                &crate::backups::WeeklySchedule::default(),
            )
            .await
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(s.get(VmId::new(200).unwrap()).await.unwrap().is_some());
        assert_eq!(s.schema_version().unwrap(), sqlite::SCHEMA_VERSION);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
