//! PTR updates per second through the PowerDNS backend against a local `pdns_server`
//! (started here on free loopback ports, like the tests).
//!
//! `cargo run -p pve-vps-dns --release --example pdns_throughput -- [UPDATES] [CONCURRENCY]`
//!
//! Prints single `set_ptr` updates per second with bounded concurrency, then batched `apply`.

#[path = "../tests/support/pdns.rs"]
mod pdns;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use futures_util::StreamExt;
use pve_vps_dns::{Hostname, PowerDns, PtrChange, ReverseDns, Zones};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), pve_vps_dns::Error> {
    let mut args = std::env::args().skip(1);
    let updates: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);

    let server = pdns::PdnsServer::start();
    let zones = Zones::from_names(["8.b.d.0.1.0.0.2.ip6.arpa."])?;
    let dns = PowerDns::new(&server.api_url, server.api_key.clone().into(), zones)?;
    for zone in dns.zones().iter() {
        dns.create_zone(zone.name(), &["ns1.example.net".parse().expect("ns")])
            .await?;
    }

    let start = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..updates)
        .map(|i| {
            let dns = &dns;
            async move {
                let ip = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i % 256)));
                let host: Hostname = format!("vm{i}.example.com").parse().expect("hostname");
                dns.set_ptr(ip, &host).await
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "{updates} PTR updates (set_ptr = GET + PATCH, 256 addresses), concurrency {concurrency}: \
         {:.2} s, {:.0} updates/s, {failed} failed",
        elapsed.as_secs_f64(),
        f64::from(updates) / elapsed.as_secs_f64()
    );

    // The same addresses in batches: one PATCH per zone per batch.
    let rounds = 20u32;
    let start = Instant::now();
    for round in 0..rounds {
        let batch: Vec<PtrChange> = (0..256u32)
            .map(|i| {
                let ip = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)));
                let host: Hostname = format!("b{round}-{i}.example.com")
                    .parse()
                    .expect("hostname");
                PtrChange::set(ip, host)
            })
            .collect();
        dns.apply(&batch).await?;
    }
    let elapsed = start.elapsed();
    println!(
        "{rounds} batches of 256 PTRs via apply (one PATCH each): {:.2} s, {:.0} updates/s",
        elapsed.as_secs_f64(),
        f64::from(rounds * 256) / elapsed.as_secs_f64()
    );
    Ok(())
}
