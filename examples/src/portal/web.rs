//! The axum application: sessions, CSRF, the client-area screens and their JSON endpoints.

// A handler's early exit is a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use pve_vps_services::backups::WeeklySchedule;
use pve_vps_services::charts::Timeframe;
use pve_vps_services::ids::ClusterName;
use pve_vps_services::overview;
use pve_vps_services::permissions::{self, Access, Feature};
use pve_vps_services::product::{Catalog, Product};
use pve_vps_services::service::Service;
use pve_vps_services::shell::TaskRef;
use pve_vps_services::{ClientArea, Fleet};
use serde::Deserialize;

use super::cluster::{Cluster, ShellError};
use super::html::{
    BackupRow, BackupsPage, ChartsPage, ConnTest, DayView, FirewallPage, Flash, Frame, IsoFolder,
    IsoPage, LoginPage, MessageKind, MessagePage, Nav, OpView, OverviewPage, PasswordPage,
    RdnsPage, ReinstallPage, RuleRow, ServiceRow, ServicesPage, SnapRow, SnapshotsPage, User,
    render, svg_plot,
};
use super::store::{Session, Store};

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// The clusters by name: each one's connection and console login. Every service's
    /// cluster is one of them ([`super::start`] refuses a service naming another).
    pub sites: BTreeMap<ClusterName, Site>,
    /// Products.
    pub catalog: Catalog,
    /// Services by customer.
    pub services: HashMap<String, Vec<Service>>,
    /// Customers, sessions, login failures and console links (SQLite or PostgreSQL).
    pub store: Store,
    /// `vm-services`' client areas and overview hubs, one per cluster: every operation of a
    /// service goes through its own cluster's, and each cluster's live panel refreshes on its
    /// own (ticked on demand at most every [`super::cluster::LIVE_REFRESH`]), so a slow or
    /// offline cluster never holds up another's.
    pub fleet: Fleet,
    /// How long a cluster may take to answer a page's live view before its services are shown
    /// as temporarily unavailable.
    pub cluster_timeout: std::time::Duration,
    /// The hubs' live watchers, one per VM asked about (kept so its config stays cached).
    pub live_watches: std::sync::Mutex<HashMap<VmKey, pve_vps_services::shell::LiveWatch>>,
    /// Whether cookies get `Secure`.
    pub secure_cookies: bool,
    /// Where the noVNC package was unpacked (once available).
    pub novnc_dir: tokio::sync::OnceCell<PathBuf>,
    /// Long operations (restore, reinstall) started from the portal, by cluster and VMID:
    /// what and how it ended (`None` while running).
    pub operations: std::sync::Mutex<HashMap<VmKey, Operation>>,
    /// The clock of sessions and login throttling (tests move it forward).
    pub clock: super::throttle::Clock,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The bearer token that opens `/metrics` to non-loopback clients.
    pub metrics_token: Option<crate::metrics::MetricsToken>,
    /// Tasks already seen to end (their duration is recorded once).
    pub seen_tasks: std::sync::Mutex<std::collections::HashSet<String>>,
}

type Shared = State<Arc<App>>;

/// A VM of one cluster: its cluster's name and its VMID (VMIDs repeat across clusters).
pub type VmKey = (ClusterName, u32);

fn key(svc: &Service) -> VmKey {
    (svc.cluster.clone(), svc.vmid().get())
}

/// One cluster as the portal serves it, besides its client area and hub in [`App::fleet`].
#[derive(Debug)]
pub struct Site {
    /// The connection (API client, base URL, TLS, console login) and its call counter.
    pub cluster: Arc<Cluster>,
    /// The executor the console uses: on a ticket (user/password) session, because PVE's
    /// `vncwebsocket` only accepts a VNC ticket issued to a user with a ticket session.
    pub console_area: Option<ClientArea>,
}

/// A long operation started from the portal: what it is, and how it ended (`None` while it
/// runs).
pub type Operation = (String, Option<Result<String, String>>);

impl App {
    /// The portal's side of the service's cluster.
    ///
    /// # Panics
    /// When the service's cluster is not configured, which [`super::start`] refuses.
    pub fn site(&self, svc: &Service) -> &Site {
        self.sites
            .get(&svc.cluster)
            .expect("start refuses a service whose cluster is not configured")
    }

    /// The client area of the service's cluster (every operation goes through it).
    ///
    /// # Panics
    /// When the service's cluster is not configured, which [`super::start`] refuses.
    pub fn area(&self, svc: &Service) -> &ClientArea {
        self.fleet
            .area(svc)
            .expect("start refuses a service whose cluster is not configured")
    }

    /// The overview hub of the service's cluster.
    ///
    /// # Panics
    /// When the service's cluster is not configured, which [`super::start`] refuses.
    pub fn hub(&self, svc: &Service) -> &pve_vps_services::OverviewHub {
        self.fleet
            .hub(svc)
            .expect("start refuses a service whose cluster is not configured")
    }

    /// API calls made so far, every cluster together.
    pub fn api_calls(&self) -> u64 {
        self.sites.values().map(|s| s.cluster.api_calls()).sum()
    }

