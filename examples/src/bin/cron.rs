//! The scheduled work of the client area, on an interval, against the portal's configuration
//! (`PVE_URL`, `PVE_TOKEN_ID`, `PVE_TOKEN_SECRET`, `PVE_FINGERPRINT`, `PORTAL_DB`,
//! `PORTAL_CUSTOMERS`, `PORTAL_PRODUCTS`; the embedded simulator when `PVE_URL` is not set):
//!
//! * the backup schedule tick (`ClientArea::backup_tick`),
//! * the snapshot expiry sweep (`ClientArea::sweep_expired_snapshots`),
//! * watching interrupted operations: restores and reinstalls left unfinished in the plan store
//!   are resumed from their last finished step (`ClientArea::resume`).
//!
//! Safe on several hosts at once sharing one store: each scheduled backup slot and each
//! interrupted plan is leased to exactly one worker (a worker that dies is taken over once its
//! lease expired), and vm-services re-checks the lock and today's backups right before each
//! action. `CRON_STORE` chooses the store: a `postgres://user:pass@host/db` URL or an SQLite
//! path (default: `PORTAL_DB`); `CRON_WORKER` names this worker in leases and logs (default
//! `worker-<pid>-<random>`); `CRON_LEASE_SECS` sets the lease time (default 60).
//! `CRON_INTERVAL_SECS` (default 60) sets the period; `--once` runs one round and exits.
//!
//! `--metrics-addr 127.0.0.1:9464` serves Prometheus metrics at `/metrics` there (phase and
//! round durations, errors, cluster API calls), to loopback clients or with
//! `CRON_METRICS_TOKEN` as bearer token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use examples::metrics::{Metrics, MetricsToken};
use examples::portal::config::{self, PortalConfig};
use pve_vps_api::{Auth, Client, Tls};
use pve_vps_sim::{PveSim, SimConfig};
use tracing::{error, info, warn};

use pve_vps_services::ClientArea;
use pve_vps_services::leases::WorkerId;
use pve_vps_services::product::Catalog;
use pve_vps_services::service::Service;
use pve_vps_services::stores::PgStore;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pve_vps_sim=warn".into()),
        )
        .init();
    let once = std::env::args().any(|a| a == "--once");
    let metrics_addr = match metrics_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let every = Duration::from_secs(
        std::env::var("CRON_INTERVAL_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
    if let Err(e) = run(once, every, metrics_addr).await {
        error!("{e}");
        std::process::exit(1);
    }
}

/// `--metrics-addr ADDR` (or `--metrics-addr=ADDR`): where to serve `GET /metrics`.
fn metrics_addr() -> Result<Option<SocketAddr>, String> {
    let args: Vec<String> = std::env::args().collect();
    let value = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--metrics-addr" {
            Some(args.get(i + 1).cloned().unwrap_or_default())
        } else {
            a.strip_prefix("--metrics-addr=").map(str::to_owned)
        }
    });
    value
        .map(|v| {
            v.parse()
                .map_err(|_| format!("--metrics-addr: `{v}` is not an address like 127.0.0.1:9464"))
        })
        .transpose()
}

async fn run(
    once: bool,
    every: Duration,
    metrics_addr: Option<SocketAddr>,
) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = metrics_addr {
        let token = std::env::var("CRON_METRICS_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(MetricsToken::new)
            .transpose()
            .map_err(|e| format!("CRON_METRICS_TOKEN: {e}"))?;
        let (bound, _server) = examples::metrics::serve(addr, metrics.clone(), token).await?;
        info!(addr = %bound, "metrics at http://{bound}/metrics");
    }
    let cfg = PortalConfig::from_env()?;
    let catalog = Catalog::from_toml_str(&cfg.products_text()?)?;
    let services: Vec<Service> = config::parse_customers(&cfg.customers_text()?)?
        .into_iter()
        .flat_map(|c| c.services)
        .collect();
    let mut sim: Option<PveSim> = None;
    let client = match &cfg.cluster {
        Some(c) => {
            let mut b = Client::builder(c.pve_url.clone())
                .auth(Auth::api_token(
                    &c.pve_token_id,
                    c.pve_token_secret.clone(),
                )?)
                .observer(metrics.clone());
            if let Some(fp) = &c.pve_fingerprint {
                b = b.tls(Tls::Pinned(fp.parse()?));
            }
            b.build()?
        }
        None => {
            let s = PveSim::start(SimConfig::default()).await?;
            let client = examples::sim_client_builder(&s)?
                .observer(metrics.clone())
                .build()?;
            info!(url = %s.https_url(), "no PVE_URL: running against the embedded pve-sim demo");
            sim = Some(s);
            client
        }
    };
    let mut b = ClientArea::builder(client, catalog);
    // The store: `CRON_STORE` (a `postgres://` URL, or an SQLite path), else `PORTAL_DB`.
    let store = std::env::var("CRON_STORE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| cfg.db.as_ref().map(|p| p.display().to_string()));
    match store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            b = b.stores(Arc::new(PgStore::connect(&url).await?));
        }
        Some(path) => b = b.sqlite_file(path),
        None => warn!(
            "neither CRON_STORE nor PORTAL_DB is set: schedules, plans and leases are in memory, \
             not shared with the portal or other workers"
        ),
    }
    if let Some(name) = std::env::var("CRON_WORKER").ok().filter(|s| !s.is_empty()) {
        b = b.worker(name.parse::<WorkerId>()?);
    }
    if let Some(secs) = std::env::var("CRON_LEASE_SECS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("CRON_LEASE_SECS: `{secs}` is not a number of seconds"))?;
        b = b.lease_ttl(Duration::from_secs(secs));
    }
    let area = Arc::new(b.build()?);
    info!(
        services = services.len(),
        every_secs = every.as_secs(),
        worker = %area.worker(),
        lease_secs = area.lease_ttl().as_secs(),
        "scheduler started"
    );
    let mut iv = tokio::time::interval(every);
    loop {
        iv.tick().await;
        examples::scheduler::round_observed(&area, &services, Some(&metrics)).await;
        if once {
            break;
        }
    }
    if let Some(s) = sim {
        s.shutdown().await;
    }
    Ok(())
}
