//! Lenient decoding of PVE's loosely typed JSON (numbers and booleans as strings).

use serde::Deserialize;

/// A scalar that may arrive as a number, a string or a boolean.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum Lenient {
    Bool(bool),
    Num(u64),
    Str(String),
}

impl Lenient {
    /// The value as text (`true` is `1`).
    pub(crate) fn text(&self) -> String {
        match self {
            Lenient::Bool(b) => u8::from(*b).to_string(),
            Lenient::Num(n) => n.to_string(),
            Lenient::Str(s) => s.clone(),
        }
    }
}
