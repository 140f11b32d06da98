//! The axum application: sessions, CSRF, the client-area screens and their JSON endpoints.

// A handler's early exit is a ready `Response`; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use dns_providers::ReverseDns;
use serde::Deserialize;
use vm_services::backups::{self, BackupItem, ScheduleStore, WeeklySchedule};
use vm_services::charts::{self, RrdRow, Timeframe};
use vm_services::console::ConsoleTokens;
use vm_services::iso::{self, IsoItem};
use vm_services::overview;
use vm_services::permissions::{self, Access, Feature};
use vm_services::product::{Catalog, Product};
use vm_services::service::Service;
use vm_services::snapshots::{self, SnapshotEntry};
use vm_services::stores::SqliteStore;

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
    /// Backup schedules (vm-services' SQLite store).
    pub schedules: SqliteStore,
    /// Whether cookies get `Secure`.
    pub secure_cookies: bool,
    /// One-time console tokens.
    pub console_tokens: ConsoleTokens,
    /// Where the noVNC package was unpacked (once available).
    pub novnc_dir: tokio::sync::OnceCell<PathBuf>,
    /// The reverse-DNS backend.
    pub rdns: Arc<dyn ReverseDns>,
}

type Shared = State<Arc<App>>;

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
        .route("/s/{vmid}/password", get(not_yet_page))
        .route("/s/{vmid}/reinstall", get(not_yet_page))
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

