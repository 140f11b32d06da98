//! The compiled evaluator: every chain is flattened into atomic entries, and each packet field
//! is classified once into an interval whose bitset says which entries accept that value. A
//! decision is a handful of binary searches plus an AND over the bitsets; the first set bit is
//! the first matching entry. It must agree with [`Reference`](crate::eval::Reference) on every
//! input (differential property test and fuzz target).

use std::collections::BTreeMap;

use crate::addr::Cidr;
use crate::addr::{Address, Family, ip_to_u128, net_bounds};
use crate::eval::{
    Alt, BuiltinStep, ChainDecision, ChainId, ChainPlan, DecidedBy, Evaluator, NotFiltered, Packet,
    Resolver, Step, TraceStep, alternatives, early_decision, finish,
};
use crate::flow::{FlowDecision, FlowPacket, evaluate_flow};
use crate::model::IpSet;
use crate::node::{MacAddr, Node};
use crate::proto::{IcmpMatch, PortList};
use crate::stdchain::{AddrType, CtState, META_KEYS, RejectMode, StdMatch, meta_key};
use crate::text::{Iface, Verdict};

/// An inclusive interval.
pub(crate) type Iv = (u128, u128);

pub(crate) const PORT_ABSENT: u128 = 65536;
pub(crate) const ICMP_ABSENT: u128 = 65536;

pub(crate) fn fam_max(f: Family) -> u128 {
    match f {
        Family::V4 => u128::from(u32::MAX),
        Family::V6 => u128::MAX,
    }
}

/// Sorts and merges overlapping or adjacent intervals.
pub(crate) fn normalize(mut v: Vec<Iv>) -> Vec<Iv> {
    v.sort_unstable();
    let mut out: Vec<Iv> = Vec::with_capacity(v.len());
    for (a, b) in v {
        if let Some(last) = out.last_mut()
            && a <= last.1.saturating_add(1)
        {
            last.1 = last.1.max(b);
            continue;
        }
        out.push((a, b));
    }
    out
}

/// `a` minus `b`, both normalized.
pub(crate) fn subtract(a: &[Iv], b: &[Iv]) -> Vec<Iv> {
    let mut out = Vec::new();
    for &(mut lo, hi) in a {
        let mut alive = true;
        for &(blo, bhi) in b {
            if bhi < lo || blo > hi {
                continue;
            }
            if blo > lo {
                out.push((lo, blo - 1));
            }
            if bhi >= hi {
                alive = false;
                break;
            }
            lo = bhi + 1;
        }
        if alive {
            out.push((lo, hi));
        }
    }
    out
}

/// Is every value of `a` in `b`? Both normalized.
pub(crate) fn is_subset(a: &[Iv], b: &[Iv]) -> bool {
    subtract(a, b).is_empty()
}

fn set_intervals(res: &Resolver<'_>, set: &IpSet, fam: Family) -> Vec<Iv> {
    set_intervals_with(res, Some(set), None, fam)
}

fn set_intervals_with(
    res: &Resolver<'_>,
    set: Option<&IpSet>,
    extra: Option<Cidr>,
    fam: Family,
) -> Vec<Iv> {
    let listed = set
        .map_or(&[][..], |s| s.entries.as_slice())
        .iter()
        .map(|e| (res.entry_cidr(&e.value), e.nomatch));
    let mut entries: Vec<(u8, bool, Iv)> = listed
        .chain(extra.map(|c| (Some(c), false)))
        .filter_map(|(c, nomatch)| {
            let c = c?;
            (c.family() == fam).then(|| (c.net().prefix_len(), nomatch, net_bounds(&c.net())))
        })
        .collect();
    // Painting from the least to the most specific entry gives longest-prefix semantics.
    entries.sort_by_key(|(p, n, _)| (*p, *n));
    let mut cur: Vec<Iv> = Vec::new();
    for (_, nomatch, iv) in entries {
        cur = if nomatch {
            subtract(&cur, &[iv])
        } else {
            let mut v = cur;
            v.push(iv);
            normalize(v)
        };
    }
    cur
}

fn addr_intervals(res: &Resolver<'_>, a: Option<&Address>, fam: Family) -> Vec<Iv> {
    let Some(a) = a else {
        return vec![(0, fam_max(fam))];
    };
    match a {
        Address::List(items) => normalize(
            items
                .iter()
                .filter(|i| i.family() == fam)
                .map(|i| i.bounds())
                .collect(),
        ),
        Address::Alias(sc, n) => res
            .alias(*sc, n.as_str())
            .filter(|c| c.family() == fam)
            .map(|c| vec![net_bounds(&c.net())])
            .unwrap_or_default(),
        Address::IpSet(sc, n) => res
            .ipset(*sc, n.as_str())
            .map(|(s, r)| set_intervals(&r, s, fam))
            .unwrap_or_default(),
    }
}

