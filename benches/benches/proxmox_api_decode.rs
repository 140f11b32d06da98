//! Decoding a `/cluster/resources` answer of 10,000 guests (stringly numbers included, as PVE
//! sends some of them). Target: under 10 ms.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group};
use pve_vps_api::api::cluster::ClusterResource;
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
    let parsed: Vec<ClusterResource> = pve_vps_api::decode_response(&body).expect("decodes");
    assert_eq!(parsed.len(), 10_000);
    let mut group = c.benchmark_group("proxmox_api_decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("cluster_resources_10k", |b| {
        b.iter(|| {
            let v: Vec<ClusterResource> =
                pve_vps_api::decode_response(black_box(&body)).expect("decodes");
            black_box(v)
        })
    });
    group.finish();
}

/// CPU time (user + system) of this thread in clock ticks, from `/proc/thread-self/stat`.
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the ')'.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// On a shared, busy machine wall time overstates the cost: also print the CPU time per decode.
fn cpu_time_per_decode() {
    let body = answer(10_000);
    let runs = 100;
    let (Some(start), wall) = (thread_cpu_ticks(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..runs {
        let v: Vec<ClusterResource> =
            pve_vps_api::decode_response(black_box(&body)).expect("decodes");
        black_box(v);
    }
    if let Some(end) = thread_cpu_ticks() {
        // Linux reports these in USER_HZ, which is 100 on every mainstream configuration.
        let cpu_ms = (end - start) as f64 * 10.0 / runs as f64;
        let wall_ms = wall.elapsed().as_secs_f64() * 1000.0 / runs as f64;
        println!(
            "cluster_resources_10k over {runs} runs: {cpu_ms:.2} ms CPU, {wall_ms:.2} ms wall per decode ({} bytes)",
            body.len()
        );
    }
}

criterion_group!(benches, decode);

fn main() {
    cpu_time_per_decode();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
