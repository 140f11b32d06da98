//! Several Proxmox VE clusters, as the `portal` and `cron` binaries read them: a clusters file
//! (TOML, one `[clusters.<name>]` table per cluster) plus, as the cluster `default`, the
//! single-cluster `PVE_*` settings.
//!
//! ```toml
//! [clusters.east]
//! url = "https://pve-east.example.com:8006"
//! token_id = "portal@pve!client-area"
//! token_secret_env = "EAST_TOKEN_SECRET"   # or token_secret = "..."
//! fingerprint = "AB:CD:..."                # optional: system roots when absent
//! console_user = "console@pve"             # optional, the portal's console relay
//! console_password_env = "EAST_CONSOLE_PASSWORD"
//! ```
//!
//! Everything is checked before anything is connected: a mistake is reported naming the
//! setting (`clusters.toml: clusters.east.fingerprint: ...`). Secrets never appear in the
//! messages or in `Debug`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pve_vps_api::{Auth, Client, Tls};
use pve_vps_services::ids::ClusterName;
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::portal::cluster::ConsoleLogin;
use crate::portal::config::{ClusterConfig, Customer};

/// The clusters file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClustersFile {
    clusters: BTreeMap<String, ClusterEntry>,
}

/// `[clusters.<name>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterEntry {
    url: String,
    token_id: String,
    token_secret: Option<String>,
    token_secret_env: Option<String>,
    fingerprint: Option<String>,
    console_user: Option<String>,
    console_password: Option<String>,
    console_password_env: Option<String>,
}

/// One cluster's settings, checked: its name, where it is, how its certificate is checked,
/// an API-token client (built, no request made) and the console relay's login.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The cluster's name (`default` for the `PVE_*` settings).
    pub name: ClusterName,
    /// Base URL (`https://host:8006`).
    pub url: String,
    /// How the cluster's certificate is checked.
    pub tls: Tls,
    /// The API-token client (with the metrics observer).
    pub client: Client,
    /// The console relay's login (user/password), when configured.
    pub console: Option<ConsoleLogin>,
}

/// The names under which one cluster's settings are reported in errors.
struct Fields {
    url: String,
    token_id: String,
    fingerprint: String,
    console: String,
}

/// Reads and checks the clusters file at `path`. Errors start with the path and name the
/// setting (`clusters.east.url`).
pub fn load(path: &str, metrics: &Arc<Metrics>) -> Result<Vec<ClusterSettings>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let parsed: ClustersFile = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if parsed.clusters.is_empty() {
        return Err(format!("{path}: clusters: no cluster is configured"));
    }
    let mut out: Vec<ClusterSettings> = Vec::new();
    for (name, entry) in parsed.clusters {
        let at = format!("{path}: clusters.{name}");
        let cluster: ClusterName = name.parse().map_err(|e| format!("{at}: {e}"))?;
        let secret = one_of(
            &at,
            "token_secret",
            entry.token_secret.as_deref(),
            entry.token_secret_env.as_deref(),
        )?
        .ok_or_else(|| {
            format!("{at}: give either token_secret or token_secret_env (one of them)")
        })?;
        let console_password = one_of(
            &at,
            "console_password",
            entry.console_password.as_deref(),
            entry.console_password_env.as_deref(),
        )?;
        let fields = Fields {
            url: format!("{at}.url"),
            token_id: format!("{at}.token_id"),
            fingerprint: format!("{at}.fingerprint"),
            console: format!("{at}.console_user"),
        };
        let settings = settings(
            cluster,
            &fields,
            &entry.url,
            &entry.token_id,
            secret,
            entry.fingerprint.as_deref(),
            entry.console_user.as_deref(),
            console_password,
            metrics,
        )?;
        // `-` and `_` name the same PostgreSQL schema and SQLite file.
        if let Some(other) = out
            .iter()
            .find(|c| pg_schema(&c.name) == pg_schema(&settings.name))
        {
            return Err(format!(
                "{at}: shares its store with clusters.{} (`-` and `_` are the same in \
                 store names): rename one",
                other.name
            ));
        }
        out.push(settings);
    }
    Ok(out)
}

