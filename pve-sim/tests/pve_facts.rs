//! Behaviours read from PVE's own source (each test names the file): the simulator must answer
//! like a real PVE, not like our idea of it.

mod common;

use std::time::Duration;

use common::{Api, enc, timed};
use reqwest::Method;
use serde_json::Value;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST /access/ticket without credentials; returns (status, data).
async fn ticket(anon: &Api, form: &[(&str, &str)]) -> (u16, Value) {
    let (s, b) = anon.call(Method::POST, "/access/ticket", form).await;
    (s, b["data"].clone())
}

// pve-access-control src/PVE/API2/AccessControl.pm (create_ticket, create_ticket_do) and
// src/PVE/AccessControl.pm (authenticate_user, authenticate_2nd_new_do).
#[tokio::test]
async fn two_step_totp_login() {
    timed(async {
        let sim = common::start().await;
        let anon = Api::with_header(&sim, None);
        let u = sim.totp_user().expect("a totp user").clone();
        let secret = u.totp_secret.clone().unwrap();

        // Step 1: the password alone yields NeedTFA and a partial ticket, no `cap`.
        let (s, d) = ticket(&anon, &[("username", &u.userid), ("password", &u.password)]).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["NeedTFA"], 1);
        assert!(d.get("cap").is_none(), "{d}");
        assert_eq!(d["username"], u.userid.as_str());
        let partial = d["ticket"].as_str().unwrap().to_string();
        assert!(
            partial.starts_with(r#"PVE:!tfa!{"totp":true}:"#),
            "{partial}"
        );

        // The partial ticket is no session.
        let mut half = Api::with_header(&sim, None);
        half.cookie = Some(enc(&partial));
        assert_eq!(half.call(Method::GET, "/nodes", &[]).await.0, 401);

        // A wrong code, a bare code without `totp:`, and otp+tfa-challenge together: 401.
        let good = pve_vps_sim::totp_code(&secret, now_s()).unwrap();
        let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
        for (pw, otp) in [
            (format!("totp:{wrong}"), None),
            (good.clone(), None),
            (format!("totp:{good}"), Some("totp:000000")),
        ] {
            let mut form = vec![
                ("username", u.userid.as_str()),
                ("tfa-challenge", partial.as_str()),
                ("password", pw.as_str()),
            ];
            if let Some(o) = otp {
                form.push(("otp", o));
            }
            let (s, b) = anon.call(Method::POST, "/access/ticket", &form).await;
            assert_eq!(s, 401, "{pw} {otp:?}: {b}");
            assert_eq!(b["message"], "authentication failure\n");
        }
        // The challenge is bound to its user.
        let (s, _) = ticket(
            &anon,
            &[
                ("username", "root@pam"),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 401);

        // Step 2: username + tfa-challenge + password=totp:<code> gives a full ticket.
        let (s, d) = ticket(
            &anon,
            &[
                ("username", &u.userid),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 200, "{d}");
        assert!(d.get("NeedTFA").is_none(), "{d}");
        assert!(d["cap"].is_object(), "{d}");
        let full = d["ticket"].as_str().unwrap().to_string();
        assert!(full.starts_with(&format!("PVE:{}:", u.userid)), "{full}");
        let mut session = Api::with_header(&sim, None);
        session.cookie = Some(enc(&full));
        assert_eq!(session.call(Method::GET, "/nodes", &[]).await.0, 200);

        // The same code is good once (proxmox-tfa keeps the last used step).
        let (s, _) = ticket(
            &anon,
            &[
                ("username", &u.userid),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 401, "a replayed code is refused");

        // Renewal with the full ticket needs no second factor.
        let (s, d) = ticket(&anon, &[("username", &u.userid), ("password", &full)]).await;
        assert_eq!(s, 200);
        assert!(d.get("NeedTFA").is_none());
        // A user without TFA logs in in one step as before.
        let (user, pass) = sim.user_password().unwrap();
        let (s, d) = ticket(&anon, &[("username", user), ("password", pass)]).await;
        assert_eq!(s, 200);
        assert!(d.get("NeedTFA").is_none() && d["cap"].is_object());
        sim.shutdown().await;
    })
    .await;
}

#[test]
fn totp_codes_follow_rfc6238() {
    // RFC 6238 appendix B, SHA-1, seed "12345678901234567890" (base32 below), last 6 digits.
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    for (t, want) in [
        (59, "287082"),
        (1_111_111_109, "081804"),
        (1_111_111_111, "050471"),
        (1_234_567_890, "005924"),
        (2_000_000_000, "279037"),
        (20_000_000_000, "353130"),
    ] {
        assert_eq!(pve_vps_sim::totp_code(seed, t).as_deref(), Some(want));
    }
    assert_eq!(pve_vps_sim::totp_code("not base32!", 59), None);
}

/// `(status, message)` of a call expected to fail.
async fn refused(api: &Api, m: Method, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let (s, b) = api.call(m, path, form).await;
    (s, b["message"].as_str().unwrap_or_default().to_string())
}

// pve-common src/PVE/UPID.pm (encode/decode): `UPID:node:PID:PSTART:STARTTIME:type:id:user:`
// with 8 hex digits for pid and starttime, 8-9 for pstart; no `:` or `/` in type, id, user.
fn check_upid(upid: &Value, kind: &str, id: &str) {
    let u = upid.as_str().expect("a UPID string");
    let p: Vec<&str> = u.split(':').collect();
    assert_eq!(p.len(), 9, "{u}");
    assert_eq!((p[0], p[5], p[6], p[8]), ("UPID", kind, id, ""), "{u}");
    assert!(
        p[2].len() == 8 && (8..=9).contains(&p[3].len()) && p[4].len() == 8,
        "{u}"
    );
    for h in &p[2..5] {
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()),
            "{u}"
        );
    }
    assert!(!p[7].is_empty() && !p[7].contains('/'), "{u}");
}

// qemu-server src/PVE/API2/Qemu.pm (vm_reset, vm_reboot, vm_start, vm_stop, vm_shutdown) and
// src/PVE/QemuServer.pm (vm_start, _do_vm_stop, vm_reboot, vm_reset).
#[tokio::test]
async fn power_actions_check_where_pve_checks() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let base = "/nodes/pve1/qemu";

        // reset: a UPID of a qmreset task; refused at once on a stopped VM.
        let t = api.post(&format!("{base}/100/status/reset"), &[]).await;
        check_upid(&t, "qmreset", "100");
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_status(100), Some("running"));
        assert_eq!(
            refused(&api, Method::POST, "/nodes/pve2/qemu/102/status/reset", &[]).await,
            (500, "VM 102 not running\n".into())
        );
        // skiplock is root@pam's only, and an API token of root is not root@pam.
        let (s, b) = api
            .call(
                Method::POST,
                &format!("{base}/100/status/reset"),
                &[("skiplock", "1")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(b["errors"]["skiplock"], "Only root may use this option.");

        // reboot: refused at once on a stopped VM; a qmreboot task on a running one that
        // applies pending changes.
        assert_eq!(
            refused(
                &api,
                Method::POST,
                "/nodes/pve2/qemu/102/status/reboot",
                &[]
            )
            .await,
            (500, "VM 102 not running\n".into())
        );
        api.put(&format!("{base}/100/config"), &[("cores", "4")])
            .await;
        assert!(sim.vm_pending(100).unwrap().contains_key("cores"));
        let t = api.post(&format!("{base}/100/status/reboot"), &[]).await;
        check_upid(&t, "qmreboot", "100");
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_status(100), Some("running"));
        assert_eq!(sim.vm_config(100).unwrap()["cores"], "4");
        assert!(sim.vm_pending(100).unwrap().is_empty());

        // start/stop: the worker decides. Starting a running VM fails in the task, stopping a
        // stopped one is a successful no-op.
        let t = api.post(&format!("{base}/100/status/start"), &[]).await;
        check_upid(&t, "qmstart", "100");
        assert_eq!(api.wait(&t).await, "VM 100 already running");
        let t = api.post("/nodes/pve2/qemu/102/status/stop", &[]).await;
        assert_eq!(api.wait(&t).await, "OK");
        let t = api.post("/nodes/pve2/qemu/102/status/shutdown", &[]).await;
        assert_eq!(api.wait(&t).await, "OK");

        // A lock fails reset, reboot, stop, shutdown and start inside their workers.
        sim.set_lock(100, Some("backup")).unwrap();
        for action in ["reset", "reboot", "stop", "shutdown"] {
            let t = api.post(&format!("{base}/100/status/{action}"), &[]).await;
            assert_eq!(api.wait(&t).await, "VM is locked (backup)", "{action}");
        }
        assert_eq!(sim.vm_status(100), Some("running"));
        sim.set_lock(102, Some("snapshot")).unwrap();
        let t = api.post("/nodes/pve2/qemu/102/status/start", &[]).await;
        assert_eq!(api.wait(&t).await, "VM is locked (snapshot)");
        sim.set_lock(102, None).unwrap();
        sim.set_lock(100, None).unwrap();

        // A stopped VM's RRD rows hold only the maxima and the time.
        let rows = api
            .get_q("/nodes/pve2/qemu/102/rrddata", &[("timeframe", "hour")])
            .await;
        let mut keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["disk", "maxcpu", "maxdisk", "maxmem", "time"]);

        // The status index lists what PVE lists.
        let idx = api.get(&format!("{base}/100/status")).await;
        let names: Vec<&str> = idx
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["subdir"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "current", "start", "stop", "reset", "shutdown", "suspend", "reboot"
            ]
        );

        // pve-guest-common src/PVE/AbstractConfig.pm (load_config): a VM that is not there.
        assert_eq!(
            refused(
                &api,
                Method::GET,
                &format!("{base}/999/status/current"),
                &[]
            )
            .await,
            (
                500,
                "Configuration file 'nodes/pve1/qemu-server/999.conf' does not exist\n".into()
            )
        );
        // A guest ignoring ACPI: reboot times out like a shutdown without forceStop.
        sim.set_ignore_shutdown(101, true).unwrap();
        let t = api
            .post(&format!("{base}/101/status/reboot"), &[("timeout", "0")])
            .await;
        assert_eq!(api.wait(&t).await, "VM quit/powerdown failed - got timeout");
        let t = api
            .post(
                &format!("{base}/101/status/shutdown"),
                &[("timeout", "0"), ("forceStop", "1")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        let log = sim.task_log(t.as_str().unwrap());
        assert!(
            log.iter()
                .any(|l| l == "VM still running - terminating now with SIGTERM"),
            "{log:?}"
        );
        sim.shutdown().await;
    })
    .await;
}

