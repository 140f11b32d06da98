//! The PostgreSQL backend: one database shared by every portal instance (`tokio-postgres`
//! through a small `deadpool-postgres` pool; nothing blocks the runtime). Its tables are named
//! `portal_*`, so the database can also hold vm-services' own stores.
//!
//! Several instances stay one portal because every decision is one statement or one short
//! transaction in the database: a console link is claimed with `UPDATE ... WHERE NOT used
//! RETURNING`, and a login attempt is counted under transaction-scoped advisory locks on its
//! account and address keys, so attempts spread over instances add up to the one limit.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use super::{
    ABSOLUTE_SECS, Backend, CONSOLE_FORGET_MS, ConsoleClaim, IDLE_SECS, Session, StoreError,
    TOUCH_SECS, judge_claim,
};
use crate::portal::config::PgUrl;
use crate::portal::throttle::{ACCOUNT_FAILURES, ADDRESS_FAILURES, WINDOW_SECS, shared_keys};

/// Migration `n` is `MIGRATIONS[n - 1]`; each is idempotent.
const MIGRATIONS: [&str; 1] = ["CREATE TABLE IF NOT EXISTS portal_customers (
         username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS portal_sessions (
         id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
         created BIGINT NOT NULL, last_seen BIGINT NOT NULL);
     CREATE TABLE IF NOT EXISTS portal_login_failures (
         id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, at BIGINT NOT NULL);
     CREATE INDEX IF NOT EXISTS portal_login_failures_by_key ON portal_login_failures (key, at);
     CREATE INDEX IF NOT EXISTS portal_login_failures_by_at ON portal_login_failures (at);
     CREATE TABLE IF NOT EXISTS portal_console_links (
         token_hash TEXT PRIMARY KEY, vmid BIGINT NOT NULL, username TEXT NOT NULL,
         issued_ms BIGINT NOT NULL, used BOOLEAN NOT NULL DEFAULT FALSE);"];

/// Serialises concurrent migrations of one database (an arbitrary constant of ours).
const MIGRATION_LOCK: i64 = 0x706f_7274_616c;
/// The first half of the login throttle's advisory lock keys (the second is the key's hash).
const THROTTLE_LOCK: i32 = 0x706f_7274;

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { context, source }
}

/// The portal's tables in PostgreSQL. Its `Debug` shows the host, port and database, never
/// the password.
pub struct PgBackend {
    pool: Pool,
    target: String,
}

impl fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBackend")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects to `url` with a pool of at most `max(4, 2 × cores)` connections and creates or
    /// upgrades the tables. Plain TCP: keep the database on loopback or a private network.
    pub async fn connect(url: &PgUrl) -> Result<Self, StoreError> {
        let mut cfg = tokio_postgres::Config::from_str(url.expose())
            .map_err(|_| StoreError::Config(format!("`{}` is not a valid url", url.redacted())))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        let target = url.target();
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
            .map_err(|e| StoreError::Config(format!("cannot build the pool: {e}")))?;
        let store = Self { pool, target };
        store.migrate().await?;
        Ok(store)
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|source| StoreError::Pool {
            target: self.target.clone(),
            source,
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg("begin the migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg("lock the schema"))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS portal_schema (version INTEGER PRIMARY KEY)")
            .await
            .map_err(pg("create the version table"))?;
        let have: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM portal_schema", &[])
            .await
            .map_err(pg("read the schema version"))?
            .get(0);
        for (n, sql) in (1..).zip(MIGRATIONS) {
            if n > have {
                tx.batch_execute(sql)
                    .await
                    .map_err(pg("migrate the schema"))?;
                tx.execute("INSERT INTO portal_schema (version) VALUES ($1)", &[&n])
                    .await
                    .map_err(pg("record the schema version"))?;
            }
        }
        tx.commit().await.map_err(pg("commit the migration"))
    }
}

