//! Long operations against pve-sim: the overview hub's request budget, backups (manual,
//! scheduled, removal), restore with reconciliation and reinstall, with injected task
//! failures and HTTP 5xx, and resume.

mod common;

use std::sync::Arc;

use common::{env, env_with, run, svc100, svc102_bare, svc104};
use pve_vps_services::backups::WeeklySchedule;
use pve_vps_services::firewall::IpsetEntry;
use pve_vps_services::ids::VmId;
use pve_vps_services::notify::Notification;
use pve_vps_services::permissions::{Access, Feature, Unavailable};
use pve_vps_services::pve::{LockKind, VmConfig};
use pve_vps_services::reconcile::{self, Observed};
use pve_vps_services::service::{Service, VmRef};
use pve_vps_services::shell::{LiveUpdate, OverviewUpdate, Resumed};
use pve_vps_services::stores::PlanStore;
use pve_vps_services::{ClientArea, OverviewHub};
use pve_vps_sim::RequestMatch;

fn generic(vmid: u32, node: &str) -> Service {
    let mut s = svc104();
    s.vm = VmRef::new(node.parse().unwrap(), vmid.try_into().unwrap());
    s.mac = pve_vps_sim::mac_for(vmid, 0).parse().unwrap();
    s
}

#[test]
fn overview_hub_costs_one_request_per_tick_whatever_the_watchers() {
    run(90, async {
        let e = env().await;
        // 100 VMs: the six demo guests and 94 generated ones (spread over pve1..pve3).
        e.sim.generate_vms(1000, 94);
        let mut services = vec![svc104(), svc100()];
        for (id, node) in [(101, "pve1"), (102, "pve2"), (103, "pve2"), (105, "pve3")] {
            services.push(generic(id, node));
        }
        let rows = e.area.client().cluster_resources(None).await.unwrap();
        for id in 1000..1094u32 {
            let node = rows
                .iter()
                .find(|r| r.vmid == Some(u64::from(id)))
                .and_then(|r| r.node.clone())
                .unwrap();
            services.push(generic(id, &node));
        }
        assert_eq!(services.len(), 100);
        let mut figures = Vec::new();
        for watchers in [1usize, 100, 10_000] {
            let hub = OverviewHub::new(e.area.clone());
            let vms = watchers.min(100);
            let rx: Vec<_> = (0..watchers)
                .map(|i| hub.watch(&services[i % vms]))
                .collect();
            let before = e.sim.request_count();
            let first = hub.tick().await;
            let after_first = e.sim.request_count();
            let steady = hub.tick().await;
            let after_steady = e.sim.request_count();
            let third = hub.tick().await;
            let after_third = e.sim.request_count();
            assert_eq!(first.watchers, watchers);
            assert_eq!(first.requests as u64, after_first - before);
            assert_eq!(
                first.requests,
                1 + vms,
                "first tick: one listing + one config per vm"
            );
            assert_eq!(after_steady - after_first, 1, "steady tick: one request");
            assert_eq!(after_third - after_steady, 1);
            assert_eq!(steady.requests, 1);
            assert_eq!(third.requests, 1);
            assert!(
                matches!(&*rx[0].borrow(), OverviewUpdate::Ready(_)),
                "{:?}",
                *rx[0].borrow()
            );
            figures.push((watchers, vms, first.requests, steady.requests));
        }
        // Concurrent ticks are coalesced into one round of requests.
        let hub = OverviewHub::new(e.area.clone());
        let _w: Vec<_> = services.iter().map(|s| hub.watch(s)).collect();
        hub.tick().await;
        let before = e.sim.request_count();
        let (a, b, c) = tokio::join!(hub.tick(), hub.tick(), hub.tick());
        assert_eq!(e.sim.request_count() - before, 1, "{a:?} {b:?} {c:?}");
        drop(_w);
        // A config change (new lock) refetches only that VM's config, and the live watchers'
        // updates carry the lock and the dimmed buttons from the same row.
        let hub = OverviewHub::new(e.area.clone());
        let _w: Vec<_> = services.iter().map(|s| hub.watch(s)).collect();
        let live: Vec<_> = (0..1000)
            .map(|i| hub.watch_live(&services[i % 100]))
            .collect();
        let before = e.sim.request_count();
        assert_eq!(hub.tick().await.requests, 101);
        assert_eq!(e.sim.request_count() - before, 101);
        let lock_of = |rx: &pve_vps_services::shell::LiveWatch| match &*rx.borrow() {
            LiveUpdate::Ready(v) => (v.state.lock.clone(), v.state.running, v.access.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(lock_of(&live[0]).0, None);
        let before = e.sim.request_count();
        assert_eq!(hub.tick().await.requests, 1);
        assert_eq!(e.sim.request_count() - before, 1);
        e.sim.set_lock(104, Some("backup")).unwrap();
        let before = e.sim.request_count();
        assert_eq!(hub.tick().await.requests, 2);
        assert_eq!(
            e.sim.request_count() - before,
            2,
            "one listing + 104's config"
        );
        for rx in live.iter().step_by(100) {
            let (lock, running, access) = lock_of(rx);
            assert_eq!(lock, Some(LockKind::Backup));
            assert!(running);
            let snap = access
                .iter()
                .find(|(f, _)| *f == Feature::Snapshots)
                .unwrap();
            assert_eq!(
                snap.1,
                Access::Unavailable {
                    reason: Unavailable::Locked(LockKind::Backup)
                }
            );
        }
        assert_eq!(lock_of(&live[1]).0, None, "the other VMs stay unlocked");
        let before = e.sim.request_count();
        assert_eq!(hub.tick().await.requests, 1);
        assert_eq!(
            e.sim.request_count() - before,
            1,
            "steady again: one request"
        );
        // On demand: a tick is due only once per interval, or after an invalidation.
        assert_eq!(hub.tick_if_due().await.requests, 0);
        hub.invalidate(&services[0]);
        let before = e.sim.request_count();
        assert_eq!(hub.tick_if_due().await.requests, 2);
        assert_eq!(e.sim.request_count() - before, 2);
        assert_eq!(hub.tick_if_due().await.requests, 0);
        // A failed listing reaches every watcher and is not reused.
        e.sim
            .fail_requests(RequestMatch::path("/cluster/resources"), 500, 1000);
        hub.tick().await;
        assert!(matches!(&*live[0].borrow(), LiveUpdate::Failed(_)));
        e.sim.clear_faults();
        assert!(hub.tick_if_due().await.requests >= 1, "tried again at once");
        assert_eq!(lock_of(&live[0]).0, Some(LockKind::Backup));
        assert_eq!(hub.tick_if_due().await.requests, 0);
        e.sim.set_lock(104, None).unwrap();
        drop(live);
        // On-demand callers arriving together with new VMs: none is left pending.
        let fresh = OverviewHub::with_interval(e.area.clone(), std::time::Duration::from_secs(2));
        assert_eq!(fresh.interval(), std::time::Duration::from_secs(2));
        let mut set = tokio::task::JoinSet::new();
        for s in &services {
            let (hub, s) = (fresh.clone(), s.clone());
            set.spawn(async move {
                let rx = hub.watch_live(&s);
                hub.tick_if_due().await;
                let ready = matches!(&*rx.borrow(), LiveUpdate::Ready(_));
                ready
            });
        }
        let mut ready = 0;
        while let Some(r) = set.join_next().await {
            ready += usize::from(r.unwrap());
        }
        assert_eq!(ready, 100, "every caller got its VM's live view");
        // A VM watched while the listing is fresh costs its config only.
        let fresh = OverviewHub::with_interval(e.area.clone(), std::time::Duration::from_secs(60));
        let _a = fresh.watch_live(&services[0]);
        assert_eq!(fresh.tick_if_due().await.requests, 2);
        let b = fresh.watch_live(&services[1]);
        let before = e.sim.request_count();
        assert_eq!(
            fresh.tick_if_due().await.requests,
            1,
            "its config, no listing"
        );
        assert_eq!(e.sim.request_count() - before, 1);
        assert!(matches!(&*b.borrow(), LiveUpdate::Ready(_)));
        assert_eq!(fresh.tick_if_due().await.requests, 0);
        // Watchers that went away are forgotten.
        drop(_w);
        assert_eq!(hub.tick().await.requests, 0);
        for (w, v, f, s) in figures {
            println!(
                "overview hub: {w} watchers over {v} vms -> first tick {f} requests, then {s} per tick"
            );
        }
    });
}

#[test]
fn manual_backup_list_quota_remove_and_refusals() {
    run(60, async {
        // Backups take 1.5 s here so the test sees one running.
        let cfg = pve_vps_sim::SimConfig::for_tests().task_durations(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(1500),
        );
        let e = common::env_cfg(cfg, |b| b).await;
        let s = svc104();
        let l = e.area.backups(&s).await.unwrap();
        assert_eq!(l.quota.to_string(), "1/3");
        assert!(l.backups[0].protected);
        let t = e.area.backup_now(&s, "before change").await.unwrap();
        // Progress the UI polls: running, with the percentage vzdump prints.
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let mid = e.area.task_progress(&s, &t).await.unwrap();
        assert!(mid.running && mid.ok.is_none(), "{mid:?}");
        assert!(mid.percent.is_some_and(|p| p > 0.0 && p < 100.0), "{mid:?}");
        // While the backup runs, everything else is refused with the reason.
        assert_eq!(e.sim.vm_lock(104).as_deref(), Some("backup"));
        assert_eq!(
            e.area.access(&s, Feature::Reinstall).await.unwrap(),
            Access::Unavailable {
                reason: Unavailable::Locked(LockKind::Backup)
            }
        );
        for err in [
            e.area.stop(&s).await.unwrap_err(),
            e.area.reset_password(&s).await.unwrap_err(),
            e.area
                .create_snapshot(&s, "")
                .await
                .map(|_| ())
                .unwrap_err(),
            e.area
                .reinstall(&s, VmId::new(9000).unwrap(), "REINSTALL")
                .await
                .map(|_| ())
                .unwrap_err(),
            e.area
                .backup_now(&s, "again")
                .await
                .map(|_| ())
                .unwrap_err(),
        ] {
            assert!(err.is_locked(), "{err}");
            assert!(err.to_string().contains("backup"), "{err}");
        }
        let p = e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(p.ok, Some(true), "{p:?}");
        assert_eq!(p.percent, Some(100.0), "{p:?}");
        assert!(p.last_lines.iter().any(|l| l.contains("INFO")), "{p:?}");
        // The console is refused during a backup too; the overview is not.
        e.sim.set_lock(104, Some("backup")).unwrap();
        assert!(e.area.console_link(&s).await.unwrap_err().is_locked());
        assert!(e.area.overview(&s).await.is_ok());
        e.sim.set_lock(104, None).unwrap();
        let l = e.area.backups(&s).await.unwrap();
        assert_eq!(l.quota.to_string(), "2/3");
        assert_eq!(l.backups[0].notes, "before change");
        assert!(l.backups[0].size > 0);
        // Remove: never protected, never another VM's.
        let protected = l
            .backups
            .iter()
            .find(|b| b.protected)
            .unwrap()
            .volid
            .clone();
        assert!(
            e.area
                .remove_backup(&s, &protected)
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        let foreign: pve_vps_services::ids::VolumeId = e.sim.backup_volids(100)[0].parse().unwrap();
        let err = e.area.remove_backup(&s, &foreign).await.unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("100"),
            "{err}"
        );
        // The removal waits for PVE's `imgdel` task: its failure is reported at once, not
        // after polling the listing until the task timeout.
        e.sim
            .fail_next_task("imgdel", "lvremove failed: volume busy");
        let started = std::time::Instant::now();
        let err = e
            .area
            .remove_backup(&s, &l.backups[0].volid)
            .await
            .unwrap_err();
        assert!(err.is_upstream(), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(e.area.backups(&s).await.unwrap().quota.to_string(), "2/3");
        e.area.remove_backup(&s, &l.backups[0].volid).await.unwrap();
        assert_eq!(e.area.backups(&s).await.unwrap().quota.to_string(), "1/3");
        // Quota: a manual backup never rotates.
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let t = e.area.backup_now(&s, "").await.unwrap();
            e.area.wait_task(&s, &t).await.unwrap();
        }
        assert!(e.area.backup_now(&s, "").await.unwrap_err().is_quota());
        // Denied.
        assert!(
            e.area
                .backups(&svc102_bare())
                .await
                .unwrap_err()
                .is_denied()
        );
        assert!(
            e.area
                .backup_now(&svc102_bare(), "")
                .await
                .unwrap_err()
                .is_denied()
        );
    });
}

#[test]
fn scheduled_tick_two_workers_one_backup_then_rotation() {
    run(60, async {
        let e = env().await;
        let s = svc104();
        let every_day = WeeklySchedule::from_form([(true, "00:00"); 7]).unwrap();
        e.area.set_backup_schedule(&s, &every_day).await.unwrap();
        assert_eq!(e.area.backup_schedule(&s).await.unwrap(), every_day);
        // A second worker: its own client area (own in-process guard), same stores.
        let other = ClientArea::builder(common::client(&e.sim), common::catalog())
            .clock(e.clock.clone())
            .plan_store(e.plans.clone())
            .schedule_store(e.area.schedules().clone())
            .build()
            .unwrap();
        let services = vec![s.clone(), svc100()];
        let before = e.sim.backup_volids(104).len();
        let (a, b) = tokio::join!(e.area.backup_tick(&services), other.backup_tick(&services));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(e.sim.backup_volids(104).len(), before + 1, "{a:?} {b:?}");
        assert_eq!(a.created.len() + b.created.len(), 1, "{a:?} {b:?}");
        assert!(
            a.listing_requests <= 1 && b.listing_requests <= 1,
            "per storage, not per vm"
        );
        // Idempotent: today's backup exists.
        let c = e.area.backup_tick(&services).await.unwrap();
        assert!(c.created.is_empty(), "{c:?}");
        assert_eq!(e.sim.backup_volids(104).len(), before + 1);

        // Fill the quota (3), then the next day's tick deletes the oldest unprotected one first.
        // (Archive names have one-second resolution.)
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let t = e.area.backup_now(&s, "manual").await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let full = e.sim.backup_volids(104);
        assert_eq!(full.len(), 3);
        e.clock.advance(pve_vps_services::time::Duration::days(1));
        let d = e.area.backup_tick(&services).await.unwrap();
        assert_eq!(d.deleted.len(), 1, "{d:?}");
        assert_eq!(d.created, vec![s.vm.clone()]);
        let after = e.sim.backup_volids(104);
        assert_eq!(after.len(), 3);
        assert!(after.contains(&full[0]), "the protected (oldest) one stays");
        assert!(!after.contains(&full[1]), "the oldest unprotected one went");
    });
}

async fn observed(e: &common::Env, s: &Service) -> Observed {
    let client = common::client(&e.sim);
    let vm = client
        .node(&s.vm.node().as_str().parse().unwrap())
        .qemu(pve_vps_api::VmId::new(s.vmid().get()).unwrap());
    let cfg = VmConfig::from_map(vm.config().await.unwrap().raw);
    let ipfilter = vm
        .firewall()
        .ipset_entries(&"ipfilter-net0".parse().unwrap())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| IpsetEntry {
            cidr: e.cidr.parse().unwrap_or_else(|_| {
                ipnet::IpNet::from(e.cidr.parse::<std::net::IpAddr>().unwrap())
            }),
            nomatch: e.nomatch,
        })
        .collect();
    Observed {
        config: cfg,
        ipfilter,
        running: e.sim.vm_status(s.vmid().get()) == Some("running"),
    }
}

#[test]
fn restore_reconciles_and_survives_task_failure_and_http_500() {
    run(90, async {
        let e = env().await;
        let s = svc104();
        let archive: pve_vps_services::ids::VolumeId = e.sim.backup_volids(104)[0].parse().unwrap();
        // Refusals: foreign archive, locked, denied.
        let foreign: pve_vps_services::ids::VolumeId = e.sim.backup_volids(100)[0].parse().unwrap();
        let err = e.area.restore(&s, &foreign).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        let elsewhere: pve_vps_services::ids::VolumeId =
            "local:backup/vzdump-qemu-104-2026_01_01-00_00_00.vma.zst"
                .parse()
                .unwrap();
        assert!(
            e.area
                .restore(&s, &elsewhere)
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        e.sim.set_lock(104, Some("snapshot")).unwrap();
        assert!(e.area.restore(&s, &archive).await.unwrap_err().is_locked());
        e.sim.set_lock(104, None).unwrap();

        let (_, t) = e.area.create_snapshot(&s, "pre-restore").await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let backups_before = e.area.backups(&s).await.unwrap();

        // 1. The restore task fails: reported, customer told, nothing lost, retry completes.
        e.sim
            .fail_next_task("qmrestore", "command 'zstd -q -d' failed: exit code 1");
        let err = e.area.restore(&s, &archive).await.unwrap_err();
        assert!(err.is_restore_failed(), "{err}");
        let pve_vps_services::Error::RestoreFailed { plan, .. } = &err else {
            unreachable!()
        };
        let plan: pve_vps_services::reinstall::PlanId = plan.parse().unwrap();
        assert!(
            e.notes.kinds().iter().any(|k| k.contains("failed")),
            "{:?}",
            e.notes.kinds()
        );
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        // Other operations wait for the unfinished restore, and the buttons say why.
        assert!(e.area.reset_password(&s).await.unwrap_err().is_locked());
        assert_eq!(
            e.area.access(&s, Feature::Snapshots).await.unwrap(),
            Access::Unavailable {
                reason: Unavailable::Locked(LockKind::Other("restore".into()))
            }
        );
        let r = e.area.resume(&s, &plan).await.unwrap();
        let Resumed::Restore(outcome) = r else {
            panic!("{r:?}")
        };
        assert!(!outcome.reconciled.is_empty());
        assert!(e.plans.unfinished().await.unwrap().is_empty());

        // Reconciled: package limits, the MAC, ipfilter, running, snapshots gone, notified.
        let cfg = e.sim.vm_config(104).unwrap();
        assert!(cfg["scsi0"].contains("mbps_rd=100"), "{cfg:?}");
        assert!(
            cfg["net0"].contains(&pve_vps_sim::mac_for(104, 0)),
            "{cfg:?}"
        );
        assert_eq!(e.sim.vm_status(104), Some("running"));
        assert!(e.sim.snapshot_names(104).is_empty());
        assert!(e.notes.kinds().iter().any(|k| k.contains("restored")));
        let catalog = common::catalog();
        let product = catalog.get(&s.product).unwrap();
        let again = reconcile::plan(&observed(&e, &s).await, product, &s).unwrap();
        assert!(again.steps.is_empty(), "reconciled: {again:?}");

        // 2. HTTP 500 on the restore request itself: reported, then retried to completion.
        let t = e.area.stop(&s).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        e.sim.fail_requests(
            RequestMatch::method_path("POST", "/nodes/pve3/qemu"),
            500,
            1,
        );
        let err = e.area.restore(&s, &archive).await.unwrap_err();
        assert!(err.is_restore_failed(), "{err}");
        let plan = e.plans.unfinished().await.unwrap()[0].id.clone();
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        // Resumed by another process: a fresh client area over the same plan store.
        let restarted = ClientArea::builder(common::client(&e.sim), common::catalog())
            .clock(e.clock.clone())
            .plan_store(e.plans.clone())
            .schedule_store(e.area.schedules().clone())
            .build()
            .unwrap();
        restarted.resume(&s, &plan).await.unwrap();
        assert_eq!(e.sim.vm_status(104), Some("running"));
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        // A plan of another VM cannot be resumed through this service.
        assert!(
            e.area
                .resume(&svc100(), &plan)
                .await
                .unwrap_err()
                .is_denied()
        );
    });
}

fn rule(json: &str) -> pve_vps_firewall::ApiRule {
    pve_vps_firewall::ApiRule::from_json(json).unwrap()
}

#[test]
fn reinstall_keeps_identity_firewall_and_backups_and_resumes_after_failures() {
    run(120, async {
        let e = env().await;
        let s = svc104();
        let t9000 = VmId::new(9000).unwrap();
        // Refusals before anything is touched.
        let err = e.area.reinstall(&s, t9000, "reinstall").await.unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("REINSTALL"),
            "{err}"
        );
        let err = e
            .area
            .reinstall(&s, VmId::new(9002).unwrap(), "REINSTALL")
            .await
            .unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("9002"),
            "{err}"
        );
        assert!(
            e.area
                .reinstall(&svc102_bare(), t9000, "REINSTALL")
                .await
                .unwrap_err()
                .is_denied()
        );
        e.sim.set_lock(104, Some("migrate")).unwrap();
        assert!(
            e.area
                .reinstall(&s, t9000, "REINSTALL")
                .await
                .unwrap_err()
                .is_locked()
        );
        e.sim.set_lock(104, None).unwrap();

        // The customer's state: firewall rules, a snapshot, backups.
        let ssh = rule(
            r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1,"comment":"ssh"}"#,
        );
        let web = rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"443","enable":1}"#);
        e.area.add_firewall_rule(&s, &ssh, 0, false).await.unwrap();
        e.area.add_firewall_rule(&s, &web, 1, false).await.unwrap();
        e.area.set_firewall_enabled(&s, true, false).await.unwrap();
        let fw_before = e.area.firewall(&s).await.unwrap();
        let (_, t) = e.area.create_snapshot(&s, "").await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let t = e.area.backup_now(&s, "pre-reinstall").await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let backups_before = e.area.backups(&s).await.unwrap();
        assert_eq!(backups_before.backups.len(), 2);

        // 1. The clone task fails after the old VM was destroyed: nothing is lost.
        e.sim
            .fail_next_task("qmclone", "clone failed: storage migration error");
        let err = e.area.reinstall(&s, t9000, "REINSTALL").await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        let unfinished = e.plans.unfinished().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        let plan = unfinished[0].id.clone();
        // 2. Resume, with an HTTP 500 on a config write on the way: stops again, nothing lost.
        e.sim
            .fail_requests(RequestMatch::method_path("PUT", "/qemu/104/config"), 500, 1);
        let err = e.area.resume(&s, &plan).await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        // 3. Resume again: completes.
        let r = e.area.resume(&s, &plan).await.unwrap();
        assert!(
            matches!(r, Resumed::Reinstall(ref o) if o.template == "Debian 12"),
            "{r:?}"
        );
        assert!(e.plans.unfinished().await.unwrap().is_empty());

        // Identity kept, package applied, cloud-init written, running, snapshots gone.
        let cfg = e.sim.vm_config(104).unwrap();
        assert!(
            cfg["net0"].contains(&pve_vps_sim::mac_for(104, 0)),
            "{cfg:?}"
        );
        assert!(
            cfg["net0"].contains("bridge=vmbr0") && cfg["net0"].contains("rate=12.5"),
            "{cfg:?}"
        );
        assert!(cfg["scsi0"].starts_with("local-lvm:vm-104-disk"), "{cfg:?}");
        assert!(
            cfg["scsi0"].contains("size=25G") && cfg["scsi0"].contains("iops_rd=500"),
            "{cfg:?}"
        );
        assert_eq!(cfg["ipconfig0"], "ip=198.51.100.104/24,gw=198.51.100.1");
        assert_eq!(cfg["name"], "vps104.example.com");
        assert_eq!(cfg["ciuser"], "root");
        assert!(cfg.contains_key("cipassword"));
        assert_eq!(e.sim.vm_status(104), Some("running"));
        assert!(e.sim.snapshot_names(104).is_empty());
        // The customer's firewall came back.
        let fw_after = e.area.firewall(&s).await.unwrap();
        assert_eq!(fw_after.rules, fw_before.rules);
        assert!(fw_after.enabled);
        // Backups listed before and after are the same.
        assert_eq!(e.area.backups(&s).await.unwrap(), backups_before);
        // The password went to the notifier, once.
        let n = e.notes.0.lock().unwrap();
        let done: Vec<_> = n
            .iter()
            .filter(|n| matches!(n, Notification::ReinstallDone { .. }))
            .collect();
        assert_eq!(done.len(), 1);
        drop(n);
        let _ = Arc::clone(&e.plans);
    });
}

