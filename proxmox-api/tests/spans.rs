//! Each HTTP exchange runs in a `pve_request` span and each task wait in a `pve_task_wait`
//! span. Alone in its test binary: tracing caches callsite interest process-wide, so tests
//! without a subscriber running in parallel threads would make this one flaky.

mod common;

use common::*;
use pve_vps_api::{Auth, Client, RetryPolicy};
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A minimal `tracing` layer that keeps the name and fields of every span.
mod spans {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, Layer};
    use tracing_subscriber::registry::LookupSpan;

    pub(super) type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

    #[derive(Clone)]
    pub(super) struct Capture(pub(super) Spans);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);
    impl Visit for Fields<'_> {
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            self.0.insert(
                f.name().to_owned(),
                format!("{v:?}").trim_matches('"').to_owned(),
            );
        }
    }

    struct Index(usize);

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            let mut all = self.0.lock().unwrap();
            all.push((attrs.metadata().name().to_owned(), fields));
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Index(all.len() - 1));
            }
        }
        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id)
                && let Some(Index(i)) = span.extensions().get::<Index>()
            {
                let mut all = self.0.lock().unwrap();
                values.record(&mut Fields(&mut all[*i].1));
            }
        }
    }
}

#[tokio::test]
async fn requests_and_task_waits_run_in_spans() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured: spans::Spans = Default::default();
    let subscriber = tracing_subscriber::registry().with(spans::Capture(captured.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{UPID}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(data(
            json!({"status": "stopped", "exitstatus": "OK", "type": "qmstart"}),
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api2/json/nodes/pve1/tasks/{UPID}/log")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(data(json!([{"n": 1, "t": "TASK OK"}]))),
        )
        .mount(&server)
        .await;
    let client = Client::builder(server.uri())
        .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.task(UPID.parse().unwrap()).wait(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome.exit_status, "OK");

    let all = captured.lock().unwrap().clone();
    let wait = all
        .iter()
        .find(|(n, _)| n == "pve_task_wait")
        .expect("a pve_task_wait span");
    assert_eq!(wait.1["upid"], UPID);
    assert_eq!(wait.1["node"], "pve1");
    assert_eq!(wait.1["worker_type"], "qmstart");
    assert_eq!(wait.1["exit_status"], "OK");
    let requests: Vec<&(String, _)> = all.iter().filter(|(n, _)| n == "pve_request").collect();
    assert!(!requests.is_empty());
    let status_req = requests
        .iter()
        .find(|(_, f)| f["path"] == "/nodes/{node}/tasks/{upid}/status")
        .expect("a request span for the status poll");
    assert_eq!(status_req.1["method"], "GET");
    assert_eq!(status_req.1["status"], "200");
}