// pve-guest-common src/PVE/AbstractConfig.pm (snapshot_create, snapshot_rollback,
// snapshot_delete), qemu-server src/PVE/QemuConfig.pm (__snapshot_save_vmstate) and
// src/PVE/API2/Qemu.pm (snapshot, snapshot_cmd_idx, rollback).
#[tokio::test]
async fn snapshots_with_vmstate_and_worker_checks() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let base = "/nodes/pve1/qemu";

        // vmstate on a stopped VM saves no RAM.
        let t = api
            .post(
                "/nodes/pve2/qemu/102/snapshot",
                &[("snapname", "cold"), ("vmstate", "1")],
            )
            .await;
        check_upid(&t, "qmsnapshot", "102");
        assert_eq!(api.wait(&t).await, "OK");
        let cfg = api.get("/nodes/pve2/qemu/102/snapshot/cold/config").await;
        assert!(cfg.get("vmstate").is_none(), "{cfg}");
        let list = api.get("/nodes/pve2/qemu/102/snapshot").await;
        let cold = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "cold")
            .unwrap();
        assert_eq!(cold["vmstate"], 0);

        // on a running VM the snapshot config names the state volume, which the storage lists.
        let t = api
            .post(
                &format!("{base}/101/snapshot"),
                &[
                    ("snapname", "hot"),
                    ("vmstate", "1"),
                    ("description", "with RAM"),
                ],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        let log = sim.task_log(t.as_str().unwrap());
        assert!(
            log.iter()
                .any(|l| l == "saving VM state and RAM using storage 'local-lvm'"),
            "{log:?}"
        );
        let cfg = api.get(&format!("{base}/101/snapshot/hot/config")).await;
        assert_eq!(cfg["vmstate"], "local-lvm:vm-101-state-hot");
        assert!(
            cfg["runningmachine"]
                .as_str()
                .is_some_and(|m| m.starts_with("pc-"))
        );
        assert!(cfg["runningcpu"].is_string());
        assert_eq!(cfg["description"], "with RAM");
        let content = api
            .get_q("/nodes/pve1/storage/local-lvm/content", &[("vmid", "101")])
            .await;
        assert!(
            content
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["volid"] == "local-lvm:vm-101-state-hot"),
            "{content}"
        );

        // rollback to it: the VM is stopped, then resumed from the saved RAM.
        api.post(&format!("{base}/101/status/stop"), &[]).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(sim.vm_status(101), Some("stopped"));
        let t = api
            .post(&format!("{base}/101/snapshot/hot/rollback"), &[])
            .await;
        check_upid(&t, "qmrollback", "101");
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(
            sim.vm_status(101),
            Some("running"),
            "RAM snapshot resumes the VM"
        );
        let cur = sim.vm_config(101).unwrap();
        assert_eq!(cur["parent"], "hot");
        assert!(!cur.contains_key("vmstate") && !cur.contains_key("runningmachine"));

        // rollback without RAM leaves the VM stopped unless start=1.
        let t = api
            .post("/nodes/pve2/qemu/102/snapshot/cold/rollback", &[])
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_status(102), Some("stopped"));
        let t = api
            .post(
                "/nodes/pve2/qemu/102/snapshot/cold/rollback",
                &[("start", "1")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_status(102), Some("running"));

        // Errors the worker reports; reserved names refused at once.
        let t = api
            .post(&format!("{base}/101/snapshot/nope/rollback"), &[])
            .await;
        assert_eq!(api.wait(&t).await, "snapshot 'nope' does not exist");
        let t = api.delete(&format!("{base}/101/snapshot/nope")).await;
        assert_eq!(api.wait(&t).await, "snapshot 'nope' does not exist");
        sim.set_lock(101, Some("backup")).unwrap();
        let t = api
            .delete(&format!("{base}/101/snapshot/hot?force=1"))
            .await;
        assert_eq!(
            api.wait(&t).await,
            "VM is locked (backup)",
            "force does not skip the lock"
        );
        sim.set_lock(101, None).unwrap();
        assert_eq!(
            refused(
                &api,
                Method::POST,
                &format!("{base}/101/snapshot"),
                &[("snapname", "Pending")]
            )
            .await,
            (
                500,
                "unable to use snapshot name 'pending' (reserved name)\n".into()
            )
        );
        let (s, b) = api
            .call(
                Method::POST,
                &format!("{base}/101/snapshot"),
                &[("snapname", &"a".repeat(41))],
            )
            .await;
        assert_eq!(s, 400, "{b}");

        // The snapshot's index lists commands.
        let idx = api.get(&format!("{base}/101/snapshot/hot")).await;
        assert_eq!(
            idx,
            serde_json::json!([{ "cmd": "rollback" }, { "cmd": "config" }])
        );

        // Deleting frees the state volume.
        let t = api.delete(&format!("{base}/101/snapshot/hot")).await;
        assert_eq!(api.wait(&t).await, "OK");
        let content = api
            .get_q("/nodes/pve1/storage/local-lvm/content", &[("vmid", "101")])
            .await;
        assert!(
            !content
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["volid"] == "local-lvm:vm-101-state-hot"),
            "{content}"
        );
        // `current` carries the digest of the config.
        let list = api.get(&format!("{base}/101/snapshot")).await;
        let cur = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "current")
            .unwrap();
        assert_eq!(
            cur["digest"],
            api.get(&format!("{base}/101/config")).await["digest"]
        );
        sim.shutdown().await;
    })
    .await;
}

