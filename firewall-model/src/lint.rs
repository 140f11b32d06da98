//! Lint (shadowed rules, rules that can never match, dangling references) and the lockout
//! check.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::addr::{Address, Family};
use crate::compiled::{Atom, atoms};
use crate::error::Result;
use crate::eval::{ChainId, ChainPlan, DecidedBy, Resolver, RuleRef, Step};
use crate::flow::{FlowDecision, FlowPacket, Zone};
use crate::model::Rule;
use crate::node::Node;
use crate::proto::Protocol;
use crate::text::{Iface, Verdict};

/// What is wrong with a rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum LintKind {
    /// Every packet it could match is decided by earlier rules (listed).
    Shadowed {
        /// The earlier rules (or built-ins, as `None`) that cover it.
        by: Vec<Option<RuleRef>>,
    },
    /// No packet can ever match it.
    NeverMatches {
        /// Why.
        reason: String,
    },
    /// A `GROUP` line names a group that does not exist (PVE skips it).
    UnknownGroup(String),
}

/// A finding about one rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: RuleRef,
    /// The problem.
    pub kind: LintKind,
}

fn missing_ref(res: &Resolver<'_>, a: &Option<Address>) -> Option<String> {
    match a {
        Some(Address::IpSet(sc, n)) if res.ipset(*sc, n.as_str()).is_none() => {
            Some(format!("ip set `{n}` does not exist"))
        }
        Some(Address::Alias(sc, n)) if res.alias(*sc, n.as_str()).is_none() => {
            Some(format!("alias `{n}` does not exist"))
        }
        _ => None,
    }
}

fn chain_iface(id: ChainId) -> Option<Iface> {
    match id {
        ChainId::GuestIn { nic, .. } | ChainId::GuestOut { nic, .. } => {
            Iface::new(format!("net{nic}")).ok()
        }
        _ => None,
    }
}

/// Lints one chain.
pub fn lint_chain(node: &Node, chain: ChainId) -> Vec<Finding> {
    let Some(plan) = node.plan(chain) else {
        return Vec::new();
    };
    lint_plan(&plan)
}

