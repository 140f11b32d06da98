//! Firewall decisions that do not need the rule model: positions, moves and the anti-spoofing
//! IP set.
//!
//! PVE inserts a new rule at position 0 (ignoring `pos`) and moves a rule with
//! `PUT .../rules/{pos}` `moveto=N`, which places the rule *before the rule that was at `N`*
//! (so moving down to final index `p` needs `moveto = p + 1`). [`apply_move`] is that
//! algorithm, used to check every plan here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::MacAddr;
use crate::service::Service;

/// A VM's firewall as the customer set it (options and rules), kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SavedFirewall {
    /// `enable`.
    pub enable: Option<bool>,
    /// `policy_in` (`ACCEPT`, `DROP`, `REJECT`).
    pub policy_in: Option<String>,
    /// `policy_out`.
    pub policy_out: Option<String>,
    /// The rules in order, as the API sends them.
    pub rules: Vec<pve_vps_firewall::ApiRule>,
    /// The VM's IP sets with their entries, except the provider's `ipfilter-netN` (rebuilt
    /// from the service). Plans stored before this field existed read it as empty.
    #[serde(default)]
    pub ipsets: Vec<SavedIpSet>,
    /// The VM's aliases.
    #[serde(default)]
    pub aliases: Vec<SavedAlias>,
}

/// A VM-level IP set kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedIpSet {
    /// The set's name.
    pub name: String,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// The entries, as PVE lists them.
    pub entries: Vec<SavedIpSetEntry>,
}

/// One entry of a [`SavedIpSet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedIpSetEntry {
    /// An address, network, range or alias name, as PVE lists it.
    pub cidr: String,
    /// `!` entries.
    #[serde(default)]
    pub nomatch: bool,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A VM-level alias kept across a reinstall.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAlias {
    /// The alias's name.
    pub name: String,
    /// Its address or network.
    pub cidr: String,
    /// Its comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The anti-spoofing IP set of `net0`, managed by the provider.
pub const IPFILTER_NET0: &str = "ipfilter-net0";

/// One `PUT .../firewall/rules/{pos}` with `moveto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMove {
    /// The rule's current position.
    pub pos: usize,
    /// PVE's `moveto`: the rule is placed before the rule currently at this position.
    pub moveto: usize,
}

/// PVE's move algorithm on any list (the reference the plans are checked against).
pub fn apply_move<T: Clone>(rules: &[T], mv: RuleMove) -> Vec<T> {
    if mv.pos >= rules.len() || mv.pos == mv.moveto {
        return rules.to_vec();
    }
    let rule = rules[mv.pos].clone();
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        if i == mv.pos {
            continue;
        }
        if i == mv.moveto {
            out.push(rule.clone());
        }
        out.push(r.clone());
    }
    if mv.moveto >= rules.len() {
        out.push(rule);
    }
    out
}

/// The move that takes the rule at `from` to final index `to`.
pub fn move_to_index(from: usize, to: usize) -> RuleMove {
    RuleMove {
        pos: from,
        moveto: if to > from { to + 1 } else { to },
    }
}

/// Adding a rule at customer position `position` in a list of `len` rules: create it (PVE
/// puts it at 0; send `enable=1` or PVE disables it), then this move, if any.
pub fn insert_position(position: usize, len: usize) -> Result<Option<RuleMove>, Error> {
    if position > len {
        return Err(Error::RulePosition { pos: position, len });
    }
    Ok((position != 0).then(|| move_to_index(0, position)))
}

/// A drag-and-drop: the rule at `from` dropped at index `to`.
pub fn drag(from: usize, to: usize, len: usize) -> Result<Option<RuleMove>, Error> {
    for p in [from, to] {
        if p >= len {
            return Err(Error::RulePosition { pos: p, len });
        }
    }
    Ok((from != to).then(|| move_to_index(from, to)))
}

/// The moves that reorder `current` into `desired` (the same items, e.g. rule digests or
/// ids), to be sent in order. Returns `None` when `desired` is not a permutation of `current`.
pub fn reorder_plan<T: PartialEq + Clone>(current: &[T], desired: &[T]) -> Option<Vec<RuleMove>> {
    if current.len() != desired.len() {
        return None;
    }
    let mut work = current.to_vec();
    let mut moves = Vec::new();
    for (i, want) in desired.iter().enumerate() {
        let j = i + work[i..].iter().position(|x| x == want)?;
        if j != i {
            let mv = move_to_index(j, i);
            work = apply_move(&work, mv);
            moves.push(mv);
        }
    }
    Some(moves)
}

