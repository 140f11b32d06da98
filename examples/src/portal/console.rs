//! The console: one-time links (from `vm-services`), the noVNC client (the `@novnc/novnc` npm
//! package, fetched on first start and cached) and the websocket relay to the cluster's
//! `vncwebsocket` over pinned TLS.

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::ws::{Message as AxMsg, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use futures_util::{SinkExt, StreamExt};
use pve_vps_services::console::ConsoleToken;
use pve_vps_services::shell::ConsoleSession;
use secrecy::ExposeSecret;
use tokio_tungstenite::tungstenite::Message as TMsg;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::cluster::Cluster;
use super::store::ConsoleClaim;
use super::web::{App, action_start, owned, session};

/// The npm package and version range of the noVNC client.
pub const NOVNC_PACKAGE: &str = "@novnc/novnc@1";

/// Makes sure the noVNC package is unpacked under `cache`; returns the package directory.
/// Runs `npm pack` (the npm registry) once and unpacks the tarball with `tar`.
pub async fn ensure_novnc(cache: &FsPath) -> Result<PathBuf, String> {
    let dir = cache.join("novnc-1");
    let pkg = dir.join("package");
    if pkg.join("core").join("rfb.js").is_file() {
        return Ok(pkg);
    }
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    tracing::info!(cache = %dir.display(), "fetching the noVNC client ({NOVNC_PACKAGE}) with npm pack");
    let out = tokio::process::Command::new("npm")
        .args(["pack", NOVNC_PACKAGE, "--silent"])
        .current_dir(&dir)
        .output()
        .await
        .map_err(|e| format!("cannot run npm (install Debian's `npm`): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm pack {NOVNC_PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tgz = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let st = tokio::process::Command::new("tar")
        .args(["-xzf", &tgz])
        .current_dir(&dir)
        .status()
        .await
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !st.success() || !pkg.join("core").join("rfb.js").is_file() {
        return Err(format!("unpacking {tgz} failed"));
    }
    Ok(pkg)
}

/// `POST /s/{vmid}/console`: a one-time link (10 s, single use).
pub async fn create_link(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(vmid): Path<u32>,
) -> Response {
    let err = |code: StatusCode, m: String| {
        (code, Json(serde_json::json!({ "error": m }))).into_response()
    };
    let (s, svc, _) = match action_start(&app, &headers, vmid, None).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(area) = &app.site(svc).console_area else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console is not configured (PVE_CONSOLE_USER / PVE_CONSOLE_PASSWORD)".into(),
        );
    };
    app.site(svc).cluster.count();
    let token = match area.console_link(svc).await {
        Ok(link) => link.token,
        Err(e) if e.is_upstream() => {
            return err(
                StatusCode::BAD_GATEWAY,
                format!("Something went wrong: {e}"),
            );
        }
        Err(e) => return err(StatusCode::FORBIDDEN, e.to_string()),
    };
    // The link is redeemed through the portal's store, so any instance sharing it can open
    // it, once.
    if let Err(e) = app
        .store
        .issue_console_link(&token, vmid, &s.username, app.clock.now_ms())
        .await
    {
        return super::web::store_failed(&e);
    }
    Json(serde_json::json!({ "url": format!("/console/{vmid}-{}", token.to_hex()) }))
        .into_response()
}

fn split(t: &str) -> Option<(u32, &str)> {
    let (v, tok) = t.split_once('-')?;
    Some((v.parse().ok()?, tok))
}

/// `GET /console/{vmid}-{token}`: the noVNC page (the token is redeemed by its websocket).
pub async fn console_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(t): Path<String>,
) -> Response {
    let s = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((vmid, token)) = split(&t) else {
        return (StatusCode::NOT_FOUND, "no such console link").into_response();
    };
    if let Err(r) = owned(&app, &s, vmid) {
        return r;
    }
    if ConsoleToken::parse(token).is_err() {
        return (StatusCode::NOT_FOUND, "no such console link").into_response();
    }
    if app.novnc_dir.get().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the noVNC client is still being fetched; try again in a moment",
        )
            .into_response();
    }
    super::html::render(StatusCode::OK, &super::html::ConsolePage { vmid, link: &t })
}

