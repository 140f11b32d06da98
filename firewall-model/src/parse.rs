//! Parsing of `.fw` files (strict and lenient). Printing is the `Display` impl of [`FwFile`].

use crate::addr::{Address, Cidr, IpSetValue};
use crate::error::{Error, LineError, Result};
use crate::macros::MacroName;
use crate::model::{
    Alias, FileKind, FwFile, IpSet, IpSetEntry, OptionKey, OptionValue, Rule, RuleKind,
    SecurityGroup, SourceLine,
};
use crate::text::{Action, AliasName, Comment, Direction, GroupName, IpSetName};

enum Section {
    None,
    Options,
    Rules,
    Aliases,
    IpSet(usize),
    Group(usize),
    /// A bad header: its lines are skipped (the header itself was reported).
    Skip,
}

/// Parses a file strictly: every bad line is reported, with its number and reason.
pub fn parse(text: &str, kind: FileKind) -> Result<FwFile> {
    let (file, errors) = parse_lenient(text, kind);
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(Error::Parse(errors))
    }
}

/// Parses a file like pve-firewall does: bad lines are skipped and returned as warnings.
pub fn parse_lenient(text: &str, kind: FileKind) -> (FwFile, Vec<LineError>) {
    let mut file = FwFile::new(kind);
    let mut errors = Vec::new();
    let mut section = Section::None;
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if raw
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\r')
        {
            errors.push(LineError {
                line,
                reason: "control character in line".into(),
            });
            continue;
        }
        if l.starts_with('[') {
            match parse_header(l, kind, &mut file) {
                Ok(s) => section = s,
                Err(reason) => {
                    errors.push(LineError { line, reason });
                    section = Section::Skip;
                }
            }
            continue;
        }
        let res = match section {
            Section::None => Err("line outside of any section".to_string()),
            Section::Skip => continue,
            Section::Options => parse_option(l, &mut file),
            Section::Rules => parse_rule(l, line, kind, false).map(|r| file.rules.push(r)),
            Section::Aliases => parse_alias(l).and_then(|a| {
                if file.alias(a.name.as_str()).is_some() {
                    Err(format!("duplicate alias `{}`", a.name))
                } else {
                    file.aliases.push(a);
                    Ok(())
                }
            }),
            Section::IpSet(i) => parse_ipset_entry(l).and_then(|e| {
                file.ipsets
                    .get_mut(i)
                    .map(|s| s.entries.push(e))
                    .ok_or_else(|| "internal: ip set vanished".to_string())
            }),
            Section::Group(i) => parse_rule(l, line, kind, true).and_then(|r| {
                file.groups
                    .get_mut(i)
                    .map(|g| g.rules.push(r))
                    .ok_or_else(|| "internal: group vanished".to_string())
            }),
        };
        if let Err(reason) = res {
            errors.push(LineError { line, reason });
        }
    }
    (file, errors)
}

fn split_comment(l: &str) -> Result<(&str, Option<Comment>), String> {
    match l.split_once('#') {
        Some((body, c)) => Ok((
            body.trim(),
            Comment::optional(Some(c)).map_err(|e| e.to_string())?,
        )),
        None => Ok((l.trim(), None)),
    }
}

fn parse_header(l: &str, kind: FileKind, file: &mut FwFile) -> Result<Section, String> {
    let (body, comment) = split_comment(l)?;
    let inner = body
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .ok_or_else(|| "malformed section header".to_string())?
        .trim();
    let mut parts = inner.split_whitespace();
    let head = parts.next().unwrap_or_default().to_ascii_lowercase();
    let name = parts.next();
    if parts.next().is_some() {
        return Err("too many words in section header".into());
    }
    let allowed = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("section [{what}] is not allowed in this file"))
        }
    };
    match (head.as_str(), name) {
        ("options", None) => Ok(Section::Options),
        ("rules", None) => Ok(Section::Rules),
        ("aliases", None) => {
            allowed(
                matches!(kind, FileKind::Cluster | FileKind::Guest),
                "ALIASES",
            )?;
            Ok(Section::Aliases)
        }
        ("ipset", Some(n)) => {
            allowed(matches!(kind, FileKind::Cluster | FileKind::Guest), "IPSET")?;
            let name = IpSetName::new(n).map_err(|e| e.to_string())?;
            if file.ipset(name.as_str()).is_some() {
                return Err(format!("duplicate ip set `{name}`"));
            }
            file.ipsets.push(IpSet {
                name,
                comment,
                entries: Vec::new(),
            });
            Ok(Section::IpSet(file.ipsets.len() - 1))
        }
        ("group", Some(n)) => {
            allowed(kind == FileKind::Cluster, "group")?;
            let name = GroupName::new(n).map_err(|e| e.to_string())?;
            if file.group(name.as_str()).is_some() {
                return Err(format!("duplicate security group `{name}`"));
            }
            file.groups.push(SecurityGroup {
                name,
                comment,
                rules: Vec::new(),
            });
            Ok(Section::Group(file.groups.len() - 1))
        }
        _ => Err(format!("unknown section `{inner}`")),
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(format!("`{v}` is not a boolean")),
    }
}

