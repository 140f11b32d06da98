//! Configuration: the cluster (or the embedded simulator), products, customers, listen address.
//!
//! Read from environment variables, or from a TOML file named by `PORTAL_CONFIG` with the same
//! keys in lower case (`pve_url = "..."`). With no `PVE_URL` the portal starts the embedded
//! `pve-sim` demo scenario.

use std::net::SocketAddr;
use std::path::PathBuf;

use pve_vps_services::service::Service;
use serde::Deserialize;

/// The example products file (documented; see `examples/config/products.toml`).
pub const DEFAULT_PRODUCTS: &str = include_str!("../../config/products.toml");
/// The demo customers file (see `examples/config/customers.toml`).
pub const DEFAULT_CUSTOMERS: &str = include_str!("../../config/customers.toml");

/// A real cluster to connect to.
#[derive(Clone, Deserialize)]
pub struct ClusterConfig {
    /// `https://host:8006`.
    pub pve_url: String,
    /// API token id, `user@realm!name`.
    pub pve_token_id: String,
    /// API token secret.
    pub pve_token_secret: String,
    /// SHA-256 fingerprint of the node certificate (`AA:BB:..`); system roots when absent.
    pub pve_fingerprint: Option<String>,
    /// User for the console relay (`user@realm`): PVE's vncwebsocket needs a ticket session.
    pub pve_console_user: Option<String>,
    /// Its password.
    pub pve_console_password: Option<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("pve_url", &self.pve_url)
            .field("pve_token_id", &self.pve_token_id)
            .field("pve_fingerprint", &self.pve_fingerprint)
            .field("pve_console_user", &self.pve_console_user)
            .finish_non_exhaustive()
    }
}

/// Everything the portal is started with. `Debug` hides secrets (the token secret, the
/// console password, the metrics token, a password in the database URL).
#[derive(Clone, Deserialize, Default)]
pub struct PortalConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: Option<SocketAddr>,
    /// The URL customers use; `https://...` turns on the cookies' `Secure` flag.
    pub public_url: Option<String>,
    /// Products file (default: the example file compiled in).
    pub products: Option<PathBuf>,
    /// Customers file (default: the demo customers compiled in).
    pub customers: Option<PathBuf>,
    /// The database (`PORTAL_DB`): an SQLite file, or a `postgres://` / `postgresql://` URL
    /// shared by several portal instances (default: SQLite in memory). See
    /// [`database`](Self::database).
    pub db: Option<PathBuf>,
    /// Cache directory for the noVNC client (default: `$XDG_CACHE_HOME/pve-vps-portal` or
    /// `~/.cache/pve-vps-portal`).
    pub cache_dir: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or networks): behind
    /// one, the login throttle counts the customer's address instead of the proxy's. Empty: the
    /// header is ignored (anyone could send it).
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Bearer token that opens `GET /metrics` to clients other than loopback
    /// (`PORTAL_METRICS_TOKEN`). Without it, only loopback clients (after resolving
    /// `X-Forwarded-For` of trusted proxies) get the metrics.
    pub metrics_token: Option<crate::metrics::MetricsToken>,
    /// The clusters file (`PORTAL_CLUSTERS`, else the cron's `CRON_CLUSTERS`; `--clusters
    /// FILE` to the binary): several clusters, as the `cron` binary reads them (see
    /// [`crate::clusters`]). The single-cluster settings, when given too, are the cluster
    /// `default`.
    pub clusters: Option<PathBuf>,
    /// How long a cluster may take to answer a page before its services are shown as
    /// temporarily unavailable (`PORTAL_CLUSTER_TIMEOUT_SECS`, default 5).
    pub cluster_timeout_secs: Option<u64>,
    /// The cluster; the embedded simulator when absent (and no clusters file is given).
    #[serde(flatten)]
    pub cluster: Option<ClusterConfig>,
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalConfig")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("products", &self.products)
            .field("customers", &self.customers)
            .field("db", &self.database())
            .field("cache_dir", &self.cache_dir)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_token", &self.metrics_token)
            .field("clusters", &self.clusters)
            .field("cluster_timeout_secs", &self.cluster_timeout_secs)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Where the portal keeps customers, sessions, login failures, console links and
/// vm-services' stores (backup schedules, plans, outcomes, leases).
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite in memory: one process, forgotten at exit.
    Memory,
    /// One SQLite file (one portal process; the login throttle counts in memory).
    Sqlite(PathBuf),
    /// One PostgreSQL database shared by every portal instance (and the cron workers).
    Postgres(PgUrl),
}

/// A PostgreSQL URL, `postgres://user:password@host:port/database` (or `postgresql://`).
/// `Debug` and [`redacted`](Self::redacted) replace the password with `***`.
#[derive(Clone)]
pub struct PgUrl(secrecy::SecretString);

