//! The facade against pve-sim: access, overview, power, console, charts, snapshots, ISO,
//! password reset, reverse DNS and firewall, each with its refusals.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{env, env_with, run, svc100, svc101, svc102_bare, svc104, wait_unlocked};
use pve_vps_services::charts::Timeframe;
use pve_vps_services::console::ConsoleToken;
use pve_vps_services::permissions::{Access, Feature, Unavailable};
use pve_vps_services::pve::LockKind;
use secrecy::ExposeSecret;

#[test]
fn access_reflects_product_and_live_lock() {
    run(30, async {
        let e = env().await;
        let s = svc104();
        let all = e.area.access_all(&s).await.unwrap();
        assert!(all.iter().all(|(_, a)| a.is_allowed()), "{all:?}");
        e.sim.set_lock(104, Some("backup")).unwrap();
        assert_eq!(
            e.area.access(&s, Feature::Snapshots).await.unwrap(),
            Access::Unavailable {
                reason: Unavailable::Locked(LockKind::Backup)
            }
        );
        assert!(
            e.area
                .access(&s, Feature::Overview)
                .await
                .unwrap()
                .is_allowed()
        );
        let bare = svc102_bare();
        assert_eq!(
            e.area.access(&bare, Feature::Firewall).await.unwrap(),
            Access::Denied
        );
        // Stopped VM: console unavailable, overview allowed.
        assert_eq!(
            e.area.access(&bare, Feature::Console).await.unwrap(),
            Access::Unavailable {
                reason: Unavailable::NotRunning
            }
        );
    });
}

#[test]
fn overview_of_a_running_vm() {
    run(30, async {
        let e = env().await;
        let o = e.area.overview(&svc104()).await.unwrap();
        assert_eq!(o.status, pve_vps_services::overview::VmStatus::Running);
        assert_eq!(o.cores, 1);
        let nic = o.nic.unwrap();
        assert_eq!(nic.mac.unwrap().to_string(), pve_vps_sim::mac_for(104, 0));
        assert_eq!(o.system_disk.unwrap().size.unwrap().to_string(), "25G");
        assert_eq!(o.network.ipv4_extra.len(), 1);
        // A VMID the cluster does not have is an upstream "not found".
        let mut gone = svc104();
        gone.vm = pve_vps_services::service::VmRef::new(
            "pve3".parse().unwrap(),
            4242.try_into().unwrap(),
        );
        let err = e.area.overview(&gone).await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
    });
}