/// Refuses a customer edit of a provider-managed IP set (`ipfilter-netN`).
pub fn check_customer_ipset(name: &str) -> Result<(), Error> {
    let lower = name.to_ascii_lowercase();
    let reserved = lower
        .strip_prefix("ipfilter-net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if reserved {
        Err(Error::Reserved {
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// The IPv6 link-local address PVE derives from a MAC (EUI-64); NDP needs it in the ipfilter.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let b = mac.bytes();
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([b[0] ^ 0x02, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// One entry of an IP set as PVE lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsetEntry {
    /// The address or network.
    pub cidr: IpNet,
    /// `!` entries (no-match).
    #[serde(default)]
    pub nomatch: bool,
}

/// The entries `ipfilter-net0` must hold: every assigned address as a host entry, and the
/// link-local address of the MAC when the service has IPv6.
pub fn desired_ipfilter(service: &Service) -> BTreeSet<IpNet> {
    let mut s: BTreeSet<IpNet> = service.host_nets().into_iter().collect();
    if service.ipv6.is_some() {
        s.insert(IpNet::from(IpAddr::V6(link_local(service.mac))));
    }
    s
}

/// What to add to and remove from an IP set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpsetDiff {
    /// Entries to add (`POST .../ipset/{name}`).
    pub add: Vec<IpNet>,
    /// Entries to remove (`DELETE .../ipset/{name}/{cidr}`).
    pub remove: Vec<IpNet>,
}

impl IpsetDiff {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The diff that makes `current` equal `desired`. Entries are compared as networks with host
/// bits cleared; a no-match entry is always removed (it would let spoofed traffic through
/// nothing, but it is not ours).
pub fn diff_ipset(current: &[IpsetEntry], desired: &BTreeSet<IpNet>) -> IpsetDiff {
    let mut d = IpsetDiff::default();
    let mut have = BTreeSet::new();
    for e in current {
        let n = e.cidr.trunc();
        if e.nomatch || !desired.contains(&n) || !have.insert(n) {
            d.remove.push(e.cidr);
        }
    }
    d.add = desired
        .iter()
        .filter(|n| !have.contains(*n))
        .copied()
        .collect();
    d
}

/// Applies a diff to a listing (what PVE would hold afterwards); used by tests and simulators.
pub fn apply_ipset_diff(current: &[IpsetEntry], diff: &IpsetDiff) -> Vec<IpsetEntry> {
    let mut out: Vec<IpsetEntry> = current.to_vec();
    for r in &diff.remove {
        if let Some(i) = out.iter().position(|e| e.cidr == *r) {
            out.remove(i);
        }
    }
    out.extend(diff.add.iter().map(|n| IpsetEntry {
        cidr: *n,
        nomatch: false,
    }));
    out
}

/// The addresses the lockout guard evaluates for the management `sources`: for each source
/// network, its first address and every address inside it where a boundary of an address,
/// network, range, IP set entry or alias of `files` starts or ends. The firewall's answer for
/// a source address can only change at such a boundary, so checking these addresses checks
/// every address of the networks.
pub fn probe_addresses(sources: &[IpNet], files: &[&pve_vps_firewall::FwFile]) -> Vec<IpAddr> {
    use pve_vps_firewall::{AddrItem, Address, IpSetValue};
    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }
    // (is IPv4, start) of every interval boundary: an item [lo, hi] gives lo and hi + 1.
    let mut cuts: BTreeSet<(bool, u128)> = BTreeSet::new();
    let mut span = |lo: IpAddr, hi: IpAddr| {
        cuts.insert((lo.is_ipv4(), to_u128(lo)));
        cuts.insert((hi.is_ipv4(), to_u128(hi).saturating_add(1)));
    };
    for f in files {
        let rules = f.rules.iter().chain(f.groups.iter().flat_map(|g| &g.rules));
        for r in rules {
            for a in [&r.source, &r.dest].into_iter().flatten() {
                if let Address::List(items) = a {
                    for it in items {
                        match *it {
                            AddrItem::Ip(ip) => span(ip, ip),
                            AddrItem::Cidr(n) => span(n.network(), n.broadcast()),
                            AddrItem::Range(lo, hi) => span(lo, hi),
                        }
                    }
                }
            }
        }
        for set in &f.ipsets {
            for e in &set.entries {
                if let IpSetValue::Cidr(c) = &e.value {
                    span(c.net().network(), c.net().broadcast());
                }
            }
        }
        for a in &f.aliases {
            span(a.cidr.net().network(), a.cidr.net().broadcast());
        }
    }
    let mut out = BTreeSet::new();
    for net in sources {
        let (v4, lo, hi) = (
            net.addr().is_ipv4(),
            to_u128(net.network()),
            to_u128(net.broadcast()),
        );
        out.insert(net.network());
        if hi == lo {
            continue;
        }
        for &(_, c) in cuts.range((v4, lo + 1)..=(v4, hi)) {
            out.insert(if v4 {
                IpAddr::from(std::net::Ipv4Addr::from(c as u32))
            } else {
                IpAddr::from(Ipv6Addr::from(c))
            });
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;
    use proptest::prelude::*;

    #[test]
    fn pve_move_semantics() {
        let r = ["n", "a", "b", "c"];
        assert_eq!(
            apply_move(&r, RuleMove { pos: 0, moveto: 2 }),
            ["a", "n", "b", "c"]
        );
        assert_eq!(apply_move(&r, move_to_index(0, 2)), ["a", "b", "n", "c"]);
        assert_eq!(apply_move(&r, move_to_index(3, 1)), ["n", "c", "a", "b"]);
        assert_eq!(apply_move(&r, move_to_index(0, 3)), ["a", "b", "c", "n"]);
        assert!(insert_position(5, 4).unwrap_err().is_invalid_input());
        assert_eq!(insert_position(0, 4).unwrap(), None);
    }

    #[test]
    fn ipfilter() {
        let s = fixtures::service();
        let want = desired_ipfilter(&s);
        assert!(want.contains(&"fe80::be24:11ff:fe7a:4098/128".parse().unwrap()));
        assert_eq!(want.len(), 6);
        let current = vec![
            IpsetEntry {
                cidr: "192.168.130.2/32".parse().unwrap(),
                nomatch: false,
            },
            IpsetEntry {
                cidr: "10.0.0.1/32".parse().unwrap(),
                nomatch: false,
            },
            IpsetEntry {
                cidr: "192.168.130.3/32".parse().unwrap(),
                nomatch: true,
            },
        ];
        let d = diff_ipset(&current, &want);
        assert_eq!(d.remove.len(), 2);
        assert_eq!(d.add.len(), 5);
        let after = apply_ipset_diff(&current, &d);
        assert!(diff_ipset(&after, &want).is_empty());
        assert!(
            check_customer_ipset("ipfilter-net0")
                .unwrap_err()
                .is_denied()
        );
        assert!(check_customer_ipset("IPFILTER-NET1").is_err());
        assert!(check_customer_ipset("office").is_ok());
    }

    #[test]
    fn probes_cover_every_boundary_inside_the_sources() {
        use pve_vps_firewall::{FileKind, parse};
        let f = parse(
            "[ALIASES]\nadmin 198.51.100.7\n\n[IPSET blocked]\n198.51.100.128/25\n!198.51.100.200\n\n\
             [RULES]\nIN DROP -source 10.0.0.0/8\nIN DROP -source 198.51.100.10-198.51.100.12\n",
            FileKind::Cluster,
        )
        .unwrap();
        let src: Vec<IpNet> = vec![
            "198.51.100.0/24".parse().unwrap(),
            "192.0.2.9/32".parse().unwrap(),
        ];
        let got: Vec<String> = probe_addresses(&src, &[&f])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.9",
                "198.51.100.0",
                "198.51.100.7",
                "198.51.100.8",
                "198.51.100.10",
                "198.51.100.13",
                "198.51.100.128",
                "198.51.100.200",
                "198.51.100.201",
            ]
        );
        // Without any boundary, one address per source.
        assert_eq!(probe_addresses(&src, &[]).len(), 2);
    }

    proptest! {
        #[test]
        fn insert_lands_where_asked(len in 0usize..20, pos in 0usize..21) {
            prop_assume!(pos <= len);
            let mut rules: Vec<usize> = (1..=len).collect();
            rules.insert(0, 0); // PVE puts the new rule (0) on top
            if let Some(mv) = insert_position(pos, len).unwrap() {
                rules = apply_move(&rules, mv);
            }
            prop_assert_eq!(rules.iter().position(|r| *r == 0), Some(pos));
        }

        #[test]
        fn drag_lands_where_dropped(len in 1usize..20, a in 0usize..20, b in 0usize..20) {
            prop_assume!(a < len && b < len);
            let rules: Vec<usize> = (0..len).collect();
            let out = match drag(a, b, len).unwrap() { Some(mv) => apply_move(&rules, mv), None => rules.clone() };
            prop_assert_eq!(out[b], a);
            let mut expect = rules.clone();
            let x = expect.remove(a);
            expect.insert(b, x);
            prop_assert_eq!(out, expect);
        }

        #[test]
        fn reorder_reaches_any_permutation(perm in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
            let current: Vec<usize> = (0..perm.len()).collect();
            let moves = reorder_plan(&current, &perm).unwrap();
            prop_assert!(moves.len() < perm.len().max(1));
            let out = moves.iter().fold(current, |acc, mv| apply_move(&acc, *mv));
            prop_assert_eq!(out, perm);
        }
    }
}