/// A ticket session (cookie + CSRF) of the default user.
async fn session(sim: &pve_vps_sim::PveSim) -> (Api, String) {
    let anon = Api::with_header(sim, None);
    let (user, pass) = sim.user_password().unwrap();
    let (_, d) = ticket(&anon, &[("username", user), ("password", pass)]).await;
    let t = d["ticket"].as_str().unwrap().to_string();
    let mut s = Api::with_header(sim, None);
    s.cookie = Some(enc(&t));
    s.csrf = Some(d["CSRFPreventionToken"].as_str().unwrap().to_string());
    (s, t)
}

fn ws_request(
    sim: &pve_vps_sim::PveSim,
    node: &str,
    vmid: u32,
    port: &str,
    vncticket: &str,
    cookie: Option<&str>,
    token: bool,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket?port={port}&vncticket={}",
        sim.url().replace("http://", "ws://"),
        enc(vncticket)
    );
    let mut req = url.into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut().insert(
            "Cookie",
            format!("PVEAuthCookie={}", enc(c)).parse().unwrap(),
        );
    }
    if token {
        req.headers_mut()
            .insert("Authorization", sim.token_header().parse().unwrap());
    }
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    req
}

/// The HTTP status a refused websocket handshake got.
fn ws_status(r: Result<impl Sized, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    }
}

