//! The running simulator: listeners (HTTP and HTTPS), the test handle and fault injection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, App, ConnKill};
use crate::auth::Auth;
use crate::config::{SimConfig, VmSpec};
use crate::faults::{DropFault, HttpFault, RequestMatch, TaskFault};
use crate::model::{Outcome, ScheduledLock, State, Timing, now_ms};

/// Errors starting or driving the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Binding or accepting failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// Generating the self-signed certificate failed.
    #[error("certificate generation failed")]
    Certificate(#[from] rcgen::Error),
    /// Building the TLS configuration failed.
    #[error("tls configuration failed")]
    Tls(#[from] rustls::Error),
    /// The named node does not exist.
    #[error("no such node `{0}`")]
    NoSuchNode(String),
    /// The VMID is taken.
    #[error("vm `{0}` already exists")]
    VmExists(u32),
    /// The VMID is unknown.
    #[error("no such vm `{0}`")]
    NoSuchVm(u32),
    /// The storage is unknown.
    #[error("no such storage `{0}`")]
    NoSuchStorage(String),
}

impl SimError {
    /// Whether the error names something that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            SimError::NoSuchNode(_) | SimError::NoSuchVm(_) | SimError::NoSuchStorage(_)
        )
    }
}

/// A running simulator. Dropping it (or [`PveSim::shutdown`]) stops the listeners.
pub struct PveSim {
    app: Arc<App>,
    http_addr: Option<SocketAddr>,
    https_addr: SocketAddr,
    fingerprint: String,
    cert_pem: String,
    config: SimConfig,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for PveSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveSim")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// `AA:BB:...` SHA-256 fingerprint of a DER certificate, as PVE shows it.
pub fn fingerprint_of(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

macro_rules! serve_conn {
    ($io:expr, $svc:expr, $kill:expr, $stop:expr) => {{
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection($io, $svc)
            .with_upgrades();
        tokio::select! {
            _ = conn => {}
            _ = $kill.notified() => {}
            _ = $stop.changed() => {}
        }
    }};
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k2 = kill.clone();
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnKill(k2.clone()));
                let mut r = router.clone();
                async move {
                    let resp = tower::Service::call(&mut r, req).await;
                    Ok::<_, Infallible>(resp.unwrap_or_else(|e| match e {}))
                }
            });
            match tls {
                Some(acc) => {
                    let Ok(s) = acc.accept(stream).await else {
                        return;
                    };
                    serve_conn!(TokioIo::new(s), svc, kill, stop);
                }
                None => serve_conn!(TokioIo::new(stream), svc, kill, stop),
            }
        });
    }
}

