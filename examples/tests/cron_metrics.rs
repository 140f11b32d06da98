//! The `cron` binary with `--metrics-addr`: its round and phase durations appear at `/metrics`
//! (for a loopback client), and the process is stopped by its PID.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cron process, killed (by PID) when dropped.
struct Cron(Child);

impl Drop for Cron {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_serves_its_tick_metrics() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let _cron = Cron(
        Command::new(env!("CARGO_BIN_EXE_cron"))
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("CRON_INTERVAL_SECS", "1")
            .env_remove("CRON_SWEEP_SECS")
            .env_remove("PVE_URL")
            .env_remove("PORTAL_CONFIG")
            .env_remove("CRON_STORE")
            .env_remove("PORTAL_DB")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cron starts"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let rounds = |text: &str| {
        text.lines()
            .find(|l| l.starts_with(r#"scheduler_tick_duration_seconds_count{phase="round"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let end = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Ok(r) = reqwest::get(&url).await
            && let Ok(t) = r.text().await
            && rounds(&t) >= 3
        {
            break t;
        }
        assert!(
            Instant::now() < end,
            "no three scheduler rounds in the metrics within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for phase in ["backup", "snapshot_sweep", "resume"] {
        assert!(
            text.contains(&format!(
                r#"scheduler_tick_duration_seconds_count{{phase="{phase}"}}"#
            )),
            "{phase}: {text}"
        );
    }
    // The snapshot sweep (one listing per VM) runs in the first round, then every
    // CRON_SWEEP_SECS (300 by default), not every second with the rounds.
    let count = |phase: &str| {
        let head = format!(r#"scheduler_tick_duration_seconds_count{{phase="{phase}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(count("backup") >= Some(3), "{text}");
    assert_eq!(count("snapshot_sweep"), Some(1), "{text}");
    // The rounds' cluster calls, through the API client's observer.
    assert!(
        text.contains(r#"pve_api_requests_total{method="GET""#),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn a_bad_sweep_period_stops_the_scheduler_before_it_starts() {
    let out = Command::new(env!("CARGO_BIN_EXE_cron"))
        .env("CRON_SWEEP_SECS", "hourly")
        .env_remove("PVE_URL")
        .env_remove("PORTAL_CONFIG")
        .env_remove("CRON_STORE")
        .env_remove("PORTAL_DB")
        .stdin(Stdio::null())
        .output()
        .expect("cron runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CRON_SWEEP_SECS: `hourly` is not a number of seconds"),
        "{err}"
    );
}
