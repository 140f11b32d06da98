//! The client-area portal. With no `PVE_URL` it starts the embedded `pve-sim` demo scenario;
//! see `examples/README.md` for the configuration.

use examples::portal::{self, StartOptions, config::PortalConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pve_vps_sim=warn".into()),
        )
        .init();
    let cfg = match PortalConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let opts = StartOptions {
        fetch_novnc: true,
        ..Default::default()
    };
    let running = match portal::start(cfg, opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the portal: {e}");
            std::process::exit(1);
        }
    };
    println!("client area: http://{}/", running.addr);
    match &running.sim {
        Some(sim) => println!(
            "cluster: embedded pve-sim demo at {} (fingerprint {})",
            sim.https_url(),
            sim.fingerprint()
        ),
        None => println!("cluster: {}", running.app.cluster.base_url),
    }
    for (u, p) in &running.demo_logins {
        println!("demo login: {u} / {p}");
    }
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
}
