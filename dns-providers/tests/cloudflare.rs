//! The Cloudflare backend against wiremock: a stateful fake for the conformance suite, and
//! fixtures in Cloudflare's response shapes for zone lookup, pagination, errors and 429.

#![cfg(feature = "cloudflare")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pve_vps_dns::{Change, Cloudflare, RetryPolicy, ReverseDns, Scoped, Zones};
use serde_json::{Value, json};
use support::{assert_invalid_hostnames, ip, timeout, untouchable_server};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ZONE: &str = "2.0.192.in-addr.arpa.";
const ZONE6: &str = "8.b.d.0.1.0.0.2.ip6.arpa.";
const ZID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const ZID6: &str = "9a7806061c88ada191ed06f989cc3dac";
const TOKEN: &str = "cf-test-token-123";

fn zones() -> Zones {
    Zones::from_names([ZONE, ZONE6]).unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new(2, Duration::from_millis(5), Duration::from_millis(50))
}

fn backend(server: &MockServer) -> Cloudflare {
    Cloudflare::new(TOKEN.to_owned().into(), zones())
        .unwrap()
        .with_base_url(&format!("{}/client/v4", server.uri()))
        .unwrap()
        .with_retry(fast_retry())
}

fn ok(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn record(id: &str, name: &str, content: &str) -> Value {
    json!({
        "id": id, "zone_id": ZID, "zone_name": "2.0.192.in-addr.arpa", "name": name,
        "type": "PTR", "content": content, "proxiable": false, "proxied": false, "ttl": 1,
        "locked": false, "meta": {"auto_added": false, "source": "primary"},
        "comment": null, "tags": [],
        "created_on": "2026-01-01T00:00:00.000000Z", "modified_on": "2026-01-01T00:00:00.000000Z"
    })
}

/// A stateful fake of the dns_records endpoints, paginating like Cloudflare.
#[derive(Clone, Default)]
struct FakeRecords {
    records: Arc<Mutex<Vec<(String, Value)>>>, // (zone id, record)
    next_id: Arc<Mutex<u64>>,
}

impl Respond for FakeRecords {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let segments: Vec<&str> = req.url.path().split('/').collect();
        // ["", "client", "v4", "zones", ZID, "dns_records", (RID)]
        let zid = segments[4].to_owned();
        let rid = segments.get(6).map(|s| s.to_string());
        let q: std::collections::HashMap<String, String> =
            req.url.query_pairs().into_owned().collect();
        let mut records = self.records.lock().unwrap();
        match (req.method.as_str(), rid) {
            ("GET", None) => {
                let all: Vec<Value> = records
                    .iter()
                    .filter(|(z, r)| {
                        *z == zid
                            && q.get("type").is_none_or(|t| r["type"] == t.as_str())
                            && q.get("name").is_none_or(|n| r["name"] == n.as_str())
                    })
                    .map(|(_, r)| r.clone())
                    .collect();
                let per_page: usize = q
                    .get("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(100);
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let total_pages = all.len().div_ceil(per_page).max(1);
                let items: Vec<Value> = all
                    .iter()
                    .skip((page - 1) * per_page)
                    .take(per_page)
                    .cloned()
                    .collect();
                let mut body = ok(json!(items));
                body["result_info"] = json!({"page": page, "per_page": per_page,
                    "count": items.len(), "total_count": all.len(), "total_pages": total_pages});
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("POST", None) => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                if records.iter().any(|(z, r)| {
                    *z == zid && r["name"] == body["name"] && r["content"] == body["content"]
                }) {
                    return ResponseTemplate::new(400).set_body_json(json!({"success": false,
                        "errors": [{"code": 81058, "message": "An identical record already exists."}],
                        "messages": [], "result": null}));
                }
                let mut n = self.next_id.lock().unwrap();
                *n += 1;
                let rec = record(
                    &format!("rec{n}"),
                    body["name"].as_str().unwrap(),
                    body["content"].as_str().unwrap(),
                );
                records.push((zid, rec.clone()));
                ResponseTemplate::new(200).set_body_json(ok(rec))
            }
            ("PUT", Some(rid)) => {
                let body: Value = serde_json::from_slice(&req.body).unwrap();
                match records
                    .iter_mut()
                    .find(|(z, r)| *z == zid && r["id"] == rid.as_str())
                {
                    Some((_, r)) => {
                        r["content"] = body["content"].clone();
                        ResponseTemplate::new(200).set_body_json(ok(r.clone()))
                    }
                    None => not_found(),
                }
            }
            ("DELETE", Some(rid)) => {
                let before = records.len();
                records.retain(|(z, r)| !(*z == zid && r["id"] == rid.as_str()));
                if records.len() == before {
                    return not_found();
                }
                ResponseTemplate::new(200).set_body_json(ok(json!({"id": rid})))
            }
            _ => ResponseTemplate::new(405),
        }
    }
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"success": false,
        "errors": [{"code": 81044, "message": "Record does not exist."}],
        "messages": [], "result": null}))
}

