//! Every store in one PostgreSQL database, shared by several portal instances and scheduler
//! workers (`tokio-postgres` through a small `deadpool-postgres` pool; nothing blocks the
//! runtime).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;

use super::{
    LeaseStore, OutcomeStore, PlanStore, ScheduleStore, check_progress, check_within, decode,
    encode, ttl_millis, unknown_plan,
};
use crate::backups::WeeklySchedule;
use crate::error::Error;
use crate::ids::VmId;
use crate::leases::{Lease, LeaseKey, WorkerId, from_unix_millis, unix_millis};
use crate::outcomes::OperationOutcome;
use crate::reinstall::{PlanId, StoredPlan};

/// The schema version this code creates.
const SCHEMA_VERSION: i32 = 3;

/// Migration `n` is `MIGRATIONS[n - 1]`; each is idempotent.
const MIGRATIONS: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS backup_schedules (vmid INTEGER PRIMARY KEY, schedule TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS plans (id TEXT PRIMARY KEY, body TEXT NOT NULL, done BIGINT NOT NULL, steps BIGINT NOT NULL);",
    "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL, done BOOLEAN NOT NULL DEFAULT FALSE);",
    "CREATE TABLE IF NOT EXISTS outcomes (plan TEXT PRIMARY KEY, vmid INTEGER NOT NULL, at BIGINT NOT NULL, body TEXT NOT NULL);
     CREATE INDEX IF NOT EXISTS outcomes_by_vm ON outcomes (vmid, at);",
];

/// Serialises concurrent migrations of one database (an arbitrary constant of ours).
const MIGRATION_LOCK: i64 = 0x766d_7376_6373;

/// The stores in PostgreSQL. Cheap to clone (the pool is shared). Its `Debug` shows the host,
/// port and database, never the password.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    target: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::store(context, e)
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::store("connect to postgres", e)
}

fn vmid_param(v: VmId) -> i32 {
    // VMIDs are at most 999 999 999.
    i32::try_from(v.get()).unwrap_or(i32::MAX)
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or the key=value
    /// form), with a pool of at most `max(4, 2 × cores)` connections, and creates or upgrades
    /// the schema. The store talks plain TCP: keep the database on loopback or a private
    /// network.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_in(url, None).await
    }

    /// Like [`connect`](Self::connect), with every table in the PostgreSQL schema
    /// `vm_services_<cluster>` (`-` becomes `_`): one database serves several clusters, whose
    /// VMIDs, plan ids and backup slots may be the same numbers.
    pub async fn connect_scoped(
        url: &str,
        cluster: &crate::ids::ClusterName,
    ) -> Result<Self, Error> {
        let schema = format!("vm_services_{}", cluster.as_str().replace('-', "_"));
        Self::connect_in(url, Some(schema)).await
    }

    async fn connect_in(url: &str, schema: Option<String>) -> Result<Self, Error> {
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::store("parse the postgres url", e))?;
        if let Some(schema) = &schema {
            // A cluster name is lowercase letters, digits and `_` here: a plain identifier.
            cfg.options(format!("-c search_path={schema}"));
        }
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        let target = format!(
            "{:?}:{:?}/{}",
            cfg.get_hosts(),
            cfg.get_ports(),
            cfg.get_dbname().unwrap_or("")
        );
        let mgr = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let size = std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
            .max(4);
        let pool = Pool::builder(mgr)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::store("build the postgres pool", e))?;
        let store = Self { pool, target };
        store.migrate(schema.as_deref()).await?;
        Ok(store)
    }

    async fn migrate(&self, schema: Option<&str>) -> Result<(), Error> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(pg("migrate schema"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg("lock the schema"))?;
        if let Some(schema) = schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(pg("create the cluster's schema"))?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS vm_services_schema (version INTEGER PRIMARY KEY)",
        )
        .await
        .map_err(pg("create the version table"))?;
        let have: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM vm_services_schema",
                &[],
            )
            .await
            .map_err(pg("read schema version"))?
            .get(0);
        for (n, sql) in (1..).zip(MIGRATIONS) {
            if n > have {
                tx.batch_execute(sql).await.map_err(pg("migrate schema"))?;
                tx.execute(
                    "INSERT INTO vm_services_schema (version) VALUES ($1)",
                    &[&n],
                )
                .await
                .map_err(pg("record schema version"))?;
            }
        }
        tx.commit().await.map_err(pg("migrate schema"))
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i32, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        Ok(c.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM vm_services_schema",
            &[],
        )
        .await
        .map_err(pg("read schema version"))?
        .get(0))
    }

    /// Whether the schema is the version this code creates.
    pub async fn is_current(&self) -> Result<bool, Error> {
        Ok(self.schema_version().await? == SCHEMA_VERSION)
    }

    async fn load_plan(&self, id: &str) -> Result<Option<StoredPlan>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt("SELECT body, done FROM plans WHERE id = $1", &[&id])
            .await
            .map_err(pg("read plan"))?;
        row.map(|r| {
            let mut p: StoredPlan = decode("plan", r.get::<_, &str>(0))?;
            p.done = usize::try_from(r.get::<_, i64>(1)).unwrap_or(0);
            Ok(p)
        })
        .transpose()
    }
}