fn parse_option(l: &str, file: &mut FwFile) -> Result<(), String> {
    if l.contains('#') {
        return Err("`#` not allowed in an option line".into());
    }
    let (k, v) = l
        .split_once(':')
        .ok_or_else(|| "expected `key: value`".to_string())?;
    let (k, v) = (k.trim(), v.trim());
    let o = &mut file.options;
    let e = |x: Error| x.to_string();
    match k {
        "enable" => once(&mut o.enable, k, || parse_bool(v)),
        "dhcp" => once(&mut o.dhcp, k, || parse_bool(v)),
        "ipfilter" => once(&mut o.ipfilter, k, || parse_bool(v)),
        "macfilter" => once(&mut o.macfilter, k, || parse_bool(v)),
        "ndp" => once(&mut o.ndp, k, || parse_bool(v)),
        "radv" => once(&mut o.radv, k, || parse_bool(v)),
        "policy_in" => once(&mut o.policy_in, k, || v.parse().map_err(e)),
        "policy_out" => once(&mut o.policy_out, k, || v.parse().map_err(e)),
        "policy_forward" => once(&mut o.policy_forward, k, || v.parse().map_err(e)),
        "log_level_in" => once(&mut o.log_level_in, k, || v.parse().map_err(e)),
        "log_level_out" => once(&mut o.log_level_out, k, || v.parse().map_err(e)),
        "log_level_forward" => once(&mut o.log_level_forward, k, || v.parse().map_err(e)),
        _ => {
            let key = OptionKey::new(k).map_err(e)?;
            if o.other.iter().any(|(x, _)| x == &key) {
                return Err(duplicate(k));
            }
            o.other.push((key, OptionValue::new(v).map_err(e)?));
            Ok(())
        }
    }
}

fn duplicate(k: &str) -> String {
    format!("duplicate option `{k}`")
}

/// Set a known option from its line's value; a second line for it is refused before its value
/// is parsed.
fn once<T>(
    slot: &mut Option<T>,
    k: &str,
    value: impl FnOnce() -> Result<T, String>,
) -> Result<(), String> {
    if slot.is_some() {
        return Err(duplicate(k));
    }
    *slot = Some(value()?);
    Ok(())
}

fn parse_alias(l: &str) -> Result<Alias, String> {
    let (body, comment) = split_comment(l)?;
    let mut it = body.split_whitespace();
    let (Some(name), Some(cidr), None) = (it.next(), it.next(), it.next()) else {
        return Err("expected `name cidr [# comment]`".into());
    };
    Ok(Alias {
        name: AliasName::new(name).map_err(|e| e.to_string())?,
        cidr: cidr.parse::<Cidr>().map_err(|e| e.to_string())?,
        comment,
    })
}

fn parse_ipset_entry(l: &str) -> Result<IpSetEntry, String> {
    let (body, comment) = split_comment(l)?;
    let mut it = body.split_whitespace();
    let (Some(v), None) = (it.next(), it.next()) else {
        return Err("expected `[!]cidr-or-alias [# comment]`".into());
    };
    let (nomatch, v) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    Ok(IpSetEntry {
        nomatch,
        value: v.parse::<IpSetValue>().map_err(|e| e.to_string())?,
        comment,
    })
}

/// Parses one rule line (without section context). `in_group` selects group rules.
pub fn parse_rule_line(l: &str, kind: FileKind, in_group: bool) -> Result<Rule> {
    parse_rule(l.trim(), 0, kind, in_group).map_err(|reason| Error::invalid("rule", l, reason))
}

