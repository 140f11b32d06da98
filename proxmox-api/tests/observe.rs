//! The metrics hook: a `RequestObserver` hears about every HTTP exchange (method, template,
//! path, status or failure kind, elapsed time, attempt). The `tracing` spans are tested in
//! `spans.rs` (its own binary: tracing's callsite cache is process-wide).

mod common;

use common::*;
use pve_vps_api::observe::{Exchange, FailureKind, Outcome, RequestObserver};
use pve_vps_api::{Auth, Client, NodeName, RetryPolicy, VmId};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: &'static str,
    template: String,
    path: String,
    outcome: Outcome,
    elapsed: Duration,
    attempt: u32,
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl RequestObserver for Recorder {
    fn on_exchange(&self, e: &Exchange<'_>) {
        self.0.lock().unwrap().push(Seen {
            method: e.method,
            template: e.template.to_owned(),
            path: e.path.to_owned(),
            outcome: e.outcome,
            elapsed: e.elapsed,
            attempt: e.attempt,
        });
    }
}

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

const STATUS_TEMPLATE: &str = "/nodes/{node}/qemu/{vmid}/status/current";

fn builder(uri: &str, rec: &Arc<Recorder>) -> pve_vps_api::ClientBuilder {
    Client::builder(uri)
        .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::none())
        .observer(rec.clone())
}

#[tokio::test]
async fn every_exchange_is_observed_with_template_status_and_time() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/qemu/100/status/current"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(data(json!({"status": "running"})))
                    .set_delay(Duration::from_millis(30)),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/qemu/101/status/current"))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"data": null, "message": "no such VM ('101')\n"})),
            )
            .mount(&server)
            .await;
        let rec = Arc::new(Recorder::default());
        let client = builder(&server.uri(), &rec).build().unwrap();
        let node: NodeName = "pve1".parse().unwrap();
        for _ in 0..3 {
            client
                .node(&node)
                .qemu(VmId::new(100).unwrap())
                .status()
                .await
                .unwrap();
        }
        client
            .node(&node)
            .qemu(VmId::new(101).unwrap())
            .status()
            .await
            .unwrap_err();
        // The untyped escape hatch reports the concrete path as its template.
        let _: serde_json::Value = client
            .get("/nodes/pve1/qemu/100/status/current", &[])
            .await
            .unwrap();

        let seen = rec.take();
        assert_eq!(seen.len(), 5, "{seen:#?}");
        let ok: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.outcome == Outcome::Status(200))
            .collect();
        assert_eq!(ok.len(), 4);
        assert_eq!(
            seen.iter()
                .filter(|s| s.outcome == Outcome::Status(500))
                .count(),
            1
        );
        for s in &seen[..4] {
            assert_eq!(s.method, "GET");
            assert_eq!(s.template, STATUS_TEMPLATE);
            assert_eq!(s.attempt, 0);
        }
        assert_eq!(seen[3].path, "/nodes/pve1/qemu/101/status/current");
        assert_eq!(seen[4].template, "/nodes/pve1/qemu/100/status/current");
        assert!(
            seen[0].elapsed >= Duration::from_millis(30),
            "elapsed {:?} shorter than the server's delay",
            seen[0].elapsed
        );
    })
    .await;
}

#[tokio::test]
async fn retries_and_logins_are_separate_exchanges() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!({
                "ticket": "PVE:root@pam:6560F00D::c2ln", "CSRFPreventionToken": "6560F00D:x",
                "username": "root@pam"
            }))))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(data(json!({"version": "8.2.4", "release": "8.2"}))),
            )
            .mount(&server)
            .await;
        let rec = Arc::new(Recorder::default());
        let client = Client::builder(server.uri())
            .auth(Auth::password("root", "pam", "pw").unwrap())
            .retry(RetryPolicy::new(
                3,
                Duration::from_millis(1),
                Duration::from_millis(2),
            ))
            .observer(rec.clone())
            .build()
            .unwrap();
        client.version().await.unwrap();
        let seen = rec.take();
        let summary: Vec<(&str, &str, Outcome, u32)> = seen
            .iter()
            .map(|s| (s.method, s.template.as_str(), s.outcome, s.attempt))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("POST", "/access/ticket", Outcome::Status(200), 0),
                ("GET", "/version", Outcome::Status(503), 0),
                ("GET", "/version", Outcome::Status(503), 1),
                ("GET", "/version", Outcome::Status(200), 2),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn a_connection_failure_is_observed_without_a_status() {
    timed(async {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let rec = Arc::new(Recorder::default());
        let client = builder(&format!("http://127.0.0.1:{port}"), &rec)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        client.version().await.unwrap_err();
        let seen = rec.take();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].outcome, Outcome::Failed(FailureKind::Connect));
        assert_eq!(seen[0].template, "/version");
    })
    .await;
}
