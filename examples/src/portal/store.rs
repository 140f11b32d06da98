//! The portal's own SQLite store: customers (Argon2id password hashes) and sessions (with their
//! CSRF token).

use std::path::Path;
use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use subtle::ConstantTimeEq;

/// How long a session lives without use.
pub const SESSION_SECS: i64 = 8 * 3600;

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The customer's login name.
    pub username: String,
    /// The CSRF token every form and every state-changing request must carry.
    pub csrf: String,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store(Mutex<Connection>);

fn argon() -> Argon2<'static> {
    // OWASP's recommended Argon2id parameters: 19 MiB, two passes, one lane.
    let params = Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt: `argon2id$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    argon()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .expect("argon2 accepts a 16-byte salt and 32-byte output");
    format!("argon2id${}${}", hex::encode(salt), hex::encode(out))
}

/// Checks a password against [`hash_password`]'s output, in constant time.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("argon2id"), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    let mut out = vec![0u8; hash.len()];
    if argon()
        .hash_password_into(password.as_bytes(), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    out.ct_eq(&hash).into()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Store {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Self::init(Connection::open(path)?)
    }

    /// An in-memory store.
    pub fn in_memory() -> rusqlite::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(c: Connection) -> rusqlite::Result<Self> {
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS customers (
                 username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (
                 id_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                 csrf TEXT NOT NULL, expires INTEGER NOT NULL);",
        )?;
        Ok(Self(Mutex::new(c)))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a customer's password hash.
    pub fn set_customer(&self, username: &str, password_hash: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT INTO customers (username, password_hash) VALUES (?1, ?2)
             ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash",
            params![username, password_hash],
        )?;
        Ok(())
    }

    /// Checks a login; the hash runs even for an unknown user (same timing).
    pub fn check_login(&self, username: &str, password: &str) -> bool {
        let stored: Option<String> = self
            .conn()
            .query_row(
                "SELECT password_hash FROM customers WHERE username = ?1",
                params![username],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        match stored {
            Some(h) => verify_password(password, &h),
            None => {
                let _ = verify_password(password, DUMMY_HASH);
                false
            }
        }
    }

    /// Creates a session; returns its cookie value (only its hash is stored).
    pub fn create_session(&self, username: &str) -> rusqlite::Result<(String, Session)> {
        let id = random_token();
        let csrf = random_token();
        let c = self.conn();
        c.execute("DELETE FROM sessions WHERE expires < ?1", params![now()])?;
        c.execute(
            "INSERT INTO sessions (id_hash, username, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
            params![id_hash(&id), username, csrf, now() + SESSION_SECS],
        )?;
        Ok((
            id,
            Session {
                username: username.to_owned(),
                csrf,
            },
        ))
    }

    /// The session of a cookie value, if valid.
    pub fn session(&self, id: &str) -> Option<Session> {
        self.conn()
            .query_row(
                "SELECT username, csrf FROM sessions WHERE id_hash = ?1 AND expires >= ?2",
                params![id_hash(id), now()],
                |r| {
                    Ok(Session {
                        username: r.get(0)?,
                        csrf: r.get(1)?,
                    })
                },
            )
            .optional()
            .ok()
            .flatten()
    }

    /// Ends a session.
    pub fn delete_session(&self, id: &str) {
        let _ = self.conn().execute(
            "DELETE FROM sessions WHERE id_hash = ?1",
            params![id_hash(id)],
        );
    }
}

fn id_hash(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// A hash of a random password, checked for unknown users so both paths cost the same.
const DUMMY_HASH: &str = "argon2id$00112233445566778899aabbccddeeff$\
0000000000000000000000000000000000000000000000000000000000000000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_sessions() {
        let h = hash_password("correct horse");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        let s = Store::in_memory().unwrap();
        s.set_customer("alice", &h).unwrap();
        assert!(s.check_login("alice", "correct horse"));
        assert!(!s.check_login("alice", "nope"));
        assert!(!s.check_login("mallory", "correct horse"));
        let (id, sess) = s.create_session("alice").unwrap();
        assert_eq!(s.session(&id).unwrap().csrf, sess.csrf);
        s.delete_session(&id);
        assert!(s.session(&id).is_none());
    }
}
