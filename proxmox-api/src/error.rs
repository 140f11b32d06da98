//! The crate's single error type.

use std::collections::BTreeMap;
use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to Proxmox VE.
///
/// Secrets never appear in any variant: request bodies are not kept, and URLs carry no
/// credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identifier or parameter failed validation; no request was sent.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidInput {
        /// What was being parsed (`vmid`, `node name`, ...).
        kind: &'static str,
        /// The rejected input (never a secret).
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The client configuration is unusable (bad URL, bad CA PEM, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server answered with a non-success HTTP status.
    #[error("{method} {path} failed with HTTP {status}: {message}")]
    Api {
        /// HTTP method of the failed request.
        method: String,
        /// Request path (without host or query).
        path: String,
        /// HTTP status code.
        status: u16,
        /// PVE's `message` field, or the HTTP reason phrase.
        message: String,
        /// Per-parameter errors (`errors` field of the PVE answer).
        errors: BTreeMap<String, String>,
    },
    /// The leaf certificate's SHA-256 fingerprint did not match the pinned one.
    #[error("tls certificate fingerprint mismatch: expected `{expected}`, got `{actual}`")]
    FingerprintMismatch {
        /// Pinned fingerprint.
        expected: String,
        /// Fingerprint the server presented.
        actual: String,
    },
    /// A transport-level failure (connect, TLS, timeout, protocol).
    #[error("http transport error")]
    Transport(#[source] reqwest::Error),
    /// The answer is JSON but does not fit the expected type (or is cut short).
    #[error("cannot decode answer of {} at `{field}`", endpoint(method, path))]
    Decode {
        /// HTTP method of the request (empty for [`decode_response`](crate::decode_response)).
        method: String,
        /// Request path.
        path: String,
        /// Where in the body decoding failed (`data[3].maxmem`, `.` for the top level).
        field: String,
        /// Underlying JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is not a PVE answer at all: empty, not JSON (an HTML page from a reverse
    /// proxy), or JSON without the `data` member.
    #[error("{} answered HTTP {status} with {reason}", endpoint(method, path))]
    InvalidBody {
        /// HTTP method of the request.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status of the answer.
        status: u16,
        /// What was wrong (`an empty body`, `a non-JSON body (text/html)`, ...).
        reason: String,
    },
    /// The guest agent answered with an error object instead of a result (PVE 6 passes QEMU
    /// guest agent errors through inside `result` with HTTP 200).
    #[error("guest agent of {path} failed: {class}: {message}")]
    GuestAgent {
        /// Request path.
        path: String,
        /// The agent's error class (`Unsupported`, `GenericError`, ...).
        class: String,
        /// The agent's description.
        message: String,
    },
    /// Login with ticket credentials failed.
    #[error("login failed: {0}")]
    Login(String),
    /// A task finished with a non-OK exit status.
    #[error("task `{upid}` failed: {exit_status}")]
    TaskFailed {
        /// The task's UPID.
        upid: String,
        /// PVE's exit status text.
        exit_status: String,
        /// Last lines of the task log.
        log_tail: Vec<String>,
    },
    /// Waiting for a task exceeded the configured timeout.
    #[error("task `{upid}` still running after {waited:?}")]
    TaskTimeout {
        /// The task's UPID.
        upid: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The server redirected the request; redirects are never followed (credentials would leak).
    #[error(
        "server answered with redirect HTTP {status} to `{location}`; redirects are not followed"
    )]
    Redirect {
        /// HTTP status (3xx).
        status: u16,
        /// `Location` header, if any.
        location: String,
    },
}

fn endpoint(method: &str, path: &str) -> String {
    if method.is_empty() {
        path.to_owned()
    } else {
        format!("{method} {path}")
    }
}

impl Error {
    pub(crate) fn invalid(
        kind: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            kind,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// PVE's error message (API errors and task failures).
    pub fn message(&self) -> Option<&str> {
        match self {
            Error::Api { message, .. } => Some(message),
            Error::TaskFailed { exit_status, .. } => Some(exit_status),
            _ => None,
        }
    }

    /// Per-parameter errors reported by PVE (empty when none).
    pub fn param_errors(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Error::Api { errors, .. } => Some(errors),
            _ => None,
        }
    }

    /// The object does not exist: HTTP 404, or PVE's HTTP 500 "does not exist" / "no such".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Api { status: 404, .. } => true,
            Error::Api {
                status: 500,
                message,
                ..
            } => {
                let m = message.to_ascii_lowercase();
                m.contains("does not exist") || m.contains("no such")
            }
            _ => false,
        }
    }

    /// A PVE lock prevented the operation (`VM is locked (backup)`, `can't lock file ... got
    /// timeout`), reported as an HTTP error or as a task's exit status.
    pub fn is_locked(&self) -> bool {
        match self {
            Error::Api { message, .. } => is_lock_message(message),
            Error::TaskFailed { exit_status, .. } => is_lock_message(exit_status),
            _ => false,
        }
    }

    /// Authentication or authorisation failed (HTTP 401/403, or login failure).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Error::Api {
                status: 401 | 403,
                ..
            } | Error::Login(_)
        )
    }

    /// Retrying the same idempotent request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => is_retryable_status(*status),
            Error::Transport(e) => e.is_connect() || e.is_timeout(),
            _ => false,
        }
    }
}

/// Turn "not found" into `None`, like kube-rs' `get_opt`:
/// `vm.config().await.optional()?` is `Ok(None)` for a VM that does not exist.
pub trait OptionalExt<T> {
    /// `Ok(Some(v))` for success, `Ok(None)` when [`Error::is_not_found`], other errors unchanged.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExt<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn is_lock_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    (m.contains("is locked") && (m.contains("vm ") || m.contains("ct ") || m.contains("(")))
        || (m.contains("can't lock file") || m.contains("cannot lock file"))
}

pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504 | 595 | 596)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, message: &str) -> Error {
        Error::Api {
            method: "GET".into(),
            path: "/x".into(),
            status,
            message: message.into(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn optional() {
        let nf: Result<u8> = Err(api(500, "no such VM ('105')"));
        assert!(nf.optional().unwrap().is_none());
        let other: Result<u8> = Err(api(500, "VM is locked (backup)"));
        assert!(other.optional().is_err());
        assert_eq!(Ok::<u8, Error>(3).optional().unwrap(), Some(3));
    }

    #[test]
    fn predicates() {
        assert!(api(404, "Not Found").is_not_found());
        assert!(
            api(
                500,
                "Configuration file 'nodes/pve/qemu-server/105.conf' does not exist"
            )
            .is_not_found()
        );
        assert!(api(500, "no such VM ('105')").is_not_found());
        assert!(!api(500, "internal error").is_not_found());
        assert!(api(500, "VM is locked (backup)").is_locked());
        assert!(
            api(
                500,
                "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"
            )
            .is_locked()
        );
        assert!(!api(500, "VM 100 not running").is_locked());
        let task = Error::TaskFailed {
            upid: "u".into(),
            exit_status: "VM is locked (snapshot)".into(),
            log_tail: vec![],
        };
        assert!(task.is_locked());
        assert!(api(401, "authentication failure").is_auth());
        assert!(api(403, "Permission check failed").is_auth());
        assert!(!api(500, "x").is_auth());
        for s in [429, 502, 503, 504, 595, 596] {
            assert!(api(s, "x").is_retryable(), "{s}");
        }
        for s in [400, 401, 404, 500] {
            assert!(!api(s, "x").is_retryable(), "{s}");
        }
    }
}