fn ports(list: Option<&PortList>) -> Vec<Iv> {
    match list {
        None => vec![(0, PORT_ABSENT)],
        Some(l) => normalize(
            l.entries()
                .iter()
                .map(|e| {
                    let (a, b) = e.bounds();
                    (u128::from(a), u128::from(b))
                })
                .collect(),
        ),
    }
}

/// One atomic entry: a conjunction of per-field sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Atom {
    pub(crate) iface: Option<Iface>,
    pub(crate) src: Vec<Iv>,
    pub(crate) dst: Vec<Iv>,
    pub(crate) proto: Vec<Iv>,
    pub(crate) dport: Vec<Iv>,
    pub(crate) sport: Vec<Iv>,
    pub(crate) icmp: Vec<Iv>,
    /// Conntrack state and address types ([`meta_key`]).
    pub(crate) meta: Vec<Iv>,
    /// TCP flags.
    pub(crate) flags: Vec<Iv>,
}

impl Atom {
    fn full(fam: Family) -> Self {
        Atom {
            iface: None,
            src: vec![(0, fam_max(fam))],
            dst: vec![(0, fam_max(fam))],
            proto: vec![(0, 255)],
            dport: vec![(0, PORT_ABSENT)],
            sport: vec![(0, PORT_ABSENT)],
            icmp: vec![(0, ICMP_ABSENT)],
            meta: vec![(0, u128::from(META_KEYS - 1))],
            flags: vec![(0, u128::from(crate::stdchain::tcp::ALL))],
        }
    }
    /// Does every packet matching `self` also match `other`?
    pub(crate) fn within(&self, other: &Atom) -> bool {
        (other.iface.is_none() || other.iface == self.iface)
            && is_subset(&self.src, &other.src)
            && is_subset(&self.dst, &other.dst)
            && is_subset(&self.proto, &other.proto)
            && is_subset(&self.dport, &other.dport)
            && is_subset(&self.sport, &other.sport)
            && is_subset(&self.icmp, &other.icmp)
            && is_subset(&self.meta, &other.meta)
            && is_subset(&self.flags, &other.flags)
    }
}

fn alt_atom(alt: &Alt<'_>, fam: Family, base: &Atom) -> Option<Atom> {
    let mut a = base.clone();
    match alt.proto {
        None => {
            if alt.dport.is_some() || alt.sport.is_some() || alt.icmp.is_some() {
                return None;
            }
        }
        Some(p) => {
            if p.family().is_some_and(|f| f != fam) {
                return None;
            }
            a.proto = vec![(u128::from(p.number()), u128::from(p.number()))];
            if (alt.dport.is_some() || alt.sport.is_some()) && !p.has_ports() {
                return None;
            }
            a.dport = ports(alt.dport);
            a.sport = ports(alt.sport);
            if let Some(t) = alt.icmp {
                if !p.is_icmp() {
                    return None;
                }
                a.icmp = match t.resolve(fam == Family::V6)? {
                    IcmpMatch::Any => vec![(0, ICMP_ABSENT - 1)],
                    IcmpMatch::Type(t, None) => {
                        let t = u128::from(t) * 256;
                        vec![(t, t + 255)]
                    }
                    IcmpMatch::Type(t, Some(c)) => {
                        let k = u128::from(t) * 256 + u128::from(c);
                        vec![(k, k)]
                    }
                };
            }
        }
    }
    Some(a)
}

fn cidr_intervals(list: &[Cidr], fam: Family) -> Vec<Iv> {
    normalize(
        list.iter()
            .filter(|c| c.family() == fam)
            .map(|c| net_bounds(&c.net()))
            .collect(),
    )
}

fn ranges(list: &[(u16, u16)]) -> Vec<Iv> {
    if list.is_empty() {
        return vec![(0, PORT_ABSENT)];
    }
    normalize(
        list.iter()
            .map(|(a, b)| (u128::from(*a), u128::from(*b)))
            .collect(),
    )
}

/// The atom of a standard rule; `None` when it can never match in this family.
fn std_atom(m: &StdMatch, fam: Family, full: &Atom) -> Option<Atom> {
    if m.fam.is_some_and(|f| f != fam) {
        return None;
    }
    let mut a = full.clone();
    a.iface = m.iface.clone();
    if let Some(p) = m.proto {
        a.proto = vec![(u128::from(p), u128::from(p))];
    }
    a.dport = ranges(&m.dport);
    a.sport = ranges(&m.sport);
    if !m.icmp.is_empty() {
        a.icmp = normalize(
            m.icmp
                .iter()
                .map(|(t, c)| {
                    let t = u128::from(*t) * 256;
                    match c {
                        Some(c) => (t + u128::from(*c), t + u128::from(*c)),
                        None => (t, t + 255),
                    }
                })
                .collect(),
        );
    }
    if !m.src.is_empty() {
        a.src = cidr_intervals(&m.src, fam);
    }
    if !m.src_not.is_empty() {
        a.src = subtract(&a.src, &cidr_intervals(&m.src_not, fam));
    }
    if !m.dst.is_empty() {
        a.dst = cidr_intervals(&m.dst, fam);
    }
    if m.has_meta() {
        a.meta = m.meta_intervals();
    }
    if m.flags.is_some() {
        a.flags = m.flag_intervals();
    }
    let empty = [
        &a.src, &a.dst, &a.dport, &a.sport, &a.icmp, &a.meta, &a.flags,
    ]
    .iter()
    .any(|v| v.is_empty());
    (!empty).then_some(a)
}

