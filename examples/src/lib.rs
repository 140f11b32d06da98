//! The client-area portal, the scheduler and small examples built on the workspace's crates.
//!
//! * `cargo run -p examples --bin portal` — the web client area (on the embedded simulator when
//!   no cluster is configured).
//! * `cargo run -p examples --bin cron` — the scheduled work.
//! * `cargo run -p examples --example <name>` — the small examples of the docs.

pub mod clusters;
pub mod metrics;
pub mod portal;
pub mod progress;
pub mod scheduler;

/// The workspace README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

use pve_vps_api::{Auth, Client, Tls};
use pve_vps_sim::{PveSim, SimConfig};

/// A client for the cluster named by `PVE_URL`, `PVE_TOKEN_ID`, `PVE_TOKEN_SECRET` and
/// `PVE_FINGERPRINT`, or for an embedded `pve-sim` demo (returned too, so it lives as long as the
/// client is used) when `PVE_URL` is not set. The small examples start with it.
pub async fn cluster_or_sim() -> Result<(Client, Option<PveSim>), Box<dyn std::error::Error>> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(url) = var("PVE_URL") {
        let id = var("PVE_TOKEN_ID").ok_or("PVE_TOKEN_ID is not set")?;
        let secret = var("PVE_TOKEN_SECRET").ok_or("PVE_TOKEN_SECRET is not set")?;
        let mut b = Client::builder(url).auth(Auth::api_token(&id, secret)?);
        if let Some(fp) = var("PVE_FINGERPRINT") {
            b = b.tls(Tls::Pinned(fp.parse()?));
        }
        return Ok((b.build()?, None));
    }
    let sim = PveSim::start(SimConfig::default()).await?;
    let client = sim_client(&sim)?;
    Ok((client, Some(sim)))
}

/// A client for a running `pve-sim`: its API token, its certificate pinned.
pub fn sim_client(sim: &PveSim) -> Result<Client, Box<dyn std::error::Error>> {
    Ok(sim_client_builder(sim)?.build()?)
}

/// The builder of [`sim_client`], for more settings (an observer, timeouts).
pub fn sim_client_builder(
    sim: &PveSim,
) -> Result<pve_vps_api::ClientBuilder, Box<dyn std::error::Error>> {
    let token = sim.token().ok_or("the simulator has no token")?;
    Ok(Client::builder(sim.https_url())
        .auth(Auth::api_token(
            &format!("{}!{}", token.userid, token.tokenid),
            token.secret.clone(),
        )?)
        .tls(Tls::Pinned(sim.fingerprint().parse()?)))
}
