//! The [`Client`], its builder, the transport and the retry policy.

use crate::auth::{
    Auth, AuthState, Credentials, DEFAULT_TICKET_RENEW_AFTER, SecondFactor, TICKET_LIFETIME,
    Ticket, TicketAnswer,
};
use crate::error::{Error, Result, is_retryable_status};
use crate::observe::{Exchange, FailureKind, Outcome, RequestObserver};
use crate::request::{self, Method, Request};
use crate::tls::{self, Fingerprint, PinMismatchSlot, Tls};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Default PVE API port.
pub const DEFAULT_PORT: u16 = 8006;

/// How much randomness is added to each retry delay, so that many clients hitting the same
/// overloaded node do not retry in lockstep.
///
/// With `d` = [`RetryPolicy::backoff`]`(n)` (the exponential delay, already capped at the
/// maximum), the delay actually waited before retry `n` is:
///
/// - [`Jitter::None`]: exactly `d`;
/// - [`Jitter::Full`]: uniformly in `[0, d]`;
/// - [`Jitter::Equal`] (the default): uniformly in `[d/2, d]`.
///
/// Jitter never makes a delay longer than `d`, so the maximum backoff stays a hard bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: the plain exponential delay.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`.
    #[default]
    Equal,
}

/// Bounded exponential backoff with jitter for idempotent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    jitter: Jitter,
    jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            jitter: Jitter::default(),
            jitter_seed: None,
        }
    }
}

impl RetryPolicy {
    /// `max_retries` extra attempts, waiting up to `initial`, `2*initial`, ... capped at `max`,
    /// with [`Jitter::Equal`] (see [`with_jitter`](Self::with_jitter)).
    pub fn new(max_retries: u32, initial: Duration, max: Duration) -> Self {
        RetryPolicy {
            max_retries,
            initial_backoff: initial,
            max_backoff: max.max(initial),
            jitter: Jitter::default(),
            jitter_seed: None,
        }
    }

    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy::new(0, Duration::ZERO, Duration::ZERO)
    }

    /// Use this jitter mode.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seed the client's jitter generator (for reproducible delays in tests). Without a seed
    /// every client seeds itself randomly.
    pub fn with_jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The jitter mode.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Number of retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Exponential delay before retry number `n` (0-based), capped at the maximum: the upper
    /// bound of the jittered delay.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The delay actually waited before retry `n`, given a uniformly random `random` (the client
    /// draws it from its generator). Always within the bounds documented on [`Jitter`].
    pub fn jittered_backoff(&self, n: u32, random: u64) -> Duration {
        let d = self.backoff(n);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Uniform in [0, span] without modulo bias worth caring about.
        let pick = |span: u64| ((u128::from(random) * (u128::from(span) + 1)) >> 64) as u64;
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => Duration::from_nanos(pick(nanos)),
            Jitter::Equal => {
                let half = nanos / 2;
                Duration::from_nanos(nanos - half + pick(half))
            }
        }
    }
}

/// splitmix64: a tiny, well-mixed generator; good enough to spread retry delays.
#[derive(Debug)]
struct JitterRng(std::sync::atomic::AtomicU64);

