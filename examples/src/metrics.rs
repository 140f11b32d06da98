//! Prometheus metrics of the portal and the scheduler (`prometheus-client`, OpenMetrics text),
//! and the guard of their `/metrics` endpoints: answered to loopback clients, or to anyone with
//! the configured bearer token.
//!
//! What is measured:
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `pve_api_requests_total` | `method`, `endpoint`, `status` | every HTTP exchange with the cluster (`status` is the HTTP status or `connect`/`timeout`/...) |
//! | `pve_api_request_duration_seconds` | `method`, `endpoint` | their latency |
//! | `portal_http_requests_total` | `method`, `route`, `status` | requests to the portal (route templates such as `/s/{vmid}/snapshots`) |
//! | `portal_http_request_duration_seconds` | `method`, `route` | their latency |
//! | `pve_task_duration_seconds` | `kind`, `outcome` | PVE tasks seen to end (from the task's start time in its UPID) |
//! | `operation_duration_seconds` | `kind`, `outcome` | restores and reinstalls the portal ran (the scheduler's resumed ones count in its `resume` phase) |
//! | `scheduler_tick_duration_seconds` | `phase` | each phase of a scheduler round (`backup`, `snapshot_sweep`, `resume`, `round`) |
//! | `scheduler_cluster_tick_duration_seconds` | `cluster`, `phase` | the same, per cluster of the cron binary's fleet |
//! | `scheduler_cluster_problems_total` | `cluster` | problems of the rounds per cluster (0 for a healthy cluster; an offline one counts one per phase and service it could not serve) |
//! | `errors_total` | `source` | failures: `pve_api` (transport failures and 5xx), `cluster` (a page could not be served), `task`, `operation`, `scheduler` |

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pve_vps_api::observe::{Exchange, Outcome, RequestObserver};
use serde::Deserialize;

/// Labels of a cluster API exchange.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    method: &'static str,
    endpoint: String,
    status: String,
}

/// Labels of the cluster API latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiTimeLabels {
    method: &'static str,
    endpoint: String,
}

/// Labels of a portal request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the portal request latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpTimeLabels {
    method: String,
    route: String,
}

/// Labels of a task or operation duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
    outcome: &'static str,
}

/// Labels of a scheduler phase.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// Labels of a scheduler phase in one cluster.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterPhaseLabels {
    cluster: String,
    phase: &'static str,
}

/// Labels of a per-cluster count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

/// Labels of an error count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 1 ms to about 33 s (API calls and page requests).
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Buckets from 0.5 s to about 9 hours (tasks, operations, scheduler phases).
fn long() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 17))
}

