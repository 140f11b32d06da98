//! The HTTP surface: one route table, one dispatcher, handlers grouped by API area.

mod cluster;
mod firewall;
mod guest;
mod qemu;
mod snapshot;
mod storage;
pub(crate) mod vnc;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::auth::{Auth, AuthFailure, Identity, Login};
use crate::faults::Verdict;
use crate::model::{State, TaskEnd, Vm, now_ms};

/// Shared by every request.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) state: Mutex<State>,
    pub(crate) auth: Auth,
    pub(crate) login_delay: Duration,
    /// How long a config write waits for a VM's config flock (PVE: 10 s).
    pub(crate) config_lock_timeout: Duration,
}

impl App {
    /// Lock the state, advanced to `now`.
    pub(crate) fn lock(&self, now: u64) -> MutexGuard<'_, State> {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.advance(now);
        g
    }
}

/// Signals the connection task to drop its connection (fault injection).
#[derive(Debug, Clone)]
pub(crate) struct ConnKill(pub(crate) Arc<Notify>);

/// A parsed request as handlers see it.
#[derive(Debug)]
pub(crate) struct Req {
    pub(crate) path: HashMap<String, String>,
    pub(crate) args: HashMap<String, String>,
    pub(crate) user: String,
    pub(crate) now: u64,
}

impl Req {
    pub(crate) fn p(&self, k: &str) -> &str {
        self.path.get(k).map(String::as_str).unwrap_or("")
    }
    pub(crate) fn arg(&self, k: &str) -> Option<&str> {
        self.args
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    pub(crate) fn req_arg(&self, k: &str) -> Result<&str, ApiError> {
        self.arg(k)
            .ok_or_else(|| ApiError::param(k, "property is missing and it is not optional"))
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.arg(k), Some("1" | "true" | "yes" | "on"))
    }
    pub(crate) fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.arg(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::param(k, &format!("type check ('integer') failed - got '{v}'"))
            }),
        }
    }
    pub(crate) fn node(&self) -> &str {
        self.p("node")
    }
    pub(crate) fn vmid(&self) -> Result<u32, ApiError> {
        let v = self.p("vmid");
        v.parse().ok().filter(|n| *n >= 100).ok_or_else(|| {
            ApiError::param(
                "vmid",
                &format!("value '{v}' does not look like a valid VM ID"),
            )
        })
    }
    pub(crate) fn now_s(&self) -> u64 {
        self.now / 1000
    }
}

/// An error answer with PVE's shape.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) errors: Option<BTreeMap<String, String>>,
    /// The VM's config flock is held until this time (ms): the dispatcher waits like
    /// `lock_config` and retries, or answers the timeout.
    pub(crate) busy_until: Option<u64>,
}

impl ApiError {
    /// PVE's usual "500 with a message".
    pub(crate) fn fail(msg: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: msg.into(),
            errors: None,
            busy_until: None,
        }
    }
    pub(crate) fn status(status: u16, msg: impl Into<String>) -> Self {
        Self {
            status,
            message: msg.into(),
            errors: None,
            busy_until: None,
        }
    }
    /// 400 "Parameter verification failed." with a per-parameter error.
    pub(crate) fn param(name: &str, msg: &str) -> Self {
        let mut e = BTreeMap::new();
        e.insert(name.to_string(), msg.to_string());
        Self {
            status: 400,
            message: "Parameter verification failed.".into(),
            errors: Some(e),
            busy_until: None,
        }
    }
    /// The config flock of `vmid` is held until `until_ms`.
    pub(crate) fn busy(vmid: u32, until_ms: u64) -> Self {
        // FACT (qemu-server src/PVE/QemuConfig.pm, config_file_lock, and pve-common
        // src/PVE/Tools.pm, lock_file_full): a flock on /var/lock/qemu-server/lock-VMID.conf,
        // waited for 10 s by lock_config, then "can't lock file '...' - got timeout".
        Self {
            busy_until: Some(until_ms),
            ..Self::fail(format!(
                "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"
            ))
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let mut body = json!({ "data": null, "message": format!("{}\n", self.message) });
        if let Some(e) = &self.errors {
            body["errors"] = json!(e);
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(body)).into_response();
        let reason: String = self
            .message
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    ' '
                }
            })
            .take(200)
            .collect();
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(reason.into_bytes()) {
            resp.extensions_mut().insert(r);
        }
        resp
    }
}

