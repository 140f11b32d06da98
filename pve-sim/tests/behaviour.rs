//! PVE behaviour that the schema does not describe: auth, locks, tasks, snapshots, restore,
//! MAC rule, firewall rule order, faults.

mod common;

use std::time::Duration;

use common::{Api, enc, timed};
use pve_vps_sim::{RequestMatch, Scenario, VmSpec};
use reqwest::Method;

fn mac_of(net: &str) -> String {
    net.split(',')
        .find_map(|p| {
            p.split_once('=')
                .filter(|(_, m)| m.len() == 17)
                .map(|(_, m)| m.to_string())
        })
        .unwrap()
}

/// The element of the JSON array `list` whose `key` is `want`; panics when there is none.
fn find_by<T>(list: &serde_json::Value, key: &str, want: T) -> serde_json::Value
where
    serde_json::Value: PartialEq<T>,
{
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e[key] == want)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn tokens_tickets_csrf_and_permissions() {
    timed(async {
        let sim = common::start().await;
        // no credentials, wrong secret: 401
        let anon = Api::with_header(&sim, None);
        assert_eq!(anon.call(Method::GET, "/version", &[]).await.0, 401);
        let wrong = Api::with_header(&sim, Some("PVEAPIToken=root@pam!sim=nope".into()));
        assert_eq!(wrong.call(Method::GET, "/nodes", &[]).await.0, 401);
        // read-only token: reads work, writes are 403
        let ro = Api::with_header(&sim, Some(sim.readonly_token().unwrap().header_value()));
        assert_eq!(ro.call(Method::GET, "/nodes", &[]).await.0, 200);
        assert_eq!(
            ro.call(Method::POST, "/nodes/pve1/qemu/100/status/stop", &[])
                .await
                .0,
            403
        );
        // ticket login
        let (user, pass) = sim.user_password().unwrap();
        assert_eq!(
            anon.call(
                Method::POST,
                "/access/ticket",
                &[("username", user), ("password", "bad")]
            )
            .await
            .0,
            401
        );
        let (s, b) = anon
            .call(
                Method::POST,
                "/access/ticket",
                &[("username", user), ("password", pass)],
            )
            .await;
        assert_eq!(s, 200);
        let ticket = b["data"]["ticket"].as_str().unwrap().to_string();
        let csrf = b["data"]["CSRFPreventionToken"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(ticket.starts_with("PVE:root@pam:"));
        let mut session = Api::with_header(&sim, None);
        session.cookie = Some(enc(&ticket));
        assert_eq!(session.call(Method::GET, "/nodes", &[]).await.0, 200);
        // writes need the CSRF header
        assert_eq!(
            session
                .call(
                    Method::PUT,
                    "/nodes/pve1/qemu/100/config",
                    &[("description", "a")]
                )
                .await
                .0,
            401
        );
        session.csrf = Some(csrf);
        assert_eq!(
            session
                .call(
                    Method::PUT,
                    "/nodes/pve1/qemu/100/config",
                    &[("description", "a")]
                )
                .await
                .0,
            200
        );
        // renew: the ticket as password
        let (s, b) = anon
            .call(
                Method::POST,
                "/access/ticket",
                &[("username", user), ("password", &ticket)],
            )
            .await;
        assert_eq!(s, 200, "{b}");
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn https_with_pinned_fingerprint() {
    timed(async {
        let sim = common::start().await;
        let mut api = Api::token(&sim);
        api.base = format!("{}/api2/json", sim.https_url());
        assert_eq!(api.get("/version").await["release"], "8.4");
        // a different pin fails the handshake
        let bad = common::http_client("00:11:22");
        let r = bad
            .get(format!("{}/api2/json/version", sim.https_url()))
            .send()
            .await;
        assert!(r.is_err());
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn power_tasks_take_time_and_report_upids() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let upid = api
            .post("/nodes/pve1/qemu/100/status/shutdown", &[("timeout", "30")])
            .await;
        let u = upid.as_str().unwrap();
        let parts: Vec<&str> = u.split(':').collect();
        assert_eq!(parts.len(), 9, "{u}");
        assert_eq!(
            (parts[0], parts[1], parts[5], parts[6], parts[7], parts[8]),
            ("UPID", "pve1", "qmshutdown", "100", "root@pam!sim", "")
        );
        assert!(
            parts[2..5]
                .iter()
                .all(|p| p.len() == 8 && u32::from_str_radix(p, 16).is_ok())
        );
        // warm the cluster-resources cache while the VM still runs
        api.get_q("/cluster/resources", &[("type", "vm")]).await;
        // still running right after dispatch
        let st = api
            .get(&format!("/nodes/pve1/tasks/{}/status", enc(u)))
            .await;
        assert_eq!(st["status"], "running");
        assert_eq!(
            api.get("/nodes/pve1/qemu/100/status/current").await["status"],
            "running"
        );
        assert_eq!(api.wait(&upid).await, "OK");
        assert_eq!(
            api.get("/nodes/pve1/qemu/100/status/current").await["status"],
            "stopped"
        );
        // the (cached) cluster view reflects the change at once
        let res = api.get_q("/cluster/resources", &[("type", "vm")]).await;
        let vm = find_by(&res, "vmid", 100);
        assert_eq!(vm["status"], "stopped");
        let up = api.post("/nodes/pve1/qemu/100/status/start", &[]).await;
        assert_eq!(api.wait(&up).await, "OK");
        let cur = api.get("/nodes/pve1/qemu/100/status/current").await;
        assert_eq!(cur["status"], "running");
        assert!(cur["uptime"].as_u64().unwrap() < 5);
        // a guest that ignores ACPI: shutdown times out, forceStop kills it
        sim.set_ignore_shutdown(100, true).unwrap();
        let t = api
            .post("/nodes/pve1/qemu/100/status/shutdown", &[("timeout", "0")])
            .await;
        assert_eq!(api.wait(&t).await, "VM quit/powerdown failed - got timeout");
        let t = api
            .post(
                "/nodes/pve1/qemu/100/status/shutdown",
                &[("timeout", "0"), ("forceStop", "1")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_status(100), Some("stopped"));
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn backup_locks_the_vm_and_writes_a_volume() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let upid = api
            .post(
                "/nodes/pve1/vzdump",
                &[
                    ("vmid", "101"),
                    ("storage", "backup"),
                    ("mode", "snapshot"),
                    ("compress", "zstd"),
                    ("notes-template", "{{guestname}} on {{node}}"),
                    ("protected", "1"),
                ],
            )
            .await;
        let cfg = api.get("/nodes/pve1/qemu/101/config").await;
        assert_eq!(cfg["lock"], "backup");
        // Like PVE: a config write refuses at once (HTTP 500); stop and snapshot fork their
        // worker, which fails on the lock.
        let (s, b) = api
            .call(
                Method::PUT,
                "/nodes/pve1/qemu/101/config",
                &[("cores", "2")],
            )
            .await;
        assert_eq!(
            (s, b["message"].as_str()),
            (500, Some("VM is locked (backup)\n"))
        );
        for (path, args) in [
            ("/nodes/pve1/qemu/101/status/stop", vec![]),
            ("/nodes/pve1/qemu/101/snapshot", vec![("snapname", "s1")]),
        ] {
            let t = api.post(path, &args).await;
            assert_eq!(api.wait(&t).await, "VM is locked (backup)", "{path}");
        }
        assert_eq!(sim.vm_status(101), Some("running"));
        // progress shows up in the log while it runs
        let log_path = format!("/nodes/pve1/tasks/{}/log", enc(upid.as_str().unwrap()));
        assert_eq!(api.wait(&upid).await, "OK");
        assert!(
            api.get("/nodes/pve1/qemu/101/config")
                .await
                .get("lock")
                .is_none()
        );
        let log: Vec<String> = api
            .get(&log_path)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["t"].as_str().unwrap().to_string())
            .collect();
        assert!(log.iter().any(|l| l.contains("50%")));
        assert!(
            log.iter()
                .any(|l| l.contains("creating vzdump archive") && l.contains("vzdump-qemu-101-"))
        );
        assert_eq!(log.last().unwrap(), "TASK OK");
        let content = api
            .get_q(
                "/nodes/pve1/storage/backup/content",
                &[("content", "backup"), ("vmid", "101")],
            )
            .await;
        let newest = content
            .as_array()
            .unwrap()
            .iter()
            .max_by_key(|v| v["ctime"].as_u64())
            .unwrap()
            .clone();
        let volid = newest["volid"].as_str().unwrap();
        let name = volid.strip_prefix("backup:backup/").unwrap();
        assert!(
            name.starts_with("vzdump-qemu-101-") && name.ends_with(".vma.zst"),
            "{name}"
        );
        let stamp = &name["vzdump-qemu-101-".len()..name.len() - ".vma.zst".len()];
        assert_eq!(stamp.len(), "YYYY_MM_DD-HH_MM_SS".len());
        assert_eq!(newest["notes"], "db-01 on pve1");
        assert_eq!(newest["protected"], 1);
        assert!(newest["size"].as_u64().unwrap() > 0);
        // protected backups cannot be deleted until unprotected
        let vpath = format!("/nodes/pve1/storage/backup/content/{}", enc(volid));
        let (s, _) = api.call(Method::DELETE, &vpath, &[]).await;
        assert_eq!(s, 500);
        api.put(&vpath, &[("protected", "0"), ("notes", "keep")])
            .await;
        let t = api.delete(&vpath).await;
        // Like PVE, the imgdel worker has an empty id: the volid holds `:` and would break
        // the UPID's nine fields.
        let u = t.as_str().unwrap();
        let parts: Vec<&str> = u.split(':').collect();
        assert_eq!(parts.len(), 9, "{u}");
        assert_eq!((parts[5], parts[6], parts[8]), ("imgdel", "", ""), "{u}");
        assert_eq!(api.wait(&t).await, "OK");
        assert!(!sim.backup_volids(101).contains(&volid.to_string()));
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn snapshots_current_entry_and_rollback() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let list = api.get("/nodes/pve1/qemu/100/snapshot").await;
        let cur = find_by(&list, "name", "current");
        assert_eq!(cur["parent"], "after-upgrade");
        let (s, b) = api
            .call(
                Method::POST,
                "/nodes/pve1/qemu/100/snapshot",
                &[("snapname", "1bad")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        let (s, b) = api
            .call(
                Method::POST,
                "/nodes/pve1/qemu/100/snapshot",
                &[("snapname", "current")],
            )
            .await;
        assert_eq!(
            (s, b["message"].as_str()),
            (
                500,
                Some("unable to use snapshot name 'current' (reserved name)\n")
            )
        );
        let t = api
            .post(
                "/nodes/pve1/qemu/100/snapshot",
                &[
                    ("snapname", "pre"),
                    ("description", "before change"),
                    ("vmstate", "1"),
                ],
            )
            .await;
        assert_eq!(
            api.get("/nodes/pve1/qemu/100/config").await["lock"],
            "snapshot"
        );
        assert_eq!(api.wait(&t).await, "OK");
        let list = api.get("/nodes/pve1/qemu/100/snapshot").await;
        let pre = find_by(&list, "name", "pre");
        assert_eq!(pre["parent"], "after-upgrade");
        assert_eq!(pre["vmstate"], 1);
        let t = api
            .post("/nodes/pve1/qemu/100/snapshot", &[("snapname", "pre")])
            .await;
        assert_eq!(api.wait(&t).await, "snapshot name 'pre' already used");
        // change the config, roll back, get it back
        api.put(
            "/nodes/pve1/qemu/100/config",
            &[("description", "changed"), ("onboot", "0")],
        )
        .await;
        let t = api
            .post("/nodes/pve1/qemu/100/snapshot/pre/rollback", &[])
            .await;
        assert_eq!(
            api.get("/nodes/pve1/qemu/100/config").await["lock"],
            "rollback"
        );
        assert_eq!(api.wait(&t).await, "OK");
        let cfg = api.get("/nodes/pve1/qemu/100/config").await;
        assert_eq!(cfg["onboot"], 1);
        // PVE keeps the current description across a rollback
        assert_eq!(cfg["description"], "changed");
        assert_eq!(cfg["parent"], "pre");
        assert_eq!(
            sim.vm_status(100),
            Some("running"),
            "vmstate snapshot resumes running"
        );
        // delete re-parents
        let t = api
            .delete("/nodes/pve1/qemu/100/snapshot/after-upgrade")
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        let list = api.get("/nodes/pve1/qemu/100/snapshot").await;
        let pre = find_by(&list, "name", "pre");
        assert_eq!(pre["parent"], "before-upgrade");
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn restore_replaces_config_drops_snapshots_keeps_mac() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let before = sim.vm_config(100).unwrap();
        let mac = mac_of(&before["net0"]);
        let archive = sim.backup_volids(100).pop().unwrap();
        // restoring over an existing VM needs force, and a stopped VM
        let (s, b) = api
            .call(
                Method::POST,
                "/nodes/pve1/qemu",
                &[("vmid", "100"), ("archive", &archive)],
            )
            .await;
        assert_eq!(s, 500, "{b}");
        assert!(b["message"].as_str().unwrap().contains("already exists"));
        let (s, _) = api
            .call(
                Method::POST,
                "/nodes/pve1/qemu",
                &[("vmid", "100"), ("archive", &archive), ("force", "1")],
            )
            .await;
        assert_eq!(s, 500, "running VM refuses restore");
        let t = api.post("/nodes/pve1/qemu/100/status/stop", &[]).await;
        api.wait(&t).await;
        api.put("/nodes/pve1/qemu/100/config", &[("memory", "16384")])
            .await;
        let t = api
            .post(
                "/nodes/pve1/qemu",
                &[
                    ("vmid", "100"),
                    ("archive", &archive),
                    ("force", "1"),
                    ("cores", "3"),
                ],
            )
            .await;
        assert_eq!(sim.vm_lock(100).as_deref(), Some("create"));
        assert_eq!(api.wait(&t).await, "OK");
        let after = sim.vm_config(100).unwrap();
        assert_eq!(after["memory"], "4096", "config comes from the archive");
        assert_eq!(
            after["cores"], "3",
            "non-disk options sent with the restore override"
        );
        assert_eq!(mac_of(&after["net0"]), mac, "MAC kept without unique");
        assert!(!after.contains_key("scsi1"), "backup=0 disk vanished");
        assert!(!after.contains_key("parent"));
        assert!(
            sim.snapshot_names(100).is_empty(),
            "restore drops snapshots"
        );
        let fw = api.get("/nodes/pve1/qemu/100/firewall/rules").await;
        assert_eq!(
            fw.as_array().unwrap().len(),
            3,
            "firewall comes from the archive"
        );
        // unique=1 changes the MAC
        let t = api
            .post(
                "/nodes/pve1/qemu",
                &[
                    ("vmid", "100"),
                    ("archive", &archive),
                    ("force", "1"),
                    ("unique", "1"),
                ],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        assert_ne!(mac_of(&sim.vm_config(100).unwrap()["net0"]), mac);
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn config_mac_rule_digest_delete_and_pending() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        api.put(
            "/nodes/pve2/qemu/102/config",
            &[("net1", "virtio,bridge=vmbr1,tag=30")],
        )
        .await;
        let cfg = api.get("/nodes/pve2/qemu/102/config").await;
        let net1 = cfg["net1"].as_str().unwrap();
        assert!(
            net1.starts_with("virtio=BC:24:11:") && net1.contains("tag=30"),
            "{net1}"
        );
        // keys the schema does not know are refused like PVE does
        let (s, b) = api
            .call(
                Method::PUT,
                "/nodes/pve2/qemu/102/config",
                &[("colour", "blue")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        assert!(b["errors"]["colour"].is_string());
        // digest: stale digest fails
        let digest = cfg["digest"].as_str().unwrap().to_string();
        api.put(
            "/nodes/pve2/qemu/102/config",
            &[("description", "x"), ("digest", &digest)],
        )
        .await;
        let (s, b) = api
            .call(
                Method::PUT,
                "/nodes/pve2/qemu/102/config",
                &[("description", "y"), ("digest", &digest)],
            )
            .await;
        assert_eq!(s, 500);
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("detected modified configuration")
        );
        api.put(
            "/nodes/pve2/qemu/102/config",
            &[("delete", "description,net1")],
        )
        .await;
        let cfg = api.get("/nodes/pve2/qemu/102/config").await;
        assert!(cfg.get("description").is_none() && cfg.get("net1").is_none());
        // cores on a running VM stay pending until restart
        api.put("/nodes/pve1/qemu/101/config", &[("cores", "8")])
            .await;
        assert_eq!(
            api.get_q("/nodes/pve1/qemu/101/config", &[("current", "1")])
                .await["cores"],
            4
        );
        assert_eq!(api.get("/nodes/pve1/qemu/101/config").await["cores"], 8);
        let pending = api.get("/nodes/pve1/qemu/101/pending").await;
        let c = find_by(&pending, "key", "cores");
        assert_eq!(
            (c["value"].as_str(), c["pending"].as_str()),
            (Some("4"), Some("8"))
        );
        let t = api.post("/nodes/pve1/qemu/101/status/reboot", &[]).await;
        api.wait(&t).await;
        assert_eq!(
            api.get_q("/nodes/pve1/qemu/101/config", &[("current", "1")])
                .await["cores"],
            8
        );
        // resize grows, refuses to shrink
        let t = api
            .put(
                "/nodes/pve1/qemu/101/resize",
                &[("disk", "scsi0"), ("size", "+10G")],
            )
            .await;
        api.wait(&t).await;
        assert!(sim.vm_config(101).unwrap()["scsi0"].ends_with("size=110G"));
        // like PVE, the resize worker refuses to shrink
        let t = api
            .put(
                "/nodes/pve1/qemu/101/resize",
                &[("disk", "scsi0"), ("size", "10G")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "shrinking disks is not supported");
        let (s, _) = api
            .call(
                Method::PUT,
                "/nodes/pve1/qemu/101/resize",
                &[("disk", "scsi0"), ("size", "ten")],
            )
            .await;
        assert_eq!(s, 400);
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn firewall_rules_insert_at_top_disabled_move_and_digest() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        for base in ["/cluster/firewall", "/nodes/pve1/qemu/100/firewall"] {
            let rules = format!("{base}/rules");
            let n = api.get(&rules).await.as_array().unwrap().len();
            api.post(
                &rules,
                &[
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("proto", "tcp"),
                    ("dport", "22"),
                    ("pos", "5"),
                ],
            )
            .await;
            let list = api.get(&rules).await;
            assert_eq!(list.as_array().unwrap().len(), n + 1);
            assert_eq!(list[0]["dport"], "22", "inserted at the top, pos ignored");
            assert_eq!(list[0]["enable"], 0, "disabled unless enable is sent");
            assert_eq!(list[0]["pos"], 0);
            // moveto: rule 0 to before the old rule 2
            let second = list[1].clone();
            api.put(&format!("{rules}/0"), &[("moveto", "2")]).await;
            let moved = api.get(&rules).await;
            assert_eq!(moved[0]["comment"], second["comment"]);
            assert_eq!(moved[1]["dport"], "22");
            // digest mismatch refuses
            let digest = api.get(&format!("{base}/options")).await["digest"]
                .as_str()
                .unwrap()
                .to_string();
            api.put(
                &format!("{rules}/1"),
                &[("enable", "1"), ("digest", &digest)],
            )
            .await;
            let (s, b) = api
                .call(Method::DELETE, &format!("{rules}/1?digest={digest}"), &[])
                .await;
            assert_eq!(s, 500, "{b}");
            api.delete(&format!("{rules}/1")).await;
            assert_eq!(api.get(&rules).await.as_array().unwrap().len(), n);
            // ipsets and aliases
            api.post(
                &format!("{base}/ipset"),
                &[("name", "blocked"), ("comment", "bad actors")],
            )
            .await;
            api.post(
                &format!("{base}/ipset/blocked"),
                &[("cidr", "192.0.2.0/24")],
            )
            .await;
            let entries = api.get(&format!("{base}/ipset/blocked")).await;
            assert_eq!(entries[0]["cidr"], "192.0.2.0/24");
            let (s, _) = api
                .call(Method::DELETE, &format!("{base}/ipset/blocked"), &[])
                .await;
            assert_eq!(s, 500, "non-empty ipset");
            api.delete(&format!("{base}/ipset/blocked/{}", enc("192.0.2.0/24")))
                .await;
            api.delete(&format!("{base}/ipset/blocked")).await;
            api.post(
                &format!("{base}/aliases"),
                &[("name", "web1"), ("cidr", "203.0.113.5")],
            )
            .await;
            assert_eq!(
                api.get(&format!("{base}/aliases/web1")).await["cidr"],
                "203.0.113.5"
            );
            api.put(&format!("{base}/options"), &[("enable", "1")])
                .await;
            assert_eq!(api.get(&format!("{base}/options")).await["enable"], 1);
        }
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn served_requests_are_counted_by_caller_and_route() {
    timed(async {
        let sim = common::start().await;
        let admin = Api::token(&sim);
        let ro = sim
            .readonly_token()
            .expect("read-only token")
            .header_value();
        let auditor = Api::with_header(&sim, Some(ro));
        for _ in 0..3 {
            admin.get("/cluster/resources").await;
        }
        admin.get("/nodes/pve1/qemu/100/status/current").await;
        auditor.get("/cluster/resources").await;
        // Refused before being served: an injected fault and a bad token are not counted.
        sim.fail_requests(RequestMatch::path("/version"), 503, 1);
        assert_eq!(admin.call(Method::GET, "/version", &[]).await.0, 503);
        let stranger = Api::with_header(&sim, Some("PVEAPIToken=x@pve!y=nope".into()));
        assert_eq!(stranger.call(Method::GET, "/version", &[]).await.0, 401);
        sim.clear_faults();

        let admin_id = sim.token().expect("token").full_id();
        let count = |caller: &str, route: &str| {
            sim.served_requests()
                .iter()
                .filter(|r| r.caller == caller && r.route == route && r.method == "GET")
                .map(|r| r.count)
                .sum::<u64>()
        };
        assert_eq!(count(&admin_id, "/cluster/resources"), 3);
        assert_eq!(
            count(&admin_id, "/nodes/{node}/qemu/{vmid}/status/current"),
            1
        );
        assert_eq!(count("auditor@pve!readonly", "/cluster/resources"), 1);
        assert_eq!(count(&admin_id, "/version"), 0, "the 503 was not served");
        assert!(
            sim.served_requests()
                .iter()
                .all(|r| !r.caller.starts_with("x@pve")),
            "{:?}",
            sim.served_requests()
        );
        let total: u64 = sim.served_requests().iter().map(|r| r.count).sum();
        assert_eq!(total, 5);
    })
    .await;
}

#[tokio::test]
async fn injected_faults() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        // HTTP statuses for the next N matching requests
        sim.fail_requests(
            RequestMatch::method_path("GET", "/cluster/resources"),
            503,
            2,
        );
        assert_eq!(
            api.call(Method::GET, "/cluster/resources", &[]).await.0,
            503
        );
        assert_eq!(
            api.call(Method::GET, "/nodes", &[]).await.0,
            200,
            "other paths unaffected"
        );
        assert_eq!(
            api.call(Method::GET, "/cluster/resources", &[]).await.0,
            503
        );
        assert_eq!(
            api.call(Method::GET, "/cluster/resources", &[]).await.0,
            200
        );
        sim.fail_requests(RequestMatch::path("/version"), 502, 1);
        assert_eq!(api.call(Method::GET, "/version", &[]).await.0, 502);
        // dropped connection
        sim.drop_connections(RequestMatch::path("/version"), 1);
        let r = api
            .client
            .get(format!("{}/version", api.base))
            .header("Authorization", sim.token_header())
            .send()
            .await;
        assert!(r.is_err(), "connection dropped");
        assert_eq!(api.call(Method::GET, "/version", &[]).await.0, 200);
        // task failure and warnings
        sim.fail_next_task("vzdump", "vzdump: storage unreachable");
        let t = api
            .post(
                "/nodes/pve1/vzdump",
                &[("vmid", "100"), ("storage", "backup")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "vzdump: storage unreachable");
        assert_eq!(sim.vm_lock(100), None, "lock released on failure");
        sim.warn_next_task("qmstop", 2);
        let t = api.post("/nodes/pve1/qemu/101/status/stop", &[]).await;
        assert_eq!(api.wait(&t).await, "WARNINGS: 2");
        // task status answers 400 just after dispatch
        sim.set_task_status_lag(Duration::from_secs(5));
        let t = api.post("/nodes/pve1/qemu/101/status/start", &[]).await;
        let status_path = format!("/nodes/pve1/tasks/{}/status", enc(t.as_str().unwrap()));
        assert_eq!(api.call(Method::GET, &status_path, &[]).await.0, 400);
        sim.set_task_status_lag(Duration::ZERO);
        assert_eq!(api.wait(&t).await, "OK");
        // latency
        sim.set_latency(Duration::from_millis(150));
        let t0 = std::time::Instant::now();
        api.get("/version").await;
        assert!(t0.elapsed() >= Duration::from_millis(150));
        sim.clear_faults();
        // a lock that appears mid-operation
        sim.schedule_lock(
            104,
            "backup",
            Duration::from_millis(50),
            Some(Duration::from_millis(1000)),
        );
        assert_eq!(sim.vm_lock(104), None, "not yet");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let t = api.post("/nodes/pve3/qemu/104/status/shutdown", &[]).await;
        assert_eq!(api.wait(&t).await, "VM is locked (backup)");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(sim.vm_lock(104), None);
        // a node that disappears
        sim.set_node_online("pve3", false).unwrap();
        assert_eq!(api.call(Method::GET, "/nodes/pve3/qemu", &[]).await.0, 595);
        let res = api.get_q("/cluster/resources", &[("type", "vm")]).await;
        let vm104 = find_by(&res, "vmid", 104);
        assert_eq!(vm104["status"], "unknown");
        let nodes = api.get("/nodes").await;
        assert!(
            nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["node"] == "pve3" && n["status"] == "offline")
        );
        // a full storage fails backups with an error exit status
        sim.set_node_online("pve3", true).unwrap();
        sim.set_storage_total("backup", sim.storage_used("backup") + 1024)
            .unwrap();
        let t = api
            .post(
                "/nodes/pve3/vzdump",
                &[("vmid", "104"), ("storage", "backup")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "job errors");
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn clone_template_agent_cloudinit_and_rrd() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let t = api
            .post(
                "/nodes/pve1/qemu/9000/clone",
                &[("newid", "200"), ("name", "new-vps"), ("target", "pve2")],
            )
            .await;
        assert_eq!(sim.vm_lock(200).as_deref(), Some("clone"));
        assert_eq!(api.wait(&t).await, "OK");
        let cfg = api.get("/nodes/pve2/qemu/200/config").await;
        assert_eq!(cfg["name"], "new-vps");
        assert!(cfg.get("template").is_none());
        let tpl_mac = mac_of(&sim.vm_config(9000).unwrap()["net0"]);
        assert_ne!(
            mac_of(cfg["net0"].as_str().unwrap()),
            tpl_mac,
            "clone gets a new MAC"
        );
        // cloud-init: change stays pending until regenerate
        api.put(
            "/nodes/pve2/qemu/200/config",
            &[
                ("ipconfig0", "ip=198.51.100.20/24,gw=198.51.100.1"),
                ("ciuser", "alice"),
            ],
        )
        .await;
        let ci = api.get("/nodes/pve2/qemu/200/cloudinit").await;
        assert!(
            ci.as_array()
                .unwrap()
                .iter()
                .any(|e| e["key"] == "ipconfig0"
                    && e["pending"] == "ip=198.51.100.20/24,gw=198.51.100.1")
        );
        api.put("/nodes/pve2/qemu/200/cloudinit", &[]).await;
        let ci = api.get("/nodes/pve2/qemu/200/cloudinit").await;
        assert!(
            ci.as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("pending").is_none()),
            "{ci}"
        );
        let user = api
            .get_q("/nodes/pve2/qemu/200/cloudinit/dump", &[("type", "user")])
            .await;
        assert!(user.as_str().unwrap().contains("user: alice"));
        let net = api
            .get_q(
                "/nodes/pve2/qemu/200/cloudinit/dump",
                &[("type", "network")],
            )
            .await;
        assert!(net.as_str().unwrap().contains("198.51.100.20/24"));
        // agent: not while stopped; answers once running; times out when told to
        let (s, b) = api
            .call(Method::POST, "/nodes/pve2/qemu/200/agent/ping", &[])
            .await;
        assert_eq!(s, 500, "{b}");
        let t = api.post("/nodes/pve2/qemu/200/status/start", &[]).await;
        api.wait(&t).await;
        api.post("/nodes/pve2/qemu/200/agent/ping", &[]).await;
        let ifs = api
            .get("/nodes/pve2/qemu/200/agent/network-get-interfaces")
            .await;
        assert!(ifs["result"].as_array().unwrap().iter().any(|i| {
            i["ip-addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["ip-address"] == "198.51.100.20")
        }));
        api.post(
            "/nodes/pve2/qemu/200/agent/set-user-password",
            &[("username", "alice"), ("password", "s3cret-pass")],
        )
        .await;
        let (s, _) = api
            .call(Method::POST, "/nodes/pve2/qemu/103/agent/ping", &[])
            .await;
        assert_eq!(s, 500, "no agent configured");
        sim.set_agent_responding(200, false).unwrap();
        let (_, b) = api
            .call(Method::POST, "/nodes/pve2/qemu/200/agent/ping", &[])
            .await;
        assert_eq!(b["message"], "QEMU guest agent is not running\n");
        // rrd: 70 rows, deterministic
        for tf in ["hour", "day", "week", "month", "year"] {
            let a = api
                .get_q(
                    "/nodes/pve1/qemu/100/rrddata",
                    &[("timeframe", tf), ("cf", "AVERAGE")],
                )
                .await;
            let rows = a.as_array().unwrap();
            assert_eq!(rows.len(), 70);
            for k in [
                "time",
                "cpu",
                "maxcpu",
                "mem",
                "maxmem",
                "diskread",
                "diskwrite",
                "netin",
                "netout",
            ] {
                assert!(rows[0].get(k).is_some(), "{k}");
            }
        }
        let a = api
            .get_q("/nodes/pve1/qemu/100/rrddata", &[("timeframe", "day")])
            .await;
        let b = api
            .get_q("/nodes/pve1/qemu/100/rrddata", &[("timeframe", "day")])
            .await;
        assert_eq!(a, b);
        // delete: refuses while running, works when stopped
        let (s, _) = api.call(Method::DELETE, "/nodes/pve2/qemu/200", &[]).await;
        assert_eq!(s, 500);
        let t = api.post("/nodes/pve2/qemu/200/status/stop", &[]).await;
        api.wait(&t).await;
        let t = api.delete("/nodes/pve2/qemu/200").await;
        api.wait(&t).await;
        assert!(sim.vm_config(200).is_none());
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn create_programmatic_and_generated_vms() {
    timed(async {
        let sim = common::start_with(Scenario::Minimal).await;
        let api = Api::token(&sim);
        assert!(
            api.get("/cluster/resources")
                .await
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["type"] != "qemu")
        );
        sim.add_vm(VmSpec::new(300, "pve1").name("added").running(true))
            .unwrap();
        assert!(sim.add_vm(VmSpec::new(300, "pve1")).is_err());
        assert_eq!(
            api.get("/nodes/pve1/qemu/300/status/current").await["status"],
            "running"
        );
        let t = api
            .post(
                "/nodes/pve1/qemu",
                &[
                    ("vmid", "301"),
                    ("name", "api-made"),
                    ("memory", "2048"),
                    ("cores", "2"),
                    ("scsi0", "local-lvm:20"),
                    ("net0", "virtio,bridge=vmbr0"),
                    ("ide2", "local-lvm:cloudinit,media=cdrom"),
                ],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        let cfg = sim.vm_config(301).unwrap();
        assert_eq!(cfg["scsi0"], "local-lvm:vm-301-disk-0,size=20G");
        assert!(cfg["net0"].starts_with("virtio=BC:24:11:"));
        sim.generate_vms(10_000, 10_000);
        let res = api.get_q("/cluster/resources", &[("type", "vm")]).await;
        assert_eq!(res.as_array().unwrap().len(), 10_002);
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn vnc_websocket_speaks_rfb() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    timed(async {
        let sim = common::start().await;
        let anon = Api::with_header(&sim, None);
        let (user, pass) = sim.user_password().unwrap();
        let (_, b) = anon
            .call(
                Method::POST,
                "/access/ticket",
                &[("username", user), ("password", pass)],
            )
            .await;
        let ticket = b["data"]["ticket"].as_str().unwrap().to_string();
        let mut session = Api::with_header(&sim, None);
        session.cookie = Some(enc(&ticket));
        session.csrf = Some(
            b["data"]["CSRFPreventionToken"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let proxy = session
            .post("/nodes/pve1/qemu/100/vncproxy", &[("websocket", "1")])
            .await;
        let port = proxy["port"].as_u64().unwrap().to_string();
        let vncticket = proxy["ticket"].as_str().unwrap().to_string();
        assert!(
            proxy["cert"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        let ws_url = format!(
            "{}/api2/json/nodes/pve1/qemu/100/vncwebsocket?port={port}&vncticket={}",
            sim.url().replace("http://", "ws://"),
            enc(&vncticket)
        );
        // the VNC ticket belongs to the session that asked for it: an API token cannot use it
        let mut req = ws_url.clone().into_client_request().unwrap();
        req.headers_mut()
            .insert("Authorization", sim.token_header().parse().unwrap());
        assert!(tokio_tungstenite::connect_async(req).await.is_err());
        // a wrong vnc ticket is refused
        let mut req = ws_url
            .replace("vncticket=", "vncticket=x")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Cookie",
            format!("PVEAuthCookie={}", enc(&ticket)).parse().unwrap(),
        );
        assert!(tokio_tungstenite::connect_async(req).await.is_err());
        // the session's ticket works
        let mut req = ws_url.into_client_request().unwrap();
        req.headers_mut().insert(
            "Cookie",
            format!("PVEAuthCookie={}", enc(&ticket)).parse().unwrap(),
        );
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket opens");
        let mut buf: Vec<u8> = Vec::new();
        async fn need(
            ws: &mut (
                     impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
                     + Unpin
                 ),
            buf: &mut Vec<u8>,
            n: usize,
        ) -> Vec<u8> {
            while buf.len() < n {
                if let Message::Binary(b) = ws.next().await.expect("open").expect("frame") {
                    buf.extend_from_slice(&b);
                }
            }
            buf.drain(..n).collect()
        }
        assert_eq!(need(&mut ws, &mut buf, 12).await, b"RFB 003.008\n");
        ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(
            need(&mut ws, &mut buf, 2).await,
            vec![1, 1],
            "one security type: None"
        );
        ws.send(Message::Binary(vec![1].into())).await.unwrap();
        assert_eq!(
            need(&mut ws, &mut buf, 4).await,
            vec![0, 0, 0, 0],
            "security result OK"
        );
        ws.send(Message::Binary(vec![1].into())).await.unwrap();
        let init = need(&mut ws, &mut buf, 24).await;
        let w = u16::from_be_bytes([init[0], init[1]]);
        let h = u16::from_be_bytes([init[2], init[3]]);
        assert_eq!(init[4], 32, "32 bpp");
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
        assert_eq!(need(&mut ws, &mut buf, name_len).await, b"VM 100");
        let mut fbur = vec![3, 0];
        for v in [0u16, 0, w, h] {
            fbur.extend_from_slice(&v.to_be_bytes());
        }
        ws.send(Message::Binary(fbur.into())).await.unwrap();
        let head = need(&mut ws, &mut buf, 16).await;
        assert_eq!(head[0], 0, "FramebufferUpdate");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1);
        assert_eq!(&head[12..16], &[0, 0, 0, 0], "raw encoding");
        let pixels = need(&mut ws, &mut buf, w as usize * h as usize * 4).await;
        let first = &pixels[0..4];
        assert!(pixels.chunks(4).any(|p| p != first), "picture is not blank");
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn detached_disks_become_unused_and_deleting_unused_destroys_them() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let cfg_path = "/nodes/pve1/qemu/100/config";
        let images = || async {
            api.get_q(
                "/nodes/pve1/storage/local-lvm/content",
                &[("content", "images"), ("vmid", "100")],
            )
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["volid"].as_str().unwrap().to_string(),
                    v["size"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
        };
        let used_before = sim.storage_used("local-lvm");
        // Deleting a disk key keeps the volume as `unused0`.
        api.put(cfg_path, &[("delete", "scsi1")]).await;
        let cfg = api.get(cfg_path).await;
        assert!(cfg.get("scsi1").is_none(), "{cfg}");
        assert_eq!(cfg["unused0"], "local-lvm:vm-100-disk-1", "{cfg}");
        assert!(
            images()
                .await
                .contains(&("local-lvm:vm-100-disk-1".to_string(), 50 << 30))
        );
        assert_eq!(sim.storage_used("local-lvm"), used_before);
        // CD-ROM and cloud-init drives are just removed.
        api.put(cfg_path, &[("delete", "ide0,ide2")]).await;
        let cfg = api.get(cfg_path).await;
        assert!(
            cfg.get("ide0").is_none() && cfg.get("ide2").is_none(),
            "{cfg}"
        );
        assert!(cfg.get("unused1").is_none(), "{cfg}");
        // A new volume on the key; then re-attaching the unused one detaches the new one.
        api.put(cfg_path, &[("scsi1", "local-lvm:4")]).await;
        let cfg = api.get(cfg_path).await;
        let scsi1 = cfg["scsi1"].as_str().unwrap();
        assert!(scsi1.starts_with("local-lvm:vm-100-disk-2,"), "{scsi1}");
        api.put(cfg_path, &[("scsi1", "local-lvm:vm-100-disk-1,size=50G")])
            .await;
        let cfg = api.get(cfg_path).await;
        assert_eq!(cfg["unused0"], "local-lvm:vm-100-disk-2", "{cfg}");
        assert!(cfg.get("unused1").is_none(), "{cfg}");
        let vols = images().await;
        assert!(
            cfg["scsi1"]
                .as_str()
                .unwrap()
                .starts_with("local-lvm:vm-100-disk-1,")
        );
        // listed once: as the attached disk, no longer as an unused volume
        assert_eq!(
            vols.iter()
                .filter(|(v, _)| v == "local-lvm:vm-100-disk-1")
                .count(),
            1,
            "{vols:?}"
        );
        assert!(
            vols.contains(&("local-lvm:vm-100-disk-2".to_string(), 4 << 30)),
            "{vols:?}"
        );
        // Deleting `unusedN` destroys the volume.
        api.put(cfg_path, &[("delete", "unused0")]).await;
        let cfg = api.get(cfg_path).await;
        assert!(cfg.get("unused0").is_none(), "{cfg}");
        assert!(
            !images()
                .await
                .iter()
                .any(|(v, _)| v == "local-lvm:vm-100-disk-2")
        );
        assert_eq!(sim.storage_used("local-lvm"), used_before);
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn demo_cd_drive_is_free_and_cloud_init_lives_in_ide0() {
    timed(async {
        let sim = common::start().await;
        let ids = sim.vm_ids();
        assert!(ids.contains(&9000) && ids.contains(&105), "{ids:?}");
        for vmid in ids {
            let cfg = sim.vm_config(vmid).unwrap();
            assert_eq!(cfg["ide2"], "none,media=cdrom", "VM {vmid}: {cfg:?}");
            let ci: Vec<&String> = cfg
                .iter()
                .filter(|(_, v)| v.contains("cloudinit"))
                .map(|(k, _)| k)
                .collect();
            if vmid == 105 {
                assert!(ci.is_empty(), "{cfg:?}");
            } else {
                assert_eq!(ci, ["ide0"], "VM {vmid}: {cfg:?}");
                assert_eq!(
                    cfg["ide0"],
                    format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom")
                );
            }
        }
        sim.shutdown().await;
    })
    .await;
}

/// The cluster firewall digest (security groups live in `cluster.fw`).
async fn cluster_digest(api: &Api) -> String {
    api.get("/cluster/firewall/options").await["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn security_groups_list_create_comment_and_refuse_duplicates() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let groups = "/cluster/firewall/groups";
        assert_eq!(api.get(groups).await, serde_json::json!([]));
        api.post(groups, &[("group", "webserver"), ("comment", "http")])
            .await;
        api.post(groups, &[("group", "ssh-in")]).await;
        let list = api.get(groups).await;
        let digest = cluster_digest(&api).await;
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert_eq!(list[0]["group"], "ssh-in");
        assert!(list[0].get("comment").is_none());
        assert_eq!(list[1]["group"], "webserver");
        assert_eq!(list[1]["comment"], "http");
        assert_eq!(list[1]["digest"], digest.as_str(), "the cluster.fw digest");
        // duplicate, bad names
        let (s, b) = api
            .call(Method::POST, groups, &[("group", "webserver")])
            .await;
        assert_eq!(s, 400, "{b}");
        assert!(
            b["errors"]["group"]
                .as_str()
                .unwrap()
                .contains("already exists")
        );
        for bad in ["1abc", "a", "this-name-is-far-too-long"] {
            let (s, _) = api.call(Method::POST, groups, &[("group", bad)]).await;
            assert_eq!(s, 400, "{bad}");
        }
        // rename == group: change the comment; stale digest refused
        api.post(
            groups,
            &[
                ("group", "webserver"),
                ("rename", "webserver"),
                ("comment", "http and https"),
                ("digest", &digest),
            ],
        )
        .await;
        assert_eq!(api.get(groups).await[1]["comment"], "http and https");
        let (s, b) = api
            .call(
                Method::POST,
                groups,
                &[
                    ("group", "www"),
                    ("rename", "webserver"),
                    ("digest", &digest),
                ],
            )
            .await;
        assert_eq!(s, 500, "{b}");
        assert!(b["message"].as_str().unwrap().contains("modified"));
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn security_group_rules_insert_at_top_disabled_move_and_digest() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        api.post("/cluster/firewall/groups", &[("group", "admin")])
            .await;
        let rules = "/cluster/firewall/groups/admin";
        for (port, enable) in [("80", None), ("443", Some("1")), ("22", None)] {
            let mut form = vec![
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", port),
                ("pos", "2"),
            ];
            if let Some(e) = enable {
                form.push(("enable", e));
            }
            api.post(rules, &form).await;
        }
        let list = api.get(rules).await;
        let ports: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dport"].clone())
            .collect();
        assert_eq!(
            ports,
            ["22", "443", "80"],
            "each inserted at the top, pos ignored"
        );
        assert_eq!(list[0]["enable"], 0, "disabled unless enable is sent");
        assert_eq!(list[1]["enable"], 1);
        assert_eq!(list[2]["pos"], 2);
        let digest = cluster_digest(&api).await;
        assert_eq!(list[0]["digest"], digest.as_str());
        // get one rule
        let one = api.get(&format!("{rules}/1")).await;
        assert_eq!(one["dport"], "443");
        assert_eq!(one["pos"], 1);
        let (s, b) = api.call(Method::GET, &format!("{rules}/3"), &[]).await;
        assert_eq!(s, 500, "{b}");
        // update keeps the position, moveto splices like PVE
        api.put(
            &format!("{rules}/0"),
            &[("enable", "1"), ("comment", "ssh"), ("digest", &digest)],
        )
        .await;
        assert_eq!(api.get(&format!("{rules}/0")).await["comment"], "ssh");
        api.put(&format!("{rules}/0"), &[("moveto", "2")]).await;
        let ports: Vec<_> = api
            .get(rules)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dport"].clone())
            .collect();
        assert_eq!(ports, ["443", "22", "80"]);
        // a stale digest refuses update and delete
        for method in [Method::PUT, Method::DELETE] {
            let (s, b) = api
                .call(
                    method.clone(),
                    &format!("{rules}/0?digest={digest}"),
                    &[("digest", &digest), ("enable", "0")],
                )
                .await;
            assert_eq!(s, 500, "{method} {b}");
            assert!(b["message"].as_str().unwrap().contains("modified"));
        }
        let fresh = cluster_digest(&api).await;
        let (s, b) = api
            .call(Method::DELETE, &format!("{rules}/1"), &[("digest", &fresh)])
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(api.get(rules).await.as_array().unwrap().len(), 2);
        // a group cannot contain a group rule; unknown groups answer "no such security group"
        let (s, b) = api
            .call(
                Method::POST,
                rules,
                &[("type", "group"), ("action", "admin")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        let (s, b) = api
            .call(Method::GET, "/cluster/firewall/groups/nope", &[])
            .await;
        assert_eq!(s, 500, "{b}");
        assert_eq!(
            b["message"].as_str().unwrap().trim(),
            "no such security group 'nope'"
        );
        sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn security_group_delete_refused_while_not_empty_or_referenced_rename_follows_refs() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let groups = "/cluster/firewall/groups";
        api.post(groups, &[("group", "mgmt")]).await;
        // rules may only name existing groups
        let vm_rules = "/nodes/pve1/qemu/100/firewall/rules";
        let (s, b) = api
            .call(
                Method::POST,
                vm_rules,
                &[("type", "group"), ("action", "missing")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        assert!(
            b["errors"]["action"]
                .as_str()
                .unwrap()
                .contains("does not exist")
        );
        api.post(
            vm_rules,
            &[("type", "group"), ("action", "mgmt"), ("enable", "1")],
        )
        .await;
        api.post(
            "/cluster/firewall/rules",
            &[("type", "group"), ("action", "mgmt")],
        )
        .await;
        api.post(
            &format!("{groups}/mgmt"),
            &[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "22"),
            ],
        )
        .await;
        let (s, b) = api
            .call(Method::DELETE, &format!("{groups}/mgmt"), &[])
            .await;
        assert_eq!(s, 500, "{b}");
        assert_eq!(
            b["message"].as_str().unwrap().trim(),
            "Security group 'mgmt' is not empty"
        );
        api.delete(&format!("{groups}/mgmt/0")).await;
        let (s, b) = api
            .call(Method::DELETE, &format!("{groups}/mgmt"), &[])
            .await;
        assert_eq!(s, 500, "{b}");
        let msg = b["message"].as_str().unwrap();
        assert!(
            msg.contains("'mgmt' is still in use by cluster, VM 100"),
            "{msg}"
        );
        // rename moves the references along
        api.post(groups, &[("group", "admins"), ("rename", "mgmt")])
            .await;
        assert_eq!(api.get(vm_rules).await[0]["action"], "admins");
        assert_eq!(
            api.get("/cluster/firewall/rules").await[0]["action"],
            "admins"
        );
        let (s, _) = api
            .call(Method::POST, groups, &[("group", "x1"), ("rename", "mgmt")])
            .await;
        assert_eq!(s, 500, "the old name is gone");
        // once unreferenced it can go
        api.delete(&format!("{vm_rules}/0")).await;
        api.delete("/cluster/firewall/rules/0").await;
        api.delete(&format!("{groups}/admins")).await;
        assert_eq!(api.get(groups).await, serde_json::json!([]));
        let (s, _) = api
            .call(Method::DELETE, &format!("{groups}/admins"), &[])
            .await;
        assert_eq!(s, 500, "no such group");
        sim.shutdown().await;
    })
    .await;
}