/// The session of a request, or a redirect to the login page.
pub fn session(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    cookie(headers, "sid")
        .and_then(|id| app.store.session(id))
        .ok_or_else(|| Redirect::to("/login").into_response())
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

fn user(s: &Session) -> Option<(&str, &str)> {
    Some((s.username.as_str(), s.csrf.as_str()))
}

/// "Something went wrong": the cluster could not be reached or answered with an error.
pub fn went_wrong(s: &Session, e: &ShellError) -> Response {
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

/// Common start of a feature page: session, ownership, Access Denied, live state.
async fn feature_start<'a>(
    app: &'a App,
    headers: &HeaderMap,
    vmid: u32,
    feature: Feature,
) -> Result<(Session, &'a Service, &'a Product, super::cluster::Live), Response> {
    let s = session(app, headers)?;
    let (svc, product) = owned(app, &s, vmid)?;
    if !product.permissions.allows(feature) && feature != Feature::Overview {
        let n = nav(svc, product, &permissions::VmState::default(), feature);
        return Err(access_denied(&s, &n));
    }
    let live = app
        .cluster
        .live(svc)
        .await
        .map_err(|e| went_wrong(&s, &e))?;
    Ok((s, svc, product, live))
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

fn err_text(e: impl std::fmt::Display) -> String {
    e.to_string()
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

async fn login_page(Query(m): Query<Msg>) -> Html<String> {
    Html(page(
        "Log in",
        None,
        None,
        &format!(
            "<div class=card style='max-width:360px'><h1>Log in</h1>{}<form method=post action='/login'>\
             <p><label>User<br><input name=username id=username autocomplete=username></label></p>\
             <p><label>Password<br><input type=password name=password id=password autocomplete=current-password></label></p>\
             <button id=login>Log in</button></form></div>",
            flash(None, m.err.as_deref())
        ),
    ))
}

async fn login(State(app): Shared, Form(f): Form<LoginForm>) -> Response {
    let store_app = app.clone();
    let (u, p) = (f.username.clone(), f.password);
    let ok = tokio::task::spawn_blocking(move || store_app.store.check_login(&u, &p))
        .await
        .unwrap_or(false);
    if !ok {
        return Redirect::to("/login?err=Wrong+user+or+password").into_response();
    }
    let Ok((id, _)) = app.store.create_session(&f.username) else {
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
    app: &App,
    svc: &Service,
    product: &Product,
    live: &super::cluster::Live,
) -> Result<serde_json::Value, ShellError> {
    let r = &live.row;
    let row = overview::ResourceRow {
        status: r.status.clone().unwrap_or_default(),
        uptime: r.uptime.unwrap_or(0),
        cpu: r.cpu.unwrap_or(0.0),
        maxcpu: r.maxcpu.unwrap_or(0.0),
        mem: r.mem.unwrap_or(0),
        maxmem: r.maxmem.unwrap_or(0),
    };
    let o = overview::build(&row, &live.config, svc, product)?;
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
    let _ = app;
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
    let s = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (svc, product) = match owned(&app, &s, vmid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app
        .cluster
        .live(svc)
        .await
        .and_then(|l| live_value(&app, svc, product, &l))
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
  try{const r=await fetch('/s/'+VMID+'/live.json');if(!r.ok){document.getElementById('live-error').textContent='Something went wrong: the live status cannot be loaded.';return}
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
  for(const id of ['btn-stop','btn-shutdown','btn-reboot'])setBtn(id,{allowed:p.allowed&&running,reason:running?p.reason:'the vm is not running'});
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Overview).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let v = match live_value(&app, svc, product, &live) {
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
        "<h1>{domain}</h1>{flash}{task}<div id=live data-vmid={vmid}></div><div class=err id=live-error></div>\
         <div class=card><b>Status:</b> <span id=status>…</span> · uptime <span id=uptime>…</span>\
         <span class=muted style='float:right'>updated <span id=updated>—</span> (every 7 s)</span>\
         <p>{start}{stop}{shutdown}{reboot}<button id=btn-console onclick='openConsole()' type=button>Console (noVNC)</button></p></div>\
         <div class=grid><div class=card><h2>CPU</h2><div id=cpu>…</div><div class=bar><div id=cpubar style='width:0'></div></div>\
         <h2>Memory</h2><div id=ram>…</div><div class=bar><div id=rambar style='width:0'></div></div></div>\
         <div class=card><h2>Resources</h2><table class=kv><tr><td>System disk</td><td>{sysdisk}</td></tr>\
         <tr><td>Additional disk</td><td>{adddisk}</td></tr><tr><td>Network card</td><td>{nic}</td></tr></table></div></div>\
         <div class=card><h2>Network</h2><table class=kv id=ips>{ips}<tr><td>DNS servers</td><td>{dns}</td></tr>\
         <tr><td>Domain</td><td>{domain}</td></tr></table><p class=muted>{note}</p></div><script>{OVERVIEW_JS}</script>",
        domain = esc(svc.domain.as_str()),
        flash = flash(m.ok.as_deref(), m.err.as_deref()),
        task = task_box(vmid, m.task.as_deref()),
        start = power_btn("start", "Start", ""),
        stop = power_btn("stop", "Stop", "danger"),
        shutdown = power_btn("shutdown", "Shut down", ""),
        reboot = power_btn("reboot", "Reboot", ""),
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
    let nv = nav(svc, product, &live.state, Feature::Overview);
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
    let (s, svc, product, live) =
        match feature_start(&app, &headers, vmid, Feature::PowerControl).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        permissions::require(product, Feature::PowerControl, &live.state).map_err(err_text)?;
        let vm = app.cluster.vm(svc).map_err(err_text)?;
        app.cluster.count();
        let task = match f.action.as_str() {
            "start" => vm.start().await,
            "stop" => vm.stop().await,
            "shutdown" => vm.shutdown(&Default::default()).await,
            "reboot" => vm.reboot(None).await,
            _ => return Err("unknown action".to_owned()),
        }
        .map_err(err_text)?;
        app.cluster.invalidate(svc).await;
        Ok(Some(task.upid().to_string()))
    }
    .await;
    back(vmid, "", r, &format!("{} requested", f.action))
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
    let s = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let svc = match owned(&app, &s, vmid) {
        Ok((svc, _)) => svc,
        Err(r) => return r,
    };
    // Only tasks of the customer's own VM.
    let Ok(upid) = q.upid.parse::<proxmox_api::Upid>() else {
        return (StatusCode::BAD_REQUEST, "bad upid").into_response();
    };
    if !q.upid.contains(&format!(":{}:", svc.vmid().get())) {
        return (StatusCode::NOT_FOUND, "no such task").into_response();
    }
    let t = app.cluster.client.task(upid);
    app.cluster.count();
    let st = match t.status().await {
        Ok(st) => st,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    app.cluster.count();
    let lines: Vec<String> = t
        .log(0, 50)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.t)
        .collect();
    let running = st.exitstatus.is_none();
    if !running {
        app.cluster.invalidate(svc).await;
    }
    Json(serde_json::json!({
        "running": running,
        "exitstatus": st.exitstatus,
        "kind": st.worker_type.clone(),
        "lines": lines.iter().rev().take(6).rev().collect::<Vec<_>>(),
    }))
    .into_response()
}

// ---------- charts ----------

async fn charts_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Charts).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tf = Timeframe::ALL
        .into_iter()
        .find(|t| Some(t.as_pve_str()) == m.tf.as_deref())
        .unwrap_or(Timeframe::Hour);
    let path = format!("/nodes/{}/qemu/{vmid}/rrddata", svc.vm.node());
    app.cluster.count();
    let rows: Vec<RrdRow> = match app
        .cluster
        .client
        .get(&path, &[("timeframe", tf.as_pve_str()), ("cf", "AVERAGE")])
        .await
    {
        Ok(r) => r,
        Err(e) => return went_wrong(&s, &ShellError::Api(e)),
    };
    let c = charts::build(&rows, tf);
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
    let nv = nav(svc, product, &live.state, Feature::Charts);
    Html(page("Charts", user(&s), Some(&nv), &body)).into_response()
}

// ---------- snapshots ----------

async fn snapshot_listing(app: &App, svc: &Service) -> Result<Vec<SnapshotEntry>, ShellError> {
    app.cluster.count();
    let list = app.cluster.vm(svc)?.snapshots().list().await?;
    Ok(list
        .into_iter()
        .map(|i| SnapshotEntry {
            name: i.name,
            snaptime: i.snaptime,
            description: i.description.unwrap_or_default(),
            vmstate: i.vmstate.unwrap_or(false),
        })
        .collect())
}

fn dur(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    format!(
        "{}d {:02}h {:02}m",
        s / 86_400,
        (s % 86_400) / 3600,
        (s % 3600) / 60
    )
}

async fn snapshots_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live) =
        match feature_start(&app, &headers, vmid, Feature::Snapshots).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let list = match snapshot_listing(&app, svc).await {
        Ok(l) => l,
        Err(e) => return went_wrong(&s, &e),
    };
    let q = snapshots::quota(product, &list);
    let now = time::OffsetDateTime::now_utc();
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
    for e in list.iter().filter(|e| e.is_real()) {
        let taken = e
            .snaptime
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_default();
        let left = e
            .snaptime
            .map(|t| {
                dur(snapshots::remaining_lifetime(
                    t,
                    product.snapshots.lifetime,
                    now,
                ))
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr class=snap><td>{n}</td><td>{taken}</td><td class=lifetime>{left}</td><td>{}</td><td>\
             <form method=post action='/s/{vmid}/snapshots/action' style='display:inline'>{c}<input type=hidden name=name value='{n}'>\
             <button name=action value=rollback{act_dis}>Rollback</button> <button class=danger name=action value=delete{act_dis}>Remove</button></form></td></tr>",
            esc(&e.description),
            n = esc(&e.name),
            c = csrf_field(&s.csrf)
        );
    }
    body.push_str("</table>");
    let nv = nav(svc, product, &live.state, Feature::Snapshots);
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
    let (s, svc, product, live) =
        match feature_start(&app, &headers, vmid, Feature::Snapshots).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        let list = snapshot_listing(&app, svc).await.map_err(err_text)?;
        let plan = snapshots::plan_create(
            product,
            &live.state,
            &list,
            &f.description,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(err_text)?;
        let name: proxmox_api::SnapshotName = plan.name.as_str().parse().map_err(err_text)?;
        app.cluster.count();
        let desc = (!plan.description.is_empty()).then_some(plan.description.as_str());
        let t = app
            .cluster
            .vm(svc)
            .map_err(err_text)?
            .snapshots()
            .create(&name, desc, plan.vmstate)
            .await
            .map_err(err_text)?;
        app.cluster.invalidate(svc).await;
        Ok(Some(t.upid().to_string()))
    }
    .await;
    back(vmid, "/snapshots", r, "Snapshot requested")
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
    let (s, svc, product, live) =
        match feature_start(&app, &headers, vmid, Feature::Snapshots).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        permissions::require(product, Feature::Snapshots, &live.state).map_err(err_text)?;
        let list = snapshot_listing(&app, svc).await.map_err(err_text)?;
        if !list.iter().any(|e| e.is_real() && e.name == f.name) {
            return Err("no such snapshot".to_owned());
        }
        let name: proxmox_api::SnapshotName = f.name.parse().map_err(err_text)?;
        let snaps = app.cluster.vm(svc).map_err(err_text)?.snapshots();
        app.cluster.count();
        let t = match f.action.as_str() {
            "rollback" => snaps.rollback(&name, false).await,
            "delete" => snaps.delete(&name, false).await,
            _ => return Err("unknown action".into()),
        }
        .map_err(err_text)?;
        app.cluster.invalidate(svc).await;
        Ok(Some(t.upid().to_string()))
    }
    .await;
    back(
        vmid,
        "/snapshots",
        r,
        &format!("{} of {} requested", f.action, f.name),
    )
}

// ---------- backups ----------

async fn backup_listing(
    app: &App,
    svc: &Service,
    product: &Product,
) -> Result<Vec<BackupItem>, ShellError> {
    app.cluster.count();
    let path = format!(
        "/nodes/{}/storage/{}/content",
        svc.vm.node(),
        product.backups.storage
    );
    let vmid = svc.vmid().get().to_string();
    Ok(app
        .cluster
        .client
        .get(&path, &[("content", "backup"), ("vmid", &vmid)])
        .await?)
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

async fn backups_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Backups).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let list = match backup_listing(&app, svc, product).await {
        Ok(l) => l,
        Err(e) => return went_wrong(&s, &e),
    };
    let q = backups::quota(product, svc, &list);
    let schedule = app
        .schedules
        .get(svc.vmid())
        .ok()
        .flatten()
        .unwrap_or_default();
    let access = permissions::check(product, Feature::Backups, &live.state);
    let dis = if access.is_allowed() && q.has_room() {
        ""
    } else {
        " disabled"
    };
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>Backups</h1>{}{}<div class=card>Quota: <b id=backup-quota>{} / {}</b> (the schedule replaces the oldest backup when full)\
         <form method=post style='margin-top:8px'>{c}<input name=notes id=backup-notes placeholder='Notes (optional)'> <button id=run-backup{dis}>Back up now</button></form></div>\
         <div class=card><h2>Weekly schedule</h2><form method=post action='/s/{vmid}/backups/schedule' id=schedule>{c}<table><tr>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        task_box(vmid, m.task.as_deref()),
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
            "<td><label><input type=checkbox name=on{i} id=day{i}{}> on</label><br><input type=time name=time{i} value='{}' style='width:7em'></td>",
            if d.enabled { " checked" } else { "" },
            d.time
        );
    }
    let _ = write!(
        body,
        "</tr></table><p><button id=save-schedule>Save schedule</button></p></form></div>\
         <table id=backups><tr><th>Archive</th><th>Created</th><th>Size</th><th>Notes</th><th></th></tr>"
    );
    let mut sorted = list.clone();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.ctime));
    for b in &sorted {
        let created = time::OffsetDateTime::from_unix_timestamp(b.ctime)
            .map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr class=backup><td>{f}{p}</td><td>{created}</td><td>{:.1} MB</td><td>{}</td><td>\
             <form method=post action='/s/{vmid}/backups/action' style='display:inline'>{c}<input type=hidden name=volid value='{v}'>\
             <button name=action value=restore disabled title='Restore with reconciliation waits on the vm-services executor'>Restore</button> \
             <button class=danger name=action value=delete{d}>Remove</button></form></td></tr>",
            b.size as f64 / 1e6,
            esc(b.notes.as_deref().unwrap_or("")),
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
    let nv = nav(svc, product, &live.state, Feature::Backups);
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Backups).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        let list = backup_listing(&app, svc, product).await.map_err(err_text)?;
        let plan =
            backups::plan_manual(product, svc, &live.state, &list, &f.notes).map_err(err_text)?;
        let vmid = proxmox_api::VmId::new(plan.vm.vmid().get()).map_err(err_text)?;
        let mut req = proxmox_api::api::backup::VzdumpRequest::new(vmid)
            .storage(plan.storage.as_str().parse().map_err(err_text)?)
            .mode(proxmox_api::api::backup::BackupMode::Snapshot);
        if !plan.notes.is_empty() {
            req = req.notes_template(&plan.notes).map_err(err_text)?;
        }
        app.cluster.count();
        let t = app
            .cluster
            .node(svc)
            .map_err(err_text)?
            .vzdump(&req)
            .await
            .map_err(err_text)?;
        app.cluster.invalidate(svc).await;
        Ok(Some(t.upid().to_string()))
    }
    .await;
    back(vmid, "/backups", r, "Backup started")
}

