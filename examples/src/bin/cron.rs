//! The scheduled work of the client area, on an interval, against the portal's configuration
//! (`PVE_URL`, `PVE_TOKEN_ID`, `PVE_TOKEN_SECRET`, `PVE_FINGERPRINT`, `PORTAL_DB`,
//! `PORTAL_CUSTOMERS`, `PORTAL_PRODUCTS`; the embedded simulator when `PVE_URL` is not set),
//! in each cluster:
//!
//! * the backup schedule tick (`ClientArea::backup_tick`),
//! * the snapshot expiry sweep (`ClientArea::sweep_expired_snapshots`),
//! * watching interrupted operations: restores and reinstalls left unfinished in the plan store
//!   are resumed from their last finished step (`ClientArea::resume`).
//!
//! Several clusters: a TOML file named by `--clusters FILE` or `CRON_CLUSTERS`, one table per
//! cluster (`[clusters.east]` with `url`, `token_id`, `token_secret` or `token_secret_env`
//! naming the environment variable holding it, and `fingerprint`); the `PVE_*` settings, when
//! given too, are the cluster `default`. Each service runs in its cluster (`cluster = "east"`
//! in the customers file; `default` when it names none). Each cluster has its own stores: in
//! PostgreSQL the schema `vm_services_<name>` (`default` keeps the usual tables), with SQLite
//! the file `<stem>-<name>.<ext>` next to the one given (`default` keeps that file). Each
//! cluster runs its rounds on its own every period, so that one slow to answer delays only its
//! own next round. A cluster that is offline or failing is logged with its skipped services
//! and counted (`scheduler_cluster_problems_total{cluster}`), and retried every round; the
//! other clusters' work goes on meanwhile. A mistake in the configuration (an unknown field, a bad fingerprint or token id, a
//! cluster configured twice, a service naming a cluster that is not configured) stops the
//! binary at start with exit status 2 and a message naming the setting, before anything is
//! connected or created.
//!
//! Safe on several hosts at once sharing one store: each scheduled backup slot and each
//! interrupted plan is leased to exactly one worker (a worker that dies is taken over once its
//! lease expired), and vm-services re-checks the lock and today's backups right before each
//! action. `CRON_STORE` chooses the store: a `postgres://user:pass@host/db` URL or an SQLite
//! path (default: `PORTAL_DB`); `CRON_WORKER` names this worker in leases and logs (default
//! `worker-<pid>-<random>`); `CRON_LEASE_SECS` sets the lease time (default 60).
//! `CRON_INTERVAL_SECS` (default 60) sets the period; `--once` runs one round and exits.
//! `CRON_SWEEP_SECS` (default 300) spaces each cluster's snapshot expiry sweeps: it lists
//! every VM's snapshots, one API call per VM, which every round would cost a 3,000-VM cluster
//! hundreds of calls a second for lifetimes counted in days; the first round always sweeps,
//! and `0` sweeps every round.
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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use examples::clusters;
use examples::metrics::{Metrics, MetricsToken};
use examples::portal::config::{self, PortalConfig};
use pve_vps_api::Client;
use pve_vps_sim::{PveSim, SimConfig};
use tracing::{error, info, warn};

