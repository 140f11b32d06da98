//! "Test a connection" on the firewall page: a customer's question (protocol, port, remote
//! address, direction) checked by `firewall-model` against the VM's firewall as the client
//! area reads it, answered with the verdict and the rule or policy that decided it.
//!
//! The VM's rules, policies and `enable` flag come from [`ClientArea::firewall`]; the VM is
//! modelled with its `net0` (firewall on) and its addresses behind an enabled cluster
//! firewall, which is what the provider runs.
//!
//! [`ClientArea::firewall`]: pve_vps_services::ClientArea::firewall

use std::net::IpAddr;

use pve_vps_firewall::{
    ChainDecision, ConnectionCheck, DecidedBy, FileKind, FlowDecision, FwFile, Guest, GuestKind,
    MacAddr, Nic, Node, Verdict, Zone,
};
use pve_vps_services::service::Service;
use pve_vps_services::shell::FirewallView;

/// The direction of the tested connection, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the remote address to the VM.
    In,
    /// From the VM to the remote address.
    Out,
}

/// A validated question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Direction.
    pub direction: Direction,
    /// `tcp`, `udp` or `icmp`.
    pub proto: &'static str,
    /// Destination port (TCP/UDP).
    pub port: Option<u16>,
    /// The remote address (the source of an incoming connection, the destination of an
    /// outgoing one).
    pub remote: IpAddr,
}

impl Question {
    /// Validates the form's fields; the error is a sentence for the customer.
    pub fn parse(direction: &str, proto: &str, port: &str, remote: &str) -> Result<Self, String> {
        let direction = match direction.trim().to_ascii_lowercase().as_str() {
            "" | "in" => Direction::In,
            "out" => Direction::Out,
            other => return Err(format!("direction {other:?}: choose IN or OUT")),
        };
        let proto = match proto.trim().to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            "icmp" => "icmp",
            other => return Err(format!("protocol {other:?}: choose tcp, udp or icmp")),
        };
        let port = match (proto, port.trim()) {
            ("icmp", "") => None,
            ("icmp", p) => {
                return Err(format!("port {p:?}: icmp has no ports, leave it empty"));
            }
            (_, "") => return Err(format!("a port is needed for {proto}")),
            (_, p) => match p.parse::<u32>() {
                Ok(n @ 1..=65535) => Some(n as u16),
                _ => return Err(format!("port {p:?}: must be a number from 1 to 65535")),
            },
        };
        let remote = remote.trim();
        let remote: IpAddr = remote.parse().map_err(|_| {
            format!("address {remote:?}: must be an IPv4 or IPv6 address like 198.51.100.7")
        })?;
        Ok(Question {
            direction,
            proto,
            port,
            remote,
        })
    }
}

/// What decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    /// The customer's rule at this position (as the table numbers it).
    Rule {
        /// Position in the table.
        pos: usize,
        /// The rule in `.fw` syntax.
        text: String,
        /// Its comment.
        comment: String,
    },
    /// The VM's incoming or outgoing policy.
    Policy(String),
    /// A rule of the firewall's standard chains (anti-spoofing, connection tracking...).
    Standard(String),
    /// The firewall does not filter this connection (it is off).
    NotFiltered(String),
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `ACCEPT`, `DROP` or `REJECT`.
    pub verdict: Verdict,
    /// What decided.
    pub decider: Decider,
    /// Positions of enabled rules of the question's direction, above the deciding rule,
    /// naming an IP set or alias (`+dc/management`): the check does not see their members and
    /// treats them as not matching, so one of them could have decided otherwise.
    pub unseen: Vec<usize>,
}

/// Whether a source/destination field is only addresses, networks and ranges (what the check
/// can evaluate without the provider's IP sets and aliases).
fn literal(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|v| {
        v.split(',').all(|item| {
            item.split('-')
                .all(|p| p.parse::<IpAddr>().is_ok() || p.parse::<ipnet::IpNet>().is_ok())
        })
    })
}

impl Answer {
    /// One sentence for the page.
    pub fn sentence(&self) -> String {
        match &self.decider {
            Decider::Rule { pos, .. } => format!("decided by rule #{pos}"),
            Decider::Policy(p) => p.clone(),
            Decider::Standard(s) => format!("decided by the firewall's standard chain: {s}"),
            Decider::NotFiltered(s) => s.clone(),
        }
    }
}

