//! Ticket fallback: ask the hosting company's staff through a WHMCS support ticket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::api::{Change, Ptr, PtrChange, ReverseDns, check_distinct};
use crate::error::{Error, Result};
use crate::hostname::Hostname;
use crate::http::{self, RetryPolicy};
use crate::ptr::{canonical_ip, ptr_name};
use crate::zone::Zones;

const PROVIDER: &str = "whmcs";

/// Where tickets go: department, client and the VM's service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketTarget {
    /// Support department id (`deptid`).
    pub department_id: u64,
    /// Client id (`clientid`).
    pub client_id: u64,
    /// The VM's service id (`serviceid`).
    pub service_id: u64,
}

/// One change requested by ticket: `hostname` `None` asks to remove the PTR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRequest {
    ip: IpAddr,
    hostname: Option<Hostname>,
    ticket: String,
}

impl TicketRequest {
    /// A request known from earlier (to restore state after a restart).
    pub fn new(ip: IpAddr, hostname: Option<Hostname>, ticket: impl Into<String>) -> Self {
        Self {
            ip: canonical_ip(ip),
            hostname,
            ticket: ticket.into(),
        }
    }
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
    /// The requested hostname; `None` for a removal.
    pub fn hostname(&self) -> Option<&Hostname> {
        self.hostname.as_ref()
    }
    /// The WHMCS ticket number (`tid`).
    pub fn ticket(&self) -> &str {
        &self.ticket
    }
}

/// The ticket subject and message for some changes (pure; what staff will read).
pub fn ticket_text(target: &TicketTarget, changes: &[PtrChange]) -> (String, String) {
    let subject = format!("Reverse DNS request for service #{}", target.service_id);
    let mut lines = String::new();
    for c in changes {
        let ip = canonical_ip(c.ip());
        let wanted = match c.hostname() {
            Some(h) => h.to_fqdn(),
            None => "(remove the PTR record)".to_owned(),
        };
        lines.push_str(&format!(
            "{ip} -> {wanted}    (PTR name {})\n",
            ptr_name(ip)
        ));
    }
    let message = format!(
        "Please update the reverse DNS (PTR) of service #{sid}:\n\n{lines}\n\
         This ticket was opened automatically because this DNS system has no API.",
        sid = target.service_id,
    );
    (subject, message)
}

/// Ticket priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TicketPriority {
    /// Low.
    Low,
    /// Medium (default).
    #[default]
    Medium,
    /// High.
    High,
}

impl TicketPriority {
    fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
        }
    }
}

/// Reverse DNS for hosting companies without a DNS API: each change opens a WHMCS ticket
/// (`OpenTicket`) for staff to carry out.
///
/// Reading returns the last requested value as [`PtrStatus::Pending`](crate::PtrStatus) (or
/// nothing after a requested removal, or when nothing was requested). A request equal to the
/// last one opens no ticket ([`Change::Unchanged`]); the known requests live in this value (and
/// its clones): persist [`WhmcsTicket::requests`] and restore them with
/// [`WhmcsTicket::with_requests`] to keep that across restarts. Removing with nothing known
/// opens a removal ticket, since the real PTR is unknown.
///
/// ```
/// use pve_vps_dns::{TicketTarget, WhmcsTicket};
/// let dns = WhmcsTicket::new(
///     "https://billing.example.com/includes/api.php",
///     "API-IDENTIFIER",
///     "api-secret".to_owned().into(),
///     TicketTarget { department_id: 2, client_id: 17, service_id: 42 },
/// )?;
/// assert!(!format!("{dns:?}").contains("api-secret"));
/// # Ok::<(), pve_vps_dns::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WhmcsTicket {
    url: String,
    identifier: String,
    secret: SecretString,
    target: TicketTarget,
    priority: TicketPriority,
    zones: Option<Zones>,
    retry: RetryPolicy,
    client: reqwest::Client,
    /// Held across the API call, so concurrent identical requests open one ticket.
    requests: Arc<tokio::sync::Mutex<HashMap<IpAddr, TicketRequest>>>,
}

