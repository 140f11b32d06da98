//! The configuration model: options, rules, security groups, IP sets, aliases and files.

use std::fmt;
use std::hash::{Hash, Hasher};

use crate::addr::{Address, Cidr, Family, IpSetValue};
use crate::error::{Error, Result};
use crate::macros::MacroName;
use crate::proto::{IcmpType, PortList, Protocol};
use crate::text::{Action, AliasName, Comment, Direction, GroupName, Iface, IpSetName, LogLevel};

/// Which file a configuration comes from; it decides which sections and directions are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `cluster.fw`: options, rules, aliases, IP sets, security groups.
    Cluster,
    /// `host.fw`: options and rules.
    Host,
    /// `<vmid>.fw`: options, rules (IN/OUT/GROUP only), aliases, IP sets.
    Guest,
    /// `/etc/pve/sdn/firewall/<vnet>.fw`: options and FORWARD rules (PVE 8.3+).
    Vnet,
}

/// The 1-based line a rule came from. It is carried for explanations only: two values always
/// compare equal, so a parsed file equals its printed-and-reparsed copy.
#[derive(Clone, Copy, Debug, Default)]
pub struct SourceLine(pub Option<usize>);

impl PartialEq for SourceLine {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for SourceLine {}
impl Hash for SourceLine {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// What a rule line does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `DIR ACTION ...`
    Action(Direction, Action),
    /// `DIR MACRO(ACTION) ...`
    Macro(Direction, MacroName, Action),
    /// `GROUP name` (applies to both directions; only `-i` is allowed).
    Group(GroupName),
}

impl RuleKind {
    /// The direction, for non-group rules.
    pub fn direction(&self) -> Option<Direction> {
        match self {
            RuleKind::Action(d, _) | RuleKind::Macro(d, _, _) => Some(*d),
            RuleKind::Group(_) => None,
        }
    }
    /// The action, for non-group rules.
    pub fn action(&self) -> Option<Action> {
        match self {
            RuleKind::Action(_, a) | RuleKind::Macro(_, _, a) => Some(*a),
            RuleKind::Group(_) => None,
        }
    }
}

/// One rule of a `[RULES]` or `[group]` section.
///
/// Fields are public and each is a validated type; [`Rule::validate`] checks the combinations
/// (ports only with port protocols, families, macro conflicts, direction per file) and runs on
/// every parse and API conversion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// `false` for a line starting with `|`.
    pub enabled: bool,
    /// Direction and action, macro or group.
    pub kind: RuleKind,
    /// `-i`
    pub iface: Option<Iface>,
    /// `-source`
    pub source: Option<Address>,
    /// `-dest`
    pub dest: Option<Address>,
    /// `-p`
    pub proto: Option<Protocol>,
    /// `-dport`
    pub dport: Option<PortList>,
    /// `-sport`
    pub sport: Option<PortList>,
    /// `-icmp-type`
    pub icmp_type: Option<IcmpType>,
    /// `-log`
    pub log: Option<LogLevel>,
    /// Trailing `# comment`.
    pub comment: Option<Comment>,
    /// Where it was read from (ignored by equality).
    pub line: SourceLine,
}

impl Rule {
    /// A plain enabled rule with no match fields.
    pub fn new(direction: Direction, action: Action) -> Self {
        Self::with_kind(RuleKind::Action(direction, action))
    }
    /// An enabled rule of any kind with no match fields.
    pub fn with_kind(kind: RuleKind) -> Self {
        Rule {
            enabled: true,
            kind,
            iface: None,
            source: None,
            dest: None,
            proto: None,
            dport: None,
            sport: None,
            icmp_type: None,
            log: None,
            comment: None,
            line: SourceLine(None),
        }
    }

