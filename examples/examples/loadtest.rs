//! A bounded load test of the portal: 1,000 simulated customers (one VM each on a generated
//! `pve-sim` cluster) log in, then
//!
//! 1. time to first byte of the overview page, sampled over customers (first views);
//!    then every customer views its overview once (warm-up);
//! 2. the realistic load: every customer's overview polls `live.json` every 7 s (as the page's
//!    script does) for `PACED_SECS`;
//! 3. saturation: `CONCURRENCY` workers request `live.json` back to back for `SAT_SECS`;
//!
//! and prints requests per second, latencies, and the API calls the portal made to the cluster
//! (the portal's own count and the simulator's request count).
//!
//! `cargo run --release -p examples --example loadtest` (environment: `CUSTOMERS`, default
//! 1000; `PACED_SECS`, default 21; `SAT_SECS`, default 10; `CONCURRENCY`, default 64).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Poll, env, pct};

use examples::portal::config::{ClusterConfig, Customer, PortalConfig};
use examples::portal::{self, StartOptions};
use futures_util::StreamExt;
use pve_vps_api::api::cluster::ResourceFilter;
use pve_vps_services::ids::VmId;
use pve_vps_services::service::{Service, VmRef};
use pve_vps_sim::{PveSim, Scenario, SimConfig};

/// Prints a phase: its successes, failures and rate over `secs`, its latency percentiles and the
/// cluster API calls (portal, simulator) it caused.
fn report(
    title: &str,
    secs: f64,
    (ok, bad, mut l): (u64, u64, Vec<Duration>),
    (pc, sc): (u64, u64),
) {
    l.sort();
    println!(
        "{title}: {ok} ok, {bad} failed, {:.0} req/s; latency p50 {} p99 {}",
        ok as f64 / secs,
        ms(pct(&l, 0.5)),
        ms(pct(&l, 0.99))
    );
    println!(
        "  cluster API calls: portal {pc} ({:.1}/s) / simulator {sc} ({:.1}/s)",
        pc as f64 / secs,
        sc as f64 / secs
    );
}

