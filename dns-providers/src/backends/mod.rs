//! Provider backends, one cargo feature each.

#[cfg(feature = "cloudflare")]
pub(crate) mod cloudflare;
#[cfg(feature = "powerdns")]
pub(crate) mod powerdns;
