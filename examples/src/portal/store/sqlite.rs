//! The SQLite backend: one file (or memory) behind a mutex, for one portal process. The login
//! throttle's counts stay in this process's memory.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ABSOLUTE_SECS, Backend, CONSOLE_FORGET_MS, ConsoleClaim, IDLE_SECS, Session, StoreError,
    TOUCH_SECS, judge_claim,
};
use crate::portal::throttle::LoginThrottle;

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

/// Customers, sessions and console links in SQLite; failed logins in memory.
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Mutex<Connection>,
    throttle: LoginThrottle,
}

impl SqliteBackend {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path).map_err(sql("open the database file"))?)
    }

    /// An in-memory store.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql("open an in-memory database"))?)
    }

    fn init(c: Connection) -> Result<Self, StoreError> {
        c.execute_batch("PRAGMA journal_mode=WAL;")
            .map_err(sql("turn on write-ahead logging"))?;
        // Sessions of the older layout (one `expires` column) are dropped: their customers
        // log in again once.
        if c.prepare("SELECT last_seen FROM sessions LIMIT 0").is_err() {
            c.execute_batch("DROP TABLE IF EXISTS sessions;")
                .map_err(sql("drop old sessions"))?;
        }
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS customers (
                 username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (
                 id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
                 created INTEGER NOT NULL, last_seen INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS console_links (
                 token_hash TEXT PRIMARY KEY, vmid INTEGER NOT NULL, username TEXT NOT NULL,
                 issued_ms INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);",
        )
        .map_err(sql("create the tables"))?;
        Ok(Self {
            conn: Mutex::new(c),
            throttle: LoginThrottle::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn set_customer(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO customers (username, password_hash) VALUES (?1, ?2)
                 ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash",
                params![username, password_hash],
            )
            .map_err(sql("store a customer"))?;
        Ok(())
    }

    async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT password_hash FROM customers WHERE username = ?1",
                params![username],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read a customer"))
    }

    async fn replace_password_hash(
        &self,
        username: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE customers SET password_hash = ?3
                 WHERE username = ?1 AND password_hash = ?2",
                params![username, old, new],
            )
            .map_err(sql("upgrade a password hash"))?;
        Ok(n == 1)
    }

    async fn insert_session(
        &self,
        id_hash: &str,
        username: &str,
        csrf: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn();
        c.execute(
            "DELETE FROM sessions WHERE last_seen <= ?1 OR created <= ?2",
            params![now - IDLE_SECS, now - ABSOLUTE_SECS],
        )
        .map_err(sql("sweep ended sessions"))?;
        c.execute(
            "INSERT INTO sessions (id_hash, username, csrf, created, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id_hash, username, csrf, now],
        )
        .map_err(sql("store a session"))?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &str,
        now: i64,
        touch: bool,
    ) -> Result<Option<Session>, StoreError> {
        let c = self.conn();
        let found = c
            .query_row(
                "SELECT username, csrf, last_seen FROM sessions
                 WHERE id_hash = ?1 AND last_seen > ?2 AND created > ?3",
                params![id_hash, now - IDLE_SECS, now - ABSOLUTE_SECS],
                |r| {
                    Ok((
                        Session {
                            username: r.get(0)?,
                            csrf: r.get(1)?,
                        },
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("read a session"))?;
        let Some((session, last_seen)) = found else {
            return Ok(None);
        };
        if touch && last_seen + TOUCH_SECS <= now {
            c.execute(
                "UPDATE sessions SET last_seen = ?2 WHERE id_hash = ?1",
                params![id_hash, now],
            )
            .map_err(sql("touch a session"))?;
        }
        Ok(Some(session))
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", params![id_hash])
            .map_err(sql("end a session"))?;
        Ok(())
    }

    async fn login_attempt(
        &self,
        username: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        Ok(self.throttle.attempt(username, ip, now))
    }

    async fn login_succeeded(&self, username: &str, ip: IpAddr, at: i64) -> Result<(), StoreError> {
        self.throttle.succeeded(username, ip, at);
        Ok(())
    }

    async fn insert_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let c = self.conn();
        c.execute(
            "DELETE FROM console_links WHERE issued_ms <= ?1",
            params![now_ms - CONSOLE_FORGET_MS],
        )
        .map_err(sql("sweep old console links"))?;
        c.execute(
            "INSERT INTO console_links (token_hash, vmid, username, issued_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, i64::from(vmid), username, now_ms],
        )
        .map_err(sql("store a console link"))?;
        Ok(())
    }

    async fn claim_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<ConsoleClaim, StoreError> {
        let c = self.conn();
        let claimed = c
            .query_row(
                "UPDATE console_links SET used = 1 WHERE token_hash = ?1 AND used = 0
                 RETURNING issued_ms, vmid, username",
                params![token_hash],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(sql("claim a console link"))?;
        if let Some((issued, link_vmid, link_user)) = claimed {
            return Ok(judge_claim(
                issued, link_vmid, &link_user, vmid, username, now_ms,
            ));
        }
        let known = c
            .query_row(
                "SELECT 1 FROM console_links WHERE token_hash = ?1",
                params![token_hash],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql("read a console link"))?
            .is_some();
        Ok(if known {
            ConsoleClaim::AlreadyUsed
        } else {
            ConsoleClaim::Unknown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_of_the_older_layout_are_dropped() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                 csrf TEXT NOT NULL, expires INTEGER NOT NULL);
             INSERT INTO sessions VALUES ('h', 'alice', 'c', 99999999999);",
        )
        .unwrap();
        let b = SqliteBackend::init(c).unwrap();
        b.insert_session("h2", "alice", "c", 1_000).await.unwrap();
        assert!(b.session("h2", 1_001, true).await.unwrap().is_some());
        assert!(b.session("h", 1_001, true).await.unwrap().is_none());
    }
}