async fn backup_schedule(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Backups).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, f.get("csrf").map(String::as_str)) {
        return r;
    }
    let r = (|| {
        permissions::require(product, Feature::Backups, &live.state).map_err(err_text)?;
        let days: [(bool, &str); 7] = std::array::from_fn(|i| {
            (
                f.contains_key(&format!("on{i}")),
                f.get(&format!("time{i}"))
                    .map(String::as_str)
                    .unwrap_or("03:00"),
            )
        });
        let sched = WeeklySchedule::from_form(days).map_err(err_text)?;
        app.schedules.put(svc.vmid(), &sched).map_err(err_text)?;
        Ok(None)
    })();
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Backups).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        permissions::require(product, Feature::Backups, &live.state).map_err(err_text)?;
        let list = backup_listing(&app, svc, product).await.map_err(err_text)?;
        let volid: vm_services::ids::VolumeId = f.volid.parse().map_err(err_text)?;
        // The same ownership rule as restore: only this service's archives on its storage.
        backups::validate_restore_archive(product, svc, &list, &volid).map_err(err_text)?;
        match f.action.as_str() {
            "delete" => {
                let storage: proxmox_api::StorageId =
                    volid.storage().as_str().parse().map_err(err_text)?;
                let vol: proxmox_api::VolumeId = f.volid.parse().map_err(err_text)?;
                app.cluster.count();
                let t = app
                    .cluster
                    .node(svc)
                    .map_err(err_text)?
                    .storage(&storage)
                    .delete_volume(&vol)
                    .await
                    .map_err(err_text)?;
                Ok(t.map(|t| t.upid().to_string()))
            }
            _ => Err("restore is not available yet (waiting on the vm-services executor)".into()),
        }
    }
    .await;
    back(vmid, "/backups", r, "Backup removal requested")
}

