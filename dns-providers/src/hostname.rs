//! The validated PTR target: [`Hostname`].

use std::fmt;
use std::str::FromStr;

/// Longest hostname, without the trailing dot (RFC 1035 presentation limit).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a [`Hostname`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostnameError {
    /// The input is empty (or only a dot).
    Empty,
    /// Longer than 253 characters (without the trailing dot).
    TooLong {
        /// Length of the input without its trailing dot.
        len: usize,
    },
    /// A label is longer than 63 characters.
    LabelTooLong {
        /// The offending label.
        label: String,
    },
    /// Two dots in a row, or a leading dot.
    EmptyLabel,
    /// More than one trailing dot.
    DoubledTrailingDot,
    /// A fully qualified name was required and the trailing dot is missing.
    MissingTrailingDot,
    /// A character outside `a-z`, `A-Z`, `0-9` and `-` (spaces, underscores, ...).
    InvalidChar {
        /// The offending character.
        ch: char,
    },
    /// A label starts or ends with a hyphen.
    HyphenAtLabelEdge {
        /// The offending label.
        label: String,
    },
    /// A non-ASCII (internationalised) name: convert it to its `xn--` form first.
    Idn,
    /// Only one label: a PTR must point to a fully qualified name.
    SingleLabel,
    /// The last label is all digits, which would read as an IP address (RFC 1123 §2.1).
    NumericTld,
}

impl fmt::Display for HostnameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty hostname"),
            Self::TooLong { len } => {
                write!(
                    f,
                    "hostname is {len} characters long, at most {MAX_HOSTNAME_LEN} allowed"
                )
            }
            Self::LabelTooLong { label } => write!(
                f,
                "label `{label}` is {} characters long, at most {MAX_LABEL_LEN} allowed",
                label.len()
            ),
            Self::EmptyLabel => f.write_str("empty label (leading dot or two dots in a row)"),
            Self::DoubledTrailingDot => f.write_str("more than one trailing dot"),
            Self::MissingTrailingDot => {
                f.write_str("trailing dot missing: a fully qualified name ends with `.`")
            }
            Self::InvalidChar { ch } => write!(
                f,
                "character {ch:?} not allowed: only letters, digits, `-` and `.`"
            ),
            Self::HyphenAtLabelEdge { label } => {
                write!(f, "label `{label}` starts or ends with `-`")
            }
            Self::Idn => f.write_str(
                "internationalised name: convert it to its ASCII `xn--` form before passing it",
            ),
            Self::SingleLabel => f.write_str("a single label is not a fully qualified hostname"),
            Self::NumericTld => f.write_str("the last label is all digits"),
        }
    }
}

impl std::error::Error for HostnameError {}

/// A hostname a PTR record may point to.
///
/// RFC 1123 labels (letters, digits, inner hyphens, 1 to 63 characters), at least two labels,
/// 253 characters at most, ASCII only (IDNs must be converted to `xn--` form by the caller,
/// explicitly), stored lowercase. [`FromStr`] accepts the name with or without one trailing dot;
/// [`Hostname::from_fqdn`] demands the dot. [`Display`](fmt::Display) prints it without the dot
/// and re-parses to the same value; [`Hostname::to_fqdn`] adds the dot.
///
/// ```
/// use pve_vps_dns::Hostname;
/// let h: Hostname = "VM-1.Example.com.".parse()?;
/// assert_eq!(h.to_string(), "vm-1.example.com");
/// assert_eq!(h.to_fqdn(), "vm-1.example.com.");
/// assert!("vm_1.example.com".parse::<Hostname>().is_err());
/// assert!("vm1.example.com..".parse::<Hostname>().is_err());
/// assert!(Hostname::from_fqdn("vm1.example.com").is_err());
/// # Ok::<(), pve_vps_dns::HostnameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    /// Parse a fully qualified name that must end with exactly one dot.
    pub fn from_fqdn(s: &str) -> Result<Self, HostnameError> {
        if !s.ends_with('.') {
            // Report the more precise problem first when the name is broken anyway.
            Self::from_str(s)?;
            return Err(HostnameError::MissingTrailingDot);
        }
        Self::from_str(s)
    }

    /// The name without trailing dot, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with its trailing dot, as DNS servers write it.
    pub fn to_fqdn(&self) -> String {
        format!("{}.", self.0)
    }
}

impl FromStr for Hostname {
    type Err = HostnameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.is_ascii() {
            return Err(HostnameError::Idn);
        }
        let body = match s.strip_suffix('.') {
            Some(rest) if rest.ends_with('.') && !rest.trim_end_matches('.').is_empty() => {
                return Err(HostnameError::DoubledTrailingDot);
            }
            Some(rest) => rest,
            None => s,
        };
        if body.is_empty() {
            return Err(HostnameError::Empty);
        }
        if body.len() > MAX_HOSTNAME_LEN {
            return Err(HostnameError::TooLong { len: body.len() });
        }
        let mut labels = 0usize;
        let mut last = "";
        for label in body.split('.') {
            check_label(label)?;
            labels += 1;
            last = label;
        }
        if labels < 2 {
            return Err(HostnameError::SingleLabel);
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HostnameError::NumericTld);
        }
        Ok(Self(body.to_ascii_lowercase()))
    }
}

fn check_label(label: &str) -> Result<(), HostnameError> {
    if label.is_empty() {
        return Err(HostnameError::EmptyLabel);
    }
    if let Some(ch) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(HostnameError::InvalidChar { ch });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(HostnameError::LabelTooLong {
            label: label.to_owned(),
        });
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(HostnameError::HyphenAtLabelEdge {
            label: label.to_owned(),
        });
    }
    Ok(())
}

impl TryFrom<&str> for Hostname {
    type Error = HostnameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<String> for Hostname {
    type Error = HostnameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Hostname {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        let h: Hostname = "Vm1.Example.COM".parse().unwrap();
        assert_eq!(h.as_str(), "vm1.example.com");
        assert_eq!(h, "vm1.example.com.".parse().unwrap());
        assert_eq!(h, Hostname::from_fqdn("vm1.example.com.").unwrap());
        assert!("xn--bcher-kva.example".parse::<Hostname>().is_ok());
    }

    #[test]
    fn rejects_bad_input() {
        use HostnameError::*;
        let long_label = "a".repeat(64);
        let cases: Vec<(String, HostnameError)> = vec![
            ("".into(), Empty),
            (".".into(), Empty),
            ("vm 1.example.com".into(), InvalidChar { ch: ' ' }),
            ("vm_1.example.com".into(), InvalidChar { ch: '_' }),
            ("vm1.example.com..".into(), DoubledTrailingDot),
            ("vm1..example.com".into(), EmptyLabel),
            (".vm1.example.com".into(), EmptyLabel),
            (
                format!("{long_label}.example.com"),
                LabelTooLong {
                    label: long_label.clone(),
                },
            ),
            (
                "-vm.example.com".into(),
                HyphenAtLabelEdge {
                    label: "-vm".into(),
                },
            ),
            ("bücher.example".into(), Idn),
            ("localhost".into(), SingleLabel),
            ("192.0.2.1".into(), NumericTld),
            ("vm1.example.com\n".into(), InvalidChar { ch: '\n' }),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Hostname>(), Err(want), "{input:?}");
        }
        let too_long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(too_long.parse::<Hostname>(), Err(TooLong { .. })));
        assert_eq!(
            Hostname::from_fqdn("vm1.example.com"),
            Err(MissingTrailingDot)
        );
    }
}