pub(crate) type ApiResult = Result<Reply, ApiError>;

/// A successful answer's `data`.
#[derive(Debug)]
pub(crate) enum Reply {
    Json(Value),
    /// The complete serialised answer `{"data":...}` (fast path for large, cached lists).
    Raw(bytes::Bytes),
}

impl Reply {
    pub(crate) fn null() -> ApiResult {
        Ok(Reply::Json(Value::Null))
    }
    pub(crate) fn json(v: Value) -> ApiResult {
        Ok(Reply::Json(v))
    }
}

pub(crate) type Handler = fn(&mut State, &Req) -> ApiResult;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Sync(Handler),
    Login,
    VncWebsocket,
}

/// One served route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
}

const fn r(method: &'static str, path: &'static str, h: Handler) -> Route {
    Route {
        method,
        path,
        kind: Kind::Sync(h),
    }
}

macro_rules! fw_routes {
    ($prefix:literal) => {
        [
            r(
                "GET",
                concat!($prefix, "/firewall/options"),
                firewall::get_options,
            ),
            r("GET", concat!($prefix, "/firewall/refs"), firewall::refs),
            r(
                "PUT",
                concat!($prefix, "/firewall/options"),
                firewall::set_options,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/rules"),
                firewall::list_rules,
            ),
            r(
                "POST",
                concat!($prefix, "/firewall/rules"),
                firewall::create_rule,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/rules/{pos}"),
                firewall::get_rule,
            ),
            r(
                "PUT",
                concat!($prefix, "/firewall/rules/{pos}"),
                firewall::update_rule,
            ),
            r(
                "DELETE",
                concat!($prefix, "/firewall/rules/{pos}"),
                firewall::delete_rule,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/ipset"),
                firewall::list_ipsets,
            ),
            r(
                "POST",
                concat!($prefix, "/firewall/ipset"),
                firewall::create_ipset,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/ipset/{name}"),
                firewall::list_ipset_entries,
            ),
            r(
                "POST",
                concat!($prefix, "/firewall/ipset/{name}"),
                firewall::add_ipset_entry,
            ),
            r(
                "DELETE",
                concat!($prefix, "/firewall/ipset/{name}"),
                firewall::delete_ipset,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/ipset/{name}/{cidr}"),
                firewall::get_ipset_entry,
            ),
            r(
                "PUT",
                concat!($prefix, "/firewall/ipset/{name}/{cidr}"),
                firewall::update_ipset_entry,
            ),
            r(
                "DELETE",
                concat!($prefix, "/firewall/ipset/{name}/{cidr}"),
                firewall::delete_ipset_entry,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/aliases"),
                firewall::list_aliases,
            ),
            r(
                "POST",
                concat!($prefix, "/firewall/aliases"),
                firewall::create_alias,
            ),
            r(
                "GET",
                concat!($prefix, "/firewall/aliases/{name}"),
                firewall::get_alias,
            ),
            r(
                "PUT",
                concat!($prefix, "/firewall/aliases/{name}"),
                firewall::update_alias,
            ),
            r(
                "DELETE",
                concat!($prefix, "/firewall/aliases/{name}"),
                firewall::delete_alias,
            ),
        ]
    };
}

