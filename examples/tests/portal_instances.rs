//! Three real `portal` processes on one PostgreSQL database (pg-test) against one pve-sim
//! (HTTPS, API token, pinned certificate, console user) behave as one portal, over real HTTP:
//!
//! * a session made on A works on B and C; logging out on B ends it on A and C;
//! * wrong passwords spread over A, B and C add up to the one per-account limit, after which
//!   every instance refuses the account (even with the right password) with 429;
//! * a console link made on A opens once, on B; opening it again on A (or C) is refused;
//! * a backup schedule saved on A lands in vm-services' PostgreSQL store, seen by B.
//!
//! Every portal process is killed by its own PID when its guard drops (a failed assertion
//! included), and the test runs under a timeout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use examples::portal::throttle::ACCOUNT_FAILURES;
use pve_vps_services::ids::VmId;
use pve_vps_services::stores::{PgStore, ScheduleStore};
use pve_vps_sim::{PveSim, SimConfig};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One `portal` process; killed (SIGKILL to its PID) and reaped when dropped.
struct Portal {
    name: String,
    child: Child,
    log: PathBuf,
    base: String,
}

impl Portal {
    /// Starts `portal` named `name` on the database `db` against `sim`.
    fn spawn(name: &str, sim: &PveSim, db: &str, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let token = sim.token().expect("the simulator's token");
        let (user, password) = sim.user_password().expect("the simulator's user");
        let cache = dir.join(format!("{name}-cache"));
        let child = Command::new(env!("CARGO_BIN_EXE_portal"))
            // Nothing from the caller's environment leaks in; without PATH the noVNC fetch
            // (npm) fails at once, which the websocket relay does not need.
            .env_clear()
            .env("PVE_URL", sim.https_url())
            .env(
                "PVE_TOKEN_ID",
                format!("{}!{}", token.userid, token.tokenid),
            )
            .env("PVE_TOKEN_SECRET", &token.secret)
            .env("PVE_FINGERPRINT", sim.fingerprint())
            .env("PVE_CONSOLE_USER", user)
            .env("PVE_CONSOLE_PASSWORD", password)
            .env("PORTAL_DB", db)
            .env("PORTAL_LISTEN", "127.0.0.1:0")
            .env("PORTAL_CACHE_DIR", &cache)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("portal starts");
        Self {
            name: name.to_owned(),
            child,
            log,
            base: String::new(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the `client area: http://ADDR/` line; remembers the base URL.
    async fn ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(url) = self
                .log_text()
                .lines()
                .find_map(|l| l.strip_prefix("client area: "))
            {
                self.base = url.trim().trim_end_matches('/').to_owned();
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{} exited with {status}:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < end, "{} did not start in 60 s", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {} ---", self.name);
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// One login attempt: its status and the `sid=...` cookie pair when it succeeded.
async fn login(http: &reqwest::Client, p: &Portal, user: &str, pw: &str) -> (StatusCode, String) {
    let r = http
        .post(format!("{}/login", p.base))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .expect("login");
    let status = r.status();
    let pair = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    (status, pair)
}

/// `GET /services` with the cookie: `Some(csrf token)` when logged in, `None` when the
/// portal sends the client to the login page.
async fn services(http: &reqwest::Client, p: &Portal, sid: &str) -> Option<String> {
    let r = http
        .get(format!("{}/services", p.base))
        .header("cookie", sid)
        .send()
        .await
        .expect("services");
    if r.status() == StatusCode::SEE_OTHER {
        let to = r.headers()["location"].to_str().expect("ascii");
        assert!(to.starts_with("/login"), "{to}");
        return None;
    }
    assert_eq!(r.status(), StatusCode::OK, "{}", p.name);
    let page = r.text().await.expect("body");
    assert!(page.contains("web-01.example.com"), "alice's services");
    Some(
        page.split("name=csrf content='")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .expect("csrf meta")
            .to_owned(),
    )
}

/// Opens a console link's websocket: `Ok(first message)` once relayed, `Err(status, body)`
/// when refused.
async fn open_console(p: &Portal, link: &str, sid: &str) -> Result<(), (u16, String)> {
    use futures_util::StreamExt;
    let url = format!("{}{link}/ws", p.base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("cookie", sid.parse().expect("cookie"));
    req.headers_mut()
        .insert("sec-websocket-protocol", "binary".parse().expect("header"));
    let host = p.base.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(host).await.expect("connect");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((mut ws, resp)) => {
            assert_eq!(resp.status().as_u16(), 101);
            // The relay forwards the simulator's VNC server greeting.
            let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a first message in 10 s")
                .expect("a message")
                .expect("no error");
            assert!(
                first.into_data().starts_with(b"RFB "),
                "the VNC handshake is relayed"
            );
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("websocket to {}: {e}", p.name),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_portals_on_one_postgres_behave_as_one() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("portal_instances");
    let dir = std::env::temp_dir().join(format!("portal-instances-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    tokio::time::timeout(Duration::from_secs(180), async {
        let sim = PveSim::start(SimConfig::for_tests()).await.expect("sim");
        // Started together: their schema migrations race and end in one schema.
        let mut a = Portal::spawn("a", &sim, &url, &dir);
        let mut b = Portal::spawn("b", &sim, &url, &dir);
        let mut c = Portal::spawn("c", &sim, &url, &dir);
        a.ready().await;
        b.ready().await;
        c.ready().await;
        let http = http();

        // A session made on A works on B and C, with the same CSRF token.
        let (st, sid) = login(&http, &a, "alice", "alice-demo-pass").await;
        assert_eq!(st, StatusCode::SEE_OTHER);
        let csrf = services(&http, &a, &sid).await.expect("logged in on a");
        assert_eq!(services(&http, &b, &sid).await.as_ref(), Some(&csrf));
        assert_eq!(services(&http, &c, &sid).await.as_ref(), Some(&csrf));

        // A backup schedule saved on A is in vm-services' PostgreSQL store.
        let r = http
            .post(format!("{}/s/100/backups/schedule", a.base))
            .header("cookie", &sid)
            .form(&[("csrf", csrf.as_str()), ("on1", "on"), ("time1", "02:30")])
            .send()
            .await
            .expect("schedule");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = r.headers()["location"].to_str().expect("ascii");
        assert!(to.contains("ok=Schedule"), "{to}");
        let shared = PgStore::connect(&url).await.expect("vm-services' store");
        let sched = ScheduleStore::get(&shared, VmId::new(100).expect("vmid"))
            .await
            .expect("read")
            .expect("the schedule saved on a");
        let monday = sched.days()[1];
        assert!(
            monday.enabled && monday.time.to_string() == "02:30",
            "{sched:?}"
        );
        assert!(
            sched.days().iter().filter(|d| d.enabled).count() == 1,
            "{sched:?}"
        );
        let page = http
            .get(format!("{}/s/100/backups", b.base))
            .header("cookie", &sid)
            .send()
            .await
            .expect("backups on b")
            .text()
            .await
            .expect("body");
        assert!(page.contains("02:30"), "b shows the schedule saved on a");

        // A console link made on A opens once, on B; a second use on A or C is refused.
        let r = http
            .post(format!("{}/s/100/console", a.base))
            .header("cookie", &sid)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .expect("console link");
        assert_eq!(r.status(), StatusCode::OK);
        let link = r.json::<serde_json::Value>().await.expect("json")["url"]
            .as_str()
            .expect("url")
            .to_owned();
        assert_eq!(open_console(&b, &link, &sid).await, Ok(()));
        for again in [&a, &c, &b] {
            let (status, body) = open_console(again, &link, &sid)
                .await
                .expect_err("a used link is refused");
            assert_eq!(status, 403, "{}", again.name);
            assert!(body.contains("already used"), "{}: {body}", again.name);
        }
        // A link nobody made is refused too.
        let forged = format!("/console/100-{}", "ab".repeat(32));
        let (status, body) = open_console(&c, &forged, &sid).await.expect_err("unknown");
        assert_eq!(status, 403);
        assert!(body.contains("unknown"), "{body}");

        // Logging out on B ends the session on A and C.
        let r = http
            .post(format!("{}/logout", b.base))
            .header("cookie", &sid)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("logout");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(services(&http, &a, &sid).await, None);
        assert_eq!(services(&http, &c, &sid).await, None);

        // Wrong passwords spread over the instances add up to the one limit.
        let portals = [&a, &b, &c];
        for i in 0..ACCOUNT_FAILURES {
            let p = portals[i % 3];
            let (st, _) = login(&http, p, "bob", "not-the-password").await;
            assert_eq!(st, StatusCode::SEE_OTHER, "failure {} on {}", i + 1, p.name);
        }
        for p in portals {
            let (st, sid) = login(&http, p, "bob", "bob-demo-pass").await;
            assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{}", p.name);
            assert!(sid.is_empty(), "no session while locked");
        }
        // Another account is not locked (the address limit is higher).
        let (st, _) = login(&http, &c, "alice", "alice-demo-pass").await;
        assert_eq!(st, StatusCode::SEE_OTHER);

        // No secret in any log: not the token secret, console password or session cookie.
        let (_, console_pw) = sim.user_password().expect("user");
        let token = sim.token().expect("token");
        for p in portals {
            let text = p.log_text();
            for secret in [
                console_pw,
                token.secret.as_str(),
                sid.trim_start_matches("sid="),
            ] {
                assert!(!text.contains(secret), "{} logged a secret", p.name);
            }
        }
        drop((a, b, c));
        sim.shutdown().await;
    })
    .await
    .expect("took longer than 180 s");
    let _ = std::fs::remove_dir_all(&dir);
}
