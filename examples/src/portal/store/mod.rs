//! The portal's store: customers (Argon2id password hashes as PHC strings), sessions (idle and
//! absolute timeouts, their CSRF token), the login throttle's failure counts and the console's
//! one-time links.
//!
//! [`Store`] is what the handlers use; it holds the logic both backends share (password
//! hashing and the rehash-on-login migration, random ids, hashing ids and tokens before they
//! are stored) and talks to a [`Backend`]:
//!
//! * [`sqlite::SqliteBackend`] (the default): one SQLite file, or memory. The login throttle
//!   stays in this process's memory ([`super::throttle::LoginThrottle`]).
//! * [`postgres::PgBackend`]: one PostgreSQL database shared by several portal instances, so
//!   a session, a failed login and a console link count on every instance alike.
//!
//! Backends only ever see SHA-256 hashes of session ids and console tokens; the CSRF token
//! is stored as is (it is compared with what a form carries) and is useless without the
//! session cookie.

pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use async_trait::async_trait;
use pve_vps_services::console::ConsoleToken;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::config::{Database, PgUrl};

/// Idle timeout: a session not used for this long (30 minutes) ends.
pub const IDLE_SECS: i64 = 30 * 60;
/// Absolute lifetime: a session ends this long (12 hours) after login, however busy.
pub const ABSOLUTE_SECS: i64 = 12 * 3600;
/// A session's last use is written at most this often (not on every request), so the idle
/// timeout is measured to the minute.
pub const TOUCH_SECS: i64 = 60;
/// How long a console link is valid, in milliseconds (10 seconds).
pub const CONSOLE_TTL_MS: i64 = 10_000;
/// How long a used or expired console link is remembered (so a replay says "already used").
pub const CONSOLE_FORGET_MS: i64 = 120_000;
/// Longest user name looked up (longer ones are unknown without a query).
const MAX_USERNAME: usize = 256;

/// A logged-in session. `Debug` hides the CSRF token.
#[derive(Clone)]
pub struct Session {
    /// The customer's login name.
    pub username: String,
    /// The CSRF token every form and every state-changing request must carry.
    pub csrf: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("username", &self.username)
            .field("csrf", &"<redacted>")
            .finish()
    }
}

/// What went wrong in the store. Messages name the operation; the database's own error is the
/// [`source`](std::error::Error::source) (never a password or a token).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An SQLite statement failed.
    #[error("sqlite store: cannot {context}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL statement failed.
    #[error("postgres store: cannot {context}")]
    Postgres {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection to PostgreSQL could be had from the pool.
    #[error("postgres store: no connection to `{target}`")]
    Pool {
        /// Host, port and database (never the password).
        target: String,
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The PostgreSQL setting is not usable.
    #[error("postgres store: {0}")]
    Config(String),
    /// A background task (password hashing) did not finish.
    #[error("the password check was interrupted")]
    Interrupted,
}

impl StoreError {
    /// The message with every cause, `a: b: c` (for logs and start-up errors).
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }
}

/// How redeeming a console link went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleClaim {
    /// Valid, unused and for this VM and customer: it is now used.
    Granted,
    /// Never issued (or forgotten after [`CONSOLE_FORGET_MS`]).
    Unknown,
    /// Already used, on this instance or another.
    AlreadyUsed,
    /// Older than [`CONSOLE_TTL_MS`] (now used up as well).
    Expired,
    /// Issued for another VM or customer (now used up as well).
    ForeignService,
}

