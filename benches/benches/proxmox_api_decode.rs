//! Decoding a `/cluster/resources` answer of 10,000 guests (stringly numbers included, as PVE
//! sends some of them). Target: under 10 ms.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proxmox_api::api::cluster::ClusterResource;
use std::hint::black_box;

fn answer(guests: usize) -> Vec<u8> {
    let mut items = Vec::with_capacity(guests);
    for i in 0..guests {
        let vmid = 100 + i;
        let running = i % 3 != 0;
        // Every fourth guest carries numbers as strings, like older PVE answers.
        let mem = if i % 4 == 0 {
            serde_json::json!(format!("{}", 1_073_741_824u64 + i as u64))
        } else {
            serde_json::json!(1_073_741_824u64 + i as u64)
        };
        items.push(serde_json::json!({
            "id": format!("qemu/{vmid}"),
            "type": if i % 10 == 0 { "lxc" } else { "qemu" },
            "node": format!("pve{}", i % 16),
            "vmid": vmid,
            "name": format!("customer-{}-vm-{}", i / 3, i),
            "status": if running { "running" } else { "stopped" },
            "cpu": if running { 0.0345 } else { 0.0 },
            "maxcpu": 2,
            "mem": mem,
            "maxmem": 2_147_483_648u64,
            "disk": 0,
            "maxdisk": 34_359_738_368u64,
            "uptime": if running { 86_400 + i } else { 0 },
            "netin": 123_456_789u64 + i as u64,
            "netout": 98_765_432u64,
            "diskread": 5_555_555u64,
            "diskwrite": 4_444_444u64,
            "template": if i % 100 == 0 { "1" } else { "0" },
            "tags": "customer;web",
            "hastate": "started",
        }));
    }
    serde_json::to_vec(&serde_json::json!({ "data": items })).expect("serialisable")
}

fn decode(c: &mut Criterion) {
    let body = answer(10_000);
    // Sanity check outside the measurement.
    let parsed: Vec<ClusterResource> = proxmox_api::decode_response(&body).expect("decodes");
    assert_eq!(parsed.len(), 10_000);
    let mut group = c.benchmark_group("proxmox_api_decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("cluster_resources_10k", |b| {
        b.iter(|| {
            let v: Vec<ClusterResource> =
                proxmox_api::decode_response(black_box(&body)).expect("decodes");
            black_box(v)
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
