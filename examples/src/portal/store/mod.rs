//! The portal's own SQLite store: customers (Argon2id password hashes as PHC strings) and
//! sessions (with their CSRF token).

use std::path::Path;
use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use subtle::ConstantTimeEq;

/// Idle timeout: a session not used for this long (30 minutes) ends.
pub const IDLE_SECS: i64 = 30 * 60;
/// Absolute lifetime: a session ends this long (12 hours) after login, however busy.
pub const ABSOLUTE_SECS: i64 = 12 * 3600;
/// A session's last use is written at most this often (not on every request), so the idle
/// timeout is measured to the minute.
const TOUCH_SECS: i64 = 60;

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

/// The cost of every new hash: OWASP's recommended Argon2id parameters (19 MiB, two passes,
/// one lane, 32-byte output). A stored hash with other parameters is rehashed at the next login.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, Some(32)).expect("valid argon2 parameters")
}

fn argon() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Hashes a password with a fresh salt from the operating system's CSPRNG, as a PHC string:
/// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (unpadded base64).
pub fn hash_password(password: &str) -> String {
    argon()
        .hash_password(password.as_bytes())
        .expect("argon2id hashes any password below 4 GiB with a 16-byte salt")
        .to_string()
}

/// How a stored hash matched a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password does not match (or the stored value is not a hash we know).
    No,
    /// It matches a PHC string with the current parameters.
    Yes,
    /// It matches, but the stored value is in the older `argon2id$<hex salt>$<hex hash>` form
    /// or has other parameters: store [`hash_password`]'s output instead.
    YesRehash,
}

/// Checks a password against a stored hash: a PHC string (through the password-hash API, with
/// the parameters it names) or the older `argon2id$<hex salt>$<hex hash>` form, in constant
/// time either way.
pub fn verify_password(password: &str, stored: &str) -> Verified {
    if stored.starts_with('$') {
        let Ok(hash) = PasswordHash::new(stored) else {
            return Verified::No;
        };
        if argon().verify_password(password.as_bytes(), &hash).is_err() {
            return Verified::No;
        }
        let current = hash.algorithm == argon2::ARGON2ID_IDENT
            && Params::try_from(&hash).is_ok_and(|p| {
                let want = params();
                (p.m_cost(), p.t_cost(), p.p_cost(), p.output_len())
                    == (
                        want.m_cost(),
                        want.t_cost(),
                        want.p_cost(),
                        want.output_len(),
                    )
            });
        return if current {
            Verified::Yes
        } else {
            Verified::YesRehash
        };
    }
    if verify_legacy(password, stored) {
        Verified::YesRehash
    } else {
        Verified::No
    }
}

