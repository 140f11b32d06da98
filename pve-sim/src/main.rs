//! `pve-sim`: run the simulator as a process.

use std::time::Duration;

use pve_vps_sim::{PveSim, Scenario, SimConfig};

fn usage() -> ! {
    eprintln!(
        "usage: pve-sim [--port N] [--http-port N] [--seed N|NAME] [--minimal] [--vms N] [--nodes N] [--task-ms N] [--backup-ms N]"
    );
    std::process::exit(2)
}

fn seed_of(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| {
        s.bytes().fold(1469598103934665603u64, |h, b| {
            (h ^ b as u64).wrapping_mul(1099511628211)
        })
    })
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut cfg = SimConfig::default().https_port(8006).http_port(None);
    let mut vms: Option<usize> = None;
    let mut nodes = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => cfg.https_port = val().parse().unwrap_or_else(|_| usage()),
            "--http-port" => cfg.http_port = Some(val().parse().unwrap_or_else(|_| usage())),
            "--seed" => cfg.seed = seed_of(&val()),
            "--minimal" => cfg.scenario = Scenario::Minimal,
            "--vms" => vms = Some(val().parse().unwrap_or_else(|_| usage())),
            "--nodes" => nodes = val().parse().unwrap_or_else(|_| usage()),
            "--task-ms" => {
                cfg.task_duration = Duration::from_millis(val().parse().unwrap_or_else(|_| usage()))
            }
            "--backup-ms" => {
                cfg.backup_duration =
                    Duration::from_millis(val().parse().unwrap_or_else(|_| usage()))
            }
            _ => usage(),
        }
    }
    if let Some(n) = vms {
        cfg.scenario = Scenario::Generated { nodes, vms: n };
    }
    let sim = match PveSim::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pve-sim: {e}");
            std::process::exit(1);
        }
    };
    println!("pve-sim listening on {}/api2/json", sim.https_url());
    if let Some(u) = sim.http_url() {
        println!("plain HTTP on {u}/api2/json");
    }
    println!("certificate fingerprint (SHA-256): {}", sim.fingerprint());
    println!("API token: Authorization: {}", sim.token_header());
    if let Some(t) = sim.readonly_token() {
        println!("read-only token: Authorization: {}", t.header_value());
    }
    if let Some(u) = sim.totp_user() {
        println!(
            "two-factor login: {} / {}, TOTP secret {} (RFC 6238, 30 s, 6 digits)",
            u.userid,
            u.password,
            u.totp_secret.as_deref().unwrap_or_default()
        );
    }
    if let Some((u, p)) = sim.user_password() {
        println!("login: {u} / {p}");
    }
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
}
