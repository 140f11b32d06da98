//! Backups: the weekly schedule, the quota, restore validation and the scheduled tick.
//!
//! The tick is a pure planner: given the schedules, the backups that exist per VMID, `now`
//! and the operator's UTC offset, it says what to delete and what to create. Running it again
//! on the result of its own plan plans nothing more.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use time::{OffsetDateTime, UtcOffset, Weekday};

use crate::error::{Error, QuotaKind};
use crate::ids::{StorageId, VmId, VolumeId};
use crate::permissions::{Feature, VmState, require};
use crate::product::Product;
use crate::quota::QuotaCounter;
use crate::service::{Service, VmRef};

pub use crate::stores::ScheduleStore;

/// A time of day `HH:MM` (24 h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
}

impl TimeOfDay {
    /// Validates `0..=23` and `0..=59`.
    pub fn new(hour: u8, minute: u8) -> Result<Self, Error> {
        if hour < 24 && minute < 60 {
            Ok(Self { hour, minute })
        } else {
            Err(Error::InvalidScheduleTime {
                value: format!("{hour:02}:{minute:02}"),
            })
        }
    }

    /// Hour.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// Minute.
    pub fn minute(self) -> u8 {
        self.minute
    }

    fn minutes(self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }
}

impl FromStr for TimeOfDay {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidScheduleTime {
            value: s.chars().filter(|c| !c.is_control()).collect(),
        };
        let b = s.as_bytes();
        if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
            return Err(bad());
        }
        let h = (b[0] - b'0') * 10 + (b[1] - b'0');
        let m = (b[3] - b'0') * 10 + (b[4] - b'0');
        Self::new(h, m).map_err(|_| bad())
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}
crate::ids::serde_via_str!(TimeOfDay);

/// One day of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySchedule {
    /// Whether a backup runs that day.
    pub enabled: bool,
    /// When.
    pub time: TimeOfDay,
}

/// A weekly schedule: Sunday first, as the client area shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklySchedule {
    days: [DaySchedule; 7],
}

impl Default for WeeklySchedule {
    fn default() -> Self {
        let off = DaySchedule {
            enabled: false,
            time: TimeOfDay { hour: 3, minute: 0 },
        };
        Self { days: [off; 7] }
    }
}

impl WeeklySchedule {
    /// From seven days, Sunday first.
    pub fn new(days: [DaySchedule; 7]) -> Self {
        Self { days }
    }

    /// From the "Save Schedule" form: seven `(enabled, "HH:MM")`, Sunday first.
    pub fn from_form(days: [(bool, &str); 7]) -> Result<Self, Error> {
        let mut out = Self::default();
        for (slot, (enabled, time)) in out.days.iter_mut().zip(days) {
            *slot = DaySchedule {
                enabled,
                time: time.parse()?,
            };
        }
        Ok(out)
    }

    /// The days, Sunday first.
    pub fn days(&self) -> &[DaySchedule; 7] {
        &self.days
    }

    /// The schedule of a weekday.
    pub fn day(&self, weekday: Weekday) -> DaySchedule {
        self.days[usize::from(weekday.number_days_from_sunday())]
    }

    /// Whether any day is enabled.
    pub fn is_configured(&self) -> bool {
        self.days.iter().any(|d| d.enabled)
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Int(i64),
        Str(String),
    }
    Ok(match Option::<Loose>::deserialize(d)? {
        None => false,
        Some(Loose::Bool(b)) => b,
        Some(Loose::Int(n)) => n != 0,
        Some(Loose::Str(s)) => matches!(s.as_str(), "1" | "true"),
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Int(i64),
        Float(f64),
        Str(String),
    }
    match Loose::deserialize(d)? {
        Loose::Int(n) => Ok(n),
        Loose::Float(f) => Ok(f as i64),
        Loose::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

fn lenient_vmid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VmId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        N(u32),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::N(n)) => VmId::new(n).ok(),
        Some(N::S(s)) => s.parse().ok(),
    })
}