    /// Checks the field combinations PVE checks. `kind` is the file the rule lives in;
    /// `in_group` is true for rules of a security group.
    pub fn validate(&self, kind: FileKind, in_group: bool) -> Result<()> {
        let bad = |reason: &str| Err(Error::invalid("rule", &self.to_string(), reason));
        match &self.kind {
            RuleKind::Group(_) => {
                if in_group {
                    return bad("security groups cannot be nested");
                }
                if self.source.is_some()
                    || self.dest.is_some()
                    || self.proto.is_some()
                    || self.dport.is_some()
                    || self.sport.is_some()
                    || self.icmp_type.is_some()
                    || self.log.is_some()
                {
                    return bad("a GROUP rule only takes -i");
                }
                return Ok(());
            }
            RuleKind::Action(d, _) | RuleKind::Macro(d, _, _) => {
                if *d == Direction::Forward && kind == FileKind::Guest && !in_group {
                    return bad("FORWARD rules are not allowed in guest files");
                }
                if *d != Direction::Forward && kind == FileKind::Vnet {
                    return bad("only FORWARD rules are allowed in vnet files");
                }
            }
        }
        let sf = self.source.as_ref().and_then(Address::literal_family);
        let df = self.dest.as_ref().and_then(Address::literal_family);
        if let (Some(a), Some(b)) = (sf, df)
            && a != b
        {
            return bad("source and dest mix IPv4 and IPv6");
        }
        let fam = sf.or(df);
        if let RuleKind::Macro(_, m, _) = &self.kind {
            let Some(def) = m.def() else {
                return bad("unknown macro");
            };
            // The rule's own proto/ports fill what a template leaves open; a conflicting
            // value is an error, as in pve-firewall.
            for t in def.v4.iter().chain(def.v6.iter()) {
                if self.proto.is_some_and(|p| p.number() != t.proto.number()) {
                    return bad("-p conflicts with the macro's protocol");
                }
                if self.dport.is_some() && (t.dport.is_some() || t.icmp_type.is_some()) {
                    return bad("-dport conflicts with the macro's destination port");
                }
                if self.sport.is_some() && t.sport.is_some() {
                    return bad("-sport conflicts with the macro's source port");
                }
                if (self.dport.is_some() || self.sport.is_some()) && !t.proto.has_ports() {
                    return bad("the macro's protocol has no ports");
                }
                if self.icmp_type.is_some() && (t.icmp_type.is_some() || !t.proto.is_icmp()) {
                    return bad("-icmp-type conflicts with the macro");
                }
            }
            return Ok(());
        }
        if self.dport.is_some() || self.sport.is_some() {
            match self.proto {
                None => return bad("-dport/-sport need -p"),
                Some(p) if !p.has_ports() => {
                    return bad("ports need tcp, udp, udplite, dccp or sctp");
                }
                _ => {}
            }
        }
        if let Some(t) = &self.icmp_type {
            match self.proto {
                Some(p) if p.is_icmp() => {
                    if t.resolve(p.family() == Some(Family::V6)).is_none() {
                        return bad("icmp type unknown for this protocol");
                    }
                }
                _ => return bad("-icmp-type needs -p icmp or icmpv6"),
            }
        }
        if let (Some(p), Some(f)) = (self.proto.and_then(|p| p.family()), fam)
            && p != f
        {
            return bad("protocol family does not match the addresses");
        }
        Ok(())
    }
}

/// An alias: a name for an address or network.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Alias {
    /// Name (looked up ignoring case).
    pub name: AliasName,
    /// Value.
    pub cidr: Cidr,
    /// Comment.
    pub comment: Option<Comment>,
}

/// One IP set entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpSetEntry {
    /// `!` prefix: addresses in this entry are excluded (ipset `nomatch`).
    pub nomatch: bool,
    /// Address, network or alias.
    pub value: IpSetValue,
    /// Comment.
    pub comment: Option<Comment>,
}

/// A named IP set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IpSet {
    /// Name.
    pub name: IpSetName,
    /// Comment on the section header.
    pub comment: Option<Comment>,
    /// Entries.
    pub entries: Vec<IpSetEntry>,
}

/// A security group (cluster.fw only).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecurityGroup {
    /// Name.
    pub name: GroupName,
    /// Comment on the section header.
    pub comment: Option<Comment>,
    /// Rules.
    pub rules: Vec<Rule>,
}

