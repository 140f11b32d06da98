//! The client-area portal: configuration, the cluster shell, the store, the screens and the
//! console relay. [`start`] assembles it; the `portal` binary, the browser test and the load
//! generator all start it the same way.

pub mod cluster;
pub mod config;
pub mod console;
pub mod fwcheck;
pub mod html;
pub mod store;
pub mod throttle;
pub mod web;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use pve_vps_api::{Auth, Client, Tls};
use pve_vps_services::ids::ClusterName;
use pve_vps_services::product::Catalog;
use pve_vps_services::{ClientArea, Fleet};
use pve_vps_sim::{PveSim, SimConfig};

use self::cluster::{Cluster, ConsoleLogin};
use self::config::{Customer, PortalConfig};
use crate::clusters::ClusterSettings;

/// A running portal.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The shared state.
    pub app: Arc<web::App>,
    /// The embedded simulator, when no cluster was configured.
    pub sim: Option<PveSim>,
    /// The demo logins (user, password), when customers come from the demo file.
    pub demo_logins: Vec<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the server and the simulator.
    pub async fn shutdown(self) {
        self.server.abort();
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}

/// How [`start`] finds its cluster and customers beyond [`PortalConfig`].
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Simulator configuration when no cluster is configured (default: demo scenario, HTTPS).
    pub sim: Option<SimConfig>,
    /// Customers instead of the configured file (the load generator makes 1,000).
    pub customers: Option<Vec<Customer>>,
    /// Whether to fetch the noVNC client in the background (default true in the binary).
    pub fetch_novnc: bool,
}

/// Why [`start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A mistake in the configuration, naming the setting (the binary exits with status 2);
    /// nothing was started or connected.
    #[error("{0}")]
    Config(String),
    /// Something could not be started (database, listener, simulator).
    #[error("{0}")]
    Start(String),
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        Self::Start(e)
    }
}

impl From<&str> for StartError {
    fn from(e: &str) -> Self {
        Self::Start(e.to_owned())
    }
}

