#![doc = include_str!("../README.md")]

mod macros;

pub mod api;
pub mod auth;
pub mod client;
mod de;
pub mod error;
pub mod observe;
pub mod request;
pub mod task;
pub mod tls;
pub mod totp;
pub mod types;

pub use auth::{Auth, SecondFactor};
pub use client::{Client, ClientBuilder, Jitter, RetryPolicy, decode_response};
pub use error::{Error, OptionalExt, Result};
pub use observe::RequestObserver;
pub use task::{TaskHandle, TaskOutcome};
pub use tls::{Fingerprint, Tls};
pub use types::{
    ApiTokenId, DiskBus, DiskSlot, FirewallName, NodeName, SnapshotName, StorageId, Upid, Userid,
    VmId, VolumeId,
};
