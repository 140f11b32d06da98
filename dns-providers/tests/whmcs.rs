//! The WHMCS ticket fallback against wiremock.

#![cfg(feature = "whmcs-ticket")]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pve_vps_dns::{
    Change, PtrStatus, RetryPolicy, ReverseDns, Scoped, TicketRequest, TicketTarget, WhmcsTicket,
    Zones,
};
use serde_json::json;
use support::{assert_invalid_hostnames, form, ip, timeout, untouchable_server};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "whmcs-api-secret-777";
const TARGET: TicketTarget = TicketTarget {
    department_id: 3,
    client_id: 17,
    service_id: 4242,
};

fn backend(server: &MockServer) -> WhmcsTicket {
    WhmcsTicket::new(
        &format!("{}/includes/api.php", server.uri()),
        "IDENT",
        SECRET.to_owned().into(),
        TARGET,
    )
    .unwrap()
    .with_retry(RetryPolicy::new(
        2,
        Duration::from_millis(5),
        Duration::from_millis(50),
    ))
}

/// A fake `OpenTicket` that checks every field and records the tickets.
#[derive(Clone, Default)]
struct FakeWhmcs {
    tickets: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Respond for FakeWhmcs {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let f = form(req);
        for (k, v) in [
            ("action", "OpenTicket"),
            ("identifier", "IDENT"),
            ("secret", SECRET),
            ("responsetype", "json"),
            ("deptid", "3"),
            ("clientid", "17"),
            ("serviceid", "4242"),
            ("priority", "Medium"),
        ] {
            assert_eq!(f.get(k).map(String::as_str), Some(v), "field {k}");
        }
        assert!(f["subject"].contains("4242"));
        let mut tickets = self.tickets.lock().unwrap();
        tickets.push(f);
        let n = tickets.len();
        ResponseTemplate::new(200).set_body_json(json!({
            "result": "success", "id": n, "tid": format!("{:06}", 480000 + n), "c": "Jh6Q1cBd",
            "noemail": false
        }))
    }
}

#[tokio::test]
async fn conformance_opens_one_ticket_per_distinct_request() {
    timeout(async {
        let server = MockServer::start().await;
        let fake = FakeWhmcs::default();
        Mock::given(method("POST"))
            .and(path("/includes/api.php"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        let dns = backend(&server);
        let addresses = [ip("192.0.2.5"), ip("2001:db8::5")];
        pve_vps_dns::conformance::run(&dns, &addresses).await;
        // 2 initial removals, first set, replace, 2 concurrent sets, 1 for 4 identical
        // concurrent sets, 1 per batch (3 batches that change something), 2 removals; every
        // repeated request opened none.
        let tickets = fake.tickets.lock().unwrap().clone();
        assert_eq!(tickets.len(), 12, "{tickets:#?}");
        let batch = &tickets[7]["message"];
        assert!(
            batch.contains("192.0.2.5 -> batch-0.conformance.example.net.")
                && batch.contains("2001:db8::5 -> batch-1.conformance.example.net."),
            "{batch}"
        );
        let replace = &tickets[3]["message"];
        assert!(
            replace.contains("192.0.2.5 -> second-0.conformance.example.net."),
            "{replace}"
        );
        assert!(replace.contains("5.2.0.192.in-addr.arpa."), "{replace}");
        assert!(tickets[0]["message"].contains("remove"));
    })
    .await;
}

#[tokio::test]
async fn reading_returns_the_pending_request_and_state_can_be_restored() {
    timeout(async {
        let server = MockServer::start().await;
        let fake = FakeWhmcs::default();
        Mock::given(method("POST"))
            .respond_with(fake.clone())
            .expect(1)
            .mount(&server)
            .await;
        let dns = backend(&server);
        let mapped = ip("::ffff:192.0.2.5");
        let c = dns.set_ptr_str(mapped, "vm1.example.com").await.unwrap();
        assert_eq!(
            c,
            Change::Requested {
                reference: "480001".into()
            }
        );
        let ptr = dns.get_ptr(ip("192.0.2.5")).await.unwrap().unwrap();
        assert_eq!(ptr.status(), PtrStatus::Pending);
        assert_eq!(ptr.hostname().as_str(), "vm1.example.com");
        // A restarted backend that restores its requests opens no duplicate ticket.
        let saved = dns.requests().await;
        assert_eq!(
            saved,
            [TicketRequest::new(
                ip("192.0.2.5"),
                Some("vm1.example.com".parse().unwrap()),
                "480001"
            )]
        );
        let restarted = backend(&server).with_requests(saved);
        assert_eq!(
            restarted
                .set_ptr_str(ip("192.0.2.5"), "vm1.example.com")
                .await
                .unwrap(),
            Change::Unchanged
        );
    })
    .await;
}

#[tokio::test]
async fn whmcs_errors_keep_the_message_and_record_nothing() {
    timeout(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"result": "error", "message": "Invalid Department ID"})),
            )
            .expect(2)
            .mount(&server)
            .await;
        let dns = backend(&server);
        let err = dns
            .set_ptr_str(ip("192.0.2.5"), "vm1.example.com")
            .await
            .unwrap_err();
        assert_eq!(err.provider(), Some("whmcs"));
        assert!(err.to_string().contains("Invalid Department ID"), "{err}");
        assert!(!format!("{err:?} {dns:?}").contains(SECRET));
        // Nothing was recorded: the retry opens a ticket again.
        assert_eq!(dns.get_ptr(ip("192.0.2.5")).await.unwrap(), None);
        dns.set_ptr_str(ip("192.0.2.5"), "vm1.example.com")
            .await
            .unwrap_err();

        // 503 is not retried: the ticket may have been opened.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        let err = backend(&server)
            .set_ptr_str(ip("192.0.2.5"), "vm1.example.com")
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        // 429 is: nothing was done.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429))
            .expect(3)
            .mount(&server)
            .await;
        let err = backend(&server)
            .remove_ptr(ip("192.0.2.5"))
            .await
            .unwrap_err();
        assert!(err.is_rate_limited(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn bad_input_opens_no_ticket() {
    timeout(async {
        let server = untouchable_server().await;
        let vm = [ip("192.0.2.5")];
        let dns = Scoped::new(
            backend(&server).with_zones(Zones::from_names(["2.0.192.in-addr.arpa."]).unwrap()),
            vm,
        );
        assert_invalid_hostnames(
            &dns,
            vm[0],
            &[
                "vm 1.example.com",
                "vm_1.example.com",
                "vm1.example.com..",
                "vm1",
            ],
        )
        .await;
        assert!(matches!(
            dns.set_ptr_str(ip("192.0.2.6"), "vm.example.com").await,
            Err(pve_vps_dns::Error::NotAllowed { .. })
        ));
        let dns =
            backend(&server).with_zones(Zones::from_names(["2.0.192.in-addr.arpa."]).unwrap());
        assert!(matches!(
            dns.set_ptr_str(ip("198.51.100.1"), "vm.example.com").await,
            Err(pve_vps_dns::Error::NoZone { .. })
        ));
    })
    .await;
}
