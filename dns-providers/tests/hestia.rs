//! The HestiaCP backend against wiremock: a stateful fake of the `v-*-dns-record` commands for
//! the conformance suite, and fixtures for return codes, errors and authentication.

#![cfg(feature = "hestia")]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pve_vps_dns::{
    Change, Hestia, HestiaAuth, RetryPolicy, ReverseDns, ReverseZone, Scoped, Zones,
};
use serde_json::{Value, json};
use support::{assert_invalid_hostnames, form, ip, timeout, untouchable_server};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "hestia-secret-key-xyz";

fn zones() -> Zones {
    Zones::new([
        ReverseZone::new("2.0.192.in-addr.arpa.").unwrap(),
        ReverseZone::new("8.b.d.0.1.0.0.2.ip6.arpa.").unwrap(),
        ReverseZone::classless(
            "192.0.2.0/26".parse().unwrap(),
            "0-26.2.0.192.in-addr.arpa.",
        )
        .unwrap(),
    ])
}

fn backend(server: &MockServer) -> Hestia {
    Hestia::new(
        &server.uri(),
        HestiaAuth::AccessKey {
            access_key: "AKEY1".into(),
            secret_key: SECRET.to_owned().into(),
        },
        "admin",
        zones(),
    )
    .unwrap()
    .with_retry(RetryPolicy::new(
        2,
        Duration::from_millis(5),
        Duration::from_millis(50),
    ))
}

fn record_json(id: u32, record: &str, value: &str) -> Value {
    json!({"RECORD": record, "TYPE": "PTR", "PRIORITY": "", "VALUE": value,
           "ID": id.to_string(), "SUSPENDED": "no", "TIME": "10:00:00", "DATE": "2026-01-01",
           "TTL": "3600"})
}

/// id -> (record, type, value)
type Records = BTreeMap<u32, (String, String, String)>;

/// A stateful fake of the HestiaCP DNS record commands.
#[derive(Clone, Default)]
struct FakeHestia {
    // domain -> id -> (record, type, value)
    domains: Arc<Mutex<BTreeMap<String, Records>>>,
}

impl FakeHestia {
    fn with_domains(names: &[&str]) -> Self {
        let fake = Self::default();
        for n in names {
            fake.domains
                .lock()
                .unwrap()
                .insert((*n).to_owned(), BTreeMap::new());
        }
        fake
    }
}

impl Respond for FakeHestia {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let f = form(req);
        assert_eq!(f.get("access_key").map(String::as_str), Some("AKEY1"));
        assert_eq!(f.get("secret_key").map(String::as_str), Some(SECRET));
        assert_eq!(f.get("arg1").map(String::as_str), Some("admin"));
        let arg = |i: u32| f.get(&format!("arg{i}")).cloned().unwrap_or_default();
        let code = |c: u32| ResponseTemplate::new(200).set_body_string(c.to_string());
        let mut domains = self.domains.lock().unwrap();
        let Some(records) = domains.get_mut(&arg(2)) else {
            return if f["returncode"] == "yes" {
                code(3)
            } else {
                ResponseTemplate::new(200)
                    .set_body_string(format!("Error: dns domain {} doesn't exist", arg(2)))
            };
        };
        match f["cmd"].as_str() {
            "v-list-dns-records" => {
                assert_eq!(f["returncode"], "no");
                assert_eq!(arg(3), "json");
                let body: serde_json::Map<String, Value> = records
                    .iter()
                    .map(|(id, (r, _, v))| (id.to_string(), record_json(*id, r, v)))
                    .collect();
                ResponseTemplate::new(200).set_body_json(Value::Object(body))
            }
            "v-add-dns-record" => {
                assert_eq!(f["returncode"], "yes");
                assert!(!arg(3).contains('/'), "hestia names have no `/`");
                if records
                    .values()
                    .any(|(r, t, v)| *r == arg(3) && *t == arg(4) && *v == arg(5))
                {
                    return code(4);
                }
                let id = records.keys().max().copied().unwrap_or(0) + 1;
                records.insert(id, (arg(3), arg(4), arg(5)));
                code(0)
            }
            "v-change-dns-record" => {
                let id: u32 = arg(3).parse().unwrap();
                match records.get_mut(&id) {
                    None => code(3),
                    Some(rec) if *rec == (arg(4), arg(5), arg(6)) => code(4),
                    Some(rec) => {
                        *rec = (arg(4), arg(5), arg(6));
                        code(0)
                    }
                }
            }
            "v-delete-dns-record" => {
                let id: u32 = arg(3).parse().unwrap();
                code(if records.remove(&id).is_some() { 0 } else { 3 })
            }
            other => panic!("unexpected command {other}"),
        }
    }
}