#[test]
fn reinstall_from_a_stopped_vm_without_faults() {
    run(60, async {
        let e = env_with(|b| b).await;
        let s = svc104();
        let t = e.area.stop(&s).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let before = e.sim.backup_volids(104);
        let o = e
            .area
            .reinstall(&s, VmId::new(9001).unwrap(), "REINSTALL")
            .await
            .unwrap();
        assert_eq!(o.template, "Ubuntu 24.04");
        assert_eq!(e.sim.backup_volids(104), before);
        assert_eq!(e.sim.vm_status(104), Some("running"));
        let stored = e.plans.load(&o.plan).await.unwrap().unwrap();
        assert!(stored.is_finished());
    });
}

/// Sorted (cidr, nomatch, comment) of a VM IP set.
async fn ipset_of(e: &common::Env, name: &str) -> Vec<(String, bool, Option<String>)> {
    let fw = e
        .area
        .client()
        .node(&"pve3".parse().unwrap())
        .qemu(pve_vps_api::VmId::new(104).unwrap())
        .firewall();
    let mut v: Vec<_> = fw
        .ipset_entries(&name.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.cidr, x.nomatch, x.comment))
        .collect();
    v.sort();
    v
}

#[test]
fn reinstall_keeps_vm_ipsets_and_aliases_across_an_interrupted_redeploy() {
    run(120, async {
        let e = env().await;
        let s = svc104();
        let fw = e
            .area
            .client()
            .node(&"pve3".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(104).unwrap())
            .firewall();
        let name = |n: &str| -> pve_vps_api::FirewallName { n.parse().unwrap() };
        fw.create_alias(&name("office"), "192.0.2.10", Some("office NAT"))
            .await
            .unwrap();
        fw.create_ipset(&name("admins"), Some("who may ssh"))
            .await
            .unwrap();
        fw.add_ipset_entry(&name("admins"), "192.0.2.0/24", false, Some("ops"))
            .await
            .unwrap();
        fw.add_ipset_entry(&name("admins"), "192.0.2.99", true, None)
            .await
            .unwrap();
        // An alias entry (the typed call takes addresses only).
        let _: serde_json::Value = e
            .area
            .client()
            .post(
                "/nodes/pve3/qemu/104/firewall/ipset/admins",
                &[("cidr", "guest/office")],
            )
            .await
            .unwrap();
        let ssh = rule(
            r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","source":"+admins","enable":1}"#,
        );
        e.area.add_firewall_rule(&s, &ssh, 0, false).await.unwrap();
        // SSH from the admins only: the default probe address is locked out, on purpose.
        e.area.set_firewall_enabled(&s, true, true).await.unwrap();
        let admins_before = ipset_of(&e, "admins").await;
        assert_eq!(admins_before.len(), 3, "{admins_before:?}");
        let rules_before = e.area.firewall(&s).await.unwrap().rules;

        // The clone fails after the old VM (and its .fw) was destroyed.
        e.sim
            .fail_next_task("qmclone", "clone failed: storage error");
        let t9000 = VmId::new(9000).unwrap();
        let err = e.area.reinstall(&s, t9000, "REINSTALL").await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        assert!(e.sim.vm_config(104).is_none(), "the old VM is gone");
        let unfinished = e.plans.unfinished().await.unwrap();
        assert_eq!(unfinished.len(), 1);
        // The plan store holds them, without the provider's ipfilter set.
        let pve_vps_services::reinstall::OperationPlan::Reinstall(p) = &unfinished[0].plan else {
            panic!("not a reinstall");
        };
        let saved = p.firewall.as_ref().expect("saved before the destroy");
        assert_eq!(
            saved
                .ipsets
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["admins"]
        );
        assert_eq!(saved.aliases.len(), 1);

        // Resume: the sets and aliases come back with the rules.
        e.area.resume(&s, &unfinished[0].id).await.unwrap();
        assert!(e.plans.unfinished().await.unwrap().is_empty());
        let aliases = fw.aliases().await.unwrap();
        assert_eq!(aliases.len(), 1, "{aliases:?}");
        assert_eq!(aliases[0].name, "office");
        assert_eq!(aliases[0].cidr, "192.0.2.10");
        assert_eq!(aliases[0].comment.as_deref(), Some("office NAT"));
        let sets = fw.ipsets().await.unwrap();
        let admins = sets.iter().find(|s| s.name == "admins").expect("admins");
        assert_eq!(admins.comment.as_deref(), Some("who may ssh"));
        assert_eq!(ipset_of(&e, "admins").await, admins_before);
        // ipfilter-net0 is the service's, rebuilt.
        let ipf = ipset_of(&e, "ipfilter-net0").await;
        assert!(
            ipf.iter().any(|(c, _, _)| c.starts_with("198.51.100.104")),
            "{ipf:?}"
        );
        assert_eq!(e.area.firewall(&s).await.unwrap().rules, rules_before);
    });
}

