//! Authentication, secrets hygiene, redirects, retries and error mapping.

mod common;

use common::*;
use pve_vps_api::{Auth, Client, Error, RetryPolicy};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "correct horse battery staple";
const TICKET1: &str = "PVE:root@pam:6560F00D::c2lnbmF0dXJlMQ==";
const TICKET2: &str = "PVE:root@pam:6560F10D::c2lnbmF0dXJlMg==";

fn ticket_answer(t: &str, csrf: &str) -> serde_json::Value {
    data(json!({"ticket": t, "CSRFPreventionToken": csrf, "username": "root@pam"}))
}

fn ticket_client(server: &MockServer, renew_after: Duration) -> Client {
    Client::builder(server.uri())
        .auth(Auth::password("root", "pam", PASSWORD).unwrap())
        .retry(RetryPolicy::none())
        .ticket_renew_after(renew_after)
        .max_concurrent_requests(32)
        .build()
        .unwrap()
}

fn version() -> serde_json::Value {
    data(json!({"version": "8.2.4", "release": "8.2"}))
}

#[tokio::test]
async fn token_header_is_sent() {
    timed(async {
        let (server, client) = server_and_client().await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .and(header("authorization", TOKEN_HEADER))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .expect(1)
            .mount(&server)
            .await;
        client.version().await.unwrap();
        let reqs = server.received_requests().await.unwrap();
        assert!(
            reqs[0].headers.get("CSRFPreventionToken").is_none(),
            "tokens need no CSRF header"
        );
        assert!(reqs[0].headers.get("cookie").is_none());
    })
    .await;
}

#[tokio::test]
async fn ticket_login_cookie_and_csrf() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .and(form_is(&[("username", "root@pam"), ("password", PASSWORD)]))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(ticket_answer(TICKET1, "csrf-1")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let cookie = format!("PVEAuthCookie={TICKET1}");
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .and(header("cookie", cookie.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path("/api2/json/nodes/pve1/qemu/100/cloudinit"))
            .and(header("cookie", cookie.as_str()))
            .and(header("CSRFPreventionToken", "csrf-1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!(null))))
            .expect(1)
            .mount(&server)
            .await;
        let client = ticket_client(&server, Duration::from_secs(3600));
        client.version().await.unwrap();
        let vm = client
            .node(&"pve1".parse().unwrap())
            .qemu(100u32.try_into().unwrap());
        vm.cloudinit_regenerate().await.unwrap();
        let reqs = server.received_requests().await.unwrap();
        let get = reqs.iter().find(|r| r.method.as_str() == "GET").unwrap();
        assert!(
            get.headers.get("CSRFPreventionToken").is_none(),
            "no CSRF token on GET"
        );
    })
    .await;
}

#[tokio::test]
async fn twenty_concurrent_requests_after_expiry_renew_once() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .and(form_is(&[("username", "root@pam"), ("password", PASSWORD)]))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(ticket_answer(TICKET1, "csrf-1")),
            )
            .expect(1)
            .mount(&server)
            .await;
        // Renewal posts the current ticket as the password.
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .and(form_is(&[("username", "root@pam"), ("password", TICKET1)]))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(ticket_answer(TICKET2, "csrf-2"))
                    .set_delay(Duration::from_millis(50)),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .and(header(
                "cookie",
                format!("PVEAuthCookie={TICKET1}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .and(header(
                "cookie",
                format!("PVEAuthCookie={TICKET2}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .expect(20)
            .mount(&server)
            .await;
        // Generous renewal age so a stalled machine does not renew a second time.
        let client = ticket_client(&server, Duration::from_millis(800));
        client.version().await.unwrap();
        tokio::time::sleep(Duration::from_millis(850)).await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let c = client.clone();
            set.spawn(async move { c.version().await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        let logins = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/api2/json/access/ticket")
            .count();
        assert_eq!(logins, 2, "one login and exactly one renewal");
    })
    .await;
}

#[tokio::test]
async fn ticket_rejected_with_401_logs_in_again_once() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(ticket_answer(TICKET1, "csrf-1")),
            )
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(ResponseTemplate::new(401))
            .expect(2)
            .mount(&server)
            .await;
        let client = ticket_client(&server, Duration::from_secs(3600));
        let err = client.version().await.unwrap_err();
        assert!(err.is_auth(), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn secrets_never_in_debug_or_errors() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"data": null, "message": "authentication failure\n"})),
            )
            .mount(&server)
            .await;
        let auth = Auth::password("root", "pam", PASSWORD).unwrap();
        assert!(!format!("{auth:?}").contains("horse"));
        let client = ticket_client(&server, Duration::from_secs(3600));
        assert!(!format!("{client:?}").contains("horse"));
        let err = client.version().await.unwrap_err();
        assert!(err.is_auth(), "{err:?}");
        for text in [format!("{err}"), format!("{err:?}")] {
            assert!(!text.contains("horse"), "password leaked: {text}");
        }

        let token = Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN_SECRET));
        let (server, client) = server_and_client().await;
        assert!(!format!("{client:?}").contains(TOKEN_SECRET));
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(403).set_body_json(
                json!({"data": null, "message": "Permission check failed (/vms/100, VM.Audit)\n"}),
            ))
            .mount(&server)
            .await;
        let err = client.version().await.unwrap_err();
        assert!(err.is_auth());
        assert_eq!(
            err.message(),
            Some("Permission check failed (/vms/100, VM.Audit)")
        );
        for text in [format!("{err}"), format!("{err:?}")] {
            assert!(!text.contains(TOKEN_SECRET), "token leaked: {text}");
        }
    })
    .await;
}

