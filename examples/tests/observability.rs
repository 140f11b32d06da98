//! Tracing and metrics of the portal as an operator sees them: one span per request with the
//! method, the route template, the status and the customer (never passwords, cookies or CSRF
//! tokens), one span per task followed, and the task's duration in `/metrics`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples::portal::{self, StartOptions, config::PortalConfig};
use pve_vps_sim::SimConfig;
use reqwest::StatusCode;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_task_spans_without_secrets() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "examples=debug,pve_vps_api=debug,pve_vps_services=debug",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    tokio::time::timeout(Duration::from_secs(90), async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = PortalConfig {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        };
        let opts = StartOptions {
            sim: Some(SimConfig::for_tests()),
            ..Default::default()
        };
        let running = portal::start(cfg, opts).await.expect("portal starts");
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");

        const PASSWORD: &str = "alice-demo-pass";
        let r = http
            .post(format!("{base}/login"))
            .form(&[("username", "alice"), ("password", PASSWORD)])
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
        let get = async |path: &str| {
            http.get(format!("{base}{path}"))
                .header("cookie", &sid)
                .send()
                .await
                .expect("get")
        };
        let page = get("/s/100/snapshots").await.text().await.expect("body");
        let csrf = page
            .split("name=csrf content='")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .expect("csrf meta")
            .to_owned();

        // Stop the VM and follow its task as the page does, until it ends.
        let r = http
            .post(format!("{base}/s/100/power"))
            .header("cookie", &sid)
            .form(&[("csrf", csrf.as_str()), ("action", "stop")])
            .send()
            .await
            .expect("power");
        let location = r.headers()["location"].to_str().expect("ascii").to_owned();
        let upid =
            url::form_urlencoded::parse(location.split_once('?').expect("query").1.as_bytes())
                .find(|(k, _)| k == "task")
                .map(|(_, v)| v.into_owned())
                .expect("a task to follow");
        let q: String = url::form_urlencoded::byte_serialize(upid.as_bytes()).collect();
        let mut ended = false;
        for _ in 0..100 {
            let v: serde_json::Value = get(&format!("/s/100/task?upid={q}"))
                .await
                .json()
                .await
                .expect("json");
            if v["running"] == false {
                assert_eq!(v["exitstatus"], "OK");
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ended, "the stop task ends");

        let metrics = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        assert!(
            metrics.contains(r#"pve_task_duration_seconds_count{kind="qmstop",outcome="ok"} 1"#),
            "{metrics}"
        );
        running.shutdown().await;

        let text = log.text();
        // The request spans: route templates, statuses and the customer.
        assert!(
            text.contains(
                "http_request{method=GET route=/s/{vmid}/snapshots customer=alice status=200}"
            ),
            "{text}"
        );
        assert!(
            text.contains("http_request{method=POST route=/login customer=alice status=303}"),
            "{text}"
        );
        // The task span: upid, kind and vmid.
        assert!(
            text.contains(&format!("task{{upid={upid} kind=qmstop vmid=100}}")),
            "{text}"
        );
        assert!(text.contains("task ended"), "{text}");
        // Never the password, the session cookie or the CSRF token.
        let sid_value = sid.trim_start_matches("sid=");
        for secret in [PASSWORD, sid_value, csrf.as_str()] {
            assert!(
                !text.contains(secret),
                "a secret in the logs: {secret}\n{text}"
            );
        }
    })
    .await
    .expect("took longer than 90 s");
}