    /// The overview and permission state of a VM from its cluster's overview hub: it ticks
    /// (one `/cluster/resources` for every VM of that cluster asked about, plus configs whose
    /// row changed) when the last tick is older than [`super::cluster::LIVE_REFRESH`] or an
    /// action invalidated it. A cluster that cannot be reached, or does not answer within
    /// [`App::cluster_timeout`], is [`ShellError::Unavailable`].
    pub async fn live(&self, svc: &Service) -> Result<super::cluster::Live, ShellError> {
        let hub = self.hub(svc);
        let rx = self
            .live_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key(svc))
            .or_insert_with(|| hub.watch_live(svc))
            .clone();
        let stats = match tokio::time::timeout(self.cluster_timeout, hub.tick_if_due()).await {
            Ok(stats) => stats,
            Err(_) => {
                return Err(ShellError::Unavailable {
                    cluster: svc.cluster.clone(),
                    reason: format!(
                        "no answer within {} s",
                        self.cluster_timeout.as_secs().max(1)
                    ),
                });
            }
        };
        self.site(svc).cluster.count_n(stats.requests as u64);
        let update = rx.borrow().clone();
        match update {
            pve_vps_services::shell::LiveUpdate::Ready(v) => Ok(super::cluster::Live {
                overview: v.overview,
                state: v.state,
            }),
            pve_vps_services::shell::LiveUpdate::Failed(e) => {
                Err(super::cluster::classify_live_failure(&svc.cluster, e))
            }
            pve_vps_services::shell::LiveUpdate::Pending => {
                Err(ShellError::Live("the live view is not ready".into()))
            }
        }
    }

    /// Refuses at once (a "temporarily unavailable" page) when the service's cluster was
    /// last seen unreachable and still is; asks nothing of a cluster last seen well.
    pub async fn check_available(&self, svc: &Service) -> Result<(), ShellError> {
        let last_failed = self
            .live_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key(svc))
            .is_some_and(|rx| {
                matches!(&*rx.borrow(), pve_vps_services::shell::LiveUpdate::Failed(e)
                    if super::cluster::is_unreachable(e))
            });
        if !last_failed {
            return Ok(());
        }
        match self.live(svc).await {
            Err(e @ ShellError::Unavailable { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    /// The long operations (a panic while holding the lock does not lose them).
    fn lock_operations(&self) -> std::sync::MutexGuard<'_, HashMap<VmKey, Operation>> {
        self.operations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/services") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/services", get(services))
        .route("/s/{vmid}", get(overview_page))
        .route("/s/{vmid}/live.json", get(live_json))
        .route("/s/{vmid}/task", get(task_json))
        .route("/s/{vmid}/power", post(power))
        .route("/s/{vmid}/charts", get(charts_page))
        .route(
            "/s/{vmid}/snapshots",
            get(snapshots_page).post(snapshot_create),
        )
        .route("/s/{vmid}/snapshots/action", post(snapshot_action))
        .route("/s/{vmid}/backups", get(backups_page).post(backup_run))
        .route("/s/{vmid}/backups/schedule", post(backup_schedule))
        .route("/s/{vmid}/backups/action", post(backup_action))
        .route("/s/{vmid}/iso", get(iso_page).post(iso_action))
        .route(
            "/s/{vmid}/firewall",
            get(firewall_page).post(firewall_action),
        )
        .route("/s/{vmid}/firewall/move", post(firewall_move))
        .route("/s/{vmid}/rdns", get(rdns_page).post(rdns_set))
        .route(
            "/s/{vmid}/password",
            get(password_page).post(password_reset),
        )
        .route(
            "/s/{vmid}/reinstall",
            get(reinstall_page).post(reinstall_start),
        )
        .route("/s/{vmid}/console", post(super::console::create_link))
        .route("/console/{token}", get(super::console::console_page))
        .route("/console/{token}/ws", get(super::console::relay))
        .route("/novnc/{*path}", get(super::console::novnc_file))
        .route("/metrics", get(metrics_page))
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Every request: a tracing span (method, route template, status, customer once known — never
/// the query, cookies, tokens or form fields), and the `portal_http_*` metrics.
async fn observe(
    State(app): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use tracing::Instrument;
    let method = req.method().as_str().to_owned();
    // Unmatched paths share one label, so scanners cannot grow the label set.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "http_request",
        method = %method,
        route = %route,
        status = tracing::field::Empty,
        customer = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    app.metrics.http_request(&method, &route, status, elapsed);
    if status >= 500 {
        app.metrics
            .error(if status == 502 { "cluster" } else { "portal" });
    }
    span.in_scope(|| {
        let ms = (elapsed.as_secs_f64() * 1e4).round() / 10.0;
        if status >= 500 {
            tracing::warn!(latency_ms = ms, "request failed");
        } else {
            tracing::debug!(latency_ms = ms, "request");
        }
    });
    response
}

/// `GET /metrics`: loopback clients (the address behind trusted proxies), or the bearer token.
async fn metrics_page(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = client_ip(peer.ip(), &headers, &app.trusted_proxies);
    crate::metrics::answer(&app.metrics, client, &headers, app.metrics_token.as_ref())
}

// ---------- sessions and CSRF ----------

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of a request (counted as use), or a redirect to the login page; saying the
/// session expired when the request still carried one.
pub async fn session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let id = cookie(headers, "sid");
    let found = match id {
        Some(id) => app
            .store
            .session(id, app.clock.now(), true)
            .await
            .map_err(|e| store_failed(&e))?,
        None => None,
    };
    found
        .inspect(|s| {
            tracing::Span::current().record("customer", tracing::field::display(&s.username));
        })
        .ok_or_else(|| {
            let to = if id.is_some_and(|v| !v.is_empty()) {
                "/login?err=Your+session+has+expired.+Please+log+in+again."
            } else {
                "/login"
            };
            Redirect::to(to).into_response()
        })
}

/// The session of a background poll (live panel, task progress): not counted as use, and 401
/// without one (the page's script then goes to the login page).
async fn polling_session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let found = match cookie(headers, "sid") {
        Some(id) => app
            .store
            .session(id, app.clock.now(), false)
            .await
            .map_err(|e| store_failed(&e))?,
        None => None,
    };
    found
        .inspect(|s| {
            tracing::Span::current().record("customer", tracing::field::display(&s.username));
        })
        .ok_or_else(|| (StatusCode::UNAUTHORIZED, "session expired").into_response())
}

/// 503 when the store cannot answer (its cause goes to the log, not to the client).
pub fn store_failed(e: &super::store::StoreError) -> Response {
    tracing::error!(error = %e.chain(), "the portal's store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the portal's database is unavailable; please try again in a moment",
    )
        .into_response()
}

/// Checks the CSRF token of a form or of the `X-CSRF-Token` header.
pub fn check_csrf(s: &Session, headers: &HeaderMap, form: Option<&str>) -> Result<(), Response> {
    use subtle::ConstantTimeEq;
    let given = form.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(s.csrf.as_bytes())) => Ok(()),
        _ => Err((StatusCode::FORBIDDEN, "invalid or missing CSRF token").into_response()),
    }
}