// qemu-server src/PVE/API2/Qemu.pm (vncproxy, vncwebsocket), pve-access-control
// src/PVE/AccessControl.pm (VNC tickets live 40 s), pve-common src/PVE/Ticket.pm (refusal).
#[tokio::test]
async fn vncproxy_and_vncwebsocket_like_pve() {
    use futures_util::StreamExt;
    timed(async {
        let sim = common::start().await;
        let (api, cookie) = session(&sim).await;

        // A stopped VM gets a ticket too; the worker fails once the client connects.
        let p = api
            .post("/nodes/pve2/qemu/102/vncproxy", &[("websocket", "1")])
            .await;
        let pw = p["password"].as_str().unwrap();
        assert_eq!(pw.len(), 8);
        assert!(pw.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{pw}");
        let vt = p["ticket"].as_str().unwrap();
        assert!(vt.starts_with(&format!("{pw}:PVEVNC:")), "{vt}");
        let port = p["port"].as_u64().unwrap();
        assert!((5900..=5999).contains(&port));
        assert_eq!(p["user"], "root@pam");
        check_upid(&p["upid"], "vncproxy", "102");
        let port_s = port.to_string();
        // The port is checked as a parameter.
        let r = tokio_tungstenite::connect_async(ws_request(
            &sim,
            "pve2",
            102,
            "6000",
            vt,
            Some(&cookie),
            false,
        ))
        .await;
        assert_eq!(ws_status(r), 400);
        // The VNC ticket is bound to whoever asked for it: an API token cannot use a ticket
        // session's VNC ticket.
        let r = tokio_tungstenite::connect_async(ws_request(
            &sim, "pve2", 102, &port_s, vt, None, true,
        ))
        .await;
        assert_eq!(ws_status(r), 401);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_request(
            &sim,
            "pve2",
            102,
            &port_s,
            vt,
            Some(&cookie),
            false,
        ))
        .await
        .expect("upgrade");
        assert!(
            ws.next()
                .await
                .is_none_or(|m| m.is_err() || m.unwrap().is_close())
        );
        assert_eq!(
            sim.wait_task(p["upid"].as_str().unwrap(), Duration::from_secs(5))
                .await
                .as_deref(),
            Some("Failed to run vncproxy.")
        );
        // The ticket is single use.
        let r = tokio_tungstenite::connect_async(ws_request(
            &sim,
            "pve2",
            102,
            &port_s,
            vt,
            Some(&cookie),
            false,
        ))
        .await;
        assert_eq!(ws_status(r), 401);

        // ...but a token opens the websocket with the VNC ticket it asked for itself.
        let tok = Api::token(&sim);
        let p = tok
            .post("/nodes/pve1/qemu/100/vncproxy", &[("websocket", "1")])
            .await;
        assert_eq!(p["user"], "root@pam!sim");
        let (ws, _) = tokio_tungstenite::connect_async(ws_request(
            &sim,
            "pve1",
            100,
            &p["port"].as_u64().unwrap().to_string(),
            p["ticket"].as_str().unwrap(),
            None,
            true,
        ))
        .await
        .expect("a token's own VNC ticket opens the websocket");
        drop(ws);

        // Nobody connects: the worker gives up with "connection timed out".
        let p = api.post("/nodes/pve1/qemu/100/vncproxy", &[]).await;
        assert_eq!(
            sim.wait_task(p["upid"].as_str().unwrap(), Duration::from_secs(5))
                .await
                .as_deref(),
            Some("connection timed out")
        );

        // A client on a running VM keeps the task running until it leaves.
        let p = api
            .post("/nodes/pve1/qemu/100/vncproxy", &[("websocket", "1")])
            .await;
        let upid = p["upid"].as_str().unwrap().to_string();
        let (ws, _) = tokio_tungstenite::connect_async(ws_request(
            &sim,
            "pve1",
            100,
            &p["port"].as_u64().unwrap().to_string(),
            p["ticket"].as_str().unwrap(),
            Some(&cookie),
            false,
        ))
        .await
        .expect("upgrade");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            sim.task_exitstatus(&upid),
            None,
            "still running past the connect timeout"
        );
        drop(ws);
        assert_eq!(
            sim.wait_task(&upid, Duration::from_secs(5))
                .await
                .as_deref(),
            Some("OK")
        );
        sim.shutdown().await;
    })
    .await;
}