/// `inline` or the variable named by `env_var` (`<what>_env`), not both; `None` for neither.
fn one_of(
    at: &str,
    what: &str,
    inline: Option<&str>,
    env_var: Option<&str>,
) -> Result<Option<String>, String> {
    match (inline, env_var) {
        (Some(s), None) => Ok(Some(s.to_owned())),
        (None, Some(var)) => env(var)
            .map(Some)
            .ok_or_else(|| format!("{at}.{what}_env: the variable `{var}` is not set")),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(format!(
            "{at}: give either {what} or {what}_env (one of them)"
        )),
    }
}

/// Adds the single-cluster settings (`PVE_URL`, `PVE_TOKEN_ID`, ... or their `PORTAL_CONFIG`
/// keys) as the cluster `default`, first; refused when the clusters file (`file`) configures
/// `default` too.
pub fn add_default(
    clusters: &mut Vec<ClusterSettings>,
    c: &ClusterConfig,
    file: Option<&str>,
    metrics: &Arc<Metrics>,
) -> Result<(), String> {
    let name = ClusterName::default();
    if clusters.iter().any(|x| x.name == name) {
        return Err(format!(
            "clusters.default: configured twice, in {} and by PVE_URL",
            file.unwrap_or("the clusters file")
        ));
    }
    let fields = Fields {
        url: "PVE_URL".into(),
        token_id: "PVE_TOKEN_ID".into(),
        fingerprint: "PVE_FINGERPRINT".into(),
        console: "PVE_CONSOLE_USER".into(),
    };
    let s = settings(
        name,
        &fields,
        &c.pve_url,
        &c.pve_token_id,
        c.pve_token_secret.clone(),
        c.pve_fingerprint.as_deref(),
        c.pve_console_user.as_deref(),
        c.pve_console_password.clone(),
        metrics,
    )?;
    clusters.insert(0, s);
    Ok(())
}