use pve_vps_services::ids::ClusterName;
use pve_vps_services::leases::WorkerId;
use pve_vps_services::product::Catalog;
use pve_vps_services::service::Service;
use pve_vps_services::stores::{
    LeaseStore, OutcomeStore, PgStore, PlanStore, ScheduleStore, SqliteStore,
};
use pve_vps_services::{ClientArea, ClientAreaBuilder, Fleet};
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
    let sweep_every = match std::env::var("CRON_SWEEP_SECS") {
        Err(_) => Duration::from_secs(300),
        Ok(v) => match v.trim().parse() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                eprintln!("CRON_SWEEP_SECS: `{v}` is not a number of seconds");
                std::process::exit(2);
            }
        },
    };
    if let Err(e) = run(once, every, sweep_every, metrics_addr, worker).await {
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
    sweep_every: Duration,
    metrics_addr: Option<SocketAddr>,
    worker: WorkerId,
) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::new());
    // Everything is read and checked before anything is started, connected or created: a
    // mistake in the configuration changes nothing.
    let setup = match configure(&metrics) {
        Ok(s) => s,
        Err(e) => {
            error!("configuration refused, nothing started: {e}");
            std::process::exit(2);
        }
    };
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
    let Setup {
        clusters,
        catalog,
        services,
        store,
        lease_ttl,
        grace,
    } = setup;
    let mut sim: Option<PveSim> = None;
    let mut areas = Vec::new();
    let mut all_leases = Vec::new();
    for c in clusters {
        let client = match c.client {
            Some(client) => client,
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
        let mut b = ClientArea::builder(client, catalog.clone()).cluster(c.name.clone());
        let leases;
        (b, leases) = match &store {
            Store::Postgres(url) if c.name.is_default() => {
                with_stores(b, Arc::new(PgStore::connect(url).await?))
            }
            Store::Postgres(url) => {
                let db = PgStore::connect_scoped(url, &c.name).await?;
                info!(cluster = %c.name, schema = %clusters::pg_schema(&c.name), "cluster store");
                with_stores(b, Arc::new(db))
            }
            Store::Sqlite(path) => {
                let path = clusters::sqlite_path(path, &c.name);
                info!(cluster = %c.name, path = %path.display(), "cluster store");
                with_stores(b, Arc::new(SqliteStore::open(path)?))
            }
            Store::Memory => with_stores(b, Arc::new(SqliteStore::open_in_memory()?)),
        };
        b = b.worker(worker.clone());
        if let Some(ttl) = lease_ttl {
            b = b.lease_ttl(ttl);
        }
        areas.push(b.build()?);
        all_leases.push(leases);
    }
    if matches!(store, Store::Memory) {
        warn!(
            "neither CRON_STORE nor PORTAL_DB is set: schedules, plans and leases are in \
             memory, not shared with the portal or other workers"
        );
    }
    let lease_secs = areas.first().map(|a| a.lease_ttl().as_secs()).unwrap_or(0);
    let fleet = Fleet::new(areas, every)?;
    let mut signals = Signals::new()?;
    let names: Vec<String> = fleet.clusters().map(ToString::to_string).collect();
    info!(
        services = services.len(),
        clusters = %names.join(","),
        every_secs = every.as_secs(),
        sweep_secs = sweep_every.as_secs(),
        worker = %worker,
        lease_secs,
        grace_secs = grace.as_secs(),
        "scheduler started"
    );
    // Each cluster runs its rounds on its own schedule: a cluster that is slow to answer
    // (timeouts) delays only its own next round, never the other clusters'.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let busy = Arc::new(AtomicUsize::new(0));
    let mut loops = tokio::task::JoinSet::new();
    for name in fleet.clusters() {
        let area = fleet.cluster(name)?.clone();
        let mine: Vec<Service> = services
            .iter()
            .filter(|s| &s.cluster == name)
            .cloned()
            .collect();
        let (name, metrics, busy) = (name.clone(), metrics.clone(), busy.clone());
        let mut stopping = stopping.clone();
        loops.spawn(async move {
            let mut iv = tokio::time::interval(every);
            // A round longer than the period is followed by one round, not a burst of
            // missed ones.
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_sweep: Option<std::time::Instant> = None;
            loop {
                tokio::select! {
                    biased;
                    _ = stopping.wait_for(|s| *s) => break,
                    _ = iv.tick() => {}
                }
                busy.fetch_add(1, Ordering::SeqCst);
                let sweep = last_sweep.is_none_or(|t| t.elapsed() >= sweep_every);
                if sweep {
                    last_sweep = Some(std::time::Instant::now());
                }
                let phases = examples::scheduler::Phases { sweep };
                examples::scheduler::cluster_round_observed(
                    &area,
                    &mine,
                    Some(&metrics),
                    &name,
                    phases,
                )
                .await;
                busy.fetch_sub(1, Ordering::SeqCst);
                if once || *stopping.borrow() {
                    break;
                }
            }
            name
        });
    }
    let mut running = loops.len();
    let signal = loop {
        tokio::select! {
            ended = loops.join_next() => match ended {
                None => break None,
                Some(Ok(name)) => {
                    running -= 1;
                    if !once {
                        error!(cluster = %name, "the cluster's rounds ended unexpectedly");
                    }
                }
                Some(Err(e)) => {
                    running -= 1;
                    error!(error = %e, running, "a cluster's rounds stopped on a panic; the \
                        other clusters go on");
                }
            },
            sig = signals.next() => break Some(sig),
        }
    };
    if signal.is_none() && !once {
        return Err("every cluster's rounds stopped".into());
    }
    if let Some(sig) = signal {
        let _ = stop.send(true);
        let in_round = busy.load(Ordering::SeqCst);
        if in_round == 0 {
            info!(signal = sig, "stopping between rounds: no lease held");
        } else {
            info!(
                signal = sig,
                clusters_in_round = in_round,
                grace_secs = grace.as_secs(),
                "stopping: finishing the current round first (a second signal stops it at once)"
            );
        }
        let all_ended = async { while loops.join_next().await.is_some() {} };
        let finished = tokio::select! {
            _ = all_ended => true,
            _ = tokio::time::sleep(grace) => {
                warn!("the round did not finish within the grace time: stopping it");
                false
            }
            sig = signals.next() => {
                warn!(signal = sig, "second signal: stopping the round now");
                false
            }
        };
        if finished {
            if in_round > 0 {
                info!("round finished, every lease it took completed or released");
            }
        } else {
            // Ending the rounds stops their work and the renewal of their leases.
            loops.abort_all();
            while loops.join_next().await.is_some() {}
            let mut released = 0;
            for leases in &all_leases {
                released += leases.release_held(&worker).await.len();
            }
            info!(
                released,
                "round stopped: released backup slots are free for other workers now, an \
                 interrupted plan once its lease expired"
            );
        }
    }
    info!("scheduler stopped");
    if let Some(s) = sim {
        s.shutdown().await;
    }
    Ok(())
}