#[async_trait]
impl ScheduleStore for PgStore {
    async fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT schedule FROM backup_schedules WHERE vmid = $1",
                &[&vmid_param(vmid)],
            )
            .await
            .map_err(pg("read schedule"))?;
        row.map(|r| decode("schedule", r.get::<_, &str>(0)))
            .transpose()
    }
    async fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error> {
        let body = encode("schedule", schedule)?;
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO backup_schedules (vmid, schedule) VALUES ($1, $2)
             ON CONFLICT (vmid) DO UPDATE SET schedule = excluded.schedule",
            &[&vmid_param(vmid), &body],
        )
        .await
        .map_err(pg("write schedule"))?;
        Ok(())
    }
    async fn delete(&self, vmid: VmId) -> Result<bool, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "DELETE FROM backup_schedules WHERE vmid = $1",
                &[&vmid_param(vmid)],
            )
            .await
            .map_err(pg("delete schedule"))?;
        Ok(n > 0)
    }
    async fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT vmid, schedule FROM backup_schedules ORDER BY vmid",
                &[],
            )
            .await
            .map_err(pg("list schedules"))?;
        rows.iter()
            .map(|r| {
                let id = u32::try_from(r.get::<_, i32>(0))
                    .map_err(|e| Error::store("list schedules", e))?;
                Ok((VmId::new(id)?, decode("schedule", r.get::<_, &str>(1))?))
            })
            .collect()
    }
}

