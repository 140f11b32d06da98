//! The client-area portal. With no `PVE_URL` and no clusters file (`--clusters FILE`,
//! `PORTAL_CLUSTERS`) it starts the embedded `pve-sim` demo scenario; see `examples/README.md`
//! for the configuration. A mistake in the configuration exits with status 2, naming the
//! setting.

use examples::portal::{self, StartOptions, config::PortalConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pve_vps_sim=warn".into()),
        )
        .init();
    let cfg = match PortalConfig::from_env().and_then(|mut c| {
        if let Some(file) = examples::clusters::file_arg()? {
            c.clusters = Some(file.into());
        }
        Ok(c)
    }) {
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
        Err(e @ portal::StartError::Config(_)) => {
            eprintln!("configuration error, nothing started: {e}");
            std::process::exit(2);
        }
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
        None => {
            for (name, site) in &running.app.sites {
                println!("cluster {name}: {}", site.cluster.base_url);
            }
        }
    }
    for (u, p) in &running.demo_logins {
        println!("demo login: {u} / {p}");
    }
    let _ = tokio::signal::ctrl_c().await;
    running.shutdown().await;
}
