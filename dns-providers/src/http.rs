//! Shared HTTP plumbing: client, bounded retries honouring `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::{Error, Result};

/// How often and how long to retry rate limits (429), connection failures, and server errors
/// (5xx) of idempotent requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 retries, backoff from 250 ms doubling up to 10 s; `Retry-After` is honoured up to 10 s.
    fn default() -> Self {
        Self {
            max_retries: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// `max_retries` retries after the first attempt; exponential backoff from `base_delay`;
    /// no single wait (including a provider's `Retry-After`) longer than `max_delay`.
    pub fn new(max_retries: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_retries,
            base_delay,
            max_delay,
        }
    }

    /// Never retry.
    pub fn none() -> Self {
        Self::new(0, Duration::ZERO, Duration::ZERO)
    }

    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// A reqwest client with rustls (ring provider, native roots), so HTTPS works without a
/// process-wide crypto provider.
pub(crate) fn client(provider: &'static str, timeout: Duration) -> Result<reqwest::Client> {
    let transport = |e: Box<dyn std::error::Error + Send + Sync>| Error::Transport {
        provider,
        source: e,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A bad system certificate should not make every provider unusable.
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| transport(Box::new(e)))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .user_agent(concat!("dns-providers/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport(Box::new(e)))
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// Send the request built by `build`, retrying 429 and connection failures within `policy`,
/// and 5xx answers when the request is `idempotent`. Returns the last response
/// otherwise (the caller maps error statuses).
pub(crate) async fn send(
    provider: &'static str,
    policy: &RetryPolicy,
    idempotent: bool,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response> {
    let mut attempt = 0;
    loop {
        let result = build().send().await;
        let wait = match &result {
            Ok(resp) => {
                let status = resp.status();
                // A 5xx may come after the request took effect: only idempotent requests are
                // repeated then.
                let retryable = status == StatusCode::TOO_MANY_REQUESTS
                    || (idempotent && status.is_server_error());
                if !retryable {
                    return result.map_err(|e| transport(provider, e));
                }
                let after = retry_after(resp);
                if attempt >= policy.max_retries {
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        return Err(Error::RateLimited {
                            provider,
                            retry_after: after,
                        });
                    }
                    return result.map_err(|e| transport(provider, e));
                }
                tracing::debug!(provider, %status, attempt, "retrying");
                policy.delay(attempt, after)
            }
            Err(e) if e.is_connect() && attempt < policy.max_retries => {
                tracing::debug!(provider, attempt, "retrying after connection failure");
                policy.delay(attempt, None)
            }
            Err(_) => {
                return result.map_err(|e| transport(provider, e));
            }
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

pub(crate) fn transport(provider: &'static str, e: reqwest::Error) -> Error {
    Error::Transport {
        provider,
        // Without the URL: it may carry query parameters.
        source: Box::new(e.without_url()),
    }
}

/// Map a non-success response to a provider error keeping its message (JSON `error` /
/// `message` fields or the plain text body).
#[cfg_attr(not(any(feature = "hestia", feature = "powerdns")), allow(dead_code))]
pub(crate) async fn error_from(provider: &'static str, resp: Response) -> Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            ["error", "message"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        }) {
        Some(message) => Error::Provider {
            provider,
            status: Some(status.as_u16()),
            code: None,
            message,
        },
        None => body_error(provider, status, &body),
    }
}

/// The response itself when its status is a success, otherwise its [`error_from`] error.
#[cfg_attr(not(any(feature = "hestia", feature = "powerdns")), allow(dead_code))]
pub(crate) async fn success(provider: &'static str, resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(error_from(provider, resp).await)
    }
}

/// The response body as text; a failure to read it is a transport error.
#[cfg_attr(
    not(any(feature = "cloudflare", feature = "hestia", feature = "whmcs-ticket")),
    allow(dead_code)
)]
pub(crate) async fn text(provider: &'static str, resp: Response) -> Result<String> {
    resp.text().await.map_err(|e| transport(provider, e))
}

/// The start of a body worth quoting in an error: trimmed, at most 500 characters.
pub(crate) fn snippet(body: &str) -> String {
    body.trim().chars().take(500).collect()
}

/// A provider error for an answer with `status` whose body could not be understood: the
/// body's [`snippet`] is the message.
pub(crate) fn body_error(provider: &'static str, status: StatusCode, body: &str) -> Error {
    Error::Provider {
        provider,
        status: Some(status.as_u16()),
        code: None,
        message: snippet(body),
    }
}

/// Parse a configured URL; a bad one is [`Error::Unsupported`] naming `what` it was
/// (e.g. `api url`).
pub(crate) fn parse_url(provider: &'static str, what: &str, url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|e| Error::Unsupported {
        provider,
        what: format!("{what} `{url}`: {e}"),
    })
}

pub(crate) fn decode(provider: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Decode {
        provider,
        message: e.to_string(),
    }
}