/// A storage backend. Every method is one short transaction; `now` always comes in as an
/// argument (Unix seconds, or milliseconds where the name says so), so tests move time.
/// Ids and tokens arrive as hashes.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Inserts or replaces a customer's password hash.
    async fn set_customer(&self, username: &str, password_hash: &str) -> Result<(), StoreError>;
    /// A customer's stored hash.
    async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError>;
    /// Replaces a customer's hash only if it still is `old`; whether it did.
    async fn replace_password_hash(
        &self,
        username: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a new session at `now`, sweeping ended ones.
    async fn insert_session(
        &self,
        id_hash: &str,
        username: &str,
        csrf: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The session unless idle for [`IDLE_SECS`] or older than [`ABSOLUTE_SECS`]; with `touch`,
    /// its last use becomes `now` when the stored one is [`TOUCH_SECS`] old or more.
    async fn session(
        &self,
        id_hash: &str,
        now: i64,
        touch: bool,
    ) -> Result<Option<Session>, StoreError>;
    /// Ends a session (nothing when there is none).
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Starts a login attempt, with [`super::throttle::LoginThrottle::attempt`]'s rules:
    /// `Ok(Err(seconds to wait))` when refused, else the attempt is counted as a failure.
    async fn login_attempt(
        &self,
        username: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<Result<(), i64>, StoreError>;
    /// The attempt started at `at` succeeded ([`super::throttle::LoginThrottle::succeeded`]).
    async fn login_succeeded(&self, username: &str, ip: IpAddr, at: i64) -> Result<(), StoreError>;
    /// Stores a console link issued at `now_ms`, sweeping those older than
    /// [`CONSOLE_FORGET_MS`].
    async fn insert_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Marks a console link used, atomically (one caller among all instances wins), and says
    /// whether it was valid for `vmid` and `username` at `now_ms`.
    async fn claim_console_link(
        &self,
        token_hash: &str,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<ConsoleClaim, StoreError>;
}

/// Judges a freshly claimed link (both backends).
pub(crate) fn judge_claim(
    issued_ms: i64,
    link_vmid: i64,
    link_user: &str,
    vmid: u32,
    username: &str,
    now_ms: i64,
) -> ConsoleClaim {
    if now_ms < issued_ms || now_ms - issued_ms >= CONSOLE_TTL_MS {
        ConsoleClaim::Expired
    } else if link_vmid != i64::from(vmid) || link_user != username {
        ConsoleClaim::ForeignService
    } else {
        ConsoleClaim::Granted
    }
}

/// The portal's store over a [`Backend`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// A store over any backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        // The unknown-user hash is made now, so the first unknown user costs no more than others.
        std::sync::LazyLock::force(&DUMMY_HASH);
        Self { backend }
    }

    /// The store the configuration names: memory, an SQLite file or PostgreSQL.
    pub async fn open(db: &Database) -> Result<Self, StoreError> {
        match db {
            Database::Memory => Self::in_memory(),
            Database::Sqlite(p) => Self::sqlite_file(p),
            Database::Postgres(url) => Self::postgres(url).await,
        }
    }

    /// An in-memory SQLite store (one process; gone at exit).
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(sqlite::SqliteBackend::in_memory()?)))
    }

    /// Opens (creating) the SQLite store at `path`.
    pub fn sqlite_file(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(sqlite::SqliteBackend::open(path)?)))
    }

    /// Connects to PostgreSQL and creates or upgrades the portal's tables.
    pub async fn postgres(url: &PgUrl) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(
            postgres::PgBackend::connect(url).await?,
        )))
    }

    /// Sets a customer's password hash.
    pub async fn set_customer(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        self.backend.set_customer(username, password_hash).await
    }

    /// Checks a login; the hash runs even for an unknown user (same parameters, same timing),
    /// on the blocking pool. A match against a hash in the older form (or with other
    /// parameters) is rehashed and stored as a PHC string with the current parameters, unless
    /// the stored hash changed meanwhile.
    pub async fn check_login(&self, username: &str, password: &str) -> Result<bool, StoreError> {
        let stored = if username.len() > MAX_USERNAME || username.contains('\0') {
            None
        } else {
            self.backend.password_hash(username).await?
        };
        let pw = password.to_owned();
        let Some(stored) = stored else {
            tokio::task::spawn_blocking(move || verify_password(&pw, &DUMMY_HASH))
                .await
                .map_err(|_| StoreError::Interrupted)?;
            return Ok(false);
        };
        let old = stored.clone();
        let (verified, new) = tokio::task::spawn_blocking(move || {
            let v = verify_password(&pw, &old);
            let new = (v == Verified::YesRehash).then(|| hash_password(&pw));
            (v, new)
        })
        .await
        .map_err(|_| StoreError::Interrupted)?;
        match (verified, new) {
            (Verified::No, _) => Ok(false),
            (_, Some(new)) => {
                if self
                    .backend
                    .replace_password_hash(username, &stored, &new)
                    .await?
                {
                    tracing::info!(user = %username, "password hash upgraded to a PHC string");
                }
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    /// The stored hash of a customer (tests and migrations look at its form).
    pub async fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.backend.password_hash(username).await
    }

    /// Creates a session at `now` (Unix seconds); returns its cookie value (only its hash is
    /// stored). Ended sessions are swept on the way.
    pub async fn create_session(
        &self,
        username: &str,
        now: i64,
    ) -> Result<(String, Session), StoreError> {
        let id = random_token();
        let csrf = random_token();
        self.backend
            .insert_session(&id_hash(&id), username, &csrf, now)
            .await?;
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
    pub async fn session(
        &self,
        id: &str,
        now: i64,
        touch: bool,
    ) -> Result<Option<Session>, StoreError> {
        self.backend.session(&id_hash(id), now, touch).await
    }

    /// Ends a session.
    pub async fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.backend.delete_session(&id_hash(id)).await
    }

    /// Starts a login attempt at `now`: `Ok(Err(seconds until an attempt is allowed again))`
    /// when `username` or `ip` has too many recent failures (see [`super::throttle`]).
    /// Otherwise the attempt is counted as a failure right away (so parallel attempts, on any
    /// instance sharing the store, cannot all pass before the first is counted);
    /// [`login_succeeded`](Self::login_succeeded) takes it back.
    pub async fn login_attempt(
        &self,
        username: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<Result<(), i64>, StoreError> {
        self.backend.login_attempt(username, ip, now).await
    }

    /// The attempt started at `at` succeeded: the account's failures are cleared and the
    /// address's count loses this attempt.
    pub async fn login_succeeded(
        &self,
        username: &str,
        ip: IpAddr,
        at: i64,
    ) -> Result<(), StoreError> {
        self.backend.login_succeeded(username, ip, at).await
    }

    /// Records a console link issued at `now_ms` for `username`'s VM `vmid` (only the token's
    /// hash is stored).
    pub async fn issue_console_link(
        &self,
        token: &ConsoleToken,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.backend
            .insert_console_link(&id_hash(&token.to_hex()), vmid, username, now_ms)
            .await
    }

    /// Redeems a console link: usable once (whichever instance sees it first), within
    /// [`CONSOLE_TTL_MS`], for the VM and customer it was issued to. A link is used up by its
    /// first redeem attempt that finds it, even a refused one.
    pub async fn claim_console_link(
        &self,
        token: &ConsoleToken,
        vmid: u32,
        username: &str,
        now_ms: i64,
    ) -> Result<ConsoleClaim, StoreError> {
        self.backend
            .claim_console_link(&id_hash(&token.to_hex()), vmid, username, now_ms)
            .await
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

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
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify_password("correct horse", &h), Verified::Yes);
        assert_eq!(verify_password("wrong", &h), Verified::No);
        assert_ne!(hash_password("correct horse"), h, "a fresh salt each time");
    }

    /// A hash in the form the portal stored before PHC strings.
    pub(super) fn legacy_hash(password: &str) -> String {
        let salt = [7u8; 16];
        let mut out = [0u8; 32];
        argon()
            .hash_password_into(password.as_bytes(), &salt, &mut out)
            .unwrap();
        format!("argon2id${}${}", hex::encode(salt), hex::encode(out))
    }

    /// A PHC string with weaker parameters than today's.
    pub(super) fn weak_hash(password: &str) -> String {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, Some(32)).unwrap(),
        )
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string()
    }

    #[test]
    fn older_forms_verify_and_ask_for_a_rehash() {
        let old = legacy_hash("s3cret pass");
        assert_eq!(verify_password("s3cret pass", &old), Verified::YesRehash);
        assert_eq!(verify_password("other", &old), Verified::No);
        assert_eq!(verify_password("pw", &weak_hash("pw")), Verified::YesRehash);
        assert_eq!(verify_password("other", &weak_hash("pw")), Verified::No);
    }

    #[test]
    fn garbage_never_verifies() {
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
    fn session_debug_hides_the_csrf_token() {
        let s = Session {
            username: "alice".into(),
            csrf: "c5rf-t0ken".into(),
        };
        let d = format!("{s:?}");
        assert!(d.contains("alice") && !d.contains("c5rf-t0ken"), "{d}");
    }
}