#[tokio::test]
async fn conformance_against_a_fake_hestia() {
    timeout(async {
        let server = MockServer::start().await;
        let fake = FakeHestia::with_domains(&[
            "2.0.192.in-addr.arpa",
            "8.b.d.0.1.0.0.2.ip6.arpa",
            "0-26.2.0.192.in-addr.arpa",
        ]);
        Mock::given(method("POST"))
            .and(path("/api/"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        let dns = backend(&server);
        let addresses = [ip("192.0.2.100"), ip("192.0.2.10"), ip("2001:db8::5")];
        pve_vps_dns::conformance::run(&dns, &addresses).await;
        pve_vps_dns::conformance::run(&Scoped::new(dns.clone(), addresses), &addresses).await;

        // Names are relative; the classless record lives in the `0-26` zone; values are FQDNs.
        dns.set_ptr_str(ip("192.0.2.10"), "vm.example.com")
            .await
            .unwrap();
        let domains = fake.domains.lock().unwrap();
        let rec: Vec<_> = domains["0-26.2.0.192.in-addr.arpa"]
            .values()
            .cloned()
            .collect();
        assert_eq!(
            rec,
            [(
                "10".to_owned(),
                "PTR".to_owned(),
                "vm.example.com.".to_owned()
            )]
        );
    })
    .await;
}

#[tokio::test]
async fn set_sends_list_then_change_and_unchanged_code_is_no_op() {
    timeout(async {
        let server = MockServer::start().await;
        let list = json!({"7": record_json(7, "100", "old.example.com."),
                          "8": {"RECORD": "100", "TYPE": "A", "PRIORITY": "", "VALUE": "192.0.2.1",
                                "ID": "8", "SUSPENDED": "no", "TIME": "", "DATE": "", "TTL": "3600"}});
        Mock::given(method("POST")).and(body_string_contains("cmd=v-list-dns-records"))
            .and(body_string_contains("arg2=2.0.192.in-addr.arpa"))
            .respond_with(ResponseTemplate::new(200).set_body_json(list))
            .expect(2).mount(&server).await;
        Mock::given(method("POST")).and(body_string_contains("cmd=v-change-dns-record"))
            .and(body_string_contains("arg3=7&arg4=100&arg5=PTR&arg6=new.example.com."))
            .and(body_string_contains("returncode=yes"))
            .respond_with(ResponseTemplate::new(200).set_body_string("0"))
            .up_to_n_times(1).with_priority(1).expect(1).mount(&server).await;
        // HestiaCP answers 4 when nothing changed.
        Mock::given(method("POST")).and(body_string_contains("cmd=v-change-dns-record"))
            .respond_with(ResponseTemplate::new(200).set_body_string("4"))
            .with_priority(2).expect(1).mount(&server).await;
        let dns = backend(&server);
        assert_eq!(dns.set_ptr_str(ip("192.0.2.100"), "new.example.com").await.unwrap(),
            Change::Replaced);
        assert_eq!(dns.set_ptr_str(ip("192.0.2.100"), "new.example.com").await.unwrap(),
            Change::Unchanged);
        let cmds: Vec<String> = server.received_requests().await.unwrap().iter()
            .map(|r| form(r)["cmd"].clone()).collect();
        assert_eq!(cmds, ["v-list-dns-records", "v-change-dns-record",
                          "v-list-dns-records", "v-change-dns-record"]);
    })
    .await;
}

#[tokio::test]
async fn return_codes_and_error_texts_become_errors() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("cmd=v-list-dns-records"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains("cmd=v-add-dns-record"))
            .respond_with(ResponseTemplate::new(200).set_body_string("10"))
            .expect(1)
            .mount(&server)
            .await;
        let dns = backend(&server);
        let err = dns
            .set_ptr_str(ip("192.0.2.5"), "vm.example.com")
            .await
            .unwrap_err();
        assert_eq!(err.provider(), Some("hestia"));
        let shown = err.to_string();
        assert!(
            shown.contains("v-add-dns-record")
                && shown.contains("10")
                && shown.contains("E_FORBIDEN"),
            "{shown}"
        );
        assert!(!format!("{err:?} {dns:?}").contains(SECRET));

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string("Error: dns domain 2.0.192.in-addr.arpa doesn't exist"),
            )
            .expect(1)
            .mount(&server)
            .await;
        let err = backend(&server).get_ptr(ip("192.0.2.5")).await.unwrap_err();
        assert!(err.to_string().contains("doesn't exist"), "{err}");

        // Delete answering 3 (already gone) is success.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("cmd=v-list-dns-records"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"3": record_json(3, "5", "vm.example.com.")})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_string_contains("cmd=v-delete-dns-record"))
            .and(body_string_contains("arg3=3"))
            .respond_with(ResponseTemplate::new(200).set_body_string("3"))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            backend(&server).remove_ptr(ip("192.0.2.5")).await.unwrap(),
            Change::Removed
        );
    })
    .await;
}

