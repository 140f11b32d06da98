//! Where schedules and interrupted plans are kept: two traits, each with an in-memory and an
//! SQLite implementation (bundled, in a file or `:memory:`), and one conformance suite per
//! trait that every backend runs.
//!
//! The traits are synchronous: SQLite calls take microseconds; async callers may wrap them
//! in `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::backups::WeeklySchedule;
use crate::error::Error;
use crate::ids::VmId;
use crate::reinstall::{PlanId, StoredPlan};

/// Stores each VM's backup schedule.
pub trait ScheduleStore: Send + Sync + std::fmt::Debug {
    /// The schedule of a VM, if saved.
    fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error>;
    /// Saves (replaces) a VM's schedule.
    fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error>;
    /// Removes a VM's schedule; whether there was one.
    fn delete(&self, vmid: VmId) -> Result<bool, Error>;
    /// Every saved schedule, by VMID.
    fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error>;
}

/// Stores plans of interrupted operations and how far they got.
pub trait PlanStore: Send + Sync + std::fmt::Debug {
    /// Saves (replaces) a plan.
    fn save(&self, plan: &StoredPlan) -> Result<(), Error>;
    /// A plan by id.
    fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error>;
    /// Records that `done` steps are finished. Progress only moves forward and never past the
    /// plan's length; an unknown id is an error.
    fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error>;
    /// Plans not finished yet, by id.
    fn unfinished(&self) -> Result<Vec<StoredPlan>, Error>;
    /// Removes a plan; whether there was one.
    fn remove(&self, id: &PlanId) -> Result<bool, Error>;
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

/// Schedules in memory.
#[derive(Debug, Default)]
pub struct MemoryScheduleStore(Mutex<BTreeMap<VmId, WeeklySchedule>>);

impl MemoryScheduleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ScheduleStore for MemoryScheduleStore {
    fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error> {
        Ok(lock(&self.0).get(&vmid).copied())
    }
    fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error> {
        lock(&self.0).insert(vmid, *schedule);
        Ok(())
    }
    fn delete(&self, vmid: VmId) -> Result<bool, Error> {
        Ok(lock(&self.0).remove(&vmid).is_some())
    }
    fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error> {
        Ok(lock(&self.0).iter().map(|(k, v)| (*k, *v)).collect())
    }
}

/// Plans in memory.
#[derive(Debug, Default)]
pub struct MemoryPlanStore(Mutex<BTreeMap<PlanId, StoredPlan>>);

impl MemoryPlanStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PlanStore for MemoryPlanStore {
    fn save(&self, plan: &StoredPlan) -> Result<(), Error> {
        check_within(plan, plan.done)?;
        lock(&self.0).insert(plan.id.clone(), plan.clone());
        Ok(())
    }
    fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error> {
        Ok(lock(&self.0).get(id).cloned())
    }
    fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error> {
        let mut m = lock(&self.0);
        let p = m.get_mut(id).ok_or_else(|| unknown_plan(id))?;
        check_progress(p, done)?;
        p.done = done;
        Ok(())
    }
    fn unfinished(&self) -> Result<Vec<StoredPlan>, Error> {
        Ok(lock(&self.0)
            .values()
            .filter(|p| !p.is_finished())
            .cloned()
            .collect())
    }
    fn remove(&self, id: &PlanId) -> Result<bool, Error> {
        Ok(lock(&self.0).remove(id).is_some())
    }
}

/// The embedded default: one SQLite database (a file, or `:memory:`) holding both tables.
#[derive(Debug)]
pub struct SqliteStore(Mutex<Connection>);

impl SqliteStore {
    /// Opens (creating if needed) a database file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let c = Connection::open(path).map_err(|e| Error::store("open database", e))?;
        Self::init(c)
    }

    /// A private in-memory database.
    pub fn open_in_memory() -> Result<Self, Error> {
        let c = Connection::open_in_memory().map_err(|e| Error::store("open database", e))?;
        Self::init(c)
    }

