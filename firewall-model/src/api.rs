//! Conversion to and from the PVE API's rule objects (`.../firewall/rules` endpoints).
//!
//! Input is lenient (numbers and booleans may be strings, empty strings mean unset); output is
//! strict. Every string field goes through the same validating types as the `.fw` parser, so a
//! newline, `#` or control character in any field is an error, not a config line.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lenient::Lenient;
use crate::macros::MacroName;
use crate::model::{FileKind, Rule, RuleKind, SourceLine};
use crate::text::{Action, Comment, Direction, GroupName};

/// A rule object as the PVE API sends and accepts it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRule {
    /// `in`, `out`, `forward` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `ACCEPT`/`DROP`/`REJECT`, or the group name for `type: group`.
    pub action: String,
    /// Macro name.
    #[serde(rename = "macro", default, skip_serializing_if = "Option::is_none")]
    pub macro_name: Option<String>,
    /// Interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Destination address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Protocol name or number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub proto: Option<String>,
    /// Source ports.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub sport: Option<String>,
    /// Destination ports.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub dport: Option<String>,
    /// ICMP type.
    #[serde(
        rename = "icmp-type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_string"
    )]
    pub icmp_type: Option<String>,
    /// Log level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// 1 enabled, 0 disabled (a missing value means disabled, as on PVE's create call).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_u64"
    )]
    pub enable: Option<u64>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Position in the list (answers only; PVE ignores it on create).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_u64"
    )]
    pub pos: Option<u64>,
    /// Config digest for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

fn lenient_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    Ok(Option::<Lenient>::deserialize(d)?.map(|l| l.text()))
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    match Option::<Lenient>::deserialize(d)? {
        None => Ok(None),
        Some(l) => {
            let t = l.text();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a number")))
        }
    }
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn field<T: std::str::FromStr<Err = Error>>(s: &Option<String>) -> Result<Option<T>> {
    present(s).map(str::parse).transpose()
}

impl ApiRule {
    /// Decodes one rule object.
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Decodes the answer of `GET .../firewall/rules` (an array, or the `{"data": [...]}`
    /// envelope) into rules ordered by `pos`.
    pub fn list_from_json(text: &str) -> Result<Vec<ApiRule>> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Bare(Vec<ApiRule>),
            Envelope { data: Vec<ApiRule> },
        }
        let mut v = match serde_json::from_str(text)? {
            Answer::Bare(v) | Answer::Envelope { data: v } => v,
        };
        v.sort_by_key(|r| r.pos.unwrap_or(u64::MAX));
        Ok(v)
    }

    /// Converts to the model, validating as the `.fw` parser does for a file of `kind`.
    pub fn to_rule(&self, kind: FileKind, in_group: bool) -> Result<Rule> {
        let rk = match self.kind.to_ascii_lowercase().as_str() {
            "group" => RuleKind::Group(GroupName::new(self.action.as_str())?),
            t => {
                let dir: Direction = t.to_ascii_uppercase().parse()?;
                let action: Action = self.action.parse()?;
                match present(&self.macro_name) {
                    Some(m) => RuleKind::Macro(dir, MacroName::new(m)?, action),
                    None => RuleKind::Action(dir, action),
                }
            }
        };
        let enabled = match self.enable {
            None | Some(0) => false,
            Some(1) => true,
            Some(n) => return Err(Error::invalid("enable", &n.to_string(), "expected 0 or 1")),
        };
        let rule = Rule {
            enabled,
            kind: rk,
            iface: field(&self.iface)?,
            source: field(&self.source)?,
            dest: field(&self.dest)?,
            proto: field(&self.proto)?,
            dport: None,
            sport: field(&self.sport)?,
            icmp_type: field(&self.icmp_type)?,
            log: field(&self.log)?,
            comment: Comment::optional(self.comment.as_deref())?,
            line: SourceLine(None),
        };
        let mut rule = rule;
        if let Some(d) = present(&self.dport) {
            crate::parse::set_dport(&mut rule, d)?;
        }
        rule.validate(kind, in_group)?;
        Ok(rule)
    }

    /// Converts a model rule into the object to send (strict: `enable` always present).
    pub fn from_rule(rule: &Rule) -> Self {
        let (kind, action, macro_name) = match &rule.kind {
            RuleKind::Action(d, a) => (d.as_str().to_ascii_lowercase(), a.to_string(), None),
            RuleKind::Macro(d, m, a) => (
                d.as_str().to_ascii_lowercase(),
                a.to_string(),
                Some(m.to_string()),
            ),
            RuleKind::Group(g) => ("group".to_string(), g.to_string(), None),
        };
        fn d<T: std::fmt::Display>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(ToString::to_string)
        }
        ApiRule {
            kind,
            action,
            macro_name,
            iface: d(&rule.iface),
            source: d(&rule.source),
            dest: d(&rule.dest),
            proto: d(&rule.proto),
            sport: d(&rule.sport),
            dport: d(&rule.dport),
            icmp_type: d(&rule.icmp_type),
            log: d(&rule.log),
            enable: Some(u64::from(rule.enabled)),
            comment: d(&rule.comment),
            pos: None,
            digest: None,
        }
    }
}

