//! Cloudflare API v4 backend.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{Change, Ptr, ReverseDns};
use crate::backends::{locate_all, per_zone};
use crate::error::{Error, Result};
use crate::hostname::Hostname;
use crate::http::{self, RetryPolicy};
use crate::zone::{PtrLocation, ZoneName, Zones};

const PROVIDER: &str = "cloudflare";
/// Cloudflare: "The record already exists." / "An identical record already exists."
const ALREADY_EXISTS: [i64; 2] = [81057, 81058];

/// Reverse DNS through the Cloudflare API v4 (Bearer token).
///
/// Zone ids are looked up by name (`GET /zones?name=`) once and cached, or configured with
/// [`Cloudflare::with_zone_id`]. Record lists are paginated.
///
/// ```
/// use pve_vps_dns::{Cloudflare, Zones};
/// let dns = Cloudflare::new(
///     "cf-token".to_owned().into(),
///     Zones::from_names(["2.0.192.in-addr.arpa."])?,
/// )?
/// .with_zone_id("2.0.192.in-addr.arpa.", "023e105f4ecef8ad9ca31a8372d0c353")?;
/// assert!(!format!("{dns:?}").contains("cf-token"));
/// # Ok::<(), pve_vps_dns::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Cloudflare {
    base: String,
    token: SecretString,
    zones: Zones,
    zone_ids: Arc<Mutex<HashMap<ZoneName, String>>>,
    ttl: u32,
    per_page: u32,
    retry: RetryPolicy,
    client: reqwest::Client,
    /// Serialises this client's read-modify-write cycles so concurrent calls never create
    /// duplicate records.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<CfMessage>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

#[derive(Deserialize)]
struct CfMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    page: u32,
    #[serde(default)]
    total_pages: u32,
}

#[derive(Deserialize)]
struct CfZone {
    id: String,
}

#[derive(Deserialize, Clone)]
struct CfRecord {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
}

#[derive(Serialize)]
struct RecordBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    content: &'a str,
    ttl: u32,
}

struct CfError {
    code: Option<i64>,
    error: Error,
}

impl Cloudflare {
    /// A backend with an API token (`Authorization: Bearer`) for `zones`, against
    /// `https://api.cloudflare.com/client/v4`; TTL 1 (automatic).
    pub fn new(token: SecretString, zones: Zones) -> Result<Self> {
        Ok(Self {
            base: "https://api.cloudflare.com/client/v4".to_owned(),
            token,
            zones,
            zone_ids: Arc::default(),
            ttl: 1,
            per_page: 100,
            retry: RetryPolicy::default(),
            client: http::client(PROVIDER, Duration::from_secs(30))?,
            write_lock: Arc::default(),
        })
    }

    /// Another API base URL (tests, proxies), e.g. `http://127.0.0.1:8080/client/v4`.
    pub fn with_base_url(mut self, url: &str) -> Result<Self> {
        let parsed = http::parse_url(PROVIDER, "base url", url)?;
        self.base = parsed.as_str().trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// Use a known zone id instead of looking the zone up by name.
    pub fn with_zone_id(self, zone: &str, id: impl Into<String>) -> Result<Self> {
        let zone: ZoneName = zone.parse()?;
        self.zone_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(zone, id.into());
        Ok(self)
    }

    /// TTL of the records written (1 means automatic).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Page size of record listings (Cloudflare's default is 100).
    pub fn with_per_page(mut self, per_page: u32) -> Self {
        self.per_page = per_page.max(1);
        self
    }

    /// Retry policy for 429 and 5xx answers.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
    }

