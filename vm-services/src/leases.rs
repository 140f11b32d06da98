//! Leases: which worker may do a piece of shared work right now.
//!
//! Several scheduler workers (and portal instances) share one store. Before a scheduled backup
//! slot or an interrupted plan is worked on, the worker takes a lease on it: a row naming the
//! holder and when the lease expires. Only one worker holds a lease at a time; the holder renews
//! it while it works; a worker that dies stops renewing, and once the lease has expired another
//! worker may take it over. A lease marked done can never be taken again (a backup slot that was
//! served stays served).
//!
//! Cron work on one VM (its scheduled backup, its snapshot expiry sweep, a restore or reinstall
//! plan) is also serialized across workers by a per-VM lease ([`LeaseKey::vm`]): PVE allows one
//! locking operation per VM at a time (`backup`, `snapshot-delete`, ...), so two workers acting
//! on the same VM at once would make one of them fail with "VM is locked". That lease is taken
//! before the backup slot's or plan's lease, held for the whole operation and then released,
//! never marked done ([`vm_lease_then`] says what a worker does when another one holds it).
//!
//! The decision is [`decide`], a pure function of the stored lease, the asking worker and
//! `now`; the in-memory store applies it under a mutex, the SQL stores express the same
//! decision as one conditional upsert so that it is atomic across processes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;
use crate::ids::VmId;
use crate::reinstall::PlanId;

/// A worker's name (a cron process, a portal instance): 1 to 64 letters, digits, `.`, `_`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkerId(String);

impl WorkerId {
    /// A fresh random name, `worker-<pid>-<8 hex digits>`, for a worker that was not named.
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        Self(format!(
            "worker-{}-{:08x}",
            std::process::id(),
            rng.random::<u32>()
        ))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for WorkerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "worker name",
                s,
                "must be 1 to 64 letters, digits, `.`, `_` or `-`",
            ))
        }
    }
}

