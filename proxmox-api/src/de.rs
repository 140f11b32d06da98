//! Lenient decoders for PVE's loosely typed JSON (numbers and booleans sent as strings).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

struct NumVisitor;

#[derive(Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
    None,
}

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a numeric string, a boolean or null")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num::U(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num::I(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        Ok(Num::F(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Num, E> {
        Ok(Num::U(u64::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(Num::None);
        }
        if let Ok(u) = t.parse::<u64>() {
            return Ok(Num::U(u));
        }
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Num::I(i));
        }
        t.parse::<f64>()
            .map(Num::F)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num::None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Num, E> {
        Ok(Num::None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Num, D::Error> {
        d.deserialize_any(NumVisitor)
    }
}

fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Num, D::Error> {
    d.deserialize_any(NumVisitor)
}

/// `Option<u64>` from a number or numeric string; floats are truncated, negatives rejected.
pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match num(d)? {
        Num::U(u) => Some(u),
        Num::I(_) => return Err(de::Error::custom("negative value where unsigned expected")),
        Num::F(f) if f >= 0.0 && f.is_finite() => Some(f as u64),
        Num::F(_) => return Err(de::Error::custom("invalid unsigned value")),
        Num::None => None,
    })
}

/// `Option<i64>` from a number or numeric string.
pub(crate) fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match num(d)? {
        Num::U(u) => Some(i64::try_from(u).map_err(de::Error::custom)?),
        Num::I(i) => Some(i),
        Num::F(f) if f.is_finite() => Some(f as i64),
        Num::F(_) => return Err(de::Error::custom("invalid integer")),
        Num::None => None,
    })
}

/// `Option<f64>` from a number or numeric string.
pub(crate) fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match num(d)? {
        Num::U(u) => Some(u as f64),
        Num::I(i) => Some(i as f64),
        Num::F(f) => Some(f),
        Num::None => None,
    })
}

/// `u64` (required) from a number or numeric string.
pub(crate) fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_u64(d)?.ok_or_else(|| de::Error::custom("missing number"))
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, 0/1, or a boolean string")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v != 0))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v != 0))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v != 0.0))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        // The empty string is Perl's false: PVE 5 answered `"template": ""` for a VM that
        // is not a template (recorded in tests/fixtures/real).
        if v.trim().is_empty() {
            return Ok(Some(false));
        }
        parse_bool(v)
            .map(Some)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(BoolVisitor)
    }
}

/// Parse PVE's boolean spellings (`1`, `0`, `yes`, `no`, `on`, `off`, `true`, `false`).
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// `Option<bool>` from a boolean, 0/1 or string (the empty string, Perl's false, is `false`).
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(BoolVisitor)
}

/// `bool` defaulting to false when null.
pub(crate) fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_bool(d)?.unwrap_or(false))
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(if v { "1".into() } else { "0".into() }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StringVisitor)
    }
}

/// A string from a string or a number (PVE sometimes sends names as numbers).
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(StringVisitor)
}

/// Render a scalar JSON value as PVE would in its config files.
pub(crate) fn value_to_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
        serde_json::Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// A secret string (wrapped straight away so it never sits in a plain `String` field).
pub(crate) fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<secrecy::SecretString, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    Ok(secrecy::SecretString::from(s))
}

/// An optional secret string.
pub(crate) fn opt_secret<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<secrecy::SecretString>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(s.map(secrecy::SecretString::from))
}

/// Newtypes that run the lenient decoders above through `Deserialize`, for hand-written
/// visitors (`MapAccess::next_value::<OptU64>()`).
pub(crate) struct OptU64(pub(crate) Option<u64>);
pub(crate) struct OptF64(pub(crate) Option<f64>);
pub(crate) struct OptStr(pub(crate) Option<String>);
pub(crate) struct Flag(pub(crate) bool);

impl<'de> serde::Deserialize<'de> for OptU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opt_u64(d).map(OptU64)
    }
}
impl<'de> serde::Deserialize<'de> for OptF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opt_f64(d).map(OptF64)
    }
}
impl<'de> serde::Deserialize<'de> for OptStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        opt_string(d).map(OptStr)
    }
}
impl<'de> serde::Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool(d).map(Flag)
    }
}

/// A map key, borrowed from the input when it holds no escapes (no allocation per key).
pub(crate) struct Key<'de>(pub(crate) std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Flags {
        #[serde(default, deserialize_with = "super::bool")]
        template: bool,
        #[serde(default, deserialize_with = "super::opt_bool")]
        shared: Option<bool>,
    }

    fn flags(json: &str) -> Result<Flags, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_string_is_perls_false() {
        // PVE 5.0's status/current of a VM that is not a template.
        let f = flags(r#"{"template": "", "shared": ""}"#).unwrap();
        assert!(!f.template);
        assert_eq!(f.shared, Some(false));
        let f = flags(r#"{"template": " ", "shared": null}"#).unwrap();
        assert!(!f.template);
        assert_eq!(f.shared, None);
    }

    #[test]
    fn booleans_in_every_spelling_still_decode() {
        for (json, want) in [
            (r#"{"template": 1}"#, true),
            (r#"{"template": "1"}"#, true),
            (r#"{"template": true}"#, true),
            (r#"{"template": "yes"}"#, true),
            (r#"{"template": 0}"#, false),
            (r#"{"template": "off"}"#, false),
            (r#"{}"#, false),
        ] {
            assert_eq!(flags(json).unwrap().template, want, "{json}");
        }
    }

    #[test]
    fn other_strings_are_still_refused() {
        let err = flags(r#"{"template": "maybe"}"#).unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }
}