/// The VM's firewall as a `firewall-model` node; returns it with the table position of each
/// model rule (a rule the model cannot read is left out, as `pve-firewall` skips it).
fn node_of(view: &FirewallView, svc: &Service) -> Result<(Node, Vec<usize>), String> {
    let vmid = svc.vmid().get();
    let mut file = FwFile::new(FileKind::Guest);
    file.options.enable = Some(view.enabled);
    file.options.policy_in = Some(view.policy_in.parse().map_err(|e| format!("{e}"))?);
    file.options.policy_out = Some(view.policy_out.parse().map_err(|e| format!("{e}"))?);
    let mut positions = Vec::new();
    for r in &view.rules {
        if let Ok(m) = r.rule.to_rule(FileKind::Guest, false) {
            file.rules.push(m);
            positions.push(r.pos);
        }
    }
    let mut node = Node::new();
    node.cluster.options.enable = Some(true);
    let mac: MacAddr = svc
        .mac
        .to_string()
        .parse()
        .map_err(|e: pve_vps_firewall::Error| e.to_string())?;
    node.guests.insert(
        vmid,
        Guest {
            vmid,
            kind: GuestKind::Vm,
            firewall: file,
            nics: vec![Nic {
                index: 0,
                mac,
                bridge: "vmbr0".into(),
                firewall: true,
                ips: svc.addresses(),
            }],
        },
    );
    Ok((node, positions))
}

/// Answers `q` for the VM `svc` whose firewall is `view`.
pub fn check(view: &FirewallView, svc: &Service, q: &Question) -> Result<Answer, String> {
    let (node, positions) = node_of(view, svc)?;
    let vmid = svc.vmid().get();
    let check = ConnectionCheck::to_guest(vmid, q.proto, q.port, q.remote);
    let decision = match q.direction {
        Direction::In => check.run(&node).map_err(|e| e.to_string())?.decision,
        Direction::Out => {
            // The same packet the other way: the VM sends to the remote address.
            let mut p = check.packet().map_err(|e| e.to_string())?;
            p.from = Zone::Guest { vmid, nic: Some(0) };
            p.to = Zone::Outside;
            p.source = None;
            p.dest = Some(q.remote);
            node.evaluate(&p).map_err(|e| e.to_string())?
        }
    };
    Ok(describe(view, &node, &positions, &decision, q.direction))
}

fn describe(
    view: &FirewallView,
    node: &Node,
    positions: &[usize],
    d: &FlowDecision,
    dir: Direction,
) -> Answer {
    let decider = match d.deciding() {
        Some(ChainDecision {
            decided_by: DecidedBy::Rule(r),
            ..
        }) => match positions.get(r.index).and_then(|p| view.rules.get(*p)) {
            Some(row) => Decider::Rule {
                pos: row.pos,
                text: row.text.clone(),
                comment: row.rule.comment.clone().unwrap_or_default(),
            },
            None => Decider::Standard(
                node.rule(r)
                    .map_or_else(|| r.to_string(), |m| m.to_string()),
            ),
        },
        Some(ChainDecision {
            decided_by: DecidedBy::Policy,
            ..
        }) => {
            let (word, policy) = match dir {
                Direction::In => ("incoming", &view.policy_in),
                Direction::Out => ("outgoing", &view.policy_out),
            };
            Decider::Policy(format!(
                "no rule matched: decided by the {word} policy ({policy})"
            ))
        }
        Some(ChainDecision {
            decided_by: DecidedBy::NotFiltered(_),
            ..
        })
        | None => Decider::NotFiltered(if view.enabled {
            "the firewall does not filter this connection".into()
        } else {
            "the VM's firewall is off: nothing is filtered".into()
        }),
        Some(c) => Decider::Standard(c.decided_by.to_string()),
    };
    // Only rules of the question's direction above the deciding one could have changed it.
    let before = match &decider {
        Decider::Rule { pos, .. } => *pos,
        _ => usize::MAX,
    };
    let kind = match dir {
        Direction::In => "in",
        Direction::Out => "out",
    };
    let unseen = view
        .rules
        .iter()
        .filter(|r| r.pos < before && r.rule.kind.eq_ignore_ascii_case(kind))
        .filter(|r| r.rule.enable.unwrap_or(1) != 0)
        .filter(|r| !literal(&r.rule.source) || !literal(&r.rule.dest))
        .map(|r| r.pos)
        .collect();
    Answer {
        verdict: d.verdict,
        decider,
        unseen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_are_told_from_sets_and_aliases() {
        let some = |v: &str| Some(v.to_owned());
        assert!(literal(&None));
        assert!(literal(&some("203.0.113.0/24,198.51.100.7")));
        assert!(literal(&some("10.0.0.1-10.0.0.9")));
        assert!(!literal(&some("+dc/management")));
        assert!(!literal(&some("myalias")));
    }

    #[test]
    fn bad_input_is_refused_with_a_sentence() {
        let e = Question::parse("in", "tcp", "70000", "198.51.100.7").unwrap_err();
        assert!(e.contains("1 to 65535"), "{e}");
        let e = Question::parse("in", "tcp", "22", "not-an-ip").unwrap_err();
        assert!(e.contains("IPv4 or IPv6"), "{e}");
        let e = Question::parse("in", "tcp", "", "198.51.100.7").unwrap_err();
        assert!(e.contains("port is needed"), "{e}");
        let e = Question::parse("sideways", "tcp", "22", "198.51.100.7").unwrap_err();
        assert!(e.contains("IN or OUT"), "{e}");
        let q = Question::parse("", "TCP", " 22 ", "2001:db8::1").expect("valid");
        assert_eq!(q.direction, Direction::In);
        assert_eq!(q.port, Some(22));
    }
}
