//! Provider backends, one cargo feature each.

#[cfg(feature = "powerdns")]
pub(crate) mod powerdns;
