//! Shared test helpers: a wiremock server with a token client, exact parameter matchers,
//! fixtures.
#![allow(dead_code, unreachable_pub)]

use pve_vps_api::{Auth, Client, RetryPolicy};
use std::collections::BTreeMap;
use std::time::Duration;
use wiremock::{Match, MockServer, Request};

pub const TOKEN_ID: &str = "api@pve!ci";
pub const TOKEN_SECRET: &str = "0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0";
pub const TOKEN_HEADER: &str = "PVEAPIToken=api@pve!ci=0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0";
pub const UPID: &str = "UPID:pve1:0000A1B2:0012C3D4:6560F00D:qmstart:100:api@pve!ci:";

pub fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON")
}

pub fn data(v: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "data": v })
}

pub async fn server_and_client() -> (MockServer, Client) {
    let server = MockServer::start().await;
    let client = Client::builder(server.uri())
        .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
        .retry(RetryPolicy::none())
        .task_poll_interval(Duration::from_millis(5))
        .task_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (server, client)
}

fn pairs(s: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

fn expected(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The form body holds exactly these parameters.
pub struct FormIs(pub BTreeMap<String, String>);

pub fn form_is(p: &[(&str, &str)]) -> FormIs {
    FormIs(expected(p))
}

impl Match for FormIs {
    fn matches(&self, req: &Request) -> bool {
        let body = String::from_utf8_lossy(&req.body);
        let got = pairs(&body);
        if got != self.0 {
            eprintln!("form mismatch: got {got:?}, want {:?}", self.0);
        }
        got == self.0
    }
}

/// The query string holds exactly these parameters.
pub struct QueryIs(pub BTreeMap<String, String>);

pub fn query_is(p: &[(&str, &str)]) -> QueryIs {
    QueryIs(expected(p))
}

impl Match for QueryIs {
    fn matches(&self, req: &Request) -> bool {
        let got = pairs(req.url.query().unwrap_or(""));
        if got != self.0 {
            eprintln!("query mismatch: got {got:?}, want {:?}", self.0);
        }
        got == self.0
    }
}

/// Run a test body under a timeout.
pub async fn timed<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out");
}
