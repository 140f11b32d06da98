//! Validated text newtypes: names, comments, interface names, and small enums.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

fn check_no_smuggling(what: &'static str, s: &str) -> Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            what,
            s,
            format!("contains control character {:?}", c),
        ));
    }
    Ok(())
}

fn check_name(what: &'static str, s: &str, max: usize) -> Result<()> {
    check_no_smuggling(what, s)?;
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return Err(Error::invalid(what, s, "must start with a letter")),
    }
    if s.len() < 2 {
        return Err(Error::invalid(what, s, "must be at least 2 characters"));
    }
    if s.len() > max {
        return Err(Error::invalid(
            what,
            s,
            format!("longer than {max} characters"),
        ));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(Error::invalid(
            what,
            s,
            format!("character `{c}` not allowed"),
        ));
    }
    Ok(())
}

/// `FromStr` through the type's `new` and `Display` as its text, for a validated text newtype
/// (`new` validates, `as_str` gives the text back).
macro_rules! text_traits {
    ($ty:ty) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                Self::new(s)
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_traits;

macro_rules! name_type {
    ($(#[$m:meta])* $ty:ident, $what:literal, $max:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Maximum length PVE accepts.
            pub const MAX_LEN: usize = $max;
            /// Validates and wraps a name.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_name($what, &s, $max)?;
                Ok(Self(s))
            }
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        text_traits!($ty);
        impl TryFrom<String> for $ty {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// An IP set name (`[A-Za-z][A-Za-z0-9_-]+`, at most 64 characters).
    IpSetName, "ip set name", 64
);
name_type!(
    /// An alias name (`[A-Za-z][A-Za-z0-9_-]+`, at most 64 characters).
    AliasName, "alias name", 64
);
name_type!(
    /// A security group name (`[A-Za-z][A-Za-z0-9_-]+`, at most 18 characters).
    GroupName, "security group name", 18
);

/// A free-text comment: one line, no control characters, trimmed, not empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comment(String);

impl Comment {
    /// Maximum length accepted (PVE stores comments on one config line).
    pub const MAX_LEN: usize = 4096;
    /// Validates a comment. Leading and trailing spaces are trimmed; an empty comment is an
    /// error (use `None`).
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s: String = s.into();
        check_no_smuggling("comment", &s)?;
        let t = s.trim();
        if t.is_empty() {
            return Err(Error::invalid("comment", &s, "empty"));
        }
        if t.len() > Self::MAX_LEN {
            return Err(Error::invalid("comment", "", "too long"));
        }
        Ok(Self(t.to_string()))
    }
    /// Builds an optional comment from API input: empty or blank text means no comment.
    pub fn optional(s: Option<&str>) -> Result<Option<Self>> {
        match s {
            Some(s) if !s.trim().is_empty() => Self::new(s).map(Some),
            Some(s) => check_no_smuggling("comment", s).map(|()| None),
            None => Ok(None),
        }
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network interface name as used by `-i` (`net0` in guest files, `vmbr0`, `eno1` on hosts).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Iface(String);

impl Iface {
    /// Maximum length PVE accepts.
    pub const MAX_LEN: usize = 20;
    /// Validates an interface name: `[A-Za-z][A-Za-z0-9._-]*`, 2 to 20 characters.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_no_smuggling("interface", &s)?;
        let ok_start = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !ok_start
            || s.len() < 2
            || s.len() > Self::MAX_LEN
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Error::invalid(
                "interface",
                &s,
                "expected [A-Za-z][A-Za-z0-9._-]*, 2 to 20 characters",
            ));
        }
        Ok(Self(s))
    }
    /// The guest NIC index when the name is `netN`.
    pub fn net_index(&self) -> Option<u8> {
        self.0.strip_prefix("net").and_then(|n| {
            if n.len() > 1 && n.starts_with('0') {
                None
            } else {
                n.parse().ok()
            }
        })
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_traits!(Iface);

macro_rules! keyword_enum {
    ($(#[$m:meta])* $ty:ident, $what:literal, { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty { $($(#[$vm])* $v),+ }
        impl $ty {
            /// All values.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
            /// The keyword as written in `.fw` files.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s),+ }
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($ty::$v),)+
                    _ => Err(Error::invalid($what, s, concat!("expected one of:" $(, " ", $s)+))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// What a rule (or a policy) does with a packet.
    Action, "action", {
        /// Let the packet pass.
        Accept = "ACCEPT",
        /// Silently discard it.
        Drop = "DROP",
        /// Discard it and answer (TCP reset / ICMP unreachable).
        Reject = "REJECT",
    }
);

keyword_enum!(
    /// Rule direction.
    Direction, "direction", {
        /// Towards the guest or host.
        In = "IN",
        /// From the guest or host.
        Out = "OUT",
        /// Routed through the host (cluster, host and group rules only).
        Forward = "FORWARD",
    }
);

keyword_enum!(
    /// Log level of a rule or a policy.
    LogLevel, "log level", {
        /// emerg
        Emerg = "emerg",
        /// alert
        Alert = "alert",
        /// crit
        Crit = "crit",
        /// err
        Err = "err",
        /// warning
        Warning = "warning",
        /// notice
        Notice = "notice",
        /// info
        Info = "info",
        /// debug
        Debug = "debug",
        /// no logging
        Nolog = "nolog",
    }
);

/// The final answer for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The packet passes.
    Accept,
    /// The packet is dropped silently.
    Drop,
    /// The packet is dropped and the sender told so.
    Reject,
}

impl From<Action> for Verdict {
    fn from(a: Action) -> Self {
        match a {
            Action::Accept => Verdict::Accept,
            Action::Drop => Verdict::Drop,
            Action::Reject => Verdict::Reject,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "ACCEPT",
            Verdict::Drop => "DROP",
            Verdict::Reject => "REJECT",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_enforce_pattern_and_length() {
        assert!(IpSetName::new("web-servers_1").is_ok());
        assert!(IpSetName::new("1abc").is_err());
        assert!(IpSetName::new("a").is_err());
        assert!(IpSetName::new("a#b").is_err());
        assert!(GroupName::new("a".repeat(18)).is_ok());
        assert!(GroupName::new("a".repeat(19)).is_err());
        assert!(AliasName::new("x\ny").is_err());
    }

    #[test]
    fn comments_reject_newlines_and_control_chars() {
        assert!(Comment::new("ok # hash is fine").is_ok());
        let e = Comment::new("evil\n[RULES]").unwrap_err();
        assert!(e.is_invalid());
        assert!(e.to_string().contains("control character"));
        assert!(Comment::new("bell\u{7}").is_err());
        assert_eq!(Comment::new("  x  ").unwrap().as_str(), "x");
    }

    #[test]
    fn iface_net_index() {
        assert_eq!(Iface::new("net3").unwrap().net_index(), Some(3));
        assert_eq!(Iface::new("vmbr0").unwrap().net_index(), None);
        assert!(Iface::new("net#0").is_err());
    }
}
