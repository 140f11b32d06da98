//! Requests per second of `GET /cluster/resources?type=vm` against pve-sim holding 10,000 VMs,
//! on loopback: raw reqwest over HTTP (sequential, sequential with the cache invalidated before
//! every request, and 8 in flight), and the typed `proxmox-api`
//! client over HTTPS with a pinned fingerprint. The simulator rebuilds the list at most once per
//! second unless something changed (as PVE answers it from its status cache).
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pve_vps_api::api::cluster::ResourceFilter;
use pve_vps_sim::{DEFAULT_TOKEN_SECRET, PveSim, Scenario, SimConfig};

const VMS: usize = 10_000;

fn plain_client(fingerprint: &str) -> reqwest::Client {
    // reqwest is built without a default TLS provider: hand it a rustls config explicitly.
    reqwest::Client::builder()
        .use_preconfigured_tls(pve_vps_sim::pinned_client_config(fingerprint))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt
        .block_on(PveSim::start(
            SimConfig::for_tests().scenario(Scenario::Generated { nodes: 4, vms: VMS }),
        ))
        .expect("sim starts");
    let url = format!("{}/api2/json/cluster/resources?type=vm", sim.url());
    let auth = sim.token_header();
    let client = plain_client(sim.fingerprint());

    // Sanity: the answer really holds every VM.
    let n = rt.block_on(async {
        let v: serde_json::Value = client
            .get(&url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"].as_array().map(Vec::len).unwrap_or(0)
    });
    assert_eq!(n, VMS);

    let mut g = c.benchmark_group("pve_sim_cluster_resources_10k");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(1));
    g.bench_function("reqwest_http_sequential", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client
                    .get(&url)
                    .header("Authorization", &auth)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap().len()
            })
        })
    });
    // Every change invalidates the per-second cache: measure the full rebuild too.
    g.bench_function("reqwest_http_sequential_uncached", |b| {
        b.iter(|| {
            sim.clear_faults(); // any handle call counts as a change
            rt.block_on(async {
                let r = client
                    .get(&url)
                    .header("Authorization", &auth)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap().len()
            })
        })
    });
    g.throughput(Throughput::Elements(8));
    g.bench_function("reqwest_http_8_in_flight", |b| {
        b.iter(|| {
            rt.block_on(async {
                let futs = (0..8).map(|_| {
                    let client = client.clone();
                    let (url, auth) = (url.clone(), auth.clone());
                    tokio::spawn(async move {
                        let r = client
                            .get(&url)
                            .header("Authorization", &auth)
                            .send()
                            .await
                            .unwrap();
                        r.bytes().await.unwrap().len()
                    })
                });
                futures_join(futs).await
            })
        })
    });

    let typed = pve_vps_api::Client::builder(sim.https_url())
        .auth(pve_vps_api::Auth::api_token("root@pam!sim", DEFAULT_TOKEN_SECRET).expect("token"))
        .tls(pve_vps_api::Tls::Pinned(
            sim.fingerprint().parse().expect("fingerprint"),
        ))
        .build()
        .expect("typed client");
    g.throughput(Throughput::Elements(1));
    g.bench_function("proxmox_api_https_typed", |b| {
        b.iter(|| {
            rt.block_on(async {
                typed
                    .cluster_resources(Some(ResourceFilter::Vm))
                    .await
                    .expect("resources")
                    .len()
            })
        })
    });
    g.finish();
    rt.block_on(sim.shutdown());
}

async fn futures_join<I>(handles: I) -> usize
where
    I: Iterator<Item = tokio::task::JoinHandle<usize>>,
{
    let mut total = 0;
    for h in handles.collect::<Vec<_>>() {
        total += h.await.unwrap();
    }
    total
}

criterion_group!(benches, bench);
criterion_main!(benches);