impl PgUrl {
    /// Accepts a `postgres://` or `postgresql://` URL with a host.
    pub fn parse(s: &str) -> Result<Self, String> {
        let u =
            url::Url::parse(s).map_err(|e| format!("`{}` is not a valid url: {e}", redact(s)))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "`{}`: expected a postgres:// or postgresql:// url",
                redact(s)
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{}` names no host", redact(s)));
        }
        Ok(Self(s.to_owned().into()))
    }

    /// The URL itself, password included: for the database driver only.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }

    /// The URL with its password replaced by `***` (for logs and errors).
    pub fn redacted(&self) -> String {
        redact(self.expose())
    }

    /// Host, port and database (`127.0.0.1:5432/portal`).
    pub fn target(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(u) => format!(
                "{}:{}{}",
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(5432),
                u.path()
            ),
            Err(_) => "<invalid url>".to_owned(),
        }
    }
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PgUrl").field(&self.redacted()).finish()
    }
}

/// `s` with the password of a URL replaced by `***` (the whole text when it is no URL but
/// holds an `@`: whatever precedes it could be a password).
fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) if s.contains('@') => "<redacted>".to_owned(),
        Err(_) => s.to_owned(),
    }
}

/// A customer and the services they own.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    /// Login name.
    pub username: String,
    /// Password (demo: hashed into the store at start).
    pub password: String,
    /// The services (VMs) this customer owns.
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Debug, Deserialize)]
struct CustomersFile {
    customers: Vec<Customer>,
}

/// Parses a customers file.
pub fn parse_customers(s: &str) -> Result<Vec<Customer>, toml::de::Error> {
    Ok(toml::from_str::<CustomersFile>(s)?.customers)
}

/// A comma-separated list of addresses or networks (`10.0.0.1, 192.0.2.0/24, 2001:db8::/48`).
pub fn parse_networks(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{v:?} is not an address or network"))
        })
        .collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl PortalConfig {
    /// From `PORTAL_CONFIG` (a TOML file) when set, else from the environment.
    pub fn from_env() -> Result<Self, String> {
        if let Some(path) = env("PORTAL_CONFIG") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            return toml::from_str(&text).map_err(|e| format!("{path}: {e}"));
        }
        let cluster = match env("PVE_URL") {
            None => None,
            Some(pve_url) => Some(ClusterConfig {
                pve_url,
                pve_token_id: env("PVE_TOKEN_ID")
                    .ok_or("PVE_URL is set but PVE_TOKEN_ID is not")?,
                pve_token_secret: env("PVE_TOKEN_SECRET")
                    .ok_or("PVE_URL is set but PVE_TOKEN_SECRET is not")?,
                pve_fingerprint: env("PVE_FINGERPRINT"),
                pve_console_user: env("PVE_CONSOLE_USER"),
                pve_console_password: env("PVE_CONSOLE_PASSWORD"),
            }),
        };
        Ok(Self {
            listen: env("PORTAL_LISTEN")
                .map(|v| v.parse().map_err(|e| format!("PORTAL_LISTEN: {e}")))
                .transpose()?,
            public_url: env("PORTAL_PUBLIC_URL"),
            products: env("PORTAL_PRODUCTS").map(PathBuf::from),
            customers: env("PORTAL_CUSTOMERS").map(PathBuf::from),
            db: env("PORTAL_DB").map(PathBuf::from),
            cache_dir: env("PORTAL_CACHE_DIR").map(PathBuf::from),
            trusted_proxies: env("PORTAL_TRUSTED_PROXIES")
                .map(|v| parse_networks(&v))
                .transpose()
                .map_err(|e| format!("PORTAL_TRUSTED_PROXIES: {e}"))?
                .unwrap_or_default(),
            metrics_token: env("PORTAL_METRICS_TOKEN")
                .map(crate::metrics::MetricsToken::new)
                .transpose()
                .map_err(|e| format!("PORTAL_METRICS_TOKEN: {e}"))?,
            clusters: env("PORTAL_CLUSTERS")
                .or_else(|| env("CRON_CLUSTERS"))
                .map(PathBuf::from),
            cluster_timeout_secs: env("PORTAL_CLUSTER_TIMEOUT_SECS")
                .map(|v| {
                    v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!(
                            "PORTAL_CLUSTER_TIMEOUT_SECS: `{v}` is not a number of seconds \
                                 above 0"
                        )
                    })
                })
                .transpose()?,
            cluster,
        })
    }

    /// The clusters file's path, if one is given.
    pub fn clusters_file(&self) -> Option<String> {
        self.clusters.as_ref().map(|p| p.display().to_string())
    }

    /// How long a cluster may take to answer a page (default 5 s).
    pub fn cluster_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cluster_timeout_secs.unwrap_or(5).max(1))
    }

    /// The database `db` names: a `postgres://` or `postgresql://` URL is PostgreSQL, anything
    /// else an SQLite file; none is SQLite in memory. (The cron binary reads `PORTAL_DB` the
    /// same way.)
    pub fn database(&self) -> Result<Database, String> {
        let Some(p) = &self.db else {
            return Ok(Database::Memory);
        };
        match p.to_str() {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                PgUrl::parse(s)
                    .map(Database::Postgres)
                    .map_err(|e| format!("db: {e}"))
            }
            _ => Ok(Database::Sqlite(p.clone())),
        }
    }