/// `[OPTIONS]`. Unset values take PVE's defaults through the `*_or_default` helpers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// `enable`
    pub enable: Option<bool>,
    /// `policy_in`
    pub policy_in: Option<Action>,
    /// `policy_out`
    pub policy_out: Option<Action>,
    /// `policy_forward`
    pub policy_forward: Option<Action>,
    /// `dhcp`
    pub dhcp: Option<bool>,
    /// `ipfilter`
    pub ipfilter: Option<bool>,
    /// `macfilter`
    pub macfilter: Option<bool>,
    /// `ndp`
    pub ndp: Option<bool>,
    /// `radv`
    pub radv: Option<bool>,
    /// `log_level_in`
    pub log_level_in: Option<LogLevel>,
    /// `log_level_out`
    pub log_level_out: Option<LogLevel>,
    /// `log_level_forward`
    pub log_level_forward: Option<LogLevel>,
    /// Other options (`nosmurfs`, `tcpflags`, `nf_conntrack_max` ...), kept verbatim.
    pub other: Vec<(OptionKey, OptionValue)>,
}

/// The key of an untyped option: `[a-z0-9_]+`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionKey(String);

impl OptionKey {
    /// Validates a key.
    pub fn new(s: &str) -> Result<Self> {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::invalid("option name", s, "expected [a-z0-9_]+"));
        }
        Ok(OptionKey(s.to_string()))
    }
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The value of an untyped option: printable, no `#`, no spaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OptionValue(String);

impl OptionValue {
    /// Validates a value.
    pub fn new(s: &str) -> Result<Self> {
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '#')
        {
            return Err(Error::invalid(
                "option value",
                s,
                "must be non-empty, without spaces, `#` or control characters",
            ));
        }
        Ok(OptionValue(s.to_string()))
    }
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Options {
    /// Is the firewall enabled by this file? Cluster, guest and vnet default to off, host to on.
    pub fn enabled_or_default(&self, kind: FileKind) -> bool {
        self.enable.unwrap_or(kind == FileKind::Host)
    }
    /// Inbound policy (default DROP).
    pub fn policy_in_or_default(&self) -> Action {
        self.policy_in.unwrap_or(Action::Drop)
    }
    /// Outbound policy (default ACCEPT).
    pub fn policy_out_or_default(&self) -> Action {
        self.policy_out.unwrap_or(Action::Accept)
    }
    /// Forward policy (default ACCEPT).
    pub fn policy_forward_or_default(&self) -> Action {
        self.policy_forward.unwrap_or(Action::Accept)
    }
}

/// One parsed `.fw` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwFile {
    /// Which file.
    pub kind: FileKind,
    /// `[OPTIONS]`
    pub options: Options,
    /// `[ALIASES]`
    pub aliases: Vec<Alias>,
    /// `[IPSET name]` sections.
    pub ipsets: Vec<IpSet>,
    /// `[RULES]`
    pub rules: Vec<Rule>,
    /// `[group name]` sections.
    pub groups: Vec<SecurityGroup>,
}

