//! Waiting for tasks: success, warnings, failure with log tail, early 400, progress, timeout.

mod common;

use common::*;
use pve_vps_api::Error;
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn status_path() -> String {
    format!("/api2/json/nodes/pve1/tasks/{UPID}/status")
}

fn log_path() -> String {
    format!("/api2/json/nodes/pve1/tasks/{UPID}/log")
}

fn running() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(data(
        json!({"status": "running", "upid": UPID, "type": "qmstart", "user": "api@pve!ci"}),
    ))
}

fn stopped(exit: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(data(
        json!({"status": "stopped", "exitstatus": exit, "upid": UPID}),
    ))
}

async fn sequence(server: &MockServer, first: Vec<ResponseTemplate>, last: ResponseTemplate) {
    for (i, r) in first.into_iter().enumerate() {
        Mock::given(method("GET"))
            .and(path(status_path()))
            .respond_with(r)
            .up_to_n_times(1)
            .with_priority(1 + i as u8)
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(status_path()))
        .respond_with(last)
        .with_priority(100)
        .mount(server)
        .await;
}

#[tokio::test]
async fn ok_after_running() {
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(&server, vec![running(), running()], stopped("OK")).await;
        let out = client.task(UPID.parse().unwrap()).wait().await.unwrap();
        assert_eq!(out.warnings, 0);
        assert_eq!(out.upid.as_str(), UPID);
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn warnings_are_success_with_count() {
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(&server, vec![], stopped("WARNINGS: 2")).await;
        let out = client.task(UPID.parse().unwrap()).wait().await.unwrap();
        assert_eq!(out.warnings, 2);
        assert_eq!(out.exit_status, "WARNINGS: 2");
    })
    .await;
}

#[tokio::test]
async fn failure_carries_log_tail_and_lock_predicate() {
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(
            &server,
            vec![running()],
            stopped("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"),
        )
        .await;
        let lines: Vec<_> = (1..=30)
            .map(|n| json!({"n": n, "t": format!("line {n}")}))
            .collect();
        Mock::given(method("GET"))
            .and(path(log_path()))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!(lines))))
            .mount(&server)
            .await;
        let err = client
            .task(UPID.parse().unwrap())
            .tail_lines(3)
            .wait()
            .await
            .unwrap_err();
        assert!(err.is_locked(), "{err:?}");
        match err {
            Error::TaskFailed {
                log_tail,
                exit_status,
                ..
            } => {
                assert_eq!(log_tail, vec!["line 28", "line 29", "line 30"]);
                assert!(exit_status.starts_with("can't lock file"));
            }
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn early_400_is_tolerated_but_not_forever() {
    timed(async {
        let (server, client) = server_and_client().await;
        let bad = || {
            ResponseTemplate::new(400)
                .set_body_json(json!({"data": null, "message": "no such task\n"}))
        };
        sequence(&server, vec![bad(), bad()], stopped("OK")).await;
        client.task(UPID.parse().unwrap()).wait().await.unwrap();

        let (server, client) = server_and_client().await;
        sequence(&server, vec![], bad()).await;
        let err = client
            .task(UPID.parse().unwrap())
            .startup_grace(Duration::from_millis(30))
            .wait()
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400));
    })
    .await;
}

#[tokio::test]
async fn progress_callback_sees_each_line_once() {
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(&server, vec![running(), running()], stopped("OK")).await;
        // Lines appear over time: 2 at the first poll, 1 more later, then none.
        Mock::given(method("GET"))
            .and(path(log_path()))
            .and(query_param("start", "0"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!([
                {"n": 1, "t": "INFO: starting new backup job"},
                {"n": 2, "t": "INFO:  10% (3.2 GiB of 32.0 GiB) in 3s"}
            ]))))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(log_path()))
            .and(query_param("start", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(
                json!([{"n": 3, "t": "INFO: 100% (32.0 GiB of 32.0 GiB) in 30s"}]),
            )))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(log_path()))
            .and(query_param("start", "3"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!([]))))
            .mount(&server)
            .await;
        let mut seen = Vec::new();
        client
            .task(UPID.parse().unwrap())
            .wait_with_progress(|l| seen.push(l.t.clone()))
            .await
            .unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[2].contains("100%"));
    })
    .await;
}

#[tokio::test]
async fn timeout_is_typed() {
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(&server, vec![], running()).await;
        let err = client
            .task(UPID.parse().unwrap())
            .timeout(Duration::from_millis(40))
            .wait()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TaskTimeout { .. }), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn log_stream_yields_new_lines_then_ends() {
    use futures_util::StreamExt;
    timed(async {
        let (server, client) = server_and_client().await;
        sequence(&server, vec![running()], stopped("OK")).await;
        Mock::given(method("GET"))
            .and(path(log_path()))
            .and(query_param("start", "0"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(data(json!([{"n": 1, "t": "INFO:  50%"}]))),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(log_path()))
            .and(query_param("start", "1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(
                json!([{"n": 2, "t": "INFO: 100%"}, {"n": 3, "t": "TASK OK"}]),
            )))
            .mount(&server)
            .await;
        let lines: Vec<String> = client
            .task(UPID.parse().unwrap())
            .log_stream()
            .map(|l| l.unwrap().t)
            .collect()
            .await;
        assert_eq!(lines, vec!["INFO:  50%", "INFO: 100%", "TASK OK"]);
    })
    .await;
}