/// Every route the simulator serves (paths as in the PVE schema, relative to `/api2/json`).
pub(crate) fn table() -> Vec<Route> {
    let mut v = vec![
        Route {
            method: "POST",
            path: "/access/ticket",
            kind: Kind::Login,
        },
        r("GET", "/version", cluster::version),
        r("GET", "/nodes", cluster::nodes),
        r("GET", "/nodes/{node}/status", cluster::node_status),
        r("GET", "/cluster/resources", cluster::resources),
        r("GET", "/cluster/status", cluster::cluster_status),
        r("GET", "/cluster/nextid", cluster::nextid),
        r("GET", "/nodes/{node}/tasks", cluster::task_list),
        r(
            "GET",
            "/nodes/{node}/tasks/{upid}/status",
            cluster::task_status,
        ),
        r("GET", "/nodes/{node}/tasks/{upid}/log", cluster::task_log),
        r("DELETE", "/nodes/{node}/tasks/{upid}", cluster::task_stop),
        r("GET", "/nodes/{node}/qemu/{vmid}", qemu::index),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/status",
            qemu::status_index,
        ),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}",
            snapshot::index,
        ),
        r("GET", "/nodes/{node}/qemu", qemu::list),
        r("POST", "/nodes/{node}/qemu", qemu::create),
        r("DELETE", "/nodes/{node}/qemu/{vmid}", qemu::destroy),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/status/current",
            qemu::status_current,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/status/start",
            qemu::start,
        ),
        r("POST", "/nodes/{node}/qemu/{vmid}/status/stop", qemu::stop),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/status/shutdown",
            qemu::shutdown,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/status/reboot",
            qemu::reboot,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/status/reset",
            qemu::reset,
        ),
        r("GET", "/nodes/{node}/qemu/{vmid}/config", qemu::get_config),
        r("PUT", "/nodes/{node}/qemu/{vmid}/config", qemu::put_config),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/config",
            qemu::post_config,
        ),
        r("GET", "/nodes/{node}/qemu/{vmid}/pending", qemu::pending),
        r("PUT", "/nodes/{node}/qemu/{vmid}/resize", qemu::resize),
        r("POST", "/nodes/{node}/qemu/{vmid}/clone", qemu::clone_vm),
        r("POST", "/nodes/{node}/qemu/{vmid}/template", qemu::template),
        r("GET", "/nodes/{node}/qemu/{vmid}/rrddata", qemu::rrddata),
        r("GET", "/nodes/{node}/qemu/{vmid}/snapshot", snapshot::list),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/snapshot",
            snapshot::create,
        ),
        r(
            "DELETE",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}",
            snapshot::delete,
        ),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
            snapshot::get_config,
        ),
        r(
            "PUT",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/config",
            snapshot::set_config,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback",
            snapshot::rollback,
        ),
        r("POST", "/nodes/{node}/vzdump", storage::vzdump),
        r("GET", "/nodes/{node}/storage", storage::list),
        r(
            "GET",
            "/nodes/{node}/storage/{storage}/status",
            storage::status,
        ),
        r(
            "GET",
            "/nodes/{node}/storage/{storage}/content",
            storage::content,
        ),
        r(
            "GET",
            "/nodes/{node}/storage/{storage}/content/{volume}",
            storage::volume_get,
        ),
        r(
            "PUT",
            "/nodes/{node}/storage/{storage}/content/{volume}",
            storage::volume_update,
        ),
        r(
            "DELETE",
            "/nodes/{node}/storage/{storage}/content/{volume}",
            storage::volume_delete,
        ),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/cloudinit",
            guest::cloudinit_get,
        ),
        r(
            "PUT",
            "/nodes/{node}/qemu/{vmid}/cloudinit",
            guest::cloudinit_regenerate,
        ),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/cloudinit/dump",
            guest::cloudinit_dump,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/agent/ping",
            guest::agent_ping,
        ),
        r(
            "GET",
            "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
            guest::agent_interfaces,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/agent/set-user-password",
            guest::agent_set_password,
        ),
        r(
            "POST",
            "/nodes/{node}/qemu/{vmid}/vncproxy",
            guest::vncproxy,
        ),
        Route {
            method: "GET",
            path: "/nodes/{node}/qemu/{vmid}/vncwebsocket",
            kind: Kind::VncWebsocket,
        },
    ];
    v.extend(fw_routes!("/cluster"));
    v.extend([
        r("GET", "/cluster/firewall/groups", firewall::list_groups),
        r("POST", "/cluster/firewall/groups", firewall::create_group),
        r(
            "GET",
            "/cluster/firewall/groups/{group}",
            firewall::list_rules,
        ),
        r(
            "POST",
            "/cluster/firewall/groups/{group}",
            firewall::create_rule,
        ),
        r(
            "DELETE",
            "/cluster/firewall/groups/{group}",
            firewall::delete_group,
        ),
        r(
            "GET",
            "/cluster/firewall/groups/{group}/{pos}",
            firewall::get_rule,
        ),
        r(
            "PUT",
            "/cluster/firewall/groups/{group}/{pos}",
            firewall::update_rule,
        ),
        r(
            "DELETE",
            "/cluster/firewall/groups/{group}/{pos}",
            firewall::delete_rule,
        ),
    ]);
    v.extend(fw_routes!("/nodes/{node}/qemu/{vmid}"));
    v
}