/// A service of the session's customer, with its product; 404 for anyone else's.
pub fn owned<'a>(
    app: &'a App,
    s: &Session,
    vmid: u32,
) -> Result<(&'a Service, &'a Product), Response> {
    app.services
        .get(&s.username)
        .and_then(|v| v.iter().find(|svc| svc.vmid().get() == vmid))
        .and_then(|svc| app.catalog.get(&svc.product).map(|p| (svc, p)))
        .ok_or_else(|| (StatusCode::NOT_FOUND, "no such service").into_response())
}

/// Common start of a form post or script action: session, CSRF token (of the form, or the
/// `X-CSRF-Token` header when `form` is `None`), ownership of the service, then its cluster:
/// one last seen unreachable and still so answers 503 at once ("temporarily unavailable",
/// a page for a form, JSON for a script).
pub async fn action_start<'a>(
    app: &'a App,
    headers: &HeaderMap,
    vmid: u32,
    form: Option<&str>,
) -> Result<(Session, &'a Service, &'a Product), Response> {
    let s = session(app, headers).await?;
    check_csrf(&s, headers, form)?;
    let (svc, product) = owned(app, &s, vmid)?;
    if let Err(e) = app.check_available(svc).await {
        return Err(match form {
            Some(_) => cluster_failed(&s, None, &e),
            None => unavailable_json(&e),
        });
    }
    Ok((s, svc, product))
}

/// A cluster's failure on a page: "Temporarily unavailable" (503) when the whole cluster
/// cannot be reached, else "Something went wrong".
fn cluster_failed(s: &Session, nav: Option<&Nav<'_>>, e: &ShellError) -> Response {
    match e {
        ShellError::Unavailable { cluster, reason } => {
            tracing::warn!(cluster = %cluster, reason = %reason, "cluster unavailable");
            let page = MessagePage {
                frame: frame("Temporarily unavailable", s, nav),
                kind: MessageKind::Unavailable {
                    cluster: cluster.as_str(),
                    reason,
                },
            };
            render(StatusCode::SERVICE_UNAVAILABLE, &page)
        }
        e => went_wrong(s, e),
    }
}

/// A cluster's failure for a script: 503 with `unavailable` and the cluster when the whole
/// cluster cannot be reached, else 502.
fn unavailable_json(e: &ShellError) -> Response {
    match e {
        ShellError::Unavailable { cluster, reason } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "error": e.to_string(),
                "unavailable": true,
                "cluster": cluster.as_str(),
                "reason": reason,
            })),
        )
            .into_response(),
        e => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// The frame of a page for a logged-in customer.
fn frame<'a>(title: &'a str, s: &'a Session, nav: Option<&'a Nav<'a>>) -> Frame<'a> {
    Frame {
        title,
        user: Some(User {
            name: &s.username,
            csrf: &s.csrf,
        }),
        nav,
    }
}

impl Msg {
    fn flash(&self) -> Flash<'_> {
        Flash {
            ok: self.ok.as_deref(),
            err: self.err.as_deref(),
        }
    }
}

/// "Something went wrong": the cluster could not be reached or answered with an error.
pub fn went_wrong(s: &Session, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "cluster call failed");
    let page = MessagePage {
        frame: frame("Something went wrong", s, None),
        kind: MessageKind::WentWrong,
    };
    render(StatusCode::BAD_GATEWAY, &page)
}

fn access_denied(s: &Session, nav: &Nav<'_>) -> Response {
    let page = MessagePage {
        frame: frame("Access Denied", s, Some(nav)),
        kind: MessageKind::Denied,
    };
    render(StatusCode::FORBIDDEN, &page)
}

fn nav<'a>(
    svc: &'a Service,
    product: &Product,
    state: &permissions::VmState,
    active: Feature,
) -> Nav<'a> {
    Nav {
        vmid: svc.vmid().get(),
        domain: svc.domain.as_str(),
        access: permissions::check_all(product, state),
        active,
    }
}

/// Common start of a feature page: session, ownership, Access Denied, live state, and the
/// page's navigation.
async fn feature_start<'a>(
    app: &'a App,
    headers: &HeaderMap,
    vmid: u32,
    feature: Feature,
) -> Result<
    (
        Session,
        &'a Service,
        &'a Product,
        super::cluster::Live,
        Nav<'a>,
    ),
    Response,
> {
    let s = session(app, headers).await?;
    let (svc, product) = owned(app, &s, vmid)?;
    if !product.permissions.allows(feature) {
        let n = nav(svc, product, &permissions::VmState::default(), feature);
        return Err(access_denied(&s, &n));
    }
    let live = app
        .live(svc)
        .await
        .map_err(|e| cluster_failed(&s, None, &e))?;
    let live = with_operations(app, svc, live);
    let nv = nav(svc, product, &live.state, feature);
    Ok((s, svc, product, live, nv))
}

/// A restore or reinstall this portal runs counts as a lock between its steps, so the buttons
/// stay dimmed until it ends (vm-services refuses the actions meanwhile anyway).
fn with_operations(
    app: &App,
    svc: &Service,
    mut live: super::cluster::Live,
) -> super::cluster::Live {
    let ops = app.lock_operations();
    if live.state.lock.is_none()
        && let Some((what, None)) = ops.get(&key(svc))
    {
        let kind = if what.starts_with("Restore") {
            "restore"
        } else {
            "reinstall"
        };
        live.state.lock = Some(pve_vps_services::pve::LockKind::Other(kind.to_owned()));
    }
    live
}

/// Runs a long operation (restore, reinstall) in the background: recorded under `vmid` as
/// running, then with how `work` ended once the VM's cached state is dropped.
fn spawn_operation<W, F>(app: &Arc<App>, svc: &Service, vmid: u32, what: String, work: W)
where
    W: FnOnce(Arc<App>, Service) -> F + Send + 'static,
    F: Future<Output = Result<String, String>> + Send,
{
    use tracing::Instrument;
    let kind = if what.starts_with("Restore") {
        "restore"
    } else {
        "reinstall"
    };
    let span = tracing::info_span!("operation", kind = %kind, vmid);
    app.lock_operations().insert(key(svc), (what, None));
    let (app, svc) = (app.clone(), svc.clone());
    tokio::spawn(
        async move {
            let started = std::time::Instant::now();
            let done = work(app.clone(), svc.clone()).await;
            app.metrics
                .operation_finished(kind, done.is_ok(), started.elapsed());
            match &done {
                Ok(m) => tracing::info!(result = %m, "operation finished"),
                Err(e) => tracing::warn!(error = %e, "operation failed"),
            }
            app.hub(&svc).invalidate(&svc);
            if let Some(op) = app.lock_operations().get_mut(&key(&svc)) {
                op.1 = Some(done);
            }
        }
        .instrument(span),
    );
}

