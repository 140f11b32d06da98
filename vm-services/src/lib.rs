#![doc = include_str!("../README.md")]

pub mod error;
pub mod ids;
pub mod permissions;
pub mod product;
pub mod pve;
pub mod service;

pub use error::{Error, Result};
pub mod backups;
pub mod charts;
pub mod console;
pub mod firewall;
pub mod iso;
pub mod notify;
pub mod overview;
pub mod password;
pub mod quota;
pub mod snapshots;

/// Re-exported for `SecretString` in passwords and notifications.
pub use secrecy;
/// Re-exported so callers pass `now` and offsets without a direct dependency.
pub use time;
pub mod reconcile;