/// What an atomic entry decides.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) verdict: Verdict,
    pub(crate) by: DecidedBy,
    /// Index of the plan step it came from.
    pub(crate) step: usize,
}

/// Atomic entries, and the index and MAC of the `MacFilter` entry.
pub(crate) type Flattened = (Vec<(Entry, Atom)>, Option<(usize, MacAddr)>);

/// Flattens a plan into atomic entries for one family. The `MacFilter` entry (matches every
/// header) is returned with its index, since it depends on the MAC, not on a header field.
pub(crate) fn atoms(plan: &ChainPlan<'_>, fam: Family) -> Flattened {
    let res = &plan.resolver;
    let mut out = Vec::new();
    let mut mac = None;
    let full = Atom::full(fam);
    for (si, step) in plan.steps.iter().enumerate() {
        let entry = |verdict: Verdict, by: DecidedBy| Entry {
            verdict,
            by,
            step: si,
        };
        match step {
            Step::Builtin(b) => {
                let by = DecidedBy::Builtin(b.kind());
                let v = b.verdict();
                let mut a = full.clone();
                match b {
                    BuiltinStep::MacFilter(m) => {
                        mac = Some((out.len(), *m));
                    }
                    BuiltinStep::IpFilter(set) => {
                        let mut allowed: Vec<Iv> = set
                            .implicit
                            .iter()
                            .filter(|ip| Family::of(ip) == fam)
                            .map(|ip| (ip_to_u128(ip), ip_to_u128(ip)))
                            .collect();
                        if let Some(s) = set.explicit {
                            allowed.extend(set_intervals(res, s, fam));
                        }
                        a.src = subtract(&[(0, fam_max(fam))], &normalize(allowed));
                    }
                    BuiltinStep::Blacklist(set) => {
                        a.src = set_intervals(&res.dc(), set, fam);
                    }
                    BuiltinStep::Management(m) => {
                        a.proto = vec![(6, 6)];
                        a.dport = ranges(m.ports);
                        a.src = set_intervals_with(&res.dc(), m.set, m.extra, fam);
                    }
                }
                out.push((entry(v, by), a));
            }
            Step::Rule {
                rule,
                at,
                group_iface,
                action,
            } => {
                let iface = match (group_iface, &rule.iface) {
                    (Some(g), Some(r)) if *g != r => continue,
                    (Some(g), _) => Some((*g).clone()),
                    (None, r) => r.clone(),
                };
                let src = addr_intervals(res, rule.source.as_ref(), fam);
                let dst = addr_intervals(res, rule.dest.as_ref(), fam);
                if src.is_empty() || dst.is_empty() {
                    continue;
                }
                let base = Atom {
                    iface,
                    src,
                    dst,
                    ..full.clone()
                };
                for alt in alternatives(rule, fam) {
                    if let Some(a) = alt_atom(&alt, fam, &base) {
                        out.push((
                            entry(Verdict::from(*action), DecidedBy::Rule(at.clone())),
                            a,
                        ));
                    }
                }
            }
            Step::Std(e) => {
                if let Some(a) = std_atom(&e.m, fam, &full) {
                    out.push((entry(e.verdict, e.by.clone()), a));
                }
            }
            Step::EnterGroup { .. } | Step::LeaveGroup(_) | Step::MissingGroup(..) => {}
        }
    }
    (out, mac)
}

/// Per-field classification: interval starts and one bitset row per interval.
#[derive(Clone, Debug, Default)]
struct Field {
    starts: Vec<u128>,
    /// `starts` as `u32` when every start fits (IPv4, ports, protocols): smaller and faster to
    /// search.
    starts32: Option<Vec<u32>>,
    rows: Vec<u64>,
    words: usize,
    /// Per row, one bit per non-zero word of the row.
    summaries: Vec<u64>,
    swords: usize,
}

fn summarize(row: &[u64]) -> Vec<u64> {
    let mut s = vec![0u64; row.len().div_ceil(64)];
    for (w, x) in row.iter().enumerate() {
        if *x != 0
            && let Some(slot) = s.get_mut(w / 64)
        {
            *slot |= 1u64 << (w % 64);
        }
    }
    s
}

