//! The conformance suite against the in-memory backend, bare and behind the scope guard.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use pve_vps_dns::{
    Change, Error, Hostname, InMemory, Ptr, PtrChange, ReverseDns, ReverseZone, Scoped, Zones,
};

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
        pve_vps_dns::conformance::run(&dns, &ips()).await;
        assert!(dns.snapshot().is_empty());
        let boxed: Box<dyn ReverseDns> = Box::new(Scoped::new(InMemory::any_zone(), ips()));
        pve_vps_dns::conformance::run(boxed.as_ref(), &ips()).await;
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
    assert!(pve_vps_dns::check_allowed("2001:db8:1::abcd".parse().unwrap(), &allowed).is_ok());
    assert!(pve_vps_dns::check_allowed("::ffff:192.0.2.5".parse().unwrap(), &allowed).is_ok());
    assert!(pve_vps_dns::check_allowed("2001:db8:2::1".parse().unwrap(), &allowed).is_err());
}

/// Fails every write to one address, to exercise the default rollback of `apply`.
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    fail_on: IpAddr,
}

#[async_trait]
impl ReverseDns for Flaky {
    fn provider(&self) -> &'static str {
        "flaky"
    }
    async fn get_ptr(&self, ip: IpAddr) -> pve_vps_dns::Result<Option<Ptr>> {
        self.inner.get_ptr(ip).await
    }
    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> pve_vps_dns::Result<Change> {
        if ip == self.fail_on {
            return Err(Error::Provider {
                provider: "flaky",
                status: Some(500),
                code: None,
                message: "boom".into(),
            });
        }
        self.inner.set_ptr(ip, hostname).await
    }
    async fn remove_ptr(&self, ip: IpAddr) -> pve_vps_dns::Result<Change> {
        self.inner.remove_ptr(ip).await
    }
}

#[tokio::test]
async fn default_apply_rolls_back_on_failure() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let [a, b, c, bad] = [ips()[0], ips()[1], ips()[2], ips()[3]];
        let dns = Flaky {
            inner: InMemory::any_zone(),
            fail_on: bad,
        };
        let old: Hostname = "old.example.com".parse().unwrap();
        let new: Hostname = "new.example.com".parse().unwrap();
        dns.set_ptr(a, &old).await.unwrap();
        dns.set_ptr(c, &old).await.unwrap();
        let before = dns.inner.snapshot();
        let batch = [
            PtrChange::set(a, new.clone()),
            PtrChange::set(b, new.clone()),
            PtrChange::remove(c),
            PtrChange::set(bad, new.clone()),
        ];
        let err = dns.apply(&batch).await.unwrap_err();
        assert!(err.to_string().contains("boom"));
        assert_eq!(dns.inner.snapshot(), before, "rolled back");
        // Out of scope anywhere in a batch: nothing applied at all.
        let scoped = Scoped::new(InMemory::any_zone(), [a]);
        let err = scoped
            .apply(&[PtrChange::set(a, new.clone()), PtrChange::remove(b)])
            .await;
        assert!(err.unwrap_err().is_out_of_scope());
        assert_eq!(scoped.get_ptr(a).await.unwrap(), None);
    })
    .await
    .expect("timed out");
}
