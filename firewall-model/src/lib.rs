#![doc = include_str!("../README.md")]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod addr;
pub mod api;
pub mod check;
pub mod cli;
pub mod error;
pub mod macros;
pub mod model;
pub mod parse;
pub mod proto;
pub mod stdchain;
pub mod text;

pub use addr::{AddrItem, Address, Cidr, Family, IpSetValue, RefScope};
pub use api::ApiRule;
pub use check::{ConnectionAnswer, ConnectionCheck};
pub use error::{Error, LineError, Result};
pub use macros::MacroName;
pub use model::{
    Alias, FileKind, FwFile, IpSet, IpSetEntry, OptionKey, OptionValue, Options, Rule, RuleKind,
    SecurityGroup, SourceLine,
};
pub use parse::{parse, parse_lenient, parse_rule_line};
pub use proto::{IcmpMatch, IcmpType, PortEntry, PortList, Protocol};
pub use text::{
    Action, AliasName, Comment, Direction, GroupName, Iface, IpSetName, LogLevel, Verdict,
};
pub mod eval;
pub mod flow;
pub mod node;
pub use eval::{
    Builtin, ChainDecision, ChainId, DecidedBy, Evaluator, FileRef, NotFiltered, Packet, Reference,
    RuleRef, SectionRef, TraceStep,
};
pub use flow::{FlowDecision, FlowPacket, Topology, Zone, evaluate_flow};
pub use node::{ClusterMember, Corosync, Guest, GuestKind, MacAddr, Nic, Node, VnetName};
pub use stdchain::{AddrType, Backend, CtState, StdRule};
pub mod compiled;
pub use compiled::{CompiledChain, CompiledNode};
#[doc(hidden)]
pub mod fuzzing;
mod lenient;
pub mod lint;
pub use lint::{
    Finding, LintKind, LockoutReport, ManagementPorts, PortCheck, lint_chain, lint_guest,
    lockout_check,
};
