//! The crate's one error type.

use std::net::IpAddr;
use std::time::Duration;

use crate::hostname::HostnameError;

/// Everything that can go wrong setting reverse DNS.
///
/// Input errors ([`Error::is_invalid_input`]) and scope errors ([`Error::is_out_of_scope`]) are
/// raised before any request reaches a provider. Provider errors name the provider and keep its
/// message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hostname is not a valid PTR target.
    #[error("invalid hostname `{input}`: {reason}")]
    InvalidHostname {
        /// What the caller passed.
        input: String,
        /// Why it was refused.
        reason: HostnameError,
    },
    /// A zone name or zone configuration is invalid.
    #[error("invalid reverse zone `{zone}`: {reason}")]
    InvalidZone {
        /// The zone as written.
        zone: String,
        /// Why it was refused.
        reason: String,
    },
    /// No configured zone holds the PTR of this address.
    #[error("no configured reverse zone holds the PTR of `{ip}`")]
    NoZone {
        /// The address.
        ip: IpAddr,
    },
    /// The address is not one of the VM's.
    #[error("address `{ip}` is not one of this VM's addresses")]
    NotAllowed {
        /// The address.
        ip: IpAddr,
    },
    /// A batch names the same address twice.
    #[error("address `{ip}` appears twice in one batch")]
    DuplicateAddress {
        /// The address.
        ip: IpAddr,
    },
    /// The provider cannot do this (e.g. a `/` in a HestiaCP zone name).
    #[error("{provider}: unsupported: {what}")]
    Unsupported {
        /// Provider name.
        provider: &'static str,
        /// What is not supported.
        what: String,
    },
    /// The provider answered with an error.
    #[error("{provider} error{}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(), code.as_ref().map(|c| format!(" [code {c}]")).unwrap_or_default())]
    Provider {
        /// Provider name.
        provider: &'static str,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// The provider's own error code (Cloudflare code, HestiaCP return code, ...).
        code: Option<String>,
        /// The provider's message, verbatim.
        message: String,
    },
    /// Still rate limited (HTTP 429) after the bounded retries.
    #[error("{provider}: rate limited, retries exhausted")]
    RateLimited {
        /// Provider name.
        provider: &'static str,
        /// The last `Retry-After` the provider asked for.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or its answer not read.
    #[error("{provider}: request failed")]
    Transport {
        /// Provider name.
        provider: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The provider's answer was not in the expected shape.
    #[error("{provider}: unexpected answer: {message}")]
    Decode {
        /// Provider name.
        provider: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The input (hostname, zone or batch) was invalid; nothing was sent.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidHostname { .. } | Self::InvalidZone { .. } | Self::DuplicateAddress { .. }
        )
    }

    /// The address is not the VM's or outside every configured zone; nothing was sent.
    pub fn is_out_of_scope(&self) -> bool {
        matches!(self, Self::NoZone { .. } | Self::NotAllowed { .. })
    }

    /// The provider kept answering 429.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }

    /// The provider answered 404 (or its equivalent "not found" code).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Provider {
                status: Some(404),
                ..
            }
        )
    }

    /// Worth retrying later: rate limits, 5xx and transport failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport { .. } => true,
            Self::Provider {
                status: Some(s), ..
            } => *s >= 500,
            _ => false,
        }
    }

    /// The provider that failed, for provider-side errors.
    pub fn provider(&self) -> Option<&'static str> {
        match self {
            Self::Unsupported { provider, .. }
            | Self::Provider { provider, .. }
            | Self::RateLimited { provider, .. }
            | Self::Transport { provider, .. }
            | Self::Decode { provider, .. } => Some(provider),
            _ => None,
        }
    }

    pub(crate) fn invalid_hostname(input: &str, reason: HostnameError) -> Self {
        Self::InvalidHostname {
            input: input.to_owned(),
            reason,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
