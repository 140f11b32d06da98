//! The crate's one error type.

use std::fmt;

/// One rejected line of a `.fw` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// Why the line was rejected.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value (address, port list, name, comment ...) does not follow PVE's rules.
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        /// What kind of value (for example `port list`).
        what: &'static str,
        /// The offending input (control characters escaped).
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A `.fw` file had bad lines (strict mode reports all of them).
    #[error("{} bad line(s) in firewall config, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Parse(Vec<LineError>),
    /// A JSON document (API rule, packet, topology) could not be decoded.
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    /// A reference (alias, IP set, group, guest) names something that does not exist.
    #[error("unknown {what} `{name}`")]
    Unknown {
        /// What kind of thing.
        what: &'static str,
        /// The name looked up.
        name: String,
    },
}

impl Error {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            value: value.escape_debug().to_string(),
            reason: reason.into(),
        }
    }

    /// True for a validation failure of a single value.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Error::Invalid { .. })
    }

    /// True for a `.fw` parse failure.
    pub fn is_parse(&self) -> bool {
        matches!(self, Error::Parse(_))
    }

    /// True when a name could not be resolved.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Error::Unknown { .. })
    }

    /// The bad lines, when this is a parse error.
    pub fn line_errors(&self) -> &[LineError] {
        match self {
            Error::Parse(v) => v,
            _ => &[],
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