    /// Read the envelope; a non-2xx status or `success: false` is an error keeping
    /// Cloudflare's codes and messages.
    async fn envelope<T: DeserializeOwned>(
        resp: Response,
    ) -> std::result::Result<(Option<T>, Option<ResultInfo>), CfError> {
        let status = resp.status();
        let body = http::text(PROVIDER, resp)
            .await
            .map_err(|error| CfError { code: None, error })?;
        match serde_json::from_str::<Envelope<T>>(&body) {
            Ok(env) if env.success && status.is_success() => Ok((env.result, env.result_info)),
            Ok(env) => {
                let code = env.errors.first().map(|e| e.code);
                let message = if env.errors.is_empty() {
                    "request failed without error details".to_owned()
                } else {
                    env.errors
                        .iter()
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                Err(CfError {
                    code,
                    error: Error::Provider {
                        provider: PROVIDER,
                        status: Some(status.as_u16()),
                        code: code.map(|c| c.to_string()),
                        message,
                    },
                })
            }
            Err(e) if status.is_success() => Err(CfError {
                code: None,
                error: http::decode(PROVIDER, e),
            }),
            Err(_) => Err(CfError {
                code: None,
                error: http::body_error(PROVIDER, status, &body),
            }),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        idempotent: bool,
    ) -> std::result::Result<(Option<T>, Option<ResultInfo>), CfError> {
        let resp = http::send(PROVIDER, &self.retry, idempotent, build)
            .await
            .map_err(|error| CfError { code: None, error })?;
        Self::envelope(resp).await
    }

    async fn zone_id(&self, zone: &ZoneName) -> Result<String> {
        if let Some(id) = self
            .zone_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(zone)
        {
            return Ok(id.clone());
        }
        let (zones, _) = self
            .call::<Vec<CfZone>>(
                || {
                    self.request(Method::GET, "/zones")
                        .query(&[("name", zone.without_dot())])
                },
                true,
            )
            .await
            .map_err(|e| e.error)?;
        let id = zones
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|z| z.id)
            .ok_or_else(|| Error::Provider {
                provider: PROVIDER,
                status: None,
                code: None,
                message: format!("zone `{zone}` not found in this account"),
            })?;
        self.zone_ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(zone.clone(), id.clone());
        Ok(id)
    }

    /// All PTR records of a zone, or only those named `name`, across every page.
    async fn records(&self, zone_id: &str, name: Option<&str>) -> Result<Vec<CfRecord>> {
        let path = format!("/zones/{zone_id}/dns_records");
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let per_page = self.per_page.to_string();
            let page_s = page.to_string();
            let (records, info) = self
                .call::<Vec<CfRecord>>(
                    || {
                        let mut q = vec![
                            ("type", "PTR"),
                            ("page", page_s.as_str()),
                            ("per_page", per_page.as_str()),
                        ];
                        if let Some(name) = name {
                            q.push(("name", name));
                        }
                        self.request(Method::GET, &path).query(&q)
                    },
                    true,
                )
                .await
                .map_err(|e| e.error)?;
            out.extend(
                records
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r.kind == "PTR"),
            );
            match info {
                Some(info) if info.total_pages > info.page.max(page) => page += 1,
                _ => return Ok(out),
            }
            if page > 10_000 {
                return Err(http::decode(PROVIDER, "more than 10000 pages of records"));
            }
        }
    }

    fn parse_content(r: &CfRecord) -> Result<Hostname> {
        r.content.parse().map_err(|e| {
            http::decode(
                PROVIDER,
                format!("PTR `{}` has content `{}`: {e}", r.name, r.content),
            )
        })
    }

    async fn named(&self, at: &PtrLocation) -> Result<(String, Vec<CfRecord>)> {
        let zone_id = self.zone_id(at.zone()).await?;
        let name = at.record_name().trim_end_matches('.');
        let records = self
            .records(&zone_id, Some(name))
            .await?
            .into_iter()
            .filter(|r| r.name.trim_end_matches('.').eq_ignore_ascii_case(name))
            .collect();
        Ok((zone_id, records))
    }

    async fn delete(&self, zone_id: &str, record_id: &str) -> Result<()> {
        let path = format!("/zones/{zone_id}/dns_records/{record_id}");
        match self
            .call::<serde_json::Value>(|| self.request(Method::DELETE, &path), true)
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (a concurrent remover): the wanted state.
            Err(e) if e.error.is_not_found() => Ok(()),
            Err(e) => Err(e.error),
        }
    }

    /// The body that writes the PTR `name` -> `content` with this backend's TTL.
    fn ptr_body<'a>(&self, name: &'a str, content: &'a str) -> RecordBody<'a> {
        RecordBody {
            kind: "PTR",
            name,
            content,
            ttl: self.ttl,
        }
    }

    async fn put(&self, zone_id: &str, record_id: &str, name: &str, content: &str) -> Result<()> {
        let path = format!("/zones/{zone_id}/dns_records/{record_id}");
        let body = self.ptr_body(name, content);
        self.call::<serde_json::Value>(|| self.request(Method::PUT, &path).json(&body), true)
            .await
            .map(|_| ())
            .map_err(|e| e.error)
    }
}

