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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pve_vps_api::{Auth, Client, Tls};
use pve_vps_services::ClientArea;
use pve_vps_services::product::Catalog;
use pve_vps_sim::{PveSim, SimConfig};

use self::cluster::{Cluster, ConsoleLogin};
use self::config::{Customer, PortalConfig};

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

/// Starts the portal (and the simulator when no cluster is configured).
pub async fn start(cfg: PortalConfig, opts: StartOptions) -> Result<Running, String> {
    let catalog =
        Catalog::from_toml_str(&cfg.products_text()?).map_err(|e| format!("products: {e}"))?;
    let customers = match opts.customers {
        Some(c) => c,
        None => config::parse_customers(&cfg.customers_text()?)
            .map_err(|e| format!("customers: {e}"))?,
    };
    // Where the cluster is, how to authenticate and how to check its certificate.
    let (url, token_id, token_secret, tls, login, sim) = match &cfg.cluster {
        Some(c) => {
            let tls = match &c.pve_fingerprint {
                Some(fp) => Tls::Pinned(fp.parse().map_err(|e: pve_vps_api::Error| e.to_string())?),
                None => Tls::SystemRoots,
            };
            let login = match (&c.pve_console_user, &c.pve_console_password) {
                (Some(u), Some(p)) => Some(ConsoleLogin {
                    userid: u.clone(),
                    password: p.clone().into(),
                }),
                _ => None,
            };
            (
                c.pve_url.clone(),
                c.pve_token_id.clone(),
                c.pve_token_secret.clone(),
                tls,
                login,
                None,
            )
        }
        None => {
            let sim = PveSim::start(opts.sim.unwrap_or_default())
                .await
                .map_err(|e| format!("cannot start the simulator: {e}"))?;
            let token = sim.token().ok_or("the simulator has no token")?;
            let tls = Tls::Pinned(
                sim.fingerprint()
                    .parse()
                    .map_err(|e: pve_vps_api::Error| e.to_string())?,
            );
            let login = sim.user_password().map(|(u, p)| ConsoleLogin {
                userid: u.to_owned(),
                password: p.to_owned().into(),
            });
            let id = format!("{}!{}", token.userid, token.tokenid);
            (
                sim.https_url(),
                id,
                token.secret.clone(),
                tls,
                login,
                Some(sim),
            )
        }
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let client = Client::builder(url.clone())
        .auth(Auth::api_token(&token_id, token_secret).map_err(|e| e.to_string())?)
        .tls(tls.clone())
        .observer(metrics.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let rdns: Arc<dyn pve_vps_dns::ReverseDns> = Arc::new(pve_vps_dns::InMemory::any_zone());
    let mut area = ClientArea::builder(client.clone(), catalog.clone()).reverse_dns(rdns);
    // The portal's own tables and vm-services' stores go to the same database.
    let database = cfg.database()?;
    match &database {
        config::Database::Memory => {}
        config::Database::Sqlite(p) => area = area.sqlite_file(p),
        config::Database::Postgres(url) => {
            let pg = pve_vps_services::stores::PgStore::connect(url.expose())
                .await
                .map_err(|e| format!("{}: {e}", url.redacted()))?;
            area = area.stores(Arc::new(pg));
        }
    }
    let store = store::Store::open(&database)
        .await
        .map_err(|e| match &database {
            config::Database::Sqlite(p) => format!("{}: {}", p.display(), e.chain()),
            config::Database::Postgres(url) => format!("{}: {}", url.redacted(), e.chain()),
            config::Database::Memory => e.chain(),
        })?;
    let area = area.build().map_err(|e| e.to_string())?;
    // The console needs a ticket session (PVE's vncwebsocket refuses API tokens).
    let console_area = match &login {
        Some(l) => {
            let (user, realm) = l
                .userid
                .rsplit_once('@')
                .ok_or("console user must be user@realm")?;
            use secrecy::ExposeSecret;
            let c = Client::builder(url.clone())
                .auth(
                    Auth::password(user, realm, l.password.expose_secret().to_owned())
                        .map_err(|e| e.to_string())?,
                )
                .tls(tls.clone())
                .observer(metrics.clone())
                .build()
                .map_err(|e| e.to_string())?;
            Some(
                ClientArea::builder(c, catalog.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let cluster = Cluster::new(client, url, tls, login);
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
        cluster: Arc::new(cluster),
        catalog,
        services,
        store,
        hub: pve_vps_services::OverviewHub::with_interval(area.clone(), cluster::LIVE_REFRESH),
        live_watches: Default::default(),
        area,
        console_area,
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