#[test]
fn power_actions_return_pollable_tasks_and_refuse_while_locked() {
    run(60, async {
        let e = env().await;
        let s = svc104();
        let t = e.area.shutdown(&s, Some(5), true).await.unwrap();
        let p = e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(p.ok, Some(true), "{p:?}");
        assert_eq!(e.sim.vm_status(104), Some("stopped"));
        assert!(
            e.area
                .stop(&s)
                .await
                .unwrap_err()
                .to_string()
                .contains("not running")
        );
        let t = e.area.start(&s).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(e.sim.vm_status(104), Some("running"));
        // A task of another VM cannot be polled through this service.
        let other = svc101();
        assert!(
            e.area
                .task_progress(&other, &t)
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        e.sim.set_lock(104, Some("snapshot")).unwrap();
        let err = e.area.stop(&s).await.unwrap_err();
        assert!(err.is_locked(), "{err}");
        e.sim.set_lock(104, None).unwrap();
        let t = e.area.stop(&s).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
    });
}

#[test]
fn reboot_and_hard_reset_with_the_same_checks_as_stop() {
    run(60, async {
        let e = env().await;
        let s = svc104();
        let t = e.area.reboot(&s, Some(30)).await.unwrap();
        assert!(t.as_str().contains(":qmreboot:104:"), "{}", t.as_str());
        let p = e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(p.ok, Some(true), "{p:?}");
        assert_eq!(e.sim.vm_status(104), Some("running"));
        let t = e.area.reset(&s).await.unwrap();
        assert!(t.as_str().contains(":qmreset:104:"), "{}", t.as_str());
        let p = e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(p.ok, Some(true), "{p:?}");
        assert_eq!(e.sim.vm_status(104), Some("running"));
        // Locked: both refused with the lock, nothing sent.
        e.sim.set_lock(104, Some("backup")).unwrap();
        let before = e.sim.request_count();
        for err in [
            e.area.reboot(&s, None).await.unwrap_err(),
            e.area.reset(&s).await.unwrap_err(),
        ] {
            assert!(err.is_locked(), "{err}");
        }
        // Only the reads were sent (status and config, per refusal): no power request.
        assert_eq!(e.sim.request_count() - before, 4);
        e.sim.set_lock(104, None).unwrap();
        // Stopped: nothing to reboot or reset.
        let t = e.area.stop(&s).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        for err in [
            e.area.reboot(&s, None).await.unwrap_err(),
            e.area.reset(&s).await.unwrap_err(),
        ] {
            assert!(err.to_string().contains("not running"), "{err}");
        }
        assert_eq!(e.sim.vm_status(104), Some("stopped"));
    });
}

#[test]
fn console_token_is_one_time_short_lived_and_bound_to_the_service() {
    run(30, async {
        let e = env().await;
        let s = svc104();
        let link = e.area.console_link(&s).await.unwrap();
        let token = ConsoleToken::parse(&link.token.to_hex()).unwrap();
        let session = e.area.open_console(&token, &s).await.unwrap();
        assert!(session.port >= 5900);
        assert!(
            session
                .websocket_url
                .expose_secret()
                .contains("vncwebsocket")
        );
        assert!(session.websocket_url.expose_secret().starts_with("wss://"));
        assert!(
            !format!("{session:?}").contains("PVEVNC"),
            "ticket leaks into Debug"
        );
        let err = e.area.open_console(&token, &s).await.unwrap_err();
        assert!(err.is_token_rejected(), "reuse: {err}");

        let link = e.area.console_link(&s).await.unwrap();
        e.clock
            .advance(pve_vps_services::time::Duration::seconds(11));
        let err = e.area.open_console(&link.token, &s).await.unwrap_err();
        assert!(
            matches!(err, pve_vps_services::Error::TokenExpired),
            "{err}"
        );

        let link = e.area.console_link(&s).await.unwrap();
        let err = e
            .area
            .open_console(&link.token, &svc101())
            .await
            .unwrap_err();
        assert!(err.is_denied() && err.is_token_rejected(), "{err}");

        // A stopped VM gets no link.
        let err = e.area.console_link(&svc102_bare()).await.unwrap_err();
        assert!(matches!(err, pve_vps_services::Error::NotRunning), "{err}");
    });
}

#[test]
fn charts_and_their_access() {
    run(30, async {
        let e = env().await;
        let c = e.area.charts(&svc104(), Timeframe::Hour).await.unwrap();
        assert!(!c.cpu.points.is_empty());
        let err = e
            .area
            .charts(&svc102_bare(), Timeframe::Day)
            .await
            .unwrap_err();
        assert!(err.is_denied(), "{err}");
    });
}

#[test]
fn snapshots_create_quota_rollback_remove_and_sweep() {
    run(90, async {
        let e = env().await;
        let s = svc104();
        let l = e.area.snapshots(&s).await.unwrap();
        assert_eq!(l.quota.to_string(), "0/2");
        let (n1, t) = e.area.create_snapshot(&s, "before upgrade").await.unwrap();
        assert!(e.area.wait_task(&s, &t).await.unwrap().ok.unwrap());
        e.clock
            .advance(pve_vps_services::time::Duration::seconds(2));
        let (_n2, t) = e.area.create_snapshot(&s, "").await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        let l = e.area.snapshots(&s).await.unwrap();
        assert_eq!(l.quota.to_string(), "2/2");
        assert!(
            l.snapshots.iter().all(|v| v.remaining_secs > 86_000),
            "{l:?}"
        );
        assert!(l.snapshots[0].vmstate, "running vm: RAM saved");
        let err = e.area.create_snapshot(&s, "third").await.unwrap_err();
        assert!(err.is_quota(), "{err}");
        // Bad input: unknown snapshot, reserved name.
        assert!(
            e.area
                .remove_snapshot(&s, "nope")
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            e.area
                .rollback_snapshot(&s, "current")
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        // Locked.
        e.sim.set_lock(104, Some("backup")).unwrap();
        assert!(
            e.area
                .remove_snapshot(&s, n1.as_str())
                .await
                .unwrap_err()
                .is_locked()
        );
        e.sim.set_lock(104, None).unwrap();
        let t = e.area.rollback_snapshot(&s, n1.as_str()).await.unwrap();
        assert!(e.area.wait_task(&s, &t).await.unwrap().ok.unwrap());
        let t = e.area.remove_snapshot(&s, n1.as_str()).await.unwrap();
        e.area.wait_task(&s, &t).await.unwrap();
        assert_eq!(e.sim.snapshot_names(104).len(), 1);
        // Denied.
        assert!(
            e.area
                .snapshots(&svc102_bare())
                .await
                .unwrap_err()
                .is_denied()
        );

        // Sweep: nothing is due now; a day later the remaining one is removed, once.
        let r = e
            .area
            .sweep_expired_snapshots(std::slice::from_ref(&s))
            .await;
        assert!(r.removed.is_empty() && r.skipped.is_empty(), "{r:?}");
        e.clock.advance(pve_vps_services::time::Duration::days(1));
        let r = e
            .area
            .sweep_expired_snapshots(std::slice::from_ref(&s))
            .await;
        assert_eq!(r.removed.len(), 1, "{r:?}");
        assert!(e.sim.snapshot_names(104).is_empty());
        let r = e
            .area
            .sweep_expired_snapshots(std::slice::from_ref(&s))
            .await;
        assert!(r.removed.is_empty(), "idempotent: {r:?}");
    });
}

#[test]
fn iso_list_mount_unmount_and_refusals() {
    run(30, async {
        let e = env().await;
        let s = svc100();
        // The demo keeps the cloud-init drive in ide0 and an empty CD drive in ide2.
        let page = e.area.isos(&s).await.unwrap();
        assert_eq!(page.mounted, None);
        let names: Vec<&str> = page.folders.iter().map(|f| f.name.as_str()).collect();
        assert!(
            names.contains(&"Debian") && names.contains(&"virtio"),
            "{names:?}"
        );
        e.area
            .mount_iso(&s, "local:iso/AlmaLinux-9.4-x86_64-minimal.iso")
            .await
            .unwrap();
        assert_eq!(
            e.sim.vm_config(100).unwrap()["ide2"],
            "local:iso/AlmaLinux-9.4-x86_64-minimal.iso,media=cdrom"
        );
        for bad in [
            "local:iso/unknown.iso",
            "local-lvm:iso/Debian-12.5.0-amd64-netinst.iso",
            "local:iso/../../etc/passwd.iso",
        ] {
            let err = e.area.mount_iso(&s, bad).await.unwrap_err();
            assert!(err.is_invalid_input(), "{bad}: {err}");
        }
        e.sim.set_lock(100, Some("backup")).unwrap();
        assert!(e.area.unmount_iso(&s).await.unwrap_err().is_locked());
        e.sim.set_lock(100, None).unwrap();
        e.area.unmount_iso(&s).await.unwrap();
        assert_eq!(e.sim.vm_config(100).unwrap()["ide2"], "none,media=cdrom");
        assert_eq!(e.area.isos(&s).await.unwrap().mounted, None);
        assert!(e.area.isos(&svc102_bare()).await.unwrap_err().is_denied());
    });
}

#[test]
fn iso_mount_and_unmount_debian_on_demo_vm_100() {
    run(30, async {
        let e = env().await;
        let s = svc100();
        let debian = "local:iso/Debian-12.5.0-amd64-netinst.iso";
        e.area.mount_iso(&s, debian).await.unwrap();
        let cfg = e.sim.vm_config(100).unwrap();
        assert_eq!(cfg["ide2"], format!("{debian},media=cdrom"));
        assert_eq!(cfg["ide0"], "local-lvm:vm-100-cloudinit,media=cdrom");
        assert_eq!(
            e.area.isos(&s).await.unwrap().mounted.unwrap().to_string(),
            debian
        );
        e.area.unmount_iso(&s).await.unwrap();
        assert_eq!(e.sim.vm_config(100).unwrap()["ide2"], "none,media=cdrom");
        assert_eq!(e.area.isos(&s).await.unwrap().mounted, None);
    });
}

#[test]
fn iso_drive_setting_is_used_and_a_cloud_init_drive_is_never_replaced() {
    run(30, async {
        let e = env().await;
        let s = svc104();
        let debian = "local:iso/Debian-12.5.0-amd64-netinst.iso";
        let with_drive = |drive: &str| {
            let file = include_str!("data/sim-products.toml").replacen(
                "[products.vps.permissions]",
                &format!("[products.vps.iso]\ndrive = \"{drive}\"\n\n[products.vps.permissions]"),
                1,
            );
            let catalog = pve_vps_services::product::Catalog::from_toml_str(&file).unwrap();
            pve_vps_services::ClientArea::builder(common::client(&e.sim), catalog)
                .plan_store(Arc::new(pve_vps_services::stores::MemoryPlanStore::new()))
                .schedule_store(Arc::new(
                    pve_vps_services::stores::MemoryScheduleStore::new(),
                ))
                .build()
                .unwrap()
        };
        // ide0 holds the demo's cloud-init drive: never replaced, never ejected.
        let area = with_drive("ide0");
        assert_eq!(area.isos(&s).await.unwrap().mounted, None);
        let err = area.mount_iso(&s, debian).await.unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("cloud-init"), "{err}");
        assert!(area.unmount_iso(&s).await.unwrap_err().is_invalid_input());
        let cfg = e.sim.vm_config(104).unwrap();
        assert_eq!(cfg["ide0"], "local-lvm:vm-104-cloudinit,media=cdrom");
        assert_eq!(cfg["ide2"], "none,media=cdrom");
        // Another free CD slot is used as configured.
        let area = with_drive("ide3");
        area.mount_iso(&s, debian).await.unwrap();
        let cfg = e.sim.vm_config(104).unwrap();
        assert_eq!(cfg["ide3"], format!("{debian},media=cdrom"));
        assert_eq!(cfg["ide2"], "none,media=cdrom");
        assert_eq!(
            area.isos(&s).await.unwrap().mounted.unwrap().to_string(),
            debian
        );
        assert_eq!(e.area.isos(&s).await.unwrap().mounted, None);
        area.unmount_iso(&s).await.unwrap();
        assert_eq!(e.sim.vm_config(104).unwrap()["ide3"], "none,media=cdrom");
    });
}

#[test]
fn password_reset_via_agent_and_cloud_init_never_logged() {
    run(30, async {
        let e = env().await;
        let s = svc104();
        let r = e.area.reset_password(&s).await.unwrap();
        assert!(r.applied_by_agent);
        assert!(r.password.expose_secret().len() >= 16);
        assert!(!format!("{r:?}").contains(r.password.expose_secret()));
        let cfg = e.sim.vm_config(104).unwrap();
        assert!(cfg.contains_key("cipassword"));
        assert_eq!(e.notes.kinds(), vec!["new password"]);
        // Agent silent: still set through cloud-init, no error.
        e.sim.set_agent_responding(104, false).unwrap();
        let r2 = e.area.reset_password(&s).await.unwrap();
        assert!(!r2.applied_by_agent);
        assert_ne!(r.password.expose_secret(), r2.password.expose_secret());
        e.sim.set_lock(104, Some("backup")).unwrap();
        assert!(e.area.reset_password(&s).await.unwrap_err().is_locked());
        assert!(
            e.area
                .reset_password(&svc102_bare())
                .await
                .unwrap_err()
                .is_denied()
        );
    });
}

#[test]
fn reverse_dns_only_for_the_services_addresses() {
    run(30, async {
        let zones =
            pve_vps_dns::Zones::new([
                pve_vps_dns::ReverseZone::new("100.51.198.in-addr.arpa.").unwrap()
            ]);
        let dns = Arc::new(pve_vps_dns::InMemory::new(zones));
        let e = env_with(|b| b.reverse_dns(dns.clone())).await;
        let s = svc104();
        let ip: IpAddr = "198.51.100.104".parse().unwrap();
        e.area.rdns_set(&s, ip, "vps104.example.com").await.unwrap();
        let list = e.area.rdns_list(&s).await.unwrap();
        assert_eq!(list[0], (ip, Some("vps104.example.com".into())));
        assert_eq!(list[1].1, None);
        let foreign: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(
            e.area
                .rdns_set(&s, foreign, "x.example.com")
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            e.area
                .rdns_set(&s, ip, "bad_name")
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        e.sim.set_lock(104, Some("backup")).unwrap();
        let err = e
            .area
            .rdns_set(&s, ip, "other.example.com")
            .await
            .unwrap_err();
        assert!(err.is_locked(), "{err}");
        assert_eq!(
            e.area.rdns_list(&s).await.unwrap()[0].1.as_deref(),
            Some("vps104.example.com")
        );
        e.sim.set_lock(104, None).unwrap();
        e.area.rdns_remove(&s, ip).await.unwrap();
        assert_eq!(e.area.rdns_list(&s).await.unwrap()[0].1, None);
        assert!(
            e.area
                .rdns_list(&svc102_bare())
                .await
                .unwrap_err()
                .is_denied()
        );
        // Without a provider.
        let e2 = env().await;
        assert!(matches!(
            e2.area.rdns_list(&s).await.unwrap_err(),
            pve_vps_services::Error::NotConfigured { .. }
        ));
    });
}

#[test]
fn ipfilter_drops_addresses_the_service_no_longer_has() {
    run(30, async {
        let e = env().await;
        // VM 100's set holds 203.0.113.10 and 2001:db8:10::10; the service has no IPv6 now.
        let s = svc100();
        e.area
            .set_firewall_policies(&s, "DROP", "ACCEPT", true)
            .await
            .unwrap();
        let client = common::client(&e.sim);
        let fw = client
            .node(&"pve1".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(100).unwrap())
            .firewall();
        let cidrs: Vec<String> = fw
            .ipset_entries(&"ipfilter-net0".parse().unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.cidr)
            .collect();
        assert_eq!(cidrs.len(), 1, "{cidrs:?}");
        assert!(cidrs[0].starts_with("203.0.113.10"), "{cidrs:?}");
    });
}

fn rule(json: &str) -> pve_vps_firewall::ApiRule {
    pve_vps_firewall::ApiRule::from_json(json).unwrap()
}

/// Turns the VM firewall on behind `ssh` (added first), with policies IN DROP and OUT ACCEPT.
async fn firewall_on_behind(
    area: &pve_vps_services::ClientArea,
    s: &pve_vps_services::service::Service,
    ssh: &pve_vps_firewall::ApiRule,
) {
    area.add_firewall_rule(s, ssh, 0, false).await.unwrap();
    area.set_firewall_policies(s, "DROP", "ACCEPT", false)
        .await
        .unwrap();
    area.set_firewall_enabled(s, true, false).await.unwrap();
}

#[test]
fn firewall_rules_positions_validation_lockout_and_ipfilter() {
    run(60, async {
        let e = env().await;
        let s = svc104();
        // Turn the VM firewall on with an SSH rule (policy DROP comes next).
        let ssh = rule(
            r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1,"comment":"ssh"}"#,
        );
        firewall_on_behind(&e.area, &s, &ssh).await;
        let web =
            rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"80,443","enable":1}"#);
        e.area.add_firewall_rule(&s, &web, 1, false).await.unwrap();
        let smtp = rule(r#"{"type":"out","action":"DROP","proto":"tcp","dport":"25","enable":1}"#);
        e.area.add_firewall_rule(&s, &smtp, 1, false).await.unwrap();
        let v = e.area.firewall(&s).await.unwrap();
        let texts: Vec<&str> = v.rules.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "IN ACCEPT -p tcp -dport 22 # ssh",
                "OUT DROP -p tcp -dport 25",
                "IN ACCEPT -p tcp -dport 80,443"
            ]
        );
        // Drag the web rule to the top.
        e.area.move_firewall_rule(&s, 2, 0, false).await.unwrap();
        let v = e.area.firewall(&s).await.unwrap();
        assert_eq!(v.rules[0].text, "IN ACCEPT -p tcp -dport 80,443");
        assert_eq!(v.rules[1].text, "IN ACCEPT -p tcp -dport 22 # ssh");

        // Lockout: a DROP of all tcp above SSH is refused, then allowed when confirmed.
        let drop_tcp = rule(r#"{"type":"in","action":"DROP","proto":"tcp","enable":1}"#);
        let err = e
            .area
            .add_firewall_rule(&s, &drop_tcp, 0, false)
            .await
            .unwrap_err();
        assert!(err.is_lockout(), "{err}");
        assert!(err.to_string().contains("tcp/22"), "{err}");
        assert_eq!(e.area.firewall(&s).await.unwrap().rules.len(), 3);
        // Deleting the SSH rule under policy DROP is a lockout too.
        assert!(
            e.area
                .delete_firewall_rule(&s, 1, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
        e.area
            .add_firewall_rule(&s, &drop_tcp, 0, true)
            .await
            .unwrap();
        e.area.delete_firewall_rule(&s, 0, false).await.unwrap();
        // Update keeps the position.
        let web8080 =
            rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"8080","enable":1}"#);
        e.area
            .update_firewall_rule(&s, 0, &web8080, false)
            .await
            .unwrap();
        assert_eq!(
            e.area.firewall(&s).await.unwrap().rules[0].text,
            "IN ACCEPT -p tcp -dport 8080"
        );

        // Validation through firewall-model: nothing reaches PVE.
        for bad in [
            r#"{"type":"in","action":"ACCEPT","dport":"22"}"#,
            r#"{"type":"in","action":"ACCEPT","comment":"x\n[RULES]"}"#,
            r#"{"type":"in","action":"ACCEPT","source":"300.1.1.1"}"#,
            r#"{"type":"group","action":"admins"}"#,
        ] {
            let err = e
                .area
                .add_firewall_rule(&s, &rule(bad), 0, false)
                .await
                .unwrap_err();
            assert!(err.is_invalid_input(), "{bad}: {err}");
        }
        assert!(
            e.area
                .add_firewall_rule(&s, &web, 9, false)
                .await
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(
            e.area
                .set_firewall_policies(&s, "MAYBE", "ACCEPT", false)
                .await
                .unwrap_err()
                .is_invalid_input()
        );

        // The anti-spoofing set follows the service's addresses.
        let client = common::client(&e.sim);
        let fw = client
            .node(&"pve3".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(104).unwrap())
            .firewall();
        let mut cidrs: Vec<String> = fw
            .ipset_entries(&"ipfilter-net0".parse().unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.cidr)
            .collect();
        cidrs.sort();
        assert_eq!(cidrs.len(), 2, "{cidrs:?}");
        assert!(cidrs[0].starts_with("198.51.100.104"), "{cidrs:?}");

        // Denied product, and a backup lock.
        assert!(
            e.area
                .firewall(&svc102_bare())
                .await
                .unwrap_err()
                .is_denied()
        );
        e.sim.set_lock(104, Some("backup")).unwrap();
        assert!(
            e.area
                .add_firewall_rule(&s, &web, 0, false)
                .await
                .unwrap_err()
                .is_locked()
        );
        let _ = Duration::ZERO;
        wait_unlocked(&e.sim, 101).await;
    });
}

/// The lockout guard evaluates the cluster's firewall as PVE holds it: `+dc/` IP sets and
/// aliases resolve to their entries, every management source network is checked, and with
/// the cluster firewall off nothing can lock out.
#[test]
fn lockout_guard_resolves_cluster_ipsets_aliases_and_management_sources() {
    run(60, async {
        let e = env().await;
        let s = svc104();
        let cluster = e.area.client().cluster_firewall();
        let name = |n: &str| -> pve_vps_api::FirewallName { n.parse().unwrap() };
        // The default probe address is 203.0.113.9.
        cluster.create_ipset(&name("blocked"), None).await.unwrap();
        cluster
            .add_ipset_entry(&name("blocked"), "203.0.113.0/28", false, None)
            .await
            .unwrap();
        cluster.create_ipset(&name("others"), None).await.unwrap();
        cluster
            .add_ipset_entry(&name("others"), "192.0.2.64/26", false, None)
            .await
            .unwrap();
        cluster
            .create_alias(&name("probe"), "203.0.113.9", None)
            .await
            .unwrap();
        cluster
            .create_alias(&name("elsewhere"), "192.0.2.50", None)
            .await
            .unwrap();
        // SSH allowed, policy DROP, firewall on.
        let ssh = rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1}"#);
        firewall_on_behind(&e.area, &s, &ssh).await;

        // An IP set holding the probe: refused, named with the source.
        let drop_blocked =
            rule(r#"{"type":"in","action":"DROP","source":"+dc/blocked","enable":1}"#);
        let err = e
            .area
            .add_firewall_rule(&s, &drop_blocked, 0, false)
            .await
            .unwrap_err();
        assert!(err.is_lockout(), "{err}");
        assert!(err.to_string().contains("tcp/22 from 203.0.113.9"), "{err}");
        // An IP set without it: allowed.
        let drop_others = rule(r#"{"type":"in","action":"DROP","source":"+dc/others","enable":1}"#);
        e.area
            .add_firewall_rule(&s, &drop_others, 0, false)
            .await
            .unwrap();
        // Aliases likewise.
        let drop_probe = rule(r#"{"type":"in","action":"DROP","source":"dc/probe","enable":1}"#);
        assert!(
            e.area
                .add_firewall_rule(&s, &drop_probe, 0, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
        let drop_elsewhere =
            rule(r#"{"type":"in","action":"DROP","source":"elsewhere","enable":1}"#);
        e.area
            .add_firewall_rule(&s, &drop_elsewhere, 0, false)
            .await
            .unwrap();
        // A VM-level alias shadows the cluster's: `probe` at VM level is harmless.
        let vm_fw = e
            .area
            .client()
            .node(&"pve3".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(104).unwrap())
            .firewall();
        vm_fw
            .create_alias(&name("probe"), "192.0.2.77", None)
            .await
            .unwrap();
        let drop_auto = rule(r#"{"type":"in","action":"DROP","source":"probe","enable":1}"#);
        e.area
            .add_firewall_rule(&s, &drop_auto, 0, false)
            .await
            .unwrap();
        // A VM-level IP set with the probe is refused.
        vm_fw.create_ipset(&name("mine"), None).await.unwrap();
        vm_fw
            .add_ipset_entry(&name("mine"), "203.0.113.9", false, None)
            .await
            .unwrap();
        let drop_mine = rule(r#"{"type":"in","action":"DROP","source":"+guest/mine","enable":1}"#);
        assert!(
            e.area
                .add_firewall_rule(&s, &drop_mine, 0, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
        // Changing the cluster set changes the answer.
        cluster
            .remove_ipset_entry(&name("blocked"), "203.0.113.0/28", None)
            .await
            .unwrap();
        e.area
            .add_firewall_rule(&s, &drop_blocked, 0, false)
            .await
            .unwrap();

        // The cluster firewall off: PVE filters nothing, so nothing locks out.
        cluster
            .set_options(&pve_vps_api::api::firewall::FirewallOptionsUpdate::new().enable(false))
            .await
            .unwrap();
        let drop_all = rule(r#"{"type":"in","action":"DROP","enable":1}"#);
        e.area
            .add_firewall_rule(&s, &drop_all, 0, false)
            .await
            .unwrap();
        e.area.delete_firewall_rule(&s, 0, false).await.unwrap();
        cluster
            .set_options(&pve_vps_api::api::firewall::FirewallOptionsUpdate::new().enable(true))
            .await
            .unwrap();
        assert!(
            e.area
                .add_firewall_rule(&s, &drop_all, 0, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
    });
}

/// Management sources given as networks: a rule blocking only part of a network is caught.
#[test]
fn lockout_guard_checks_every_address_of_the_management_networks() {
    run(60, async {
        let e = env_with(|b| {
            b.management_sources([
                "198.51.100.0/24".parse().unwrap(),
                "192.0.2.9/32".parse().unwrap(),
            ])
        })
        .await;
        let s = svc104();
        let ssh = rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1}"#);
        firewall_on_behind(&e.area, &s, &ssh).await;
        // The upper half of the network only (its first address stays reachable).
        let half = rule(r#"{"type":"in","action":"DROP","source":"198.51.100.128/25","enable":1}"#);
        let err = e
            .area
            .add_firewall_rule(&s, &half, 0, false)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("tcp/22 from 198.51.100.128"),
            "{err}"
        );
        // The old single probe address is not a management source here.
        let probe = rule(r#"{"type":"in","action":"DROP","source":"203.0.113.9","enable":1}"#);
        e.area
            .add_firewall_rule(&s, &probe, 0, false)
            .await
            .unwrap();
        let one = rule(r#"{"type":"in","action":"DROP","source":"192.0.2.9","enable":1}"#);
        assert!(
            e.area
                .add_firewall_rule(&s, &one, 0, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
    });
}

/// A provider's `GROUP` rule on the VM is evaluated with the security group's rules as PVE
/// holds them (read through `client.security_groups()` from pve-sim): a group that drops SSH
/// from the management source turns a customer's change into a lockout; a group that accepts
/// SSH keeps the change allowed.
#[test]
fn lockout_guard_evaluates_a_providers_security_group_read_from_pve() {
    use pve_vps_api::api::firewall::RuleSpec;
    run(60, async {
        let e = env().await;
        let s = svc104();
        let name = |n: &str| -> pve_vps_api::FirewallName { n.parse().unwrap() };
        let groups = e.area.client().security_groups();
        let vm_fw = e
            .area
            .client()
            .node(&"pve3".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(104).unwrap())
            .firewall();
        let ssh_spec = |action: &str| {
            RuleSpec::new("in", action)
                .unwrap()
                .proto("tcp")
                .unwrap()
                .dport("22")
                .unwrap()
        };
        // `dropssh` drops tcp/22 from the management source (the default probe 203.0.113.9).
        groups
            .create(&name("dropssh"), Some("no ssh from mgmt"))
            .await
            .unwrap();
        groups
            .group(&name("dropssh"))
            .create_rule(&ssh_spec("DROP").source("203.0.113.9").unwrap())
            .await
            .unwrap();
        groups.create(&name("allowssh"), None).await.unwrap();
        groups
            .group(&name("allowssh"))
            .create_rule(&ssh_spec("ACCEPT"))
            .await
            .unwrap();

        // Policy ACCEPT, firewall on; the provider's GROUP rule, then the customer's SSH rule
        // above it: [IN ACCEPT tcp/22, GROUP dropssh].
        e.area
            .set_firewall_policies(&s, "ACCEPT", "ACCEPT", false)
            .await
            .unwrap();
        e.area.set_firewall_enabled(&s, true, false).await.unwrap();
        vm_fw
            .create_rule(&RuleSpec::new("group", "dropssh").unwrap())
            .await
            .unwrap();
        let ssh = rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1}"#);
        e.area.add_firewall_rule(&s, &ssh, 0, false).await.unwrap();
        let fw = e.area.firewall(&s).await.unwrap();
        assert_eq!(fw.rules.len(), 2, "{:?}", fw.rules);

        // Deleting the SSH rule (or moving it below the group) lets the group drop SSH from
        // the management source: refused. Without the group's rules, policy ACCEPT would let
        // SSH through and both changes would pass.
        let err = e.area.delete_firewall_rule(&s, 0, false).await.unwrap_err();
        assert!(err.is_lockout(), "{err}");
        assert!(err.to_string().contains("tcp/22 from 203.0.113.9"), "{err}");
        assert!(
            e.area
                .move_firewall_rule(&s, 0, 1, false)
                .await
                .unwrap_err()
                .is_lockout()
        );
        assert_eq!(e.area.firewall(&s).await.unwrap().rules.len(), 2);
        // Confirmed, it goes through.
        e.area.delete_firewall_rule(&s, 0, true).await.unwrap();
        let left = vm_fw.rules().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].action, "dropssh");

        // Now `allowssh` under policy DROP: [GROUP allowssh, IN ACCEPT tcp/22].
        vm_fw.delete_rule(0, None).await.unwrap();
        e.area.add_firewall_rule(&s, &ssh, 0, false).await.unwrap();
        e.area
            .set_firewall_policies(&s, "DROP", "ACCEPT", false)
            .await
            .unwrap();
        vm_fw
            .create_rule(&RuleSpec::new("group", "allowssh").unwrap())
            .await
            .unwrap();
        // Deleting the customer's SSH rule is allowed: the group still accepts SSH (without
        // the group's rules, policy DROP would make it a lockout).
        e.area.delete_firewall_rule(&s, 1, false).await.unwrap();
        let left = vm_fw.rules().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].action, "allowssh");
    });
}

/// "Test a connection" decides on the VM's firewall as PVE holds it: its own rules by table
/// position (a cluster IP set resolved to its members), a provider's security group, the
/// policies both ways, a disabled rule skipped, and nothing filtered with the firewall off.
#[test]
fn test_connection_names_the_deciding_rule_group_or_policy() {
    use pve_vps_api::api::firewall::RuleSpec;
    use pve_vps_services::firewall::{ConnectionDecider, ConnectionQuestion, TrafficDirection};
    run(60, async {
        let e = env().await;
        let s = svc104();
        let name = |n: &str| -> pve_vps_api::FirewallName { n.parse().unwrap() };
        let cluster = e.area.client().cluster_firewall();
        cluster.create_ipset(&name("office"), None).await.unwrap();
        cluster
            .add_ipset_entry(&name("office"), "198.51.100.0/24", false, None)
            .await
            .unwrap();
        let ssh = rule(r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22","enable":1}"#);
        firewall_on_behind(&e.area, &s, &ssh).await;
        let office = rule(
            r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"8080","source":"+dc/office","enable":1}"#,
        );
        e.area
            .add_firewall_rule(&s, &office, 1, false)
            .await
            .unwrap();
        let smtp = rule(r#"{"type":"out","action":"DROP","proto":"tcp","dport":"25","enable":1}"#);
        e.area.add_firewall_rule(&s, &smtp, 2, false).await.unwrap();
        // [0: IN ACCEPT tcp/22, 1: IN ACCEPT +dc/office tcp/8080, 2: OUT DROP tcp/25]
        let ask = async |dir: &str, proto: &str, port: &str, remote: &str| {
            let q = ConnectionQuestion::parse(dir, proto, port, remote).unwrap();
            e.area.test_connection(&s, &q).await.unwrap()
        };
        let rule_pos = |d: &ConnectionDecider| match d {
            ConnectionDecider::Rule { pos, .. } => Some(*pos),
            _ => None,
        };

        let a = ask("in", "tcp", "22", "192.0.2.1").await;
        assert_eq!(
            (a.verdict.as_str(), rule_pos(&a.decider)),
            ("ACCEPT", Some(0))
        );
        assert_eq!(a.sentence(), "decided by rule #0");
        // The cluster IP set's member passes rule #1; an address outside it meets the policy.
        let a = ask("in", "tcp", "8080", "198.51.100.7").await;
        assert_eq!(
            (a.verdict.as_str(), rule_pos(&a.decider)),
            ("ACCEPT", Some(1))
        );
        match &a.decider {
            ConnectionDecider::Rule { text, .. } => assert!(text.contains("+dc/office"), "{text}"),
            other => panic!("{other:?}"),
        }
        let a = ask("in", "tcp", "8080", "192.0.2.1").await;
        assert_eq!(a.verdict, "DROP");
        assert_eq!(
            a.decider,
            ConnectionDecider::Policy {
                direction: TrafficDirection::In,
                policy: "DROP".into()
            }
        );
        assert_eq!(
            a.sentence(),
            "no rule matched: decided by the incoming policy (DROP)"
        );
        // Outgoing: the OUT rule, then the outgoing policy.
        let a = ask("out", "tcp", "25", "192.0.2.1").await;
        assert_eq!(
            (a.verdict.as_str(), rule_pos(&a.decider)),
            ("DROP", Some(2))
        );
        let a = ask("out", "tcp", "443", "192.0.2.1").await;
        assert_eq!(a.verdict, "ACCEPT");
        assert!(
            matches!(
                a.decider,
                ConnectionDecider::Policy {
                    direction: TrafficDirection::Out,
                    ..
                }
            ),
            "{a:?}"
        );

        // A disabled rule decides nothing.
        let mut off = e.area.firewall(&s).await.unwrap().rules[0].rule.clone();
        off.enable = Some(0);
        e.area
            .update_firewall_rule(&s, 0, &off, true)
            .await
            .unwrap();
        let a = ask("in", "tcp", "22", "192.0.2.1").await;
        assert_eq!(a.verdict, "DROP", "{a:?}");
        assert!(
            matches!(a.decider, ConnectionDecider::Policy { .. }),
            "{a:?}"
        );

        // A provider's security group in the VM's table decides as a provider rule.
        let groups = e.area.client().security_groups();
        groups.create(&name("allowweb"), None).await.unwrap();
        groups
            .group(&name("allowweb"))
            .create_rule(
                &RuleSpec::new("in", "ACCEPT")
                    .unwrap()
                    .proto("tcp")
                    .unwrap()
                    .dport("9000")
                    .unwrap(),
            )
            .await
            .unwrap();
        e.area
            .client()
            .node(&"pve3".parse().unwrap())
            .qemu(pve_vps_api::VmId::new(104).unwrap())
            .firewall()
            .create_rule(&RuleSpec::new("group", "allowweb").unwrap())
            .await
            .unwrap();
        let a = ask("in", "tcp", "9000", "192.0.2.1").await;
        assert_eq!(a.verdict, "ACCEPT", "{a:?}");
        match &a.decider {
            ConnectionDecider::ProviderRule { location, text } => {
                assert!(location.contains("allowweb"), "{location}");
                assert!(text.contains("9000"), "{text}");
            }
            other => panic!("{other:?}"),
        }

        // The VM's firewall off: nothing is filtered.
        e.area.set_firewall_enabled(&s, false, true).await.unwrap();
        let a = ask("in", "tcp", "8080", "192.0.2.1").await;
        assert_eq!(a.verdict, "ACCEPT");
        assert!(
            matches!(a.decider, ConnectionDecider::NotFiltered { .. }),
            "{a:?}"
        );

        // Bad questions never reach the cluster; a product without the firewall is refused.
        for (dir, proto, port, remote) in [
            ("in", "tcp", "70000", "192.0.2.1"),
            ("in", "tcp", "0", "192.0.2.1"),
            ("in", "tcp", "", "192.0.2.1"),
            ("in", "icmp", "8", "192.0.2.1"),
            ("in", "gre", "", "192.0.2.1"),
            ("up", "tcp", "22", "192.0.2.1"),
            ("in", "tcp", "22", "example.com"),
        ] {
            let err = ConnectionQuestion::parse(dir, proto, port, remote).unwrap_err();
            assert!(
                matches!(err, pve_vps_services::Error::InvalidValue { .. }),
                "{err}"
            );
        }
        let q = ConnectionQuestion::parse("in", "icmp", "", "2001:db8::1").unwrap();
        let err = e
            .area
            .test_connection(&svc102_bare(), &q)
            .await
            .unwrap_err();
        assert!(
            matches!(err, pve_vps_services::Error::AccessDenied { .. }),
            "{err}"
        );
    });
}
