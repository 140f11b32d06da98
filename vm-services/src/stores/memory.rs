//! The in-memory stores (tests, single-process demos).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    LeaseStore, OutcomeStore, PlanStore, ScheduleStore, check_progress, check_within, lock,
    unknown_plan,
};
use crate::backups::WeeklySchedule;
use crate::error::Error;
use crate::ids::VmId;
use crate::leases::{self, Lease, LeaseKey, WorkerId};
use crate::outcomes::OperationOutcome;
use crate::reinstall::{PlanId, StoredPlan};

/// Schedules in memory.
#[derive(Debug, Default)]
pub struct MemoryScheduleStore(Mutex<BTreeMap<VmId, WeeklySchedule>>);

impl MemoryScheduleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ScheduleStore for MemoryScheduleStore {
    async fn get(&self, vmid: VmId) -> Result<Option<WeeklySchedule>, Error> {
        Ok(lock(&self.0).get(&vmid).copied())
    }
    async fn put(&self, vmid: VmId, schedule: &WeeklySchedule) -> Result<(), Error> {
        lock(&self.0).insert(vmid, *schedule);
        Ok(())
    }
    async fn delete(&self, vmid: VmId) -> Result<bool, Error> {
        Ok(lock(&self.0).remove(&vmid).is_some())
    }
    async fn list(&self) -> Result<Vec<(VmId, WeeklySchedule)>, Error> {
        Ok(lock(&self.0).iter().map(|(k, v)| (*k, *v)).collect())
    }
}

/// Plans in memory.
#[derive(Debug, Default)]
pub struct MemoryPlanStore(Mutex<BTreeMap<PlanId, StoredPlan>>);

impl MemoryPlanStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PlanStore for MemoryPlanStore {
    async fn save(&self, plan: &StoredPlan) -> Result<(), Error> {
        check_within(plan, plan.done)?;
        lock(&self.0).insert(plan.id.clone(), plan.clone());
        Ok(())
    }
    async fn load(&self, id: &PlanId) -> Result<Option<StoredPlan>, Error> {
        Ok(lock(&self.0).get(id).cloned())
    }
    async fn record_progress(&self, id: &PlanId, done: usize) -> Result<(), Error> {
        let mut m = lock(&self.0);
        let p = m.get_mut(id).ok_or_else(|| unknown_plan(id))?;
        check_progress(p, done)?;
        p.done = done;
        Ok(())
    }
    async fn unfinished(&self) -> Result<Vec<StoredPlan>, Error> {
        Ok(lock(&self.0)
            .values()
            .filter(|p| !p.is_finished())
            .cloned()
            .collect())
    }
    async fn remove(&self, id: &PlanId) -> Result<bool, Error> {
        Ok(lock(&self.0).remove(id).is_some())
    }
}

/// Leases in memory: [`leases::decide`] under a mutex (one process only).
#[derive(Debug, Default)]
pub struct MemoryLeaseStore(Mutex<BTreeMap<LeaseKey, Lease>>);

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn acquire(
        &self,
        key: &LeaseKey,
        holder: &WorkerId,
        now: OffsetDateTime,
        ttl: std::time::Duration,
    ) -> Result<bool, Error> {
        let mut m = lock(&self.0);
        if !leases::decide(m.get(key), holder, now).granted() {
            return Ok(false);
        }
        m.insert(key.clone(), leases::granted_lease(key, holder, now, ttl));
        Ok(true)
    }
    async fn complete(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        Ok(match lock(&self.0).get_mut(key) {
            Some(l) if &l.holder == holder && !l.done => {
                l.done = true;
                true
            }
            _ => false,
        })
    }
    async fn release(&self, key: &LeaseKey, holder: &WorkerId) -> Result<bool, Error> {
        let mut m = lock(&self.0);
        match m.get(key) {
            Some(l) if &l.holder == holder && !l.done => {
                m.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn lease(&self, key: &LeaseKey) -> Result<Option<Lease>, Error> {
        Ok(lock(&self.0).get(key).cloned())
    }
    async fn prune(&self, before: OffsetDateTime) -> Result<usize, Error> {
        let mut m = lock(&self.0);
        let n = m.len();
        m.retain(|_, l| l.expires >= before);
        Ok(n - m.len())
    }
}

/// Outcomes in memory.
#[derive(Debug, Default)]
pub struct MemoryOutcomeStore(Mutex<BTreeMap<PlanId, OperationOutcome>>);

impl MemoryOutcomeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl OutcomeStore for MemoryOutcomeStore {
    async fn record(&self, outcome: &OperationOutcome) -> Result<(), Error> {
        let mut o = outcome.clone();
        o.at = o.at.replace_nanosecond(0).unwrap_or(o.at);
        lock(&self.0).insert(o.plan.clone(), o);
        Ok(())
    }
    async fn list(&self, vmid: VmId) -> Result<Vec<OperationOutcome>, Error> {
        let mut v: Vec<OperationOutcome> = lock(&self.0)
            .values()
            .filter(|o| o.vm.vmid() == vmid)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.plan.cmp(&a.plan)));
        Ok(v)
    }
}
