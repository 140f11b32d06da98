//! The client-area portal: configuration, the cluster shell, the store, the screens and the
//! console relay. [`start`] assembles it; the `portal` binary, the browser test and the load
//! generator all start it the same way.

pub mod cluster;
pub mod config;
pub mod console;
pub mod html;
pub mod store;
pub mod web;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use proxmox_api::{Auth, Client, Tls};
use pve_sim::{PveSim, SimConfig};
use vm_services::product::Catalog;
use vm_services::stores::SqliteStore;

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
    let (cluster, sim) = match &cfg.cluster {
        Some(c) => {
            let mut b = Client::builder(c.pve_url.clone()).auth(
                Auth::api_token(&c.pve_token_id, c.pve_token_secret.clone())
                    .map_err(|e| e.to_string())?,
            );
            if let Some(fp) = &c.pve_fingerprint {
                b = b.tls(Tls::Pinned(
                    fp.parse().map_err(|e: proxmox_api::Error| e.to_string())?,
                ));
            }
            let client = b.build().map_err(|e| e.to_string())?;
            let login = match (&c.pve_console_user, &c.pve_console_password) {
                (Some(u), Some(p)) => Some(ConsoleLogin {
                    userid: u.clone(),
                    password: p.clone().into(),
                }),
                _ => None,
            };
            (
                Cluster::new(client, c.pve_url.clone(), c.pve_fingerprint.clone(), login),
                None,
            )
        }
        None => {
            let sim = PveSim::start(opts.sim.unwrap_or_default())
                .await
                .map_err(|e| format!("cannot start the simulator: {e}"))?;
            let token = sim.token().ok_or("the simulator has no token")?;
            let client = Client::builder(sim.https_url())
                .auth(
                    Auth::api_token(
                        &format!("{}!{}", token.userid, token.tokenid),
                        token.secret.clone(),
                    )
                    .map_err(|e| e.to_string())?,
                )
                .tls(Tls::Pinned(
                    sim.fingerprint()
                        .parse()
                        .map_err(|e: proxmox_api::Error| e.to_string())?,
                ))
                .build()
                .map_err(|e| e.to_string())?;
            let login = sim.user_password().map(|(u, p)| ConsoleLogin {
                userid: u.to_owned(),
                password: p.to_owned().into(),
            });
            let cluster = Cluster::new(
                client,
                sim.https_url(),
                Some(sim.fingerprint().to_owned()),
                login,
            );
            (cluster, Some(sim))
        }
    };
    let (store, schedules) = match &cfg.db {
        Some(p) => (
            store::Store::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
            SqliteStore::open(p).map_err(|e| format!("{}: {e}", p.display()))?,
        ),
        None => (
            store::Store::in_memory().map_err(|e| e.to_string())?,
            SqliteStore::open_in_memory().map_err(|e| e.to_string())?,
        ),
    };
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
        store.set_customer(u, h).map_err(|e| e.to_string())?;
    }
    let services: HashMap<String, Vec<vm_services::service::Service>> = customers
        .iter()
        .map(|c| (c.username.clone(), c.services.clone()))
        .collect();
    let app = Arc::new(web::App {
        cluster: Arc::new(cluster),
        catalog,
        services,
        store,
        schedules,
        secure_cookies: cfg
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://")),
        console_tokens: Default::default(),
        novnc_dir: Default::default(),
        rdns: Arc::new(dns_providers::InMemory::any_zone()),
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
        if let Err(e) = axum::serve(listener, router).await {
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