fn lint_plan(plan: &ChainPlan<'_>) -> Vec<Finding> {
    let fixed_iface = chain_iface(plan.id);
    // (step, entry's rule, atom) for both families, in order.
    let mut all: Vec<(usize, Option<RuleRef>, Atom)> = Vec::new();
    for fam in [Family::V4, Family::V6] {
        let (list, mac) = atoms(plan, fam);
        for (i, (e, a)) in list.into_iter().enumerate() {
            if mac.is_some_and(|(m, _)| m == i) {
                continue; // conditional on the MAC: shadows nothing
            }
            if let (Some(f), Some(ai)) = (&fixed_iface, &a.iface)
                && f != ai
            {
                continue; // can never match in this chain
            }
            let r = match e.by {
                DecidedBy::Rule(r) => Some(r),
                _ => None,
            };
            all.push((e.step, r, a));
        }
    }
    let mut out = Vec::new();
    for (si, step) in plan.steps.iter().enumerate() {
        match step {
            Step::MissingGroup(name, at) => out.push(Finding {
                rule: at.clone(),
                kind: LintKind::UnknownGroup(name.to_string()),
            }),
            Step::Rule { rule, at, .. } => {
                let mine: Vec<&Atom> = all
                    .iter()
                    .filter(|(s, _, _)| *s == si)
                    .map(|(_, _, a)| a)
                    .collect();
                if mine.is_empty() {
                    out.push(Finding {
                        rule: at.clone(),
                        kind: LintKind::NeverMatches {
                            reason: never_reason(rule, &plan.resolver),
                        },
                    });
                    continue;
                }
                let mut by: Vec<Option<RuleRef>> = Vec::new();
                let covered = mine.iter().all(|a| {
                    let hit = all.iter().find(|(s, _, b)| *s < si && a.within(b));
                    if let Some((_, r, _)) = hit
                        && !by.contains(r)
                    {
                        by.push(r.clone());
                    }
                    hit.is_some()
                });
                if covered {
                    out.push(Finding {
                        rule: at.clone(),
                        kind: LintKind::Shadowed { by },
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn never_reason(rule: &Rule, res: &Resolver<'_>) -> String {
    missing_ref(res, &rule.source)
        .or_else(|| missing_ref(res, &rule.dest))
        .unwrap_or_else(|| {
            "no packet can match (address families, protocol and interface exclude each other, or an empty set)"
                .to_string()
        })
}

/// Lints every chain of a guest; a rule is reported only if the finding holds on every NIC
/// chain the rule appears in.
pub fn lint_guest(node: &Node, vmid: u32) -> Vec<Finding> {
    let Some(g) = node.guests.get(&vmid) else {
        return Vec::new();
    };
    let mut seen: BTreeMap<String, (Finding, usize, usize)> = BTreeMap::new();
    let mut chains_per_rule: BTreeMap<String, usize> = BTreeMap::new();
    for n in &g.nics {
        for id in [
            ChainId::GuestIn { vmid, nic: n.index },
            ChainId::GuestOut { vmid, nic: n.index },
        ] {
            let Some(plan) = node.plan(id) else { continue };
            for s in &plan.steps {
                if let Step::Rule { at, .. } | Step::MissingGroup(_, at) = s {
                    *chains_per_rule.entry(format!("{at:?}")).or_insert(0) += 1;
                }
            }
            for f in lint_plan(&plan) {
                let key = format!("{:?}{:?}", f.rule, std::mem::discriminant(&f.kind));
                let e = seen.entry(key).or_insert((f.clone(), 0, 0));
                e.1 += 1;
                e.2 = chains_per_rule
                    .get(&format!("{:?}", f.rule))
                    .copied()
                    .unwrap_or(0);
            }
        }
    }
    let mut out: Vec<Finding> = seen
        .into_values()
        .filter(|(f, n, _)| {
            chains_per_rule
                .get(&format!("{:?}", f.rule))
                .is_some_and(|t| n >= t)
        })
        .map(|(f, _, _)| f)
        .collect();
    out.sort_by_key(|f| (format!("{:?}", f.rule.section), f.rule.index));
    out
}

/// The ports whose reachability the lockout check protects, and on which zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementPorts {
    /// Where the ports are (a guest or the host).
    pub target: Zone,
    /// (protocol, port) pairs. Default: tcp/22.
    pub ports: Vec<(Protocol, u16)>,
}

impl ManagementPorts {
    /// tcp/22 on `target`.
    pub fn ssh(target: Zone) -> Self {
        ManagementPorts {
            target,
            ports: vec![(Protocol::TCP, 22)],
        }
    }
    /// Adds a port.
    pub fn with(mut self, proto: Protocol, port: u16) -> Self {
        self.ports.push((proto, port));
        self
    }
}

/// One port's reachability before and after.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortCheck {
    /// Protocol number.
    pub proto: u8,
    /// Port.
    pub port: u16,
    /// Decision under the current configuration.
    pub before: FlowDecision,
    /// Decision under the proposed configuration.
    pub after: FlowDecision,
}

/// The answer of [`lockout_check`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockoutReport {
    /// The client's address.
    pub source: IpAddr,
    /// One entry per management port.
    pub checks: Vec<PortCheck>,
}

impl LockoutReport {
    /// Does the change block a port that was reachable before? Refuse or warn when true.
    pub fn locks_out(&self) -> bool {
        self.newly_blocked().next().is_some()
    }
    /// Are all management ports reachable after the change?
    pub fn reachable_after(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.after.verdict == Verdict::Accept)
    }
    /// Ports reachable before and not after, with the decision that blocks them.
    pub fn newly_blocked(&self) -> impl Iterator<Item = &PortCheck> {
        self.checks
            .iter()
            .filter(|c| c.before.verdict == Verdict::Accept && c.after.verdict != Verdict::Accept)
    }
}

/// Answers whether the management ports stay reachable from `source` (outside the node) when
/// the configuration changes from `before` to `after`.
///
/// ```
/// use pve_vps_firewall::{FileKind, Node, Zone, lint::{ManagementPorts, lockout_check}};
/// # fn main() -> pve_vps_firewall::Result<()> {
/// let mut before = Node::new();
/// before.host = pve_vps_firewall::parse("[RULES]\nIN ACCEPT -p tcp -dport 22\n", FileKind::Host)?;
/// before.cluster = pve_vps_firewall::parse("[OPTIONS]\nenable: 1\n", FileKind::Cluster)?;
/// let mut after = before.clone();
/// after.host = pve_vps_firewall::parse("[RULES]\nIN DROP -p tcp\n", FileKind::Host)?;
/// let report = lockout_check(&before, &after, &ManagementPorts::ssh(Zone::Host), "203.0.113.9".parse().unwrap())?;
/// assert!(report.locks_out());
/// # Ok(()) }
/// ```
pub fn lockout_check(
    before: &Node,
    after: &Node,
    ports: &ManagementPorts,
    source: IpAddr,
) -> Result<LockoutReport> {
    let mut checks = Vec::new();
    for (proto, port) in &ports.ports {
        let fp = FlowPacket {
            source: Some(source),
            sport: proto.has_ports().then_some(40000),
            dport: proto.has_ports().then_some(*port),
            ..FlowPacket::new(Zone::Outside, ports.target, proto.number())
        };
        checks.push(PortCheck {
            proto: proto.number(),
            port: *port,
            before: before.evaluate(&fp)?,
            after: after.evaluate(&fp)?,
        });
    }
    Ok(LockoutReport { source, checks })
}