/// One backup in a storage content listing (`content=backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupItem {
    /// The archive's volume id.
    pub volid: VolumeId,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub size: i64,
    /// Creation time, unix seconds.
    #[serde(deserialize_with = "lenient_i64")]
    pub ctime: i64,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Protected archives are never rotated.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub protected: bool,
    /// The guest it belongs to.
    #[serde(default, deserialize_with = "lenient_vmid")]
    pub vmid: Option<VmId>,
}

impl BackupItem {
    /// The VMID: the listed one, or the one in a `vzdump-qemu-<vmid>-...` file name.
    pub fn owner(&self) -> Option<VmId> {
        self.vmid.or_else(|| {
            let f = self.volid.file_name();
            let rest = f.strip_prefix("vzdump-qemu-")?;
            rest.split('-').next()?.parse().ok()
        })
    }

    fn belongs(&self, vmid: VmId, storage: &StorageId) -> bool {
        self.volid.storage() == storage && self.owner() == Some(vmid)
    }
}

/// The backup quota counter for a VM: its archives on the product's backup storage.
pub fn quota(product: &Product, service: &Service, listing: &[BackupItem]) -> QuotaCounter {
    QuotaCounter {
        kind: QuotaKind::Backups,
        used: listing
            .iter()
            .filter(|b| b.belongs(service.vmid(), &product.backups.storage))
            .count() as u32,
        limit: product.backups.quota,
    }
}

/// What to send to `POST /nodes/{node}/vzdump`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBackup {
    /// The VM.
    pub vm: VmRef,
    /// `storage`.
    pub storage: StorageId,
    /// `notes-template`.
    pub notes: String,
}

/// Decides a "Backup now" click: permission, lock, quota (a manual backup never rotates).
pub fn plan_manual(
    product: &Product,
    service: &Service,
    state: &VmState,
    listing: &[BackupItem],
    notes: &str,
) -> Result<CreateBackup, Error> {
    require(product, Feature::Backups, state)?;
    quota(product, service, listing).check_room()?;
    if notes.chars().any(char::is_control) || notes.len() > 1024 {
        return Err(Error::invalid(
            "backup notes",
            notes,
            "contains control characters or is too long",
        ));
    }
    Ok(CreateBackup {
        vm: service.vm.clone(),
        storage: product.backups.storage.clone(),
        notes: notes.to_owned(),
    })
}

/// Checks that an archive may be restored onto this service: on the product's backup storage,
/// listed there, and made from this service's VMID.
pub fn validate_restore_archive(
    product: &Product,
    service: &Service,
    listing: &[BackupItem],
    archive: &VolumeId,
) -> Result<(), Error> {
    let refuse = |reason: String| Error::ForeignArchive {
        volid: archive.clone(),
        reason,
    };
    if archive.storage() != &product.backups.storage {
        return Err(refuse(format!(
            "it is on storage `{}`, not the product's `{}`",
            archive.storage(),
            product.backups.storage
        )));
    }
    let item = listing
        .iter()
        .find(|b| &b.volid == archive)
        .ok_or_else(|| refuse("it is not in the backup storage listing".into()))?;
    match item.owner() {
        Some(v) if v == service.vmid() => Ok(()),
        Some(v) => Err(refuse(format!("it belongs to vmid `{v}`"))),
        None => Err(refuse("its vmid is unknown".into())),
    }
}

/// Checks a Remove click: permission, lock, and the archive is this VM's on the product's
/// storage. A protected archive is refused.
pub fn check_remove(
    product: &Product,
    service: &Service,
    state: &VmState,
    listing: &[BackupItem],
    archive: &VolumeId,
) -> Result<(), Error> {
    require(product, Feature::Backups, state)?;
    validate_restore_archive(product, service, listing, archive)?;
    if listing.iter().any(|b| &b.volid == archive && b.protected) {
        return Err(Error::ProtectedArchive {
            volid: archive.clone(),
        });
    }
    Ok(())
}

/// A VM the scheduled tick looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledVm {
    /// The VM.
    pub vm: VmRef,
    /// The product's backup storage.
    pub storage: StorageId,
    /// The product's backup quota.
    pub quota: u32,
    /// The customer's schedule.
    pub schedule: WeeklySchedule,
}