fn filter(m: &str) -> MethodFilter {
    match m {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        _ => MethodFilter::DELETE,
    }
}

/// Build the axum router from the table.
pub(crate) fn router(app: Arc<App>) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<Arc<App>>> = BTreeMap::new();
    for route in table() {
        let mr: MethodRouter<Arc<App>> = match route.kind {
            Kind::VncWebsocket => axum::routing::get(vnc::ws_handler),
            _ => axum::routing::on(
                filter(route.method),
                move |st: AxState<Arc<App>>,
                      p: Option<Path<HashMap<String, String>>>,
                      req: Request| {
                    dispatch(st.0, route, p.map(|p| p.0).unwrap_or_default(), req)
                },
            ),
        };
        let entry = by_path.remove(route.path);
        let merged = match entry {
            Some(existing) => existing.merge(mr),
            None => mr,
        };
        by_path.insert(route.path, merged);
    }
    let mut api = Router::new();
    for (path, mr) in by_path {
        api = api.route(path, mr);
    }
    Router::new()
        .nest("/api2/json", api)
        .fallback(|| async { ApiError::status(501, "Method not implemented").into_response() })
        .with_state(app)
}

/// Parse the query string and body (form-urlencoded or JSON) into one argument map.
pub(crate) fn parse_args(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> HashMap<String, String> {
    let mut args: HashMap<String, String> = HashMap::new();
    if let Some(q) = query
        && let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q)
    {
        args.extend(pairs);
    }
    if body.is_empty() {
        return args;
    }
    let is_json = content_type.is_some_and(|c| c.contains("json")) || body.first() == Some(&b'{');
    if is_json {
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s,
                    Value::Bool(b) => {
                        if b {
                            "1".into()
                        } else {
                            "0".into()
                        }
                    }
                    Value::Null => String::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                args.insert(k, s);
            }
        }
    } else if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        args.extend(pairs);
    }
    args
}

/// Authenticate (returning the refusal as a response).
#[allow(clippy::result_large_err)]
pub(crate) async fn authenticate(
    app: &App,
    headers: &http::HeaderMap,
    write: bool,
    now: u64,
) -> Result<Identity, Response> {
    match app.auth.authenticate(headers, write, now / 1000) {
        Ok(i) => Ok(i),
        Err(AuthFailure(msg)) => {
            // FACT (pve-http-server src/PVE/APIServer/AnyEvent.pm): an authentication failure
            // is HTTP 401 with the message as reason phrase and no body, delayed by 3 s
            // ("always delay unauthorized calls by 3 seconds").
            if !app.login_delay.is_zero() {
                tokio::time::sleep(app.login_delay).await;
            }
            Err(unauthorized(&msg))
        }
    }
}

/// A bodiless 401 with `msg` as reason phrase, as pve-http-server answers auth failures.
pub(crate) fn unauthorized(msg: &str) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .body(Body::empty())
        .unwrap_or_default();
    if let Ok(r) = hyper::ext::ReasonPhrase::try_from(msg.as_bytes().to_vec()) {
        resp.extensions_mut().insert(r);
    }
    resp
}

/// Apply latency, drop and HTTP-status faults.
pub(crate) async fn apply_faults(
    app: &App,
    method: &str,
    path: &str,
    kill: Option<&ConnKill>,
) -> Option<Response> {
    let (latency, verdict) = {
        let mut st = app.state.lock().unwrap_or_else(|e| e.into_inner());
        let latency = st.faults.latency;
        (latency, st.faults.verdict(method, path))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Verdict::Serve => None,
        Verdict::Status(s) => {
            let msg = match s {
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                _ => "Internal Server Error (injected)",
            };
            Some(ApiError::status(s, msg).into_response())
        }
        Verdict::Drop => {
            if let Some(k) = kill {
                k.0.notify_one();
                // The connection task drops the connection; never answer.
                std::future::pending::<()>().await;
            }
            Some(ApiError::status(502, "connection dropped").into_response())
        }
    }
}

