//! The embedded default: one SQLite database (a file, or `:memory:`) holding every table.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use super::{
    LeaseStore, OutcomeStore, PlanStore, ScheduleStore, check_progress, check_within, decode,
    encode, lock, ttl_millis, unknown_plan,
};
use crate::backups::WeeklySchedule;
use crate::error::Error;
use crate::ids::VmId;
use crate::leases::{Lease, LeaseKey, WorkerId, from_unix_millis, unix_millis};
use crate::outcomes::OperationOutcome;
use crate::reinstall::{PlanId, StoredPlan};

/// The schema version this code creates.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// Migration `n` is `MIGRATIONS[n - 1]`; each is idempotent (databases made before the version
/// table existed already have version 1's tables).
const MIGRATIONS: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS backup_schedules (vmid INTEGER PRIMARY KEY, schedule TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS plans (id TEXT PRIMARY KEY, body TEXT NOT NULL, done INTEGER NOT NULL, steps INTEGER NOT NULL);",
    "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0);",
    "CREATE TABLE IF NOT EXISTS outcomes (plan TEXT PRIMARY KEY, vmid INTEGER NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS outcomes_by_vm ON outcomes (vmid, at);",
];

/// Every store in one SQLite database. Several processes may share a file (WAL mode, a 5 s
/// busy timeout); each lease decision is one atomic statement.
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

    fn init(mut c: Connection) -> Result<Self, Error> {
        c.busy_timeout(Duration::from_secs(5))
            .map_err(|e| Error::store("set busy timeout", e))?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS vm_services_schema (version INTEGER PRIMARY KEY);",
        )
        .map_err(|e| Error::store("create tables", e))?;
        let tx = c
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| Error::store("migrate schema", e))?;
        let have: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM vm_services_schema",
                [],
                |r| r.get(0),
            )
            .map_err(|e| Error::store("read schema version", e))?;
        for (n, sql) in (1..).zip(MIGRATIONS) {
            if n > have {
                tx.execute_batch(sql)
                    .map_err(|e| Error::store(format!("migrate schema to version {n}"), e))?;
                tx.execute(
                    "INSERT INTO vm_services_schema (version) VALUES (?1)",
                    params![n],
                )
                .map_err(|e| Error::store("record schema version", e))?;
            }
        }
        debug_assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
        tx.commit().map_err(|e| Error::store("migrate schema", e))?;
        Ok(Self(Mutex::new(c)))
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64, Error> {
        lock(&self.0)
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM vm_services_schema",
                [],
                |r| r.get(0),
            )
            .map_err(|e| Error::store("read schema version", e))
    }

    fn load_plan(&self, id: &str) -> Result<Option<StoredPlan>, Error> {
        let c = lock(&self.0);
        let row: Option<(String, i64)> = c
            .query_row(
                "SELECT body, done FROM plans WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| Error::store("read plan", e))?;
        row.map(|(b, done)| {
            let mut p: StoredPlan = decode("plan", &b)?;
            p.done = usize::try_from(done).unwrap_or(0);
            Ok(p)
        })
        .transpose()
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error> {
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
    async fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error> {
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
    async fn delete(&self, vmid: VmId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute(
                "DELETE FROM backup_schedules WHERE vmid = ?1",
                params![vmid.get()],
            )
            .map_err(|e| Error::store("delete schedule", e))?;
        Ok(n > 0)
    }
    async fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error> {
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

#[async_trait]
impl PlanStore for SqliteStore {
    async fn save(&self, plan: &StoredPlan) -> Result<(), Error> {
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
    async fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error> {
        self.load_plan(id.as_str())
    }
    async fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error> {
        // One conditional statement: progress only forward, never past the end.
        let n = lock(&self.0)
            .execute(
                "UPDATE plans SET done = ?2 WHERE id = ?1 AND done <= ?2 AND steps >= ?2",
                params![id.as_str(), done as i64],
            )
            .map_err(|e| Error::store("write progress", e))?;
        if n == 1 {
            return Ok(());
        }
        let p = self
            .load_plan(id.as_str())?
            .ok_or_else(|| unknown_plan(id))?;
        check_progress(&p, done)
    }
    async fn unfinished(&self) -> Result<Vec<StoredPlan>, Error> {
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
            if let Some(p) = self.load_plan(&id)? {
                out.push(p);
            }
        }
        Ok(out)
    }
    async fn remove(&self, id: &PlanId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute("DELETE FROM plans WHERE id = ?1", params![id.as_str()])
            .map_err(|e| Error::store("delete plan", e))?;
        Ok(n > 0)
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let now_ms = unix_millis(now);
        // `leases::decide` as one statement: insert when free, otherwise update only when not
        // done and (ours or expired).
        let n = lock(&self.0)
            .execute(
                "INSERT INTO leases (key, holder, expires_ms, done) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.done = 0 AND (leases.holder = excluded.holder OR leases.expires_ms <= ?4)",
                params![
                    key.as_str(),
                    holder.as_str(),
                    now_ms.saturating_add(ttl_millis(ttl)),
                    now_ms
                ],
            )
            .map_err(|e| Error::store("take lease", e))?;
        Ok(n == 1)
    }
    async fn complete(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute(
                "UPDATE leases SET done = 1 WHERE key = ?1 AND holder = ?2 AND done = 0",
                params![key.as_str(), holder.as_str()],
            )
            .map_err(|e| Error::store("complete lease", e))?;
        Ok(n == 1)
    }
    async fn release(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        let n = lock(&self.0)
            .execute(
                "DELETE FROM leases WHERE key = ?1 AND holder = ?2 AND done = 0",
                params![key.as_str(), holder.as_str()],
            )
            .map_err(|e| Error::store("release lease", e))?;
        Ok(n == 1)
    }
    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        let row: Option<(String, i64, bool)> = lock(&self.0)
            .query_row(
                "SELECT holder, expires_ms, done FROM leases WHERE key = ?1",
                params![key.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| Error::store("read lease", e))?;
        row.map(|(holder, ms, done)| {
            Ok(Lease {
                key: key.clone(),
                holder: holder.parse()?,
                expires: from_unix_millis(ms),
                done,
            })
        })
        .transpose()
    }
    async fn prune(&self, before: OffsetDateTime) -> Result<usize, Error> {
        lock(&self.0)
            .execute(
                "DELETE FROM leases WHERE expires_ms < ?1",
                params![unix_millis(before)],
            )
            .map_err(|e| Error::store("prune leases", e))
    }
}

#[async_trait]
impl OutcomeStore for SqliteStore {
    async fn record(&self, outcome: &OperationOutcome) -> Result<(), Error> {
        let mut o = outcome.clone();
        o.at = o.at.replace_nanosecond(0).unwrap_or(o.at);
        let body = encode("outcome", &o)?;
        lock(&self.0)
            .execute(
                "INSERT INTO outcomes (plan, vmid, at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(plan) DO UPDATE SET vmid = excluded.vmid, at = excluded.at, body = excluded.body",
                params![o.plan.as_str(), o.vm.vmid().get(), o.at.unix_timestamp(), body],
            )
            .map_err(|e| Error::store("write outcome", e))?;
        Ok(())
    }
    async fn list(&self, vmid: VmId) -> Result<Vec<OperationOutcome>, Error> {
        let c = lock(&self.0);
        let mut st = c
            .prepare("SELECT body FROM outcomes WHERE vmid = ?1 ORDER BY at DESC, plan DESC")
            .map_err(|e| Error::store("list outcomes", e))?;
        let rows = st
            .query_map(params![vmid.get()], |r| r.get::<_, String>(0))
            .map_err(|e| Error::store("list outcomes", e))?;
        let mut out = Vec::new();
        for row in rows {
            let body = row.map_err(|e| Error::store("list outcomes", e))?;
            out.push(decode("outcome", &body)?);
        }
        Ok(out)
    }
}