fn parse_rule(l: &str, line: usize, kind: FileKind, in_group: bool) -> Result<Rule, String> {
    let (body, comment) = split_comment(l)?;
    let (enabled, body) = match body.strip_prefix('|') {
        Some(rest) => (false, rest.trim_start()),
        None => (true, body),
    };
    let mut toks = body.split_whitespace();
    let first = toks.next().ok_or_else(|| "empty rule".to_string())?;
    let e = |x: Error| x.to_string();
    let rkind = if first.eq_ignore_ascii_case("GROUP") {
        let name = toks
            .next()
            .ok_or_else(|| "GROUP needs a name".to_string())?;
        RuleKind::Group(GroupName::new(name).map_err(e)?)
    } else {
        let dir: Direction = first.to_ascii_uppercase().parse().map_err(e)?;
        let act = toks.next().ok_or_else(|| "missing action".to_string())?;
        if let Some((m, rest)) = act.split_once('(') {
            let a = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("malformed macro action `{act}`"))?;
            RuleKind::Macro(
                dir,
                MacroName::new(m).map_err(e)?,
                a.parse::<Action>().map_err(e)?,
            )
        } else {
            RuleKind::Action(dir, act.parse::<Action>().map_err(e)?)
        }
    };
    let mut rule = Rule::with_kind(rkind);
    rule.enabled = enabled;
    rule.comment = comment;
    rule.line = SourceLine(Some(line).filter(|l| *l > 0));
    let mut dport: Option<&str> = None;
    while let Some(opt) = toks.next() {
        let val = toks
            .next()
            .ok_or_else(|| format!("option `{opt}` needs a value"))?;
        fn set<T>(slot: &mut Option<T>, v: T, opt: &str) -> Result<(), String> {
            if slot.is_some() {
                return Err(format!("duplicate option `{opt}`"));
            }
            *slot = Some(v);
            Ok(())
        }
        match opt {
            "-i" | "-iface" => set(&mut rule.iface, val.parse().map_err(e)?, opt)?,
            "-source" => set(&mut rule.source, val.parse::<Address>().map_err(e)?, opt)?,
            "-dest" => set(&mut rule.dest, val.parse::<Address>().map_err(e)?, opt)?,
            "-p" | "-proto" => set(&mut rule.proto, val.parse().map_err(e)?, opt)?,
            "-dport" => set(&mut dport, val, opt)?,
            "-sport" => set(&mut rule.sport, val.parse().map_err(e)?, opt)?,
            "-icmp-type" => set(&mut rule.icmp_type, val.parse().map_err(e)?, opt)?,
            "-log" => set(&mut rule.log, val.parse().map_err(e)?, opt)?,
            _ => return Err(format!("unknown option `{opt}`")),
        }
    }
    if let Some(d) = dport {
        set_dport(&mut rule, d).map_err(e)?;
    }
    rule.validate(kind, in_group).map_err(e)?;
    Ok(rule)
}

