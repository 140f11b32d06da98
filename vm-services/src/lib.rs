#![doc = include_str!("../README.md")]

pub mod error;
pub mod ids;
pub mod permissions;
pub mod product;
pub mod pve;
pub mod service;

pub use error::{Error, Result};
pub mod charts;
pub mod console;
pub mod firewall;
pub mod iso;
pub mod notify;
pub mod overview;
pub mod password;
pub mod quota;
pub mod snapshots;
