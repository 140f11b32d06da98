//! PowerDNS Authoritative HTTP API backend.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::api::{Change, Ptr, PtrChange, ReverseDns, check_distinct};
use crate::backends::{locate_all, per_zone};
use crate::error::{Error, Result};
use crate::hostname::Hostname;
use crate::http::{self, RetryPolicy};
use crate::zone::{PtrLocation, ZoneName, Zones};

const PROVIDER: &str = "powerdns";

/// Reverse DNS through the PowerDNS Authoritative HTTP API (`X-API-Key`, `PATCH` of rrsets
/// with `REPLACE`/`DELETE`; each change is one atomic PATCH of one rrset).
///
/// ```
/// use pve_vps_dns::{PowerDns, Zones};
/// let dns = PowerDns::new(
///     "http://127.0.0.1:8081",
///     "api-key".to_owned().into(),
///     Zones::from_names(["2.0.192.in-addr.arpa."])?,
/// )?
/// .with_ttl(300);
/// assert!(!format!("{dns:?}").contains("api-key"));
/// # Ok::<(), pve_vps_dns::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PowerDns {
    base: String,
    server_id: String,
    api_key: SecretString,
    zones: Zones,
    ttl: u32,
    retry: RetryPolicy,
    client: reqwest::Client,
    /// Serialises this client's read-modify-write cycles, so concurrent calls report accurate
    /// [`Change`]s and do not race each other into the server's (sqlite) write lock.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Deserialize)]
struct ZoneBody {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

#[derive(Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    content: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(Serialize)]
struct Patch<'a> {
    rrsets: Vec<PatchRrSet<'a>>,
}

#[derive(Serialize)]
struct PatchRrSet<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    changetype: &'static str,
    records: Vec<PatchRecord>,
}

#[derive(Serialize)]
struct PatchRecord {
    content: String,
    disabled: bool,
}

/// PowerDNS zone ids escape every byte outside `[A-Za-z0-9.-_]` as `=XX` (so `/` is `=2F`).
fn zone_id(zone: &ZoneName) -> String {
    let mut id = String::with_capacity(zone.as_str().len());
    for b in zone.as_str().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("={b:02X}"));
        }
    }
    id
}

impl PowerDns {
    /// A backend for the API at `api_url` (scheme, host and port of the webserver, e.g.
    /// `http://127.0.0.1:8081`), serving `zones`. Server id `localhost`, TTL 3600.
    pub fn new(api_url: &str, api_key: SecretString, zones: Zones) -> Result<Self> {
        let parsed = http::parse_url(PROVIDER, "api url", api_url)?;
        Ok(Self {
            base: parsed.as_str().trim_end_matches('/').to_owned(),
            server_id: "localhost".to_owned(),
            api_key,
            zones,
            ttl: 3600,
            retry: RetryPolicy::default(),
            client: http::client(PROVIDER, Duration::from_secs(30))?,
            write_lock: Arc::default(),
        })
    }

    /// Use another server id than `localhost`.
    pub fn with_server_id(mut self, id: impl Into<String>) -> Self {
        self.server_id = id.into();
        self
    }

    /// TTL of the PTR records written.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retry policy for 429 and 5xx answers.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The configured zones.
    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    fn zone_url(&self, zone: &ZoneName) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}",
            self.base,
            self.server_id,
            zone_id(zone)
        )
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .header("X-API-Key", self.api_key.expose_secret())
    }

    /// Create a native zone (admin helper for setups and tests). An existing zone is
    /// [`Change::Unchanged`].
    pub async fn create_zone(&self, zone: &ZoneName, nameservers: &[Hostname]) -> Result<Change> {
        let url = format!("{}/api/v1/servers/{}/zones", self.base, self.server_id);
        let body = serde_json::json!({
            "name": zone.as_str(),
            "kind": "Native",
            "nameservers": nameservers.iter().map(Hostname::to_fqdn).collect::<Vec<_>>(),
        });
        let resp = http::send(PROVIDER, &self.retry, true, || {
            self.request(Method::POST, &url).json(&body)
        })
        .await?;
        match resp.status() {
            s if s.is_success() => Ok(Change::Created),
            StatusCode::CONFLICT => Ok(Change::Unchanged),
            _ => Err(http::error_from(PROVIDER, resp).await),
        }
    }

    async fn fetch(&self, zone: &ZoneName, name: Option<&str>) -> Result<Vec<RrSet>> {
        let url = self.zone_url(zone);
        let resp = http::send(PROVIDER, &self.retry, true, || {
            let req = self.request(Method::GET, &url);
            match name {
                Some(name) => req.query(&[("rrset_name", name), ("rrset_type", "PTR")]),
                None => req,
            }
        })
        .await?;
        let resp = http::success(PROVIDER, resp).await.map_err(|e| match e {
            Error::Provider {
                status: Some(404),
                message,
                ..
            } => Error::Provider {
                provider: PROVIDER,
                status: Some(404),
                code: None,
                message: format!("zone `{zone}` not found on the server: {message}"),
            },
            e => e,
        })?;
        let body: ZoneBody = resp.json().await.map_err(|e| http::decode(PROVIDER, e))?;
        Ok(body.rrsets)
    }

    fn ptr_of(rrsets: &[RrSet], name: &str) -> Result<Option<Ptr>> {
        let content = rrsets
            .iter()
            .filter(|r| r.kind == "PTR" && r.name.eq_ignore_ascii_case(name))
            .flat_map(|r| &r.records)
            .find(|r| !r.disabled);
        match content {
            None => Ok(None),
            Some(r) => r
                .content
                .parse::<Hostname>()
                .map(|h| Some(Ptr::active(h)))
                .map_err(|e| {
                    http::decode(PROVIDER, format!("PTR of `{name}` is `{}`: {e}", r.content))
                }),
        }
    }

    async fn current(&self, at: &PtrLocation) -> Result<Option<Ptr>> {
        let rrsets = self.fetch(at.zone(), Some(at.record_name())).await?;
        Self::ptr_of(&rrsets, at.record_name())
    }

    fn rrset<'a>(&self, name: &'a str, hostname: Option<&Hostname>) -> PatchRrSet<'a> {
        match hostname {
            Some(h) => PatchRrSet {
                name,
                kind: "PTR",
                ttl: Some(self.ttl),
                changetype: "REPLACE",
                records: vec![PatchRecord {
                    content: h.to_fqdn(),
                    disabled: false,
                }],
            },
            None => PatchRrSet {
                name,
                kind: "PTR",
                ttl: None,
                changetype: "DELETE",
                records: Vec::new(),
            },
        }
    }

    /// One PATCH of some rrsets of one zone: PowerDNS applies it atomically.
    async fn patch_zone(&self, zone: &ZoneName, rrsets: Vec<PatchRrSet<'_>>) -> Result<()> {
        let body = Patch { rrsets };
        let url = self.zone_url(zone);
        let resp = http::send(PROVIDER, &self.retry, true, || {
            self.request(Method::PATCH, &url).json(&body)
        })
        .await?;
        http::success(PROVIDER, resp).await.map(drop)
    }

    async fn patch(&self, at: &PtrLocation, hostname: Option<&Hostname>) -> Result<()> {
        let rrset = self.rrset(at.record_name(), hostname);
        self.patch_zone(at.zone(), vec![rrset]).await
    }
}