fn ms(d: Duration) -> String {
    common::ms(d, 2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = env("CUSTOMERS", 1000) as usize;
    let paced_secs = env("PACED_SECS", 21);
    let sat_secs = env("SAT_SECS", 10);
    let conc = env("CONCURRENCY", 64) as usize;

    let sim =
        PveSim::start(SimConfig::default().scenario(Scenario::Generated { nodes: 3, vms: n }))
            .await?;
    let token = sim.token().ok_or("no token")?;
    let cluster = ClusterConfig {
        pve_url: sim.https_url(),
        pve_token_id: format!("{}!{}", token.userid, token.tokenid),
        pve_token_secret: token.secret.clone(),
        pve_fingerprint: Some(sim.fingerprint().to_owned()),
        pve_console_user: None,
        pve_console_password: None,
    };
    // Map the generated VMs to customers, one each.
    let (client, _) = {
        let c = pve_vps_api::Client::builder(sim.https_url())
            .auth(pve_vps_api::Auth::api_token(
                &cluster.pve_token_id,
                cluster.pve_token_secret.clone(),
            )?)
            .tls(pve_vps_api::Tls::Pinned(sim.fingerprint().parse()?))
            .build()?;
        (c, ())
    };
    let mut vms: Vec<(u32, String)> = client
        .cluster_resources(Some(ResourceFilter::Vm))
        .await?
        .into_iter()
        .filter(|r| !r.template)
        .filter_map(|r| Some((r.vmid? as u32, r.node?)))
        .collect();
    vms.sort();
    let customers: Vec<Customer> = vms
        .iter()
        .take(n)
        .enumerate()
        .map(
            |(i, (vmid, node))| -> Result<Customer, Box<dyn std::error::Error>> {
                Ok(Customer {
                    username: format!("customer{i:04}"),
                    password: format!("load-test-password-{i}"),
                    services: vec![Service {
                        vm: VmRef::new(node.parse()?, VmId::new(*vmid)?),
                        product: "vps-small".parse()?,
                        ipv4: None,
                        ipv6: None,
                        dns: vec![],
                        domain: format!("vm{vmid}.example.com").parse()?,
                        mac: pve_vps_sim::mac_for(*vmid, 0).parse()?,
                        cluster: Default::default(),
                    }],
                })
            },
        )
        .collect::<Result<_, _>>()?;
    let n = customers.len();
    println!("{n} customers on {} generated VMs (3 nodes)", vms.len());

    let t = Instant::now();
    let running = portal::start(
        PortalConfig {
            listen: Some("127.0.0.1:0".parse()?),
            cluster: Some(cluster),
            ..Default::default()
        },
        StartOptions {
            customers: Some(customers.clone()),
            ..Default::default()
        },
    )
    .await?;
    println!(
        "portal up at http://{} ({} Argon2id hashes in {:.1} s)",
        running.addr,
        n,
        t.elapsed().as_secs_f64()
    );
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(conc)
        .build()?;

    // Log everyone in.
    let t = Instant::now();
    let sessions: Vec<(String, u32)> = futures_util::stream::iter(customers.iter())
        .map(|c| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let cookie = common::login(&http, &base, &c.username, &c.password)
                    .await
                    .ok()?;
                Some((cookie, c.services[0].vmid().get()))
            }
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    println!(
        "{} logins in {:.1} s",
        sessions.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(sessions.len(), n, "every customer logs in");
    let sessions = Arc::new(sessions);

    // 1. TTFB of the overview page.
    let calls0 = (running.app.api_calls(), sim.request_count());
    let mut ttfb = Vec::new();
    let mut full = Vec::new();
    for i in (0..n).step_by((n / 200).max(1)) {
        let (cookie, vmid) = &sessions[i];
        let t = Instant::now();
        let r = http
            .get(format!("{base}/s/{vmid}"))
            .header("cookie", cookie)
            .send()
            .await?;
        ttfb.push(t.elapsed());
        assert!(r.status().is_success(), "overview {vmid}: {}", r.status());
        let _ = r.bytes().await?;
        full.push(t.elapsed());
    }
    ttfb.sort();
    full.sort();
    println!(
        "overview page TTFB over {} customers: p50 {} p95 {} p99 {} max {} (full page p50 {})",
        ttfb.len(),
        ms(pct(&ttfb, 0.5)),
        ms(pct(&ttfb, 0.95)),
        ms(pct(&ttfb, 0.99)),
        ms(pct(&ttfb, 1.0)),
        ms(pct(&full, 0.5))
    );
    println!(
        "  cluster API calls for those pages: portal {} / simulator {}",
        running.app.api_calls() - calls0.0,
        sim.request_count() - calls0.1
    );

    // Warm-up: every customer's overview once (the first view of a VM reads its config).
    let calls0 = (running.app.api_calls(), sim.request_count());
    let t = Instant::now();
    let warm: usize = futures_util::stream::iter(sessions.iter())
        .map(|(cookie, vmid)| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .get(format!("{base}/s/{vmid}/live.json"))
                    .header("cookie", cookie)
                    .send()
                    .await;
                usize::from(r.is_ok_and(|r| r.status().is_success()))
            }
        })
        .buffer_unordered(32)
        .fold(0, |a, b| async move { a + b })
        .await;
    println!(
        "warm-up: {warm} first views in {:.1} s; cluster API calls: portal {} / simulator {}",
        t.elapsed().as_secs_f64(),
        running.app.api_calls() - calls0.0,
        sim.request_count() - calls0.1
    );

    // 2. Paced: every customer polls every 7 s.
    let calls0 = (running.app.api_calls(), sim.request_count());
    let polls = {
        let (base, sessions) = (base.clone(), sessions.clone());
        common::paced(&http, n, paced_secs, Duration::from_secs(7), move |i, _| {
            let (cookie, vmid) = &sessions[i];
            Poll {
                url: format!("{base}/s/{vmid}/live.json"),
                cookie: cookie.clone(),
                tag: 0,
            }
        })
        .await
    };
    let secs = polls.secs;
    report(
        &format!("paced ({n} customers each polling every 7 s, {secs:.0} s)"),
        secs,
        (
            polls.ok,
            polls.failed,
            polls.latencies.into_iter().map(|(_, d)| d).collect(),
        ),
        (
            running.app.api_calls() - calls0.0,
            sim.request_count() - calls0.1,
        ),
    );

    // 3. Saturation.
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let calls0 = (running.app.api_calls(), sim.request_count());
    let t = Instant::now();
    let end = t + Duration::from_secs(sat_secs);
    let lat = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (http, base, sessions, ok, bad, lat) = (
            http.clone(),
            base.clone(),
            sessions.clone(),
            ok.clone(),
            bad.clone(),
            lat.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = w;
            let mut mine = Vec::new();
            while Instant::now() < end {
                let (cookie, vmid) = &sessions[k % sessions.len()];
                k += conc;
                let s = Instant::now();
                match http
                    .get(format!("{base}/s/{vmid}/live.json"))
                    .header("cookie", cookie)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                        mine.push(s.elapsed());
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = t.elapsed().as_secs_f64();
    report(
        &format!("saturation ({conc} connections, {secs:.0} s)"),
        secs,
        (
            ok.load(Ordering::Relaxed),
            bad.load(Ordering::Relaxed),
            std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner())),
        ),
        (
            running.app.api_calls() - calls0.0,
            sim.request_count() - calls0.1,
        ),
    );

    running.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
