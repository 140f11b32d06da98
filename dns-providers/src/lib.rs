#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod backends;
pub mod conformance;
mod error;
mod hostname;
#[cfg(feature = "http")]
mod http;
mod memory;
mod ptr;
mod scope;
mod zone;

pub use api::{Change, Ptr, PtrChange, PtrStatus, ReverseDns};
pub use error::{Error, Result};
pub use hostname::{Hostname, HostnameError, MAX_HOSTNAME_LEN, MAX_LABEL_LEN};
#[cfg(feature = "http")]
pub use http::RetryPolicy;
pub use memory::InMemory;
pub use ptr::{canonical_ip, ip_from_ptr_name, ptr_name};
pub use scope::{Scoped, check_allowed};
pub use zone::{PtrLocation, ReverseZone, ZoneName, Zones};

#[cfg(feature = "cloudflare")]
pub use backends::cloudflare::Cloudflare;
#[cfg(feature = "hestia")]
pub use backends::hestia::{Hestia, HestiaAuth};
#[cfg(feature = "powerdns")]
pub use backends::powerdns::PowerDns;
#[cfg(feature = "whmcs-ticket")]
pub use backends::whmcs::{TicketPriority, TicketRequest, TicketTarget, WhmcsTicket, ticket_text};

/// Re-exported so callers can build API keys and tokens without naming `secrecy` themselves.
pub use secrecy::SecretString;
