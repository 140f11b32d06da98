//! The portal serving several clusters (a clusters file, one pve-sim per cluster), over HTTP:
//!
//! * a customer with services on two clusters sees both, each page going to its own cluster;
//! * a cluster failing (every request answered 503), slow (no answer in time) or off (its
//!   simulator stopped) shows its services as unavailable with the cluster's name and a
//!   reason, its pages and actions answer 503 "Temporarily unavailable" within the cluster
//!   timeout, while the other clusters' overview, live view and power actions work;
//! * once the cluster answers again its services work again, without a restart;
//! * a bad configuration makes the `portal` binary exit with status 2 naming the setting,
//!   before any request to a cluster.
//!
//! Every test runs under a timeout; the simulators stop when dropped, the binaries are killed
//! by their own PID.

mod common;

use common::{run, test_dir, wait_for};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use examples::portal::{self, StartOptions, config::PortalConfig};
use pve_vps_sim::{PveSim, RequestMatch, SimConfig};
use reqwest::StatusCode;

/// Alice: web-01 (100) on east, mail-01 (102) on west. Bob: db-01 (101) on north,
/// vps-104 (104) on west.
const CUSTOMERS: &str = r#"
[[customers]]
username = "alice"
password = "alice-demo-pass"

[[customers.services]]
cluster = "east"
product = "vps-small"
domain = "web-01.example.com"
mac = "BC:24:11:00:64:5A"
dns = ["203.0.113.53"]
vm = { node = "pve1", vmid = 100 }
ipv4 = { primary = "203.0.113.10/24", gateway = "203.0.113.1", extra = [] }

[[customers.services]]
cluster = "west"
product = "vps-basic"
domain = "mail-01.example.com"
mac = "BC:24:11:00:66:5A"
dns = ["203.0.113.53"]
vm = { node = "pve2", vmid = 102 }
ipv4 = { primary = "203.0.113.12/24", gateway = "203.0.113.1", extra = [] }

[[customers]]
username = "bob"
password = "bob-demo-pass"

[[customers.services]]
cluster = "north"
product = "vps-small"
domain = "db-01.example.net"
mac = "BC:24:11:00:65:5A"
dns = ["203.0.113.53"]
vm = { node = "pve1", vmid = 101 }
ipv4 = { primary = "203.0.113.11/24", gateway = "203.0.113.1", extra = [] }

[[customers.services]]
cluster = "west"
product = "vps-basic"
domain = "vps-104.example.net"
mac = "BC:24:11:00:68:5A"
dns = ["198.51.100.53"]
vm = { node = "pve3", vmid = 104 }
ipv4 = { primary = "198.51.100.104/24", gateway = "198.51.100.1", extra = [] }
"#;

/// `[clusters.<name>]` for `sim`, its token secret inline.
fn cluster_table(name: &str, sim: &PveSim) -> String {
    let token = sim.token().expect("the simulator's token");
    format!(
        "[clusters.{name}]\nurl = \"{}\"\ntoken_id = \"{}!{}\"\ntoken_secret = \"{}\"\n\
         fingerprint = \"{}\"\n\n",
        sim.https_url(),
        token.userid,
        token.tokenid,
        token.secret,
        sim.fingerprint()
    )
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A page that hangs fails the test instead of waiting for the client's own timeout.
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A logged-in customer: the `sid=...` cookie pair and the CSRF token.
struct Customer {
    sid: String,
    csrf: String,
}

async fn login(http: &reqwest::Client, base: &str, user: &str, pw: &str) -> Customer {
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let sid = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let page = get(http, base, &sid, "/services").await.1;
    let csrf = page
        .split("name=csrf content='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("csrf meta")
        .to_owned();
    Customer { sid, csrf }
}

async fn get(http: &reqwest::Client, base: &str, sid: &str, path: &str) -> (StatusCode, String) {
    let r = http
        .get(format!("{base}{path}"))
        .header("cookie", sid)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    (status, r.text().await.expect("body"))
}

/// Posts a power action; the status and the redirect's location (empty when none).
async fn power(
    http: &reqwest::Client,
    base: &str,
    c: &Customer,
    vmid: u32,
    action: &str,
) -> (StatusCode, String, String) {
    let r = http
        .post(format!("{base}/s/{vmid}/power"))
        .header("cookie", &c.sid)
        .form(&[("csrf", c.csrf.as_str()), ("action", action)])
        .send()
        .await
        .expect("power");
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    (status, loc, r.text().await.expect("body"))
}

/// The services list's row of `domain` (from its `<tr` to its `</tr>`).
fn row<'a>(page: &'a str, domain: &str) -> &'a str {
    let at = page
        .find(domain)
        .unwrap_or_else(|| panic!("{domain} listed: {page}"));
    let start = page[..at].rfind("<tr").expect("row start");
    let end = at + page[at..].find("</tr>").expect("row end");
    &page[start..end]
}

