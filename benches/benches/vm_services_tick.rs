//! The scheduled backup tick: plan one tick for 100,000 services (target < 100 ms).
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pve_vps_services::backups::{BackupItem, DaySchedule, ScheduledVm, WeeklySchedule, plan_tick};
use pve_vps_services::ids::{NodeName, StorageId, VmId, VolumeId};
use pve_vps_services::service::VmRef;
use pve_vps_services::time::{OffsetDateTime, UtcOffset};

const SERVICES: u32 = 100_000;

fn world() -> (
    Vec<ScheduledVm>,
    HashMap<VmId, Vec<BackupItem>>,
    OffsetDateTime,
) {
    // 2026-04-12 06:00 UTC, a Sunday.
    let now = OffsetDateTime::from_unix_timestamp(1_775_973_600).unwrap();
    let storage: StorageId = "backup-store".parse().unwrap();
    let node: NodeName = "pve1".parse().unwrap();
    let mut vms = Vec::with_capacity(SERVICES as usize);
    let mut backups = HashMap::with_capacity(SERVICES as usize);
    for i in 0..SERVICES {
        let vmid = VmId::new(100 + i).unwrap();
        let time = format!("{:02}:{:02}", i % 24, i % 60).parse().unwrap();
        let day = DaySchedule {
            enabled: i % 7 != 0,
            time,
        };
        vms.push(ScheduledVm {
            vm: VmRef::new(node.clone(), vmid),
            storage: storage.clone(),
            quota: 1 + i % 5,
            schedule: WeeklySchedule::new([day; 7]),
        });
        let items = (0..3)
            .map(|k| BackupItem {
                volid: VolumeId::new(
                    storage.clone(),
                    &format!("backup/vzdump-qemu-{vmid}-{k}.vma.zst"),
                )
                .unwrap(),
                size: 1 << 30,
                ctime: now.unix_timestamp() - (k + 1) * 86_400 - i64::from(i % 3) * 3600,
                notes: None,
                protected: k == 0 && i % 11 == 0,
                vmid: Some(vmid),
            })
            .collect();
        backups.insert(vmid, items);
    }
    (vms, backups, now)
}

fn bench(c: &mut Criterion) {
    let (vms, backups, now) = world();
    let offset = UtcOffset::from_hms(2, 0, 0).unwrap();
    let plan = plan_tick(&vms, &backups, now, offset);
    assert!(!plan.actions.is_empty());
    c.bench_function("plan_tick_100k_services", |b| {
        b.iter(|| plan_tick(black_box(&vms), black_box(&backups), black_box(now), offset))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
