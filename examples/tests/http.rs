//! The portal over plain HTTP, without a browser: login and cookie flags, CSRF on every
//! state-changing request, customers see only their own services, the console link is one-time.

use std::time::Duration;

use examples::portal::{self, StartOptions, config::PortalConfig};
use pve_vps_sim::SimConfig;
use reqwest::StatusCode;

async fn start(public_url: Option<&str>) -> portal::Running {
    start_with(PortalConfig {
        public_url: public_url.map(str::to_owned),
        ..Default::default()
    })
    .await
}

async fn start_with(cfg: PortalConfig) -> portal::Running {
    let cfg = PortalConfig {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..cfg
    };
    let opts = StartOptions {
        sim: Some(SimConfig::for_tests()),
        ..Default::default()
    };
    portal::start(cfg, opts).await.expect("portal starts")
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Logs in; returns the `sid=...` cookie pair, the whole Set-Cookie header and the CSRF token.
async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    pw: &str,
) -> (String, String, String) {
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let pair = set.split(';').next().expect("pair").to_owned();
    let page = http
        .get(format!("{base}/services"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("services")
        .text()
        .await
        .expect("body");
    let csrf = page
        .split("name=csrf content='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("csrf meta")
        .to_owned();
    (pair, set, csrf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_ownership() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();

        // Wrong password: back to the login page, no cookie.
        let r = http
            .post(format!("{base}/login"))
            .form(&[("username", "alice"), ("password", "nope")])
            .send()
            .await
            .expect("login");
        assert!(r.headers().get("set-cookie").is_none());
        assert!(
            r.headers()["location"]
                .to_str()
                .unwrap_or("")
                .starts_with("/login")
        );

        let (sid, set, csrf) = login(&http, &base, "alice", "alice-demo-pass").await;
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "plain http on loopback: {set}");

        // Without a session: the login page.
        let r = http.get(format!("{base}/s/100")).send().await.expect("get");
        assert_eq!(r.headers()["location"], "/login");

        // Another customer's VM does not exist for alice.
        let r = http
            .get(format!("{base}/s/101"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = http
            .get(format!("{base}/s/101/live.json"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // State changes need the session's CSRF token: forms and the JSON endpoints alike.
        for (path, form) in [
            ("/s/100/power", vec![("action", "stop")]),
            ("/s/100/snapshots", vec![("description", "x")]),
            ("/s/100/iso", vec![("action", "unmount")]),
            ("/s/100/firewall", vec![("action", "delete"), ("pos", "0")]),
        ] {
            let mut bad = form.clone();
            bad.push(("csrf", "0000"));
            let r = http
                .post(format!("{base}{path}"))
                .header("cookie", &sid)
                .form(&bad)
                .send()
                .await
                .expect("post");
            assert_eq!(
                r.status(),
                StatusCode::FORBIDDEN,
                "{path} with a wrong token"
            );
        }
        let r = http
            .post(format!("{base}/s/100/console"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "console link without the header"
        );
        let r = http
            .post(format!("{base}/s/100/firewall/move"))
            .header("cookie", &sid)
            .form(&[("from", "0"), ("to", "1")])
            .send()
            .await
            .expect("post");
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "rule move without the header"
        );
        assert_eq!(
            running.sim.as_ref().expect("sim").vm_status(100),
            Some("running")
        );

        // With it, the console link works once.
        let r = http
            .post(format!("{base}/s/100/console"))
            .header("cookie", &sid)
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::OK);
        let url = r.json::<serde_json::Value>().await.expect("json")["url"]
            .as_str()
            .expect("url")
            .to_owned();
        assert!(url.starts_with("/console/100-"), "{url}");

        // The live panel.
        let v: serde_json::Value = http
            .get(format!("{base}/s/100/live.json"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(v["status"], "running");
        assert_eq!(v["access"]["power_control"]["allowed"], true);
        assert_eq!(v["overview"]["network"]["ipv4"], "203.0.113.10/24");

        // Log out ends the session.
        let r = http
            .post(format!("{base}/logout"))
            .header("cookie", &sid)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .expect("logout");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = http
            .get(format!("{base}/s/100"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("get");
        // (A browser dropped the cookie at logout; one sent anyway is treated as expired.)
        let location = r.headers()["location"].to_str().expect("ascii");
        assert!(location.starts_with("/login"), "{location}");
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookie_behind_https() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let running = start(Some("https://portal.example.com")).await;
        let base = format!("http://{}", running.addr);
        let (_, set, _) = login(&http(), &base, "bob", "bob-demo-pass").await;
        assert!(
            set.contains("Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        running.shutdown().await;
    })
    .await
    .expect("took longer than 60 s");
}

/// One login attempt: its status, `Location` and `Retry-After` headers and body.
async fn try_login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    pw: &str,
) -> (StatusCode, String, Option<String>, String) {
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .expect("login");
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, location, retry) = (
        r.status(),
        h("location").unwrap_or_default(),
        h("retry-after"),
    );
    (status, location, retry, r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_per_account_and_address() {
    use examples::portal::throttle::{ACCOUNT_FAILURES, ADDRESS_FAILURES, WINDOW_SECS};
    tokio::time::timeout(Duration::from_secs(120), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let clock = &running.app.clock;

        // Five wrong passwords for alice: each back to the login page.
        for _ in 0..ACCOUNT_FAILURES {
            let (status, location, _, _) = try_login(&http, &base, "alice", "nope").await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert!(location.starts_with("/login?err="), "{location}");
        }
        // The sixth, even with the right password, is refused with 429 and a clear message.
        let (status, _, retry, body) = try_login(&http, &base, "alice", "alice-demo-pass").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            body.contains("Too many failed login attempts. Please try again in 15 minutes."),
            "{body}"
        );
        let retry: i64 = retry.expect("Retry-After").parse().expect("seconds");
        assert!((WINDOW_SECS - 60..=WINDOW_SECS).contains(&retry), "{retry}");
        // Another account from the same address is not locked by alice's failures.
        login(&http, &base, "bob", "bob-demo-pass").await;

        // Still refused a minute before the window passes; allowed after it.
        clock.advance(WINDOW_SECS - 60);
        let (status, _, _, body) = try_login(&http, &base, "alice", "alice-demo-pass").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.contains("try again in 1 minute."), "{body}");
        clock.advance(61);
        login(&http, &base, "alice", "alice-demo-pass").await;

        // A successful login reset alice's count: four failures again do not lock her.
        for _ in 0..ACCOUNT_FAILURES - 1 {
            let (status, ..) = try_login(&http, &base, "alice", "nope").await;
            assert_eq!(status, StatusCode::SEE_OTHER);
        }
        login(&http, &base, "alice", "alice-demo-pass").await;

        // Password spraying from one address: after enough failures over many names, every
        // name from that address is refused (unknown names count too).
        clock.advance(WINDOW_SECS);
        for i in 0..ADDRESS_FAILURES {
            let (status, ..) = try_login(&http, &base, &format!("nobody{i}"), "guess").await;
            assert_eq!(status, StatusCode::SEE_OTHER, "attempt {i}");
        }
        let (status, ..) = try_login(&http, &base, "bob", "bob-demo-pass").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        // With no trusted proxy configured, a client's X-Forwarded-For changes nothing.
        let r = http
            .post(format!("{base}/login"))
            .header("x-forwarded-for", "198.51.100.1")
            .form(&[("username", "bob"), ("password", "bob-demo-pass")])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        clock.advance(WINDOW_SECS);
        login(&http, &base, "bob", "bob-demo-pass").await;
        running.shutdown().await;
    })
    .await
    .expect("took longer than 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_costs_the_same_for_unknown_users() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        // The median of three failed logins each (different names stay under the limits).
        async fn median(http: &reqwest::Client, base: &str, users: [&str; 3]) -> Duration {
            let mut t = Vec::new();
            for u in users {
                let start = std::time::Instant::now();
                let (status, ..) = try_login(http, base, u, "wrong password").await;
                assert_eq!(status, StatusCode::SEE_OTHER);
                t.push(start.elapsed());
            }
            t.sort();
            t[1]
        }
        let known = median(&http, &base, ["alice", "bob", "alice"]).await;
        let unknown = median(&http, &base, ["mallory", "trudy", "eve"]).await;
        // Without the dummy hash an unknown name answers in well under a millisecond, a known
        // one only after Argon2id (tens of milliseconds).
        assert!(
            unknown * 3 >= known && known * 3 >= unknown,
            "known {known:?}, unknown {unknown:?}"
        );
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

/// `GET path` with the session cookie: the status and `Location`.
async fn get_with(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    sid: &str,
) -> (StatusCode, String) {
    let r = http
        .get(format!("{base}{path}"))
        .header("cookie", sid)
        .send()
        .await
        .expect("get");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status(), location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle_and_after_twelve_hours() {
    use examples::portal::store::{ABSOLUTE_SECS, IDLE_SECS};
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let clock = &running.app.clock;
        let expired = "/login?err=Your+session+has+expired.+Please+log+in+again.";

        // Idle timeout: each page view counts as use, so 29 minutes apart twice is fine.
        let (sid, _, _) = login(&http, &base, "alice", "alice-demo-pass").await;
        for _ in 0..2 {
            clock.advance(IDLE_SECS - 60);
            assert_eq!(
                get_with(&http, &base, "/services", &sid).await.0,
                StatusCode::OK
            );
        }
        // The live panel's polling does not count as use: 20 minutes later it still answers,
        // 31 minutes after the last page view it gets 401 and the pages go to the login page.
        clock.advance(20 * 60);
        let (status, _) = get_with(&http, &base, "/s/100/live.json", &sid).await;
        assert_eq!(status, StatusCode::OK);
        clock.advance(IDLE_SECS - 20 * 60 + 60);
        let (status, _) = get_with(&http, &base, "/s/100/live.json", &sid).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, location) = get_with(&http, &base, "/s/100", &sid).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location, expired);
        let page = http
            .get(format!("{base}{location}"))
            .send()
            .await
            .expect("login page")
            .text()
            .await
            .expect("body");
        assert!(
            page.contains("Your session has expired. Please log in again."),
            "{page}"
        );

        // Absolute lifetime: used every 25 minutes, the session still ends 12 hours after login.
        let (sid, _, _) = login(&http, &base, "bob", "bob-demo-pass").await;
        let step = 25 * 60;
        let mut elapsed = 0;
        while elapsed + step < ABSOLUTE_SECS {
            clock.advance(step);
            elapsed += step;
            let (status, _) = get_with(&http, &base, "/services", &sid).await;
            assert_eq!(status, StatusCode::OK, "after {elapsed} s");
        }
        clock.advance(ABSOLUTE_SECS - elapsed);
        let (status, location) = get_with(&http, &base, "/services", &sid).await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, expired)
        );
        // Without a cookie at all: the plain login page.
        let r = http
            .get(format!("{base}/services"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.headers()["location"], "/login");
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttle_behind_a_trusted_proxy() {
    use examples::portal::throttle::ADDRESS_FAILURES;
    tokio::time::timeout(Duration::from_secs(90), async {
        // The test client plays the proxy on loopback.
        let running = start_with(PortalConfig {
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("net")],
            ..Default::default()
        })
        .await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let attempt = |xff: &'static str, user: String, pw: &'static str| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .post(format!("{base}/login"))
                    .header("x-forwarded-for", xff)
                    .form(&[("username", user.as_str()), ("password", pw)])
                    .send()
                    .await
                    .expect("login");
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                (r.status(), location)
            }
        };
        // One customer address sprays names through the proxy.
        for i in 0..ADDRESS_FAILURES {
            let (status, _) = attempt("198.51.100.7", format!("nobody{i}"), "guess").await;
            assert_eq!(status, StatusCode::SEE_OTHER, "attempt {i}");
        }
        let (status, _) = attempt("198.51.100.7", "bob".into(), "bob-demo-pass").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        // A name it prepends itself does not help: the proxy appends the real address.
        let (status, _) = attempt("10.9.9.9, 198.51.100.7", "bob".into(), "bob-demo-pass").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        // Other customers behind the same proxy are not locked out.
        let login = attempt("198.51.100.8", "bob".into(), "bob-demo-pass").await;
        assert_eq!(login, (StatusCode::SEE_OTHER, "/services".to_owned()));
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

/// The page at `path` with the session cookie.
async fn page(http: &reqwest::Client, base: &str, path: &str, sid: &str) -> String {
    http.get(format!("{base}{path}"))
        .header("cookie", sid)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_comes_out_escaped() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let (sid, _, csrf) = login(&http, &base, "alice", "alice-demo-pass").await;
        const HOSTILE: &str = "<script>alert(1)</script>";
        const ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";

        // A snapshot description, as the customer typed it.
        let r = http
            .post(format!("{base}/s/100/snapshots"))
            .header("cookie", &sid)
            .form(&[("csrf", csrf.as_str()), ("description", HOSTILE)])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let mut body = String::new();
        for _ in 0..100 {
            body = page(&http, &base, "/s/100/snapshots", &sid).await;
            if body.contains("alert(1)") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            body.contains(ESCAPED),
            "the description shown escaped: {body}"
        );
        assert!(!body.contains(HOSTILE), "{body}");

        // A firewall rule comment.
        let r = http
            .post(format!("{base}/s/100/firewall"))
            .header("cookie", &sid)
            .form(&[
                ("csrf", csrf.as_str()),
                ("action", "add"),
                ("direction", "in"),
                ("verdict", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "8443"),
                ("comment", "x' onmouseover='alert(1)"),
            ])
            .send()
            .await
            .expect("post");
        let location = r.headers()["location"].to_str().expect("ascii").to_owned();
        assert!(location.contains("ok=Rule+added"), "{location}");
        let body = page(&http, &base, "/s/100/firewall", &sid).await;
        assert!(
            body.contains("x&#39; onmouseover=&#39;alert(1)"),
            "the comment shown escaped: {body}"
        );
        assert!(!body.contains("x' onmouseover"), "{body}");

        // A flash message from the query string cannot inject markup either.
        let body = page(
            &http,
            &base,
            "/s/100/firewall?err=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            &sid,
        )
        .await;
        assert!(
            body.contains("&#60;img src=x onerror=alert(1)&#62;"),
            "{body}"
        );
        assert!(!body.contains("<img"), "{body}");
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

/// The value of the first metric line starting with `prefix` (0 when absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_are_guarded() {
    tokio::time::timeout(Duration::from_secs(90), async {
        // The test's requests come through a "proxy" on loopback, so X-Forwarded-For names
        // the client: a remote one needs the token.
        let running = start_with(PortalConfig {
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("net")],
            metrics_token: Some(
                examples::metrics::MetricsToken::new("m3trics-t0ken").expect("token"),
            ),
            ..Default::default()
        })
        .await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let scrape = async || {
            let r = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics");
            assert_eq!(r.status(), StatusCode::OK, "loopback gets the metrics");
            let ct = r.headers()["content-type"].to_str().expect("ascii").to_owned();
            assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
            r.text().await.expect("body")
        };
        let before = scrape().await;
        let (sid, _, _) = login(&http, &base, "alice", "alice-demo-pass").await;
        for _ in 0..3 {
            let body = page(&http, &base, "/s/100/snapshots", &sid).await;
            assert!(body.contains("Snapshots"));
        }
        let after = scrape().await;
        let snapshots =
            r#"portal_http_requests_total{method="GET",route="/s/{vmid}/snapshots",status="200"}"#;
        assert_eq!(metric(&after, snapshots) - metric(&before, snapshots), 3.0, "{after}");
        let login_line = r#"portal_http_requests_total{method="POST",route="/login",status="303"}"#;
        assert_eq!(metric(&after, login_line) - metric(&before, login_line), 1.0, "{after}");
        let latency = r#"portal_http_request_duration_seconds_count{method="GET",route="/s/{vmid}/snapshots"}"#;
        assert_eq!(metric(&after, latency), 3.0, "{after}");
        // The cluster calls behind those pages, through the API client's observer.
        let api: f64 = after
            .lines()
            .filter(|l| l.starts_with("pve_api_requests_total{") && l.contains(r#"status="200""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(api >= 1.0, "{after}");
        assert!(
            after.contains(r#"pve_api_requests_total{method="GET",endpoint="/cluster/resources",status="200"}"#),
            "{after}"
        );
        assert!(after.contains("pve_api_request_duration_seconds_count{"), "{after}");
        // No session ids, CSRF tokens or user names in the metrics.
        let sid_value = sid.trim_start_matches("sid=");
        assert!(!after.contains(sid_value) && !after.contains("alice"), "{after}");

        // A client behind the trusted proxy that is not on loopback: token or nothing.
        let remote = |auth: Option<&str>| {
            let mut r = http
                .get(format!("{base}/metrics"))
                .header("x-forwarded-for", "203.0.113.9");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.send()
        };
        let r = remote(None).await.expect("metrics");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = remote(Some("Bearer wrong")).await.expect("metrics");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = remote(Some("Bearer m3trics-t0ken")).await.expect("metrics");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.text().await.expect("body").contains("portal_http_requests_total"));
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_connection_test_refuses_bad_input() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let (sid, _, _) = login(&http, &base, "alice", "alice-demo-pass").await;
        let ask = async |query: &str| {
            let r = http
                .get(format!("{base}/s/100/firewall?test=1&{query}"))
                .header("cookie", &sid)
                .send()
                .await
                .expect("get");
            (r.status(), r.text().await.expect("body"))
        };

        // Port 70000: a clear message, no verdict.
        let (status, body) = ask("t_dir=in&t_proto=tcp&t_port=70000&t_source=198.51.100.7").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("id=test-error") && body.contains("must be a number from 1 to 65535"),
            "{body}"
        );
        assert!(!body.contains("id=test-verdict"), "no verdict: {body}");
        // A source that is not an address.
        let (status, body) = ask("t_dir=in&t_proto=tcp&t_port=22&t_source=example.com").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("must be an IPv4 or IPv6 address"), "{body}");
        assert!(!body.contains("id=test-verdict"), "no verdict: {body}");
        // What was typed stays in the form.
        assert!(body.contains("value='example.com'"), "{body}");

        // Good questions get a verdict and what decided it: the demo VM's rule #0 lets the
        // web in; a port no rule names falls to the incoming policy.
        let (status, body) = ask("t_proto=tcp&t_port=443&t_source=198.51.100.7").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.contains("id=test-error"), "{body}");
        assert!(body.contains("<b id=test-verdict>ACCEPT</b>"), "{body}");
        assert!(
            body.contains("id=test-rule data-pos='0'")
                && body.contains("<code>IN ACCEPT -p tcp -dport 80,443 # web</code>"),
            "{body}"
        );
        // The rule with the provider's IP set comes after the deciding one: nothing unseen.
        assert!(!body.contains("id=test-unseen"), "{body}");
        let (status, body) = ask("t_proto=tcp&t_port=8081&t_source=198.51.100.7").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<b id=test-verdict>DROP</b>"), "{body}");
        assert!(
            body.contains("decided by the incoming policy (DROP)"),
            "{body}"
        );
        assert!(!body.contains("id=test-rule"), "{body}");
        // The demo's SSH rule (#1) names the provider's `+dc/management`: the answer says
        // the check cannot see its members.
        assert!(
            body.contains("id=test-unseen>Rules #1 name IP sets or aliases"),
            "{body}"
        );
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}

/// Posts a power action; returns the redirect's `Location`.
async fn power(http: &reqwest::Client, base: &str, sid: &str, csrf: &str, action: &str) -> String {
    let r = http
        .post(format!("{base}/s/100/power"))
        .header("cookie", sid)
        .form(&[("csrf", csrf), ("action", action)])
        .send()
        .await
        .expect("power");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{action}");
    r.headers()["location"].to_str().expect("ascii").to_owned()
}

/// Follows the task of a redirect to its end; its exit status.
async fn task_end(http: &reqwest::Client, base: &str, sid: &str, location: &str) -> String {
    let upid = location
        .split("task=")
        .nth(1)
        .unwrap_or_else(|| panic!("a task to follow: {location}"));
    loop {
        let t: serde_json::Value = http
            .get(format!("{base}/s/100/task?upid={upid}"))
            .header("cookie", sid)
            .send()
            .await
            .expect("task")
            .json()
            .await
            .expect("json");
        if t["running"] == false {
            return t["exitstatus"].as_str().unwrap_or("").to_owned();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_and_reset_from_the_overview() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let running = start(None).await;
        let base = format!("http://{}", running.addr);
        let http = http();
        let (sid, _, csrf) = login(&http, &base, "alice", "alice-demo-pass").await;

        // The overview offers both next to Start/Stop; Reset asks first.
        let overview = page(&http, &base, "/s/100", &sid).await;
        for id in ["btn-start", "btn-stop", "btn-reboot", "btn-reset"] {
            assert!(overview.contains(&format!("id='{id}'")), "{id}: {overview}");
        }
        let reset = overview
            .split("id='btn-reset'")
            .nth(1)
            .and_then(|s| s.split('>').next())
            .expect("reset button");
        assert!(
            reset.contains("data-confirm='Reset the VM?") && reset.contains("return confirm("),
            "{reset}"
        );

        // Running: both start a task that ends OK, and the VM runs afterwards.
        for (action, word) in [("reboot", "qmreboot"), ("reset", "qmreset")] {
            let loc = power(&http, &base, &sid, &csrf, action).await;
            assert!(loc.contains(&format!("%3A{word}%3A")), "{action}: {loc}");
            assert_eq!(task_end(&http, &base, &sid, &loc).await, "OK", "{action}");
        }
        let live: serde_json::Value = http
            .get(format!("{base}/s/100/live.json"))
            .header("cookie", &sid)
            .send()
            .await
            .expect("live")
            .json()
            .await
            .expect("json");
        assert_eq!(live["status"], "running", "{live}");

        // Without the CSRF token: refused, nothing started.
        let r = http
            .post(format!("{base}/s/100/power"))
            .header("cookie", &sid)
            .form(&[("csrf", "wrong"), ("action", "reset")])
            .send()
            .await
            .expect("power");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        // Stopped: both are refused with the reason, no task.
        let loc = power(&http, &base, &sid, &csrf, "stop").await;
        assert_eq!(task_end(&http, &base, &sid, &loc).await, "OK");
        for action in ["reboot", "reset"] {
            let loc = power(&http, &base, &sid, &csrf, action).await;
            assert!(!loc.contains("task="), "{action}: {loc}");
            assert!(
                loc.contains("err=") && loc.contains("not+running"),
                "{action}: {loc}"
            );
        }
        running.shutdown().await;
    })
    .await
    .expect("took longer than 90 s");
}