    fn init(c: Connection) -> Result<Self, Error> {
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS backup_schedules (vmid INTEGER PRIMARY KEY, schedule TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS plans (id TEXT PRIMARY KEY, body TEXT NOT NULL, done INTEGER NOT NULL, steps INTEGER NOT NULL);",
        )
        .map_err(|e| Error::store("create tables", e))?;
        Ok(Self(Mutex::new(c)))
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::store(format!("decode {what}"), e))
}

fn encode<T: serde::Serialize>(what: &str, v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::store(format!("encode {what}"), e))
}

impl ScheduleStore for SqliteStore {
    fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error> {
        let c = lock(&self.0);
        let s: Option<String> = c
            .query_row(
                "SELECT schedule FROM backup_schedules WHERE vmid = ?1",
                params![vmid.get()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| Error::store("read schedule", e))?;
        s.map(|s| decode("schedule", &s)).transpose()
    }
    fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error> {
        let body = encode("schedule", schedule)?;
        lock(&self.0)
            .execute(
                "INSERT INTO backup_schedules (vmid, schedule) VALUES (?1, ?2)
                 ON CONFLICT(vmid) DO UPDATE SET schedule = excluded.schedule",
                params![vmid.get(), body],
            )
            .map_err(|e| Error::store("write schedule", e))?;
        Ok(())
    }
    fn delete(&self, vmid: VmId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute(
                "DELETE FROM backup_schedules WHERE vmid = ?1",
                params![vmid.get()],
            )
            .map_err(|e| Error::store("delete schedule", e))?;
        Ok(n > 0)
    }
    fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error> {
        let c = lock(&self.0);
        let mut st = c
            .prepare("SELECT vmid, schedule FROM backup_schedules ORDER BY vmid")
            .map_err(|e| Error::store("list schedules", e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| Error::store("list schedules", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, s) = row.map_err(|e| Error::store("list schedules", e))?;
            out.push((VmId::new(id)?, decode("schedule", &s)?));
        }
        Ok(out)
    }
}

impl PlanStore for SqliteStore {
    fn save(&self, plan: &StoredPlan) -> Result<(), Error> {
        check_within(plan, plan.done)?;
        let body = encode("plan", plan)?;
        lock(&self.0)
            .execute(
                "INSERT INTO plans (id, body, done, steps) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body, done = excluded.done, steps = excluded.steps",
                params![plan.id.as_str(), body, plan.done as i64, plan.plan.len() as i64],
            )
            .map_err(|e| Error::store("write plan", e))?;
        Ok(())
    }
    fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error> {
        let c = lock(&self.0);
        let row: Option<(String, i64)> = c
            .query_row(
                "SELECT body, done FROM plans WHERE id = ?1",
                params![id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| Error::store("read plan", e))?;
        row.map(|(b, done)| {
            let mut p: StoredPlan = decode("plan", &b)?;
            p.done = done as usize;
            Ok(p)
        })
        .transpose()
    }
    fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error> {
        let p = self.load(id)?.ok_or_else(|| unknown_plan(id))?;
        check_progress(&p, done)?;
        lock(&self.0)
            .execute(
                "UPDATE plans SET done = ?2 WHERE id = ?1",
                params![id.as_str(), done as i64],
            )
            .map_err(|e| Error::store("write progress", e))?;
        Ok(())
    }
    fn unfinished(&self) -> Result<Vec<StoredPlan>, Error> {
        let ids: Vec<String> = {
            let c = lock(&self.0);
            let mut st = c
                .prepare("SELECT id FROM plans WHERE done < steps ORDER BY id")
                .map_err(|e| Error::store("list plans", e))?;
            let rows = st
                .query_map([], |r| r.get(0))
                .map_err(|e| Error::store("list plans", e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| Error::store("list plans", e))?
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.load(&id.parse()?)? {
                out.push(p);
            }
        }
        Ok(out)
    }
    fn remove(&self, id: &PlanId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute("DELETE FROM plans WHERE id = ?1", params![id.as_str()])
            .map_err(|e| Error::store("delete plan", e))?;
        Ok(n > 0)
    }
}

/// Conformance suites every backend must pass; they panic on the first failure.
pub mod conformance {
    use super::*;
    use crate::backups::DaySchedule;
    use crate::reconcile::{RestorePlan, RestoreStep};
    use crate::reinstall::OperationPlan;
    use crate::service::VmRef;

    fn vmid(n: u32) -> VmId {
        VmId::new(n).expect("valid vmid")
    }

    /// Checks a [`ScheduleStore`] that starts empty.
    pub fn schedule_store(store: &dyn ScheduleStore) {
        assert_eq!(store.get(vmid(100)).expect("get"), None);
        assert!(store.list().expect("list").is_empty());
        let mut s = WeeklySchedule::default();
        store.put(vmid(101), &s).expect("put");
        let on = DaySchedule {
            enabled: true,
            time: "07:00".parse().expect("time"),
        };
        let mut days = *s.days();
        days[0] = on;
        s = WeeklySchedule::new(days);
        store.put(vmid(100), &s).expect("put");
        assert_eq!(store.get(vmid(100)).expect("get"), Some(s));
        store
            .put(vmid(100), &WeeklySchedule::default())
            .expect("replace");
        assert_eq!(
            store.get(vmid(100)).expect("get"),
            Some(WeeklySchedule::default())
        );
        let ids: Vec<u32> = store
            .list()
            .expect("list")
            .iter()
            .map(|(v, _)| v.get())
            .collect();
        assert_eq!(ids, vec![100, 101]);
        assert!(store.delete(vmid(100)).expect("delete"));
        assert!(!store.delete(vmid(100)).expect("delete again"));
        assert_eq!(store.get(vmid(100)).expect("get"), None);
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
    pub fn plan_store(store: &dyn PlanStore) {
        let a = plan("restore-100-1");
        let id = a.id.clone();
        assert_eq!(store.load(&id).expect("load"), None);
        assert!(store.record_progress(&id, 1).is_err(), "unknown plan");
        store.save(&a).expect("save");
        assert_eq!(store.load(&id).expect("load"), Some(a.clone()));
        store.record_progress(&id, 2).expect("progress");
        assert_eq!(store.load(&id).expect("load").expect("present").done, 2);
        assert!(store.record_progress(&id, 1).is_err(), "progress went back");
        assert!(
            store.record_progress(&id, 4).is_err(),
            "progress past the end"
        );
        let b = plan("restore-100-2");
        store.save(&b).expect("save");
        let ids: Vec<String> = store
            .unfinished()
            .expect("unfinished")
            .iter()
            .map(|p| p.id.to_string())
            .collect();
        assert_eq!(ids, vec!["restore-100-1", "restore-100-2"]);
        store.record_progress(&id, 3).expect("finish");
        let ids: Vec<String> = store
            .unfinished()
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
                .is_err()
        );
        assert!(store.remove(&id).expect("remove"));
        assert!(!store.remove(&id).expect("remove again"));
        assert_eq!(store.load(&id).expect("load"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backends_conform() {
        conformance::schedule_store(&MemoryScheduleStore::new());
        conformance::plan_store(&MemoryPlanStore::new());
    }

    #[test]
    fn sqlite_backends_conform() {
        let s = SqliteStore::open_in_memory().unwrap();
        conformance::schedule_store(&s);
        conformance::plan_store(&s);
    }

    #[test]
    fn sqlite_file_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("vm-services-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let s = SqliteStore::open(&path).unwrap();
            conformance::schedule_store(&s);
            s.put(
                VmId::new(200).unwrap(),
                &crate::backups::WeeklySchedule::default(),
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(s.get(VmId::new(200).unwrap()).unwrap().is_some());
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