// pve-manager PVE/VZDump.pm (generate_notes, exec_backup_task) and pve-guest-common
// src/PVE/VZDump/Common.pm (compress: 0, 1, gzip, lzo, zstd; default 0).
#[tokio::test]
async fn vzdump_notes_template_and_archive_names() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let newest = |api: Api| async move {
            let c = api
                .get_q(
                    "/nodes/pve1/storage/backup/content",
                    &[("content", "backup"), ("vmid", "101")],
                )
                .await;
            c.as_array()
                .unwrap()
                .iter()
                .max_by_key(|v| v["ctime"].as_u64())
                .unwrap()
                .clone()
        };
        let t = api
            .post(
                "/nodes/pve1/vzdump",
                &[
                    ("vmid", "101"),
                    ("storage", "backup"),
                    ("compress", "zstd"),
                    (
                        "notes-template",
                        r"{{guestname}} ({{vmid}}) on {{node}} in {{cluster}}\nsecond line",
                    ),
                ],
            )
            .await;
        check_upid(&t, "vzdump", "101");
        assert_eq!(api.wait(&t).await, "OK");
        let b = newest(api.clone()).await;
        assert_eq!(b["notes"], "db-01 (101) on pve1 in pve-sim\nsecond line");
        let name = b["volid"]
            .as_str()
            .unwrap()
            .strip_prefix("backup:backup/")
            .unwrap()
            .to_string();
        // vzdump-qemu-VMID-YYYY_MM_DD-HH_MM_SS.vma.zst
        let stamp = name
            .strip_prefix("vzdump-qemu-101-")
            .and_then(|s| s.strip_suffix(".vma.zst"))
            .unwrap_or_else(|| panic!("{name}"));
        let d: Vec<char> = stamp.chars().collect();
        assert_eq!(d.len(), 19, "{stamp}");
        for (i, c) in d.iter().enumerate() {
            match i {
                4 | 7 | 13 | 16 => assert_eq!(*c, '_', "{stamp}"),
                10 => assert_eq!(*c, '-', "{stamp}"),
                _ => assert!(c.is_ascii_digit(), "{stamp}"),
            }
        }
        // No compress: an uncompressed .vma; compress=1 is lzo.
        for (compress, ext) in [
            (None, ".vma"),
            (Some("1"), ".vma.lzo"),
            (Some("gzip"), ".vma.gz"),
        ] {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let mut form = vec![("vmid", "101"), ("storage", "backup")];
            if let Some(c) = compress {
                form.push(("compress", c));
            }
            let t = api.post("/nodes/pve1/vzdump", &form).await;
            assert_eq!(api.wait(&t).await, "OK");
            let v = newest(api.clone()).await["volid"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(v.ends_with(ext), "{compress:?}: {v}");
        }
        let (s, b) = api
            .call(
                Method::POST,
                "/nodes/pve1/vzdump",
                &[("vmid", "101"), ("compress", "xz")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        // notes-template requires storage.
        let (s, b) = api
            .call(
                Method::POST,
                "/nodes/pve1/vzdump",
                &[("vmid", "101"), ("notes-template", "{{vmid}}")],
            )
            .await;
        assert_eq!(s, 400, "{b}");
        assert_eq!(
            b["errors"]["storage"],
            "missing property - 'notes-template' requires this property"
        );
        // An unknown variable: the backup is made, without notes, and the task warns.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t = api
            .post(
                "/nodes/pve1/vzdump",
                &[
                    ("vmid", "101"),
                    ("storage", "backup"),
                    ("notes-template", "{{hostname}}"),
                ],
            )
            .await;
        assert_eq!(api.wait(&t).await, "WARNINGS: 1");
        let log = sim.task_log(t.as_str().unwrap());
        assert!(
            log.iter()
                .any(|l| l == "WARN: unable to add notes - unexpected variable name 'hostname'"),
            "{log:?}"
        );
        assert_eq!(log.last().map(String::as_str), Some("TASK WARNINGS: 1"));
        assert!(newest(api.clone()).await.get("notes").is_none());
        sim.shutdown().await;
    })
    .await;
}

