//! The pure part of the `fw-eval` example: build a node from file contents and answer packets
//! given as JSON lines. The example only reads files and stdin.

use std::collections::BTreeMap;

use crate::error::{LineError, Result};
use crate::eval::{DecidedBy, FileRef, RuleRef, SectionRef};
use crate::flow::{FlowPacket, Topology};
use crate::model::{FileKind, Rule};
use crate::node::{Node, VnetName};
use crate::parse::parse_lenient;

/// The contents of a node directory.
#[derive(Clone, Debug, Default)]
pub struct NodeFiles {
    /// `cluster.fw`, if present.
    pub cluster: Option<String>,
    /// `host.fw`, if present.
    pub host: Option<String>,
    /// `<vmid>.fw` files.
    pub guests: BTreeMap<u32, String>,
    /// VNet files (`sdn/firewall/<vnet>.fw`) by VNet name.
    pub vnets: BTreeMap<String, String>,
    /// The topology JSON.
    pub topology: String,
}

/// A warning from lenient parsing, with the file it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWarning {
    /// File name.
    pub file: String,
    /// The bad line.
    pub error: LineError,
}

/// Builds the node, parsing leniently like pve-firewall; bad lines come back as warnings.
pub fn load_node(files: &NodeFiles) -> Result<(Node, Vec<FileWarning>)> {
    let mut warnings = Vec::new();
    let mut parse = |name: String, text: Option<&String>, kind| {
        let (f, errs) = parse_lenient(text.map_or("", String::as_str), kind);
        warnings.extend(errs.into_iter().map(|error| FileWarning {
            file: name.clone(),
            error,
        }));
        f
    };
    let cluster = parse(
        "cluster.fw".into(),
        files.cluster.as_ref(),
        FileKind::Cluster,
    );
    let host = parse("host.fw".into(), files.host.as_ref(), FileKind::Host);
    let mut guests = BTreeMap::new();
    for (id, text) in &files.guests {
        guests.insert(*id, parse(format!("{id}.fw"), Some(text), FileKind::Guest));
    }
    let mut vnets = BTreeMap::new();
    for (name, text) in &files.vnets {
        vnets.insert(
            VnetName::new(name)?,
            parse(
                format!("sdn/firewall/{name}.fw"),
                Some(text),
                FileKind::Vnet,
            ),
        );
    }
    let mut node = Topology::from_json(&files.topology)?.into_node(cluster, host, guests)?;
    node.vnets = vnets;
    Ok((node, warnings))
}

impl Node {
    /// The rule a [`RuleRef`] points at.
    pub fn rule(&self, r: &RuleRef) -> Option<&Rule> {
        let file = match r.file {
            FileRef::Cluster => &self.cluster,
            FileRef::Host => &self.host,
            FileRef::Guest(id) => &self.guests.get(&id)?.firewall,
            FileRef::Vnet(v) => self.vnets.get(&v)?,
        };
        match &r.section {
            SectionRef::Rules => file.rules.get(r.index),
            SectionRef::Group(g) => file.group(g)?.rules.get(r.index),
        }
    }
}

/// Answers one JSON packet line with one JSON line: verdict, explanation, deciding rule text
/// and the chains crossed; or `{"error": ...}`.
pub fn eval_line(node: &Node, line: &str) -> String {
    let answer = FlowPacket::from_json(line).and_then(|fp| node.evaluate(&fp));
    let v = match answer {
        Ok(d) => {
            let rule = d.deciding().and_then(|c| match &c.decided_by {
                DecidedBy::Rule(r) => node.rule(r).map(ToString::to_string),
                _ => None,
            });
            serde_json::json!({
                "verdict": d.verdict,
                "why": d.explain(),
                "rule": rule,
                "chains": d.chains.iter().map(|c| c.chain.to_string()).collect::<Vec<_>>(),
            })
        }
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    v.to_string()
}

/// Answers every non-empty line.
pub fn eval_lines(node: &Node, input: &str) -> Vec<String> {
    input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| eval_line(node, l))
        .collect()
}
