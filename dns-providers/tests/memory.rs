//! The conformance suite against the in-memory backend, bare and behind the scope guard.

use std::net::IpAddr;
use std::time::Duration;

use dns_providers::{InMemory, ReverseDns, ReverseZone, Scoped, Zones};

fn ips() -> Vec<IpAddr> {
    ["192.0.2.5", "192.0.2.130", "2001:db8::5", "2001:db8:0:1::9"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn in_memory_passes_conformance() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let zones = Zones::new([
            ReverseZone::new("2.0.192.in-addr.arpa.").unwrap(),
            ReverseZone::classless(
                "192.0.2.128/25".parse().unwrap(),
                "128/25.2.0.192.in-addr.arpa",
            )
            .unwrap(),
            ReverseZone::new("8.b.d.0.1.0.0.2.ip6.arpa.").unwrap(),
        ]);
        let dns = InMemory::new(zones);
        dns_providers::conformance::run(&dns, &ips()).await;
        assert!(dns.snapshot().is_empty());
        let boxed: Box<dyn ReverseDns> = Box::new(Scoped::new(InMemory::any_zone(), ips()));
        dns_providers::conformance::run(boxed.as_ref(), &ips()).await;
        // The guard refuses others before the backend.
        let err = boxed
            .get_ptr("192.0.2.6".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.is_out_of_scope());
    })
    .await
    .expect("timed out");
}

#[test]
fn scope_accepts_prefixes_and_mapped_addresses() {
    let allowed: Vec<ipnet::IpNet> = vec![
        "2001:db8:1::/64".parse().unwrap(),
        "192.0.2.5/32".parse().unwrap(),
    ];
    assert!(dns_providers::check_allowed("2001:db8:1::abcd".parse().unwrap(), &allowed).is_ok());
    assert!(dns_providers::check_allowed("::ffff:192.0.2.5".parse().unwrap(), &allowed).is_ok());
    assert!(dns_providers::check_allowed("2001:db8:2::1".parse().unwrap(), &allowed).is_err());
}