fn mac_of(net: &str) -> String {
    net.split(',')
        .find_map(|p| {
            p.split_once('=')
                .filter(|(_, m)| m.len() == 17)
                .map(|(_, m)| m.to_string())
        })
        .unwrap_or_default()
}

// qemu-server src/PVE/QemuServer.pm (restore_update_config_line): new MACs and SMBIOS UUID
// only with `unique`; vmgenid always new.
#[tokio::test]
async fn restore_unique_changes_macs_only_when_asked() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        api.put("/nodes/pve1/qemu/101/config", &[("vmgenid", "1")])
            .await;
        let before = sim.vm_config(101).unwrap();
        let t = api
            .post(
                "/nodes/pve1/vzdump",
                &[("vmid", "101"), ("storage", "backup"), ("compress", "zstd")],
            )
            .await;
        assert_eq!(api.wait(&t).await, "OK");
        let archive = sim.backup_volids(101).last().unwrap().clone();
        for (vmid, unique) in [("201", "0"), ("202", "1")] {
            let t = api
                .post(
                    "/nodes/pve1/qemu",
                    &[("vmid", vmid), ("archive", &archive), ("unique", unique)],
                )
                .await;
            check_upid(&t, "qmrestore", vmid);
            assert_eq!(api.wait(&t).await, "OK");
        }
        let kept = sim.vm_config(201).unwrap();
        let fresh = sim.vm_config(202).unwrap();
        assert_eq!(
            mac_of(&kept["net0"]),
            mac_of(&before["net0"]),
            "no unique: MAC kept"
        );
        assert_eq!(kept["smbios1"], before["smbios1"]);
        assert_ne!(
            mac_of(&fresh["net0"]),
            mac_of(&before["net0"]),
            "unique: new MAC"
        );
        assert!(mac_of(&fresh["net0"]).starts_with("BC:24:11:"));
        assert_ne!(
            fresh["smbios1"], before["smbios1"],
            "unique: new SMBIOS UUID"
        );
        assert_ne!(kept["vmgenid"], before["vmgenid"], "vmgenid is always new");
        sim.shutdown().await;
    })
    .await;
}

