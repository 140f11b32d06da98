#![doc = include_str!("../README.md")]

pub mod backups;
pub mod charts;
pub mod console;
pub mod error;
pub mod firewall;
pub mod ids;
pub mod iso;
pub mod leases;
pub mod notify;
pub mod outcomes;
pub mod overview;
pub mod password;
pub mod permissions;
pub mod product;
pub mod pve;
pub mod quota;
pub mod reconcile;
pub mod reinstall;
pub mod service;
pub mod snapshots;
pub mod stores;
pub mod tasks;

pub mod shell;

pub use shell::{
    ClientArea, ClientAreaBuilder, Clock, Fleet, ManualClock, OverviewHub, ServiceStatus,
    SystemClock,
};

pub use error::{Error, Result};

/// Re-exported so callers pass `now` and offsets without a direct dependency.
pub use time;

/// Re-exported for the `SecretString` of passwords and notifications.
pub use secrecy;