#[async_trait]
impl Backend for PgBackend {
    async fn set_customer(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "INSERT INTO portal_customers (username, password_hash) VALUES ($1, $2)
                 ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash",
                &[&username, &password_hash],
            )
            .await
            .map_err(pg("store a customer"))?;
        Ok(())
    }

    async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .await?
            .query_opt(
                "SELECT password_hash FROM portal_customers WHERE username = $1",
                &[&username],
            )
            .await
            .map_err(pg("read a customer"))?
            .map(|r| r.get(0)))
    }

    async fn replace_password_hash(
        &self,
        username: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE portal_customers SET password_hash = $3
                 WHERE username = $1 AND password_hash = $2",
                &[&username, &old, &new],
            )
            .await
            .map_err(pg("upgrade a password hash"))?;
        Ok(n == 1)
    }

    async fn insert_session(
        &self,
        id_hash: &str,
        username: &str,
        csrf: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM portal_sessions WHERE last_seen <= $1 OR created <= $2",
            &[&(now - IDLE_SECS), &(now - ABSOLUTE_SECS)],
        )
        .await
        .map_err(pg("sweep ended sessions"))?;
        c.execute(
            "INSERT INTO portal_sessions (id_hash, username, csrf, created, last_seen)
             VALUES ($1, $2, $3, $4, $4)",
            &[&id_hash, &username, &csrf, &now],
        )
        .await
        .map_err(pg("store a session"))?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &str,
        now: i64,
        touch: bool,
    ) -> Result<Option<Session>, StoreError> {
        let c = self.conn().await?;
        let Some(row) = c
            .query_opt(
                "SELECT username, csrf, last_seen FROM portal_sessions
                 WHERE id_hash = $1 AND last_seen > $2 AND created > $3",
                &[&id_hash, &(now - IDLE_SECS), &(now - ABSOLUTE_SECS)],
            )
            .await
            .map_err(pg("read a session"))?
        else {
            return Ok(None);
        };
        let last_seen: i64 = row.get(2);
        if touch && last_seen + TOUCH_SECS <= now {
            // Never moves it back when another instance touched it meanwhile.
            c.execute(
                "UPDATE portal_sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2",
                &[&id_hash, &now],
            )
            .await
            .map_err(pg("touch a session"))?;
        }
        Ok(Some(Session {
            username: row.get(0),
            csrf: row.get(1),
        }))
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM portal_sessions WHERE id_hash = $1",
                &[&id_hash],
            )
            .await
            .map_err(pg("end a session"))?;
        Ok(())
    }

    async fn login_attempt(
        &self,
        username: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        let (account, address) = shared_keys(username, ip);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg("begin a login attempt"))?;
        // Both keys locked in one order, so two attempts never wait on each other in a cycle.
        let mut keys = [account.as_str(), address.as_str()];
        keys.sort_unstable();
        for k in keys {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&THROTTLE_LOCK, &k],
            )
            .await
            .map_err(pg("lock the login counters"))?;
        }
        tx.execute(
            "DELETE FROM portal_login_failures WHERE at <= $1",
            &[&(now - WINDOW_SECS)],
        )
        .await
        .map_err(pg("sweep old login failures"))?;
        let mut wait = 0;
        for (key, limit) in [
            (account.as_str(), ACCOUNT_FAILURES),
            (address.as_str(), ADDRESS_FAILURES),
        ] {
            // The limit-th newest failure: allowed again once it leaves the window.
            let offset = i64::try_from(limit - 1).unwrap_or(0);
            let row = tx
                .query_opt(
                    "SELECT at FROM portal_login_failures WHERE key = $1
                     ORDER BY at DESC, id DESC OFFSET $2 LIMIT 1",
                    &[&key, &offset],
                )
                .await
                .map_err(pg("count login failures"))?;
            if let Some(r) = row {
                let at: i64 = r.get(0);
                wait = wait.max(at + WINDOW_SECS - now);
            }
        }
        if wait <= 0 {
            tx.execute(
                "INSERT INTO portal_login_failures (key, at) VALUES ($1, $3), ($2, $3)",
                &[&account, &address, &now],
            )
            .await
            .map_err(pg("count a login attempt"))?;
        }
        tx.commit().await.map_err(pg("commit a login attempt"))?;
        Ok(if wait > 0 { Err(wait) } else { Ok(()) })
    }

    async fn login_succeeded(&self, username: &str, ip: IpAddr, at: i64) -> Result<(), StoreError> {
        let (account, address) = shared_keys(username, ip);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg("begin a login success"))?;
        // Under the address's lock: two successes in the same second from one address (many
        // customers behind one NAT) would otherwise both pick the same row to take back, the
        // second deleting nothing, and the pending attempts left over would lock the address.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&THROTTLE_LOCK, &address],
        )
        .await
        .map_err(pg("lock the login counters"))?;
        tx.execute(
            "DELETE FROM portal_login_failures WHERE key = $1",
            &[&account],
        )
        .await
        .map_err(pg("clear an account's login failures"))?;
        tx.execute(
            "DELETE FROM portal_login_failures WHERE id = (
                 SELECT id FROM portal_login_failures WHERE key = $1 AND at = $2
                 ORDER BY id DESC LIMIT 1)",
            &[&address, &at],
        )
        .await
        .map_err(pg("take back a login attempt"))?;
        tx.commit().await.map_err(pg("commit a login success"))?;
        Ok(())
    }

    async fn insert_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn().await?;
        c.execute(
            "DELETE FROM portal_console_links WHERE issued_ms <= $1",
            &[&(now_ms - CONSOLE_FORGET_MS)],
        )
        .await
        .map_err(pg("sweep old console links"))?;
        c.execute(
            "INSERT INTO portal_console_links (token_hash, vmid, username, issued_ms)
             VALUES ($1, $2, $3, $4)",
            &[&token_hash, &i64::from(vmid), &username, &now_ms],
        )
        .await
        .map_err(pg("store a console link"))?;
        Ok(())
    }

    async fn claim_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<ConsoleClaim, StoreError> {
        let c = self.conn().await?;
        let claimed = c
            .query_opt(
                "UPDATE portal_console_links SET used = TRUE
                 WHERE token_hash = $1 AND NOT used
                 RETURNING issued_ms, vmid, username",
                &[&token_hash],
            )
            .await
            .map_err(pg("claim a console link"))?;
        if let Some(r) = claimed {
            let user: String = r.get(2);
            return Ok(judge_claim(
                r.get(0),
                r.get(1),
                &user,
                vmid,
                username,
                now_ms,
            ));
        }
        let known = c
            .query_opt(
                "SELECT 1 FROM portal_console_links WHERE token_hash = $1",
                &[&token_hash],
            )
            .await
            .map_err(pg("read a console link"))?
            .is_some();
        Ok(if known {
            ConsoleClaim::AlreadyUsed
        } else {
            ConsoleClaim::Unknown
        })
    }
}