#[async_trait]
impl ReverseDns for PowerDns {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        let at = self.zones.locate(ip)?;
        self.current(&at).await
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        let before = self.current(&at).await?;
        if before.as_ref().map(Ptr::hostname) == Some(hostname) {
            return Ok(Change::Unchanged);
        }
        self.patch(&at, Some(hostname)).await?;
        tracing::info!(provider = PROVIDER, %ip, %hostname, "PTR set");
        Ok(if before.is_some() {
            Change::Replaced
        } else {
            Change::Created
        })
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        if self.current(&at).await?.is_none() {
            return Ok(Change::Unchanged);
        }
        self.patch(&at, None).await?;
        tracing::info!(provider = PROVIDER, %ip, "PTR removed");
        Ok(Change::Removed)
    }

    /// One atomic PATCH per zone; if a later zone fails, the zones already patched are
    /// patched back to their previous records.
    async fn apply(&self, changes: &[PtrChange]) -> Result<Vec<Change>> {
        check_distinct(changes)?;
        let located = locate_all(&self.zones, changes.iter().map(PtrChange::ip))?;
        let ips: Vec<IpAddr> = changes.iter().map(PtrChange::ip).collect();
        let _guard = self.write_lock.lock().await;
        let before = self.list_ptrs(&ips).await?;
        let mut outcome = Vec::with_capacity(changes.len());
        // zone -> (forward rrsets, rollback rrsets)
        let mut by_zone: BTreeMap<&ZoneName, (Vec<PatchRrSet<'_>>, Vec<PatchRrSet<'_>>)> =
            BTreeMap::new();
        for ((change, at), (_, old)) in changes.iter().zip(&located).zip(&before) {
            let old = old.as_ref().map(Ptr::hostname);
            let c = match (old, change.hostname()) {
                (a, b) if a == b => Change::Unchanged,
                (None, Some(_)) => Change::Created,
                (Some(_), Some(_)) => Change::Replaced,
                (Some(_), None) => Change::Removed,
                (None, None) => Change::Unchanged,
            };
            if c.is_change() {
                let entry = by_zone.entry(at.zone()).or_default();
                entry
                    .0
                    .push(self.rrset(at.record_name(), change.hostname()));
                entry.1.push(self.rrset(at.record_name(), old));
            }
            outcome.push(c);
        }
        let mut done: Vec<(&ZoneName, Vec<PatchRrSet<'_>>)> = Vec::new();
        for (zone, (forward, rollback)) in by_zone {
            if let Err(err) = self.patch_zone(zone, forward).await {
                for (zone, rollback) in done.into_iter().rev() {
                    if let Err(e) = self.patch_zone(zone, rollback).await {
                        tracing::error!(provider = PROVIDER, %zone, error = %e,
                            "rollback of a failed batch failed");
                    }
                }
                return Err(err);
            }
            done.push((zone, rollback));
        }
        Ok(outcome)
    }

    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        let located = locate_all(&self.zones, ips.iter().copied())?;
        // One GET per zone.
        let by_zone = per_zone(&located, |zone| self.fetch(zone, None)).await?;
        ips.iter()
            .zip(&located)
            .map(|(&ip, at)| {
                let rrsets = by_zone.get(at.zone()).map(Vec::as_slice).unwrap_or(&[]);
                Ok((ip, Self::ptr_of(rrsets, at.record_name())?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_escape_slash() {
        let z: ZoneName = "0/26.2.0.192.in-addr.arpa.".parse().unwrap();
        assert_eq!(zone_id(&z), "0=2F26.2.0.192.in-addr.arpa.");
    }
}