/// `GET /novnc/{*path}`: the cached noVNC files.
pub async fn novnc_file(State(app): State<Arc<App>>, Path(path): Path<String>) -> Response {
    let Some(root) = app.novnc_dir.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "noVNC not fetched yet").into_response();
    };
    let rel = PathBuf::from(&path);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(root.join(&rel)).await {
        Ok(bytes) => {
            let ct = match rel.extension().and_then(|e| e.to_str()) {
                Some("js") => "text/javascript; charset=utf-8",
                Some("html") => "text/html; charset=utf-8",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /console/{vmid}-{token}/ws`: redeems the token and relays to the cluster.
pub async fn relay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(t): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let s = match session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some((vmid, token)) = split(&t) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (svc, _product) = match owned(&app, &s, vmid) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(token) = ConsoleToken::parse(token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(area) = &app.site(svc).console_area else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    // The store redeems the one-time link (10 s, single use on every instance, this VM and
    // customer), atomically.
    let refused =
        |e: pve_vps_services::Error| (StatusCode::FORBIDDEN, e.to_string()).into_response();
    match app
        .store
        .claim_console_link(&token, vmid, &s.username, app.clock.now_ms())
        .await
    {
        Ok(ConsoleClaim::Granted) => {}
        Ok(ConsoleClaim::Unknown) => return refused(pve_vps_services::Error::TokenUnknown),
        Ok(ConsoleClaim::AlreadyUsed) => {
            return refused(pve_vps_services::Error::TokenAlreadyUsed);
        }
        Ok(ConsoleClaim::Expired) => return refused(pve_vps_services::Error::TokenExpired),
        Ok(ConsoleClaim::ForeignService) => {
            return refused(pve_vps_services::Error::TokenForeignService);
        }
        Err(e) => return super::web::store_failed(&e),
    }
    // This instance then has vm-services check the VM (console allowed, running) under a
    // link of its own, redeemed at once, and open the VNC proxy; the relay connects to its
    // websocket.
    app.site(svc).cluster.count();
    let local = match area.console_link(svc).await {
        Ok(link) => link.token,
        Err(e) if e.is_upstream() => {
            return (StatusCode::BAD_GATEWAY, e.to_string()).into_response();
        }
        Err(e) => return refused(e),
    };
    app.site(svc).cluster.count();
    let session = match area.open_console(&local, svc).await {
        Ok(s) => s,
        Err(e) if e.is_upstream() => {
            return (StatusCode::BAD_GATEWAY, e.to_string()).into_response();
        }
        Err(e) => return (StatusCode::FORBIDDEN, e.to_string()).into_response(),
    };
    let upstream = match open_upstream(&app.site(svc).cluster, &session).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, vmid, "console upstream failed");
            return (StatusCode::BAD_GATEWAY, e).into_response();
        }
    };
    ws.protocols(["binary"])
        .on_upgrade(move |socket| pump(socket, upstream))
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Logs in with the console user (a ticket session: PVE's `vncwebsocket` refuses API tokens)
/// and opens the session's `vncwebsocket` with the cluster's TLS settings.
pub async fn open_upstream(
    cluster: &Cluster,
    session: &ConsoleSession,
) -> Result<Upstream, String> {
    let login = cluster
        .console_login
        .as_ref()
        .ok_or("no console login configured (PVE_CONSOLE_USER / PVE_CONSOLE_PASSWORD)")?;
    let mut cfg = cluster
        .tls
        .rustls_client_config(None)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*cfg).clone())
        .build()
        .map_err(|e| e.to_string())?;
    let base = cluster.base_url.trim_end_matches('/');
    cluster.count();
    let auth: serde_json::Value = http
        .post(format!("{base}/api2/json/access/ticket"))
        .form(&[
            ("username", login.userid.as_str()),
            ("password", login.password.expose_secret()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .error_for_status()
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let ticket = auth["data"]["ticket"]
        .as_str()
        .ok_or("login gave no ticket")?
        .to_owned();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let cookie = format!("PVEAuthCookie={}", enc(&ticket));
    let ws_url =
        url::Url::parse(session.websocket_url.expose_secret()).map_err(|e| e.to_string())?;
    let host = ws_url.host_str().ok_or("no host")?.to_owned();
    let port = ws_url.port_or_known_default().unwrap_or(8006);
    let mut req = session
        .websocket_url
        .expose_secret()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("Cookie", cookie.parse().map_err(|_| "bad cookie")?);
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "binary".parse().map_err(|_| "bad header")?,
    );
    cluster.count();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn pump(browser: WebSocket, upstream: Upstream) {
    let (mut bt, mut br) = browser.split();
    let (mut ut, mut ur) = upstream.split();
    let to_cluster = async {
        while let Some(Ok(m)) = br.next().await {
            let m = match m {
                AxMsg::Binary(b) => TMsg::Binary(b),
                AxMsg::Text(t) => TMsg::Text(t.as_str().into()),
                AxMsg::Close(_) => break,
                _ => continue,
            };
            if ut.send(m).await.is_err() {
                break;
            }
        }
        let _ = ut.close().await;
    };
    let to_browser = async {
        while let Some(Ok(m)) = ur.next().await {
            let m = match m {
                TMsg::Binary(b) => AxMsg::Binary(b),
                TMsg::Text(t) => AxMsg::Text(t.as_str().into()),
                TMsg::Close(_) => break,
                _ => continue,
            };
            if bt.send(m).await.is_err() {
                break;
            }
        }
        let _ = bt.close().await;
    };
    tokio::select! {
        () = to_cluster => {},
        () = to_browser => {},
    }
}