#[async_trait]
impl ReverseDns for Cloudflare {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        let at = self.zones.locate(ip)?;
        let (_, records) = self.named(&at).await?;
        records
            .first()
            .map(|r| Self::parse_content(r).map(Ptr::active))
            .transpose()
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        let (zone_id, records) = self.named(&at).await?;
        let name = at.record_name().trim_end_matches('.');
        let content = hostname.as_str();
        let same = |r: &CfRecord| r.content.parse::<Hostname>().ok().as_ref() == Some(hostname);
        let change = match records.split_first() {
            Some((first, [])) if same(first) => return Ok(Change::Unchanged),
            Some((first, rest)) => {
                // One PTR per address: replace the first, drop any extras.
                if !same(first) {
                    self.put(&zone_id, &first.id, name, content).await?;
                }
                for extra in rest {
                    self.delete(&zone_id, &extra.id).await?;
                }
                Change::Replaced
            }
            None => {
                let path = format!("/zones/{zone_id}/dns_records");
                let body = self.ptr_body(name, content);
                // Not idempotent: never retried on 5xx, only on 429.
                match self
                    .call::<serde_json::Value>(
                        || self.request(Method::POST, &path).json(&body),
                        false,
                    )
                    .await
                {
                    Ok(_) => Change::Created,
                    Err(CfError {
                        code: Some(code), ..
                    }) if ALREADY_EXISTS.contains(&code) => {
                        // Created meanwhile by someone else: converge on ours.
                        let (_, records) = self.named(&at).await?;
                        match records.first() {
                            Some(r) if same(r) => Change::Unchanged,
                            Some(r) => {
                                self.put(&zone_id, &r.id, name, content).await?;
                                Change::Replaced
                            }
                            None => {
                                return Err(http::decode(
                                    PROVIDER,
                                    "record reported as existing but not listed",
                                ));
                            }
                        }
                    }
                    Err(e) => return Err(e.error),
                }
            }
        };
        tracing::info!(provider = PROVIDER, %ip, %hostname, %change, "PTR set");
        Ok(change)
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let _guard = self.write_lock.lock().await;
        let (zone_id, records) = self.named(&at).await?;
        if records.is_empty() {
            return Ok(Change::Unchanged);
        }
        for r in &records {
            self.delete(&zone_id, &r.id).await?;
        }
        tracing::info!(provider = PROVIDER, %ip, "PTR removed");
        Ok(Change::Removed)
    }

    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        let located = locate_all(&self.zones, ips.iter().copied())?;
        // One paginated listing of the zone's PTRs per zone.
        let by_zone = per_zone(&located, |zone| async move {
            let zone_id = self.zone_id(zone).await?;
            let mut map = HashMap::new();
            for r in self.records(&zone_id, None).await? {
                map.entry(r.name.trim_end_matches('.').to_ascii_lowercase())
                    .or_insert(r);
            }
            Ok(map)
        })
        .await?;
        ips.iter()
            .zip(&located)
            .map(|(&ip, at)| {
                let name = at.record_name().trim_end_matches('.');
                let ptr = by_zone
                    .get(at.zone())
                    .and_then(|m| m.get(name))
                    .map(|r| Self::parse_content(r).map(Ptr::active))
                    .transpose()?;
                Ok((ip, ptr))
            })
            .collect()
    }
}