async fn dispatch(
    app: Arc<App>,
    route: Route,
    path: HashMap<String, String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let api_path = parts
        .uri
        .path()
        .strip_prefix("/api2/json")
        .unwrap_or(parts.uri.path())
        .to_string();
    let kill = parts.extensions.get::<ConnKill>().cloned();
    if let Some(resp) = apply_faults(&app, route.method, &api_path, kill.as_ref()).await {
        return resp;
    }
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(_) => return ApiError::status(400, "request body too large").into_response(),
    };
    let ct = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let args = parse_args(parts.uri.query(), ct, &body);
    let now = now_ms();
    let handler = match route.kind {
        Kind::Sync(h) => h,
        Kind::Login => return login(&app, &args, now).await,
        Kind::VncWebsocket => {
            return ApiError::status(400, "websocket upgrade expected").into_response();
        }
    };
    let write = route.method != "GET";
    let ident = match authenticate(&app, &parts.headers, write, now).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    if ident.read_only && write {
        let what = if path.contains_key("vmid") {
            format!("/vms/{}", path["vmid"])
        } else {
            "/".into()
        };
        return ApiError::status(
            403,
            format!("Permission check failed ({what}, VM.Config.Options)"),
        )
        .into_response();
    }
    {
        let mut st = app.state.lock().unwrap_or_else(|e| e.into_inner());
        *st.served
            .entry((ident.id.clone(), route.method, route.path))
            .or_default() += 1;
    }
    let req = Req {
        path,
        args,
        user: ident.id,
        now,
    };
    let mut req = req;
    let deadline = now + app.config_lock_timeout.as_millis() as u64;
    let result = loop {
        let result = {
            let mut st = app.lock(req.now);
            if write {
                st.generation += 1;
            }
            check_node(&st, &req).and_then(|()| handler(&mut st, &req))
        };
        // Like lock_config: wait for the holder up to the timeout, then give up.
        match &result {
            Err(e) if e.busy_until.is_some() => {
                let until = e.busy_until.unwrap_or(0);
                let t = now_ms();
                if t >= deadline {
                    break result;
                }
                let wake = until.clamp(t + 1, deadline);
                tokio::time::sleep(Duration::from_millis(wake - t)).await;
                req.now = now_ms();
            }
            _ => break result,
        }
    };
    match result {
        Ok(Reply::Json(v)) => axum::Json(json!({ "data": v })).into_response(),
        Ok(Reply::Raw(bytes)) => Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json;charset=UTF-8")
            .body(Body::from(bytes))
            .unwrap_or_else(|_| ApiError::fail("response").into_response()),
        Err(e) => e.into_response(),
    }
}

async fn login(app: &App, args: &HashMap<String, String>, now: u64) -> Response {
    let mut username = args.get("username").cloned().unwrap_or_default();
    if let Some(realm) = args.get("realm").filter(|r| !r.is_empty())
        && !username.contains('@')
    {
        username = format!("{username}@{realm}");
    }
    let password = args.get("password").cloned().unwrap_or_default();
    let otp = args.get("otp").map(String::as_str);
    let challenge = args.get("tfa-challenge").map(String::as_str);
    let cluster = app.lock(now).cluster_name.clone();
    match app
        .auth
        .login(&username, &password, otp, challenge, now / 1000)
    {
        Some(Login::User(user)) => {
            let (ticket, csrf) = app.auth.issue(&user, now / 1000);
            axum::Json(json!({ "data": {
                "username": user, "ticket": ticket, "CSRFPreventionToken": csrf,
                "clustername": cluster,
                "cap": root_cap(),
            }}))
            .into_response()
        }
        // FACT (pve-access-control src/PVE/API2/AccessControl.pm, create_ticket): with a
        // second factor outstanding the answer carries the partial ticket and `NeedTFA: 1`
        // and no `cap`.
        Some(Login::NeedTfa(user, challenge)) => {
            let (ticket, csrf) = app.auth.issue_tfa(&user, &challenge, now / 1000);
            axum::Json(json!({ "data": {
                "username": user, "ticket": ticket, "CSRFPreventionToken": csrf,
                "clustername": cluster, "NeedTFA": 1,
            }}))
            .into_response()
        }
        None => {
            if !app.login_delay.is_zero() {
                tokio::time::sleep(app.login_delay).await;
            }
            // FACT (pve-access-control src/PVE/API2/AccessControl.pm, create_ticket): every
            // failure, a wrong second factor included, is 401 "authentication failure".
            ApiError::status(401, "authentication failure").into_response()
        }
    }
}