#[tokio::test]
async fn legacy_hash_auth_is_sent_as_hash() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/"))
            .and(body_string_contains("hash=legacy-hash"))
            .and(body_string_contains("returncode=no"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
            .expect(1)
            .mount(&server)
            .await;
        let dns = Hestia::new(
            &format!("{}/api", server.uri()),
            HestiaAuth::Hash("legacy-hash".to_owned().into()),
            "admin",
            zones(),
        )
        .unwrap();
        assert_eq!(dns.get_ptr(ip("2001:db8::1")).await.unwrap(), None);
        assert!(!form(&server.received_requests().await.unwrap()[0]).contains_key("secret_key"));
    })
    .await;
}

#[tokio::test]
async fn bad_input_never_reaches_hestia() {
    timeout(async {
        let server = untouchable_server().await;
        let vm = [ip("192.0.2.5")];
        let dns = Scoped::new(backend(&server), vm);
        assert_invalid_hostnames(
            &dns,
            vm[0],
            &[
                "vm 1.example.com",
                "vm_1.example.com",
                "vm1.example.com..",
                "-vm.example.com",
            ],
        )
        .await;
        assert!(
            dns.get_ptr(ip("192.0.2.9"))
                .await
                .unwrap_err()
                .is_out_of_scope()
        );
        let dns = backend(&server);
        assert!(matches!(
            dns.set_ptr_str(ip("203.0.113.1"), "vm.example.com").await,
            Err(pve_vps_dns::Error::NoZone { .. })
        ));
        // `/` classless naming is refused at construction, before any request.
        let slash = Zones::new([ReverseZone::classless(
            "192.0.2.0/26".parse().unwrap(),
            "0/26.2.0.192.in-addr.arpa.",
        )
        .unwrap()]);
        let err = Hestia::new(
            &server.uri(),
            HestiaAuth::Hash("h".to_owned().into()),
            "admin",
            slash,
        )
        .unwrap_err();
        assert!(err.to_string().contains("0-26"), "{err}");
    })
    .await;
}
