//! The PowerDNS backend against a real `pdns_server` on loopback.

#![cfg(feature = "powerdns")]

mod support;

use std::time::Duration;

use pve_vps_dns::{
    Change, Hostname, PowerDns, RetryPolicy, ReverseDns, ReverseZone, Scoped, Zones,
};
use support::ip;
use support::pdns::{PdnsServer, query_ptr};

const ZONES: [&str; 2] = ["2.0.192.in-addr.arpa.", "8.b.d.0.1.0.0.2.ip6.arpa."];
const CLASSLESS: &str = "0/26.2.0.192.in-addr.arpa.";

fn zones() -> Zones {
    Zones::new([
        ReverseZone::new(ZONES[0]).unwrap(),
        ReverseZone::new(ZONES[1]).unwrap(),
        ReverseZone::classless("192.0.2.0/26".parse().unwrap(), CLASSLESS).unwrap(),
    ])
}

async fn backend(server: &PdnsServer) -> PowerDns {
    let dns = PowerDns::new(&server.api_url, server.api_key.clone().into(), zones())
        .unwrap()
        .with_ttl(60)
        .with_retry(RetryPolicy::new(
            2,
            Duration::from_millis(10),
            Duration::from_millis(100),
        ));
    let ns: Hostname = "ns1.example.net".parse().unwrap();
    for zone in dns.zones().iter() {
        let c = dns
            .create_zone(zone.name(), std::slice::from_ref(&ns))
            .await
            .unwrap();
        assert_eq!(c, Change::Created);
        // Idempotent.
        let c = dns
            .create_zone(zone.name(), std::slice::from_ref(&ns))
            .await
            .unwrap();
        assert_eq!(c, Change::Unchanged);
    }
    dns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_and_real_dns_answers() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = PdnsServer::start();
        let dns = backend(&server).await;

        let addresses = [
            ip("192.0.2.100"),
            ip("192.0.2.10"), // classless zone
            ip("2001:db8::10"),
            ip("2001:db8::11"),
        ];
        pve_vps_dns::conformance::run(&dns, &addresses).await;
        // The suite also runs behind the scope guard.
        let scoped = Scoped::new(dns.clone(), addresses);
        pve_vps_dns::conformance::run(&scoped, &addresses).await;

        // What a resolver sees, IPv4 and IPv6.
        for (addr, host) in [
            (ip("192.0.2.100"), "vm-v4.example.com"),
            (ip("2001:db8::10"), "vm-v6.example.com"),
        ] {
            let h: Hostname = host.parse().unwrap();
            assert_eq!(dns.set_ptr(addr, &h).await.unwrap(), Change::Created);
            assert_eq!(
                query_ptr(server.dns_addr, addr).await,
                vec![h.to_fqdn()],
                "-x {addr}"
            );
        }
        // Replace is visible too.
        let h: Hostname = "vm-v6-renamed.example.com".parse().unwrap();
        assert_eq!(
            dns.set_ptr(ip("2001:db8::10"), &h).await.unwrap(),
            Change::Replaced
        );
        assert_eq!(
            query_ptr(server.dns_addr, ip("2001:db8::10")).await,
            vec![h.to_fqdn()]
        );
        // Removal empties the answer.
        assert_eq!(
            dns.remove_ptr(ip("192.0.2.100")).await.unwrap(),
            Change::Removed
        );
        assert!(
            query_ptr(server.dns_addr, ip("192.0.2.100"))
                .await
                .is_empty()
        );

        // RFC 2317: the parent zone delegates 10.2.0.192.in-addr.arpa. by CNAME into the
        // classless zone, where the backend writes the PTR.
        let (status, body) = server.api(
            "PATCH",
            &format!("/api/v1/servers/localhost/zones/{}", ZONES[0]),
            r#"{"rrsets": [{"name": "10.2.0.192.in-addr.arpa.", "type": "CNAME", "ttl": 60,
                "changetype": "REPLACE",
                "records": [{"content": "10.0/26.2.0.192.in-addr.arpa.", "disabled": false}]}]}"#,
        );
        assert!((200..300).contains(&status), "{status} {body}");
        let h: Hostname = "vm-classless.example.com".parse().unwrap();
        assert_eq!(
            dns.set_ptr(ip("192.0.2.10"), &h).await.unwrap(),
            Change::Created
        );
        assert_eq!(
            query_ptr(server.dns_addr, ip("192.0.2.10")).await,
            vec![h.to_fqdn()]
        );

        drop(server);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_leaves_every_zone_as_it_was() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = PdnsServer::start();
        let dns = backend(&server).await;
        let v4 = ip("192.0.2.100");
        let v6 = ip("2001:db8::10");
        let before: Hostname = "before.example.com".parse().unwrap();
        dns.set_ptr(v4, &before).await.unwrap();

        // A CNAME at the IPv6 PTR name makes the server refuse the second zone's PATCH.
        let (status, body) = server.api(
            "PATCH",
            &format!("/api/v1/servers/localhost/zones/{}", ZONES[1]),
            &format!(
                r#"{{"rrsets": [{{"name": "{}", "type": "CNAME", "ttl": 60,
                    "changetype": "REPLACE",
                    "records": [{{"content": "elsewhere.example.net.", "disabled": false}}]}}]}}"#,
                pve_vps_dns::ptr_name(v6)
            ),
        );
        assert!((200..300).contains(&status), "{status} {body}");

        let batch = [
            pve_vps_dns::PtrChange::set(v4, "after.example.com".parse().unwrap()),
            pve_vps_dns::PtrChange::set(v6, "after.example.com".parse().unwrap()),
        ];
        let err = dns.apply(&batch).await.unwrap_err();
        assert_eq!(err.provider(), Some("powerdns"));
        assert!(
            matches!(
                err,
                pve_vps_dns::Error::Provider {
                    status: Some(422),
                    ..
                }
            ),
            "{err}"
        );
        // The IPv4 zone, patched first, was put back; DNS agrees.
        assert_eq!(
            dns.get_ptr(v4).await.unwrap().map(|p| p.hostname().clone()),
            Some(before.clone())
        );
        assert_eq!(query_ptr(server.dns_addr, v4).await, vec![before.to_fqdn()]);
        assert_eq!(dns.get_ptr(v6).await.unwrap(), None);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_name_powerdns_and_keep_its_message() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let server = PdnsServer::start();
        // Zones not created on the server: 404, plain text.
        let dns = PowerDns::new(&server.api_url, server.api_key.clone().into(), zones())
            .unwrap()
            .with_retry(RetryPolicy::none());
        let err = dns.get_ptr(ip("192.0.2.100")).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert_eq!(err.provider(), Some("powerdns"));
        assert!(err.to_string().contains("2.0.192.in-addr.arpa."), "{err}");

        // Wrong key: 401, and the key never shows in the error or Debug.
        let wrong = PowerDns::new(
            &server.api_url,
            "wrong-secret-key".to_owned().into(),
            zones(),
        )
        .unwrap()
        .with_retry(RetryPolicy::none());
        let err = wrong.get_ptr(ip("192.0.2.100")).await.unwrap_err();
        let shown = format!("{err} {err:?} {wrong:?}");
        assert!(shown.contains("401"), "{shown}");
        assert!(!shown.contains("wrong-secret-key"), "{shown}");
        assert!(!format!("{dns:?}").contains(&server.api_key));

        // A zone the server rejects (422, JSON error) keeps the server's message.
        let dns = backend(&server).await;
        let err = dns
            .create_zone(
                &"9.9.9.in-addr.arpa.".parse().unwrap(),
                &["not-a-real-ns.invalid".parse().unwrap()],
            )
            .await;
        // Either accepted or refused with a message; never a panic or an empty message.
        if let Err(e) = err {
            assert!(!e.to_string().is_empty());
        }

        // Out of zone: refused before any request.
        let err = dns
            .set_ptr_str(ip("198.51.100.1"), "vm.example.com")
            .await
            .unwrap_err();
        assert!(err.is_out_of_scope(), "{err}");
    })
    .await
    .expect("test timed out");
}
