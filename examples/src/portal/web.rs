//! The axum application: sessions, CSRF, the client-area screens and their JSON endpoints.

// A handler's early exit is a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use pve_vps_services::ClientArea;
use pve_vps_services::backups::WeeklySchedule;
use pve_vps_services::charts::Timeframe;
use pve_vps_services::overview;
use pve_vps_services::permissions::{self, Access, Feature};
use pve_vps_services::product::{Catalog, Product};
use pve_vps_services::service::Service;
use pve_vps_services::shell::TaskRef;
use serde::Deserialize;

use super::cluster::{Cluster, ShellError};
use super::html::{Nav, csrf_field, esc, flash, page, svg_plot, task_box};
use super::store::{Session, Store};

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// Products.
    pub catalog: Catalog,
    /// Services by customer.
    pub services: HashMap<String, Vec<Service>>,
    /// Customers and sessions.
    pub store: Store,
    /// The client-area executor of `vm-services` (every operation goes through it).
    pub area: ClientArea,
    /// The live panel's and the buttons' read cache: `vm-services`' overview hub over `area`,
    /// ticked on demand at most every [`super::cluster::LIVE_REFRESH`].
    pub hub: pve_vps_services::OverviewHub,
    /// The hub's live watchers, one per VM asked about (kept so its config stays cached).
    pub live_watches: std::sync::Mutex<HashMap<u32, pve_vps_services::shell::LiveWatch>>,
    /// The executor the console uses: on a ticket (user/password) session, because PVE's
    /// `vncwebsocket` only accepts a VNC ticket issued to a user with a ticket session.
    pub console_area: Option<ClientArea>,
    /// Whether cookies get `Secure`.
    pub secure_cookies: bool,
    /// Where the noVNC package was unpacked (once available).
    pub novnc_dir: tokio::sync::OnceCell<PathBuf>,
    /// Long operations (restore, reinstall) started from the portal, by VMID: what and how
    /// it ended (`None` while running).
    pub operations: std::sync::Mutex<HashMap<u32, Operation>>,
    /// The clock of sessions and login throttling (tests move it forward).
    pub clock: super::throttle::Clock,
    /// Failed-login counters per account and per client address.
    pub login_throttle: super::throttle::LoginThrottle,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

type Shared = State<Arc<App>>;

/// A long operation started from the portal: what it is, and how it ended (`None` while it
/// runs).
pub type Operation = (String, Option<Result<String, String>>);

impl App {
    /// The overview and permission state of a VM from the overview hub: it ticks (one
    /// `/cluster/resources` for every VM asked about, plus configs whose row changed) when the
    /// last tick is older than [`super::cluster::LIVE_REFRESH`] or an action invalidated it.
    pub async fn live(&self, svc: &Service) -> Result<super::cluster::Live, ShellError> {
        let rx = self
            .live_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(svc.vmid().get())
            .or_insert_with(|| self.hub.watch_live(svc))
            .clone();
        let stats = self.hub.tick_if_due().await;
        self.cluster.count_n(stats.requests as u64);
        let update = rx.borrow().clone();
        match update {
            pve_vps_services::shell::LiveUpdate::Ready(v) => Ok(super::cluster::Live {
                overview: v.overview,
                state: v.state,
            }),
            pve_vps_services::shell::LiveUpdate::Failed(e) => Err(ShellError::Live(e)),
            pve_vps_services::shell::LiveUpdate::Pending => {
                Err(ShellError::Live("the live view is not ready".into()))
            }
        }
    }

