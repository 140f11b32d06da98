//! Login throttling and the portal's clock.
//!
//! Failed logins are counted per account and per client address over a sliding window: after
//! [`ACCOUNT_FAILURES`] failures for one user name, or [`ADDRESS_FAILURES`] from one address
//! (password spraying over many names), within [`WINDOW_SECS`], further attempts are refused
//! with 429 until the oldest failure leaves the window. A refused attempt does not run the
//! password hash and does not count, so it neither extends the lock nor costs CPU. A successful
//! login clears the account's failures (not the address's: one valid account must not reset a
//! spraying budget).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Failures per user name within the window before attempts are refused.
pub const ACCOUNT_FAILURES: usize = 5;
/// Failures per client address within the window before attempts are refused.
pub const ADDRESS_FAILURES: usize = 20;
/// The window, in seconds (15 minutes).
pub const WINDOW_SECS: i64 = 15 * 60;
/// User names longer than this are counted under their first this-many bytes (bounds memory).
const MAX_KEY: usize = 128;
/// Above this many tracked keys, expired ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

/// The portal's clock, in Unix seconds: the system clock, plus an offset tests move forward so
/// they do not sleep through windows and timeouts.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + self.offset.load(Ordering::Relaxed)
    }

    /// Now, in Unix milliseconds (the same offset).
    pub fn now_ms(&self) -> i64 {
        let t = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        i64::try_from(t).unwrap_or(i64::MAX) + self.offset.load(Ordering::Relaxed) * 1000
    }

    /// Moves the clock forward by `secs` (tests).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

/// Who a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

fn account(username: &str) -> Key {
    Key::Account(account_name(username))
}

/// The user name a failure is counted under: its first [`MAX_KEY`] bytes, NUL as U+FFFD (a
/// database text column refuses NUL).
fn account_name(username: &str) -> String {
    let mut end = username.len().min(MAX_KEY);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    username[..end].replace('\0', "\u{fffd}")
}

/// The keys a shared store counts failures under: the account's and the address's, as text
/// (`user:<name>`, `addr:<address>`).
pub(crate) fn shared_keys(username: &str, ip: IpAddr) -> (String, String) {
    (
        format!("user:{}", account_name(username)),
        format!("addr:{}", address_ip(ip)),
    )
}

/// Address key: IPv6 clients are counted per /64 (one customer line holds a whole /64).
fn address(ip: IpAddr) -> Key {
    Key::Address(address_ip(ip))
}

fn address_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Failed-login counters (in memory: a restart forgets them, as a lock of minutes allows).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, VecDeque<i64>>>,
}

impl LoginThrottle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<i64>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a login attempt at `now`: `Err(seconds until an attempt is allowed again)` when
    /// `username` or `ip` has too many recent failures. Otherwise the attempt is counted as a
    /// failure right away (so parallel attempts cannot all pass before the first is counted);
    /// [`LoginThrottle::succeeded`] takes it back.
    pub fn attempt(&self, username: &str, ip: IpAddr, now: i64) -> Result<(), i64> {
        let mut map = self.map();
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, q| {
                prune(q, now);
                !q.is_empty()
            });
        }
        let keys = [
            (account(username), ACCOUNT_FAILURES),
            (address(ip), ADDRESS_FAILURES),
        ];
        let mut wait = 0;
        for (key, limit) in &keys {
            if let Some(q) = map.get_mut(key) {
                prune(q, now);
                if q.len() >= *limit {
                    // Allowed again once enough failures have left the window.
                    let free_at = q[q.len() - limit] + WINDOW_SECS;
                    wait = wait.max(free_at - now);
                }
            }
        }
        if wait > 0 {
            return Err(wait);
        }
        for (key, _) in keys {
            map.entry(key).or_default().push_back(now);
        }
        Ok(())
    }

    /// The attempt started at `at` succeeded: the account's failures are cleared and the
    /// address's count loses this attempt (its earlier failures stay).
    pub fn succeeded(&self, username: &str, ip: IpAddr, at: i64) {
        let mut map = self.map();
        map.remove(&account(username));
        if let Some(q) = map.get_mut(&address(ip))
            && let Some(i) = q.iter().rposition(|&t| t == at)
        {
            q.remove(i);
        }
    }
}

fn prune(q: &mut VecDeque<i64>, now: i64) {
    while q.front().is_some_and(|&t| t + WINDOW_SECS <= now) {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_per_account_and_address() {
        let t = LoginThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in 0..ACCOUNT_FAILURES as i64 {
            assert_eq!(t.attempt("alice", a, 1000 + i), Ok(()));
        }
        // The account is locked from any address, until its oldest failure leaves the window;
        // refused attempts do not count.
        assert_eq!(t.attempt("alice", b, 1010), Err(1000 + WINDOW_SECS - 1010));
        assert_eq!(t.attempt("alice", b, 1011), Err(1000 + WINDOW_SECS - 1011));
        assert_eq!(t.attempt("bob", a, 1010), Ok(()));
        t.succeeded("bob", a, 1010);
        assert_eq!(t.attempt("alice", b, 1000 + WINDOW_SECS), Ok(()));
        assert_eq!(t.attempt("alice", b, 1000 + WINDOW_SECS), Err(1));
        // Success clears the account.
        t.succeeded("alice", b, 1000 + WINDOW_SECS);
        assert_eq!(t.attempt("alice", b, 1000 + WINDOW_SECS), Ok(()));
        // Spraying: many names from one address, then the address is locked for every name.
        for i in 0..ADDRESS_FAILURES - ACCOUNT_FAILURES {
            assert_eq!(t.attempt(&format!("user{i}"), a, 1020), Ok(()));
        }
        assert!(t.attempt("carol", a, 1021).is_err());
        assert_eq!(t.attempt("carol", b, 1021), Ok(()));
        // IPv6 is counted per /64.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::ffff".parse().unwrap();
        for i in 0..ADDRESS_FAILURES {
            assert_eq!(t.attempt(&format!("v6user{i}"), v6, 2000), Ok(()));
        }
        assert!(t.attempt("dave", v6b, 2001).is_err());
    }
}