#[async_trait]
impl PlanStore for PgStore {
    async fn save(&self, plan: &StoredPlan) -> Result<(), Error> {
        check_within(plan, plan.done)?;
        let body = encode("plan", plan)?;
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO plans (id, body, done, steps) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, done = excluded.done, steps = excluded.steps",
            &[
                &plan.id.as_str(),
                &body,
                &(plan.done as i64),
                &(plan.plan.len() as i64),
            ],
        )
        .await
        .map_err(pg("write plan"))?;
        Ok(())
    }
    async fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error> {
        self.load_plan(id.as_str()).await
    }
    async fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error> {
        let done_i = done as i64;
        let n = {
            let c = self.pool.get().await.map_err(pool_err)?;
            c.execute(
                "UPDATE plans SET done = $2 WHERE id = $1 AND done <= $2 AND steps >= $2",
                &[&id.as_str(), &done_i],
            )
            .await
            .map_err(pg("write progress"))?
        };
        if n == 1 {
            return Ok(());
        }
        let p = self
            .load_plan(id.as_str())
            .await?
            .ok_or_else(|| unknown_plan(id))?;
        check_progress(&p, done)
    }
    async fn unfinished(&self) -> Result<Vec<StoredPlan>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT body, done FROM plans WHERE done < steps ORDER BY id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(pg("list plans"))?;
        rows.iter()
            .map(|r| {
                let mut p: StoredPlan = decode("plan", r.get::<_, &str>(0))?;
                p.done = usize::try_from(r.get::<_, i64>(1)).unwrap_or(0);
                Ok(p)
            })
            .collect()
    }
    async fn remove(&self, id: &PlanId) -> Result<bool, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute("DELETE FROM plans WHERE id = $1", &[&id.as_str()])
            .await
            .map_err(pg("delete plan"))?;
        Ok(n > 0)
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<bool, Error> {
        let now_ms = unix_millis(now);
        let expires = now_ms.saturating_add(ttl_millis(ttl));
        let c = self.pool.get().await.map_err(pool_err)?;
        // `leases::decide` as one statement. PostgreSQL locks the conflicting row for the
        // DO UPDATE, so of two workers racing for one key exactly one row changes.
        let n = c
            .execute(
                "INSERT INTO leases (key, holder, expires_ms, done) VALUES ($1, $2, $3, FALSE)
                 ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE NOT leases.done AND (leases.holder = excluded.holder OR leases.expires_ms <= $4)",
                &[&key.as_str(), &holder.as_str(), &expires, &now_ms],
            )
            .await
            .map_err(pg("take lease"))?;
        Ok(n == 1)
    }
    async fn complete(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "UPDATE leases SET done = TRUE WHERE key = $1 AND holder = $2 AND NOT done",
                &[&key.as_str(), &holder.as_str()],
            )
            .await
            .map_err(pg("complete lease"))?;
        Ok(n == 1)
    }
    async fn release(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "DELETE FROM leases WHERE key = $1 AND holder = $2 AND NOT done",
                &[&key.as_str(), &holder.as_str()],
            )
            .await
            .map_err(pg("release lease"))?;
        Ok(n == 1)
    }
    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT holder, expires_ms, done FROM leases WHERE key = $1",
                &[&key.as_str()],
            )
            .await
            .map_err(pg("read lease"))?;
        row.map(|r| {
            Ok(Lease {
                key: key.clone(),
                holder: r.get::<_, &str>(0).parse()?,
                expires: from_unix_millis(r.get(1)),
                done: r.get(2),
            })
        })
        .transpose()
    }
    async fn prune(&self, before: OffsetDateTime) -> Result<usize, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let n = c
            .execute(
                "DELETE FROM leases WHERE expires_ms < $1",
                &[&unix_millis(before)],
            )
            .await
            .map_err(pg("prune leases"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[async_trait]
impl OutcomeStore for PgStore {
    async fn record(&self, outcome: &OperationOutcome) -> Result<(), Error> {
        let mut o = outcome.clone();
        o.at = o.at.replace_nanosecond(0).unwrap_or(o.at);
        let body = encode("outcome", &o)?;
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO outcomes (plan, vmid, at, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (plan) DO UPDATE SET vmid = excluded.vmid, at = excluded.at, body = excluded.body",
            &[
                &o.plan.as_str(),
                &vmid_param(o.vm.vmid()),
                &o.at.unix_timestamp(),
                &body,
            ],
        )
        .await
        .map_err(pg("write outcome"))?;
        Ok(())
    }
    async fn list(&self, vmid: VmId) -> Result<Vec<OperationOutcome>, Error> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT body FROM outcomes WHERE vmid = $1 ORDER BY at DESC, plan COLLATE \"C\" DESC",
                &[&vmid_param(vmid)],
            )
            .await
            .map_err(pg("list outcomes"))?;
        rows.iter()
            .map(|r| decode("outcome", r.get::<_, &str>(0)))
            .collect()
    }
}