    /// The long operations (a panic while holding the lock does not lose them).
    fn lock_operations(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Operation>> {
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
        .with_state(app)
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
pub fn session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    let id = cookie(headers, "sid");
    id.and_then(|id| app.store.session(id, app.clock.now(), true))
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
fn polling_session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    cookie(headers, "sid")
        .and_then(|id| app.store.session(id, app.clock.now(), false))
        .ok_or_else(|| (StatusCode::UNAUTHORIZED, "session expired").into_response())
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
/// `X-CSRF-Token` header when `form` is `None`), then ownership of the service.
pub fn action_start<'a>(
    app: &'a App,
    headers: &HeaderMap,
    vmid: u32,
    form: Option<&str>,
) -> Result<(Session, &'a Service, &'a Product), Response> {
    let s = session(app, headers)?;
    check_csrf(&s, headers, form)?;
    let (svc, product) = owned(app, &s, vmid)?;
    Ok((s, svc, product))
}

fn user(s: &Session) -> Option<(&str, &str)> {
    Some((s.username.as_str(), s.csrf.as_str()))
}

/// "Something went wrong": the cluster could not be reached or answered with an error.
pub fn went_wrong(s: &Session, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "cluster call failed");
    let body = "<div class='card denied'><h1>Something went wrong</h1><p>The service cannot be reached right now. \
                Please try again in a few minutes.</p><p><a href='/services'>Back to my services</a></p></div>";
    (
        StatusCode::BAD_GATEWAY,
        Html(page("Something went wrong", user(s), None, body)),
    )
        .into_response()
}

fn access_denied(s: &Session, nav: &Nav<'_>) -> Response {
    let body = "<div class='card denied' id=denied><h1>Access Denied</h1><p>Your package does not include this feature.</p></div>";
    (
        StatusCode::FORBIDDEN,
        Html(page("Access Denied", user(s), Some(nav), body)),
    )
        .into_response()
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
    let s = session(app, headers)?;
    let (svc, product) = owned(app, &s, vmid)?;
    if !product.permissions.allows(feature) {
        let n = nav(svc, product, &permissions::VmState::default(), feature);
        return Err(access_denied(&s, &n));
    }
    let live = app.live(svc).await.map_err(|e| went_wrong(&s, &e))?;
    let live = with_operations(app, vmid, live);
    let nv = nav(svc, product, &live.state, feature);
    Ok((s, svc, product, live, nv))
}

/// A restore or reinstall this portal runs counts as a lock between its steps, so the buttons
/// stay dimmed until it ends (vm-services refuses the actions meanwhile anyway).
fn with_operations(app: &App, vmid: u32, mut live: super::cluster::Live) -> super::cluster::Live {
    let ops = app.lock_operations();
    if live.state.lock.is_none()
        && let Some((what, None)) = ops.get(&vmid)
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
    app.lock_operations().insert(vmid, (what, None));
    let (app, svc) = (app.clone(), svc.clone());
    tokio::spawn(async move {
        let done = work(app.clone(), svc.clone()).await;
        app.hub.invalidate(&svc);
        if let Some(op) = app.lock_operations().get_mut(&vmid) {
            op.1 = Some(done);
        }
    });
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
    let body = format!(
        "<div class='msg err' id=flash>{}</div>",
        esc(&e.to_string())
    );
    (
        StatusCode::CONFLICT,
        Html(page("Error", user(s), Some(nav), &body)),
    )
        .into_response()
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
fn login_form(err: Option<&str>) -> String {
    page(
        "Log in",
        None,
        None,
        &format!(
            "<div class=card style='max-width:360px'><h1>Log in</h1>{}<form method=post action='/login'>\
             <p><label>User<br><input name=username id=username autocomplete=username></label></p>\
             <p><label>Password<br><input type=password name=password id=password autocomplete=current-password></label></p>\
             <button id=login>Log in</button></form></div>",
            flash(None, err)
        ),
    )
}

async fn login_page(Query(m): Query<Msg>) -> Html<String> {
    Html(login_form(m.err.as_deref()))
}

async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let ip = client_ip(peer.ip(), &headers, &app.trusted_proxies);
    let at = app.clock.now();
    if let Err(wait) = app.login_throttle.attempt(&f.username, ip, at) {
        tracing::warn!(user = ?f.username, %ip, "login refused: too many failed attempts");
        return too_many_attempts(wait);
    }
    let store_app = app.clone();
    let (u, p) = (f.username.clone(), f.password);
    let ok = tokio::task::spawn_blocking(move || store_app.store.check_login(&u, &p))
        .await
        .unwrap_or(false);
    if !ok {
        return Redirect::to("/login?err=Wrong+user+or+password").into_response();
    }
    app.login_throttle.succeeded(&f.username, ip, at);
    let Ok((id, _)) = app.store.create_session(&f.username, app.clock.now()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "session store failed").into_response();
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
    let mut r = (StatusCode::TOO_MANY_REQUESTS, Html(login_form(Some(&msg)))).into_response();
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
    if let Ok(s) = session(&app, &headers) {
        if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
            return r;
        }
        if let Some(id) = cookie(&headers, "sid") {
            app.store.delete_session(id);
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
    let s = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut body = String::from(
        "<h1>My services</h1><table><tr><th>Service</th><th>Product</th><th>VM</th></tr>",
    );
    for svc in app.services.get(&s.username).into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td><a href='/s/{v}'>{}</a></td><td>{}</td><td>{v}</td></tr>",
            esc(svc.domain.as_str()),
            esc(svc.product.as_str()),
            v = svc.vmid().get()
        );
    }
    body.push_str("</table>");
    Html(page("My services", user(&s), None, &body)).into_response()
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
    let s = match polling_session(&app, &headers) {
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
        .and_then(|l| live_value(product, &with_operations(&app, vmid, l)))
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

const OVERVIEW_JS: &str = r#"
const VMID=document.getElementById('live').dataset.vmid;
function setBtn(id,a){const b=document.getElementById(id);if(!b)return;b.disabled=!a.allowed;b.title=a.allowed?'':(a.reason||'')}
async function refresh(){
  try{const r=await fetch('/s/'+VMID+'/live.json');if(r.status===401){location.href='/login?err=Your+session+has+expired.+Please+log+in+again.';return}if(!r.ok){document.getElementById('live-error').textContent='Something went wrong: the live status cannot be loaded.';return}
  const d=await r.json();document.getElementById('live-error').textContent='';
  const st=document.getElementById('status');st.textContent=d.status+(d.lock?' (locked: '+d.lock+')':'');st.className='status-'+d.status;
  document.getElementById('uptime').textContent=d.uptime;
  document.getElementById('cpu').textContent=d.cpu_percent.toFixed(1)+'% of '+d.cores+' cores';
  document.getElementById('cpubar').style.width=d.cpu_percent+'%';
  document.getElementById('ram').textContent=(d.ram_used/1048576).toFixed(0)+' / '+(d.ram_total/1048576).toFixed(0)+' MiB';
  document.getElementById('rambar').style.width=d.ram_percent+'%';
  const p=d.access.power_control, c=d.access.console;
  const running=d.status==='running';
  setBtn('btn-start',{allowed:p.allowed&&!running,reason:running?'already running':p.reason});
  for(const id of ['btn-stop','btn-shutdown'])setBtn(id,{allowed:p.allowed&&running,reason:running?p.reason:'the vm is not running'});
  setBtn('btn-console',c);
  document.getElementById('updated').textContent=new Date().toLocaleTimeString();
  }catch(e){document.getElementById('live-error').textContent='Something went wrong: '+e}
}
refresh();setInterval(refresh,7000);
async function openConsole(){
  const r=await fetch('/s/'+VMID+'/console',{method:'POST',headers:{'X-CSRF-Token':csrf()}});
  const d=await r.json(); if(!r.ok){alert(d.error);return}
  window.open(d.url,'_blank');
}
"#;

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
    let mut ips = String::new();
    if let Some(a) = n.ipv4 {
        let _ = write!(
            ips,
            "<tr><td>IPv4</td><td class=ip>{a} (gateway {})</td></tr>",
            n.gateway4.map(|g| g.to_string()).unwrap_or_default()
        );
    }
    for a in &n.ipv4_extra {
        let _ = write!(
            ips,
            "<tr><td>Additional IPv4</td><td class=ip>{a}</td></tr>"
        );
    }
    if let Some(a) = n.ipv6 {
        let _ = write!(
            ips,
            "<tr><td>IPv6</td><td class=ip>{a} (gateway {})</td></tr>",
            n.gateway6.map(|g| g.to_string()).unwrap_or_default()
        );
    }
    for a in &n.ipv6_extra {
        let _ = write!(
            ips,
            "<tr><td>Additional IPv6</td><td class=ip>{a}</td></tr>"
        );
    }
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
    let power_btn = |action: &str, label: &str, cls: &str| {
        format!(
            "<form method=post action='/s/{vmid}/power' style='display:inline'>{}<input type=hidden name=action value='{action}'>\
             <button id='btn-{action}' class='{cls}'>{label}</button></form> ",
            csrf_field(&s.csrf)
        )
    };
    let body = format!(
        "<h1>{domain}</h1>{flash}{task}{op}<div id=live data-vmid={vmid}></div><div class=err id=live-error></div>\
         <div class=card><b>Status:</b> <span id=status>…</span> · uptime <span id=uptime>…</span>\
         <span class=muted style='float:right'>updated <span id=updated>—</span> (every 7 s)</span>\
         <p>{start}{stop}{shutdown}<button id=btn-console onclick='openConsole()' type=button>Console (noVNC)</button></p></div>\
         <div class=grid><div class=card><h2>CPU</h2><div id=cpu>…</div><div class=bar><div id=cpubar style='width:0'></div></div>\
         <h2>Memory</h2><div id=ram>…</div><div class=bar><div id=rambar style='width:0'></div></div></div>\
         <div class=card><h2>Resources</h2><table class=kv><tr><td>System disk</td><td>{sysdisk}</td></tr>\
         <tr><td>Additional disk</td><td>{adddisk}</td></tr><tr><td>Network card</td><td>{nic}</td></tr></table></div></div>\
         <div class=card><h2>Network</h2><table class=kv id=ips>{ips}<tr><td>DNS servers</td><td>{dns}</td></tr>\
         <tr><td>Domain</td><td>{domain}</td></tr></table><p class=muted>{note}</p></div><script>{OVERVIEW_JS}</script>",
        domain = esc(svc.domain.as_str()),
        flash = flash(m.ok.as_deref(), m.err.as_deref()),
        task = task_box(vmid, m.task.as_deref()),
        op = operation_box(&app, vmid),
        start = power_btn("start", "Start", ""),
        stop = power_btn("stop", "Stop", "danger"),
        shutdown = power_btn("shutdown", "Shut down", ""),
        sysdisk = esc(&disk(&o.system_disk)),
        adddisk = esc(&disk(&o.additional_disk)),
        nic = esc(&o
            .nic
            .as_ref()
            .map(|n| n.summary())
            .unwrap_or_else(|| "—".into())),
        dns = esc(&dns),
        note = esc(&n.note),
    );
    Html(page("Overview", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let r = match f.action.as_str() {
        "start" => app.area.start(svc).await,
        "stop" => app.area.stop(svc).await,
        "shutdown" => app.area.shutdown(svc, None, false).await,
        _ => Err(unknown("power action", &f.action)),
    };
    app.hub.invalidate(svc);
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
    let s = match polling_session(&app, &headers) {
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
    app.cluster.count();
    // vm-services refuses a task of another VM.
    match app.area.task_progress(svc, &task).await {
        Ok(p) => {
            if !p.running {
                app.hub.invalidate(svc);
            }
            Json(serde_json::json!({
                "running": p.running,
                "exitstatus": p.exit_status,
                "percent": p.percent,
                "kind": q.upid.split(':').nth(5).unwrap_or("task"),
                "lines": p.last_lines,
            }))
            .into_response()
        }
        Err(e) if e.is_upstream() => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
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
    app.cluster.count();
    let c = match app.area.charts(svc, tf).await {
        Ok(c) => c,
        Err(e) => return fail(&s, &nv, &e),
    };
    let mut body = String::from("<h1>Charts</h1><div class=tabs>");
    for t in Timeframe::ALL {
        let on = if t == tf { " class=on" } else { "" };
        let _ = write!(body, "<a{on} href='?tf={0}'>{0}</a>", t.as_pve_str());
    }
    let _ = write!(
        body,
        "</div><div class='card grid' id=charts><div>{}</div><div>{}</div><div>{}</div><div>{}</div></div>",
        svg_plot("CPU usage", &[&c.cpu]),
        svg_plot("Memory", &[&c.ram[0], &c.ram[1]]),
        svg_plot("Disk I/O", &[&c.disk[0], &c.disk[1]]),
        svg_plot("Network traffic", &[&c.net[0], &c.net[1]]),
    );
    Html(page("Charts", user(&s), Some(&nv), &body)).into_response()
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
    app.cluster.count();
    let list = match app.area.snapshots(svc).await {
        Ok(l) => l,
        Err(e) => return fail(&s, &nv, &e),
    };
    let q = list.quota;
    let access = permissions::check(product, Feature::Snapshots, &live.state);
    let dis = if access.is_allowed() && q.has_room() {
        ""
    } else {
        " disabled"
    };
    let mut body = format!(
        "<h1>Snapshots</h1>{}{}<div class=card>Quota: <b id=snap-quota>{} / {}</b> · each snapshot is removed {} day(s) after it was taken.\
         <form method=post style='margin-top:8px'>{}<input name=description placeholder='Description (optional)'> \
         <button id=take-snapshot{dis}>Take snapshot</button></form></div><table id=snapshots><tr><th>Name</th><th>Taken</th><th>Removed in</th><th>Description</th><th></th></tr>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        task_box(vmid, m.task.as_deref()),
        q.used,
        q.limit,
        product.snapshots.lifetime.days(),
        csrf_field(&s.csrf)
    );
    let act_dis = if access.is_allowed() { "" } else { " disabled" };
    for e in &list.snapshots {
        let taken = e
            .snaptime
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr class=snap><td>{n}</td><td>{taken}</td><td class=lifetime>{}</td><td>{}</td><td>\
             <form method=post action='/s/{vmid}/snapshots/action' style='display:inline'>{c}<input type=hidden name=name value='{n}'>\
             <button name=action value=rollback{act_dis} onclick=\"return confirm('Roll back to this snapshot? Changes made since it was taken are lost.')\">Rollback</button> <button class=danger name=action value=delete{act_dis}>Remove</button></form></td></tr>",
            esc(&e.remaining),
            esc(&e.description),
            n = esc(&e.name),
            c = csrf_field(&s.csrf)
        );
    }
    body.push_str("</table>");
    Html(page("Snapshots", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let r = app
        .area
        .create_snapshot(svc, &f.description)
        .await
        .map(|(_, t)| t);
    app.hub.invalidate(svc);
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let r = match f.action.as_str() {
        "rollback" => app.area.rollback_snapshot(svc, &f.name).await,
        _ => app.area.remove_snapshot(svc, &f.name).await,
    };
    app.hub.invalidate(svc);
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

fn operation_box(app: &App, vmid: u32) -> String {
    let ops = app.lock_operations();
    match ops.get(&vmid) {
        None => String::new(),
        Some((what, None)) => format!(
            "<div class='card' id=operation>Running: {} … (the VM is locked until it finishes)</div>",
            esc(what)
        ),
        Some((what, Some(Ok(m)))) => format!(
            "<div class='msg ok' id=operation>{} finished: {}</div>",
            esc(what),
            esc(m)
        ),
        Some((what, Some(Err(e)))) => format!(
            "<div class='msg err' id=operation>{} failed: {}</div>",
            esc(what),
            esc(e)
        ),
    }
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
    app.cluster.count();
    let (list, schedule) =
        match tokio::try_join!(app.area.backups(svc), app.area.backup_schedule(svc)) {
            Ok(x) => x,
            Err(e) => return fail(&s, &nv, &e),
        };
    let q = list.quota;
    let access = permissions::check(product, Feature::Backups, &live.state);
    let dis = if access.is_allowed() && q.has_room() {
        ""
    } else {
        " disabled"
    };
    let adis = if access.is_allowed() { "" } else { " disabled" };
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>Backups</h1>{}{}{}<div class=card>Quota: <b id=backup-quota>{} / {}</b> (the schedule replaces the oldest backup when full)\
         <form method=post style='margin-top:8px'>{c}<input name=notes id=backup-notes placeholder='Notes (optional)'> <button id=run-backup{dis}>Back up now</button></form></div>\
         <div class=card><h2>Weekly schedule</h2><form method=post action='/s/{vmid}/backups/schedule' id=schedule>{c}<table><tr>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        task_box(vmid, m.task.as_deref()),
        operation_box(&app, vmid),
        q.used,
        q.limit
    );
    for d in DAYS {
        let _ = write!(body, "<th>{d}</th>");
    }
    body.push_str("</tr><tr>");
    for (i, d) in schedule.days().iter().enumerate() {
        let _ = write!(
            body,
            "<td><label><input type=checkbox name=on{i} id=day{i}{}> on</label><br><input type=time name=time{i} value='{}' style='width:8.5em'></td>",
            if d.enabled { " checked" } else { "" },
            d.time
        );
    }
    let _ = write!(
        body,
        "</tr></table><p><button id=save-schedule>Save schedule</button></p></form></div>\
         <table id=backups><tr><th>Archive</th><th>Created</th><th>Size</th><th>Notes</th><th></th></tr>"
    );
    let mut sorted = list.backups.clone();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.ctime));
    for b in &sorted {
        let created = time::OffsetDateTime::from_unix_timestamp(b.ctime)
            .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr class=backup><td>{f}{p}</td><td>{created}</td><td>{:.1} MB</td><td>{}</td><td>\
             <form method=post action='/s/{vmid}/backups/action' style='display:inline'>{c}<input type=hidden name=volid value='{v}'>\
             <button name=action value=restore{adis} onclick=\"return confirm('Restore this backup? The VM is stopped and its disks are replaced.')\">Restore</button> \
             <button class=danger name=action value=delete{d} onclick=\"return confirm('Remove this backup? This cannot be undone.')\">Remove</button></form></td></tr>",
            b.size as f64 / 1e6,
            esc(&b.notes),
            f = esc(b.volid.file_name()),
            p = if b.protected { " (protected)" } else { "" },
            v = esc(&b.volid.to_string()),
            d = if b.protected || !access.is_allowed() {
                " disabled"
            } else {
                ""
            },
        );
    }
    body.push_str("</table>");
    Html(page("Backups", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let r = app.area.backup_now(svc, &f.notes).await;
    app.hub.invalidate(svc);
    back(vmid, "/backups", task_result(r), "Backup started")
}

async fn backup_schedule(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let (_, svc, _) = match action_start(&app, &headers, vmid, f.get("csrf").map(String::as_str)) {
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
        Ok(sched) => done_result(app.area.set_backup_schedule(svc, &sched).await),
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let volid: pve_vps_services::ids::VolumeId = match f.volid.parse() {
        Ok(v) => v,
        Err(e) => return back(vmid, "/backups", Err(e.to_string()), ""),
    };
    app.cluster.count();
    if f.action == "restore" {
        // A restore stops the VM, restores the archive and reconciles the config step by step
        // (resumable); it runs in the background and the page shows how it ended.
        let what = format!("Restore of {}", volid.file_name());
        spawn_operation(&app, svc, vmid, what, move |app, svc| async move {
            match app.area.restore(&svc, &volid).await {
                Ok(o) => Ok(format!("{} reconciliation step(s)", o.reconciled.len())),
                Err(e) => Err(e.to_string()),
            }
        });
        return back(vmid, "/backups", Ok(None), "Restore started");
    }
    let r = app.area.remove_backup(svc, &volid).await;
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
    app.cluster.count();
    let isos = match app.area.isos(svc).await {
        Ok(l) => l,
        Err(e) => return fail(&s, &nv, &e),
    };
    let access = permissions::check(product, Feature::Iso, &live.state);
    let dis = if access.is_allowed() { "" } else { " disabled" };
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>ISO images</h1>{}<div class=card>Mounted: <b id=mounted>{}</b>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        isos.mounted
            .as_ref()
            .map(|v| esc(v.file_name()))
            .unwrap_or_else(|| "nothing".into())
    );
    if isos.mounted.is_some() {
        let _ = write!(
            body,
            " <form method=post style='display:inline'>{c}<button name=action value=unmount id=unmount{dis}>Unmount</button></form>"
        );
    }
    body.push_str("</div>");
    for folder in &isos.folders {
        let _ = write!(
            body,
            "<div class=card><h2>{} ({})</h2><table>",
            esc(&folder.name),
            folder.count()
        );
        for item in &folder.files {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><form method=post style='display:inline'>{c}<input type=hidden name=volid value='{}'>\
                 <button name=action value=mount class=mount{dis}>Mount</button></form></td></tr>",
                esc(item.file_name()),
                esc(&item.to_string())
            );
        }
        body.push_str("</table></div>");
    }
    Html(page("ISO images", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let r = if f.action == "mount" {
        app.area.mount_iso(svc, &f.volid).await
    } else {
        app.area.unmount_iso(svc).await
    };
    app.hub.invalidate(svc);
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

async fn firewall_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, _, _, nv) = match feature_start(&app, &headers, vmid, Feature::Firewall).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    let fw = match app.area.firewall(svc).await {
        Ok(f) => f,
        Err(e) => return fail(&s, &nv, &e),
    };
    let c = csrf_field(&s.csrf);
    let opt = |v: &str, cur: &str| {
        format!(
            "<option{}>{v}</option>",
            if v == cur { " selected" } else { "" }
        )
    };
    let pol = |cur: &str| {
        ["ACCEPT", "DROP", "REJECT"]
            .iter()
            .map(|v| opt(v, cur))
            .collect::<String>()
    };
    let mut body = format!(
        "<h1>Firewall</h1>{flash}<div class=card><h2>Policies</h2><form method=post id=policies>{c}<input type=hidden name=action value=policies>\
         Firewall: <b id=fw-enabled>{en}</b> · incoming <select name=policy_in id=policy-in>{pin}</select> · outgoing <select name=policy_out id=policy-out>{pout}</select> \
         <label><input type=checkbox name=confirm value=1> I understand this may lock me out</label> <button id=save-policies>Save policies</button></form></div>\
         <div class=card><h2>Add a rule</h2><form method=post id=add-rule>{c}<input type=hidden name=action value=add>\
         <select name=direction><option>in</option><option>out</option></select> <select name=verdict><option>ACCEPT</option><option>DROP</option><option>REJECT</option></select> \
         <select name=proto><option value=tcp>tcp</option><option value=udp>udp</option><option value=icmp>icmp</option><option value=''>any</option></select> \
         <input name=dport id=dport placeholder='port' size=6> <input name=source id=source placeholder='source (optional)' size=16> \
         <input name=comment id=comment placeholder='comment' size=16> position <input name=position id=position type=number min=0 value={n} style='width:4em'> \
         <label><input type=checkbox name=confirm value=1> allow lock-out</label> <button id=add>Add rule</button></form></div>\
         <table id=rules><tr><th>#</th><th>Rule</th><th>Comment</th><th></th></tr>",
        flash = flash(m.ok.as_deref(), m.err.as_deref()),
        en = if fw.enabled { "on" } else { "off" },
        pin = pol(&fw.policy_in),
        pout = pol(&fw.policy_out),
        n = fw.rules.len()
    );
    for r in &fw.rules {
        let _ = write!(
            body,
            "<tr draggable=true data-pos={p} class=rule><td class=pos>{p}</td><td><code>{}</code></td><td class=comment>{}</td>\
             <td><form method=post style='display:inline'>{c}<input type=hidden name=action value=delete><input type=hidden name=pos value={p}>\
             <button class=danger>Delete</button></form></td></tr>",
            esc(&r.text),
            esc(r.rule.comment.as_deref().unwrap_or("")),
            p = r.pos
        );
    }
    let _ = write!(
        body,
        "</table><p class=muted>Drag a rule to change its position; rules are evaluated top to bottom. A change that would block SSH \
         from outside is refused unless you allow it.</p><script>
let dragged=null;
document.querySelectorAll('tr.rule').forEach(tr=>{{
 tr.addEventListener('dragstart',()=>{{dragged=tr;tr.classList.add('drag')}});
 tr.addEventListener('dragend',()=>tr.classList.remove('drag'));
 tr.addEventListener('dragover',e=>e.preventDefault());
 tr.addEventListener('drop',async e=>{{e.preventDefault();if(!dragged||dragged===tr)return;
  const b=new URLSearchParams({{from:dragged.dataset.pos,to:tr.dataset.pos}});
  const r=await fetch('/s/{vmid}/firewall/move',{{method:'POST',headers:{{'X-CSRF-Token':csrf(),'Content-Type':'application/x-www-form-urlencoded'}},body:b}});
  location.href='/s/{vmid}/firewall?'+(r.ok?'ok=Rule+moved':'err='+encodeURIComponent(await r.text()));}});
}});
</script>"
    );
    Html(page("Firewall", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let confirm = f.confirm.is_some();
    let some = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    app.cluster.count();
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
                .area
                .firewall(svc)
                .await
                .map(|v| v.rules.len())
                .unwrap_or(0);
            (
                app.area
                    .add_firewall_rule(svc, &rule, at.min(len), confirm)
                    .await,
                "Rule added",
            )
        }
        "delete" => (
            app.area
                .delete_firewall_rule(svc, f.pos.unwrap_or(usize::MAX), confirm)
                .await,
            "Rule deleted",
        ),
        "policies" => (
            app.area
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, None) {
        Ok(x) => x,
        Err(r) => return r,
    };
    app.cluster.count();
    match app.area.move_firewall_rule(svc, f.from, f.to, false).await {
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
    let ptrs = match app.area.rdns_list(svc).await {
        Ok(p) => p,
        Err(e) => return fail(&s, &nv, &e),
    };
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>Reverse DNS</h1>{}<table id=rdns><tr><th>IP address</th><th>PTR</th><th></th></tr>",
        flash(m.ok.as_deref(), m.err.as_deref())
    );
    for (ip, cur) in &ptrs {
        let _ = write!(
            body,
            "<tr><td>{ip}</td><td><form method=post style='display:inline'>{c}<input type=hidden name=ip value='{ip}'>\
             <input name=hostname value='{}' size=32 placeholder='empty: remove'> <button>Save</button></form></td><td></td></tr>",
            esc(cur.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table>");
    Html(page("Reverse DNS", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, _) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = if f.hostname.trim().is_empty() {
        app.area.rdns_remove(svc, f.ip).await
    } else {
        app.area.rdns_set(svc, f.ip, f.hostname.trim()).await
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
    let dis = if permissions::check(product, Feature::ResetPassword, &live.state).is_allowed() {
        ""
    } else {
        " disabled"
    };
    let body = format!(
        "<h1>Reset password</h1>{}<div class=card>A new random password is set for the VM's user (through the guest agent \
         when it runs, else through cloud-init at the next boot). It is shown once.<form method=post style='margin-top:8px'>{}\
         <button id=reset-password{dis}>Reset password</button></form></div>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        csrf_field(&s.csrf)
    );
    Html(page("Reset password", user(&s), Some(&nv), &body)).into_response()
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
    app.cluster.count();
    match app.area.reset_password(svc).await {
        Ok(reset) => {
            use secrecy::ExposeSecret;
            let how = if reset.applied_by_agent {
                "applied now by the guest agent"
            } else {
                "applied by cloud-init at the next boot"
            };
            let body = format!(
                "<h1>Reset password</h1><div class='msg ok'>The new password ({how}). It is shown only this once; the portal does not keep it.</div>\
                 <div class=card><code id=new-password style='font-size:18px'>{}</code></div>",
                esc(reset.password.expose_secret())
            );
            let mut r = Html(page("Reset password", user(&s), Some(&nv), &body)).into_response();
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
    let (s, _, product, live, nv) =
        match feature_start(&app, &headers, vmid, Feature::Reinstall).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let dis = if permissions::check(product, Feature::Reinstall, &live.state).is_allowed() {
        ""
    } else {
        " disabled"
    };
    let mut opts = String::new();
    for t in &product.templates {
        let _ = write!(
            opts,
            "<option value={}>{}</option>",
            t.vmid.get(),
            esc(&t.name)
        );
    }
    let body = format!(
        "<h1>Reinstall</h1>{}{}<div class=card><p>Reinstalling replaces the VM's disks with a fresh operating system; \
         everything on them is lost. The IP addresses, MAC and hostname stay.</p><form method=post>{}\
         <p><label>Operating system <select name=template id=template>{opts}</select></label></p>\
         <p><label>Type <b>REINSTALL</b> to confirm <input name=confirmation id=confirmation autocomplete=off></label></p>\
         <button class=danger id=reinstall{dis}>Reinstall</button></form></div>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        operation_box(&app, vmid),
        csrf_field(&s.csrf)
    );
    Html(page("Reinstall", user(&s), Some(&nv), &body)).into_response()
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
    let (_, svc, product) = match action_start(&app, &headers, vmid, Some(&f.csrf)) {
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
        app.area
            .reinstall(&svc, template, &word)
            .await
            .map(|o| format!("installed {}", o.template))
            .map_err(|e| e.to_string())
    });
    back(vmid, "/reinstall", Ok(None), "Reinstall started")
}
