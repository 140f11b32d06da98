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
//! Every log line starts with `[<worker>]`; each lease this worker claims, renews, takes over
//! (from a worker that stopped renewing), completes or releases is logged with its key.
//! SIGTERM (or SIGINT) between rounds stops at once; during a round the worker finishes it
//! (its leases are then completed or released) within `CRON_GRACE_SECS` (default 30), or on
//! a second signal stops it: backup slot leases are released, plan leases left to expire so
//! that another worker resumes the plan after the interrupted PVE task ended.
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
use pve_vps_services::ClientAreaBuilder;
use pve_vps_services::leases::WorkerId;
use pve_vps_services::product::Catalog;
use pve_vps_services::service::Service;
use pve_vps_services::stores::{
    LeaseStore, OutcomeStore, PgStore, PlanStore, ScheduleStore, SqliteStore,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use examples::scheduler::LoggedLeases;

#[tokio::main]
async fn main() {
    // The worker's name first: it starts every log line.
    let worker = match std::env::var("CRON_WORKER").ok().filter(|s| !s.is_empty()) {
        Some(name) => name.parse::<WorkerId>(),
        None => Ok(WorkerId::random(&mut rand::rng())),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,pve_vps_sim=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .event_format(WorkerPrefix {
            worker: worker
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|_| "-".into()),
            inner: Format::default(),
        })
        .init();
    let worker = match worker {
        Ok(w) => w,
        Err(e) => {
            error!("CRON_WORKER: {e}");
            std::process::exit(2);
        }
    };
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
    if let Err(e) = run(once, every, metrics_addr, worker).await {
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
    worker: WorkerId,
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
    let leases;
    (b, leases) = match store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            with_stores(b, Arc::new(PgStore::connect(&url).await?))
        }
        Some(path) => with_stores(b, Arc::new(SqliteStore::open(path)?)),
        None => {
            warn!(
                "neither CRON_STORE nor PORTAL_DB is set: schedules, plans and leases are in \
                 memory, not shared with the portal or other workers"
            );
            with_stores(b, Arc::new(SqliteStore::open_in_memory()?))
        }
    };
    b = b.worker(worker);
    if let Some(secs) = std::env::var("CRON_LEASE_SECS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("CRON_LEASE_SECS: `{secs}` is not a number of seconds"))?;
        b = b.lease_ttl(Duration::from_secs(secs));
    }
    let grace = match std::env::var("CRON_GRACE_SECS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        Some(secs) => Duration::from_secs(
            secs.parse()
                .map_err(|_| format!("CRON_GRACE_SECS: `{secs}` is not a number of seconds"))?,
        ),
        None => Duration::from_secs(30),
    };
    let mut signals = Signals::new()?;
    let area = Arc::new(b.build()?);
    info!(
        services = services.len(),
        every_secs = every.as_secs(),
        worker = %area.worker(),
        lease_secs = area.lease_ttl().as_secs(),
        grace_secs = grace.as_secs(),
        "scheduler started"
    );
    let mut iv = tokio::time::interval(every);
    // A round longer than the period is followed by one round, not a burst of missed ones.
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = iv.tick() => {}
            sig = signals.next() => {
                info!(signal = sig, "stopping between rounds: no lease held");
                break;
            }
        }
        let mut round = Box::pin(examples::scheduler::round_observed(
            &area,
            &services,
            Some(&metrics),
        ));
        let interrupted = tokio::select! {
            _ = &mut round => None,
            sig = signals.next() => Some(sig),
        };
        let Some(sig) = interrupted else {
            if once {
                break;
            }
            continue;
        };
        info!(
            signal = sig,
            grace_secs = grace.as_secs(),
            "stopping: finishing the current round first (a second signal stops it at once)"
        );
        let finished = tokio::select! {
            _ = &mut round => true,
            _ = tokio::time::sleep(grace) => {
                warn!("the round did not finish within the grace time: stopping it");
                false
            }
            sig = signals.next() => {
                warn!(signal = sig, "second signal: stopping the round now");
                false
            }
        };
        // Dropping the round stops its work and the renewal of its leases.
        drop(round);
        if finished {
            info!("round finished, every lease it took completed or released");
        } else {
            let released = leases.release_held(area.worker()).await;
            info!(
                released = released.len(),
                "round stopped: released backup slots are free for other workers now, an \
                 interrupted plan once its lease expired"
            );
        }
        break;
    }
    info!("scheduler stopped");
    if let Some(s) = sim {
        s.shutdown().await;
    }
    Ok(())
}

/// Every store from `db`, leases through a [`LoggedLeases`] (returned: it knows which leases
/// this worker holds when it is stopped).
fn with_stores<S>(b: ClientAreaBuilder, db: Arc<S>) -> (ClientAreaBuilder, Arc<LoggedLeases>)
where
    S: ScheduleStore + PlanStore + LeaseStore + OutcomeStore + 'static,
{
    let leases = Arc::new(LoggedLeases::new(db.clone()));
    (b.stores(db).lease_store(leases.clone()), leases)
}

/// SIGTERM (as from systemd or `kill PID`) and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Starts every log line with `[<worker>] `, so that the logs of several workers (and any
/// line logged from a spawned task, outside this worker's spans) say whose they are.
struct WorkerPrefix {
    worker: String,
    inner: Format,
}

impl<S, N> FormatEvent<S, N> for WorkerPrefix
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "[{}] ", self.worker)?;
        self.inner.format_event(ctx, writer, event)
    }
}
