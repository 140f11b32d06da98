//! "Test a connection": the question a customer asks a portal ("can 198.51.100.7 reach port
//! 22 of my VM?"), answered with the verdict and what decided it, in words a portal can show.
//!
//! ```
//! use std::collections::BTreeMap;
//! use pve_vps_firewall::check::ConnectionCheck;
//! use pve_vps_firewall::cli::{NodeFiles, load_node};
//! use pve_vps_firewall::Verdict;
//!
//! let files = NodeFiles {
//!     cluster: Some("[OPTIONS]\nenable: 1\n".into()),
//!     host: None,
//!     guests: BTreeMap::from([(100, "[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT) -source 198.51.100.0/24\nIN DROP -p tcp -dport 25\n".into())]),
//!     vnets: BTreeMap::new(),
//!     topology: r#"{"guests":[{"vmid":100,"nics":[{"net":0,"mac":"52:54:00:00:01:00","firewall":1,"ips":["192.0.2.100"]}]}]}"#.into(),
//! };
//! let (node, _warnings) = load_node(&files)?;
//!
//! let ssh = ConnectionCheck::to_guest(100, "tcp", Some(22), "198.51.100.7".parse().unwrap()).run(&node)?;
//! assert_eq!(ssh.verdict, Verdict::Accept);
//! assert_eq!(ssh.rule.as_deref(), Some("IN SSH(ACCEPT) -source 198.51.100.0/24"));
//! assert_eq!(ssh.summary, "allowed by rule 100.fw [RULES] #0 (line 5) in 100/net0 IN");
//!
//! // Not listed: the guest's inbound policy (DROP) decides.
//! let web = ConnectionCheck::to_guest(100, "tcp", Some(80), "203.0.113.9".parse().unwrap()).run(&node)?;
//! assert_eq!(web.verdict, Verdict::Drop);
//! assert_eq!(web.summary, "dropped by the policy (DROP) of 100/net0 IN");
//!
//! // A reply of a connection the VM opened passes whatever the rules say.
//! let mut reply = ConnectionCheck::to_guest(100, "tcp", Some(80), "203.0.113.9".parse().unwrap());
//! reply.established = true;
//! let reply = reply.run(&node)?;
//! assert_eq!(reply.verdict, Verdict::Accept);
//! assert_eq!(reply.summary, "allowed by standard chain PVEFW-FORWARD (conntrack RELATED,ESTABLISHED) in 100/net0 IN");
//! # Ok::<(), pve_vps_firewall::Error>(())
//! ```

use std::net::IpAddr;

use serde::Serialize;

use crate::compiled::CompiledNode;
use crate::error::{Error, Result};
use crate::eval::{ChainId, DecidedBy};
use crate::flow::{FlowDecision, FlowPacket, Zone};
use crate::node::Node;
use crate::proto::{IcmpMatch, IcmpType, Protocol};
use crate::stdchain::CtState;
use crate::text::Verdict;

/// One connection to test: towards a guest (or the host), one protocol, an optional port (or
/// ICMP type name for `icmp`/`icmpv6`), from one source address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionCheck {
    /// Where the connection goes (usually a guest).
    pub to: Zone,
    /// Protocol name or number (`tcp`, `udp`, `icmp`, `47`).
    pub proto: String,
    /// Destination port for port protocols.
    pub port: Option<u16>,
    /// ICMP type (`echo-request`), for ICMP.
    pub icmp_type: Option<String>,
    /// The client's address.
    pub source: IpAddr,
    /// Destination address; by default the guest's first address of the source's family.
    pub dest: Option<IpAddr>,
    /// Test a packet of an established connection (a reply) instead of a new one.
    pub established: bool,
}

impl ConnectionCheck {
    /// A new connection from `source` to guest `vmid`.
    pub fn to_guest(vmid: u32, proto: &str, port: Option<u16>, source: IpAddr) -> Self {
        ConnectionCheck {
            to: Zone::Guest { vmid, nic: None },
            proto: proto.to_string(),
            port,
            icmp_type: None,
            source,
            dest: None,
            established: false,
        }
    }

    /// The flow packet this check sends.
    pub fn packet(&self) -> Result<FlowPacket> {
        let proto: Protocol = self.proto.parse()?;
        let mut fp = FlowPacket::new(Zone::Outside, self.to, proto.number());
        fp.source = Some(self.source);
        fp.dest = self.dest;
        if proto.has_ports() {
            let port = self
                .port
                .ok_or_else(|| Error::invalid("port", &self.proto, "this protocol needs a port"))?;
            fp.dport = Some(port);
            fp.sport = Some(40000);
        }
        if proto.is_icmp() {
            let name = self.icmp_type.as_deref().unwrap_or("echo-request");
            let t = IcmpType::new(name)?;
            match t.resolve(proto.number() == crate::proto::numbers::ICMPV6) {
                Some(IcmpMatch::Type(ty, code)) => fp.icmp = Some((ty, code.unwrap_or(0))),
                _ => return Err(Error::invalid("icmp type", name, "need one type")),
            }
        }
        if self.established {
            fp.ct = CtState::Established;
            fp.tcp_flags = Some(crate::stdchain::tcp::ACK);
        }
        Ok(fp)
    }

    /// Answers with the reference evaluator.
    pub fn run(&self, node: &Node) -> Result<ConnectionAnswer> {
        let d = node.evaluate(&self.packet()?)?;
        Ok(ConnectionAnswer::new(node, d))
    }

    /// Answers with a compiled node (for many checks on one configuration).
    pub fn run_compiled(&self, node: &CompiledNode) -> Result<ConnectionAnswer> {
        let d = node.evaluate(&self.packet()?)?;
        Ok(ConnectionAnswer::new(node.node(), d))
    }
}

/// The answer: verdict, what decided it (as data and as a sentence), and the rule's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionAnswer {
    /// Final verdict.
    pub verdict: Verdict,
    /// The chain that decided.
    pub chain: Option<ChainId>,
    /// What decided (rule with file, section, index and line; policy; standard chain).
    pub decided_by: Option<DecidedBy>,
    /// The deciding rule's text, when a user rule decided.
    pub rule: Option<String>,
    /// One sentence for a customer: `allowed by rule 100.fw [RULES] #0 (line 5) in 100/net0 IN`.
    pub summary: String,
    /// The full decision (every chain crossed).
    pub decision: FlowDecision,
}

impl ConnectionAnswer {
    fn new(node: &Node, decision: FlowDecision) -> Self {
        let last = decision.deciding();
        let chain = last.map(|c| c.chain);
        let decided_by = last.map(|c| c.decided_by.clone());
        let rule = match &decided_by {
            Some(DecidedBy::Rule(r)) => node.rule(r).map(ToString::to_string),
            _ => None,
        };
        let word = match decision.verdict {
            Verdict::Accept => "allowed",
            Verdict::Drop => "dropped",
            Verdict::Reject => "rejected",
        };
        let summary = match (last, &decided_by) {
            (Some(c), Some(DecidedBy::Policy)) => {
                format!(
                    "{word} by the policy ({}) of {}",
                    policy_word(c.verdict),
                    c.chain
                )
            }
            (Some(c), Some(by)) => format!("{word} by {by} in {}", c.chain),
            _ => format!("{word}: no firewall on this node filters it"),
        };
        ConnectionAnswer {
            verdict: decision.verdict,
            chain,
            decided_by,
            rule,
            summary,
            decision,
        }
    }
}

fn policy_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Accept => "ACCEPT",
        Verdict::Drop => "DROP",
        Verdict::Reject => "REJECT",
    }
}