/// Waits until the simulator's VM has `status`.
async fn sim_status(sim: &PveSim, vmid: u32, status: &str) {
    wait_for(
        &format!("vm {vmid} {status}"),
        Duration::from_secs(10),
        || async { (sim.vm_status(vmid) == Some(status)).then_some(()) },
    )
    .await;
}

/// Stops a running VM (or starts a stopped one) through the portal, and sees the simulator
/// follow: the action reached the service's own cluster.
async fn toggle_power(http: &reqwest::Client, base: &str, c: &Customer, sim: &PveSim, vmid: u32) {
    let (action, then) = match sim.vm_status(vmid) {
        Some("running") => ("stop", "stopped"),
        _ => ("start", "running"),
    };
    let (st, loc, _) = power(http, base, c, vmid, action).await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{action} {vmid}");
    assert!(loc.contains("ok="), "{action} {vmid}: {loc}");
    sim_status(sim, vmid, then).await;
}

#[test]
fn each_service_goes_to_its_cluster_and_an_unavailable_cluster_spares_the_others() {
    run(240, scenario());
}

async fn scenario() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let east = PveSim::start(SimConfig::for_tests()).await.expect("sim");
    let west = PveSim::start(SimConfig::for_tests()).await.expect("sim");
    let north = PveSim::start(SimConfig::for_tests()).await.expect("sim");
    let secrets: Vec<String> = [&east, &west, &north]
        .iter()
        .map(|s| s.token().expect("token").secret.clone())
        .collect();
    let dir = test_dir("fleet");
    let clusters = dir.join("clusters.toml");
    std::fs::write(
        &clusters,
        format!(
            "{}{}{}",
            cluster_table("east", &east),
            cluster_table("west", &west),
            cluster_table("north", &north)
        ),
    )
    .expect("clusters file");
    let customers = dir.join("customers.toml");
    std::fs::write(&customers, CUSTOMERS).expect("customers file");
    let running = portal::start(
        PortalConfig {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            customers: Some(customers),
            clusters: Some(clusters),
            cluster_timeout_secs: Some(2),
            ..Default::default()
        },
        StartOptions::default(),
    )
    .await
    .expect("portal starts");
    assert!(
        running.sim.is_none(),
        "no embedded simulator with a clusters file"
    );
    let names: Vec<&str> = running.app.sites.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["east", "north", "west"]);
    let base = format!("http://{}", running.addr);
    let http = http();
    let no_secret = |what: &str, body: &str| {
        for s in &secrets {
            assert!(!body.contains(s.as_str()), "{what} shows a token secret");
        }
    };

    // Healthy: alice sees both services, each with its cluster; each page is served by its
    // own cluster (an action on one changes that simulator's VM only).
    let alice = login(&http, &base, "alice", "alice-demo-pass").await;
    let (st, page) = get(&http, &base, &alice.sid, "/services").await;
    assert_eq!(st, StatusCode::OK);
    for (domain, cluster) in [
        ("web-01.example.com", "east"),
        ("mail-01.example.com", "west"),
    ] {
        let r = row(&page, domain);
        assert!(r.contains(&format!("<td>{cluster}</td>")), "{r}");
        assert!(!r.contains("unavailable"), "{r}");
    }
    for vmid in [100, 102] {
        let (st, body) = get(&http, &base, &alice.sid, &format!("/s/{vmid}")).await;
        assert_eq!(st, StatusCode::OK, "/s/{vmid}: {body}");
    }
    let west_100 = west.vm_status(100);
    toggle_power(&http, &base, &alice, &east, 100).await;
    assert_eq!(
        west.vm_status(100),
        west_100,
        "east's action left west's VM 100 alone"
    );
    toggle_power(&http, &base, &alice, &east, 100).await;

    // East fails: every request answered 503.
    east.fail_requests(RequestMatch::any(), 503, u32::MAX);
    let page = wait_for("web-01 unavailable", Duration::from_secs(30), || async {
        let (_, page) = get(&http, &base, &alice.sid, "/services").await;
        row(&page, "web-01.example.com")
            .contains("data-unavailable='east'")
            .then_some(page)
    })
    .await;
    no_secret("the services list", &page);
    let r = row(&page, "web-01.example.com");
    assert!(
        r.contains("Cluster east cannot be reached right now"),
        "{r}"
    );
    assert!(
        r.contains("503") || r.contains("no answer within 2 s"),
        "the reason says what happened: {r}"
    );
    assert!(
        !row(&page, "mail-01.example.com").contains("unavailable"),
        "west is not affected: {page}"
    );
    let t = Instant::now();
    let (st, body) = get(&http, &base, &alice.sid, "/s/100").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("Temporarily unavailable"), "{body}");
    assert!(body.contains("<strong>east</strong>"), "{body}");
    assert!(
        body.contains("Your other services are not affected"),
        "{body}"
    );
    no_secret("the unavailable page", &body);
    for path in ["/s/100/snapshots", "/s/100/backups", "/s/100/firewall"] {
        let (st, body) = get(&http, &base, &alice.sid, path).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(body.contains("Temporarily unavailable"), "{path}");
    }
    let (st, body) = get(&http, &base, &alice.sid, "/s/100/live.json").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["unavailable"], true, "{v}");
    assert_eq!(v["cluster"], "east", "{v}");
    let (st, _, body) = power(&http, &base, &alice, 100, "stop").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("Temporarily unavailable"), "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the unavailable answers come within the cluster timeout, not after a hang"
    );
    // West still works: overview, live view, a power action.
    let (st, body) = get(&http, &base, &alice.sid, "/s/102").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = get(&http, &base, &alice.sid, "/s/102/live.json").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["status"].is_string(), "{v}");
    toggle_power(&http, &base, &alice, &west, 102).await;

    // North is slow (no answer within the timeout): bob's db-01 is unavailable, his west
    // service and alice's are not held up.
    north.set_latency(Duration::from_secs(60));
    let bob = login(&http, &base, "bob", "bob-demo-pass").await;
    let (st, page) = get(&http, &base, &bob.sid, "/services").await;
    assert_eq!(st, StatusCode::OK);
    let r = row(&page, "db-01.example.net");
    assert!(r.contains("data-unavailable='north'"), "{r}");
    assert!(r.contains("no answer within 2 s"), "{r}");
    assert!(
        !row(&page, "vps-104.example.net").contains("unavailable"),
        "{page}"
    );
    let (slow, other) = tokio::join!(
        get(&http, &base, &bob.sid, "/s/101"),
        get(&http, &base, &alice.sid, "/s/102/live.json")
    );
    assert_eq!(slow.0, StatusCode::SERVICE_UNAVAILABLE, "{}", slow.1);
    assert!(slow.1.contains("<strong>north</strong>"), "{}", slow.1);
    assert_eq!(other.0, StatusCode::OK, "{}", other.1);
    let (st, body) = get(&http, &base, &bob.sid, "/s/104").await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // East heals: its services work again, without a restart.
    east.clear_faults();
    wait_for(
        "web-01 available again",
        Duration::from_secs(30),
        || async {
            let (st, _) = get(&http, &base, &alice.sid, "/s/100").await;
            (st == StatusCode::OK).then_some(())
        },
    )
    .await;
    let (_, page) = get(&http, &base, &alice.sid, "/services").await;
    assert!(
        !row(&page, "web-01.example.com").contains("unavailable"),
        "{page}"
    );
    let (st, body) = get(&http, &base, &alice.sid, "/s/100/live.json").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    toggle_power(&http, &base, &alice, &east, 100).await;

    // West goes off (its simulator stopped: connection refused).
    west.shutdown().await;
    let page = wait_for("mail-01 unavailable", Duration::from_secs(30), || async {
        let (_, page) = get(&http, &base, &alice.sid, "/services").await;
        row(&page, "mail-01.example.com")
            .contains("data-unavailable='west'")
            .then_some(page)
    })
    .await;
    assert!(
        !row(&page, "web-01.example.com").contains("unavailable"),
        "{page}"
    );
    let (st, body) = get(&http, &base, &alice.sid, "/s/102").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("<strong>west</strong>"), "{body}");
    let (st, _) = get(&http, &base, &alice.sid, "/s/100").await;
    assert_eq!(st, StatusCode::OK);

    north.clear_faults();
    running.shutdown().await;
    east.shutdown().await;
    north.shutdown().await;
}

