//! The conformance suite every backend runs.
//!
//! [`run`] drives a backend through the contract of [`ReverseDns`] on the addresses given and
//! panics with a description of the first broken rule, like an assertion. It leaves no PTR
//! behind for those addresses.

use std::net::IpAddr;

use futures_util::future::join_all;

use crate::api::{Change, PtrChange, PtrStatus, ReverseDns};
use crate::hostname::Hostname;
use crate::ptr::canonical_ip;

fn host(tag: &str, i: usize) -> Hostname {
    format!("{tag}-{i}.conformance.example.net")
        .parse()
        .unwrap_or_else(|e| panic!("conformance hostname: {e}"))
}

/// `r`'s value; its error panics as `[provider] what: error`, located at the caller.
#[track_caller]
fn must<T>(p: &str, what: &str, r: crate::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("[{p}] {what}: {e}"),
    }
}

fn is_applied(change: &Change) -> bool {
    matches!(
        change,
        Change::Created | Change::Replaced | Change::Requested { .. }
    )
}

/// Run the suite against `dns` using `addresses` (distinct, in scope, in configured zones; at
/// least one). Existing PTRs of those addresses are removed first.
///
/// Checks: removing an absent PTR succeeds unchanged; set, read back, set again is unchanged;
/// replace; `list_ptrs` in order; IPv4-mapped IPv6 reads as IPv4; invalid hostnames fail as
/// invalid input; concurrent sets of all addresses and concurrent identical sets of one address
/// all succeed with the expected end state; batches ([`ReverseDns::apply`]) apply, repeat
/// unchanged, refuse duplicates and mix sets with removals; remove, then remove again unchanged.
///
/// # Panics
///
/// On the first broken rule, naming it and the provider.
pub async fn run(dns: &dyn ReverseDns, addresses: &[IpAddr]) {
    let p = dns.provider();
    assert!(
        !addresses.is_empty(),
        "conformance needs at least one address"
    );
    let ok = |what: &str, r: crate::Result<Change>| -> Change {
        r.unwrap_or_else(|e| panic!("[{p}] {what}: unexpected error: {e} ({e:?})"))
    };

    // Start clean.
    for &ip in addresses {
        ok("initial remove", dns.remove_ptr(ip).await);
    }
    for &ip in addresses {
        let c = ok("remove absent", dns.remove_ptr(ip).await);
        assert_eq!(c, Change::Unchanged, "[{p}] removing an absent PTR of {ip}");
        let got = must(p, "get", dns.get_ptr(ip).await);
        assert!(got.is_none(), "[{p}] {ip} should have no PTR, got {got:?}");
    }

    let ip = addresses[0];
    let first = host("first", 0);
    let c = ok("set", dns.set_ptr(ip, &first).await);
    assert!(is_applied(&c), "[{p}] first set of {ip} returned {c:?}");
    let got = must(p, "get", dns.get_ptr(ip).await);
    let got = got.unwrap_or_else(|| panic!("[{p}] {ip} has no PTR after set"));
    assert_eq!(got.hostname(), &first, "[{p}] read back {ip}");
    let c = ok("set again", dns.set_ptr(ip, &first).await);
    assert_eq!(c, Change::Unchanged, "[{p}] setting the same PTR twice");
    let c = ok(
        "set same, other spelling",
        dns.set_ptr_str(ip, &first.to_fqdn().to_uppercase()).await,
    );
    assert_eq!(
        c,
        Change::Unchanged,
        "[{p}] same hostname with dot and other case"
    );

    let second = host("second", 0);
    let c = ok("replace", dns.set_ptr(ip, &second).await);
    assert!(is_applied(&c), "[{p}] replace returned {c:?}");
    let got = must(p, "get", dns.get_ptr(ip).await);
    assert_eq!(
        got.as_ref().map(|g| g.hostname()),
        Some(&second),
        "[{p}] after replace"
    );

    if let IpAddr::V4(v4) = canonical_ip(ip) {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let got = must(p, "get mapped", dns.get_ptr(mapped).await);
        assert_eq!(
            got.as_ref().map(|g| g.hostname()),
            Some(&second),
            "[{p}] {mapped} is {v4}"
        );
    }

    for bad in [
        "bad host.example.com",
        "under_score.example.com",
        "x.example.com..",
        "",
    ] {
        let err = dns
            .set_ptr_str(ip, bad)
            .await
            .expect_err("invalid hostname accepted");
        assert!(err.is_invalid_input(), "[{p}] `{bad}` gave {err}");
    }

    // Concurrent sets of every address.
    let results = join_all(addresses.iter().enumerate().map(|(i, &ip)| {
        let h = host("concurrent", i);
        async move { (ip, h.clone(), dns.set_ptr(ip, &h).await) }
    }))
    .await;
    for (ip, _, r) in &results {
        if let Err(e) = r {
            panic!("[{p}] concurrent set of {ip}: {e}");
        }
    }
    let listed = must(p, "list", dns.list_ptrs(addresses).await);
    assert_eq!(listed.len(), addresses.len(), "[{p}] list length");
    for ((ip, want, _), (lip, got)) in results.iter().zip(&listed) {
        assert_eq!(ip, lip, "[{p}] list order");
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("[{p}] {ip} missing in list"));
        assert_eq!(got.hostname(), want, "[{p}] listed PTR of {ip}");
        assert!(matches!(
            got.status(),
            PtrStatus::Active | PtrStatus::Pending
        ));
    }

    // Concurrent identical sets of one address: all succeed.
    let same = host("same", 0);
    let results = join_all((0..4).map(|_| dns.set_ptr(ip, &same))).await;
    for r in results {
        ok("concurrent identical set", r);
    }
    let got = must(p, "get", dns.get_ptr(ip).await);
    assert_eq!(
        got.as_ref().map(|g| g.hostname()),
        Some(&same),
        "[{p}] after concurrent sets"
    );

    // Batches: all or nothing, idempotent, refused with duplicates.
    let batch: Vec<PtrChange> = addresses
        .iter()
        .enumerate()
        .map(|(i, &ip)| PtrChange::set(ip, host("batch", i)))
        .collect();
    let outcome = must(p, "apply", dns.apply(&batch).await);
    assert_eq!(outcome.len(), batch.len(), "[{p}] one outcome per change");
    assert!(
        outcome.iter().all(is_applied),
        "[{p}] batch set: {outcome:?}"
    );
    let again = must(p, "apply again", dns.apply(&batch).await);
    assert!(
        again.iter().all(|c| *c == Change::Unchanged),
        "[{p}] batch again: {again:?}"
    );
    for (i, (ip, got)) in must(p, "list", dns.list_ptrs(addresses).await)
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            got.map(|g| g.hostname().clone()),
            Some(host("batch", i)),
            "[{p}] batch {ip}"
        );
    }
    let dup = [PtrChange::remove(ip), PtrChange::set(ip, host("dup", 0))];
    let err = dns.apply(&dup).await.expect_err("duplicate batch accepted");
    assert!(err.is_invalid_input(), "[{p}] duplicate batch gave {err}");
    if let [a, b, ..] = addresses {
        let mixed = [PtrChange::set(*a, host("mixed", 0)), PtrChange::remove(*b)];
        let outcome = must(p, "mixed", dns.apply(&mixed).await);
        assert!(
            outcome.iter().all(Change::is_change),
            "[{p}] mixed batch: {outcome:?}"
        );
        let got = must(p, "list", dns.list_ptrs(&[*a, *b]).await);
        assert_eq!(
            got[0].1.as_ref().map(|g| g.hostname()),
            Some(&host("mixed", 0)),
            "[{p}]"
        );
        assert!(got[1].1.is_none(), "[{p}] {b} removed in a batch");
        must(
            p,
            "apply",
            dns.apply(&[PtrChange::set(*b, host("batch", 1))]).await,
        );
    }

    // Remove everything, twice.
    for &ip in addresses {
        let c = ok("remove", dns.remove_ptr(ip).await);
        assert!(
            matches!(c, Change::Removed | Change::Requested { .. }),
            "[{p}] removing the PTR of {ip} returned {c:?}"
        );
        let got = must(p, "get", dns.get_ptr(ip).await);
        assert!(got.is_none(), "[{p}] {ip} still has {got:?} after remove");
        let c = ok("remove again", dns.remove_ptr(ip).await);
        assert_eq!(c, Change::Unchanged, "[{p}] removing twice");
    }
}
