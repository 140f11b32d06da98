//! Test support.
#![allow(dead_code, unreachable_pub)]

pub mod pdns;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use pve_vps_dns::ReverseDns;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Parse an address.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Run a test body, failing the test if it takes more than 30 s.
pub async fn timeout<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out");
}

/// The fields of a request's form-urlencoded body.
pub fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

/// A mock server that fails the test (when dropped) if any request reaches it.
pub async fn untouchable_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    server
}

/// Setting each of `bad` as the PTR of `ip` fails as invalid input.
pub async fn assert_invalid_hostnames(dns: &impl ReverseDns, ip: IpAddr, bad: &[&str]) {
    for bad in bad {
        let err = dns.set_ptr_str(ip, bad).await.unwrap_err();
        assert!(err.is_invalid_input(), "{bad}: {err}");
    }
}