// qemu-server src/PVE/API2/Qemu.pm (vm_config, vm_pending, cloudinit_pending,
// cloudinit_update): changes wait for a regeneration; the password never leaves the host.
#[tokio::test]
async fn cloud_init_pending_regeneration_and_masked_password() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let vm = "/nodes/pve1/qemu/100";
        api.put(
            &format!("{vm}/config"),
            &[("ciuser", "ops"), ("cipassword", "s3cret-pass")],
        )
        .await;
        let cfg = api.get(&format!("{vm}/config")).await;
        assert_eq!(cfg["cipassword"], "**********");
        let pending = api.get(&format!("{vm}/cloudinit")).await;
        let item = |key: &str| {
            pending
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["key"] == key)
                .cloned()
                .unwrap_or_else(|| panic!("{key} in {pending}"))
        };
        assert_eq!(item("ciuser")["pending"], "ops");
        assert_eq!(item("cipassword")["pending"], "**********");
        let dump = api
            .get_q(&format!("{vm}/cloudinit/dump"), &[("type", "user")])
            .await;
        assert!(
            !dump.as_str().unwrap().contains("user: ops"),
            "not yet regenerated"
        );
        // Regenerate: nothing pending any more, the drive holds the new values.
        assert_eq!(api.put(&format!("{vm}/cloudinit"), &[]).await, Value::Null);
        let pending = api.get(&format!("{vm}/cloudinit")).await;
        assert!(
            pending
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.get("pending").is_none()),
            "{pending}"
        );
        let dump = api
            .get_q(&format!("{vm}/cloudinit/dump"), &[("type", "user")])
            .await;
        assert!(dump.as_str().unwrap().contains("user: ops"));
        // Locked: refused at once; a VM without a cloud-init drive: a silent no-op.
        sim.set_lock(100, Some("backup")).unwrap();
        assert_eq!(
            refused(&api, Method::PUT, &format!("{vm}/cloudinit"), &[]).await,
            (500, "VM is locked (backup)\n".into())
        );
        sim.set_lock(100, None).unwrap();
        assert_eq!(
            api.put("/nodes/pve3/qemu/105/cloudinit", &[]).await,
            Value::Null
        );
        // The pending API masks a pending password differently from the current one.
        api.put(&format!("{vm}/config"), &[("cores", "3")]).await;
        let p = api.get(&format!("{vm}/pending")).await;
        let pw = p
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == "cipassword")
            .unwrap();
        assert_eq!(pw["value"], "**********");
        sim.shutdown().await;
    })
    .await;
}

// qemu-server src/PVE/API2/Qemu.pm (resize_vm: checks in the `resize` worker; template:
// checks before the worker).
#[tokio::test]
async fn resize_and_template_refusals() {
    timed(async {
        let sim = common::start().await;
        let api = Api::token(&sim);
        let vm = "/nodes/pve1/qemu/100";
        for (disk, size, want) in [
            ("scsi7", "+1G", "disk 'scsi7' does not exist"),
            ("ide2", "+1G", "you can't resize a cdrom"),
            ("scsi0", "1G", "shrinking disks is not supported"),
        ] {
            let t = api
                .put(&format!("{vm}/resize"), &[("disk", disk), ("size", size)])
                .await;
            check_upid(&t, "resize", "100");
            assert_eq!(api.wait(&t).await, want);
        }
        let t = api
            .put(
                &format!("{vm}/resize"),
                &[("disk", "scsi0"), ("size", "+1G"), ("digest", "0000")],
            )
            .await;
        assert_eq!(
            api.wait(&t).await,
            "checksum mismatch (file change by other user?)"
        );
        assert_eq!(
            refused(&api, Method::POST, &format!("{vm}/template"), &[]).await,
            (
                500,
                "unable to create template, because VM contains snapshots\n".into()
            )
        );
        assert_eq!(
            refused(&api, Method::POST, "/nodes/pve3/qemu/104/template", &[]).await,
            (
                500,
                "you can't convert a VM to template if VM is running\n".into()
            )
        );
        sim.shutdown().await;
    })
    .await;
}