// ---------- ISO ----------

async fn iso_listing(
    app: &App,
    svc: &Service,
    product: &Product,
) -> Result<Vec<IsoItem>, ShellError> {
    let Some(storage) = &product.iso_storage else {
        return Ok(Vec::new());
    };
    app.cluster.count();
    let path = format!("/nodes/{}/storage/{storage}/content", svc.vm.node());
    Ok(app.cluster.client.get(&path, &[("content", "iso")]).await?)
}

async fn iso_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Iso).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let list = match iso_listing(&app, svc, product).await {
        Ok(l) => l,
        Err(e) => return went_wrong(&s, &e),
    };
    let mounted = iso::mounted(&live.config).ok().flatten();
    let access = permissions::check(product, Feature::Iso, &live.state);
    let dis = if access.is_allowed() { "" } else { " disabled" };
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>ISO images</h1>{}{}<div class=card>Mounted: <b id=mounted>{}</b>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        task_box(vmid, m.task.as_deref()),
        mounted
            .as_ref()
            .map(|v| esc(v.file_name()))
            .unwrap_or_else(|| "nothing".into())
    );
    if mounted.is_some() {
        let _ = write!(
            body,
            " <form method=post style='display:inline'>{c}<button name=action value=unmount id=unmount{dis}>Unmount</button></form>"
        );
    }
    body.push_str("</div>");
    for folder in iso::group(&list) {
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
    let nv = nav(svc, product, &live.state, Feature::Iso);
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Iso).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        let change = if f.action == "mount" {
            let list = iso_listing(&app, svc, product).await.map_err(err_text)?;
            iso::plan_mount(product, &live.state, &list, &f.volid).map_err(err_text)?
        } else {
            iso::plan_unmount(product, &live.state).map_err(err_text)?
        };
        let path = format!("/nodes/{}/qemu/{vmid}/config", svc.vm.node());
        app.cluster.count();
        let _: serde_json::Value = app
            .cluster
            .client
            .put(&path, &[(change.key.as_str(), change.value.as_str())])
            .await
            .map_err(err_text)?;
        app.cluster.invalidate(svc).await;
        Ok(None)
    }
    .await;
    back(
        vmid,
        "/iso",
        r,
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Firewall).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let fw = match app.cluster.vm(svc) {
        Ok(v) => v.firewall(),
        Err(e) => return went_wrong(&s, &e),
    };
    app.cluster.count();
    app.cluster.count();
    let (opts, rules) = match tokio::try_join!(fw.options(), fw.rules()) {
        Ok(x) => x,
        Err(e) => return went_wrong(&s, &ShellError::Api(e)),
    };
    let c = csrf_field(&s.csrf);
    let pol = |p: &Option<proxmox_api::api::firewall::Policy>| {
        p.as_ref()
            .map(|p| format!("{p:?}").to_uppercase())
            .unwrap_or_else(|| "—".into())
    };
    let mut body = format!(
        "<h1>Firewall</h1>{}<div class=card><h2>Policies</h2>Firewall: <b>{}</b> · incoming policy: <b id=policy-in>{}</b> · outgoing policy: <b id=policy-out>{}</b></div>\
         <div class=card><h2>Add a rule</h2><form method=post id=add-rule>{c}<input type=hidden name=action value=add>\
         <select name=direction><option>in</option><option>out</option></select> <select name=verdict><option>ACCEPT</option><option>DROP</option><option>REJECT</option></select> \
         <select name=proto><option value=tcp>tcp</option><option value=udp>udp</option><option value=icmp>icmp</option></select> \
         <input name=dport id=dport placeholder='port' size=6> <input name=source id=source placeholder='source (optional)' size=16> \
         <input name=comment id=comment placeholder='comment' size=16> position <input name=position id=position type=number min=0 value={} style='width:4em'> <button id=add>Add rule</button></form></div>\
         <table id=rules><tr><th>#</th><th>Direction</th><th>Action</th><th>Protocol</th><th>Port</th><th>Source</th><th>Comment</th><th></th></tr>",
        flash(m.ok.as_deref(), m.err.as_deref()),
        if opts.enable == Some(true) {
            "on"
        } else {
            "off"
        },
        pol(&opts.policy_in),
        pol(&opts.policy_out),
        rules.len()
    );
    for r in &rules {
        let _ = write!(
            body,
            "<tr draggable=true data-pos={p} class=rule><td class=pos>{p}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=comment>{}</td>\
             <td><form method=post style='display:inline'>{c}<input type=hidden name=action value=delete><input type=hidden name=pos value={p}>\
             <button class=danger>Delete</button></form></td></tr>",
            esc(&r.kind),
            esc(&r.action),
            esc(r.proto.as_deref().unwrap_or("any")),
            esc(r.dport.as_deref().unwrap_or("any")),
            esc(r.source.as_deref().unwrap_or("any")),
            esc(r.comment.as_deref().unwrap_or("")),
            p = r.pos
        );
    }
    let _ = write!(
        body,
        "</table><p class=muted>Drag a rule to change its position; rules are evaluated top to bottom.</p><script>
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
    let nv = nav(svc, product, &live.state, Feature::Firewall);
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
    pos: Option<u64>,
}

