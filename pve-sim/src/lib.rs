#![doc = include_str!("../README.md")]

mod api;
mod auth;
mod config;
mod faults;
mod model;
mod seed;
mod server;
mod tls;
mod totp;

pub use auth::{TokenSpec, UserSpec};
pub use config::{
    DEFAULT_PASSWORD, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET, DEFAULT_USER, READONLY_TOKEN_ID,
    READONLY_TOKEN_SECRET, READONLY_USER, Scenario, SimConfig, TFA_PASSWORD, TFA_TOTP_SECRET,
    TFA_USER, VmSpec, mac_for,
};
pub use faults::RequestMatch;
pub use seed::ISO_IMAGES;
pub use server::{PveSim, ServedRequests, SimError, fingerprint_of};
pub use tls::pinned_client_config;
pub use totp::{TOTP_STEP_S, base32_decode, totp_code};

/// Every served route as `(method, path)`, paths as in the PVE API schema (relative to
/// `/api2/json`), e.g. `("GET", "/nodes/{node}/qemu/{vmid}/status/current")`.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    api::route_list()
}
