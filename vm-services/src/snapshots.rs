//! Snapshots: names PVE accepts, the quota, remaining lifetimes and the expiry sweep.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, QuotaKind};
use crate::ids::serde_via_str;
use crate::permissions::{Feature, VmState, require};
use crate::product::{LifetimeDays, Product};
use crate::quota::QuotaCounter;

/// A snapshot name PVE accepts (`pve-configid`: `^[a-zA-Z][a-zA-Z0-9_-]*$`, at most 40
/// characters, not `current` nor `pending`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(String);

impl SnapshotName {
    /// The longest name PVE accepts.
    pub const MAX_LEN: usize = 40;

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SnapshotName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                "snapshot name",
                s,
                "must be 1 to 40 characters",
            ));
        }
        if !b[0].is_ascii_alphabetic()
            || !b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        {
            return Err(Error::invalid(
                "snapshot name",
                s,
                "must start with a letter and contain only letters, digits, `_` and `-`",
            ));
        }
        if s == "current" || s == "pending" {
            return Err(Error::invalid("snapshot name", s, "is reserved by pve"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(SnapshotName);

/// One item of PVE's snapshot listing (`GET .../snapshot`), which includes the `current`
/// pseudo-entry (no `snaptime`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// The name as PVE lists it.
    pub name: String,
    /// Creation time (unix seconds); absent for `current`.
    pub snaptime: Option<i64>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Whether RAM was saved.
    #[serde(default)]
    pub vmstate: bool,
}

impl SnapshotEntry {
    /// Whether this is a real snapshot (not the `current` pseudo-entry).
    pub fn is_real(&self) -> bool {
        self.name != "current"
    }
}

/// The snapshot quota counter for a listing.
pub fn quota(product: &Product, listing: &[SnapshotEntry]) -> QuotaCounter {
    QuotaCounter {
        kind: QuotaKind::Snapshots,
        used: listing.iter().filter(|e| e.is_real()).count() as u32,
        limit: product.snapshots.quota,
    }
}

/// Generates a name from `now` (`snap_20260410_035839`), unique against `listing`.
pub fn generate_name(
    listing: &[SnapshotEntry],
    now: OffsetDateTime,
) -> Result<SnapshotName, Error> {
    let base = format!(
        "snap_{:04}{:02}{:02}_{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let taken = |n: &str| listing.iter().any(|e| e.name == n);
    if !taken(&base) {
        return base.parse();
    }
    for i in 2..1000 {
        let n = format!("{base}_{i}");
        if !taken(&n) {
            return n.parse();
        }
    }
    Err(Error::SnapshotNameExhausted)
}

/// What to send to `POST .../snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSnapshot {
    /// `snapname`.
    pub name: SnapshotName,
    /// `description`.
    pub description: String,
    /// `vmstate`: save RAM when the VM runs.
    pub vmstate: bool,
}

/// Decides a "Take Snapshot" click: permission, lock, quota, a fresh name.
pub fn plan_create(
    product: &Product,
    state: &VmState,
    listing: &[SnapshotEntry],
    description: &str,
    now: OffsetDateTime,
) -> Result<CreateSnapshot, Error> {
    require(product, Feature::Snapshots, state)?;
    quota(product, listing).check_room()?;
    if description.chars().any(|c| c.is_control() && c != '\n') || description.len() > 4096 {
        return Err(Error::invalid(
            "snapshot description",
            description,
            "contains control characters or is too long",
        ));
    }
    Ok(CreateSnapshot {
        name: generate_name(listing, now)?,
        description: description.to_owned(),
        vmstate: state.running,
    })
}

/// Time left before the sweep removes a snapshot taken at `snaptime` (zero when past).
pub fn remaining_lifetime(snaptime: i64, lifetime: LifetimeDays, now: OffsetDateTime) -> Duration {
    let left =
        Duration::seconds(snaptime) + lifetime.duration() - Duration::seconds(now.unix_timestamp());
    left.max(Duration::ZERO)
}

/// The countdown the list shows (`0 days 23:59:54`).
pub fn format_remaining(left: Duration) -> String {
    crate::overview::format_duration(left.whole_seconds().max(0) as u64)
}

/// Checks a Rollback or Remove click: permission, lock, and that the snapshot exists (the
/// `current` pseudo-entry is not a snapshot).
pub fn check_existing(
    product: &Product,
    state: &VmState,
    listing: &[SnapshotEntry],
    name: &str,
) -> Result<SnapshotName, Error> {
    require(product, Feature::Snapshots, state)?;
    let n: SnapshotName = name.parse()?;
    if !listing.iter().any(|e| e.is_real() && e.name == n.as_str()) {
        return Err(Error::invalid("snapshot name", name, "no such snapshot"));
    }
    Ok(n)
}

/// Whether a snapshot taken at `snaptime` has outlived `lifetime` at `now`.
fn expired(snaptime: i64, lifetime: LifetimeDays, now: OffsetDateTime) -> bool {
    snaptime.saturating_add(lifetime.duration().whole_seconds()) <= now.unix_timestamp()
}

/// The expiry sweep: the snapshots whose lifetime has passed, oldest first. The `current`
/// pseudo-entry, entries without `snaptime` and names PVE would refuse are never planned.
pub fn plan_expiry(
    listing: &[SnapshotEntry],
    lifetime: LifetimeDays,
    now: OffsetDateTime,
) -> Vec<SnapshotName> {
    let mut due: Vec<(i64, SnapshotName)> = listing
        .iter()
        .filter(|e| e.is_real())
        .filter_map(|e| Some((e.snaptime?, e.name.parse().ok()?)))
        .filter(|(t, _)| expired(*t, lifetime, now))
        .collect();
    due.sort();
    due.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::LockKind;
    use crate::service::fixtures;
    use proptest::prelude::*;

    fn at(ts: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(ts).unwrap()
    }

    fn entry(name: &str, t: Option<i64>) -> SnapshotEntry {
        SnapshotEntry {
            name: name.into(),
            snaptime: t,
            description: String::new(),
            vmstate: false,
        }
    }

    #[test]
    fn names() {
        for bad in ["", "current", "pending", "1abc", "a b", &"a".repeat(41)] {
            assert!(bad.parse::<SnapshotName>().is_err(), "{bad}");
        }
        assert!("a".repeat(40).parse::<SnapshotName>().is_ok());
        let now = at(1_775_793_519); // 2026-04-10 03:58:39 UTC
        let n = generate_name(&[], now).unwrap();
        assert_eq!(n.as_str(), "snap_20260410_035839");
        let n2 = generate_name(&[entry("snap_20260410_035839", Some(1))], now).unwrap();
        assert_eq!(n2.as_str(), "snap_20260410_035839_2");
    }

    #[test]
    fn create_checks_quota_lock_and_vmstate() {
        let p = fixtures::product();
        let run = VmState {
            lock: None,
            running: true,
        };
        let now = at(1_775_793_519);
        let list = vec![
            entry("current", None),
            entry("a", Some(1)),
            entry("b", Some(2)),
        ];
        let c = plan_create(&p, &run, &list, "before upgrade", now).unwrap();
        assert!(c.vmstate);
        assert_eq!(quota(&p, &list).to_string(), "2/3");
        let full = [list.clone(), vec![entry("c", Some(3))]].concat();
        let e = plan_create(&p, &run, &full, "", now).unwrap_err();
        assert!(e.is_quota());
        let locked = VmState {
            lock: Some(LockKind::Backup),
            running: true,
        };
        assert!(
            plan_create(&p, &locked, &list, "", now)
                .unwrap_err()
                .is_locked()
        );
        let stopped = VmState {
            lock: None,
            running: false,
        };
        assert!(!plan_create(&p, &stopped, &list, "", now).unwrap().vmstate);
    }

    #[test]
    fn lifetime_and_sweep() {
        let one = LifetimeDays::new(1).unwrap();
        let now = at(100_000);
        assert_eq!(
            remaining_lifetime(100_000 - 6, one, now),
            Duration::seconds(86_394)
        );
        assert_eq!(remaining_lifetime(0, one, now), Duration::ZERO);
        let list = vec![
            entry("current", None),
            entry("old", Some(100_000 - 86_400)),
            entry("young", Some(100_000 - 86_399)),
        ];
        assert_eq!(plan_expiry(&list, one, now), vec!["old".parse().unwrap()]);
        assert_eq!(
            format_remaining(remaining_lifetime(100_000 - 6, one, now)),
            "0 days 23:59:54"
        );
        let p = fixtures::product();
        let idle = VmState::default();
        assert!(check_existing(&p, &idle, &list, "old").is_ok());
        assert!(
            check_existing(&p, &idle, &list, "current")
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            check_existing(&p, &idle, &list, "nope")
                .unwrap_err()
                .is_invalid_input()
        );
    }

    fn arb_listing() -> impl Strategy<Value = Vec<SnapshotEntry>> {
        proptest::collection::vec(("[a-z][a-z0-9_]{0,8}", 0i64..2_000_000), 0..12).prop_map(|v| {
            let mut out = vec![entry("current", None)];
            for (i, (n, t)) in v.into_iter().enumerate() {
                out.push(entry(&format!("{n}{i}"), Some(t)));
            }
            out
        })
    }

    proptest! {
        #[test]
        fn generated_names_are_valid_and_unique(ts in 0i64..4_000_000_000, taken in 0usize..5) {
            let now = at(ts);
            let mut listing = vec![entry("current", None)];
            for _ in 0..taken {
                let n = generate_name(&listing, now).unwrap();
                listing.push(entry(n.as_str(), Some(ts)));
            }
            let n = generate_name(&listing, now).unwrap();
            prop_assert!(n.as_str().parse::<SnapshotName>().is_ok());
            prop_assert!(!listing.iter().any(|e| e.name == n.as_str()));
        }

        #[test]
        fn sweep_is_exact_and_idempotent(listing in arb_listing(), days in 1u8..=10, now in 0i64..3_000_000) {
            let lifetime = LifetimeDays::new(days).unwrap();
            let now = at(now);
            let plan = plan_expiry(&listing, lifetime, now);
            for n in &plan {
                let e = listing.iter().find(|e| e.name == n.as_str()).unwrap();
                prop_assert!(remaining_lifetime(e.snaptime.unwrap(), lifetime, now) == Duration::ZERO);
                prop_assert!(n.as_str() != "current");
            }
            for e in listing.iter().filter(|e| e.is_real()) {
                let t = e.snaptime.unwrap();
                let due = now.unix_timestamp() - t >= i64::from(days) * 86_400;
                prop_assert_eq!(due, plan.iter().any(|n| n.as_str() == e.name));
            }
            let after: Vec<SnapshotEntry> = listing.iter().filter(|e| !plan.iter().any(|n| n.as_str() == e.name)).cloned().collect();
            prop_assert!(plan_expiry(&after, lifetime, now).is_empty());
            prop_assert!(after.iter().any(|e| e.name == "current"));
        }
    }
}