async fn firewall_action(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Form(f): Form<FwForm>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Firewall).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        permissions::require(product, Feature::Firewall, &live.state).map_err(err_text)?;
        let fw = app.cluster.vm(svc).map_err(err_text)?.firewall();
        app.cluster.count();
        let rules = fw.rules().await.map_err(err_text)?;
        match f.action.as_str() {
            "add" => {
                let mv = vm_services::firewall::insert_position(
                    f.position.unwrap_or(rules.len()),
                    rules.len(),
                )
                .map_err(err_text)?;
                let mut spec = proxmox_api::api::firewall::RuleSpec::new(&f.direction, &f.verdict)
                    .map_err(err_text)?
                    .enable(true);
                if !f.proto.is_empty() {
                    spec = spec.proto(&f.proto).map_err(err_text)?;
                }
                if !f.dport.is_empty() {
                    spec = spec.dport(&f.dport).map_err(err_text)?;
                }
                if !f.source.is_empty() {
                    spec = spec.source(&f.source).map_err(err_text)?;
                }
                if !f.comment.is_empty() {
                    spec = spec.comment(&f.comment).map_err(err_text)?;
                }
                app.cluster.count();
                fw.create_rule(&spec).await.map_err(err_text)?;
                // PVE inserts a new rule at position 0; move it where the customer asked.
                if let Some(mv) = mv {
                    app.cluster.count();
                    fw.update_rule(
                        mv.pos as u64,
                        &proxmox_api::api::firewall::RuleSpec::update().move_to(mv.moveto as u64),
                    )
                    .await
                    .map_err(err_text)?;
                }
                Ok(None)
            }
            "delete" => {
                let pos = f.pos.ok_or("no position")?;
                if !rules.iter().any(|r| r.pos == pos) {
                    return Err("no such rule".into());
                }
                app.cluster.count();
                fw.delete_rule(pos, None).await.map_err(err_text)?;
                Ok(None)
            }
            _ => Err("unknown action".into()),
        }
    }
    .await;
    back(
        vmid,
        "/firewall",
        r,
        if f.action == "add" {
            "Rule added"
        } else {
            "Rule deleted"
        },
    )
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
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Firewall).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, None) {
        return r;
    }
    let r = async {
        permissions::require(product, Feature::Firewall, &live.state).map_err(err_text)?;
        let fw = app.cluster.vm(svc).map_err(err_text)?.firewall();
        app.cluster.count();
        let rules = fw.rules().await.map_err(err_text)?;
        if let Some(mv) =
            vm_services::firewall::drag(f.from, f.to, rules.len()).map_err(err_text)?
        {
            app.cluster.count();
            fw.update_rule(
                mv.pos as u64,
                &proxmox_api::api::firewall::RuleSpec::update().move_to(mv.moveto as u64),
            )
            .await
            .map_err(err_text)?;
        }
        Ok::<(), String>(())
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

// ---------- reverse DNS ----------

async fn rdns_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    Query(m): Query<Msg>,
) -> Response {
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, Feature::Rdns).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ips = svc.addresses();
    let ptrs = app.rdns.list_ptrs(&ips).await.unwrap_or_default();
    let c = csrf_field(&s.csrf);
    let mut body = format!(
        "<h1>Reverse DNS</h1>{}<table id=rdns><tr><th>IP address</th><th>PTR</th><th></th></tr>",
        flash(m.ok.as_deref(), m.err.as_deref())
    );
    for ip in &ips {
        let cur = ptrs
            .iter()
            .find(|(i, _)| i == ip)
            .and_then(|(_, p)| p.as_ref().map(|p| p.hostname().to_string()))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{ip}</td><td><form method=post style='display:inline'>{c}<input type=hidden name=ip value='{ip}'>\
             <input name=hostname value='{}' size=32></td><td><button>Save</button></form></td></tr>",
            esc(&cur)
        );
    }
    body.push_str("</table>");
    let nv = nav(svc, product, &live.state, Feature::Rdns);
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
    let (s, svc, _product, _live) = match feature_start(&app, &headers, vmid, Feature::Rdns).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(r) = check_csrf(&s, &headers, Some(&f.csrf)) {
        return r;
    }
    let r = async {
        dns_providers::check_allowed(f.ip, &svc.host_nets()).map_err(err_text)?;
        if f.hostname.trim().is_empty() {
            app.rdns.remove_ptr(f.ip).await.map_err(err_text)?;
        } else {
            app.rdns
                .set_ptr_str(f.ip, f.hostname.trim())
                .await
                .map_err(err_text)?;
        }
        Ok(None)
    }
    .await;
    back(vmid, "/rdns", r, "PTR saved")
}

// ---------- not yet ----------

async fn not_yet_page(
    State(app): Shared,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
    uri: axum::http::Uri,
) -> Response {
    let feature = if uri.path().ends_with("/password") {
        Feature::ResetPassword
    } else {
        Feature::Reinstall
    };
    let (s, svc, product, live) = match feature_start(&app, &headers, vmid, feature).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = format!(
        "<h1>{}</h1><div class=card>Not available yet: this screen waits on the vm-services executor \
         (guest-agent password reset / reinstall plan execution).</div>",
        if feature == Feature::Reinstall {
            "Reinstall"
        } else {
            "Reset password"
        }
    );
    let nv = nav(svc, product, &live.state, feature);
    Html(page("Not available yet", user(&s), Some(&nv), &body)).into_response()
}