/// Sets `-dport`. pve-firewall still accepts the legacy form where `-dport` carries the ICMP
/// type of an `-p icmp`/`icmpv6` rule (`ipt_rule_to_cmds` reuses dport for `--icmp-type`); it
/// becomes `-icmp-type`.
pub(crate) fn set_dport(rule: &mut Rule, value: &str) -> crate::error::Result<()> {
    let is_macro = matches!(rule.kind, RuleKind::Macro(..));
    match rule.proto {
        Some(p) if p.is_icmp() && !is_macro => {
            if rule.icmp_type.is_some() {
                return Err(Error::invalid(
                    "rule",
                    value,
                    "both -dport and -icmp-type give the ICMP type",
                ));
            }
            rule.icmp_type = Some(value.parse()?);
        }
        _ => rule.dport = Some(value.parse()?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "\
[OPTIONS]
enable: 1
policy_in: DROP

[IPSET office] # our office
10.0.0.0/8
!10.9.0.0/16 # guests
dc/monitor

[RULES]
IN SSH(ACCEPT) -source +office -log nolog # admins
|IN ACCEPT -p tcp -dport 80,443
OUT DROP -dest 192.0.2.0/24
GROUP web -i net0
";

    #[test]
    fn parses_and_prints_round_trip() {
        let f = parse(VM, FileKind::Guest).unwrap();
        assert_eq!(f.rules.len(), 4);
        assert!(!f.rules[1].enabled);
        assert_eq!(f.rules[0].line.0, Some(11));
        assert!(f.ipsets[0].entries[1].nomatch);
        let printed = f.to_string();
        let again = parse(&printed, FileKind::Guest).unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn strict_reports_every_bad_line_with_number() {
        let text = "[RULES]\nIN ACCEPT -p tcp\nIN ACCEPT -dport 22\nIN FOO\nOUT ACCEPT -p udp -dport 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16\n";
        let err = parse(text, FileKind::Guest).unwrap_err();
        let lines: Vec<usize> = err.line_errors().iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(err.line_errors()[0].reason.contains("-p"));
        let (f, warnings) = parse_lenient(text, FileKind::Guest);
        assert_eq!(f.rules.len(), 1);
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn section_rules_per_file_kind() {
        assert!(parse("[group web]\nIN ACCEPT\n", FileKind::Guest).is_err());
        assert!(parse("[IPSET x1]\n", FileKind::Host).is_err());
        assert!(parse("[RULES]\nFORWARD ACCEPT\n", FileKind::Guest).is_err());
        assert!(parse("[RULES]\nFORWARD ACCEPT\n", FileKind::Host).is_ok());
        assert!(parse("[rules]\nin ACCEPT\n", FileKind::Host).is_ok());
    }

    #[test]
    fn smuggling_is_rejected() {
        assert!(
            parse("[RULES]\nIN ACCEPT -i net0#x\n", FileKind::Guest)
                .is_ok_and(|f| f.rules[0].iface.is_some() && f.rules[0].comment.is_some())
        );
        assert!(parse("[RULES]\nIN ACCEPT -source 1.2.3.4\u{0}\n", FileKind::Guest).is_err());
        assert!(parse("[OPTIONS]\nnosmurfs: 1 # x\n", FileKind::Host).is_err());
        assert!(parse_rule_line("IN ACCEPT -i net0 -i net1", FileKind::Guest, false).is_err());
    }

    #[test]
    fn options_are_set_once() {
        let reason = |text: &str| {
            parse(text, FileKind::Host).unwrap_err().line_errors()[0]
                .reason
                .clone()
        };
        // The second line is refused as a duplicate even when its value is bad.
        assert_eq!(
            reason("[OPTIONS]\nenable: 1\nenable: maybe\n"),
            "duplicate option `enable`"
        );
        assert_eq!(
            reason("[OPTIONS]\npolicy_in: DROP\npolicy_in: ACCEPT\n"),
            "duplicate option `policy_in`"
        );
        assert_eq!(
            reason("[OPTIONS]\nnosmurfs: 1\nnosmurfs: 0\n"),
            "duplicate option `nosmurfs`"
        );
        assert_eq!(
            reason("[OPTIONS]\nenable: maybe\n"),
            "`maybe` is not a boolean"
        );
        let f = parse("[OPTIONS]\nenable: 0\nlog_level_in: info\n", FileKind::Host).unwrap();
        assert_eq!(f.options.enable, Some(false));
        assert!(f.options.log_level_in.is_some());
    }

    #[test]
    fn legacy_dport_is_the_icmp_type_for_icmp() {
        let r = parse_rule_line(
            "IN ACCEPT -dport echo-request -p icmp",
            FileKind::Guest,
            false,
        )
        .unwrap();
        assert_eq!(r.to_string(), "IN ACCEPT -p icmp -icmp-type echo-request");
        let r = parse_rule_line("IN DROP -p icmpv6 -dport 128", FileKind::Guest, false).unwrap();
        assert_eq!(r.icmp_type.unwrap().as_str(), "128");
        assert!(parse_rule_line("IN DROP -p icmp -dport bogus", FileKind::Guest, false).is_err());
        assert!(
            parse_rule_line(
                "IN DROP -p icmp -dport 8 -icmp-type 8",
                FileKind::Guest,
                false
            )
            .is_err()
        );
        let api = crate::api::ApiRule::from_json(
            r#"{"type":"in","action":"ACCEPT","proto":"icmp","dport":"echo-request","enable":1}"#,
        )
        .unwrap();
        assert_eq!(
            api.to_rule(FileKind::Guest, false).unwrap().to_string(),
            "IN ACCEPT -p icmp -icmp-type echo-request"
        );
    }

    #[test]
    fn vnet_files_hold_forward_rules_only() {
        let f = parse(
            "[OPTIONS]\nenable: 1\npolicy_forward: DROP\n\n[RULES]\nFORWARD ACCEPT -p tcp -dport 80\n",
            FileKind::Vnet,
        )
        .unwrap();
        assert_eq!(f.rules.len(), 1);
        assert_eq!(parse(&f.to_string(), FileKind::Vnet).unwrap(), f);
        assert!(parse("[RULES]\nIN ACCEPT\n", FileKind::Vnet).is_err());
        assert!(parse("[IPSET x1]\n", FileKind::Vnet).is_err());
        assert!(parse("[ALIASES]\na1 10.0.0.1\n", FileKind::Vnet).is_err());
    }

    #[test]
    fn macro_conflicts_are_errors() {
        assert!(
            parse_rule_line("IN SSH(ACCEPT) -dport 23 -p tcp", FileKind::Guest, false).is_err()
        );
        assert!(
            parse_rule_line("IN SSH(ACCEPT) -sport 1024:65535", FileKind::Guest, false).is_ok()
        );
        assert!(
            parse_rule_line("IN ssh(DROP)", FileKind::Guest, false)
                .unwrap()
                .to_string()
                == "IN SSH(DROP)"
        );
    }
}
