//! The PVE macro table (`data/macros.json`, a facts-only derivative of pve-firewall's table).
//!
//! Each macro is a list of (proto, dport, sport) templates. IPv6 uses the `v6` entry when the
//! macro has one and the `v4` entry otherwise; `icmp` templates never match IPv6 and `icmpv6`
//! templates never match IPv4. For ICMP templates the `dport` field names the ICMP type.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::addr::Family;
use crate::error::{Error, Result};
use crate::proto::{IcmpType, PortList, Protocol};

const MACROS_JSON: &str = include_str!("../data/macros.json");

/// One template of a macro.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroTemplate {
    /// Protocol.
    pub proto: Protocol,
    /// Destination ports (port protocols only).
    pub dport: Option<PortList>,
    /// Source ports (port protocols only).
    pub sport: Option<PortList>,
    /// ICMP type (ICMP protocols only).
    pub icmp_type: Option<IcmpType>,
}

/// A macro: name and its IPv4 and IPv6 templates.
#[derive(Clone, Debug)]
pub struct MacroDef {
    /// Canonical name (`SSH`, `HTTP` ...).
    pub name: String,
    /// Templates used for IPv4 packets.
    pub v4: Vec<MacroTemplate>,
    /// Templates used for IPv6 packets.
    pub v6: Vec<MacroTemplate>,
}

#[derive(serde::Deserialize)]
struct RawTemplate {
    proto: String,
    dport: Option<String>,
    sport: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawTable {
    v4: BTreeMap<String, Vec<RawTemplate>>,
    v6: BTreeMap<String, Vec<RawTemplate>>,
}

fn convert(raw: &[RawTemplate]) -> Result<Vec<MacroTemplate>> {
    raw.iter()
        .map(|t| {
            let proto: Protocol = t.proto.parse()?;
            let (dport, icmp_type) = match (&t.dport, proto.is_icmp()) {
                (Some(d), true) => (None, Some(IcmpType::new(d.as_str())?)),
                (Some(d), false) => (Some(d.parse()?), None),
                (None, _) => (None, None),
            };
            let sport = t.sport.as_deref().map(str::parse).transpose()?;
            Ok(MacroTemplate {
                proto,
                dport,
                sport,
                icmp_type,
            })
        })
        .collect()
}

fn load() -> Result<Vec<MacroDef>> {
    let raw: RawTable = serde_json::from_str(MACROS_JSON)?;
    let mut out = Vec::new();
    for (name, v4) in &raw.v4 {
        let v4 = convert(v4)?;
        let v6 = match raw.v6.get(name) {
            Some(v6) => convert(v6)?,
            None => v4.clone(),
        };
        out.push(MacroDef {
            name: name.clone(),
            v4,
            v6,
        });
    }
    for (name, v6) in &raw.v6 {
        if !raw.v4.contains_key(name) {
            out.push(MacroDef {
                name: name.clone(),
                v4: Vec::new(),
                v6: convert(v6)?,
            });
        }
    }
    Ok(out)
}

/// The macro table, loaded once. It is empty only if the embedded table is broken, which the
/// test suite rules out.
pub fn table() -> &'static [MacroDef] {
    static TABLE: OnceLock<Vec<MacroDef>> = OnceLock::new();
    TABLE.get_or_init(|| load().unwrap_or_default())
}

/// Looks a macro up, ignoring case as PVE does.
pub fn lookup(name: &str) -> Option<&'static MacroDef> {
    table().iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

impl MacroDef {
    /// Templates for a family.
    pub fn templates(&self, family: Family) -> &[MacroTemplate] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// A known macro name (canonical spelling).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MacroName(&'static str);

impl MacroName {
    /// Looks a name up (case-insensitive) and keeps the canonical spelling.
    pub fn new(s: &str) -> Result<Self> {
        lookup(s)
            .map(|m| MacroName(m.name.as_str()))
            .ok_or_else(|| Error::invalid("macro", s, "unknown macro"))
    }
    /// The canonical name.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
    /// The definition.
    pub fn def(&self) -> Option<&'static MacroDef> {
        lookup(self.0)
    }
}

crate::text::text_traits!(MacroName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_loads_completely() {
        let t = load().unwrap();
        assert!(t.len() >= 85, "{}", t.len());
        let ssh = lookup("ssh").unwrap();
        assert_eq!(ssh.name, "SSH");
        assert!(ssh.v4[0].dport.as_ref().unwrap().contains(22));
        let ping = lookup("Ping").unwrap();
        assert_eq!(ping.v4[0].proto.number(), 1);
        assert_eq!(ping.v6[0].proto.number(), 58);
        assert_eq!(lookup("NeighborDiscovery").unwrap().v4.len(), 0);
    }
}