/// The `cap` of a ticket answer for an all-powerful user.
// FACT (pve-access-control src/PVE/AccessControl.pm privgroups and a recorded PVE 9.1 ticket
// answer of root@pam, proxmox-api tests/fixtures/real): compute_api_permission groups the
// privileges by area (vms, storage, access, nodes, sdn, dc, mapping), each as `name: 1`.
fn root_cap() -> Value {
    let area = |privs: &[&str]| -> Value {
        Value::Object(privs.iter().map(|p| (p.to_string(), json!(1))).collect())
    };
    json!({
        "vms": area(&[
            "Permissions.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone",
            "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk",
            "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
            "VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite",
            "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate",
            "VM.Snapshot", "VM.Snapshot.Rollback",
        ]),
        "storage": area(&[
            "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate",
            "Datastore.Audit", "Permissions.Modify",
        ]),
        "access": area(&["Group.Allocate", "Permissions.Modify", "User.Modify"]),
        "nodes": area(&[
            "Permissions.Modify", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console",
            "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
        ]),
        "sdn": area(&["Permissions.Modify", "SDN.Allocate", "SDN.Audit", "SDN.Use"]),
        "dc": area(&["SDN.Allocate", "SDN.Audit", "SDN.Use", "Sys.Audit", "Sys.Modify"]),
        "mapping": area(&[
            "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
        ]),
    })
}

/// A request addressed to a node must name a known, online node.
fn check_node(st: &State, req: &Req) -> Result<(), ApiError> {
    let Some(node) = req.path.get("node") else {
        return Ok(());
    };
    match st.nodes.get(node) {
        None => Err(ApiError::fail(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        ))),
        Some(n) if !n.online => Err(ApiError::status(
            595,
            format!("no route to host (node '{node}' is offline)"),
        )),
        Some(_) => Ok(()),
    }
}

/// The VM a request addresses, checked to live on the node in the path.
pub(crate) fn vm_mut<'a>(st: &'a mut State, req: &Req) -> Result<&'a mut Vm, ApiError> {
    let vmid = req.vmid()?;
    let node = req.node();
    match st.vms.get_mut(&vmid) {
        Some(vm) if vm.node == node => Ok(vm),
        _ => Err(ApiError::fail(format!(
            "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        ))),
    }
}

/// Start task `kind` for guest `vmid` on the request's node, as the request's user, and answer
/// with its UPID.
pub(crate) fn vm_task(
    st: &mut State,
    req: &Req,
    kind: &str,
    vmid: u32,
    duration_ms: u64,
    log: Vec<(u64, String)>,
    effect: impl FnOnce(&mut State, &mut TaskEnd) + Send + 'static,
) -> ApiResult {
    let upid = st.spawn_task(
        req.now,
        req.node(),
        kind,
        &vmid.to_string(),
        &req.user,
        duration_ms,
        log,
        effect,
    );
    Reply::json(json!(upid))
}

/// PVE's refusal for a guest that must be running and is not.
pub(crate) fn check_running(vm: &Vm) -> Result<(), ApiError> {
    if vm.running() {
        Ok(())
    } else {
        Err(ApiError::fail(format!("VM {} not running", vm.vmid)))
    }
}

/// Fail (for the dispatcher to wait) while a worker holds the VM's config flock.
pub(crate) fn check_flock(vm: &Vm, now: u64) -> Result<(), ApiError> {
    if vm.flock_until > now {
        Err(ApiError::busy(vm.vmid, vm.flock_until))
    } else {
        Ok(())
    }
}

/// Fail with PVE's lock message when the VM holds a lock.
pub(crate) fn check_lock(vm: &Vm) -> Result<(), ApiError> {
    match vm.lock() {
        Some(l) => Err(ApiError::fail(format!("VM is locked ({l})"))),
        None => Ok(()),
    }
}

/// Route table as `(method, path)` pairs.
pub(crate) fn route_list() -> Vec<(&'static str, &'static str)> {
    table().iter().map(|r| (r.method, r.path)).collect()
}