impl Field {
    /// `max` is the largest key a packet can have: starts above it are dropped, so a field
    /// every entry accepts in full has one interval and needs no lookup.
    fn build<'a>(sets: impl Iterator<Item = &'a [Iv]> + Clone, n: usize, max: u128) -> Field {
        let words = n.div_ceil(64);
        let mut starts = vec![0u128];
        for set in sets.clone() {
            for &(a, b) in set {
                starts.push(a);
                if let Some(b1) = b.checked_add(1) {
                    starts.push(b1);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        starts.retain(|s| *s <= max);
        let mut rows = vec![0u64; starts.len() * words];
        for (i, set) in sets.enumerate() {
            let (w, bit) = (i / 64, 1u64 << (i % 64));
            for &(a, b) in set {
                let lo = starts.partition_point(|s| *s < a);
                let hi = starts.partition_point(|s| *s <= b);
                for k in lo..hi {
                    if let Some(x) = rows.get_mut(k * words + w) {
                        *x |= bit;
                    }
                }
            }
        }
        // Merge neighbours with identical rows.
        let mut m_starts = Vec::with_capacity(starts.len());
        let mut m_rows: Vec<u64> = Vec::with_capacity(rows.len());
        for (k, s) in starts.iter().enumerate() {
            let row = rows.get(k * words..(k + 1) * words).unwrap_or(&[]);
            let prev_len = m_rows.len();
            if prev_len >= words && words > 0 && m_rows.get(prev_len - words..) == Some(row) {
                continue;
            }
            if words == 0 && !m_starts.is_empty() {
                continue;
            }
            m_starts.push(*s);
            m_rows.extend_from_slice(row);
        }
        let swords = words.div_ceil(64);
        let summaries = if words == 0 {
            Vec::new()
        } else {
            m_rows.chunks(words).flat_map(summarize).collect()
        };
        let starts32 = m_starts
            .iter()
            .map(|s| u32::try_from(*s).ok())
            .collect::<Option<Vec<u32>>>();
        Field {
            starts32,
            starts: m_starts,
            rows: m_rows,
            words,
            summaries,
            swords,
        }
    }

    #[inline]
    fn row(&self, key: u128) -> (&[u64], &[u64]) {
        let k = match (&self.starts32, u32::try_from(key)) {
            (Some(s32), Ok(k32)) => s32.partition_point(|s| *s <= k32),
            // A key above every u32 start lands in the last interval.
            (Some(s32), Err(_)) => s32.len(),
            (None, _) => self.starts.partition_point(|s| *s <= key),
        }
        .saturating_sub(1);
        (
            self.rows
                .get(k * self.words..(k + 1) * self.words)
                .unwrap_or(&[]),
            self.summaries
                .get(k * self.swords..(k + 1) * self.swords)
                .unwrap_or(&[]),
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum FieldKind {
    Src,
    Dst,
    Proto,
    Dport,
    Sport,
    Icmp,
    Iface,
    Meta,
    Flags,
}

#[derive(Clone, Debug, Default)]
struct FamTable {
    entries: Vec<Entry>,
    /// Standard-chain entries, tested directly: they are few, cheap to test, and would
    /// otherwise add lookups (state, flags, ICMP, destination) for every packet.
    direct: Vec<Direct>,
    /// Per protocol number, the indices of `direct` entries that can match it, in order.
    direct_by_proto: Vec<Box<[Quick]>>,
    /// The same for "common" packets (see [`is_common`]): entries that only match unusual
    /// state, address types or TCP flags are left out.
    common_by_proto: Vec<Box<[Quick]>>,
    /// Per protocol, for common packets whose destination port no common entry names: the
    /// common entries without a destination-port condition, and the bitmap of named ports.
    common_portless: Vec<Option<Portless>>,
    ifaces: Vec<Iface>,
    /// AND of the fields that have a single interval (nothing to look up per packet).
    base: Vec<u64>,
    /// One bit per non-zero word of `base`.
    base_summary: Vec<u64>,
    /// Fields that need a lookup, most selective first.
    fields: Vec<(FieldKind, Field)>,
    macfilter: Option<(usize, MacAddr)>,
}

const NO_ROW: (&[u64], &[u64]) = (&[], &[]);

const FSRA: u8 = crate::stdchain::tcp::FIN
    | crate::stdchain::tcp::SYN
    | crate::stdchain::tcp::RST
    | crate::stdchain::tcp::ACK;

/// A "common" packet: the first of a connection between unicast addresses (TCP: SYN without
/// FIN, RST or ACK). Most standard entries cannot match it.
#[inline]
fn is_common(pkt: &Packet) -> bool {
    pkt.ct == CtState::New
        && pkt.srctype == AddrType::Unicast
        && matches!(pkt.dsttype, AddrType::Unicast | AddrType::Local)
        && (pkt.proto != crate::proto::numbers::TCP
            || pkt.tcp_flags & FSRA == crate::stdchain::tcp::SYN)
}

/// Can `m` match some common packet?
fn may_match_common(m: &StdMatch) -> bool {
    let meta = [AddrType::Unicast, AddrType::Local]
        .iter()
        .any(|d| m.meta_matches(CtState::New, AddrType::Unicast, *d));
    let flags = m.proto != Some(crate::proto::numbers::TCP)
        || (0..=crate::stdchain::tcp::ALL)
            .any(|f| f & FSRA == crate::stdchain::tcp::SYN && m.flags_match(f));
    meta && flags
}

/// The bitmap of destination ports some common entry names, and the common entries without a
/// destination-port condition.
type Portless = (Box<[u64]>, Box<[Quick]>);

/// A `direct` entry in a per-protocol list, with its step (to stop at the table's match
/// without reading the entry) and its address and source-port conditions as intervals: a
/// cheap necessary test that rejects most packets before the full [`StdMatch::matches`].
#[derive(Clone, Debug)]
struct Quick {
    idx: u32,
    step: usize,
    /// Source addresses it can match (`src` minus `src_not`); `None`: any.
    src: Option<Box<[Iv]>>,
    /// Destination addresses it can match; `None`: any.
    dst: Option<Box<[Iv]>>,
    /// Source ports it can match; `None`: any.
    sport: Option<Box<[(u16, u16)]>>,
}

impl Quick {
    fn new(idx: u32, d: &Direct, fam: Family) -> Quick {
        let src = (!d.m.src.is_empty() || !d.m.src_not.is_empty()).then(|| {
            let all = if d.m.src.is_empty() {
                vec![(0, fam_max(fam))]
            } else {
                cidr_intervals(&d.m.src, fam)
            };
            subtract(&all, &cidr_intervals(&d.m.src_not, fam)).into_boxed_slice()
        });
        let dst = (!d.m.dst.is_empty()).then(|| cidr_intervals(&d.m.dst, fam).into_boxed_slice());
        let sport = (!d.m.sport.is_empty()).then(|| d.m.sport.clone().into_boxed_slice());
        Quick {
            idx,
            step: d.entry.step,
            src,
            dst,
            sport,
        }
    }

    /// False when the entry cannot match `pkt` (`src` and `dst` are the packet's keys).
    #[inline]
    fn may_match(&self, src: u128, dst: u128, pkt: &Packet) -> bool {
        let within = |ivs: &[Iv], k: u128| ivs.iter().any(|(a, b)| *a <= k && k <= *b);
        self.src.as_deref().is_none_or(|s| within(s, src))
            && self.dst.as_deref().is_none_or(|d| within(d, dst))
            && self.sport.as_deref().is_none_or(|r| {
                pkt.sport
                    .is_some_and(|p| r.iter().any(|(a, b)| *a <= p && p <= *b))
            })
    }
}

/// A standard entry tested directly.
#[derive(Clone, Debug)]
struct Direct {
    m: StdMatch,
    entry: Entry,
}

impl FamTable {
    fn build(plan: &ChainPlan<'_>, fam: Family) -> FamTable {
        let (all, mac) = atoms(plan, fam);
        let mac_step = mac.and_then(|(i, m)| all.get(i).map(|(e, _)| (e.step, m)));
        let mut list = Vec::with_capacity(all.len());
        let mut direct = Vec::new();
        for (e, a) in all {
            match plan.steps.get(e.step) {
                Some(Step::Std(se)) => direct.push(Direct {
                    m: se.m.clone(),
                    entry: e,
                }),
                _ => list.push((e, a)),
            }
        }
        let macfilter = mac_step.and_then(|(step, m)| {
            list.iter()
                .position(|(e, _)| e.step == step)
                .map(|i| (i, m))
        });
        let by_proto = |common_only: bool| -> Vec<Box<[u32]>> {
            (0..=255u8)
                .map(|p| {
                    direct
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.m.proto.is_none_or(|q| q == p))
                        .filter(|(_, d)| !common_only || may_match_common(&d.m))
                        .filter_map(|(i, _)| u32::try_from(i).ok())
                        .collect::<Box<[u32]>>()
                })
                .collect()
        };
        let quick = |list: &[u32]| -> Box<[Quick]> {
            list.iter()
                .filter_map(|i| direct.get(*i as usize).map(|d| Quick::new(*i, d, fam)))
                .collect()
        };
        let direct_by_proto: Vec<Box<[Quick]>> = by_proto(false).iter().map(|l| quick(l)).collect();
        let common_idx = by_proto(true);
        let common_by_proto: Vec<Box<[Quick]>> = common_idx.iter().map(|l| quick(l)).collect();
        let common_portless = common_idx
            .iter()
            .map(|list| {
                let with_port = |i: &u32| {
                    direct
                        .get(*i as usize)
                        .is_some_and(|d: &Direct| !d.m.dport.is_empty())
                };
                if !list.iter().any(with_port) {
                    return None;
                }
                let mut bits = vec![0u64; (PORT_ABSENT as usize + 1).div_ceil(64)];
                for d in list.iter().filter_map(|i| direct.get(*i as usize)) {
                    for (a, b) in &d.m.dport {
                        for p in *a..=*b {
                            if let Some(w) = bits.get_mut(usize::from(p) / 64) {
                                *w |= 1u64 << (p % 64);
                            }
                        }
                    }
                }
                let rest: Vec<u32> = list.iter().copied().filter(|i| !with_port(i)).collect();
                Some((bits.into_boxed_slice(), quick(&rest)))
            })
            .collect();
        let mut ifaces: Vec<Iface> = list.iter().filter_map(|(_, a)| a.iface.clone()).collect();
        ifaces.sort();
        ifaces.dedup();
        let other = ifaces.len() as u128;
        let iface_sets: Vec<Vec<Iv>> = list
            .iter()
            .map(|(_, a)| match &a.iface {
                None => vec![(0, other)],
                Some(i) => {
                    let k = ifaces.binary_search(i).map_or(other, |k| k as u128);
                    vec![(k, k)]
                }
            })
            .collect();
        let n = list.len();
        let f = |g: fn(&Atom) -> &[Iv], max: u128| {
            Field::build(list.iter().map(move |(_, a)| g(a)), n, max)
        };
        let all = [
            (FieldKind::Dport, f(|a| &a.dport, PORT_ABSENT)),
            (FieldKind::Src, f(|a| &a.src, fam_max(fam))),
            (FieldKind::Proto, f(|a| &a.proto, 255)),
            (FieldKind::Dst, f(|a| &a.dst, fam_max(fam))),
            (FieldKind::Sport, f(|a| &a.sport, PORT_ABSENT)),
            (FieldKind::Icmp, f(|a| &a.icmp, ICMP_ABSENT)),
            (FieldKind::Meta, f(|a| &a.meta, u128::from(META_KEYS - 1))),
            (
                FieldKind::Flags,
                f(|a| &a.flags, u128::from(crate::stdchain::tcp::ALL)),
            ),
            (
                FieldKind::Iface,
                Field::build(iface_sets.iter().map(Vec::as_slice), n, other),
            ),
        ];
        let words = n.div_ceil(64);
        let mut base = vec![u64::MAX; words];
        let mut fields = Vec::new();
        for (kind, field) in all {
            if field.starts.len() == 1 {
                for (b, r) in base.iter_mut().zip(field.row(0).0) {
                    *b &= r;
                }
            } else {
                fields.push((kind, field));
            }
        }
        FamTable {
            entries: list.into_iter().map(|(e, _)| e).collect(),
            direct,
            direct_by_proto,
            common_by_proto,
            common_portless,
            ifaces,
            base_summary: summarize(&base),
            base,
            fields,
            macfilter,
        }
    }

    #[inline]
    fn key(&self, kind: FieldKind, pkt: &Packet) -> u128 {
        match kind {
            FieldKind::Src => ip_to_u128(&pkt.source),
            FieldKind::Dst => ip_to_u128(&pkt.dest),
            FieldKind::Proto => u128::from(pkt.proto),
            FieldKind::Dport => pkt.dport.map_or(PORT_ABSENT, u128::from),
            FieldKind::Sport => pkt.sport.map_or(PORT_ABSENT, u128::from),
            FieldKind::Icmp => pkt
                .icmp
                .map_or(ICMP_ABSENT, |(t, c)| u128::from(t) * 256 + u128::from(c)),
            FieldKind::Meta => u128::from(meta_key(pkt.ct, pkt.srctype, pkt.dsttype)),
            FieldKind::Flags => u128::from(pkt.tcp_flags & crate::stdchain::tcp::ALL),
            FieldKind::Iface => {
                let k = match &pkt.iface {
                    Some(i) => self.ifaces.binary_search(i).unwrap_or(self.ifaces.len()),
                    None => self.ifaces.len(),
                };
                k as u128
            }
        }
    }

    /// The deciding entry: the first table match, unless a standard entry before it matches.
    #[inline]
    fn decide(&self, pkt: &Packet) -> Option<&Entry> {
        let t = self.first_match(pkt).and_then(|i| self.entries.get(i));
        let limit = t.map_or(usize::MAX, |e| e.step);
        let proto = usize::from(pkt.proto);
        let list = if is_common(pkt) {
            let portless = self.common_portless.get(proto).and_then(|x| x.as_ref());
            match (portless, pkt.dport) {
                // No entry names this port: only the port-independent entries can match.
                (Some((bits, rest)), Some(p))
                    if bits
                        .get(usize::from(p) / 64)
                        .is_some_and(|w| w & (1u64 << (p % 64)) == 0) =>
                {
                    Some(rest)
                }
                _ => self.common_by_proto.get(proto),
            }
        } else {
            self.direct_by_proto.get(proto)
        };
        if let Some(list) = list {
            let (src, dst) = (ip_to_u128(&pkt.source), ip_to_u128(&pkt.dest));
            for q in list.iter() {
                if q.step > limit {
                    break;
                }
                if !q.may_match(src, dst, pkt) {
                    continue;
                }
                if let Some(d) = self.direct.get(q.idx as usize)
                    && d.m.matches(pkt)
                {
                    return Some(&d.entry);
                }
            }
        }
        t
    }

    #[inline]
    fn first_match(&self, pkt: &Packet) -> Option<usize> {
        let mut rows = [NO_ROW; 9];
        for (slot, (kind, field)) in rows.iter_mut().zip(&self.fields) {
            *slot = field.row(self.key(*kind, pkt));
        }
        let rows = rows.get(..self.fields.len()).unwrap_or(&[]);
        // The MacFilter entry matches every header; it only applies to a foreign MAC.
        let skip = match self.macfilter {
            Some((i, mac)) if pkt.source_mac.is_none_or(|m| m == mac) => Some(i),
            _ => None,
        };
        // Only words that are non-zero in every row can hold a match: walk the AND of the
        // summaries, in order, and stop at the first word with a surviving bit.
        for (sw, bs) in self.base_summary.iter().enumerate() {
            let mut cand = *bs;
            for (_, summary) in rows {
                cand &= summary.get(sw).copied().unwrap_or(0);
            }
            while cand != 0 {
                let w = sw * 64 + cand.trailing_zeros() as usize;
                cand &= cand - 1;
                let mut m = self.base.get(w).copied().unwrap_or(0);
                for (row, _) in rows {
                    m &= row.get(w).copied().unwrap_or(0);
                }
                if let Some(i) = skip
                    && i / 64 == w
                {
                    m &= !(1u64 << (i % 64));
                }
                if m != 0 {
                    return Some(w * 64 + m.trailing_zeros() as usize);
                }
            }
        }
        None
    }
}

/// One compiled chain.
#[derive(Clone, Debug)]
pub struct CompiledChain {
    id: ChainId,
    not_filtered: Option<NotFiltered>,
    policy: Verdict,
    policy_by: DecidedBy,
    reject: RejectMode,
    v4: FamTable,
    v6: FamTable,
}

impl CompiledChain {
    fn compile(plan: &ChainPlan<'_>) -> Self {
        CompiledChain {
            id: plan.id,
            not_filtered: plan.not_filtered,
            policy: Verdict::from(plan.policy),
            policy_by: plan.policy_by.clone(),
            reject: plan.reject,
            v4: FamTable::build(plan, Family::V4),
            v6: FamTable::build(plan, Family::V6),
        }
    }

    /// Number of atomic entries (after macro, group and family expansion) per family.
    pub fn len(&self) -> (usize, usize) {
        (
            self.v4.entries.len() + self.v4.direct.len(),
            self.v6.entries.len() + self.v6.direct.len(),
        )
    }

    /// Is the chain free of entries?
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Verdict only: the fast path (no allocation).
    #[inline]
    pub fn verdict(&self, pkt: &Packet) -> Verdict {
        if self.not_filtered.is_some() {
            return Verdict::Accept;
        }
        if Family::of(&pkt.source) != Family::of(&pkt.dest) {
            return Verdict::Drop;
        }
        let t = match pkt.family() {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let v = t.decide(pkt).map_or(self.policy, |e| e.verdict);
        finish(self.reject, v, pkt)
    }

    /// The full decision (what decided, minimal trace).
    pub fn decide(&self, pkt: &Packet) -> ChainDecision {
        if let Some(d) = early_decision(self.id, self.not_filtered, pkt) {
            return d;
        }
        let t = match pkt.family() {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let (verdict, by) = match t.decide(pkt) {
            Some(e) => (e.verdict, e.by.clone()),
            None => (self.policy, self.policy_by.clone()),
        };
        let verdict = finish(self.reject, verdict, pkt);
        ChainDecision {
            chain: self.id,
            verdict,
            decided_by: by,
            trace: vec![TraceStep::EnterChain(self.id), TraceStep::Decided(verdict)],
        }
    }
}

/// A node with every chain compiled.
#[derive(Clone, Debug)]
pub struct CompiledNode {
    node: Node,
    chains: BTreeMap<ChainId, CompiledChain>,
}

impl CompiledNode {
    /// Compiles every chain of the node (host IN/OUT, each guest NIC IN/OUT).
    pub fn compile(node: &Node) -> Self {
        let mut ids = vec![ChainId::HostIn, ChainId::HostOut, ChainId::HostForward];
        ids.extend(node.vnets.keys().map(|v| ChainId::VnetForward { vnet: *v }));
        for g in node.guests.values() {
            for n in &g.nics {
                ids.push(ChainId::GuestIn {
                    vmid: g.vmid,
                    nic: n.index,
                });
                ids.push(ChainId::GuestOut {
                    vmid: g.vmid,
                    nic: n.index,
                });
            }
        }
        let chains = ids
            .into_iter()
            .filter_map(|id| node.plan(id).map(|p| (id, CompiledChain::compile(&p))))
            .collect();
        CompiledNode {
            node: node.clone(),
            chains,
        }
    }

    /// The node it was compiled from.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// One compiled chain.
    pub fn chain(&self, id: ChainId) -> Option<&CompiledChain> {
        self.chains.get(&id)
    }

    /// Evaluates a flow.
    pub fn evaluate(&self, fp: &FlowPacket) -> crate::Result<FlowDecision> {
        evaluate_flow(&self.node, self, fp)
    }
}

impl Evaluator for CompiledNode {
    fn evaluate_chain(&self, chain: ChainId, pkt: &Packet) -> Option<ChainDecision> {
        self.chains.get(&chain).map(|c| c.decide(pkt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_ops() {
        assert_eq!(normalize(vec![(5, 9), (1, 3), (4, 4)]), vec![(1, 9)]);
        assert_eq!(
            subtract(&[(0, 10)], &[(3, 4), (8, 20)]),
            vec![(0, 2), (5, 7)]
        );
        assert!(is_subset(&[(3, 4)], &[(0, 10)]));
        assert!(!is_subset(&[(3, 11)], &[(0, 10)]));
    }

    /// The common path tests standard entries through their address and source-port
    /// intervals first: a multicast or unspecified source, a multicast destination and a DNS
    /// source port must still meet `PVEFW-smurfs` and `PVEFW-Drop` as the reference does.
    #[test]
    fn quick_std_tests_agree_with_the_reference() {
        use crate::eval::Reference;
        use crate::node::{Guest, GuestKind, Nic};
        use crate::{FileKind, parse};
        use std::net::IpAddr;
        let mut node = Node::new();
        node.cluster = parse("[OPTIONS]\nenable: 1\n", FileKind::Cluster).unwrap();
        let rules = "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\nIN DROP -p tcp -dport 22\n";
        node.guests = BTreeMap::from([(
            100,
            Guest {
                vmid: 100,
                kind: GuestKind::Vm,
                firewall: parse(rules, FileKind::Guest).unwrap(),
                nics: vec![Nic {
                    index: 0,
                    mac: "52:54:00:00:01:00".parse().unwrap(),
                    bridge: "vmbr0".into(),
                    firewall: true,
                    ips: vec!["192.0.2.100".parse().unwrap()],
                }],
            },
        )]);
        let chain = ChainId::GuestIn { vmid: 100, nic: 0 };
        let compiled = CompiledNode::compile(&node);
        let fast = compiled.chain(chain).unwrap();
        let reference = Reference(&node);
        let mut verdicts = Vec::new();
        for src in ["10.0.0.1", "224.0.0.5", "0.0.0.0"] {
            for dst in ["192.0.2.100", "224.0.0.1"] {
                for sport in [40000u16, 53] {
                    for dport in [22u16, 5555, 445] {
                        let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
                        let mut tcp = Packet::tcp(s, d, dport);
                        tcp.sport = Some(sport);
                        for mut p in [tcp, Packet::udp(s, d, sport, dport)] {
                            p.iface = Some("net0".parse().unwrap());
                            let want = reference.evaluate_chain(chain, &p).unwrap();
                            let got = fast.decide(&p);
                            assert_eq!(got.verdict, want.verdict, "{p:?}");
                            assert_eq!(got.decided_by, want.decided_by, "{p:?}");
                            assert_eq!(fast.verdict(&p), want.verdict, "{p:?}");
                            verdicts.push((src, dst, sport, dport, p.proto, want.decided_by));
                        }
                    }
                }
            }
        }
        // Behind the DROP policy, PVEFW-smurfs (multicast source, not 0.0.0.0) and PVEFW-Drop
        // (multicast destination, UDP from port 53) decide what they name.
        let standard = |src, dst, sport, proto| {
            verdicts
                .iter()
                .find(|x| (x.0, x.1, x.2, x.3, x.4) == (src, dst, sport, 5555, proto))
                .map(|x| matches!(x.5, DecidedBy::Standard(_)))
        };
        assert_eq!(standard("10.0.0.1", "192.0.2.100", 40000, 6), Some(false));
        assert_eq!(standard("224.0.0.5", "192.0.2.100", 40000, 6), Some(true));
        assert_eq!(standard("0.0.0.0", "192.0.2.100", 40000, 6), Some(false));
        assert_eq!(standard("10.0.0.1", "224.0.0.1", 40000, 6), Some(true));
        assert_eq!(standard("10.0.0.1", "192.0.2.100", 53, 17), Some(true));
        assert_eq!(standard("10.0.0.1", "192.0.2.100", 53, 6), Some(false));
    }
}
