//! Provider backends, one cargo feature each.

#[cfg(feature = "cloudflare")]
pub(crate) mod cloudflare;
#[cfg(feature = "hestia")]
pub(crate) mod hestia;
#[cfg(feature = "powerdns")]
pub(crate) mod powerdns;
#[cfg(feature = "whmcs-ticket")]
pub(crate) mod whmcs;
