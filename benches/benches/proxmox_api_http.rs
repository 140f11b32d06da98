//! Requests per second over loopback HTTP for a small GET: our client (`client.version()`,
//! typed decode, auth header, semaphore, retry wrapper) against bare reqwest doing the same GET
//! with the same header, the same reqwest settings (timeouts, no redirects) and decoding the
//! body as JSON. Target: overhead within 10%.
//!
//! The server is a tiny keep-alive HTTP/1.1 responder on std threads, so both clients hit the
//! exact same fixed answer.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpListener;

const BODY: &str = r#"{"data":{"version":"8.2.4","release":"8.2","repoid":"faa83925c9641325"}}"#;
const TOKEN: &str = "PVEAPIToken=bench@pve!b=0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0";

fn start_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || {
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    // One response per request head (GETs carry no body).
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if stream.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

fn http(c: &mut Criterion) {
    let port = start_server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let base = format!("http://127.0.0.1:{port}");
    let ours = pve_vps_api::Client::builder(base.clone())
        .auth(
            pve_vps_api::Auth::api_token("bench@pve!b", "0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0")
                .expect("token"),
        )
        .build()
        .expect("client");
    // reqwest is built without a default crypto provider: hand it the same kind of rustls config.
    let tls = pve_vps_api::Tls::DangerAcceptInvalidCerts
        .rustls_client_config(None)
        .expect("tls config");
    let bare = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // Same transport settings as our client, so the difference is the wrapper itself.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client");
    let url = format!("{base}/api2/json/version");

    // Both must work before measuring.
    rt.block_on(async {
        assert_eq!(ours.version().await.expect("ours").version, "8.2.4");
        let v: serde_json::Value = serde_json::from_slice(
            &bare
                .get(&url)
                .header("authorization", TOKEN)
                .send()
                .await
                .expect("bare")
                .bytes()
                .await
                .expect("body"),
        )
        .expect("json");
        assert_eq!(v["data"]["version"], "8.2.4");
    });

    let mut group = c.benchmark_group("proxmox_api_http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bare_reqwest_get", |b| {
        b.iter(|| {
            rt.block_on(async {
                let resp = bare
                    .get(&url)
                    .header("authorization", TOKEN)
                    .send()
                    .await
                    .expect("send");
                let bytes = resp.bytes().await.expect("body");
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                black_box(v)
            })
        })
    });
    group.bench_function("proxmox_api_version", |b| {
        b.iter(|| rt.block_on(async { black_box(ours.version().await.expect("version")) }))
    });
    group.finish();
}

/// Interleaved rounds of both clients, so load drift on a busy machine hits both alike; prints
/// the median per-request time of each and the overhead.
fn interleaved() {
    let port = start_server();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let base = format!("http://127.0.0.1:{port}");
    let ours = pve_vps_api::Client::builder(base.clone())
        .auth(
            pve_vps_api::Auth::api_token("bench@pve!b", "0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0")
                .expect("token"),
        )
        .build()
        .expect("client");
    let tls = pve_vps_api::Tls::DangerAcceptInvalidCerts
        .rustls_client_config(None)
        .expect("tls config");
    let bare = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        // Same transport settings as our client, so the difference is the wrapper itself.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("reqwest client");
    let url = format!("{base}/api2/json/version");
    let (rounds, per_round) = (100, 50);
    let mut bare_t = Vec::with_capacity(rounds);
    let mut ours_t = Vec::with_capacity(rounds);
    rt.block_on(async {
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            for _ in 0..per_round {
                let resp = bare
                    .get(&url)
                    .header("authorization", TOKEN)
                    .send()
                    .await
                    .expect("send");
                let v: serde_json::Value =
                    serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
                black_box(v);
            }
            bare_t.push(t.elapsed().as_secs_f64() / per_round as f64);
            let t = std::time::Instant::now();
            for _ in 0..per_round {
                black_box(ours.version().await.expect("version"));
            }
            ours_t.push(t.elapsed().as_secs_f64() / per_round as f64);
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, o) = (median(&mut bare_t), median(&mut ours_t));
    println!(
        "interleaved medians over {rounds}x{per_round} requests: bare reqwest {:.1} us ({:.0} req/s), proxmox-api {:.1} us ({:.0} req/s), overhead {:+.1}%",
        b * 1e6,
        1.0 / b,
        o * 1e6,
        1.0 / o,
        (o / b - 1.0) * 100.0
    );
}

criterion_group!(benches, http);

fn main() {
    interleaved();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
