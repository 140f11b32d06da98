//! One conformance suite, run against every backend: SQLite in a temporary file and
//! PostgreSQL from `pg-test`. Each check gets two handles on one database, `a` and `b`: for
//! PostgreSQL two stores with their own pools (two portal instances), for SQLite the one store
//! twice (its login throttle is per process by design).

use std::net::IpAddr;
use std::time::Duration;

use pve_vps_services::console::ConsoleToken;

use super::tests::{legacy_hash, weak_hash};
use super::*;
use crate::portal::throttle::{ACCOUNT_FAILURES, ADDRESS_FAILURES, WINDOW_SECS};

const T0: i64 = 1_000_000;

fn token() -> ConsoleToken {
    ConsoleToken::generate(&mut rand::rng())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn customers_and_the_rehash_migration(a: &Store, b: &Store) {
    let h = hash_password("correct horse");
    a.set_customer("alice", &h).await.unwrap();
    assert!(b.check_login("alice", "correct horse").await.unwrap());
    assert!(!b.check_login("alice", "nope").await.unwrap());
    assert!(!a.check_login("mallory", "correct horse").await.unwrap());
    assert_eq!(b.password_hash("alice").await.unwrap().unwrap(), h);

    // The older form: a wrong password leaves it alone; the right one stores a PHC string.
    let old = legacy_hash("s3cret pass");
    a.set_customer("bob", &old).await.unwrap();
    assert!(!a.check_login("bob", "other").await.unwrap());
    assert_eq!(b.password_hash("bob").await.unwrap().unwrap(), old);
    assert!(a.check_login("bob", "s3cret pass").await.unwrap());
    let new = b.password_hash("bob").await.unwrap().unwrap();
    assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
    assert!(b.check_login("bob", "s3cret pass").await.unwrap());
    assert_eq!(
        a.password_hash("bob").await.unwrap().unwrap(),
        new,
        "no rehash once current"
    );

    // Weaker parameters are upgraded too.
    a.set_customer("carol", &weak_hash("pw")).await.unwrap();
    assert!(b.check_login("carol", "pw").await.unwrap());
    let carol = a.password_hash("carol").await.unwrap().unwrap();
    assert!(carol.contains("m=19456,t=2,p=1"), "{carol}");

    // Setting a customer again replaces the hash.
    a.set_customer("alice", &new).await.unwrap();
    assert!(b.check_login("alice", "s3cret pass").await.unwrap());
    assert!(!b.check_login("alice", "correct horse").await.unwrap());
}

async fn sessions_expire_idle_and_absolute(a: &Store, b: &Store) {
    let (id, sess) = a.create_session("alice", T0).await.unwrap();
    assert_eq!(sess.username, "alice");
    assert_eq!(
        b.session(&id, T0, true).await.unwrap().unwrap().csrf,
        sess.csrf
    );
    // Idle: used at 29 minutes (on b), still there at 58 on a; a passive look does not extend it.
    assert!(b.session(&id, T0 + 29 * 60, true).await.unwrap().is_some());
    assert!(a.session(&id, T0 + 58 * 60, false).await.unwrap().is_some());
    assert!(a.session(&id, T0 + 59 * 60, false).await.unwrap().is_none());
    assert!(b.session(&id, T0 + 59 * 60, true).await.unwrap().is_none());

    // A touch within the minute is not written: measured from the last written use.
    let (id, _) = a.create_session("alice", T0).await.unwrap();
    assert!(a.session(&id, T0 + 59, true).await.unwrap().is_some());
    assert!(
        b.session(&id, T0 + IDLE_SECS, false)
            .await
            .unwrap()
            .is_none()
    );

    // Absolute: used every 20 minutes, alternately on a and b, it still ends 12 hours after
    // login.
    let (id, _) = a.create_session("alice", T0).await.unwrap();
    let mut t = T0;
    let mut on_a = false;
    while t + 20 * 60 < T0 + ABSOLUTE_SECS {
        t += 20 * 60;
        on_a = !on_a;
        let s = if on_a { a } else { b };
        assert!(
            s.session(&id, t, true).await.unwrap().is_some(),
            "at {}",
            t - T0
        );
    }
    assert!(
        a.session(&id, T0 + ABSOLUTE_SECS, true)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.session(&id, T0 + ABSOLUTE_SECS - 1, true)
            .await
            .unwrap()
            .is_some()
    );
}

async fn csrf_is_kept_and_sessions_differ(a: &Store, b: &Store) {
    let (id, s1) = a.create_session("alice", T0).await.unwrap();
    let (id2, s2) = b.create_session("alice", T0).await.unwrap();
    assert_ne!(id, id2);
    assert_ne!(s1.csrf, s2.csrf);
    assert_eq!(s1.csrf.len(), 64);
    for t in [T0, T0 + 61, T0 + 600, T0 + 1200] {
        assert_eq!(
            b.session(&id, t, true).await.unwrap().unwrap().csrf,
            s1.csrf
        );
        assert_eq!(
            a.session(&id2, t, true).await.unwrap().unwrap().csrf,
            s2.csrf
        );
    }
}

async fn delete_logs_out(a: &Store, b: &Store) {
    let (id, _) = a.create_session("alice", T0).await.unwrap();
    let (other, _) = a.create_session("alice", T0).await.unwrap();
    b.delete_session(&id).await.unwrap();
    assert!(a.session(&id, T0, true).await.unwrap().is_none());
    assert!(b.session(&id, T0, false).await.unwrap().is_none());
    assert!(
        a.session(&other, T0, true).await.unwrap().is_some(),
        "only that session ends"
    );
    // Again, or a session that never was: nothing happens.
    b.delete_session(&id).await.unwrap();
    b.delete_session("never").await.unwrap();
}

async fn throttle_counts_and_resets(a: &Store, b: &Store) {
    let x = ip("192.0.2.1");
    let y = ip("192.0.2.2");
    let stores = [a, b];
    for i in 0..ACCOUNT_FAILURES as i64 {
        let s = stores[i as usize % 2];
        assert_eq!(s.login_attempt("alice", x, 1000 + i).await.unwrap(), Ok(()));
    }
    // Locked from any address and handle until its oldest failure leaves the window; refused
    // attempts do not count.
    assert_eq!(
        a.login_attempt("alice", y, 1010).await.unwrap(),
        Err(1000 + WINDOW_SECS - 1010)
    );
    assert_eq!(
        b.login_attempt("alice", y, 1011).await.unwrap(),
        Err(1000 + WINDOW_SECS - 1011)
    );
    assert_eq!(b.login_attempt("bob", x, 1010).await.unwrap(), Ok(()));
    b.login_succeeded("bob", x, 1010).await.unwrap();
    assert_eq!(
        a.login_attempt("alice", y, 1000 + WINDOW_SECS)
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        b.login_attempt("alice", y, 1000 + WINDOW_SECS)
            .await
            .unwrap(),
        Err(1)
    );
    // Success clears the account.
    a.login_succeeded("alice", y, 1000 + WINDOW_SECS)
        .await
        .unwrap();
    assert_eq!(
        b.login_attempt("alice", y, 1000 + WINDOW_SECS)
            .await
            .unwrap(),
        Ok(())
    );
    // Spraying: many names from one address, then the address is locked for every name.
    let w = ip("192.0.2.3");
    let t = 1000 + WINDOW_SECS + 10;
    for i in 0..ADDRESS_FAILURES {
        let s = stores[i % 2];
        assert_eq!(
            s.login_attempt(&format!("user{i}"), w, t).await.unwrap(),
            Ok(())
        );
    }
    assert_eq!(
        a.login_attempt("carol", w, t + 1).await.unwrap(),
        Err(WINDOW_SECS - 1)
    );
    assert_eq!(b.login_attempt("carol", y, t + 1).await.unwrap(), Ok(()));
    // IPv6 is counted per /64.
    let v6 = ip("2001:db8::1");
    let v6b = ip("2001:db8::ffff");
    for i in 0..ADDRESS_FAILURES {
        let s = stores[i % 2];
        assert_eq!(
            s.login_attempt(&format!("v6user{i}"), v6, 2000)
                .await
                .unwrap(),
            Ok(())
        );
    }
    assert!(b.login_attempt("dave", v6b, 2001).await.unwrap().is_err());
    // Parallel attempts on both handles: exactly the limit gets through.
    let z = ip("198.51.100.7");
    let tries = (0..3 * ACCOUNT_FAILURES).map(|i| {
        let s = stores[i % 2].clone();
        async move { s.login_attempt("erin", z, 5000).await.unwrap() }
    });
    let passed = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(Result::is_ok)
        .count();
    assert_eq!(passed, ACCOUNT_FAILURES);
}

/// Many customers behind one address (an office's NAT, a load test) logging in at once on
/// both handles, all within the same second: every success takes back its own attempt, so the
/// address is never locked by logins that all succeeded.
async fn concurrent_successes_leave_no_attempt_behind(a: &Store, b: &Store) {
    let nat = ip("203.0.113.200");
    let stores = [a, b];
    for round in 0..6 {
        let logins = (0..ADDRESS_FAILURES).map(|i| {
            let s = stores[i % 2].clone();
            async move {
                let user = format!("nat{round}-{i}");
                s.login_attempt(&user, nat, 7000).await.unwrap()?;
                s.login_succeeded(&user, nat, 7000).await.unwrap();
                Ok::<(), i64>(())
            }
        });
        let refused = futures_util::future::join_all(logins)
            .await
            .into_iter()
            .filter(Result::is_err)
            .count();
        assert_eq!(refused, 0, "round {round}: successes left attempts behind");
    }
    // Nothing pending: a full address's worth of failures is still allowed, then no more.
    for i in 0..ADDRESS_FAILURES {
        let s = stores[i % 2];
        assert_eq!(
            s.login_attempt(&format!("natbad{i}"), nat, 7001)
                .await
                .unwrap(),
            Ok(()),
            "failure {i}"
        );
    }
    assert!(
        a.login_attempt("natlast", nat, 7002)
            .await
            .unwrap()
            .is_err()
    );
}

async fn console_links_are_used_once(a: &Store, b: &Store) {
    let now = T0 * 1000;
    let t = token();
    a.issue_console_link(&t, 100, "alice", now).await.unwrap();
    assert_eq!(
        b.claim_console_link(&t, 100, "alice", now + 9_999)
            .await
            .unwrap(),
        ConsoleClaim::Granted
    );
    assert_eq!(
        a.claim_console_link(&t, 100, "alice", now + 10_000)
            .await
            .unwrap(),
        ConsoleClaim::AlreadyUsed
    );
    assert_eq!(
        b.claim_console_link(&t, 100, "alice", now).await.unwrap(),
        ConsoleClaim::AlreadyUsed
    );

    // Expired: refused, and used up too.
    let t = token();
    b.issue_console_link(&t, 100, "alice", now).await.unwrap();
    assert_eq!(
        a.claim_console_link(&t, 100, "alice", now + CONSOLE_TTL_MS)
            .await
            .unwrap(),
        ConsoleClaim::Expired
    );
    assert_eq!(
        a.claim_console_link(&t, 100, "alice", now + 1)
            .await
            .unwrap(),
        ConsoleClaim::AlreadyUsed
    );
    // Before its issue time (a clock gone back): refused.
    let t = token();
    a.issue_console_link(&t, 100, "alice", now).await.unwrap();
    assert_eq!(
        b.claim_console_link(&t, 100, "alice", now - 1)
            .await
            .unwrap(),
        ConsoleClaim::Expired
    );

    // Another VM or customer: refused and used up.
    let t = token();
    a.issue_console_link(&t, 100, "alice", now).await.unwrap();
    assert_eq!(
        b.claim_console_link(&t, 101, "alice", now).await.unwrap(),
        ConsoleClaim::ForeignService
    );
    assert_eq!(
        a.claim_console_link(&t, 100, "alice", now).await.unwrap(),
        ConsoleClaim::AlreadyUsed
    );
    let t = token();
    a.issue_console_link(&t, 100, "alice", now).await.unwrap();
    assert_eq!(
        b.claim_console_link(&t, 100, "bob", now).await.unwrap(),
        ConsoleClaim::ForeignService
    );

    // Never issued.
    assert_eq!(
        a.claim_console_link(&token(), 100, "alice", now)
            .await
            .unwrap(),
        ConsoleClaim::Unknown
    );

    // Racing claims on both handles: one wins.
    let t = token();
    a.issue_console_link(&t, 100, "alice", now).await.unwrap();
    let stores = [a, b];
    let claims = (0..8).map(|i| {
        let s = stores[i % 2].clone();
        let t = t.clone();
        async move {
            s.claim_console_link(&t, 100, "alice", now + 1)
                .await
                .unwrap()
        }
    });
    let results = futures_util::future::join_all(claims).await;
    assert_eq!(
        results
            .iter()
            .filter(|c| **c == ConsoleClaim::Granted)
            .count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|c| matches!(c, ConsoleClaim::Granted | ConsoleClaim::AlreadyUsed))
    );

    // Links older than the memory are forgotten when the next one is issued.
    let old = token();
    a.issue_console_link(&old, 100, "alice", now).await.unwrap();
    b.issue_console_link(&token(), 100, "alice", now + CONSOLE_FORGET_MS)
        .await
        .unwrap();
    assert_eq!(
        a.claim_console_link(&old, 100, "alice", now + CONSOLE_FORGET_MS)
            .await
            .unwrap(),
        ConsoleClaim::Unknown
    );
}

