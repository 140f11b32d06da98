//! What the load tests (`loadtest`, `fleetload`) share: settings from the environment,
//! percentiles, logging customers in, and customers polling at a steady pace.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The environment variable `name` as a number, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` quantile (0 to 1) of `sorted`.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `d` in milliseconds with `decimals` decimals.
pub fn ms(d: Duration, decimals: usize) -> String {
    format!("{:.decimals$} ms", d.as_secs_f64() * 1000.0)
}

/// Logs `user` in at the portal `base`: its `sid=...` cookie pair, or what the portal answered.
pub async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> Result<String, String> {
    let r = http
        .post(format!("{base}/login"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .map_err(|e| format!("login: {e}"))?;
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| {
            let to = r.headers().get("location").cloned();
            format!("login answered {} {to:?}", r.status())
        })
}

/// One poll: the URL and the session cookie, and a tag to group the latencies by.
pub struct Poll {
    pub url: String,
    pub cookie: String,
    pub tag: usize,
}

/// What a paced phase measured.
pub struct Paced {
    pub ok: u64,
    pub failed: u64,
    /// Each answered poll's tag and latency.
    pub latencies: Vec<(usize, Duration)>,
    pub secs: f64,
}

/// `n` customers each polling every `every` for `secs` seconds, spread over the period as
/// browsers would be; `target(customer, k)` is the customer's `k`-th poll.
pub async fn paced(
    http: &reqwest::Client,
    n: usize,
    secs: u64,
    every: Duration,
    target: impl Fn(usize, usize) -> Poll + Send + Sync + 'static,
) -> Paced {
    let target = Arc::new(target);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, target) = (http.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let stagger = every.as_millis() as u64 * i as u64 / n as u64;
            tokio::time::sleep(Duration::from_millis(stagger)).await;
            let mut tick = tokio::time::interval(every);
            let end = Instant::now() + Duration::from_secs(secs);
            let (mut ok, mut failed, mut lat) = (0, 0, Vec::new());
            let mut k = 0;
            while Instant::now() < end {
                tick.tick().await;
                let poll = target(i, k);
                k += 1;
                let s = Instant::now();
                match http
                    .get(&poll.url)
                    .header("cookie", &poll.cookie)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                        lat.push((poll.tag, s.elapsed()));
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut out = Paced {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
        secs: 0.0,
    };
    for task in tasks {
        if let Ok((ok, failed, lat)) = task.await {
            out.ok += ok;
            out.failed += failed;
            out.latencies.extend(lat);
        }
    }
    out.secs = t.elapsed().as_secs_f64();
    out
}
