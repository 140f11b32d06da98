//! Bad answers from the cluster: each one is a typed error naming the endpoint (method and
//! path), never a panic and never a silent success.

mod common;

use common::*;
use pve_vps_api::{Error, NodeName, RetryPolicy, VmId};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STATUS: &str = "/api2/json/nodes/pve1/qemu/100/status/current";
const ENDPOINT: &str = "GET /nodes/pve1/qemu/100/status/current";

async fn answer(server: &MockServer, resp: ResponseTemplate) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(STATUS))
        .respond_with(resp)
        .mount(server)
        .await;
}

async fn status_err(server: &MockServer, resp: ResponseTemplate) -> Error {
    answer(server, resp).await;
    let client = client_for(server);
    let node: NodeName = "pve1".parse().unwrap();
    client
        .node(&node)
        .qemu(VmId::new(100).unwrap())
        .status()
        .await
        .expect_err("a bad answer must be an error")
}

fn client_for(server: &MockServer) -> pve_vps_api::Client {
    pve_vps_api::Client::builder(server.uri())
        .auth(pve_vps_api::Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

fn names_endpoint(e: &Error) {
    let text = e.to_string();
    assert!(text.contains(ENDPOINT), "`{text}` does not name {ENDPOINT}");
}

#[tokio::test]
async fn truncated_json_is_a_decode_error_with_the_field_path() {
    timed(async {
        let server = MockServer::start().await;
        let body = r#"{"data":{"status":"running","mem":536870912,"name":"web-"#;
        let err = status_err(&server, ResponseTemplate::new(200).set_body_string(body)).await;
        match &err {
            Error::Decode {
                method,
                path,
                field,
                source,
            } => {
                assert_eq!(method, "GET");
                assert_eq!(path, "/nodes/pve1/qemu/100/status/current");
                assert_eq!(field, "data.name");
                assert!(source.is_eof(), "{source}");
            }
            other => panic!("expected Decode, got {other:?}"),
        }
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn html_error_page_with_200_is_an_invalid_body() {
    timed(async {
        let server = MockServer::start().await;
        let page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
        let err = status_err(
            &server,
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string(page),
        )
        .await;
        match &err {
            Error::InvalidBody { status, reason, .. } => {
                assert_eq!(*status, 200);
                assert!(reason.contains("HTML"), "{reason}");
                assert!(reason.contains("502 Bad Gateway"), "{reason}");
            }
            other => panic!("expected InvalidBody, got {other:?}"),
        }
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn html_error_page_with_502_is_an_api_error_without_markup() {
    timed(async {
        let server = MockServer::start().await;
        let page = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>";
        let err = status_err(&server, ResponseTemplate::new(502).set_body_string(page)).await;
        assert_eq!(err.status(), Some(502));
        assert!(err.is_retryable());
        let msg = err.message().unwrap();
        assert!(!msg.contains('<'), "markup leaked into the message: {msg}");
        assert!(msg.contains("HTML page"), "{msg}");
        names_endpoint(&err);
    })
    .await;
}

/// A one-shot HTTP/1.1 server that answers every connection with `status_line` and an empty
/// body, as pveproxy does when the node it forwards to does not answer (wiremock cannot set a
/// custom reason phrase). Stops when dropped.
struct RawServer {
    uri: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_server(status_line: &'static str) -> RawServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let resp = format!("{status_line}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    RawServer { uri, task }
}

#[tokio::test]
async fn pve_596_proxy_statuses_are_retryable_api_errors_with_the_reason() {
    timed(async {
        // FACT (pve-http-server, PVE/APIServer/AnyEvent.pm, proxy_request): pveproxy passes
        // AnyEvent::HTTP's pseudo-statuses (595-599) of a failed request to another node on
        // to the client, the error text as reason phrase ("596 Connection timed out").
        for reason in ["Connection timed out", "Broken pipe"] {
            let line: &'static str = Box::leak(format!("HTTP/1.1 596 {reason}").into_boxed_str());
            let server = raw_server(line).await;
            let client = pve_vps_api::Client::builder(server.uri.as_str())
                .auth(pve_vps_api::Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
                .retry(RetryPolicy::none())
                .build()
                .unwrap();
            let node: NodeName = "pve1".parse().unwrap();
            let err = client
                .node(&node)
                .qemu(VmId::new(100).unwrap())
                .status()
                .await
                .expect_err("596 is an error");
            assert_eq!(err.status(), Some(596));
            assert_eq!(err.message(), Some(reason));
            assert!(err.is_retryable(), "596 must be retryable");
            assert!(!err.is_not_found() && !err.is_auth());
            names_endpoint(&err);
        }
    })
    .await;
}

#[tokio::test]
async fn idempotent_calls_retry_through_a_596() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(STATUS))
            .respond_with(ResponseTemplate::new(596))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(STATUS))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"data": {"status": "running"}})),
            )
            .mount(&server)
            .await;
        let client = pve_vps_api::Client::builder(server.uri())
            .auth(pve_vps_api::Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
            .retry(RetryPolicy::new(
                2,
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(2),
            ))
            .build()
            .unwrap();
        let node: NodeName = "pve1".parse().unwrap();
        let s = client
            .node(&node)
            .qemu(VmId::new(100).unwrap())
            .status()
            .await
            .unwrap();
        assert_eq!(s.status.as_str(), "running");
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn empty_body_is_an_invalid_body() {
    timed(async {
        let server = MockServer::start().await;
        let err = status_err(&server, ResponseTemplate::new(200)).await;
        match &err {
            Error::InvalidBody { reason, status, .. } => {
                assert_eq!(*status, 200);
                assert_eq!(reason, "an empty body");
            }
            other => panic!("expected InvalidBody, got {other:?}"),
        }
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn body_without_data_is_an_invalid_body() {
    timed(async {
        let server = MockServer::start().await;
        let err = status_err(
            &server,
            ResponseTemplate::new(200).set_body_json(json!({"success": 1})),
        )
        .await;
        match &err {
            Error::InvalidBody { reason, .. } => assert!(reason.contains("`data`"), "{reason}"),
            other => panic!("expected InvalidBody, got {other:?}"),
        }
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn null_data_where_an_object_is_expected_is_a_decode_error() {
    timed(async {
        let server = MockServer::start().await;
        let err = status_err(
            &server,
            ResponseTemplate::new(200).set_body_json(json!({"data": null})),
        )
        .await;
        match &err {
            Error::Decode { field, .. } => assert_eq!(field, "data"),
            other => panic!("expected Decode, got {other:?}"),
        }
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn plain_text_body_is_an_invalid_body() {
    timed(async {
        let server = MockServer::start().await;
        let err = status_err(
            &server,
            ResponseTemplate::new(200).set_body_string("Service Unavailable"),
        )
        .await;
        assert!(
            matches!(&err, Error::InvalidBody { reason, .. } if reason.contains("Service Unavailable")),
            "{err:?}"
        );
        names_endpoint(&err);
    })
    .await;
}

#[tokio::test]
async fn trailing_garbage_after_a_complete_answer_is_a_decode_error() {
    timed(async {
        let server = MockServer::start().await;
        let err = status_err(
            &server,
            ResponseTemplate::new(200)
                .set_body_string(r#"{"data":{"status":"stopped"}} <!-- x -->"#),
        )
        .await;
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        names_endpoint(&err);
    })
    .await;
}
