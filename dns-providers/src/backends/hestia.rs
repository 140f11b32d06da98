//! HestiaCP API backend.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::{Change, Ptr, ReverseDns};
use crate::backends::{locate_all, per_zone};
use crate::error::{Error, Result};
use crate::hostname::Hostname;
use crate::http::{self, RetryPolicy};
use crate::zone::{PtrLocation, ZoneName, Zones};

const PROVIDER: &str = "hestia";

/// How the API authenticates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HestiaAuth {
    /// An API access key and its secret (HestiaCP 1.6+).
    AccessKey {
        /// The access key id.
        access_key: String,
        /// The secret key.
        secret_key: SecretString,
    },
    /// The legacy API hash.
    Hash(SecretString),
}

/// Reverse DNS through the HestiaCP API (`POST /api/`, `v-*-dns-record` commands).
///
/// HestiaCP names cannot contain `/`: an RFC 2317 zone must use the `0-26` naming.
///
/// ```
/// use pve_vps_dns::{Hestia, HestiaAuth, Zones};
/// let dns = Hestia::new(
///     "https://panel.example.com:8083",
///     HestiaAuth::AccessKey {
///         access_key: "AKEY".into(),
///         secret_key: "very-secret".to_owned().into(),
///     },
///     "admin",
///     Zones::from_names(["2.0.192.in-addr.arpa."])?,
/// )?;
/// assert!(!format!("{dns:?}").contains("very-secret"));
/// # Ok::<(), pve_vps_dns::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Hestia {
    url: String,
    auth: HestiaAuth,
    user: String,
    zones: Zones,
    ttl: Option<u32>,
    retry: RetryPolicy,
    client: reqwest::Client,
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
struct HestiaRecord {
    #[serde(default)]
    record: String,
    #[serde(rename = "TYPE", default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    suspended: String,
}

/// The meaning of HestiaCP's return codes (its `func/main.sh`).
fn return_code_name(code: u32) -> &'static str {
    match code {
        1 => "E_ARGS: invalid or missing arguments",
        2 => "E_INVALID: invalid value",
        3 => "E_NOTEXIST: object does not exist",
        4 => "E_EXISTS: object already exists",
        5 => "E_SUSPENDED: object is suspended",
        6 => "E_UNSUSPENDED: object is not suspended",
        7 => "E_INUSE: object is in use",
        8 => "E_LIMIT: limit reached",
        9 => "E_PASSWORD: wrong credentials",
        10 => "E_FORBIDEN: forbidden",
        11 => "E_DISABLED: disabled",
        12 => "E_PARSING: parsing error",
        13 => "E_DISK: disk error",
        14 => "E_LA: server load too high",
        15 => "E_CONNECT: connection failed",
        16 => "E_FTP: ftp error",
        17 => "E_DB: database error",
        18 => "E_RRD: rrd error",
        19 => "E_UPDATE: update failed",
        20 => "E_RESTART: service restart failed",
        _ => "unknown return code",
    }
}