/// Where the clusters' schedules, plans, leases and outcomes are kept.
enum Store {
    /// One PostgreSQL database: `default` in its usual tables, every other cluster in the
    /// schema `vm_services_<name>`.
    Postgres(String),
    /// SQLite: `default` in the file given, every other cluster in `<stem>-<name>.<ext>`
    /// next to it.
    Sqlite(PathBuf),
    /// In memory (nothing shared).
    Memory,
}

/// One cluster to serve, checked.
struct ClusterSetup {
    name: ClusterName,
    /// `None`: the embedded simulator.
    client: Option<Client>,
}

/// The configuration, read and checked.
struct Setup {
    clusters: Vec<ClusterSetup>,
    catalog: Catalog,
    services: Vec<Service>,
    store: Store,
    lease_ttl: Option<Duration>,
    grace: Duration,
}

/// Reads and checks everything: clusters, products, customers (each service's cluster must be
/// configured), store, lease and grace times. Nothing is connected or created here.
fn configure(metrics: &Arc<Metrics>) -> Result<Setup, String> {
    let cfg = PortalConfig::from_env()?;
    let file = clusters::file_arg()?.or_else(|| env("CRON_CLUSTERS"));
    let mut settings = match &file {
        Some(path) => clusters::load(path, metrics)?,
        None => Vec::new(),
    };
    // The single-cluster settings (`PVE_URL`, ... or `PORTAL_CONFIG`) are the cluster
    // `default`; with neither them nor a clusters file, the embedded simulator is.
    if let Some(c) = &cfg.cluster {
        clusters::add_default(&mut settings, c, file.as_deref(), metrics)?;
    }
    let mut clusters: Vec<ClusterSetup> = settings
        .into_iter()
        .map(|s| ClusterSetup {
            name: s.name,
            client: Some(s.client),
        })
        .collect();
    if clusters.is_empty() {
        clusters.push(ClusterSetup {
            name: ClusterName::default(),
            client: None,
        });
    }
    let catalog = Catalog::from_toml_str(&cfg.products_text()?).map_err(|e| e.to_string())?;
    let customers_at = cfg
        .customers
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the demo customers".into());
    let customers = config::parse_customers(&cfg.customers_text()?)
        .map_err(|e| format!("{customers_at}: {e}"))?;
    let names: Vec<ClusterName> = clusters.iter().map(|c| c.name.clone()).collect();
    clusters::check_services(&customers_at, &customers, &names)?;
    let services: Vec<Service> = customers.into_iter().flat_map(|c| c.services).collect();
    // The store: `CRON_STORE` (a `postgres://` URL, or an SQLite path), else `PORTAL_DB`.
    let store = match env("CRON_STORE").or_else(|| cfg.db.as_ref().map(|p| p.display().to_string()))
    {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Store::Postgres(url)
        }
        Some(path) => Store::Sqlite(PathBuf::from(path)),
        None => Store::Memory,
    };
    let secs = |var: &str| -> Result<Option<Duration>, String> {
        env(var)
            .map(|v| {
                v.parse()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{var}: `{v}` is not a number of seconds"))
            })
            .transpose()
    };
    Ok(Setup {
        clusters,
        catalog,
        services,
        store,
        lease_ttl: secs("CRON_LEASE_SECS")?,
        grace: secs("CRON_GRACE_SECS")?.unwrap_or(Duration::from_secs(30)),
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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