    /// The products file's text.
    pub fn products_text(&self) -> Result<String, String> {
        match &self.products {
            Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
            None => Ok(DEFAULT_PRODUCTS.to_owned()),
        }
    }

    /// The customers file's text.
    pub fn customers_text(&self) -> Result<String, String> {
        match &self.customers {
            Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())),
            None => Ok(DEFAULT_CUSTOMERS.to_owned()),
        }
    }

    /// The noVNC cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(d) = &self.cache_dir {
            return d.clone();
        }
        if let Some(d) = env("XDG_CACHE_HOME") {
            return PathBuf::from(d).join("pve-vps-portal");
        }
        if let Some(h) = env("HOME") {
            return PathBuf::from(h).join(".cache").join("pve-vps-portal");
        }
        std::env::temp_dir().join("pve-vps-portal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pve_vps_services::product::Catalog;
    use std::path::Path;

    #[test]
    fn config_file_with_and_without_a_cluster() {
        let c: PortalConfig = toml::from_str(
            r#"
            listen = "0.0.0.0:8443"
            public_url = "https://portal.example.com"
            db = "/var/lib/portal.sqlite"
            pve_url = "https://pve1.example.com:8006"
            pve_token_id = "portal@pve!client-area"
            pve_token_secret = "0f1e2d3c-4b5a-6978-8776-a5b4c3d2e1f0"
            pve_fingerprint = "AB:CD"
            pve_console_user = "console@pve"
            pve_console_password = "secret"
            trusted_proxies = ["10.0.0.1/32", "2001:db8::/64"]
            metrics_token = "m3trics-t0ken"
            "#,
        )
        .unwrap();
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!(cl.pve_url, "https://pve1.example.com:8006");
        assert_eq!(cl.pve_console_user.as_deref(), Some("console@pve"));
        assert!(
            !format!("{cl:?}").contains("0f1e2d3c"),
            "the secret is not printed"
        );
        assert_eq!(c.listen.unwrap().port(), 8443);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.metrics_token.is_some());
        assert!(
            !format!("{c:?}").contains("m3trics-t0ken"),
            "the token is not printed"
        );
        assert_eq!(
            parse_networks("10.0.0.1, 192.0.2.0/24,").unwrap(),
            [
                "10.0.0.1/32".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ]
        );
        assert!(parse_networks("proxy.example.com").is_err());
        let sim: PortalConfig = toml::from_str("listen = \"127.0.0.1:9000\"").unwrap();
        assert!(sim.cluster.is_none(), "no pve_url: the embedded simulator");
    }

    #[test]
    fn database_setting_picks_the_backend_and_hides_the_password() {
        let with = |db: Option<&str>| PortalConfig {
            db: db.map(PathBuf::from),
            ..Default::default()
        };
        assert!(matches!(with(None).database(), Ok(Database::Memory)));
        assert!(matches!(
            with(Some("/var/lib/portal.sqlite")).database(),
            Ok(Database::Sqlite(p)) if p == Path::new("/var/lib/portal.sqlite")
        ));
        for url in [
            "postgres://portal:hunter2@db.example.com:5433/portal",
            "postgresql://portal:hunter2@db.example.com/portal",
        ] {
            let c = with(Some(url));
            let Ok(Database::Postgres(u)) = c.database() else {
                panic!("{url} is postgres");
            };
            assert_eq!(u.expose(), url);
            assert!(u.redacted().contains("portal:***@db.example.com"));
            for shown in [format!("{c:?}"), format!("{u:?}"), u.redacted(), u.target()] {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
        }
        assert_eq!(
            PgUrl::parse("postgres://u:pw@127.0.0.1/portal")
                .unwrap()
                .target(),
            "127.0.0.1:5432/portal"
        );
        // Bad URLs are refused without repeating a password.
        for bad in [
            "postgres://u:hunter2@/portal",
            "postgres://u:hunter2@[::1/db",
        ] {
            let e = with(Some(bad)).database().unwrap_err();
            assert!(e.starts_with("db: ") && !e.contains("hunter2"), "{e}");
        }
        assert!(PgUrl::parse("mysql://u:p@h/db").is_err());
    }

    #[test]
    fn example_files_load_and_match() {
        let catalog = Catalog::from_toml_str(DEFAULT_PRODUCTS).unwrap();
        let customers = parse_customers(DEFAULT_CUSTOMERS).unwrap();
        assert_eq!(customers.len(), 2);
        for c in &customers {
            assert!(c.services.len() >= 2);
            for s in &c.services {
                assert!(catalog.get(&s.product).is_some(), "{}", s.product);
            }
        }
    }
}