fn back(vmid: u32, path: &str, r: Result<Option<String>, String>, ok: &str) -> Response {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = match r {
        Ok(Some(upid)) => format!("/s/{vmid}{path}?ok={}&task={}", enc(ok), enc(&upid)),
        Ok(None) => format!("/s/{vmid}{path}?ok={}", enc(ok)),
        Err(e) => format!("/s/{vmid}{path}?err={}", enc(&e)),
    };
    Redirect::to(&url).into_response()
}

/// A refusal or failure of `vm-services` on a page: the cluster's fault is "Something went
/// wrong", a product refusal is "Access Denied", anything else is shown as it is.
fn fail(s: &Session, nav: &Nav<'_>, e: &pve_vps_services::Error) -> Response {
    if e.is_upstream() {
        return went_wrong(s, e);
    }
    if matches!(e, pve_vps_services::Error::AccessDenied { .. }) {
        return access_denied(s, nav);
    }
    let text = e.to_string();
    let page = MessagePage {
        frame: frame("Error", s, Some(nav)),
        kind: MessageKind::Error(&text),
    };
    render(StatusCode::CONFLICT, &page)
}

fn unknown(what: &'static str, value: &str) -> pve_vps_services::Error {
    pve_vps_services::Error::InvalidValue {
        what,
        value: value.to_owned(),
        reason: "unknown".to_owned(),
    }
}

fn task_result(r: Result<TaskRef, pve_vps_services::Error>) -> Result<Option<String>, String> {
    r.map(|t| Some(t.as_str().to_owned()))
        .map_err(|e| e.to_string())
}

/// The result of an action without a task to follow, for [`back`].
fn done_result<T>(r: Result<T, pve_vps_services::Error>) -> Result<Option<String>, String> {
    r.map(|_| None).map_err(|e| e.to_string())
}

#[derive(Deserialize, Default)]
struct Msg {
    ok: Option<String>,
    err: Option<String>,
    task: Option<String>,
    tf: Option<String>,
}

// ---------- login ----------

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// The login page, with a message.
fn login_form(status: StatusCode, err: Option<&str>) -> Response {
    let page = LoginPage {
        frame: Frame {
            title: "Log in",
            user: None,
            nav: None,
        },
        flash: Flash { ok: None, err },
    };
    render(status, &page)
}

async fn login_page(Query(m): Query<Msg>) -> Response {
    login_form(StatusCode::OK, m.err.as_deref())
}

async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = client_ip(peer.ip(), &headers, &app.trusted_proxies);
    let at = app.clock.now();
    match app.store.login_attempt(&f.username, ip, at).await {
        Ok(Ok(())) => {}
        Ok(Err(wait)) => {
            tracing::warn!(user = ?f.username, %ip, "login refused: too many failed attempts");
            return too_many_attempts(wait);
        }
        Err(e) => return store_failed(&e),
    }
    match app.store.check_login(&f.username, &f.password).await {
        Ok(true) => {}
        Ok(false) => return Redirect::to("/login?err=Wrong+user+or+password").into_response(),
        Err(e) => return store_failed(&e),
    }
    if let Err(e) = app.store.login_succeeded(&f.username, ip, at).await {
        return store_failed(&e);
    }
    tracing::Span::current().record("customer", tracing::field::display(&f.username));
    let id = match app.store.create_session(&f.username, app.clock.now()).await {
        Ok((id, _)) => id,
        Err(e) => return store_failed(&e),
    };
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let c = format!("sid={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut r = Redirect::to("/services").into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the last address
/// in `X-Forwarded-For` that is not one (addresses further left are the client's own claims).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut ip = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(h) = hop.parse::<IpAddr>() else {
            break;
        };
        ip = h;
        if !is_trusted(&h) {
            break;
        }
    }
    ip
}