/// Starts the portal (and the simulator when no cluster is configured).
///
/// The clusters: those of the clusters file ([`PortalConfig::clusters`]), plus the
/// single-cluster settings (`PVE_URL`, ...) as the cluster `default`; with neither, the
/// embedded simulator is `default`. Every service must name a configured cluster, and a
/// customer's services distinct VMIDs (pages are addressed by VMID).
pub async fn start(cfg: PortalConfig, opts: StartOptions) -> Result<Running, StartError> {
    let config = StartError::Config;
    let catalog = Catalog::from_toml_str(&cfg.products_text().map_err(config)?)
        .map_err(|e| config(format!("products: {e}")))?;
    let customers_at = cfg
        .customers
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "customers".into());
    let customers = match opts.customers {
        Some(c) => c,
        None => config::parse_customers(&cfg.customers_text().map_err(config)?)
            .map_err(|e| config(format!("{customers_at}: {e}")))?,
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    // Every cluster's settings are read and checked before anything is started.
    let file = cfg.clusters_file();
    let mut settings = match &file {
        Some(path) => crate::clusters::load(path, &metrics).map_err(config)?,
        None => Vec::new(),
    };
    if let Some(c) = &cfg.cluster {
        crate::clusters::add_default(&mut settings, c, file.as_deref(), &metrics)
            .map_err(config)?;
    }
    let names: Vec<ClusterName> = if settings.is_empty() {
        vec![ClusterName::default()]
    } else {
        settings.iter().map(|c| c.name.clone()).collect()
    };
    crate::clusters::check_services(&customers_at, &customers, &names).map_err(config)?;
    check_distinct_vmids(&customers_at, &customers).map_err(config)?;
    let database = cfg.database().map_err(config)?;
    let cluster_timeout = cfg.cluster_timeout();
    // No cluster configured: the embedded simulator is the cluster `default`.
    let mut sim = None;
    if settings.is_empty() {
        let s = PveSim::start(opts.sim.unwrap_or_default())
            .await
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        settings.push(sim_settings(&s, &metrics)?);
        sim = Some(s);
    }
    let rdns: Arc<dyn pve_vps_dns::ReverseDns> = Arc::new(pve_vps_dns::InMemory::any_zone());
    let mut areas = Vec::new();
    let mut sites = BTreeMap::new();
    for c in settings {
        let mut area = ClientArea::builder(c.client.clone(), catalog.clone())
            .cluster(c.name.clone())
            .reverse_dns(rdns.clone());
        // vm-services' stores go where the cron's do: `default` in the portal's database,
        // another cluster in its own PostgreSQL schema or SQLite file.
        match &database {
            config::Database::Memory => {}
            config::Database::Sqlite(p) => {
                area = area.sqlite_file(crate::clusters::sqlite_path(p, &c.name));
            }
            config::Database::Postgres(url) => {
                let pg = if c.name.is_default() {
                    pve_vps_services::stores::PgStore::connect(url.expose()).await
                } else {
                    pve_vps_services::stores::PgStore::connect_scoped(url.expose(), &c.name).await
                };
                let pg = pg.map_err(|e| format!("{}: {e}", url.redacted()))?;
                area = area.stores(Arc::new(pg));
            }
        }
        areas.push(
            area.build()
                .map_err(|e| format!("cluster {}: {e}", c.name))?,
        );
        // The console needs a ticket session (PVE's vncwebsocket refuses API tokens).
        let console_area = match &c.console {
            Some(l) => Some(console_area(&c, l, &catalog, &metrics)?),
            None => None,
        };
        let cluster = Cluster::new(c.client, c.url, c.tls, c.console);
        sites.insert(
            c.name,
            web::Site {
                cluster: Arc::new(cluster),
                console_area,
            },
        );
    }
    let fleet = Fleet::new(areas, cluster::LIVE_REFRESH)
        .map_err(|e| e.to_string())?
        .with_timeout(cluster_timeout);
    let store = store::Store::open(&database)
        .await
        .map_err(|e| match &database {
            config::Database::Sqlite(p) => format!("{}: {}", p.display(), e.chain()),
            config::Database::Postgres(url) => format!("{}: {}", url.redacted(), e.chain()),
            config::Database::Memory => e.chain(),
        })?;
    // Hash every password on the blocking pool (Argon2id is deliberately slow).
    let pairs: Vec<(String, String)> = customers
        .iter()
        .map(|c| (c.username.clone(), c.password.clone()))
        .collect();
    let hashed = tokio::task::spawn_blocking(move || {
        use std::sync::Mutex;
        let out = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get());
            for chunk in pairs.chunks(pairs.len().div_ceil(n).max(1)) {
                let out = &out;
                s.spawn(move || {
                    for (u, p) in chunk {
                        let h = store::hash_password(p);
                        out.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((u.clone(), h));
                    }
                });
            }
        });
        out.into_inner().unwrap_or_else(|e| e.into_inner())
    })
    .await
    .map_err(|e| e.to_string())?;
    for (u, h) in &hashed {
        store.set_customer(u, h).await.map_err(|e| e.chain())?;
    }
    let services: HashMap<String, Vec<pve_vps_services::service::Service>> = customers
        .iter()
        .map(|c| (c.username.clone(), c.services.clone()))
        .collect();
    let app = Arc::new(web::App {
        sites,
        catalog,
        services,
        store,
        fleet,
        cluster_timeout,
        live_watches: Default::default(),
        operations: Default::default(),
        secure_cookies: cfg
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        novnc_dir: Default::default(),
        clock: Default::default(),
        trusted_proxies: cfg.trusted_proxies.clone(),
        metrics,
        metrics_token: cfg.metrics_token.clone(),
        seen_tasks: Default::default(),
    });
    if opts.fetch_novnc {
        let app2 = app.clone();
        let cache = cfg.cache_dir();
        tokio::spawn(async move {
            match console::ensure_novnc(&cache).await {
                Ok(dir) => {
                    tracing::info!(dir = %dir.display(), "noVNC client ready");
                    let _ = app2.novnc_dir.set(dir);
                }
                Err(e) => tracing::error!("the console is unavailable: {e}"),
            }
        });
    }
    let listen = cfg
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let router = web::router(app.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        {
            tracing::error!("server stopped: {e}");
        }
    });
    let demo_logins = if cfg.customers.is_none() {
        customers
            .iter()
            .take(4)
            .map(|c| (c.username.clone(), c.password.clone()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Running {
        addr,
        app,
        sim,
        demo_logins,
        server,
    })
}

/// The embedded simulator as the cluster `default`: its token, its certificate pinned, its
/// user for the console.
fn sim_settings(
    sim: &PveSim,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<ClusterSettings, String> {
    let token = sim.token().ok_or("the simulator has no token")?;
    let tls = Tls::Pinned(
        sim.fingerprint()
            .parse()
            .map_err(|e: pve_vps_api::Error| e.to_string())?,
    );
    let console = sim.user_password().map(|(u, p)| ConsoleLogin {
        userid: u.to_owned(),
        password: p.to_owned().into(),
    });
    let id = format!("{}!{}", token.userid, token.tokenid);
    let client = Client::builder(sim.https_url())
        .auth(Auth::api_token(&id, token.secret.clone()).map_err(|e| e.to_string())?)
        .tls(tls.clone())
        .observer(metrics.clone())
        .build()
        .map_err(|e| e.to_string())?;
    Ok(ClusterSettings {
        name: ClusterName::default(),
        url: sim.https_url(),
        tls,
        client,
        console,
    })
}

/// The client area the console of cluster `c` uses: logged in with `login` (a ticket
/// session, which PVE's vncwebsocket requires).
fn console_area(
    c: &ClusterSettings,
    login: &ConsoleLogin,
    catalog: &Catalog,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<ClientArea, String> {
    use secrecy::ExposeSecret;
    let (user, realm) = login
        .userid
        .rsplit_once('@')
        .ok_or("console user must be user@realm")?;
    let client = Client::builder(c.url.clone())
        .auth(
            Auth::password(user, realm, login.password.expose_secret().to_owned())
                .map_err(|e| e.to_string())?,
        )
        .tls(c.tls.clone())
        .observer(metrics.clone())
        .build()
        .map_err(|e| e.to_string())?;
    ClientArea::builder(client, catalog.clone())
        .cluster(c.name.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// Refuses a customer owning two services with one VMID (on different clusters): the
/// portal's pages are addressed by VMID. The error names the second service.
fn check_distinct_vmids(customers_at: &str, customers: &[Customer]) -> Result<(), String> {
    for c in customers {
        let mut seen: HashMap<u32, (usize, &ClusterName)> = HashMap::new();
        for (i, s) in c.services.iter().enumerate() {
            if let Some((j, other)) = seen.insert(s.vmid().get(), (i, &s.cluster)) {
                return Err(format!(
                    "{customers_at}: customers.{}.services[{i}].vm.vmid: {} (cluster `{}`) is \
                     also services[{j}]'s (cluster `{other}`): a customer's services need \
                     distinct VMIDs, the portal's pages are addressed by VMID",
                    c.username,
                    s.vmid(),
                    s.cluster
                ));
            }
        }
    }
    Ok(())
}