impl From<&Rule> for ApiRule {
    fn from(r: &Rule) -> Self {
        ApiRule::from_rule(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_rule_line;

    #[test]
    fn lenient_input_strict_output() {
        let j = r#"{"type":"in","action":"ACCEPT","macro":"SSH","source":"+dc/admins","enable":"1","pos":"3","dport":"","log":"nolog","comment":"admins","digest":"abc"}"#;
        let a = ApiRule::from_json(j).unwrap();
        let r = a.to_rule(FileKind::Guest, false).unwrap();
        assert_eq!(
            r.to_string(),
            "IN SSH(ACCEPT) -source +dc/admins -log nolog # admins"
        );
        let back = ApiRule::from_rule(&r);
        assert_eq!(back.enable, Some(1));
        assert_eq!(back.to_rule(FileKind::Guest, false).unwrap(), r);
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["type"], "in");
        assert_eq!(json["macro"], "SSH");
        assert!(json.get("pos").is_none());
    }

    #[test]
    fn numbers_as_numbers_and_groups() {
        let a = ApiRule::from_json(
            r#"{"type":"in","action":"DROP","proto":6,"dport":22,"enable":1,"pos":0}"#,
        )
        .unwrap();
        assert_eq!(
            a.to_rule(FileKind::Guest, false).unwrap().to_string(),
            "IN DROP -p 6 -dport 22"
        );
        let g =
            ApiRule::from_json(r#"{"type":"group","action":"web","iface":"net0","enable":true}"#)
                .unwrap();
        assert_eq!(
            g.to_rule(FileKind::Guest, false).unwrap().to_string(),
            "GROUP web -i net0"
        );
        let off = ApiRule::from_json(r#"{"type":"out","action":"ACCEPT"}"#).unwrap();
        assert!(!off.to_rule(FileKind::Guest, false).unwrap().enabled);
    }

    #[test]
    fn smuggling_is_a_clear_error() {
        for j in [
            r#"{"type":"in","action":"ACCEPT","comment":"x\n[RULES]\nIN ACCEPT"}"#,
            r#"{"type":"in","action":"ACCEPT","iface":"net0#"}"#,
            r#"{"type":"in","action":"ACCEPT","source":"1.2.3.4 -dport 22"}"#,
            r#"{"type":"in","action":"ACCEPT","proto":"tcp","dport":"22\r"}"#,
            r#"{"type":"group","action":"web\nIN ACCEPT"}"#,
        ] {
            let e = ApiRule::from_json(j)
                .unwrap()
                .to_rule(FileKind::Guest, false)
                .unwrap_err();
            assert!(e.is_invalid(), "{j}: {e}");
        }
    }

    #[test]
    fn list_sorted_by_pos() {
        let l = ApiRule::list_from_json(r#"{"data":[{"type":"in","action":"DROP","pos":1},{"type":"in","action":"ACCEPT","pos":"0"}]}"#).unwrap();
        assert_eq!(l[0].action, "ACCEPT");
        let r = parse_rule_line("IN ACCEPT", FileKind::Guest, false).unwrap();
        assert_eq!(ApiRule::from(&r).kind, "in");
    }
}