async fn mount_zone_lookup(server: &MockServer) {
    for (name, id) in [
        ("2.0.192.in-addr.arpa", ZID),
        ("8.b.d.0.1.0.0.2.ip6.arpa", ZID6),
    ] {
        Mock::given(method("GET"))
            .and(path("/client/v4/zones"))
            .and(query_param("name", name))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "success": true, "errors": [], "messages": [],
                "result": [{"id": id, "name": name, "status": "active", "paused": false,
                            "type": "full", "name_servers": ["ns1.example.net"]}],
                "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1,
                                "total_pages": 1}
            })))
            // Looked up once, then cached.
            .expect(1)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn conformance_against_a_fake_cloudflare() {
    timeout(async {
        let server = MockServer::start().await;
        mount_zone_lookup(&server).await;
        let fake = FakeRecords::default();
        Mock::given(path_regex_records())
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        // Small pages so list_ptrs paginates.
        let dns = backend(&server).with_per_page(2);
        let addresses = [
            ip("192.0.2.5"),
            ip("192.0.2.6"),
            ip("192.0.2.7"),
            ip("2001:db8::5"),
        ];
        pve_vps_dns::conformance::run(&dns, &addresses).await;
        pve_vps_dns::conformance::run(&Scoped::new(dns, addresses), &addresses).await;
        assert!(fake.records.lock().unwrap().is_empty());
    })
    .await;
}

fn path_regex_records() -> wiremock::matchers::PathRegexMatcher {
    wiremock::matchers::path_regex(r"^/client/v4/zones/[0-9a-f]+/dns_records(/[^/]+)?$")
}