/// One thing the tick wants done, in order per VM (deletes before the create).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TickAction {
    /// Delete an archive to free a slot (`DELETE .../storage/{s}/content/{volid}`).
    Delete {
        /// The VM it belongs to.
        vm: VmRef,
        /// The archive.
        volid: VolumeId,
    },
    /// Create today's backup.
    Create(CreateBackup),
}

/// Why a due backup cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocked {
    /// The product's quota is 0.
    ZeroQuota,
    /// The quota is full and every archive is protected.
    AllProtected,
}

/// The tick's plan.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TickPlan {
    /// What to do, grouped per VM.
    pub actions: Vec<TickAction>,
    /// Due VMs that cannot be backed up, with the reason (for the operator's log).
    pub blocked: Vec<(VmRef, Blocked)>,
}

/// Notes of scheduled backups.
pub const SCHEDULED_NOTES: &str = "scheduled backup";

/// Plans one scheduled tick. For each VM whose weekday (in `offset`) is enabled and whose time
/// of day has passed: if no archive of it on its storage was created today, delete the oldest
/// unprotected archives of that VMID on that storage until one slot is free, then create one.
/// `backups` maps a VMID to its storage listing (items of other VMIDs or storages are ignored).
pub fn plan_tick(
    vms: &[ScheduledVm],
    backups: &HashMap<VmId, Vec<BackupItem>>,
    now: OffsetDateTime,
    offset: UtcOffset,
) -> TickPlan {
    let local = now.to_offset(offset);
    let weekday = local.weekday();
    let minutes_now = u32::from(local.hour()) * 60 + u32::from(local.minute());
    let day_start = local.replace_time(time::Time::MIDNIGHT).unix_timestamp();
    let day_end = day_start + 86_400;
    let empty = Vec::new();
    let mut plan = TickPlan::default();
    let mut mine: Vec<&BackupItem> = Vec::new();
    for s in vms {
        let day = s.schedule.day(weekday);
        if !day.enabled || day.time.minutes() > minutes_now {
            continue;
        }
        let vmid = s.vm.vmid();
        mine.clear();
        mine.extend(
            backups
                .get(&vmid)
                .unwrap_or(&empty)
                .iter()
                .filter(|b| b.belongs(vmid, &s.storage)),
        );
        if mine.iter().any(|b| (day_start..day_end).contains(&b.ctime)) {
            continue;
        }
        if s.quota == 0 {
            plan.blocked.push((s.vm.clone(), Blocked::ZeroQuota));
            continue;
        }
        let excess = (mine.len() + 1).saturating_sub(s.quota as usize);
        if excess > 0 {
            mine.retain(|b| !b.protected);
            if mine.len() < excess {
                plan.blocked.push((s.vm.clone(), Blocked::AllProtected));
                continue;
            }
            mine.sort_by(|a, b| a.ctime.cmp(&b.ctime).then_with(|| a.volid.cmp(&b.volid)));
            for b in &mine[..excess] {
                plan.actions.push(TickAction::Delete {
                    vm: s.vm.clone(),
                    volid: b.volid.clone(),
                });
            }
        }
        plan.actions.push(TickAction::Create(CreateBackup {
            vm: s.vm.clone(),
            storage: s.storage.clone(),
            notes: SCHEDULED_NOTES.to_owned(),
        }));
    }
    plan
}

/// The scheduled instant of today's backup when it is due at `now`: the weekday (in `offset`)
/// is enabled and its time has passed. This is the slot a scheduled backup is claimed by
/// ([`crate::leases::LeaseKey::backup_slot`]), so that each one happens once across workers.
pub fn due_slot(
    schedule: &WeeklySchedule,
    now: OffsetDateTime,
    offset: UtcOffset,
) -> Option<OffsetDateTime> {
    let local = now.to_offset(offset);
    let day = schedule.day(local.weekday());
    let minutes_now = u32::from(local.hour()) * 60 + u32::from(local.minute());
    if !day.enabled || day.time.minutes() > minutes_now {
        return None;
    }
    let t = time::Time::from_hms(day.time.hour(), day.time.minute(), 0).ok()?;
    Some(local.replace_time(t))
}

