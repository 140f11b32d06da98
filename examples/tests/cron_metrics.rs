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
            && rounds(&t) >= 2
        {
            break t;
        }
        assert!(
            Instant::now() < end,
            "no two scheduler rounds in the metrics within 60 s"
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
    // The rounds' cluster calls, through the API client's observer.
    assert!(
        text.contains(r#"pve_api_requests_total{method="GET""#),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