async fn redeploy_progress(e: &common::Env) -> pve_vps_services::reinstall::RedeployProgress {
    let unfinished = e.plans.unfinished().await.unwrap();
    let pve_vps_services::reinstall::OperationPlan::Reinstall(p) = &unfinished[0].plan else {
        panic!("not a reinstall");
    };
    *p.redeploy.clone().expect("recorded")
}

/// A pass-through disk stays on the old VM after its disks are destroyed: the resumed
/// redeploy must still destroy and clone (it decides from the recorded task UPIDs), and a
/// clone whose wait was interrupted is waited for, not cloned again.
#[test]
fn reinstall_redeploy_resumes_from_recorded_tasks_not_disks() {
    run(120, async {
        let e = env().await;
        let s = svc104();
        let t9000 = VmId::new(9000).unwrap();
        let _: serde_json::Value = e
            .area
            .client()
            .put(
                "/nodes/pve3/qemu/104/config",
                &[("scsi5", "/dev/disk/by-id/ata-FAKE_SERIAL_1234")],
            )
            .await
            .unwrap();

        // 1. Destroying the old VM fails: it is still there, with the pass-through disk only.
        e.sim
            .fail_next_task("qmdestroy", "unable to remove vm: storage busy");
        let err = e.area.reinstall(&s, t9000, "REINSTALL").await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        let cfg = e.sim.vm_config(104).expect("old vm kept");
        assert!(
            cfg.contains_key("scsi5") && !cfg.contains_key("scsi0"),
            "{cfg:?}"
        );
        let p = redeploy_progress(&e).await;
        assert!(
            !p.destroyed && p.destroy_task.is_none() && p.clone_task.is_none(),
            "{p:?}"
        );
        let plan = e.plans.unfinished().await.unwrap()[0].id.clone();

        // 2. Resume: the VM with a disk is still the old one; destroyed and cloned.
        e.area.resume(&s, &plan).await.unwrap();
        let cfg = e.sim.vm_config(104).unwrap();
        assert!(!cfg.contains_key("scsi5"), "{cfg:?}");
        assert!(cfg["scsi0"].starts_with("local-lvm:vm-104-disk"), "{cfg:?}");
        assert_eq!(cfg["name"], "vps104.example.com");
        assert_eq!(e.sim.vm_status(104), Some("running"));
        assert!(e.plans.unfinished().await.unwrap().is_empty());

        // 3. Reading the clone task fails: the recorded UPID is waited for on resume.
        e.sim
            .fail_requests(RequestMatch::method_path("GET", ":qmclone:"), 500, 1000);
        let err = e.area.reinstall(&s, t9000, "REINSTALL").await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        let p = redeploy_progress(&e).await;
        assert!(p.destroyed && p.clone_task.is_some(), "{p:?}");
        e.sim.clear_faults();
        let plan = e.plans.unfinished().await.unwrap()[0].id.clone();
        e.area.resume(&s, &plan).await.unwrap();
        let cfg = e.sim.vm_config(104).unwrap();
        assert!(cfg["scsi0"].starts_with("local-lvm:vm-104-disk"), "{cfg:?}");
        assert_eq!(e.sim.vm_status(104), Some("running"));
        assert!(e.plans.unfinished().await.unwrap().is_empty());
    });
}