/// A `portal` process with only `env` (nothing of the caller's); its exit status and output,
/// or killed by its PID after 30 s.
fn run_portal(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(args)
        .env_clear()
        .env("PORTAL_LISTEN", "127.0.0.1:0")
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("portal starts");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.code(), text);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running after 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_cluster_configuration_exits_2_naming_the_setting() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(PveSim::start(SimConfig::for_tests()))
        .expect("sim");
    let dir = test_dir("bad");
    let good = format!(
        "{}{}{}",
        cluster_table("east", &sim),
        cluster_table("west", &sim),
        cluster_table("north", &sim)
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("file");
        p.display().to_string()
    };
    let customers = write("customers.toml", CUSTOMERS);
    let secret = sim.token().expect("token").secret.clone();
    let before = sim.request_count();
    struct Case {
        what: &'static str,
        args: Vec<String>,
        env: Vec<(&'static str, String)>,
        expect: Vec<String>,
    }
    let cases = vec![
        Case {
            what: "an unknown field",
            args: vec![],
            env: vec![(
                "PORTAL_CLUSTERS",
                write("unknown.toml", &format!("{good}[clusters.south]\nurl = \"https://h\"\ntoken_id = \"a@pve!b\"\ntoken_secret = \"x\"\ncolour = 1\n")),
            )],
            expect: vec!["unknown field `colour`".into()],
        },
        Case {
            what: "a bad fingerprint, the file named by CRON_CLUSTERS",
            args: vec![],
            env: vec![(
                "CRON_CLUSTERS",
                write("fp.toml", &good.replacen(sim.fingerprint(), "AB:CD:not-hex", 1)),
            )],
            expect: vec!["clusters.east.fingerprint: invalid fingerprint `AB:CD:not-hex`".into()],
        },
        Case {
            what: "a service naming a cluster that is not configured (--clusters)",
            args: vec![
                "--clusters".into(),
                write(
                    "two.toml",
                    &format!("{}{}", cluster_table("east", &sim), cluster_table("west", &sim)),
                ),
            ],
            env: vec![],
            expect: vec![
                "customers.bob.services[0].cluster: `north` (named by the service) is not a \
                 configured cluster (configured: east, west)"
                    .into(),
            ],
        },
        Case {
            what: "a token secret variable that is not set",
            args: vec![],
            env: vec![(
                "PORTAL_CLUSTERS",
                write(
                    "env.toml",
                    &good.replacen(
                        &format!("token_secret = \"{secret}\""),
                        "token_secret_env = \"EAST_SECRET\"",
                        1,
                    ),
                ),
            )],
            expect: vec!["clusters.east.token_secret_env: the variable `EAST_SECRET` is not set".into()],
        },
        Case {
            what: "one customer's services sharing a VMID on two clusters",
            args: vec![],
            env: vec![
                ("PORTAL_CLUSTERS", write("good.toml", &good)),
                (
                    "PORTAL_CUSTOMERS",
                    write("dup.toml", &CUSTOMERS.replacen("vmid = 102", "vmid = 100", 1)),
                ),
            ],
            expect: vec!["customers.alice.services[1].vm.vmid: 100 (cluster `west`) is also services[0]'s (cluster `east`)".into()],
        },
        Case {
            what: "a bad cluster timeout",
            args: vec![],
            env: vec![
                ("PORTAL_CLUSTERS", write("good2.toml", &good)),
                ("PORTAL_CLUSTER_TIMEOUT_SECS", "soon".into()),
            ],
            expect: vec!["PORTAL_CLUSTER_TIMEOUT_SECS: `soon`".into()],
        },
    ];
    for c in cases {
        let mut env = c.env.clone();
        if !env.iter().any(|(k, _)| *k == "PORTAL_CUSTOMERS") {
            env.push(("PORTAL_CUSTOMERS", customers.clone()));
        }
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let (code, out) = run_portal(&args, &env);
        assert_eq!(code, Some(2), "{}: exits 2: {out}", c.what);
        for e in &c.expect {
            assert!(out.contains(e.as_str()), "{}: `{e}` in: {out}", c.what);
        }
        assert!(!out.contains(&secret), "{}: no secret in: {out}", c.what);
    }
    assert_eq!(
        sim.request_count(),
        before,
        "no request reached the cluster from a refused configuration"
    );
    rt.block_on(sim.shutdown());
}