impl TryFrom<String> for WorkerId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<WorkerId> for String {
    fn from(w: WorkerId) -> String {
        w.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a lease is on: `vm:<vmid>`, `backup:<vmid>:<slot unix time>` or `plan:<plan id>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LeaseKey(String);

impl LeaseKey {
    /// The scheduled backup of `vmid` due at `slot` (one lease per VM and scheduled time).
    pub fn backup_slot(vmid: VmId, slot: OffsetDateTime) -> Self {
        Self(format!("backup:{vmid}:{}", slot.unix_timestamp()))
    }

    /// Cron work on `vmid` (a scheduled backup, a snapshot sweep, a plan): one worker at a time.
    /// Only ever released, never completed.
    pub fn vm(vmid: VmId) -> Self {
        Self(format!("vm:{vmid}"))
    }

    /// Running (or resuming) a stored plan.
    pub fn plan(id: &PlanId) -> Self {
        Self(format!("plan:{id}"))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LeaseKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "lease key",
                s,
                "must be 1 to 128 letters, digits, `.`, `_`, `-` or `:`",
            ))
        }
    }
}

impl TryFrom<String> for LeaseKey {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<LeaseKey> for String {
    fn from(k: LeaseKey) -> String {
        k.0
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What it is on.
    pub key: LeaseKey,
    /// Who holds (or last held) it.
    pub holder: WorkerId,
    /// When it expires unless renewed (millisecond precision, as stored).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// The work is finished: nobody may take it again.
    pub done: bool,
}

/// What [`decide`] answers to a worker asking for a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it: granted.
    Free,
    /// The asking worker holds it already: granted, the expiry moves on.
    Renew,
    /// The holder stopped renewing and the lease expired: granted, taken over.
    TakeOver {
        /// The worker that held it.
        from: WorkerId,
    },
    /// Another worker holds it: refused.
    Held {
        /// The holder.
        by: WorkerId,
        /// Until when.
        until: OffsetDateTime,
    },
    /// The work is finished: refused.
    Done,
}

impl Claim {
    /// Whether the asking worker gets the lease.
    pub fn granted(&self) -> bool {
        matches!(self, Self::Free | Self::Renew | Self::TakeOver { .. })
    }
}

/// Milliseconds since the epoch: the precision leases are stored with.
pub fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant of `unix_millis` milliseconds (clamped to the representable range).
pub fn from_unix_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Whether a lease has expired at `now` (expiry included).
pub fn is_expired(lease: &Lease, now: OffsetDateTime) -> bool {
    unix_millis(now) >= unix_millis(lease.expires)
}

/// May `me` take the lease `existing` (the stored row, if any) at `now`?
pub fn decide(existing: Option<&Lease>, me: &WorkerId, now: OffsetDateTime) -> Claim {
    match existing {
        None => Claim::Free,
        Some(l) if l.done => Claim::Done,
        Some(l) if &l.holder == me => Claim::Renew,
        Some(l) if is_expired(l, now) => Claim::TakeOver {
            from: l.holder.clone(),
        },
        Some(l) => Claim::Held {
            by: l.holder.clone(),
            until: l.expires,
        },
    }
}

/// The lease `me` holds after a granted claim at `now` for `ttl`.
pub fn granted_lease(
    key: &LeaseKey,
    me: &WorkerId,
    now: OffsetDateTime,
    ttl: std::time::Duration,
) -> Lease {
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    Lease {
        key: key.clone(),
        holder: me.clone(),
        expires: from_unix_millis(unix_millis(now).saturating_add(ttl_ms)),
        done: false,
    }
}

/// What a worker does when it wants the per-VM lease ([`LeaseKey::vm`]) for some work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmLeaseThen {
    /// The VM lease is granted: do the work.
    Go,
    /// Another worker holds the VM for a short piece of work whose end is worth waiting for
    /// (a snapshot sweep): ask again shortly.
    Wait {
        /// The holder.
        by: WorkerId,
    },
    /// Leave the VM for a later round.
    Skip {
        /// Why, for the report.
        reason: String,
    },
}

/// What `me` does at `now` about the per-VM lease `vm` (the stored row, if any) for work that
/// also needs the lease `work` (the scheduled slot's row; `None` for work without its own lease,
/// like a snapshot sweep).
///
/// Work with its own lease waits for a VM held by another worker only while its own lease is
/// still free for it: then the holder is doing other, short, work on the VM (a sweep), and the
/// slot's backup would otherwise slip to a later round. When the holder (or anyone) has claimed
/// or finished the slot too, there is nothing to wait for. Work without its own lease never
/// waits: a sweep skips the VM and the next round retries it.
pub fn vm_lease_then(
    vm: Option<&Lease>,
    work: Option<Option<&Lease>>,
    me: &WorkerId,
    now: OffsetDateTime,
) -> VmLeaseThen {
    let holder = match decide(vm, me, now) {
        c if c.granted() => return VmLeaseThen::Go,
        Claim::Held { by, .. } => by,
        // A VM lease is never completed; a row marked done is treated as held by nobody
        // we could wait for.
        _ => {
            return VmLeaseThen::Skip {
                reason: "the vm's lease is marked done".into(),
            };
        }
    };
    match work {
        Some(slot) => match decide(slot, me, now) {
            c if c.granted() => VmLeaseThen::Wait { by: holder },
            Claim::Done => VmLeaseThen::Skip {
                reason: "this slot's backup is done".into(),
            },
            Claim::Held { by, .. } => VmLeaseThen::Skip {
                reason: format!("claimed by worker `{by}`"),
            },
            _ => VmLeaseThen::Skip {
                reason: format!("vm worked on by worker `{holder}`"),
            },
        },
        None => VmLeaseThen::Skip {
            reason: format!("vm worked on by worker `{holder}`"),
        },
    }
}

/// Which unfinished plans `me` may resume at `now`: those whose lease (keyed by
/// [`LeaseKey::plan`] in `leases`) is missing, ours or expired, and not done. Finished plans
/// are never chosen. Taking the lease afterwards is what makes it exclusive; this only saves
/// asking for leases that are plainly held.
pub fn resumable<'a>(
    plans: &'a [crate::reinstall::StoredPlan],
    leases: &std::collections::HashMap<LeaseKey, Lease>,
    me: &WorkerId,
    now: OffsetDateTime,
) -> Vec<&'a PlanId> {
    plans
        .iter()
        .filter(|p| !p.is_finished())
        .filter(|p| decide(leases.get(&LeaseKey::plan(&p.id)), me, now).granted())
        .map(|p| &p.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(s: &str) -> WorkerId {
        s.parse().unwrap()
    }

    fn at(ms: i64) -> OffsetDateTime {
        from_unix_millis(ms)
    }

    #[test]
    fn names_validate() {
        assert!("cron-a.host_1".parse::<WorkerId>().is_ok());
        assert!("".parse::<WorkerId>().is_err());
        assert!("a b".parse::<WorkerId>().is_err());
        assert!("x".repeat(65).parse::<WorkerId>().is_err());
        assert!("plan:reinstall-100-1".parse::<LeaseKey>().is_ok());
        assert!("plan/1".parse::<LeaseKey>().is_err());
        let k = LeaseKey::backup_slot(VmId::new(100).unwrap(), at(1_775_793_600_000));
        assert_eq!(k.as_str(), "backup:100:1775793600");
        assert_eq!(k.as_str().parse::<LeaseKey>().unwrap(), k);
    }

    #[test]
    fn the_decisions() {
        let a = w("a");
        let b = w("b");
        let key: LeaseKey = "plan:x".parse().unwrap();
        let held = Lease {
            key,
            holder: a.clone(),
            expires: at(10_000),
            done: false,
        };
        assert_eq!(decide(None, &b, at(0)), Claim::Free);
        assert_eq!(decide(Some(&held), &a, at(20_000)), Claim::Renew);
        assert_eq!(
            decide(Some(&held), &b, at(9_999)),
            Claim::Held {
                by: a.clone(),
                until: at(10_000)
            }
        );
        assert_eq!(
            decide(Some(&held), &b, at(10_000)),
            Claim::TakeOver { from: a.clone() }
        );
        let done = Lease { done: true, ..held };
        assert_eq!(decide(Some(&done), &a, at(0)), Claim::Done);
        assert_eq!(decide(Some(&done), &b, at(99_999)), Claim::Done);
    }

    fn arb_lease() -> impl Strategy<Value = Lease> {
        (0usize..3, 0i64..100, any::<bool>()).prop_map(|(h, e, done)| Lease {
            key: "k".parse().unwrap(),
            holder: w(["a", "b", "c"][h]),
            expires: at(e * 1000),
            done,
        })
    }

    fn stored_plan(n: u32, done: usize) -> crate::reinstall::StoredPlan {
        use crate::reconcile::{RestorePlan, RestoreStep};
        crate::reinstall::StoredPlan {
            id: format!("restore-100-{n}").parse().unwrap(),
            vm: crate::service::VmRef::new("pve1".parse().unwrap(), VmId::new(100).unwrap()),
            plan: crate::reinstall::OperationPlan::Restore(RestorePlan {
                archive: "backup-store:backup/vzdump-qemu-100-1.vma.zst"
                    .parse()
                    .unwrap(),
                steps: vec![RestoreStep::Stop, RestoreStep::Notify],
            }),
            done,
        }
    }

    #[test]
    fn vm_lease_decisions() {
        let (a, b) = (w("a"), w("b"));
        let vm = Lease {
            key: LeaseKey::vm(VmId::new(100).unwrap()),
            holder: a.clone(),
            expires: at(10_000),
            done: false,
        };
        assert_eq!(vm.key.as_str(), "vm:100");
        let slot = Lease {
            key: LeaseKey::backup_slot(VmId::new(100).unwrap(), at(0)),
            ..vm.clone()
        };
        // Free, ours, expired: go.
        assert_eq!(vm_lease_then(None, None, &b, at(0)), VmLeaseThen::Go);
        assert_eq!(vm_lease_then(Some(&vm), None, &a, at(0)), VmLeaseThen::Go);
        assert_eq!(
            vm_lease_then(Some(&vm), Some(Some(&slot)), &b, at(10_000)),
            VmLeaseThen::Go
        );
        // A sweep never waits.
        assert_eq!(
            vm_lease_then(Some(&vm), None, &b, at(0)),
            VmLeaseThen::Skip {
                reason: "vm worked on by worker `a`".into()
            }
        );
        // A backup waits for a sweep (its slot is unclaimed) ...
        assert_eq!(
            vm_lease_then(Some(&vm), Some(None), &b, at(0)),
            VmLeaseThen::Wait { by: a.clone() }
        );
        // ... but not for the worker making this very backup, nor for a finished slot.
        assert_eq!(
            vm_lease_then(Some(&vm), Some(Some(&slot)), &b, at(0)),
            VmLeaseThen::Skip {
                reason: "claimed by worker `a`".into()
            }
        );
        let done = Lease {
            done: true,
            ..slot.clone()
        };
        assert_eq!(
            vm_lease_then(Some(&vm), Some(Some(&done)), &b, at(0)),
            VmLeaseThen::Skip {
                reason: "this slot's backup is done".into()
            }
        );
    }

    /// One step of a worker in the model below.
    #[derive(Debug, Clone)]
    enum Step {
        /// Ask for the lease (take it, renew it).
        Acquire,
        /// Give it back (only the holder's release counts, as in the stores).
        Release,
    }

    proptest! {
        /// `Go` exactly when `decide` grants the VM lease; otherwise a sweep (no own lease)
        /// always skips, and work with its own lease waits exactly when that lease is still
        /// granted to it.
        #[test]
        fn vm_lease_then_matches_decide(
            vm in proptest::option::of(arb_lease()),
            slot in proptest::option::of(proptest::option::of(arb_lease())),
            me in 0usize..3,
            now in 0i64..100,
        ) {
            let me = w(["a", "b", "c"][me]);
            let now = at(now * 1000);
            let then = vm_lease_then(vm.as_ref(), slot.as_ref().map(Option::as_ref), &me, now);
            let granted = decide(vm.as_ref(), &me, now).granted();
            prop_assert_eq!(then == VmLeaseThen::Go, granted);
            if !granted {
                let waits = matches!(then, VmLeaseThen::Wait { .. });
                let expected = match &slot {
                    None => false,
                    Some(s) => !vm.as_ref().is_some_and(|l| l.done)
                        && decide(s.as_ref(), &me, now).granted(),
                };
                prop_assert_eq!(waits, expected);
                if let VmLeaseThen::Wait { by } = then {
                    prop_assert_ne!(by, me);
                }
            }
        }

        /// Workers taking and releasing one VM lease in any order at non-decreasing times
        /// (the store applying `decide`): while a holder's lease has not expired, nobody else
        /// is granted it, so two workers never act on one VM at once.
        #[test]
        fn vm_lease_is_exclusive_until_expiry(
            steps in proptest::collection::vec((0usize..3, any::<bool>(), 0i64..20), 1..40),
        ) {
            let key = LeaseKey::vm(VmId::new(100).unwrap());
            let ttl = std::time::Duration::from_secs(30);
            let mut stored: Option<Lease> = None;
            let mut now_ms = 0i64;
            for (who, acquire, advance) in steps {
                now_ms += advance * 1000;
                let now = at(now_ms);
                let me = w(["a", "b", "c"][who]);
                let step = if acquire { Step::Acquire } else { Step::Release };
                match step {
                    Step::Acquire => {
                        let live_other = stored
                            .as_ref()
                            .is_some_and(|l| l.holder != me && !is_expired(l, now));
                        let granted = decide(stored.as_ref(), &me, now).granted();
                        prop_assert_eq!(granted, !live_other);
                        if granted {
                            stored = Some(granted_lease(&key, &me, now, ttl));
                        }
                    }
                    Step::Release => {
                        if stored.as_ref().is_some_and(|l| l.holder == me) {
                            stored = None;
                        }
                    }
                }
            }
        }

        /// A plan is resumable exactly when it is unfinished and `decide` grants its lease.
        #[test]
        fn resumable_is_decide_per_plan(
            rows in proptest::collection::vec((0usize..3, proptest::option::of(arb_lease())), 0..8),
            me in 0usize..3,
            now in 0i64..100,
        ) {
            let me = w(["a", "b", "c"][me]);
            let now = at(now * 1000);
            let plans: Vec<_> = rows.iter().enumerate().map(|(i, (done, _))| stored_plan(i as u32, (*done).min(2))).collect();
            let mut map = std::collections::HashMap::new();
            for (p, (_, l)) in plans.iter().zip(&rows) {
                if let Some(l) = l {
                    map.insert(LeaseKey::plan(&p.id), Lease { key: LeaseKey::plan(&p.id), ..l.clone() });
                }
            }
            let chosen = resumable(&plans, &map, &me, now);
            for p in &plans {
                let expected = !p.is_finished() && decide(map.get(&LeaseKey::plan(&p.id)), &me, now).granted();
                prop_assert_eq!(chosen.contains(&&p.id), expected);
            }
        }

        /// Granted exactly when the lease is missing, or not done and (mine or expired); a
        /// granted lease is held by the asker and outlives `now`.
        #[test]
        fn decide_matches_the_rule(existing in proptest::option::of(arb_lease()), me in 0usize..3, now in 0i64..100, ttl in 1u64..50) {
            let me = w(["a", "b", "c"][me]);
            let now = at(now * 1000);
            let c = decide(existing.as_ref(), &me, now);
            let expected = match &existing {
                None => true,
                Some(l) => !l.done && (l.holder == me || l.expires <= now),
            };
            prop_assert_eq!(c.granted(), expected);
            if c.granted() {
                let l = granted_lease(&"k".parse().unwrap(), &me, now, std::time::Duration::from_secs(ttl));
                prop_assert!(!is_expired(&l, now));
                prop_assert_eq!(decide(Some(&l), &me, now), Claim::Renew);
            }
        }

        /// Of any number of workers asking in turn at one instant, exactly one is granted a
        /// lease nobody held (the in-memory store's behaviour, applied sequentially).
        #[test]
        fn one_winner_per_instant(workers in 1usize..6, now in 0i64..100) {
            let now = at(now * 1000);
            let mut stored: Option<Lease> = None;
            let mut winners = 0;
            for i in 0..workers {
                let me = w(&format!("w{i}"));
                if decide(stored.as_ref(), &me, now).granted() {
                    winners += 1;
                    stored = Some(granted_lease(&"k".parse().unwrap(), &me, now, std::time::Duration::from_secs(30)));
                }
            }
            prop_assert_eq!(winners, 1);
        }
    }
}