/// 429 with `Retry-After` and the login form, saying how long to wait.
fn too_many_attempts(wait_secs: i64) -> Response {
    let minutes = (wait_secs + 59) / 60;
    let msg = format!(
        "Too many failed login attempts. Please try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    );
    let mut r = login_form(StatusCode::TOO_MANY_REQUESTS, Some(&msg));
    if let Ok(v) = HeaderValue::from_str(&wait_secs.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(State(app): Shared, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Ok(s) = session(&app, &headers).await {
        if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
            return r;
        }
        if let Some(id) = cookie(&headers, "sid")
            && let Err(e) = app.store.delete_session(id).await
        {
            return store_failed(&e);
        }
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sid=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn services(State(app): Shared, headers: HeaderMap) -> Response {
    let s = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mine: &[Service] = app.services.get(&s.username).map_or(&[], Vec::as_slice);
    // Every service's live view at once: one hub tick per cluster, each bounded by the
    // cluster timeout, so an offline cluster shows its services as unavailable without
    // holding up the others.
    let states = futures_util::future::join_all(mine.iter().map(|svc| app.live(svc))).await;
    let rows = mine
        .iter()
        .zip(states)
        .map(|(svc, state)| ServiceRow {
            domain: svc.domain.as_str(),
            product: svc.product.as_str(),
            vmid: svc.vmid().get(),
            cluster: svc.cluster.as_str(),
            unavailable: match state {
                Err(ShellError::Unavailable { reason, .. }) => Some(reason),
                _ => None,
            },
        })
        .collect();
    let page = ServicesPage {
        frame: frame("My services", &s, None),
        rows,
        several_clusters: app.sites.len() > 1,
    };
    render(StatusCode::OK, &page)
}

// ---------- overview and power ----------

fn live_value(
    product: &Product,
    live: &super::cluster::Live,
) -> Result<serde_json::Value, ShellError> {
    let o = &live.overview;
    let access: serde_json::Map<String, serde_json::Value> = permissions::check_all(
        product,
        &live.state,
    )
    .into_iter()
    .map(|(f, a)| {
        let v = match a {
            Access::Allowed => serde_json::json!({"allowed": true}),
            Access::Denied => {
                serde_json::json!({"allowed": false, "reason": "not included in your package"})
            }
            Access::Unavailable { reason } => {
                serde_json::json!({"allowed": false, "reason": reason.to_string()})
            }
        };
        (
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            v,
        )
    })
    .collect();
    Ok(serde_json::json!({
        "status": match &o.status { overview::VmStatus::Running => "running".to_owned(), overview::VmStatus::Stopped => "stopped".to_owned(), overview::VmStatus::Other(s) => s.clone() },
        "lock": live.state.lock.as_ref().map(|l| l.to_string()),
        "uptime": o.uptime,
        "cpu_percent": o.cpu_percent,
        "cores": o.cores,
        "ram_used": o.ram_used,
        "ram_total": o.ram_total,
        "ram_percent": o.ram_percent,
        "access": access,
        "overview": o,
    }))
}

async fn live_json(State(app): Shared, headers: HeaderMap, Path(vmid): Path<u32>) -> Response {
    let s = match polling_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (svc, product) = match owned(&app, &s, vmid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app
        .live(svc)
        .await
        .and_then(|l| live_value(product, &with_operations(&app, svc, l)))
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => unavailable_json(&e),
    }
}

async fn overview_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::Overview).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let v = match live_value(product, &live) {
        Ok(v) => v,
        Err(e) => return went_wrong(&s, &e),
    };
    let o: overview::Overview = match serde_json::from_value(v["overview"].clone()) {
        Ok(o) => o,
        Err(_) => return went_wrong(&s, &ShellError::Missing),
    };
    let n = &o.network;
    let mut ips = Vec::new();
    if let Some(a) = n.ipv4 {
        let gw = n.gateway4.map(|g| g.to_string()).unwrap_or_default();
        ips.push(("IPv4", format!("{a} (gateway {gw})")));
    }
    ips.extend(
        n.ipv4_extra
            .iter()
            .map(|a| ("Additional IPv4", a.to_string())),
    );
    if let Some(a) = n.ipv6 {
        let gw = n.gateway6.map(|g| g.to_string()).unwrap_or_default();
        ips.push(("IPv6", format!("{a} (gateway {gw})")));
    }
    ips.extend(
        n.ipv6_extra
            .iter()
            .map(|a| ("Additional IPv6", a.to_string())),
    );
    let dns = n
        .dns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let disk = |d: &Option<overview::DiskInfo>| {
        d.as_ref()
            .map(|d| d.summary())
            .unwrap_or_else(|| "—".into())
    };
    let page = OverviewPage {
        frame: frame("Overview", &s, Some(&nv)),
        flash: m.flash(),
        task: m.task.as_deref(),
        op: operation_view(&app, svc),
        vmid,
        csrf: &s.csrf,
        domain: svc.domain.as_str(),
        power: super::html::POWER_BUTTONS,
        sysdisk: disk(&o.system_disk),
        adddisk: disk(&o.additional_disk),
        nic: o
            .nic
            .as_ref()
            .map(|n| n.summary())
            .unwrap_or_else(|| "—".into()),
        ips,
        dns,
        note: &n.note,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct PowerForm {
    csrf: String,
    action: String,
}

async fn power(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<PowerForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let r = match f.action.as_str() {
        "start" => app.area(svc).start(svc).await,
        "stop" => app.area(svc).stop(svc).await,
        "shutdown" => app.area(svc).shutdown(svc, None, false).await,
        "reboot" => app.area(svc).reboot(svc, None).await,
        "reset" => app.area(svc).reset(svc).await,
        _ => Err(unknown("power action", &f.action)),
    };
    app.hub(svc).invalidate(svc);
    back(vmid, "", task_result(r), &format!("{} requested", f.action))
}

#[derive(Deserialize)]
struct TaskQuery {
    upid: String,
}

async fn task_json(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(q): Query<TaskQuery>,
) -> Response {
    let s = match polling_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let svc = match owned(&app, &s, vmid) {
        Ok((svc, _)) => svc,
        Err(r) => return r,
    };
    let Ok(task) = TaskRef::parse(&q.upid) else {
        return (StatusCode::BAD_REQUEST, "bad task reference").into_response();
    };
    app.site(svc).cluster.count();
    let kind = q.upid.split(':').nth(5).unwrap_or("task");
    let span = tracing::info_span!("task", upid = %q.upid, kind = %kind, vmid);
    // vm-services refuses a task of another VM.
    let progress = {
        use tracing::Instrument;
        app.area(svc)
            .task_progress(svc, &task)
            .instrument(span.clone())
            .await
    };
    match progress {
        Ok(p) => {
            if !p.running {
                app.hub(svc).invalidate(svc);
                span.in_scope(|| record_task_end(&app, &q.upid, kind, p.exit_status.as_deref()));
            }
            Json(serde_json::json!({
                "running": p.running,
                "exitstatus": p.exit_status,
                "percent": p.percent,
                "kind": kind,
                "lines": p.last_lines,
            }))
            .into_response()
        }
        Err(e) if e.is_upstream() => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

/// Records a task's duration (from the start time in its UPID to now) the first time the
/// portal sees it stopped; a task the page polls ends within one poll of that.
fn record_task_end(app: &App, upid: &str, kind: &str, exit: Option<&str>) {
    let mut seen = app.seen_tasks.lock().unwrap_or_else(|e| e.into_inner());
    if seen.len() > 10_000 {
        seen.clear();
    }
    if !seen.insert(upid.to_owned()) {
        return;
    }
    let started = upid
        .split(':')
        .nth(4)
        .and_then(|h| i64::from_str_radix(h, 16).ok());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ok = exit.is_some_and(|e| pve_vps_api::task::classify_exit_status(e).is_some());
    if let Some(t0) = started {
        let secs = u64::try_from(now - t0).unwrap_or(0);
        app.metrics
            .task_finished(kind, ok, std::time::Duration::from_secs(secs));
    }
    tracing::info!(ok, exit = exit.unwrap_or(""), "task ended");
}

// ---------- charts ----------

async fn charts_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, _, _, nv) = match feature_start(&app, &headers, vmid, Feature::Charts).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tf = Timeframe::ALL
        .into_iter()
        .find(|t| Some(t.as_pve_str()) == m.tf.as_deref())
        .unwrap_or(Timeframe::Hour);
    app.site(svc).cluster.count();
    let c = match app.area(svc).charts(svc, tf).await {
        Ok(c) => c,
        Err(e) => return fail(&s, &nv, &e),
    };
    let page = ChartsPage {
        frame: frame("Charts", &s, Some(&nv)),
        tabs: Timeframe::ALL
            .into_iter()
            .map(|t| (t.as_pve_str(), t == tf))
            .collect(),
        plots: vec![
            svg_plot("CPU usage", &[&c.cpu]),
            svg_plot("Memory", &[&c.ram[0], &c.ram[1]]),
            svg_plot("Disk I/O", &[&c.disk[0], &c.disk[1]]),
            svg_plot("Network traffic", &[&c.net[0], &c.net[1]]),
        ],
    };
    render(StatusCode::OK, &page)
}

// ---------- snapshots ----------

async fn snapshots_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::Snapshots).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    app.site(svc).cluster.count();
    let list = match app.area(svc).snapshots(svc).await {
        Ok(l) => l,
        Err(e) => return fail(&s, &nv, &e),
    };
    let q = list.quota;
    let access = permissions::check(product, Feature::Snapshots, &live.state);
    let rows = list
        .snapshots
        .iter()
        .map(|e| SnapRow {
            name: &e.name,
            taken: e
                .snaptime
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .map(utc_minutes)
                .unwrap_or_default(),
            remaining: &e.remaining,
            description: &e.description,
        })
        .collect();
    let page = SnapshotsPage {
        frame: frame("Snapshots", &s, Some(&nv)),
        flash: m.flash(),
        task: m.task.as_deref(),
        vmid,
        csrf: &s.csrf,
        used: q.used,
        limit: q.limit,
        lifetime_days: product.snapshots.lifetime.days(),
        can_take: access.is_allowed() && q.has_room(),
        can_act: access.is_allowed(),
        rows,
    };
    render(StatusCode::OK, &page)
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_minutes(t: time::OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

#[derive(Deserialize)]
struct SnapForm {
    csrf: String,
    #[serde(default)]
    description: String,
}

async fn snapshot_create(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<SnapForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let r = app
        .area(svc)
        .create_snapshot(svc, &f.description)
        .await
        .map(|(_, t)| t);
    app.hub(svc).invalidate(svc);
    back(vmid, "/snapshots", task_result(r), "Snapshot requested")
}

#[derive(Deserialize)]
struct SnapAction {
    csrf: String,
    name: String,
    action: String,
}

async fn snapshot_action(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<SnapAction>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let r = match f.action.as_str() {
        "rollback" => app.area(svc).rollback_snapshot(svc, &f.name).await,
        _ => app.area(svc).remove_snapshot(svc, &f.name).await,
    };
    app.hub(svc).invalidate(svc);
    back(
        vmid,
        "/snapshots",
        task_result(r),
        &format!("{} of {} requested", f.action, f.name),
    )
}

// ---------- backups ----------

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn operation_view(app: &App, svc: &Service) -> Option<OpView> {
    let ops = app.lock_operations();
    ops.get(&key(svc)).map(|(what, end)| match end {
        None => OpView::Running(what.clone()),
        Some(Ok(m)) => OpView::Finished(what.clone(), m.clone()),
        Some(Err(e)) => OpView::Failed(what.clone(), e.clone()),
    })
}

async fn backups_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::Backups).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    app.site(svc).cluster.count();
    let (list, schedule) = match tokio::try_join!(
        app.area(svc).backups(svc),
        app.area(svc).backup_schedule(svc)
    ) {
        Ok(x) => x,
        Err(e) => return fail(&s, &nv, &e),
    };
    let q = list.quota;
    let access = permissions::check(product, Feature::Backups, &live.state);
    let days = schedule
        .days()
        .iter()
        .enumerate()
        .map(|(i, d)| DayView {
            index: i,
            name: DAYS[i % 7],
            enabled: d.enabled,
            time: d.time.to_string(),
        })
        .collect();
    let mut sorted: Vec<_> = list.backups.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.ctime));
    let rows = sorted
        .into_iter()
        .map(|b| BackupRow {
            file: b.volid.file_name(),
            protected: b.protected,
            created: time::OffsetDateTime::from_unix_timestamp(b.ctime)
                .map(utc_minutes)
                .unwrap_or_default(),
            size: format!("{:.1} MB", b.size as f64 / 1e6),
            notes: &b.notes,
            volid: b.volid.to_string(),
            can_remove: !b.protected && access.is_allowed(),
        })
        .collect();
    let page = BackupsPage {
        frame: frame("Backups", &s, Some(&nv)),
        flash: m.flash(),
        task: m.task.as_deref(),
        op: operation_view(&app, svc),
        vmid,
        csrf: &s.csrf,
        used: q.used,
        limit: q.limit,
        can_run: access.is_allowed() && q.has_room(),
        can_act: access.is_allowed(),
        days,
        rows,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct BackupForm {
    csrf: String,
    #[serde(default)]
    notes: String,
}

async fn backup_run(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<BackupForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let r = app.area(svc).backup_now(svc, &f.notes).await;
    app.hub(svc).invalidate(svc);
    back(vmid, "/backups", task_result(r), "Backup started")
}

async fn backup_schedule(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let (_, svc, _) =
        match action_start(&app, &headers, vmid, f.get("csrf").map(String::as_str)).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let days: [(bool, &str); 7] = std::array::from_fn(|i| {
        (
            f.contains_key(&format!("on{i}")),
            f.get(&format!("time{i}"))
                .map(String::as_str)
                .unwrap_or("03:00"),
        )
    });
    let r = match WeeklySchedule::from_form(days) {
        Ok(sched) => done_result(app.area(svc).set_backup_schedule(svc, &sched).await),
        Err(e) => Err(e.to_string()),
    };
    back(vmid, "/backups", r, "Schedule saved")
}

#[derive(Deserialize)]
struct BackupAction {
    csrf: String,
    volid: String,
    action: String,
}

async fn backup_action(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<BackupAction>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let volid: pve_vps_services::ids::VolumeId = match f.volid.parse() {
        Ok(v) => v,
        Err(e) => return back(vmid, "/backups", Err(e.to_string()), ""),
    };
    app.site(svc).cluster.count();
    if f.action == "restore" {
        // A restore stops the VM, restores the archive and reconciles the config step by step
        // (resumable); it runs in the background and the page shows how it ended.
        let what = format!("Restore of {}", volid.file_name());
        spawn_operation(&app, svc, vmid, what, move |app, svc| async move {
            match app.area(&svc).restore(&svc, &volid).await {
                Ok(o) => Ok(format!("{} reconciliation step(s)", o.reconciled.len())),
                Err(e) => Err(e.to_string()),
            }
        });
        return back(vmid, "/backups", Ok(None), "Restore started");
    }
    let r = app.area(svc).remove_backup(svc, &volid).await;
    back(vmid, "/backups", done_result(r), "Backup removed")
}

// ---------- ISO ----------

async fn iso_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live, nv) = match feature_start(&app, &headers, vmid, Feature::Iso).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let isos = match app.area(svc).isos(svc).await {
        Ok(l) => l,
        Err(e) => return fail(&s, &nv, &e),
    };
    let access = permissions::check(product, Feature::Iso, &live.state);
    let page = IsoPage {
        frame: frame("ISO images", &s, Some(&nv)),
        flash: m.flash(),
        csrf: &s.csrf,
        mounted: isos.mounted.as_ref().map_or("nothing", |v| v.file_name()),
        has_mounted: isos.mounted.is_some(),
        can_act: access.is_allowed(),
        folders: isos
            .folders
            .iter()
            .map(|f| IsoFolder {
                name: &f.name,
                count: f.count(),
                files: f
                    .files
                    .iter()
                    .map(|v| (v.file_name(), v.to_string()))
                    .collect(),
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct IsoForm {
    csrf: String,
    action: String,
    #[serde(default)]
    volid: String,
}

async fn iso_action(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<IsoForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let r = if f.action == "mount" {
        app.area(svc).mount_iso(svc, &f.volid).await
    } else {
        app.area(svc).unmount_iso(svc).await
    };
    app.hub(svc).invalidate(svc);
    back(
        vmid,
        "/iso",
        done_result(r),
        if f.action == "mount" {
            "ISO mounted"
        } else {
            "ISO unmounted"
        },
    )
}

// ---------- firewall ----------

/// The "Test a connection" form (a GET: it changes nothing).
#[derive(Deserialize, Default)]
struct TestQuery {
    test: Option<String>,
    #[serde(default)]
    t_dir: String,
    #[serde(default)]
    t_proto: String,
    #[serde(default)]
    t_port: String,
    #[serde(default)]
    t_source: String,
}

async fn firewall_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
    Query(tq): Query<TestQuery>,
) -> Response {
    let (s, svc, _, _, nv) = match feature_start(&app, &headers, vmid, Feature::Firewall).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    let fw = match app.area(svc).firewall(svc).await {
        Ok(f) => f,
        Err(e) => return fail(&s, &nv, &e),
    };
    let choices = |cur: &str| {
        ["ACCEPT", "DROP", "REJECT"]
            .into_iter()
            .map(|v| (v, v == cur))
            .collect()
    };
    let mut test = ConnTest {
        direction: if tq.t_dir.is_empty() {
            "in".into()
        } else {
            tq.t_dir.to_ascii_lowercase()
        },
        proto: if tq.t_proto.is_empty() {
            "tcp".into()
        } else {
            tq.t_proto.to_ascii_lowercase()
        },
        port: tq.t_port.clone(),
        source: tq.t_source.clone(),
        asked: tq.test.is_some(),
        ..Default::default()
    };
    let mut status = StatusCode::OK;
    if test.asked {
        let answer =
            super::fwcheck::Question::parse(&tq.t_dir, &tq.t_proto, &tq.t_port, &tq.t_source)
                .and_then(|q| super::fwcheck::check(&fw, svc, &q));
        match answer {
            Ok(a) => {
                test.verdict = Some(a.verdict.to_string());
                test.decided = a.sentence();
                test.unseen = a
                    .unseen
                    .iter()
                    .map(|p| format!("#{p}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if let super::fwcheck::Decider::Rule { pos, text, .. } = a.decider {
                    test.rule = Some((pos, text));
                }
            }
            Err(e) => {
                status = StatusCode::BAD_REQUEST;
                test.error = Some(e);
            }
        }
    }
    let page = FirewallPage {
        frame: frame("Firewall", &s, Some(&nv)),
        flash: m.flash(),
        vmid,
        csrf: &s.csrf,
        enabled: fw.enabled,
        policy_in: choices(&fw.policy_in),
        policy_out: choices(&fw.policy_out),
        rules: fw
            .rules
            .iter()
            .map(|r| {
                let a = &r.rule;
                fn opt(v: &Option<String>) -> &str {
                    v.as_deref().unwrap_or("")
                }
                RuleRow {
                    pos: r.pos,
                    text: &r.text,
                    direction: a.kind.to_ascii_uppercase(),
                    action: match &a.macro_name {
                        Some(m) => format!("{m}({})", a.action),
                        None => a.action.clone(),
                    },
                    proto: opt(&a.proto),
                    dport: opt(&a.dport),
                    source: opt(&a.source),
                    dest: opt(&a.dest),
                    comment: opt(&a.comment),
                    enabled: a.enable.unwrap_or(1) != 0,
                }
            })
            .collect(),
        test,
    };
    render(status, &page)
}

#[derive(Deserialize)]
struct FwForm {
    csrf: String,
    action: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    proto: String,
    #[serde(default)]
    dport: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    position: Option<usize>,
    #[serde(default)]
    pos: Option<usize>,
    #[serde(default)]
    policy_in: String,
    #[serde(default)]
    policy_out: String,
    #[serde(default)]
    confirm: Option<String>,
}

async fn firewall_action(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<FwForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let confirm = f.confirm.is_some();
    let some = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    app.site(svc).cluster.count();
    let (r, ok) = match f.action.as_str() {
        "add" => {
            let rule = pve_vps_firewall::ApiRule {
                kind: f.direction.clone(),
                action: f.verdict.clone(),
                proto: some(&f.proto),
                dport: some(&f.dport),
                source: some(&f.source),
                comment: some(&f.comment),
                enable: Some(1),
                ..Default::default()
            };
            let at = f.position.unwrap_or(usize::MAX);
            let len = app
                .area(svc)
                .firewall(svc)
                .await
                .map(|v| v.rules.len())
                .unwrap_or(0);
            (
                app.area(svc)
                    .add_firewall_rule(svc, &rule, at.min(len), confirm)
                    .await,
                "Rule added",
            )
        }
        "toggle" => {
            let pos = f.pos.unwrap_or(usize::MAX);
            let r = match app.area(svc).firewall(svc).await {
                Ok(v) => match v.rules.iter().find(|r| r.pos == pos).cloned() {
                    Some(r) => {
                        let on = r.rule.enable.unwrap_or(1) != 0;
                        let rule = pve_vps_firewall::ApiRule {
                            enable: Some(u64::from(!on)),
                            ..r.rule
                        };
                        app.area(svc)
                            .update_firewall_rule(svc, pos, &rule, confirm)
                            .await
                            .map(|()| !on)
                    }
                    None => Err(pve_vps_services::Error::RulePosition {
                        pos,
                        len: v.rules.len(),
                    }),
                },
                Err(e) => Err(e),
            };
            let ok = match r {
                Ok(true) => "Rule enabled",
                _ => "Rule disabled",
            };
            (r.map(|_| ()), ok)
        }
        "delete" => (
            app.area(svc)
                .delete_firewall_rule(svc, f.pos.unwrap_or(usize::MAX), confirm)
                .await,
            "Rule deleted",
        ),
        "policies" => (
            app.area(svc)
                .set_firewall_policies(svc, &f.policy_in, &f.policy_out, confirm)
                .await,
            "Policies saved",
        ),
        _ => (Err(unknown("firewall action", &f.action)), ""),
    };
    back(vmid, "/firewall", done_result(r), ok)
}

#[derive(Deserialize)]
struct MoveForm {
    from: usize,
    to: usize,
}

async fn firewall_move(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<MoveForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, None).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.site(svc).cluster.count();
    match app
        .area(svc)
        .move_firewall_rule(svc, f.from, f.to, false)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

// ---------- reverse DNS ----------

async fn rdns_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, _, _, nv) = match feature_start(&app, &headers, vmid, Feature::Rdns).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ptrs = match app.area(svc).rdns_list(svc).await {
        Ok(p) => p,
        Err(e) => return fail(&s, &nv, &e),
    };
    let page = RdnsPage {
        frame: frame("Reverse DNS", &s, Some(&nv)),
        flash: m.flash(),
        csrf: &s.csrf,
        rows: ptrs
            .iter()
            .map(|(ip, cur)| (ip.to_string(), cur.as_deref().unwrap_or("")))
            .collect(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct RdnsForm {
    csrf: String,
    ip: IpAddr,
    hostname: String,
}

async fn rdns_set(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<RdnsForm>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = if f.hostname.trim().is_empty() {
        app.area(svc).rdns_remove(svc, f.ip).await
    } else {
        app.area(svc).rdns_set(svc, f.ip, f.hostname.trim()).await
    };
    back(vmid, "/rdns", done_result(r), "PTR saved")
}

// ---------- reset password ----------

async fn password_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, _, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::ResetPassword).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let page = PasswordPage {
        frame: frame("Reset password", &s, Some(&nv)),
        flash: m.flash(),
        csrf: &s.csrf,
        can_reset: permissions::check(product, Feature::ResetPassword, &live.state).is_allowed(),
        new_password: None,
        how: "",
    };
    render(StatusCode::OK, &page)
}

async fn password_reset(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let (s, svc, _, _, nv) = match feature_start(&app, &headers, vmid, Feature::ResetPassword).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    app.site(svc).cluster.count();
    match app.area(svc).reset_password(svc).await {
        Ok(reset) => {
            use secrecy::ExposeSecret;
            let how = if reset.applied_by_agent {
                "applied now by the guest agent"
            } else {
                "applied by cloud-init at the next boot"
            };
            let page = PasswordPage {
                frame: frame("Reset password", &s, Some(&nv)),
                flash: Flash::default(),
                csrf: &s.csrf,
                can_reset: false,
                new_password: Some(reset.password.expose_secret()),
                how,
            };
            let mut r = render(StatusCode::OK, &page);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) if e.is_upstream() => went_wrong(&s, &e),
        Err(e) => back(vmid, "/password", Err(e.to_string()), ""),
    }
}

// ---------- reinstall ----------

async fn reinstall_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::Reinstall).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let page = ReinstallPage {
        frame: frame("Reinstall", &s, Some(&nv)),
        flash: m.flash(),
        op: operation_view(&app, svc),
        csrf: &s.csrf,
        can_reinstall: permissions::check(product, Feature::Reinstall, &live.state).is_allowed(),
        templates: product
            .templates
            .iter()
            .map(|t| (t.vmid.get(), t.name.as_str()))
            .collect(),
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct ReinstallForm {
    csrf: String,
    template: u32,
    confirmation: String,
}

async fn reinstall_start(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<ReinstallForm>,
) -> Response {
    let (_, svc, product) = match action_start(&app, &headers, vmid, Some(&f.csrf)).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let template = match pve_vps_services::ids::VmId::new(f.template) {
        Ok(t) => t,
        Err(e) => return back(vmid, "/reinstall", Err(e.to_string()), ""),
    };
    // The cheap refusals (wrong word, template not offered) answer at once; the reinstall itself
    // runs in the background, step by step and resumable, and the page shows how it ended.
    if let Err(e) = pve_vps_services::reinstall::validate(
        product,
        &permissions::VmState::default(),
        template,
        &f.confirmation,
    ) {
        return back(vmid, "/reinstall", Err(e.to_string()), "");
    }
    let name = product
        .template(template)
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let word = f.confirmation.clone();
    let what = format!("Reinstall with {name}");
    spawn_operation(&app, svc, vmid, what, move |app, svc| async move {
        app.area(&svc)
            .reinstall(&svc, template, &word)
            .await
            .map(|o| format!("installed {}", o.template))
            .map_err(|e| e.to_string())
    });
    back(vmid, "/reinstall", Ok(None), "Reinstall started")
}
