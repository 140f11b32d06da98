//! The compiled evaluator agrees with the reference on generated configs and packets, and
//! generated configs round-trip through print and parse.

use proptest::prelude::*;
use pve_vps_firewall::fuzzing;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_agrees_with_reference(data in proptest::collection::vec(any::<u8>(), 64..1500)) {
        if let Err(e) = fuzzing::differential(&data) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn printed_files_parse_back_to_the_same_model(data in proptest::collection::vec(any::<u8>(), 16..800)) {
        let mut c = fuzzing::Choices::new(&data);
        let (cl, h, g) = fuzzing::config_texts(&mut c);
        for (text, kind) in [(cl, pve_vps_firewall::FileKind::Cluster), (h, pve_vps_firewall::FileKind::Host), (g, pve_vps_firewall::FileKind::Guest)] {
            let (file, _) = pve_vps_firewall::parse_lenient(&text, kind);
            prop_assert!(fuzzing::roundtrip(&file).is_ok(), "{:?}", fuzzing::roundtrip(&file));
        }
    }

    #[test]
    fn parser_never_panics_on_junk(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = fuzzing::parse_roundtrip(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Hundreds of rules: many bitset words and summary bits.
    #[test]
    fn compiled_agrees_on_big_rule_sets(data in proptest::collection::vec(any::<u8>(), 4000..20000), n in 65usize..700) {
        if let Err(e) = fuzzing::differential_sized(&data, n, 300) {
            prop_assert!(false, "{}", e.chars().take(3000).collect::<String>());
        }
    }
}

/// More than 4,096 entries: several summary words.
#[test]
fn compiled_agrees_on_a_huge_rule_set() {
    let mut seed = 0x5eed_u64;
    let data: Vec<u8> = (0..120_000)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect();
    if let Err(e) = fuzzing::differential_sized(&data, 5000, 1500) {
        panic!("{}", e.chars().take(3000).collect::<String>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every parsed rule survives model -> API JSON -> model.
    #[test]
    fn rules_round_trip_through_api_json(data in proptest::collection::vec(any::<u8>(), 16..800)) {
        let mut c = fuzzing::Choices::new(&data);
        let (cl, _, g) = fuzzing::config_texts(&mut c);
        for (text, kind) in [(cl, pve_vps_firewall::FileKind::Cluster), (g, pve_vps_firewall::FileKind::Guest)] {
            let (file, _) = pve_vps_firewall::parse_lenient(&text, kind);
            let groups = file.groups.iter().flat_map(|g| g.rules.iter().map(|r| (r, true)));
            for (rule, in_group) in file.rules.iter().map(|r| (r, false)).chain(groups) {
                let json = serde_json::to_string(&pve_vps_firewall::ApiRule::from_rule(rule)).unwrap();
                let back = pve_vps_firewall::ApiRule::from_json(&json).and_then(|a| a.to_rule(kind, in_group));
                prop_assert_eq!(back.as_ref().ok(), Some(rule), "{} -> {}", rule, json);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// pve-firewall accepts packets of established or related connections before any rule
    /// (conn filters on PVEFW-FORWARD and the host chains), whatever the rules say.
    #[test]
    fn iptables_lets_replies_of_accepted_flows_pass(data in proptest::collection::vec(any::<u8>(), 64..1500)) {
        use pve_vps_firewall::{Backend, Builtin, CtState, DecidedBy, Evaluator, Reference, CompiledNode};
        let mut c = fuzzing::Choices::new(&data);
        let mut node = fuzzing::node_from(&mut c);
        node.backend = Some(Backend::Iptables);
        let compiled = CompiledNode::compile(&node);
        for _ in 0..16 {
            let (chain, mut pkt) = fuzzing::packet_from(&mut c);
            pkt.ct = if c.chance(50) { CtState::Established } else { CtState::Related };
            for d in [Reference(&node).evaluate_chain(chain, &pkt), compiled.evaluate_chain(chain, &pkt)].into_iter().flatten() {
                prop_assert!(
                    d.verdict == pve_vps_firewall::Verdict::Accept
                        || d.decided_by == DecidedBy::Builtin(Builtin::InvalidPacket),
                    "{chain} {pkt:?}: {d:?}"
                );
            }
        }
    }

    /// ...and drops INVALID packets unless `nf_conntrack_allow_invalid: 1` (loopback traffic
    /// is accepted before the connection state is looked at).
    #[test]
    fn iptables_drops_invalid_packets(data in proptest::collection::vec(any::<u8>(), 64..1500)) {
        use pve_vps_firewall::{Backend, CtState, DecidedBy, Evaluator, Reference, Verdict};
        let mut c = fuzzing::Choices::new(&data);
        let mut node = fuzzing::node_from(&mut c);
        node.backend = Some(Backend::Iptables);
        let allow = node.host_option("nf_conntrack_allow_invalid") == Some(true);
        for _ in 0..16 {
            let (chain, mut pkt) = fuzzing::packet_from(&mut c);
            pkt.ct = CtState::Invalid;
            if pkt.iface.as_ref().is_some_and(|i| i.as_str() == "lo") {
                pkt.iface = None;
            }
            if let Some(d) = Reference(&node).evaluate_chain(chain, &pkt) {
                let filtered = !matches!(d.decided_by, DecidedBy::NotFiltered(_));
                if filtered && !allow {
                    prop_assert_eq!(d.verdict, Verdict::Drop, "{} {:?}: {:?}", chain, pkt, d);
                }
            }
        }
    }
}