impl PveSim {
    /// Build the state, generate a certificate and start listening.
    pub async fn start(config: SimConfig) -> Result<PveSim, SimError> {
        let now = now_ms();
        let timing = Timing {
            task_ms: config.task_duration.as_millis() as u64,
            backup_ms: config.backup_duration.as_millis() as u64,
            vnc_ms: config.vnc_connect_timeout.as_millis() as u64,
        };
        let mut state = State::new(config.seed, timing);
        crate::seed::build(&mut state, &config.scenario, now);

        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            config.bind.to_string(),
        ])?;
        let cert_der = ck.cert.der().clone();
        let fingerprint = fingerprint_of(&cert_der);
        let cert_pem = ck.cert.pem();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key.into())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        state.cert_pem = cert_pem.clone();
        state.fingerprint = fingerprint.clone();

        let secret: [u8; 32] = rand::random();
        let app = Arc::new(App {
            state: Mutex::new(state),
            auth: Auth::new(secret, config.users.clone(), config.tokens.clone()),
            login_delay: config.failed_login_delay,
            config_lock_timeout: config.config_lock_timeout,
        });
        let router = api::router(app.clone());
        let (stop, stop_rx) = watch::channel(false);
        let mut servers = Vec::new();
        let https = TcpListener::bind(SocketAddr::new(config.bind, config.https_port)).await?;
        let https_addr = https.local_addr()?;
        servers.push(tokio::spawn(serve(
            https,
            Some(TlsAcceptor::from(Arc::new(tls))),
            router.clone(),
            stop_rx.clone(),
        )));
        let mut http_addr = None;
        if let Some(port) = config.http_port {
            let l = TcpListener::bind(SocketAddr::new(config.bind, port)).await?;
            http_addr = Some(l.local_addr()?);
            servers.push(tokio::spawn(serve(l, None, router, stop_rx)));
        }
        tracing::info!(%https_addr, ?http_addr, %fingerprint, "pve-sim listening");
        Ok(PveSim {
            app,
            http_addr,
            https_addr,
            fingerprint,
            cert_pem,
            config,
            stop,
            servers,
        })
    }

    /// Stop listening and close connections.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for h in self.servers.drain(..) {
            let _ = h.await;
        }
    }

    /// `https://127.0.0.1:PORT` (append `/api2/json/...`).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.https_addr)
    }

    /// `http://127.0.0.1:PORT`, if plain HTTP is served.
    pub fn http_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}"))
    }

    /// The preferred base URL for tests: plain HTTP if served, else HTTPS.
    pub fn url(&self) -> String {
        self.http_url().unwrap_or_else(|| self.https_url())
    }

    /// [`PveSim::url`] plus `/api2/json`.
    pub fn api_url(&self) -> String {
        format!("{}/api2/json", self.url())
    }

    /// The HTTPS listener's address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The HTTP listener's address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// SHA-256 fingerprint of the HTTPS certificate, `AA:BB:..`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The HTTPS certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The first configured admin (non read-only) token.
    pub fn token(&self) -> Option<&crate::TokenSpec> {
        self.config.tokens.iter().find(|t| !t.read_only)
    }

    /// The first configured read-only token.
    pub fn readonly_token(&self) -> Option<&crate::TokenSpec> {
        self.config.tokens.iter().find(|t| t.read_only)
    }

    /// `Authorization` header value of the admin token (`PVEAPIToken=root@pam!sim=...`).
    pub fn token_header(&self) -> String {
        self.token().map(|t| t.header_value()).unwrap_or_default()
    }

    /// The first password user: `(userid, password)` for `POST /access/ticket`.
    pub fn user_password(&self) -> Option<(&str, &str)> {
        self.config
            .users
            .first()
            .map(|u| (u.userid.as_str(), u.password.as_str()))
    }

    /// The first user with a TOTP second factor ([`crate::TFA_USER`] by default); its
    /// `totp_secret` gives codes through [`crate::totp_code`].
    pub fn totp_user(&self) -> Option<&crate::UserSpec> {
        self.config.users.iter().find(|u| u.totp_secret.is_some())
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.app.lock(now_ms());
        st.generation += 1;
        f(&mut st)
    }

    /// Like [`with`](Self::with), on VM `vmid`.
    fn with_vm<R>(
        &self,
        vmid: u32,
        f: impl FnOnce(&mut crate::model::Vm) -> R,
    ) -> Result<R, SimError> {
        self.with(|st| st.vms.get_mut(&vmid).map(f).ok_or(SimError::NoSuchVm(vmid)))
    }

    // ---- state access -------------------------------------------------------------------

    /// All VMIDs.
    pub fn vm_ids(&self) -> Vec<u32> {
        self.with(|st| st.vms.keys().copied().collect())
    }

    /// A VM's current config (without pending changes).
    pub fn vm_config(&self, vmid: u32) -> Option<BTreeMap<String, String>> {
        self.with(|st| st.vms.get(&vmid).map(|v| v.config.clone()))
    }

    /// `running` or `stopped`.
    pub fn vm_status(&self, vmid: u32) -> Option<&'static str> {
        self.with(|st| {
            st.vms
                .get(&vmid)
                .map(|v| if v.running() { "running" } else { "stopped" })
        })
    }

    /// The VM's lock, if any.
    pub fn vm_lock(&self, vmid: u32) -> Option<String> {
        self.with(|st| st.vms.get(&vmid).and_then(|v| v.lock().map(str::to_string)))
    }

    /// Snapshot names of a VM.
    pub fn snapshot_names(&self, vmid: u32) -> Vec<String> {
        self.with(|st| {
            st.vms
                .get(&vmid)
                .map(|v| v.snapshots.keys().cloned().collect())
                .unwrap_or_default()
        })
    }

    /// Volume ids of backups of a VM, oldest first.
    pub fn backup_volids(&self, vmid: u32) -> Vec<String> {
        self.with(|st| {
            let mut v: Vec<(u64, String)> = st
                .volumes
                .values()
                .filter(|v| v.content == "backup" && v.vmid == Some(vmid))
                .map(|v| (v.ctime, v.volid.clone()))
                .collect();
            v.sort();
            v.into_iter().map(|x| x.1).collect()
        })
    }

    /// A task's exit status once it has stopped (`OK`, `WARNINGS: n` or the error).
    pub fn task_exitstatus(&self, upid: &str) -> Option<String> {
        self.with(|st| {
            st.task_index
                .get(upid)
                .map(|&i| &st.tasks[i])
                .filter(|t| t.finished)
                .map(|t| t.outcome.exitstatus())
        })
    }

    /// The log lines a task has written so far.
    pub fn task_log(&self, upid: &str) -> Vec<String> {
        self.with(|st| {
            let now = now_ms();
            st.task_index
                .get(upid)
                .map(|&i| {
                    st.tasks[i]
                        .visible_log(now)
                        .into_iter()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// A VM's pending changes (`None` marks a pending delete).
    pub fn vm_pending(&self, vmid: u32) -> Option<BTreeMap<String, Option<String>>> {
        self.with(|st| st.vms.get(&vmid).map(|v| v.pending.clone()))
    }

    /// Wait until a task stops (or `timeout` passes) and return its exit status.
    pub async fn wait_task(&self, upid: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.task_exitstatus(upid) {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Number of requests seen (after authentication is not required).
    pub fn request_count(&self) -> u64 {
        self.with(|st| st.faults.requests_seen)
    }

    /// The authenticated API requests served so far, by caller (`user@realm!token` for an
    /// API token, `user@realm` for a ticket), method and route template (such as
    /// `/nodes/{node}/qemu/{vmid}/status/current`), in that order. Requests refused before
    /// authentication (faults, bad credentials) are not in it; counts survive
    /// [`clear_faults`](Self::clear_faults).
    ///
    /// Give each client of a shared simulator its own token (see `SimConfig::tokens`) to
    /// tell their load apart.
    pub fn served_requests(&self) -> Vec<ServedRequests> {
        self.with(|st| {
            st.served
                .iter()
                .map(|((caller, method, route), count)| ServedRequests {
                    caller: caller.clone(),
                    method,
                    route,
                    count: *count,
                })
                .collect()
        })
    }

    /// Add a VM.
    pub fn add_vm(&self, spec: VmSpec) -> Result<(), SimError> {
        self.with(|st| {
            if !st.nodes.contains_key(&spec.node) {
                return Err(SimError::NoSuchNode(spec.node.clone()));
            }
            if st.vms.contains_key(&spec.vmid) {
                return Err(SimError::VmExists(spec.vmid));
            }
            st.insert_vm(spec, now_ms());
            Ok(())
        })
    }

    /// Add `count` generated VMs starting at `first_vmid` (existing VMIDs are replaced).
    pub fn generate_vms(&self, first_vmid: u32, count: usize) {
        self.with(|st| st.generate_vms(first_vmid, count, now_ms()))
    }

    /// Remove a VM outright.
    pub fn remove_vm(&self, vmid: u32) -> Result<(), SimError> {
        self.with(|st| {
            st.vms
                .remove(&vmid)
                .map(|_| ())
                .ok_or(SimError::NoSuchVm(vmid))
        })
    }

    /// Set (or clear, with `None`) a VM's lock now.
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) -> Result<(), SimError> {
        self.with_vm(vmid, |vm| {
            match lock {
                Some(l) => vm.config.insert("lock".into(), l.into()),
                None => vm.config.remove("lock"),
            };
        })
    }

    /// A lock that appears after `after` (e.g. a scheduled backup starting mid-operation),
    /// and goes away after `hold_for` more, if given.
    pub fn schedule_lock(
        &self,
        vmid: u32,
        lock: &str,
        after: Duration,
        hold_for: Option<Duration>,
    ) {
        self.with(|st| {
            let at = now_ms() + after.as_millis() as u64;
            st.scheduled_locks.push(ScheduledLock {
                vmid,
                lock: lock.into(),
                at_ms: at,
                release_ms: hold_for.map(|h| at + h.as_millis() as u64),
                applied: false,
            });
        })
    }

    /// Take a node offline (requests to it answer 595, its guests show `unknown`) or back.
    pub fn set_node_online(&self, node: &str, online: bool) -> Result<(), SimError> {
        self.with(|st| {
            let n = st
                .nodes
                .get_mut(node)
                .ok_or_else(|| SimError::NoSuchNode(node.into()))?;
            n.online = online;
            Ok(())
        })
    }

    /// Make the guest agent of a VM answer or time out.
    pub fn set_agent_responding(&self, vmid: u32, responding: bool) -> Result<(), SimError> {
        self.with_vm(vmid, |vm| vm.agent_responding = responding)
    }

    /// Make a guest ignore ACPI shutdown (shutdown then times out unless `forceStop=1`).
    pub fn set_ignore_shutdown(&self, vmid: u32, ignore: bool) -> Result<(), SimError> {
        self.with_vm(vmid, |vm| vm.ignore_shutdown = ignore)
    }

    /// Resize a storage (make it nearly full to test "no space left").
    pub fn set_storage_total(&self, storage: &str, bytes: u64) -> Result<(), SimError> {
        self.with(|st| {
            st.storages
                .get_mut(storage)
                .ok_or_else(|| SimError::NoSuchStorage(storage.into()))?
                .total = bytes;
            Ok(())
        })
    }

    /// Bytes used on a storage.
    pub fn storage_used(&self, storage: &str) -> u64 {
        self.with(|st| st.storage_used(storage))
    }

    // ---- fault injection ----------------------------------------------------------------

    /// Delay every request by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|st| st.faults.latency = latency)
    }

    /// Answer the next `count` requests matching `on` with `status` (500, 502, 503, ...).
    pub fn fail_requests(&self, on: RequestMatch, status: u16, count: u32) {
        self.with(|st| {
            st.faults.http.push(HttpFault {
                on,
                status,
                remaining: count,
            })
        })
    }

    /// Drop the connection (no answer) for the next `count` requests matching `on`.
    pub fn drop_connections(&self, on: RequestMatch, count: u32) {
        self.with(|st| {
            st.faults.drops.push(DropFault {
                on,
                remaining: count,
            })
        })
    }

    /// The next task of `kind` (`vzdump`, `qmstart`, `qmsnapshot`, ...) ends with `error`.
    pub fn fail_next_task(&self, kind: &str, error: &str) {
        self.with(|st| {
            st.faults.tasks.push(TaskFault {
                kind: kind.into(),
                outcome: Outcome::Error(error.into()),
            })
        })
    }

    /// The next task of `kind` ends with `WARNINGS: n`.
    pub fn warn_next_task(&self, kind: &str, warnings: u32) {
        self.with(|st| {
            st.faults.tasks.push(TaskFault {
                kind: kind.into(),
                outcome: Outcome::Warnings(warnings),
            })
        })
    }

    /// For `lag` after dispatch, a task's status answers 400 (PVE can, right after a task starts).
    pub fn set_task_status_lag(&self, lag: Duration) {
        self.with(|st| st.faults.task_status_lag = lag)
    }

    /// Remove every injected fault (latency, statuses, drops, task outcomes).
    pub fn clear_faults(&self) {
        self.with(|st| {
            let seen = st.faults.requests_seen;
            st.faults = Default::default();
            st.faults.requests_seen = seen;
        })
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for h in &self.servers {
            h.abort();
        }
    }
}

/// One line of [`PveSim::served_requests`]: how many requests a caller made to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServedRequests {
    /// `user@realm!token` (API token) or `user@realm` (ticket).
    pub caller: String,
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// The route template, e.g. `/cluster/resources`.
    pub route: &'static str,
    /// Requests served.
    pub count: u64,
}