/// The archive name vzdump gives a backup made at `now` (what the simulation adds).
pub fn archive_name(storage: &StorageId, vmid: VmId, now: OffsetDateTime) -> VolumeId {
    let n = format!(
        "backup/vzdump-qemu-{vmid}-{:04}_{:02}_{:02}-{:02}_{:02}_{:02}.vma.zst",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    VolumeId::new(storage.clone(), &n)
        .unwrap_or_else(|_| unreachable!("generated volume names are valid"))
}

/// What the listings look like after a plan ran at `now` (pure simulation, for tests and
/// simulators).
pub fn apply_tick(
    backups: &mut HashMap<VmId, Vec<BackupItem>>,
    plan: &TickPlan,
    now: OffsetDateTime,
) {
    for a in &plan.actions {
        match a {
            TickAction::Delete { vm, volid } => {
                if let Some(list) = backups.get_mut(&vm.vmid()) {
                    list.retain(|b| &b.volid != volid);
                }
            }
            TickAction::Create(c) => backups.entry(c.vm.vmid()).or_default().push(BackupItem {
                volid: archive_name(&c.storage, c.vm.vmid(), now),
                size: 0,
                ctime: now.unix_timestamp(),
                notes: Some(c.notes.clone()),
                protected: false,
                vmid: Some(c.vm.vmid()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;
    use proptest::prelude::*;

    fn vm(id: u32) -> VmRef {
        VmRef::new("pve1".parse().unwrap(), VmId::new(id).unwrap())
    }

    fn item(storage: &str, vmid: u32, ctime: i64, protected: bool) -> BackupItem {
        BackupItem {
            volid: format!("{storage}:backup/vzdump-qemu-{vmid}-{ctime}.vma.zst")
                .parse()
                .unwrap(),
            size: 1,
            ctime,
            notes: None,
            protected,
            vmid: Some(VmId::new(vmid).unwrap()),
        }
    }

    #[test]
    fn times_and_schedule() {
        assert_eq!("07:00".parse::<TimeOfDay>().unwrap().to_string(), "07:00");
        for bad in ["7:00", "24:00", "12:60", "12-00", "", "12:000", "ab:cd"] {
            let e = bad.parse::<TimeOfDay>().unwrap_err();
            assert!(e.is_invalid_input(), "{bad}");
        }
        let s = WeeklySchedule::from_form([
            (true, "07:00"),
            (true, "03:00"),
            (true, "03:00"),
            (true, "03:00"),
            (true, "03:00"),
            (true, "03:00"),
            (false, "03:00"),
        ])
        .unwrap();
        assert_eq!(s.day(Weekday::Sunday).time.to_string(), "07:00");
        assert!(!s.day(Weekday::Saturday).enabled);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<WeeklySchedule>(&json).unwrap(), s);
    }

    #[test]
    fn listing_is_decoded_leniently() {
        let l: Vec<BackupItem> = serde_json::from_str(
            r#"[{"volid":"backup-store:backup/vzdump-qemu-100-2026_04_10-03_59_27.vma.zst","size":"322122547200","ctime":1775793567,"protected":1,"vmid":"100","format":"vma.zst"},
                {"volid":"backup-store:backup/vzdump-qemu-100-2026_04_09-03_59_27.vma.zst","ctime":"1775707167"}]"#,
        )
        .unwrap();
        assert!(l[0].protected);
        assert_eq!(l[1].owner(), Some(VmId::new(100).unwrap()));
    }

    #[test]
    fn manual_and_restore_checks() {
        let p = fixtures::product();
        let s = fixtures::service();
        let idle = VmState {
            lock: None,
            running: true,
        };
        let list: Vec<BackupItem> = (0..10)
            .map(|i| item("backup-store", 100, i, false))
            .collect();
        assert_eq!(quota(&p, &s, &list).to_string(), "10/10");
        assert!(
            plan_manual(&p, &s, &idle, &list, "")
                .unwrap_err()
                .is_quota()
        );
        assert!(plan_manual(&p, &s, &idle, &list[..3], "before upgrade").is_ok());

        assert!(check_remove(&p, &s, &idle, &list, &list[0].volid).is_ok());
        let prot = vec![item("backup-store", 100, 1, true)];
        let e = check_remove(&p, &s, &idle, &prot, &prot[0].volid).unwrap_err();
        assert!(matches!(e, Error::ProtectedArchive { .. }));
        let foreign = item("backup-store", 101, 5, false);
        let other_storage = item("local", 100, 5, false);
        let all = [list.clone(), vec![foreign.clone(), other_storage.clone()]].concat();
        assert!(validate_restore_archive(&p, &s, &all, &list[0].volid).is_ok());
        for bad in [&foreign.volid, &other_storage.volid] {
            let e = validate_restore_archive(&p, &s, &all, bad).unwrap_err();
            assert!(
                matches!(e, Error::ForeignArchive { .. }) && e.is_invalid_input(),
                "{e}"
            );
        }
    }

    #[test]
    fn tick_rotates_the_oldest_unprotected() {
        // 2026-04-12 is a Sunday; 08:00 UTC+2 is 06:00 UTC.
        let now = OffsetDateTime::from_unix_timestamp(1_775_973_600).unwrap();
        let offset = UtcOffset::from_hms(2, 0, 0).unwrap();
        assert_eq!(now.to_offset(offset).weekday(), Weekday::Sunday);
        let mut sched = WeeklySchedule::default();
        sched.days[0] = DaySchedule {
            enabled: true,
            time: "07:00".parse().unwrap(),
        };
        let vms = vec![ScheduledVm {
            vm: vm(100),
            storage: "backup-store".parse().unwrap(),
            quota: 2,
            schedule: sched,
        }];
        let day = 86_400;
        let t = now.unix_timestamp();
        let mut backups = HashMap::from([(
            VmId::new(100).unwrap(),
            vec![
                item("backup-store", 100, t - 3 * day, true),
                item("backup-store", 100, t - 2 * day, false),
                item("backup-store", 100, t - day, false),
                item("local", 100, t - 9 * day, false),
            ],
        )]);
        let plan = plan_tick(&vms, &backups, now, offset);
        assert_eq!(plan.actions.len(), 3, "{plan:?}");
        let deleted: Vec<i64> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                TickAction::Delete { volid, .. } => backups[&VmId::new(100).unwrap()]
                    .iter()
                    .find(|b| &b.volid == volid)
                    .map(|b| b.ctime),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec![t - 2 * day, t - day]);
        apply_tick(&mut backups, &plan, now);
        assert_eq!(plan_tick(&vms, &backups, now, offset), TickPlan::default());

        // Before 07:00 local nothing is due.
        let early = now - time::Duration::hours(2);
        assert!(
            plan_tick(&vms, &HashMap::new(), early, offset)
                .actions
                .is_empty()
        );
    }

    fn arb_schedule() -> impl Strategy<Value = WeeklySchedule> {
        proptest::collection::vec((any::<bool>(), 0u8..24, 0u8..60), 7).prop_map(|v| {
            let mut s = WeeklySchedule::default();
            for (i, (e, h, m)) in v.into_iter().enumerate() {
                s.days[i] = DaySchedule {
                    enabled: e,
                    time: TimeOfDay::new(h, m).unwrap(),
                };
            }
            s
        })
    }

    prop_compose! {
        fn arb_world()(n in 1usize..6)(
            scheds in proptest::collection::vec(arb_schedule(), n),
            quotas in proptest::collection::vec(0u32..5, n),
            items in proptest::collection::vec((0usize..n, 0usize..n, any::<bool>(), -900_000i64..90_000, any::<bool>()), 0..40),
            now in 1_700_000_000i64..1_800_000_000,
            off in -12i8..=12,
        ) -> (Vec<ScheduledVm>, HashMap<VmId, Vec<BackupItem>>, OffsetDateTime, UtcOffset) {
            let storages = ["backup-store", "other-store"];
            let n = scheds.len();
            let vms: Vec<ScheduledVm> = (0..n).map(|i| ScheduledVm {
                vm: vm(100 + i as u32), storage: storages[0].parse().unwrap(), quota: quotas[i], schedule: scheds[i] }).collect();
            let mut map: HashMap<VmId, Vec<BackupItem>> = HashMap::new();
            for (k, (key, owner, st, dt, prot)) in items.into_iter().enumerate() {
                // Some items are listed under another VMID's key to check they are never touched.
                let mut it = item(storages[usize::from(st)], 100 + owner as u32, now + dt, prot);
                it.volid = format!("{}:backup/vzdump-qemu-{}-{k}.vma.zst", storages[usize::from(st)], 100 + owner).parse().unwrap();
                map.entry(VmId::new(100 + key as u32).unwrap()).or_default().push(it);
            }
            (vms, map, OffsetDateTime::from_unix_timestamp(now).unwrap(), UtcOffset::from_hms(off, 0, 0).unwrap())
        }
    }

    proptest! {
        /// A slot is due exactly when `plan_tick` would consider the VM (weekday enabled, time
        /// passed): it lies on `now`'s local day, at the scheduled time, not after `now`.
        #[test]
        fn due_slot_is_todays_scheduled_time(
            schedule in arb_schedule(),
            now in 1_700_000_000i64..1_800_000_000,
            off_h in -12i8..=14,
        ) {
            let now = OffsetDateTime::from_unix_timestamp(now).unwrap();
            let offset = UtcOffset::from_hms(off_h, 0, 0).unwrap();
            let local = now.to_offset(offset);
            let day = schedule.day(local.weekday());
            let due = day.enabled
                && u32::from(day.time.hour()) * 60 + u32::from(day.time.minute())
                    <= u32::from(local.hour()) * 60 + u32::from(local.minute());
            match due_slot(&schedule, now, offset) {
                None => prop_assert!(!due),
                Some(slot) => {
                    prop_assert!(due);
                    prop_assert!(slot <= now);
                    let s = slot.to_offset(offset);
                    prop_assert_eq!(s.date(), local.date());
                    prop_assert_eq!((s.hour(), s.minute(), s.second()), (day.time.hour(), day.time.minute(), 0));
                    // The slot is stable for the rest of the day: later ticks claim the same one.
                    let later = (local.replace_time(time::Time::from_hms(23, 59, 59).unwrap())).to_offset(offset);
                    prop_assert_eq!(due_slot(&schedule, later, offset), Some(slot));
                }
            }
        }

        #[test]
        fn rotation_is_exact((vms, backups, now, offset) in arb_world()) {
            let plan = plan_tick(&vms, &backups, now, offset);
            for s in &vms {
                let vmid = s.vm.vmid();
                let mine: Vec<&BackupItem> = backups.get(&vmid).into_iter().flatten().filter(|b| b.belongs(vmid, &s.storage)).collect();
                let deleted: Vec<&VolumeId> = plan.actions.iter().filter_map(|a| match a {
                    TickAction::Delete { vm, volid } if vm == &s.vm => Some(volid), _ => None }).collect();
                let created = plan.actions.iter().any(|a| matches!(a, TickAction::Create(c) if c.vm == s.vm));
                // Only this VMID's archives on this storage, never protected ones.
                for v in &deleted {
                    let b = mine.iter().find(|b| &&b.volid == v);
                    prop_assert!(b.is_some(), "deleted an archive of another vm or storage");
                    prop_assert!(!b.unwrap().protected);
                }
                // Only when the quota is full, and exactly the oldest unprotected ones.
                if !deleted.is_empty() {
                    prop_assert!(created);
                    prop_assert!(mine.len() >= s.quota as usize);
                    prop_assert_eq!(deleted.len(), mine.len() + 1 - s.quota as usize);
                    let mut unprot: Vec<&&BackupItem> = mine.iter().filter(|b| !b.protected).collect();
                    unprot.sort_by(|a, b| a.ctime.cmp(&b.ctime).then_with(|| a.volid.cmp(&b.volid)));
                    let oldest: Vec<&VolumeId> = unprot[..deleted.len()].iter().map(|b| &b.volid).collect();
                    prop_assert_eq!(&deleted, &oldest);
                }
                if created {
                    prop_assert!(mine.len() - deleted.len() < s.quota as usize);
                }
            }
            let mut after = backups.clone();
            apply_tick(&mut after, &plan, now);
            prop_assert!(plan_tick(&vms, &after, now, offset).actions.is_empty());
        }
    }
}