impl JitterRng {
    fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.finish()
        });
        JitterRng(std::sync::atomic::AtomicU64::new(seed))
    }

    fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Builder for [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    target: String,
    auth: Option<Auth>,
    tls: Tls,
    pin: Option<Fingerprint>,
    connect_timeout: Duration,
    timeout: Duration,
    max_concurrent: usize,
    retry: RetryPolicy,
    ticket_renew_after: Duration,
    task_poll_interval: Duration,
    task_timeout: Duration,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl ClientBuilder {
    /// Tell `observer` about every HTTP exchange (method, path template, status or failure
    /// kind, elapsed time); see [`observe`](crate::observe). Clones of the client share it.
    pub fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Credentials (required).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Certificate verification mode (default: system roots).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Pin the leaf certificate's SHA-256 fingerprint. Checked in every TLS mode: a mismatch
    /// fails even when the chain is valid. Accepts `AA:BB:...` or plain hex.
    pub fn pin_fingerprint(mut self, fingerprint: &str) -> Result<Self> {
        self.pin = Some(fingerprint.parse()?);
        Ok(self)
    }

    /// TCP/TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Whole-request timeout (default 60 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// At most this many requests in flight from this client and its clones (default 8).
    pub fn max_concurrent_requests(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Retry policy for idempotent requests.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Renew the login ticket when it is older than this (default 90 min; tickets live 2 h).
    pub fn ticket_renew_after(mut self, d: Duration) -> Self {
        self.ticket_renew_after = d;
        self
    }

    /// Default interval between task status polls (default 1 s).
    pub fn task_poll_interval(mut self, d: Duration) -> Self {
        self.task_poll_interval = d;
        self
    }

    /// Default maximum time to wait for a task (default 1 h).
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = d;
        self
    }

    fn base_url(&self) -> Result<String> {
        let t = self.target.trim().trim_end_matches('/');
        let with_scheme = if t.contains("://") {
            t.to_owned()
        } else {
            format!("https://{t}")
        };
        let mut url = url::Url::parse(&with_scheme)
            .map_err(|e| Error::Config(format!("bad host `{}`: {e}", self.target)))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(Error::Config(format!("bad host `{}`", self.target)));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(Error::Config(
                "host must not carry credentials or a query".into(),
            ));
        }
        // `url` hides a port equal to the scheme default (443), so look at the text itself.
        let authority = with_scheme
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        let explicit_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains('[') || h.ends_with(']'))
        });
        if !explicit_port && url.scheme() == "https" {
            let _ = url.set_port(Some(DEFAULT_PORT));
        }
        url.set_path("/api2/json");
        Ok(url.as_str().trim_end_matches('/').to_owned())
    }

    /// Build the client. Fails on an unusable configuration; sends nothing.
    pub fn build(self) -> Result<Client> {
        let base = self.base_url()?;
        let auth = self
            .auth
            .clone()
            .ok_or_else(|| Error::Config("no credentials given".into()))?;
        let slot = Arc::new(PinMismatchSlot::default());
        let tls_config = tls::client_config(&self.tls, self.pin, slot.clone())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config)
            // Never follow redirects: the credentials must not reach another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(concat!("proxmox-api-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        let base_parsed = url::Url::parse(&base).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                host: base_parsed.host_str().unwrap_or_default().to_owned(),
                port: base_parsed.port_or_known_default().unwrap_or(DEFAULT_PORT),
                base,
                auth: AuthState::new(auth, self.ticket_renew_after)?,
                limit: Semaphore::new(self.max_concurrent),
                retry: self.retry,
                jitter_rng: JitterRng::new(self.retry.jitter_seed),
                pin_slot: slot,
                task_poll_interval: self.task_poll_interval,
                task_timeout: self.task_timeout,
                observer: self.observer,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    host: String,
    port: u16,
    auth: AuthState,
    limit: Semaphore,
    retry: RetryPolicy,
    jitter_rng: JitterRng,
    pin_slot: Arc<PinMismatchSlot>,
    task_poll_interval: Duration,
    task_timeout: Duration,
    observer: Option<Arc<dyn RequestObserver>>,
}

/// A client for one PVE cluster (or node). Cheap to clone; clones share the connection pool,
/// the login ticket and the concurrency limit.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    message: Option<String>,
    #[serde(default)]
    errors: Option<BTreeMap<String, serde_json::Value>>,
}