// qemu-server src/PVE/QemuConfig.pm (config_file_lock) and src/PVE/QemuServer.pm (vm_stop
// runs under lock_config), pve-common src/PVE/Tools.pm (lock_file_full): a config write waits
// for the flock a stop/shutdown worker holds, and gives up with PVE's timeout message.
#[tokio::test]
async fn config_writes_wait_for_the_config_flock() {
    timed(async {
        let mut cfg = pve_vps_sim::SimConfig::for_tests()
            .task_durations(Duration::from_millis(800), Duration::from_millis(800));
        cfg.config_lock_timeout = Duration::from_millis(1500);
        let sim = pve_vps_sim::PveSim::start(cfg).await.unwrap();
        let api = Api::token(&sim);
        let vm = "/nodes/pve1/qemu/101";
        // A stop holds the flock for its run; the write waits for it and succeeds.
        let t = api.post(&format!("{vm}/status/stop"), &[]).await;
        let before = std::time::Instant::now();
        api.put(&format!("{vm}/config"), &[("description", "after stop")])
            .await;
        assert!(before.elapsed() >= Duration::from_millis(500), "it waited");
        assert_eq!(api.wait(&t).await, "OK");
        assert_eq!(sim.vm_config(101).unwrap()["description"], "after stop");
        // A shutdown that outlasts the wait: "can't lock file ... - got timeout".
        let t = api.post(&format!("{vm}/status/start"), &[]).await;
        assert_eq!(api.wait(&t).await, "OK");
        sim.set_ignore_shutdown(101, true).unwrap();
        let t = api
            .post(&format!("{vm}/status/shutdown"), &[("timeout", "10")])
            .await;
        let before = std::time::Instant::now();
        assert_eq!(
            refused(
                &api,
                Method::PUT,
                &format!("{vm}/config"),
                &[("cores", "2")]
            )
            .await,
            (
                500,
                "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout\n".into()
            )
        );
        assert!(before.elapsed() >= Duration::from_millis(1400));
        assert_eq!(api.wait(&t).await, "VM quit/powerdown failed - got timeout");
        sim.shutdown().await;
    })
    .await;
}

// pve-common src/PVE/Ticket.pm (verify_csrf_prevention_token) and qemu-server
// src/PVE/API2/Qemu.pm (clone_vm checks before the worker).
#[tokio::test]
async fn csrf_and_linked_clone_messages() {
    timed(async {
        let sim = common::start().await;
        let (mut s, _) = session(&sim).await;
        s.csrf = Some("00000000:bad".into());
        assert_eq!(
            reason(&s, Method::PUT, "/nodes/pve1/qemu/100/config").await,
            (
                401,
                "Permission denied - invalid csrf token".into(),
                String::new()
            )
        );
        let api = Api::token(&sim);
        assert_eq!(
            refused(
                &api,
                Method::POST,
                "/nodes/pve1/qemu/100/clone",
                &[("newid", "300"), ("full", "0")]
            )
            .await,
            (
                500,
                "Linked clone feature is not supported for 'local-lvm:vm-100-disk-0' (scsi0)\n"
                    .into()
            )
        );
        assert_eq!(
            refused(
                &api,
                Method::POST,
                "/nodes/pve1/qemu/9000/clone",
                &[("newid", "301"), ("storage", "local-lvm")]
            )
            .await,
            (
                500,
                "parameter 'storage' not allowed for linked clones\n".into()
            )
        );
        sim.shutdown().await;
    })
    .await;
}

/// `(status, reason phrase, body)` of a request without form data.
async fn reason(api: &Api, m: Method, path: &str) -> (u16, String, String) {
    let mut rb = api.client.request(m, format!("{}{path}", api.base));
    if let Some(a) = &api.auth {
        rb = rb.header("Authorization", a);
    }
    if let Some(c) = &api.cookie {
        rb = rb.header("Cookie", format!("PVEAuthCookie={c}"));
    }
    if let Some(c) = &api.csrf {
        rb = rb.header("CSRFPreventionToken", c);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let phrase = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .unwrap_or_default();
    (status, phrase, resp.text().await.unwrap_or_default())
}

// pve-manager PVE/HTTPServer.pm (auth_handler), pve-access-control src/PVE/AccessControl.pm
// (verify_token), pve-http-server src/PVE/APIServer/AnyEvent.pm (401 without a body).
#[tokio::test]
async fn authentication_failures_like_pveproxy() {
    timed(async {
        let sim = common::start().await;
        let anon = Api::with_header(&sim, None);
        assert_eq!(
            reason(&anon, Method::GET, "/nodes").await,
            (401, "No ticket".into(), String::new())
        );
        let bad = |h: &str| Api::with_header(&sim, Some(h.to_string()));
        let id = sim.token().unwrap().full_id();
        assert_eq!(
            reason(
                &bad(&format!("PVEAPIToken={id}=wrong")),
                Method::GET,
                "/nodes"
            )
            .await
            .1,
            "invalid token value!"
        );
        assert_eq!(
            reason(&bad("PVEAPIToken=root@pam!nope=x"), Method::GET, "/nodes")
                .await
                .1,
            "no such token 'nope' for user 'root@pam'"
        );
        let mut forged = Api::with_header(&sim, None);
        forged.cookie = Some(enc("PVE:root@pam:00000000::Zm9v"));
        assert_eq!(
            reason(&forged, Method::GET, "/nodes").await.1,
            "permission denied - invalid PVE ticket"
        );
        // An API token needs no CSRF token for writes.
        let api = Api::token(&sim);
        api.put(
            "/nodes/pve1/qemu/100/config",
            &[("description", "by token")],
        )
        .await;
        sim.shutdown().await;
    })
    .await;
}