async fn bad_input_never_panics(a: &Store, b: &Store) {
    let long = "x".repeat(100_000);
    let names = ["", "\0", "a\0b", "' OR 1=1 --", "ünï©ødé ✓", &long, "$1"];
    for name in names {
        // Unknown names, odd or huge, are simply not customers.
        assert!(!a.check_login(name, name).await.unwrap(), "{:.20}", name);
        // The throttle counts any name (NUL replaced, long ones cut).
        assert!(b.login_attempt(name, ip("203.0.113.5"), 9000).await.is_ok());
        b.login_succeeded(name, ip("203.0.113.5"), 9000)
            .await
            .unwrap();
        // Any cookie value is just no session.
        assert!(a.session(name, T0, true).await.unwrap().is_none());
        a.delete_session(name).await.unwrap();
        // A store may refuse a name it cannot hold, with an error, never a panic.
        let _ = b.set_customer(name, "$argon2id$garbage").await;
    }
    // A customer whose stored hash is garbage never logs in.
    a.set_customer("garbage", "not a hash").await.unwrap();
    assert!(!b.check_login("garbage", "not a hash").await.unwrap());
    assert!(!b.check_login("garbage", "").await.unwrap());
}

/// Every check on two handles of one database.
async fn suite(a: &Store, b: &Store) {
    customers_and_the_rehash_migration(a, b).await;
    sessions_expire_idle_and_absolute(a, b).await;
    csrf_is_kept_and_sessions_differ(a, b).await;
    delete_logs_out(a, b).await;
    throttle_counts_and_resets(a, b).await;
    concurrent_successes_leave_no_attempt_behind(a, b).await;
    console_links_are_used_once(a, b).await;
    bad_input_never_panics(a, b).await;
}