impl Hestia {
    /// A backend for the panel at `panel_url` (e.g. `https://panel.example.com:8083`; the
    /// `/api/` path is added), acting on the DNS domains of `user`.
    ///
    /// Zones whose names contain `/` are refused ([`Error::Unsupported`]).
    pub fn new(panel_url: &str, auth: HestiaAuth, user: &str, zones: Zones) -> Result<Self> {
        let parsed = http::parse_url(PROVIDER, "panel url", panel_url)?;
        if let Some(z) = zones.iter().find(|z| z.name().as_str().contains('/')) {
            return Err(Error::Unsupported {
                provider: PROVIDER,
                what: format!(
                    "zone `{}`: HestiaCP names cannot contain `/`, use the `0-26` naming",
                    z.name()
                ),
            });
        }
        if user.is_empty()
            || !user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(Error::Unsupported {
                provider: PROVIDER,
                what: format!("user `{user}`"),
            });
        }
        let base = parsed.as_str().trim_end_matches('/');
        let url = if base.ends_with("/api") {
            format!("{base}/")
        } else {
            format!("{base}/api/")
        };
        Ok(Self {
            url,
            auth,
            user: user.to_owned(),
            zones,
            ttl: None,
            retry: RetryPolicy::default(),
            client: http::client(PROVIDER, Duration::from_secs(60))?,
            write_lock: Arc::default(),
        })
    }

    /// TTL of the records written (HestiaCP's default otherwise).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Retry policy for 429 and 5xx answers.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Run `cmd` with `args`; returns the body.
    async fn command(
        &self,
        cmd: &str,
        args: &[&str],
        returncode: bool,
        idempotent: bool,
    ) -> Result<String> {
        let mut form: Vec<(String, &str)> = Vec::with_capacity(args.len() + 4);
        match &self.auth {
            HestiaAuth::AccessKey {
                access_key,
                secret_key,
            } => {
                form.push(("access_key".into(), access_key));
                form.push(("secret_key".into(), secret_key.expose_secret()));
            }
            HestiaAuth::Hash(hash) => form.push(("hash".into(), hash.expose_secret())),
        }
        form.push(("returncode".into(), if returncode { "yes" } else { "no" }));
        form.push(("cmd".into(), cmd));
        for (i, a) in args.iter().enumerate() {
            form.push((format!("arg{}", i + 1), a));
        }
        let resp = http::send(PROVIDER, &self.retry, idempotent, || {
            self.client.request(Method::POST, &self.url).form(&form)
        })
        .await?;
        http::text(PROVIDER, http::success(PROVIDER, resp).await?).await
    }

    /// Run a command with `returncode=yes`; returns the code.
    async fn command_code(&self, cmd: &str, args: &[&str], idempotent: bool) -> Result<u32> {
        let body = self.command(cmd, args, true, idempotent).await?;
        body.trim().parse().map_err(|_| Error::Provider {
            provider: PROVIDER,
            status: None,
            code: None,
            message: format!("{cmd}: {}", http::snippet(&body)),
        })
    }

    fn code_error(cmd: &str, code: u32) -> Error {
        Error::Provider {
            provider: PROVIDER,
            status: None,
            code: Some(code.to_string()),
            message: format!("{cmd} returned {code} ({})", return_code_name(code)),
        }
    }

    /// PTR records of a zone: (id, relative name, value).
    async fn records(&self, zone: &ZoneName) -> Result<Vec<(String, String, String)>> {
        let body = self
            .command(
                "v-list-dns-records",
                &[&self.user, zone.without_dot(), "json"],
                false,
                true,
            )
            .await?;
        let trimmed = body.trim();
        if trimmed.is_empty() {
            return Ok(Vec::new());
        }
        let parsed: BTreeMap<String, HestiaRecord> =
            serde_json::from_str(trimmed).map_err(|_| Error::Provider {
                provider: PROVIDER,
                status: None,
                code: trimmed.parse::<u32>().ok().map(|c| c.to_string()),
                message: format!("v-list-dns-records: {}", http::snippet(trimmed)),
            })?;
        Ok(parsed
            .into_iter()
            .filter(|(_, r)| r.kind.eq_ignore_ascii_case("PTR") && r.suspended != "yes")
            .map(|(id, r)| (id, r.record, r.value))
            .collect())
    }

    fn parse_value(name: &str, value: &str) -> Result<Hostname> {
        value
            .parse()
            .map_err(|e| http::decode(PROVIDER, format!("PTR `{name}` has value `{value}`: {e}")))
    }

    async fn named(&self, at: &PtrLocation) -> Result<Vec<(String, Hostname)>> {
        let rel = at.relative_name();
        self.records(at.zone())
            .await?
            .into_iter()
            .filter(|(_, name, _)| name.eq_ignore_ascii_case(rel))
            .map(|(id, name, value)| Ok((id, Self::parse_value(&name, &value)?)))
            .collect()
    }

    async fn delete(&self, at: &PtrLocation, id: &str) -> Result<()> {
        let cmd = "v-delete-dns-record";
        match self
            .command_code(cmd, &[&self.user, at.zone().without_dot(), id], true)
            .await?
        {
            0 | 3 => Ok(()),
            code => Err(Self::code_error(cmd, code)),
        }
    }
}

#[async_trait]
impl ReverseDns for Hestia {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        let at = self.zones.locate(ip)?;
        Ok(self
            .named(&at)
            .await?
            .into_iter()
            .next()
            .map(|(_, h)| Ptr::active(h)))
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        let existing = self.named(&at).await?;
        let domain = at.zone().without_dot();
        let value = hostname.to_fqdn();
        let ttl = self.ttl.map(|t| t.to_string());
        let change = match existing.split_first() {
            Some(((_, h), [])) if h == hostname => return Ok(Change::Unchanged),
            Some(((id, _), rest)) => {
                let cmd = "v-change-dns-record";
                let mut args = vec![
                    self.user.as_str(),
                    domain,
                    id.as_str(),
                    at.relative_name(),
                    "PTR",
                    value.as_str(),
                ];
                if let Some(ttl) = &ttl {
                    args.extend(["", "yes", ttl.as_str()]);
                }
                let change = match self.command_code(cmd, &args, true).await? {
                    0 => Change::Replaced,
                    // HestiaCP: nothing to change.
                    4 => Change::Unchanged,
                    code => return Err(Self::code_error(cmd, code)),
                };
                for (extra, _) in rest {
                    self.delete(&at, extra).await?;
                }
                if rest.is_empty() {
                    change
                } else {
                    Change::Replaced
                }
            }
            None => {
                let cmd = "v-add-dns-record";
                let mut args = vec![
                    self.user.as_str(),
                    domain,
                    at.relative_name(),
                    "PTR",
                    value.as_str(),
                ];
                if let Some(ttl) = &ttl {
                    args.extend(["", "", "yes", ttl.as_str()]);
                }
                match self.command_code(cmd, &args, false).await? {
                    0 => Change::Created,
                    code => return Err(Self::code_error(cmd, code)),
                }
            }
        };
        tracing::info!(provider = PROVIDER, %ip, %hostname, %change, "PTR set");
        Ok(change)
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        let existing = self.named(&at).await?;
        if existing.is_empty() {
            return Ok(Change::Unchanged);
        }
        for (id, _) in &existing {
            self.delete(&at, id).await?;
        }
        tracing::info!(provider = PROVIDER, %ip, "PTR removed");
        Ok(Change::Removed)
    }

    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        let located = locate_all(&self.zones, ips.iter().copied())?;
        let by_zone = per_zone(&located, |zone| self.records(zone)).await?;
        ips.iter()
            .zip(&located)
            .map(|(&ip, at)| {
                let found = by_zone
                    .get(at.zone())
                    .into_iter()
                    .flatten()
                    .find(|(_, name, _)| name.eq_ignore_ascii_case(at.relative_name()));
                let ptr = found
                    .map(|(_, name, value)| Self::parse_value(name, value).map(Ptr::active))
                    .transpose()?;
                Ok((ip, ptr))
            })
            .collect()
    }
}