#[tokio::test]
async fn redirect_to_another_host_does_not_carry_the_token() {
    timed(async {
        let (server, client) = server_and_client().await;
        let evil = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/api2/json/version", evil.uri())),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(header_exists("authorization"))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .expect(0)
            .mount(&evil)
            .await;
        let err = client.version().await.unwrap_err();
        assert!(
            matches!(err, Error::Redirect { status: 302, .. }),
            "{err:?}"
        );
        assert!(
            evil.received_requests().await.unwrap().is_empty(),
            "the other host saw no request at all"
        );
    })
    .await;
}

fn retrying_client(server: &MockServer) -> Client {
    Client::builder(server.uri())
        .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .build()
        .unwrap()
}

#[tokio::test]
async fn idempotent_requests_retry_on_503_and_595() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(ResponseTemplate::new(595))
            .up_to_n_times(1)
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/version"))
            .respond_with(ResponseTemplate::new(200).set_body_json(version()))
            .with_priority(3)
            .mount(&server)
            .await;
        let client = retrying_client(&server);
        assert_eq!(client.version().await.unwrap().version, "8.2.4");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn retries_are_bounded_and_writes_are_not_retried() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(502))
            .expect(4)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let client = retrying_client(&server);
        let err = client.version().await.unwrap_err();
        assert_eq!(err.status(), Some(502));
        assert!(err.is_retryable());
        let vm = client
            .node(&"pve1".parse().unwrap())
            .qemu(100u32.try_into().unwrap());
        let err = vm.start().await.unwrap_err();
        assert_eq!(err.status(), Some(503));
    })
    .await;
}

#[tokio::test]
async fn connect_errors_are_retryable_transport_errors() {
    timed(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = Client::builder(format!("http://127.0.0.1:{port}"))
            .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
            .retry(RetryPolicy::new(
                2,
                Duration::from_millis(1),
                Duration::from_millis(2),
            ))
            .build()
            .unwrap();
        let err = client.version().await.unwrap_err();
        assert!(
            matches!(err, Error::Transport(_)) && err.is_retryable(),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn pve_errors_are_mapped() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = client
            .node(&"pve1".parse().unwrap())
            .qemu(100u32.try_into().unwrap());
        Mock::given(method("POST"))
            .and(path("/api2/json/nodes/pve1/qemu/100/status/start"))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"data": null, "message": "VM is locked (backup)\n"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api2/json/nodes/pve1/qemu/100/snapshot"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "data": null,
                "errors": {"snapname": "invalid format - invalid configuration ID 'x y'\n"},
                "message": "Parameter verification failed.\n"
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api2/json/nodes/pve1/qemu/100/status/current"))
            .respond_with(ResponseTemplate::new(500).set_body_string(
                "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist",
            ))
            .mount(&server)
            .await;
        let e = vm.start().await.unwrap_err();
        assert!(e.is_locked() && !e.is_not_found() && !e.is_retryable());
        assert_eq!(e.message(), Some("VM is locked (backup)"));
        let e = vm
            .snapshots()
            .create(&"ok".parse().unwrap(), None, false)
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(e.param_errors().unwrap()["snapname"].starts_with("invalid format"));
        let e = vm.status().await.unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
    })
    .await;
}

/// PVE often puts its message only in the HTTP reason phrase.
#[tokio::test]
async fn reason_phrase_is_kept() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    timed(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = "HTTP/1.1 500 Configuration file 'nodes/pve1/qemu-server/105.conf' does not exist\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"data\":null}";
            let _ = s.write_all(resp.as_bytes()).await;
        });
        let client = Client::builder(format!("http://127.0.0.1:{port}"))
            .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let e = client.version().await.unwrap_err();
        assert_eq!(e.message(), Some("Configuration file 'nodes/pve1/qemu-server/105.conf' does not exist"));
        assert!(e.is_not_found());
    })
    .await;
}

#[test]
fn invalid_identifiers_fail_before_sending() {
    assert!(
        Auth::api_token("api@pve", "x").is_err(),
        "token id needs !tokenid"
    );
    assert!(Auth::password("root", "p", "x").is_err(), "realm too short");
    assert!(Client::builder("pve").build().is_err(), "no credentials");
}