#[derive(Deserialize)]
struct OpenTicketAnswer {
    #[serde(default)]
    result: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    tid: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

fn json_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl WhmcsTicket {
    /// A ticket backend for the WHMCS API at `api_url` (`…/includes/api.php`) with an API
    /// credential `identifier`/`secret`, filing tickets to `target`.
    pub fn new(
        api_url: &str,
        identifier: &str,
        secret: SecretString,
        target: TicketTarget,
    ) -> Result<Self> {
        let parsed = http::parse_url(PROVIDER, "api url", api_url)?;
        Ok(Self {
            url: parsed.to_string(),
            identifier: identifier.to_owned(),
            secret,
            target,
            priority: TicketPriority::default(),
            zones: None,
            retry: RetryPolicy::default(),
            client: http::client(PROVIDER, Duration::from_secs(30))?,
            requests: Arc::default(),
        })
    }

    /// Ticket priority.
    pub fn with_priority(mut self, priority: TicketPriority) -> Self {
        self.priority = priority;
        self
    }

    /// Refuse addresses outside these zones (before any ticket), like the API backends.
    pub fn with_zones(mut self, zones: Zones) -> Self {
        self.zones = Some(zones);
        self
    }

    /// Retry policy (only 429 and connection failures: opening a ticket is not idempotent).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Restore requests known from before (see [`WhmcsTicket::requests`]).
    pub fn with_requests(self, known: impl IntoIterator<Item = TicketRequest>) -> Self {
        let map = known.into_iter().map(|r| (r.ip, r)).collect();
        Self {
            requests: Arc::new(tokio::sync::Mutex::new(map)),
            ..self
        }
    }

    /// The last request per address, to persist.
    pub async fn requests(&self) -> Vec<TicketRequest> {
        let mut all: Vec<_> = self.requests.lock().await.values().cloned().collect();
        all.sort_by_key(|r| r.ip);
        all
    }

    fn check(&self, ip: IpAddr) -> Result<IpAddr> {
        if let Some(zones) = &self.zones {
            zones.locate(ip)?;
        }
        Ok(canonical_ip(ip))
    }

    async fn open_ticket(&self, changes: &[PtrChange]) -> Result<String> {
        let (subject, message) = ticket_text(&self.target, changes);
        let dept = self.target.department_id.to_string();
        let client = self.target.client_id.to_string();
        let service = self.target.service_id.to_string();
        let form = [
            ("action", "OpenTicket"),
            ("identifier", self.identifier.as_str()),
            ("secret", self.secret.expose_secret()),
            ("responsetype", "json"),
            ("deptid", dept.as_str()),
            ("clientid", client.as_str()),
            ("serviceid", service.as_str()),
            ("subject", subject.as_str()),
            ("message", message.as_str()),
            ("priority", self.priority.as_str()),
        ];
        let resp = http::send(PROVIDER, &self.retry, false, || {
            self.client.request(Method::POST, &self.url).form(&form)
        })
        .await?;
        let status = resp.status();
        let body = http::text(PROVIDER, resp).await?;
        let answer: Option<OpenTicketAnswer> = serde_json::from_str(&body).ok();
        match answer {
            Some(a) if a.result == "success" && status.is_success() => {
                let tid = a
                    .tid
                    .as_ref()
                    .or(a.id.as_ref())
                    .map(json_str)
                    .ok_or_else(|| {
                        http::decode(PROVIDER, "OpenTicket succeeded without a ticket id")
                    })?;
                tracing::info!(provider = PROVIDER, ticket = %tid, changes = changes.len(),
                    "reverse DNS ticket opened");
                Ok(tid)
            }
            Some(a) => Err(Error::Provider {
                provider: PROVIDER,
                status: Some(status.as_u16()),
                code: None,
                message: a
                    .message
                    .unwrap_or_else(|| format!("result `{}`", a.result)),
            }),
            None => Err(http::body_error(PROVIDER, status, &body)),
        }
    }

    async fn request(&self, ip: IpAddr, hostname: Option<&Hostname>) -> Result<Change> {
        let ip = self.check(ip)?;
        let mut requests = self.requests.lock().await;
        if requests.get(&ip).map(|r| r.hostname.as_ref()) == Some(hostname) {
            return Ok(Change::Unchanged);
        }
        let change = PtrChange {
            ip,
            hostname: hostname.cloned(),
        };
        let ticket = self.open_ticket(std::slice::from_ref(&change)).await?;
        requests.insert(
            ip,
            TicketRequest::new(ip, hostname.cloned(), ticket.clone()),
        );
        Ok(Change::Requested { reference: ticket })
    }
}

#[async_trait]
impl ReverseDns for WhmcsTicket {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        let ip = self.check(ip)?;
        Ok(self
            .requests
            .lock()
            .await
            .get(&ip)
            .and_then(|r| r.hostname.clone())
            .map(Ptr::pending))
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        self.request(ip, Some(hostname)).await
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        self.request(ip, None).await
    }

    /// One ticket for every change that differs from the last request (none if all equal).
    async fn apply(&self, changes: &[PtrChange]) -> Result<Vec<Change>> {
        check_distinct(changes)?;
        let changes = changes
            .iter()
            .map(|c| {
                Ok(PtrChange {
                    ip: self.check(c.ip())?,
                    hostname: c.hostname().cloned(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut requests = self.requests.lock().await;
        let is_new =
            |c: &PtrChange| requests.get(&c.ip).map(|r| r.hostname.as_ref()) != Some(c.hostname());
        let wanted: Vec<PtrChange> = changes.iter().filter(|c| is_new(c)).cloned().collect();
        if wanted.is_empty() {
            return Ok(vec![Change::Unchanged; changes.len()]);
        }
        let ticket = self.open_ticket(&wanted).await?;
        let outcome = changes
            .iter()
            .map(|c| {
                if is_new(c) {
                    Change::Requested {
                        reference: ticket.clone(),
                    }
                } else {
                    Change::Unchanged
                }
            })
            .collect();
        for c in wanted {
            requests.insert(c.ip, TicketRequest::new(c.ip, c.hostname, ticket.clone()));
        }
        Ok(outcome)
    }
}