#[tokio::test]
async fn configured_zone_id_skips_the_lookup_and_set_sends_exact_requests() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(path("/client/v4/zones"))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records")))
            .and(query_param("type", "PTR"))
            .and(query_param("name", "5.2.0.192.in-addr.arpa"))
            .and(query_param("page", "1"))
            .respond_with(ResponseTemplate::new(200).set_body_json({
                let mut b = ok(json!([record(
                    "r1",
                    "5.2.0.192.in-addr.arpa",
                    "old.example.com"
                )]));
                b["result_info"] = json!({"page": 1, "per_page": 100, "count": 1,
                    "total_count": 1, "total_pages": 1});
                b
            }))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records/r1")))
            .and(body_json(
                json!({"type": "PTR", "name": "5.2.0.192.in-addr.arpa",
                                  "content": "vm1.example.com", "ttl": 300}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok(record(
                "r1",
                "5.2.0.192.in-addr.arpa",
                "vm1.example.com",
            ))))
            .expect(1)
            .mount(&server)
            .await;
        let dns = backend(&server)
            .with_zone_id(ZONE, ZID)
            .unwrap()
            .with_ttl(300);
        assert_eq!(
            dns.set_ptr_str(ip("192.0.2.5"), "VM1.example.com.")
                .await
                .unwrap(),
            Change::Replaced
        );
        let sent: Vec<String> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r.method, r.url.path()))
            .collect();
        assert_eq!(
            sent,
            [
                format!("GET /client/v4/zones/{ZID}/dns_records"),
                format!("PUT /client/v4/zones/{ZID}/dns_records/r1"),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn list_follows_every_page() {
    timeout(async {
        let server = MockServer::start().await;
        let pages = [
            vec![
                record("a", "1.2.0.192.in-addr.arpa", "one.example.com"),
                record("b", "2.2.0.192.in-addr.arpa", "two.example.com"),
            ],
            vec![
                record("c", "3.2.0.192.in-addr.arpa", "three.example.com"),
                record("d", "4.2.0.192.in-addr.arpa", "four.example.com"),
            ],
            vec![record("e", "5.2.0.192.in-addr.arpa", "five.example.com")],
        ];
        for (i, items) in pages.iter().enumerate() {
            let page = i + 1;
            let mut body = ok(json!(items));
            body["result_info"] = json!({"page": page, "per_page": 2, "count": items.len(),
                "total_count": 5, "total_pages": 3});
            Mock::given(method("GET"))
                .and(path(format!("/client/v4/zones/{ZID}/dns_records")))
                .and(query_param("type", "PTR"))
                .and(query_param("per_page", "2"))
                .and(query_param("page", page.to_string().as_str()))
                .and(query_param_is_missing("name"))
                .respond_with(ResponseTemplate::new(200).set_body_json(body))
                .expect(1)
                .mount(&server)
                .await;
        }
        let dns = backend(&server)
            .with_zone_id(ZONE, ZID)
            .unwrap()
            .with_per_page(2);
        let got = dns
            .list_ptrs(&[ip("192.0.2.5"), ip("192.0.2.1"), ip("192.0.2.9")])
            .await
            .unwrap();
        let names: Vec<Option<String>> = got
            .iter()
            .map(|(_, p)| p.as_ref().map(|p| p.hostname().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                Some("five.example.com".into()),
                Some("one.example.com".into()),
                None
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn envelope_errors_keep_code_and_message_and_never_the_token() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(403).set_body_json(json!({
                "success": false,
                "errors": [{"code": 10000, "message": "Authentication error"}],
                "messages": [], "result": null})))
            .expect(1)
            .mount(&server)
            .await;
        let dns = backend(&server);
        let err = dns.get_ptr(ip("192.0.2.5")).await.unwrap_err();
        assert_eq!(err.provider(), Some("cloudflare"));
        match &err {
            pve_vps_dns::Error::Provider {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!(*status, Some(403));
                assert_eq!(code.as_deref(), Some("10000"));
                assert!(message.contains("Authentication error"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = format!("{err} {err:?} {dns:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
    })
    .await;
}

#[tokio::test]
async fn already_exists_on_create_converges() {
    timeout(async {
        let server = MockServer::start().await;
        let list = |items: Value| {
            let mut b = ok(items);
            b["result_info"] = json!({"page": 1, "per_page": 100, "count": 1, "total_count": 1,
                "total_pages": 1});
            ResponseTemplate::new(200).set_body_json(b)
        };
        // First listing: nothing; after the failed create: someone else's record.
        Mock::given(method("GET"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records")))
            .respond_with(list(json!([])))
            .up_to_n_times(1)
            .expect(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records")))
            .respond_with(list(json!([record(
                "x",
                "5.2.0.192.in-addr.arpa",
                "other.example.com"
            )])))
            .expect(1)
            .with_priority(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records")))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(json!({"success": false,
                "errors": [{"code": 81057, "message": "The record already exists."}],
                "messages": [], "result": null})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path(format!("/client/v4/zones/{ZID}/dns_records/x")))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok(record(
                "x",
                "5.2.0.192.in-addr.arpa",
                "vm1.example.com",
            ))))
            .expect(1)
            .mount(&server)
            .await;
        let dns = backend(&server).with_zone_id(ZONE, ZID).unwrap();
        assert_eq!(
            dns.set_ptr_str(ip("192.0.2.5"), "vm1.example.com")
                .await
                .unwrap(),
            Change::Replaced
        );
    })
    .await;
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_succeeds() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({"success": false,
                    "errors": [{"code": 10013, "message": "Rate limited"}], "result": null})),
            )
            .up_to_n_times(1)
            .expect(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(ok(json!([]))))
            .expect(1)
            .with_priority(2)
            .mount(&server)
            .await;
        let dns = backend(&server)
            .with_zone_id(ZONE, ZID)
            .unwrap()
            .with_retry(RetryPolicy::new(
                3,
                Duration::from_millis(1),
                Duration::from_secs(5),
            ));
        let start = Instant::now();
        assert_eq!(dns.get_ptr(ip("192.0.2.5")).await.unwrap(), None);
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "Retry-After not honoured"
        );
    })
    .await;
}

#[tokio::test]
async fn rate_limit_and_5xx_retries_are_bounded() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
            .expect(3) // first try + 2 retries, each wait capped at 50 ms
            .mount(&server)
            .await;
        let dns = backend(&server).with_zone_id(ZONE, ZID).unwrap();
        let err = dns.get_ptr(ip("192.0.2.5")).await.unwrap_err();
        assert!(err.is_rate_limited(), "{err:?}");
        assert!(err.is_transient());

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
            .expect(3)
            .mount(&server)
            .await;
        let dns = backend(&server).with_zone_id(ZONE, ZID).unwrap();
        let err = dns.get_ptr(ip("192.0.2.5")).await.unwrap_err();
        assert!(err.to_string().contains("upstream down"), "{err}");
        assert!(err.is_transient());
    })
    .await;
}

#[tokio::test]
async fn bad_input_never_reaches_cloudflare() {
    timeout(async {
        let server = untouchable_server().await;
        let vm = [ip("192.0.2.5"), ip("2001:db8::5")];
        let dns = Scoped::new(backend(&server), vm);
        let long = format!("{}.example.com", "a".repeat(64));
        assert_invalid_hostnames(
            &dns,
            vm[0],
            &[
                "vm 1.example.com",
                "vm_1.example.com",
                long.as_str(),
                "vm1.example.com..",
                "vm1",
                "",
                "bücher.example.com",
            ],
        )
        .await;
        // Not the VM's address.
        let err = dns
            .set_ptr_str(ip("192.0.2.6"), "vm1.example.com")
            .await
            .unwrap_err();
        assert!(
            matches!(err, pve_vps_dns::Error::NotAllowed { .. }),
            "{err}"
        );
        let err = dns.list_ptrs(&[vm[0], ip("192.0.2.6")]).await.unwrap_err();
        assert!(err.is_out_of_scope());
        // Outside every configured zone (the VM owns it, the provider has no zone for it).
        let dns = Scoped::new(backend(&server), [ip("198.51.100.1")]);
        let err = dns.remove_ptr(ip("198.51.100.1")).await.unwrap_err();
        assert!(matches!(err, pve_vps_dns::Error::NoZone { .. }), "{err}");
    })
    .await;
}