impl Client {
    /// Start building a client for `host` (`pve.example.com`, `pve.example.com:8006` or a full
    /// `https://` URL; port 8006 by default).
    pub fn builder(host: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            target: host.into(),
            auth: None,
            tls: Tls::default(),
            pin: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_concurrent: 8,
            retry: RetryPolicy::default(),
            ticket_renew_after: DEFAULT_TICKET_RENEW_AFTER,
            task_poll_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(3600),
            observer: None,
        }
    }

    /// API base URL (`https://host:8006/api2/json`).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Host name the client talks to.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Port the client talks to.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    pub(crate) fn task_defaults(&self) -> (Duration, Duration) {
        (self.inner.task_poll_interval, self.inner.task_timeout)
    }

    /// Untyped GET of `path` (below `/api2/json`, e.g. `/nodes/pve/qemu/100/agent/info`),
    /// decoding the `data` field. Prefer typed methods; this is the escape hatch.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        self.raw(Method::Get, path, query, true).await
    }

    /// Untyped POST with form parameters. Never retried.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<T> {
        self.raw(Method::Post, path, params, false).await
    }

    /// Untyped PUT with form parameters. Never retried.
    pub async fn put<T: DeserializeOwned>(&self, path: &str, params: &[(&str, &str)]) -> Result<T> {
        self.raw(Method::Put, path, params, false).await
    }

    /// Untyped DELETE with query parameters. Never retried.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<T> {
        self.raw(Method::Delete, path, params, false).await
    }

    async fn raw<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
        idempotent: bool,
    ) -> Result<T> {
        if !path.starts_with('/')
            || path.contains("..")
            || path.contains(['?', '#'])
            || path.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(Error::invalid(
                "path",
                path,
                "must be an absolute API path without `..`, query or spaces",
            ));
        }
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (status, bytes) = self
            .execute(method, path, path, &params, idempotent)
            .await?;
        decode(method.as_str(), path, status, &bytes)
    }

    /// Send a typed request and decode its `data`.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        let (status, bytes) = self
            .execute(
                req.endpoint.method,
                req.endpoint.path,
                &req.path,
                &req.params,
                req.endpoint.idempotent,
            )
            .await?;
        decode(req.endpoint.method.as_str(), &req.path, status, &bytes)
    }

    /// Send a typed request whose answer carries nothing of use (PVE's `null` data).
    pub(crate) async fn call_unit(&self, req: Request) -> Result<()> {
        let _: serde_json::Value = self.call(req).await?;
        Ok(())
    }

    /// Send a typed request that starts a task, and return a handle on the task.
    pub(crate) async fn call_task(&self, req: Request) -> Result<crate::task::TaskHandle> {
        let upid: crate::types::Upid = self.call(req).await?;
        Ok(self.task(upid))
    }

    async fn credentials(&self) -> Result<Credentials> {
        match &self.inner.auth {
            AuthState::Token { header } => Ok(Credentials::Token(header.clone())),
            AuthState::Ticket {
                userid,
                password,
                second_factor,
                renew_after,
                current,
                login,
            } => {
                if let Some(t) = current.read().await.as_ref()
                    && crate::auth::fresh(t, *renew_after)
                {
                    return Ok(Credentials::Ticket(t.clone()));
                }
                // Single flight: whoever holds the lock logs in; the others then see the new ticket.
                let _guard = login.lock().await;
                let old = current.read().await.clone();
                if let Some(t) = &old
                    && crate::auth::fresh(t, *renew_after)
                {
                    return Ok(Credentials::Ticket(t.clone()));
                }
                let renewed = match &old {
                    Some(t) if t.obtained.elapsed() < TICKET_LIFETIME => {
                        tracing::debug!(%userid, "renewing login ticket");
                        // A valid full ticket as the password renews it without a second
                        // factor (create_ticket_do in pve-access-control's
                        // PVE/API2/AccessControl.pm verifies the ticket first).
                        self.login(userid.as_str(), &t.ticket, None).await.ok()
                    }
                    _ => None,
                };
                let ticket = match renewed {
                    Some(t) => t,
                    None => {
                        tracing::debug!(%userid, "logging in");
                        self.login(userid.as_str(), password, second_factor.as_ref())
                            .await?
                    }
                };
                *current.write().await = Some(ticket.clone());
                Ok(Credentials::Ticket(ticket))
            }
        }
    }

    async fn invalidate_ticket(&self, used: &Credentials) {
        if let (AuthState::Ticket { current, .. }, Credentials::Ticket(used)) =
            (&self.inner.auth, used)
        {
            let mut g = current.write().await;
            if g.as_ref().is_some_and(|t| t.obtained == used.obtained) {
                *g = None;
            }
        }
    }

    /// `POST /access/ticket`, answering PVE's second-factor challenge when it asks for one.
    ///
    /// FACTS (pve-access-control, PVE/API2/AccessControl.pm, `create_ticket_do`): when the
    /// user has a second factor, the first answer carries `NeedTFA: 1` and a ticket whose
    /// data is `!tfa!<challenge>`; that half ticket grants nothing. The second request sends
    /// the same `username`, that ticket as `tfa-challenge` and the response as `password`,
    /// formatted `<type>:<value>` (`totp:123456`; parsed by proxmox-tfa, called through
    /// `authenticate_2nd_new` in PVE/AccessControl.pm). `otp` must not be sent together with
    /// `tfa-challenge`. A wrong code is HTTP 401 `authentication failure`. `tfa-challenge`
    /// exists since PVE 7.1; before PVE 9 the challenge flow needs `new-format=1` (the
    /// parameter is now ignored and assumed 1), which PVE 7.0 and older reject, so it is only
    /// sent when a second factor is configured.
    async fn login(
        &self,
        userid: &str,
        password: &SecretString,
        second_factor: Option<&SecondFactor>,
    ) -> Result<Ticket> {
        let mut form: Vec<(&str, &str)> =
            vec![("username", userid), ("password", password.expose_secret())];
        if second_factor.is_some() {
            form.push(("new-format", "1"));
        }
        let answer = self.ticket_request(&form).await?;
        if !answer.needs_tfa() {
            return Ticket::from_answer(answer);
        }
        let Some(factor) = second_factor else {
            return Err(Error::Login(
                "the server asks for a second factor (NeedTFA) but none is configured".into(),
            ));
        };
        let challenge = answer.ticket.ok_or_else(|| {
            Error::Login("the second-factor challenge answer carries no ticket".into())
        })?;
        let response = factor.response(std::time::SystemTime::now())?;
        let form = [
            ("username", userid),
            ("tfa-challenge", challenge.expose_secret()),
            ("password", response.expose_secret()),
        ];
        let answer = self.ticket_request(&form).await.map_err(|e| match e {
            Error::Login(m) => Error::Login(format!("second factor rejected: {m}")),
            other => other,
        })?;
        if answer.needs_tfa() {
            return Err(Error::Login(
                "the server asked for a second factor again after the response".into(),
            ));
        }
        Ticket::from_answer(answer)
    }

    async fn ticket_request(&self, form: &[(&str, &str)]) -> Result<TicketAnswer> {
        let endpoint = &request::ACCESS_TICKET;
        let req = Request::new(endpoint, &[]);
        let url = format!("{}{}", self.inner.base, req.path);
        let _permit = self
            .inner
            .limit
            .acquire()
            .await
            .map_err(|_| Error::Config("client closed".into()))?;
        let span = tracing::debug_span!(
            "pve_request",
            method = "POST",
            path = endpoint.path,
            status = tracing::field::Empty,
            attempt = 0u32,
        );
        let started = std::time::Instant::now();
        let sent = self
            .inner
            .http
            .post(url)
            .form(form)
            .send()
            .instrument(span.clone())
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(e);
                self.observe(
                    Method::Post,
                    endpoint.path,
                    &req.path,
                    Outcome::Failed(failure_kind(&err)),
                    started,
                    0,
                );
                return Err(err);
            }
        };
        let status = resp.status();
        span.record("status", status.as_u16());
        self.observe(
            Method::Post,
            endpoint.path,
            &req.path,
            Outcome::Status(status.as_u16()),
            started,
            0,
        );
        if !status.is_success() {
            let err = api_error(Method::Post, &req.path, resp).await;
            return Err(match err {
                Error::Api {
                    status, message, ..
                } => Error::Login(format!("HTTP {status}: {message}")),
                other => other,
            });
        }
        let bytes = resp.bytes().await.map_err(Error::Transport)?;
        decode(Method::Post.as_str(), &req.path, status.as_u16(), &bytes)
    }

    fn observe(
        &self,
        method: Method,
        template: &str,
        path: &str,
        outcome: Outcome,
        started: std::time::Instant,
        attempt: u32,
    ) {
        if let Some(o) = &self.inner.observer {
            o.on_exchange(&Exchange {
                method: method.as_str(),
                template,
                path,
                outcome,
                elapsed: started.elapsed(),
                attempt,
            });
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> Error {
        match self.inner.pin_slot.take() {
            Some((expected, actual)) => Error::FingerprintMismatch { expected, actual },
            None => Error::Transport(e),
        }
    }

    /// Send one request (with retries for idempotent ones) and return the status and body of
    /// a successful answer.
    pub(crate) async fn execute(
        &self,
        method: Method,
        template: &str,
        path: &str,
        params: &[(String, String)],
        idempotent: bool,
    ) -> Result<(u16, bytes::Bytes)> {
        let url = format!("{}{}", self.inner.base, path);
        let retry = self.inner.retry;
        let mut attempt: u32 = 0;
        let mut auth_retried = false;
        loop {
            let creds = self.credentials().await?;
            let span = tracing::debug_span!(
                "pve_request",
                method = method.as_str(),
                path = template,
                status = tracing::field::Empty,
                attempt,
            );
            let result = async {
                let _permit = self
                    .inner
                    .limit
                    .acquire()
                    .await
                    .map_err(|_| Error::Config("client closed".into()))?;
                let mut rb = self.inner.http.request(method.to_http(), &url);
                rb = match &creds {
                    Credentials::Token(h) => rb.header(http::header::AUTHORIZATION, h.clone()),
                    Credentials::Ticket(t) => {
                        let cookie = SecretString::from(format!(
                            "PVEAuthCookie={}",
                            t.ticket.expose_secret()
                        ));
                        let rb = rb.header(http::header::COOKIE, sensitive(&cookie)?);
                        if method == Method::Get {
                            rb
                        } else {
                            rb.header("CSRFPreventionToken", sensitive(&t.csrf)?)
                        }
                    }
                };
                if !params.is_empty() {
                    rb = if method.params_in_query() {
                        rb.query(params)
                    } else {
                        rb.form(params)
                    };
                }
                let started = std::time::Instant::now();
                match rb.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        tracing::Span::current().record("status", status.as_u16());
                        self.observe(
                            method,
                            template,
                            path,
                            Outcome::Status(status.as_u16()),
                            started,
                            attempt,
                        );
                        if status.is_success() {
                            resp.bytes()
                                .await
                                .map(|b| (status.as_u16(), b))
                                .map_err(Error::Transport)
                        } else if status.is_redirection() {
                            let location = resp
                                .headers()
                                .get(http::header::LOCATION)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            Err(Error::Redirect {
                                status: status.as_u16(),
                                location,
                            })
                        } else {
                            Err(api_error(method, path, resp).await)
                        }
                    }
                    Err(e) => {
                        let err = self.transport_error(e);
                        self.observe(
                            method,
                            template,
                            path,
                            Outcome::Failed(failure_kind(&err)),
                            started,
                            attempt,
                        );
                        Err(err)
                    }
                }
            }
            .instrument(span)
            .await;
            match result {
                Ok(b) => return Ok(b),
                Err(e @ Error::Redirect { .. }) => return Err(e),
                Err(Error::Api { status: 401, .. })
                    if !auth_retried && matches!(creds, Credentials::Ticket(_)) =>
                {
                    // The ticket may have been revoked or the cluster key rotated: log in again once.
                    auth_retried = true;
                    self.invalidate_ticket(&creds).await;
                }
                Err(e) if idempotent && attempt < retry.max_retries() && retryable(&e) => {
                    let wait = retry.jittered_backoff(attempt, self.inner.jitter_rng.next());
                    tracing::debug!(%path, attempt, ?wait, error = %e, "retrying idempotent request");
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn failure_kind(e: &Error) -> FailureKind {
    match e {
        Error::FingerprintMismatch { .. } => FailureKind::FingerprintMismatch,
        Error::Transport(t) if t.is_timeout() => FailureKind::Timeout,
        Error::Transport(t) if t.is_connect() => FailureKind::Connect,
        _ => FailureKind::Other,
    }
}

fn retryable(e: &Error) -> bool {
    match e {
        Error::Api { status, .. } => is_retryable_status(*status),
        Error::Transport(t) => t.is_connect() || t.is_timeout(),
        _ => false,
    }
}

fn sensitive(s: &SecretString) -> Result<http::HeaderValue> {
    let mut v = http::HeaderValue::from_str(s.expose_secret()).map_err(|_| {
        Error::Config("credential contains characters not allowed in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Decode a PVE answer body (`{"data": ...}`) into `T`, as every typed call does. Useful for
/// recorded answers and benchmarks. A failure is [`Error::Decode`] naming the field path, or
/// [`Error::InvalidBody`] for an empty, non-JSON or `data`-less body.
pub fn decode_response<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode("", "(response)", 200, bytes)
}

pub(crate) fn decode<T: DeserializeOwned>(
    method: &str,
    path: &str,
    status: u16,
    bytes: &[u8],
) -> Result<T> {
    // The fast path decodes without tracking where it is; only a failure is decoded a second
    // time with path tracking, to name the field.
    if let Ok(env) = serde_json::from_slice::<Envelope<T>>(bytes) {
        return Ok(env.data);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, Envelope<T>>(&mut de) {
        Ok(_) => match de.end() {
            // Trailing garbage after a complete answer.
            Err(source) => Err(Error::Decode {
                method: method.to_owned(),
                path: path.to_owned(),
                field: ".".into(),
                source,
            }),
            // Unreachable in practice (the same input failed above); report it plainly.
            Ok(()) => Err(Error::InvalidBody {
                method: method.to_owned(),
                path: path.to_owned(),
                status,
                reason: "an answer that decodes only on a second try".into(),
            }),
        },
        Err(err) => Err(classify_decode_failure(method, path, status, bytes, err)),
    }
}

/// Only on the failure path: tell "not a PVE answer at all" from "does not fit the type".
fn classify_decode_failure(
    method: &str,
    path: &str,
    status: u16,
    bytes: &[u8],
    err: serde_path_to_error::Error<serde_json::Error>,
) -> Error {
    let invalid = |reason: String| Error::InvalidBody {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        reason,
    };
    let text = bytes.trim_ascii();
    match text.first() {
        None => return invalid("an empty body".into()),
        Some(b'<') => {
            return invalid(format!(
                "an HTML or XML page instead of JSON (a reverse proxy's error page?): `{}`",
                snippet(text)
            ));
        }
        Some(b'{' | b'[') => {}
        Some(_) => return invalid(format!("a non-JSON body: `{}`", snippet(text))),
    }
    let field = err.path().to_string();
    let source = err.into_inner();
    if field == "." && source.is_data() && source.to_string().starts_with("missing field `data`") {
        return invalid("JSON without a `data` member".into());
    }
    Error::Decode {
        method: method.to_owned(),
        path: path.to_owned(),
        field,
        source,
    }
}

/// The start of a body, printable, for error messages.
fn snippet(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

async fn api_error(method: Method, path: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let reason = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .and_then(|r| std::str::from_utf8(r.as_bytes()).ok().map(str::to_owned))
        .or_else(|| status.canonical_reason().map(str::to_owned))
        .unwrap_or_default();
    let body = resp.bytes().await.unwrap_or_default();
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    let errors: BTreeMap<String, String> = parsed
        .errors
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let s = crate::de::value_to_string(&v).unwrap_or_default();
            (k, s.trim().to_owned())
        })
        .collect();
    let message = parsed
        .message
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .or_else(|| {
            // Some answers are plain text.
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            if text.starts_with('<') {
                // A reverse proxy's error page: its markup is noise, the status says it all.
                return Some(format!(
                    "{} (an HTML page, not a PVE answer: a reverse proxy in between?)",
                    if reason.is_empty() { "error" } else { &reason }
                ));
            }
            (!text.is_empty() && !text.starts_with('{')).then(|| text.chars().take(500).collect())
        })
        .unwrap_or(reason);
    Error::Api {
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        status: status.as_u16(),
        message,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::new(10, Duration::from_millis(10), Duration::from_millis(50));
        assert_eq!(p.backoff(0), Duration::from_millis(10));
        assert_eq!(p.backoff(1), Duration::from_millis(20));
        assert_eq!(p.backoff(2), Duration::from_millis(40));
        assert_eq!(p.backoff(3), Duration::from_millis(50));
        assert_eq!(p.backoff(40), Duration::from_millis(50));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let base = RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(base.jitter(), Jitter::Equal, "jitter is on by default");
        let rng = JitterRng::new(Some(42));
        for n in 0..12 {
            let d = base.backoff(n);
            // Extremes of the random input hit the ends of the window exactly.
            let equal = base.with_jitter(Jitter::Equal);
            assert_eq!(equal.jittered_backoff(n, u64::MAX), d);
            assert_eq!(equal.jittered_backoff(n, 0), d - d / 2);
            let full = base.with_jitter(Jitter::Full);
            assert_eq!(full.jittered_backoff(n, 0), Duration::ZERO);
            assert_eq!(full.jittered_backoff(n, u64::MAX), d);
            assert_eq!(base.with_jitter(Jitter::None).jittered_backoff(n, 7), d);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let r = rng.next();
                let e = equal.jittered_backoff(n, r);
                assert!(
                    e >= d / 2 && e <= d,
                    "equal jitter {e:?} outside [{:?}, {d:?}]",
                    d / 2
                );
                let f = full.jittered_backoff(n, r);
                assert!(f <= d, "full jitter {f:?} above {d:?}");
                seen.insert(e);
            }
            assert!(
                seen.len() > 100,
                "jitter barely varies: {} values",
                seen.len()
            );
        }
    }

    #[test]
    fn jitter_seed_makes_delays_reproducible() {
        let (a, b) = (JitterRng::new(Some(7)), JitterRng::new(Some(7)));
        let seq_a: Vec<u64> = (0..8).map(|_| a.next()).collect();
        let seq_b: Vec<u64> = (0..8).map(|_| b.next()).collect();
        assert_eq!(seq_a, seq_b);
        let c = JitterRng::new(Some(8));
        assert_ne!(seq_a, (0..8).map(|_| c.next()).collect::<Vec<_>>());
    }

    #[test]
    fn base_urls() {
        let b = |h: &str| Client::builder(h).base_url();
        assert_eq!(
            b("pve.example.com").unwrap(),
            "https://pve.example.com:8006/api2/json"
        );
        assert_eq!(
            b("pve.example.com:443").unwrap(),
            "https://pve.example.com/api2/json"
        );
        assert_eq!(
            b("http://127.0.0.1:9999/").unwrap(),
            "http://127.0.0.1:9999/api2/json"
        );
        assert!(b("ftp://x").is_err());
        assert!(b("https://user:pw@x").is_err());
    }
}