/// The older form, `argon2id$<hex salt>$<hex hash>` with the same parameters.
fn verify_legacy(password: &str, stored: &str) -> bool {
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
        // The unknown-user hash is made now, so the first unknown user costs no more than others.
        std::sync::LazyLock::force(&DUMMY_HASH);
        c.execute_batch("PRAGMA journal_mode=WAL;")?;
        // Sessions of the older layout (one `expires` column) are dropped: their customers
        // log in again once.
        if c.prepare("SELECT last_seen FROM sessions LIMIT 0").is_err() {
            c.execute_batch("DROP TABLE IF EXISTS sessions;")?;
        }
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS customers (
                 username TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sessions (
                 id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
                 created INTEGER NOT NULL, last_seen INTEGER NOT NULL);",
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

    /// Checks a login; the hash runs even for an unknown user (same parameters, same timing).
    /// A match against a hash in the older form (or with other parameters) is rehashed and
    /// stored as a PHC string with the current parameters.
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
        let Some(stored) = stored else {
            let _ = verify_password(password, &DUMMY_HASH);
            return false;
        };
        match verify_password(password, &stored) {
            Verified::No => false,
            Verified::Yes => true,
            Verified::YesRehash => {
                // Only if the row still holds what was checked (a concurrent change wins).
                let _ = self.conn().execute(
                    "UPDATE customers SET password_hash = ?3
                     WHERE username = ?1 AND password_hash = ?2",
                    params![username, stored, hash_password(password)],
                );
                tracing::info!(user = %username, "password hash upgraded to a PHC string");
                true
            }
        }
    }

    /// The stored hash of a customer (tests and migrations look at its form).
    pub fn password_hash(&self, username: &str) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT password_hash FROM customers WHERE username = ?1",
                params![username],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
    }

    /// Creates a session at `now` (Unix seconds); returns its cookie value (only its hash is
    /// stored). Ended sessions are swept on the way.
    pub fn create_session(&self, username: &str, now: i64) -> rusqlite::Result<(String, Session)> {
        let id = random_token();
        let csrf = random_token();
        let c = self.conn();
        c.execute(
            "DELETE FROM sessions WHERE last_seen <= ?1 OR created <= ?2",
            params![now - IDLE_SECS, now - ABSOLUTE_SECS],
        )?;
        c.execute(
            "INSERT INTO sessions (id_hash, username, csrf, created, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id_hash(&id), username, csrf, now],
        )?;
        Ok((
            id,
            Session {
                username: username.to_owned(),
                csrf,
            },
        ))
    }

    /// The session of a cookie value at `now`, unless it was idle for [`IDLE_SECS`] or began
    /// [`ABSOLUTE_SECS`] ago. `touch` counts this request as use (the customer's own requests
    /// do; the pages' background polling does not, so an open tab alone does not keep a
    /// session alive).
    pub fn session(&self, id: &str, now: i64, touch: bool) -> Option<Session> {
        let h = id_hash(id);
        let c = self.conn();
        let (session, last_seen) = c
            .query_row(
                "SELECT username, csrf, last_seen FROM sessions
                 WHERE id_hash = ?1 AND last_seen > ?2 AND created > ?3",
                params![h, now - IDLE_SECS, now - ABSOLUTE_SECS],
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
            .ok()
            .flatten()?;
        if touch && last_seen + TOUCH_SECS <= now {
            let _ = c.execute(
                "UPDATE sessions SET last_seen = ?2 WHERE id_hash = ?1",
                params![h, now],
            );
        }
        Some(session)
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

/// A hash of a random password with the current parameters, checked for unknown users so both
/// paths cost the same.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut pw = [0u8; 16];
    rand::rng().fill_bytes(&mut pw);
    hash_password(&hex::encode(pw))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_sessions() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify_password("correct horse", &h), Verified::Yes);
        assert_eq!(verify_password("wrong", &h), Verified::No);
        assert_ne!(hash_password("correct horse"), h, "a fresh salt each time");
        let s = Store::in_memory().unwrap();
        s.set_customer("alice", &h).unwrap();
        assert!(s.check_login("alice", "correct horse"));
        assert!(!s.check_login("alice", "nope"));
        assert!(!s.check_login("mallory", "correct horse"));
        let t0 = 1_000_000;
        let (id, sess) = s.create_session("alice", t0).unwrap();
        assert_eq!(s.session(&id, t0, true).unwrap().csrf, sess.csrf);
        // Idle: used at 29 minutes, still there at 58; a passive look does not extend it.
        assert!(s.session(&id, t0 + 29 * 60, true).is_some());
        assert!(s.session(&id, t0 + 58 * 60, false).is_some());
        assert!(s.session(&id, t0 + 59 * 60, false).is_none());
        // Absolute: used every 20 minutes, it still ends 12 hours after login.
        let (id2, _) = s.create_session("alice", t0).unwrap();
        let mut t = t0;
        while t + 20 * 60 < t0 + ABSOLUTE_SECS {
            t += 20 * 60;
            assert!(s.session(&id2, t, true).is_some(), "at {}", t - t0);
        }
        assert!(s.session(&id2, t0 + ABSOLUTE_SECS, true).is_none());
        let (id3, _) = s.create_session("alice", t0).unwrap();
        s.delete_session(&id3);
        assert!(s.session(&id3, t0, true).is_none());
    }

    /// A hash in the form the portal stored before PHC strings.
    fn legacy_hash(password: &str) -> String {
        let salt = [7u8; 16];
        let mut out = [0u8; 32];
        argon()
            .hash_password_into(password.as_bytes(), &salt, &mut out)
            .unwrap();
        format!("argon2id${}${}", hex::encode(salt), hex::encode(out))
    }

    #[test]
    fn older_hashes_verify_and_are_rehashed_at_login() {
        let old = legacy_hash("s3cret pass");
        assert_eq!(verify_password("s3cret pass", &old), Verified::YesRehash);
        assert_eq!(verify_password("other", &old), Verified::No);
        let s = Store::in_memory().unwrap();
        s.set_customer("bob", &old).unwrap();
        // A wrong password leaves the old hash alone.
        assert!(!s.check_login("bob", "other"));
        assert_eq!(s.password_hash("bob").unwrap(), old);
        // The right one logs in and stores a PHC string that verifies from then on.
        assert!(s.check_login("bob", "s3cret pass"));
        let new = s.password_hash("bob").unwrap();
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
        assert_eq!(verify_password("s3cret pass", &new), Verified::Yes);
        assert!(s.check_login("bob", "s3cret pass"));
        assert!(!s.check_login("bob", "other"));
        assert_eq!(
            s.password_hash("bob").unwrap(),
            new,
            "no rehash once current"
        );
    }

    #[test]
    fn weaker_parameters_are_rehashed_and_garbage_never_verifies() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, Some(32)).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert_eq!(verify_password("pw", &weak), Verified::YesRehash);
        let s = Store::in_memory().unwrap();
        s.set_customer("carol", &weak).unwrap();
        assert!(s.check_login("carol", "pw"));
        assert!(
            s.password_hash("carol")
                .unwrap()
                .contains("m=19456,t=2,p=1")
        );
        for bad in [
            "",
            "$",
            "$argon2id$",
            "argon2id$zz$zz",
            "plain",
            "$argon2id$v=19$m=19456,t=2,p=1$AAAA",
        ] {
            assert_eq!(verify_password("pw", bad), Verified::No, "{bad}");
        }
        assert!(DUMMY_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn sessions_of_the_older_layout_are_dropped() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                 csrf TEXT NOT NULL, expires INTEGER NOT NULL);
             INSERT INTO sessions VALUES ('h', 'alice', 'c', 99999999999);",
        )
        .unwrap();
        let s = Store::init(c).unwrap();
        let (id, _) = s.create_session("alice", 1_000).unwrap();
        assert!(s.session(&id, 1_001, true).is_some());
    }
}