impl FwFile {
    /// An empty file of a kind.
    pub fn new(kind: FileKind) -> Self {
        FwFile {
            kind,
            options: Options::default(),
            aliases: Vec::new(),
            ipsets: Vec::new(),
            rules: Vec::new(),
            groups: Vec::new(),
        }
    }
    /// Finds an alias (ignoring case).
    pub fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases
            .iter()
            .find(|a| a.name.as_str().eq_ignore_ascii_case(name))
    }
    /// Finds an IP set.
    pub fn ipset(&self, name: &str) -> Option<&IpSet> {
        self.ipsets.iter().find(|s| s.name.as_str() == name)
    }
    /// Finds a security group.
    pub fn group(&self, name: &str) -> Option<&SecurityGroup> {
        self.groups.iter().find(|g| g.name.as_str() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            f.write_str("|")?;
        }
        match &self.kind {
            RuleKind::Action(d, a) => write!(f, "{d} {a}")?,
            RuleKind::Macro(d, m, a) => write!(f, "{d} {m}({a})")?,
            RuleKind::Group(g) => write!(f, "GROUP {g}")?,
        }
        if let Some(v) = &self.iface {
            write!(f, " -i {v}")?;
        }
        if let Some(v) = &self.source {
            write!(f, " -source {v}")?;
        }
        if let Some(v) = &self.dest {
            write!(f, " -dest {v}")?;
        }
        if let Some(v) = &self.proto {
            write!(f, " -p {v}")?;
        }
        if let Some(v) = &self.dport {
            write!(f, " -dport {v}")?;
        }
        if let Some(v) = &self.sport {
            write!(f, " -sport {v}")?;
        }
        if let Some(v) = &self.icmp_type {
            write!(f, " -icmp-type {v}")?;
        }
        if let Some(v) = &self.log {
            write!(f, " -log {v}")?;
        }
        if let Some(c) = &self.comment {
            write!(f, " # {c}")?;
        }
        Ok(())
    }
}

fn write_comment(f: &mut fmt::Formatter<'_>, c: &Option<Comment>) -> fmt::Result {
    match c {
        Some(c) => writeln!(f, " # {c}"),
        None => writeln!(f),
    }
}

fn b(v: bool) -> u8 {
    u8::from(v)
}

impl fmt::Display for FwFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let mut opts: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                opts.push((k.to_string(), v));
            }
        };
        push("enable", o.enable.map(|v| b(v).to_string()));
        push("policy_in", o.policy_in.map(|v| v.to_string()));
        push("policy_out", o.policy_out.map(|v| v.to_string()));
        push("policy_forward", o.policy_forward.map(|v| v.to_string()));
        push("dhcp", o.dhcp.map(|v| b(v).to_string()));
        push("ipfilter", o.ipfilter.map(|v| b(v).to_string()));
        push("macfilter", o.macfilter.map(|v| b(v).to_string()));
        push("ndp", o.ndp.map(|v| b(v).to_string()));
        push("radv", o.radv.map(|v| b(v).to_string()));
        push("log_level_in", o.log_level_in.map(|v| v.to_string()));
        push("log_level_out", o.log_level_out.map(|v| v.to_string()));
        push(
            "log_level_forward",
            o.log_level_forward.map(|v| v.to_string()),
        );
        for (k, v) in &o.other {
            opts.push((k.as_str().to_string(), v.as_str().to_string()));
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !first {
                writeln!(f)?;
            }
            first = false;
            Ok(())
        };
        if !opts.is_empty() {
            sep(f)?;
            writeln!(f, "[OPTIONS]")?;
            writeln!(f)?;
            for (k, v) in &opts {
                writeln!(f, "{k}: {v}")?;
            }
        }
        if !self.aliases.is_empty() {
            sep(f)?;
            writeln!(f, "[ALIASES]")?;
            writeln!(f)?;
            for a in &self.aliases {
                write!(f, "{} {}", a.name, a.cidr)?;
                write_comment(f, &a.comment)?;
            }
        }
        for s in &self.ipsets {
            sep(f)?;
            write!(f, "[IPSET {}]", s.name)?;
            write_comment(f, &s.comment)?;
            writeln!(f)?;
            for e in &s.entries {
                write!(f, "{}{}", if e.nomatch { "!" } else { "" }, e.value)?;
                write_comment(f, &e.comment)?;
            }
        }
        if !self.rules.is_empty() {
            sep(f)?;
            writeln!(f, "[RULES]")?;
            writeln!(f)?;
            for r in &self.rules {
                writeln!(f, "{r}")?;
            }
        }
        for g in &self.groups {
            sep(f)?;
            write!(f, "[group {}]", g.name)?;
            write_comment(f, &g.comment)?;
            writeln!(f)?;
            for r in &g.rules {
                writeln!(f, "{r}")?;
            }
        }
        Ok(())
    }
}