/// The metrics of one process (the portal or the scheduler); shared behind an `Arc`, cheap
/// to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_requests: Family<ApiLabels, Counter>,
    api_latency: Histograms<ApiTimeLabels>,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Histograms<HttpTimeLabels>,
    task_duration: Histograms<KindLabels>,
    operation_duration: Histograms<KindLabels>,
    tick_duration: Histograms<PhaseLabels>,
    cluster_tick_duration: Histograms<ClusterPhaseLabels>,
    cluster_problems: Family<ClusterLabels, Counter>,
    errors: Family<SourceLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, all at zero.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            api_requests: Family::default(),
            api_latency: Family::new_with_constructor(latency),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency),
            task_duration: Family::new_with_constructor(long),
            operation_duration: Family::new_with_constructor(long),
            tick_duration: Family::new_with_constructor(long),
            cluster_tick_duration: Family::new_with_constructor(long),
            cluster_problems: Family::default(),
            errors: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "pve_api_requests",
            "HTTP exchanges with the Proxmox VE API, by method, endpoint template and status",
            m.api_requests.clone(),
        );
        r.register(
            "pve_api_request_duration_seconds",
            "Latency of the exchanges with the Proxmox VE API",
            m.api_latency.clone(),
        );
        r.register(
            "portal_http_requests",
            "Requests to the portal, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "portal_http_request_duration_seconds",
            "Latency of the portal's answers",
            m.http_latency.clone(),
        );
        r.register(
            "pve_task_duration_seconds",
            "Durations of Proxmox VE tasks seen to end, by worker type and outcome",
            m.task_duration.clone(),
        );
        r.register(
            "operation_duration_seconds",
            "Durations of multi-step operations (restore, reinstall), by kind and outcome",
            m.operation_duration.clone(),
        );
        r.register(
            "scheduler_tick_duration_seconds",
            "Durations of the scheduler's phases and whole rounds",
            m.tick_duration.clone(),
        );
        r.register(
            "scheduler_cluster_tick_duration_seconds",
            "Durations of the scheduler's phases and rounds in each cluster",
            m.cluster_tick_duration.clone(),
        );
        r.register(
            "scheduler_cluster_problems",
            "Problems of the scheduler's rounds in each cluster (an offline cluster counts \
             one per phase and service it could not serve)",
            m.cluster_problems.clone(),
        );
        r.register(
            "errors",
            "Failures, by where they happened",
            m.errors.clone(),
        );
        m
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One HTTP exchange with the cluster: `status` is the HTTP status or the transport
    /// failure's name; `failed` counts it under `errors_total{source="pve_api"}` too.
    pub fn api_exchange(
        &self,
        method: &'static str,
        endpoint: &str,
        status: String,
        failed: bool,
        elapsed: Duration,
    ) {
        self.api_requests
            .get_or_create(&ApiLabels {
                method,
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
        self.api_latency
            .get_or_create(&ApiTimeLabels {
                method,
                endpoint: endpoint.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        if failed {
            self.error("pve_api");
        }
    }

    /// One request to the portal answered.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_latency
            .get_or_create(&HttpTimeLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A PVE task seen to end after `elapsed`; `ok` when its exit status was a success.
    pub fn task_finished(&self, kind: &str, ok: bool, elapsed: Duration) {
        self.task_duration
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
                outcome: outcome(ok),
            })
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.error("task");
        }
    }

    /// A multi-step operation (restore, reinstall) ended after `elapsed`.
    pub fn operation_finished(&self, kind: &str, ok: bool, elapsed: Duration) {
        self.operation_duration
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
                outcome: outcome(ok),
            })
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.error("operation");
        }
    }

    /// A scheduler phase (`backup`, `snapshot_sweep`, `resume`, `round`) took `elapsed`.
    pub fn tick(&self, phase: &'static str, elapsed: Duration) {
        self.tick_duration
            .get_or_create(&PhaseLabels { phase })
            .observe(elapsed.as_secs_f64());
    }

    /// A scheduler phase (`backup`, `snapshot_sweep`, `resume`, `round`) in `cluster` took
    /// `elapsed`.
    pub fn cluster_tick(&self, cluster: &str, phase: &'static str, elapsed: Duration) {
        self.cluster_tick_duration
            .get_or_create(&ClusterPhaseLabels {
                cluster: cluster.to_owned(),
                phase,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `n` problems in a scheduler round in `cluster` (0 still shows the cluster, at zero).
    pub fn cluster_problems(&self, cluster: &str, n: u64) {
        self.cluster_problems
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .inc_by(n);
    }

    /// One failure at `source`.
    pub fn error(&self, source: &'static str) {
        self.errors.get_or_create(&SourceLabels { source }).inc();
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// Feeds the `pve_api_*` metrics from the API client's exchanges.
impl RequestObserver for Metrics {
    fn on_exchange(&self, e: &Exchange<'_>) {
        let (status, failed) = match e.outcome {
            Outcome::Status(s) => (s.to_string(), s >= 500),
            Outcome::Failed(k) => (k.as_str().to_owned(), true),
        };
        self.api_exchange(e.method, e.template, status, failed, e.elapsed);
    }
}

/// The bearer token that opens `/metrics` to clients other than loopback. Never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// A token; empty ones are refused (they would open the endpoint to everyone).
    pub fn new(token: impl Into<String>) -> Result<Self, String> {
        let t = token.into();
        if t.trim().is_empty() {
            return Err("the metrics token is empty".into());
        }
        Ok(Self(t))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (constant-time compare).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(self.0.as_bytes())))
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

/// The `/metrics` answer: the metrics to a loopback `client` or a request with the token,
/// 403 to anyone else (401 with `WWW-Authenticate` when a token is configured).
pub fn answer(
    metrics: &Metrics,
    client: IpAddr,
    headers: &HeaderMap,
    token: Option<&MetricsToken>,
) -> Response {
    let allowed = client.is_loopback() || token.is_some_and(|t| t.matches(headers));
    if !allowed {
        return match token {
            Some(_) => {
                let mut r =
                    (StatusCode::UNAUTHORIZED, "a bearer token is required\n").into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            None => (
                StatusCode::FORBIDDEN,
                "metrics are served to loopback clients only (or set a metrics token)\n",
            )
                .into_response(),
        };
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Serves `GET /metrics` alone on `addr` (the scheduler's `--metrics-addr`), guarded like the
/// portal's. Returns the bound address and the server task.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    token: Option<MetricsToken>,
) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::extract::ConnectInfo;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(
            move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, headers: HeaderMap| {
                let (metrics, token) = (metrics.clone(), token.clone());
                async move { answer(&metrics, peer.ip(), &headers, token.as_ref()) }
            },
        ),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_the_token_guards() {
        let m = Metrics::new();
        m.http_request("GET", "/s/{vmid}", 200, Duration::from_millis(12));
        m.http_request("GET", "/s/{vmid}", 200, Duration::from_millis(30));
        m.task_finished("vzdump", false, Duration::from_secs(3));
        m.tick("backup", Duration::from_millis(700));
        let text = m.encode();
        assert!(
            text.contains(
                r#"portal_http_requests_total{method="GET",route="/s/{vmid}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"errors_total{source="task"} 1"#), "{text}");
        assert!(
            text.contains(r#"scheduler_tick_duration_seconds_count{phase="backup"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));

        let token = MetricsToken::new("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(MetricsToken::new(" ").is_err());
        let remote: IpAddr = "203.0.113.9".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(answer(&m, remote, &h, None).status(), StatusCode::FORBIDDEN);
        assert_eq!(
            answer(&m, remote, &h, Some(&token)).status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert_eq!(
            answer(&m, remote, &h, Some(&token)).status(),
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(
            answer(&m, remote, &h, Some(&token)).status(),
            StatusCode::OK
        );
        assert_eq!(answer(&m, remote, &h, None).status(), StatusCode::FORBIDDEN);
        let lo: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            answer(&m, lo, &HeaderMap::new(), None).status(),
            StatusCode::OK
        );
    }
}