/// Checks that every service of `customers` names a configured cluster (`default` when it
/// names none); the error names the service (`customers.alice.services[0].cluster`).
pub fn check_services(
    customers_at: &str,
    customers: &[Customer],
    clusters: &[ClusterName],
) -> Result<(), String> {
    let known: Vec<String> = clusters.iter().map(ToString::to_string).collect();
    for c in customers {
        for (i, s) in c.services.iter().enumerate() {
            if !clusters.contains(&s.cluster) {
                return Err(format!(
                    "{customers_at}: customers.{}.services[{i}].cluster: `{}` ({}) is not a \
                     configured cluster (configured: {})",
                    c.username,
                    s.cluster,
                    if s.cluster.is_default() {
                        "the service names none"
                    } else {
                        "named by the service"
                    },
                    known.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// One cluster's checked settings; errors name the setting.
#[allow(clippy::too_many_arguments)]
fn settings(
    name: ClusterName,
    fields: &Fields,
    url: &str,
    token_id: &str,
    secret: String,
    fingerprint: Option<&str>,
    console_user: Option<&str>,
    console_password: Option<String>,
    metrics: &Arc<Metrics>,
) -> Result<ClusterSettings, String> {
    let auth =
        Auth::api_token(token_id, secret).map_err(|e| format!("{}: {e}", fields.token_id))?;
    let tls = match fingerprint {
        Some(fp) => Tls::Pinned(
            fp.parse()
                .map_err(|e| format!("{}: {e}", fields.fingerprint))?,
        ),
        None => Tls::SystemRoots,
    };
    let client = Client::builder(url.to_owned())
        .auth(auth)
        .tls(tls.clone())
        .observer(metrics.clone())
        .build()
        .map_err(|e| format!("{}: {e}", fields.url))?;
    let console = match (console_user, console_password) {
        (Some(u), Some(p)) => {
            if !u.contains('@') {
                return Err(format!("{}: `{u}` is not user@realm", fields.console));
            }
            Some(ConsoleLogin {
                userid: u.to_owned(),
                password: p.into(),
            })
        }
        _ => None,
    };
    Ok(ClusterSettings {
        name,
        url: url.to_owned(),
        tls,
        client,
        console,
    })
}

/// `--clusters FILE` (or `--clusters=FILE`) among the program's arguments.
pub fn file_arg() -> Result<Option<String>, String> {
    let args: Vec<String> = std::env::args().collect();
    let value = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--clusters" {
            Some(args.get(i + 1).cloned().unwrap_or_default())
        } else {
            a.strip_prefix("--clusters=").map(str::to_owned)
        }
    });
    match value {
        Some(v) if v.is_empty() || v.starts_with("--") => {
            Err("--clusters: give the clusters file's path".into())
        }
        v => Ok(v),
    }
}

/// The PostgreSQL schema of a cluster other than `default` (as `PgStore::connect_scoped`
/// names it).
pub fn pg_schema(cluster: &ClusterName) -> String {
    format!("vm_services_{}", cluster.as_str().replace('-', "_"))
}

/// The SQLite file of `cluster`: `path` itself for `default`, else `<stem>-<name>.<ext>` next
/// to it (`/var/lib/cron.sqlite` -> `/var/lib/cron-east.sqlite`; `-` in the name as `_`).
pub fn sqlite_path(path: &Path, cluster: &ClusterName) -> PathBuf {
    if cluster.is_default() {
        return path.to_owned();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = cluster.as_str().replace('-', "_");
    let file = match path.extension() {
        Some(ext) => format!("{stem}-{name}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{name}"),
    };
    path.with_file_name(file)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> String {
        let p = std::env::temp_dir().join(format!("clusters-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    const GOOD: &str = "[clusters.east]\nurl = \"https://10.0.0.1:8006\"\n\
        token_id = \"portal@pve!ca\"\ntoken_secret = \"s3cret-value\"\n\
        console_user = \"console@pve\"\nconsole_password = \"c0nsole-pw\"\n\n\
        [clusters.west]\nurl = \"https://10.0.0.2:8006\"\ntoken_id = \"portal@pve!ca\"\n\
        token_secret = \"s3cret-value\"\n";

    #[test]
    fn a_good_file_gives_each_cluster_and_hides_secrets() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let m = Arc::new(Metrics::new());
        let path = write("good", GOOD);
        let c = load(&path, &m).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["east", "west"]);
        assert_eq!(c[0].console.as_ref().unwrap().userid, "console@pve");
        assert!(c[1].console.is_none());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("c0nsole"),
            "{shown}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn mistakes_name_the_setting() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let m = Arc::new(Metrics::new());
        for (what, text, expect) in [
            ("unknown", format!("{GOOD}colour = 1\n"), "colour"),
            (
                "both passwords",
                GOOD.replace(
                    "console_password = ",
                    "console_password_env = \"X\"\nconsole_password = ",
                ),
                "clusters.east: give either console_password or console_password_env",
            ),
            (
                "console user",
                GOOD.replace("console@pve", "console"),
                "clusters.east.console_user: `console` is not user@realm",
            ),
            (
                "store names",
                GOOD.replace("[clusters.west]", "[clusters.e-w]")
                    .replace("[clusters.east]", "[clusters.e_w]"),
                "shares its store",
            ),
        ] {
            let path = write("bad", &text);
            let e = load(&path, &m).unwrap_err();
            assert!(e.contains(expect), "{what}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("c0nsole-pw"), "{e}");
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn store_names_per_cluster() {
        let east: ClusterName = "east-1".parse().unwrap();
        assert_eq!(pg_schema(&east), "vm_services_east_1");
        assert_eq!(
            sqlite_path(Path::new("/var/lib/cron.sqlite"), &east),
            Path::new("/var/lib/cron-east_1.sqlite")
        );
        assert_eq!(
            sqlite_path(Path::new("/var/lib/cron.sqlite"), &ClusterName::default()),
            Path::new("/var/lib/cron.sqlite")
        );
    }
}
