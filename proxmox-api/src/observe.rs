//! Hooks for metrics: a [`RequestObserver`] set on the [`ClientBuilder`](crate::ClientBuilder)
//! is told about every HTTP exchange the client makes.
//!
//! Besides the observer, every exchange runs inside a `tracing` span named `pve_request`
//! (fields `method`, `path` — the endpoint's template such as
//! `/nodes/{node}/qemu/{vmid}/status/current` —, `status` and `attempt`), and every
//! [`TaskHandle::wait`](crate::TaskHandle::wait) inside a span named `pve_task_wait`
//! (fields `upid`, `node`, `worker_type`).
//!
//! ```
//! use pve_vps_api::observe::{Exchange, Outcome, RequestObserver};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! /// Counts failed exchanges; a real one would feed Prometheus counters and histograms.
//! #[derive(Debug, Default)]
//! struct Failures(AtomicU64);
//!
//! impl RequestObserver for Failures {
//!     fn on_exchange(&self, e: &Exchange<'_>) {
//!         let failed = match e.outcome {
//!             Outcome::Status(s) => s >= 400,
//!             Outcome::Failed(_) => true,
//!         };
//!         if failed {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!         // e.method, e.template ("/nodes/{node}/qemu/{vmid}/status/current"),
//!         // e.elapsed are there for labels and latency histograms.
//!     }
//! }
//!
//! let failures = Arc::new(Failures::default());
//! let client = pve_vps_api::Client::builder("pve.example.com")
//!     .auth(pve_vps_api::Auth::api_token("metrics@pve!portal", "secret")?)
//!     .observer(failures.clone())
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), pve_vps_api::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

/// Receives one call per HTTP exchange (each retry and each login is its own exchange).
///
/// Called on the request's task right after the answer's status is known (or the exchange
/// failed), before the body is decoded; keep it cheap and non-blocking.
pub trait RequestObserver: Send + Sync + fmt::Debug {
    /// One exchange finished.
    fn on_exchange(&self, exchange: &Exchange<'_>);
}

/// What one HTTP exchange was and how it ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Exchange<'a> {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The endpoint's path template (`/nodes/{node}/qemu/{vmid}/config`) for typed calls; the
    /// concrete path for the untyped [`Client::get`](crate::Client::get) family. Low
    /// cardinality, so fit for metric labels.
    pub template: &'a str,
    /// The concrete path that was requested (`/nodes/pve1/qemu/100/config`).
    pub path: &'a str,
    /// The HTTP status, or why there was none.
    pub outcome: Outcome,
    /// Time from sending the request to knowing the status (or the failure).
    pub elapsed: Duration,
    /// 0 for the first attempt, then 1, 2, ... for retries of the same call.
    pub attempt: u32,
}

/// End of an exchange: a status or no status, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No HTTP status: the exchange failed at the transport level.
    Failed(FailureKind),
}

/// Why an exchange ended without an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// TCP connect (or DNS) failed.
    Connect,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The pinned certificate fingerprint did not match.
    FingerprintMismatch,
    /// Anything else (TLS handshake, protocol error, body cut off).
    Other,
}

impl FailureKind {
    /// A short lowercase name for labels (`connect`, `timeout`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::FingerprintMismatch => "fingerprint_mismatch",
            FailureKind::Other => "other",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