/// A fresh SQLite file, removed with its journal files when dropped.
struct TempDb(std::path::PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for ext in ["", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(ext);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_backend() {
    let db = TempDb(std::env::temp_dir().join(format!(
        "portal-store-{}-{:x}.sqlite",
        std::process::id(),
        rand::random::<u64>()
    )));
    tokio::time::timeout(Duration::from_secs(120), async {
        let s = Store::open(&Database::Sqlite(db.0.clone())).await.unwrap();
        suite(&s, &s.clone()).await;
        // The file keeps customers and sessions over a reopen.
        let (id, _) = s.create_session("alice", T0).await.unwrap();
        drop(s);
        let again = Store::sqlite_file(&db.0).unwrap();
        assert!(again.session(&id, T0 + 1, false).await.unwrap().is_some());
        assert!(again.password_hash("carol").await.unwrap().is_some());
    })
    .await
    .expect("took longer than 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_backend() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let s = Store::in_memory().unwrap();
        suite(&s, &s.clone()).await;
    })
    .await
    .expect("took longer than 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend() {
    let pg = pg_test::PgServer::start();
    let url = PgUrl::parse(&pg.create_database("portal_store")).unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        // Two instances migrating at once end with one schema.
        let (a, b) = tokio::join!(Store::postgres(&url), Store::postgres(&url));
        let (a, b) = (a.unwrap(), b.unwrap());
        suite(&a, &b).await;
        // A third instance started later sees what the first two stored.
        let c = Store::open(&Database::Postgres(url.clone())).await.unwrap();
        assert!(c.password_hash("carol").await.unwrap().is_some());
    })
    .await
    .expect("took longer than 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_name_no_password() {
    // Nothing listens on port 1: the connection is refused.
    let url = PgUrl::parse("postgres://portal:hunter2-secret@127.0.0.1:1/portal").unwrap();
    assert!(!format!("{url:?}").contains("hunter2"));
    let e = Store::postgres(&url).await.unwrap_err();
    let text = format!("{} {e:?}", e.chain());
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("127.0.0.1:1/portal"), "{text}");
}
