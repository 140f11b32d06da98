//! One test per semantic rule, written as real `.fw` snippets and packets. Every flow is also
//! run through the compiled evaluator, which must give the same verdict and reason.

use std::collections::BTreeMap;

use pve_vps_firewall::{
    Builtin, CompiledNode, DecidedBy, FileKind, FileRef, FlowDecision, FlowPacket, Node,
    NotFiltered, SectionRef, Topology, TraceStep, Verdict, parse,
};

const TOPO: &str = r#"{
  "host_ips": ["192.0.2.1", "2001:db8::1"],
  "guests": [
    {"vmid": 100, "nics": [{"net": 0, "mac": "52:54:00:00:01:00", "firewall": 1, "ips": ["192.0.2.100", "2001:db8::100"]}]},
    {"vmid": 101, "nics": [{"net": 0, "mac": "52:54:00:00:01:01", "firewall": "1", "ips": ["192.0.2.101"]},
                           {"net": 1, "mac": "52:54:00:00:01:02", "firewall": 0, "ips": ["10.0.0.101"]}]},
    {"vmid": 102, "kind": "ct", "nics": [{"net": 0, "mac": "52:54:00:00:01:03", "firewall": true, "ips": ["192.0.2.102"]}]}
  ]
}"#;

const CLUSTER_ON: &str = "[OPTIONS]\nenable: 1\n";

fn node(cluster: &str, host: &str, guests: &[(u32, &str)]) -> Node {
    let mut files = BTreeMap::new();
    for (id, text) in guests {
        files.insert(*id, parse(text, FileKind::Guest).unwrap());
    }
    Topology::from_json(TOPO)
        .unwrap()
        .into_node(
            parse(cluster, FileKind::Cluster).unwrap(),
            parse(host, FileKind::Host).unwrap(),
            files,
        )
        .unwrap()
}

/// Evaluates with both evaluators and checks they agree.
fn eval(n: &Node, json: &str) -> FlowDecision {
    let fp = FlowPacket::from_json(json).unwrap();
    let r = n.evaluate(&fp).unwrap();
    let c = CompiledNode::compile(n).evaluate(&fp).unwrap();
    assert_eq!(r.verdict, c.verdict, "{json}");
    let by = |d: &FlowDecision| {
        d.chains
            .iter()
            .map(|c| c.decided_by.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by(&r), by(&c), "{json}");
    r
}

fn by(d: &FlowDecision) -> DecidedBy {
    d.deciding().unwrap().decided_by.clone()
}

fn rule_at(d: &FlowDecision) -> (FileRef, SectionRef, usize, Option<usize>) {
    match by(d) {
        DecidedBy::Rule(r) => (r.file, r.section, r.index, r.line),
        other => panic!("decided by {other:?}"),
    }
}

const SSH_IN: &str =
    r#"{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"198.51.100.7"}"#;

#[test]
fn nothing_applies_unless_cluster_guest_and_nic_enable_it() {
    let guest = "[OPTIONS]\nenable: 1\n";
    let off = node("", "", &[(100, guest)]);
    let d = eval(&off, SSH_IN);
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(by(&d), DecidedBy::NotFiltered(NotFiltered::ClusterDisabled));

    let n = node(CLUSTER_ON, "", &[(100, "[OPTIONS]\nenable: 0\n")]);
    assert_eq!(
        by(&eval(&n, SSH_IN)),
        DecidedBy::NotFiltered(NotFiltered::GuestDisabled)
    );

    let n = node(CLUSTER_ON, "", &[(101, guest)]);
    let d = eval(
        &n,
        r#"{"from":"outside","to":"vm101:net1","proto":"tcp","dport":22,"source":"198.51.100.7"}"#,
    );
    assert_eq!(by(&d), DecidedBy::NotFiltered(NotFiltered::NicDisabled));
    let d = eval(
        &n,
        r#"{"from":"outside","to":"vm101","proto":"tcp","dport":22,"source":"198.51.100.7"}"#,
    );
    assert_eq!((d.verdict, by(&d)), (Verdict::Drop, DecidedBy::Policy));
}

#[test]
fn guest_defaults_are_in_drop_out_accept() {
    let n = node(CLUSTER_ON, "", &[(100, "[OPTIONS]\nenable: 1\n")]);
    assert_eq!(eval(&n, SSH_IN).verdict, Verdict::Drop);
    let out = r#"{"from":"vm100","to":"outside","proto":"tcp","dport":443,"dest":"203.0.113.5"}"#;
    let d = eval(&n, out);
    assert_eq!((d.verdict, by(&d)), (Verdict::Accept, DecidedBy::Policy));
    let n = node(
        CLUSTER_ON,
        "",
        &[(
            100,
            "[OPTIONS]\nenable: 1\npolicy_in: REJECT\npolicy_out: DROP\n",
        )],
    );
    assert_eq!(eval(&n, SSH_IN).verdict, Verdict::Reject);
    assert_eq!(eval(&n, out).verdict, Verdict::Drop);
}

#[test]
fn first_match_wins_and_disabled_rules_are_skipped() {
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\n|IN ACCEPT -p tcp -dport 22\nIN REJECT -p tcp -dport 22 # no ssh\nIN ACCEPT -p tcp\n";
    let n = node(CLUSTER_ON, "", &[(100, fw)]);
    let d = eval(&n, SSH_IN);
    assert_eq!(d.verdict, Verdict::Reject);
    assert_eq!(
        rule_at(&d),
        (FileRef::Guest(100), SectionRef::Rules, 1, Some(6))
    );
    let d = eval(
        &n,
        r#"{"from":"outside","to":"vm100","proto":"tcp","dport":80,"source":"198.51.100.7"}"#,
    );
    assert_eq!((d.verdict, rule_at(&d).2), (Verdict::Accept, 2));
}

#[test]
fn macros_expand_to_their_ports_per_family() {
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN DNS(ACCEPT)\nIN Ping(ACCEPT)\n";
    let n = node(CLUSTER_ON, "", &[(100, fw)]);
    let q = |proto: &str, port: u16| {
        format!(
            r#"{{"from":"outside","to":"vm100","proto":"{proto}","dport":{port},"source":"198.51.100.7"}}"#
        )
    };
    assert_eq!(eval(&n, &q("udp", 53)).verdict, Verdict::Accept);
    assert_eq!(eval(&n, &q("tcp", 53)).verdict, Verdict::Accept);
    assert_eq!(eval(&n, &q("tcp", 54)).verdict, Verdict::Drop);
    // Ping is icmp echo-request for IPv4 and icmpv6 echo-request for IPv6.
    let p4 = r#"{"from":"outside","to":"vm100","proto":"icmp","icmp_type":"echo-request","source":"198.51.100.7"}"#;
    let p6 = r#"{"from":"outside","to":"vm100","proto":"icmpv6","icmp_type":"echo-request","source":"2001:db8:1::7"}"#;
    let p6_reply = r#"{"from":"outside","to":"vm100","proto":"icmpv6","icmp_type":"echo-reply","source":"2001:db8:1::7"}"#;
    assert_eq!(eval(&n, p4).verdict, Verdict::Accept);
    assert_eq!(eval(&n, p6).verdict, Verdict::Accept);
    assert_eq!(eval(&n, p6_reply).verdict, Verdict::Drop);
}

#[test]
fn groups_accept_returns_drop_is_final_no_match_continues() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[group web]\nIN ACCEPT -p tcp -dport 80\nIN DROP -p tcp -dport 81\n";
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nGROUP web\nIN ACCEPT -p tcp -dport 81\nIN ACCEPT -p tcp -dport 22\nGROUP nosuch\n";
    let n = node(cluster, "", &[(100, fw)]);
    let q = |port: u16| {
        format!(
            r#"{{"from":"outside","to":"vm100","proto":"tcp","dport":{port},"source":"198.51.100.7"}}"#
        )
    };
    let d = eval(&n, &q(80));
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(
        rule_at(&d),
        (
            FileRef::Cluster,
            SectionRef::Group("web".into()),
            0,
            Some(5)
        )
    );
    let d = eval(&n, &q(81));
    assert_eq!(d.verdict, Verdict::Drop, "DROP inside the group is final");
    let d = eval(&n, &q(22));
    assert_eq!((d.verdict, rule_at(&d).2), (Verdict::Accept, 2));
    let trace = &d.deciding().unwrap().trace;
    assert!(
        trace
            .iter()
            .any(|t| matches!(t, TraceStep::ReturnFromGroup(g) if g == "web"))
    );
    let d = eval(&n, &q(23));
    assert!(
        d.deciding()
            .unwrap()
            .trace
            .iter()
            .any(|t| matches!(t, TraceStep::MissingGroup(_)))
    );
}

#[test]
fn group_iface_limits_the_jump() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[group web]\nIN ACCEPT -p tcp -dport 22\n";
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nGROUP web -i net1\n";
    let n = node(cluster, "", &[(100, fw)]);
    assert_eq!(eval(&n, SSH_IN).verdict, Verdict::Drop);
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nGROUP web -i net0\n";
    let n = node(cluster, "", &[(100, fw)]);
    assert_eq!(eval(&n, SSH_IN).verdict, Verdict::Accept);
}

#[test]
fn ipsets_with_nomatch_use_the_most_specific_entry() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[IPSET admins]\n198.51.100.0/24\n!198.51.100.0/28\n198.51.100.7 # the boss\n";
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source +dc/admins -p tcp -dport 22\n";
    let n = node(cluster, "", &[(100, fw)]);
    let q = |src: &str| {
        format!(r#"{{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"{src}"}}"#)
    };
    assert_eq!(eval(&n, &q("198.51.100.200")).verdict, Verdict::Accept);
    assert_eq!(
        eval(&n, &q("198.51.100.3")).verdict,
        Verdict::Drop,
        "excluded by !/28"
    );
    assert_eq!(
        eval(&n, &q("198.51.100.7")).verdict,
        Verdict::Accept,
        "/32 beats the !/28"
    );
    assert_eq!(eval(&n, &q("203.0.113.1")).verdict, Verdict::Drop);
}

#[test]
fn aliases_resolve_guest_first_then_cluster_and_honour_scopes() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[ALIASES]\noffice 198.51.100.0/24\n";
    let fw = "[OPTIONS]\nenable: 1\n\n[ALIASES]\noffice 203.0.113.0/24\n\n[RULES]\nIN ACCEPT -source office -p tcp -dport 22\nIN ACCEPT -source dc/office -p tcp -dport 80\n";
    let n = node(cluster, "", &[(100, fw)]);
    let q = |src: &str, port: u16| {
        format!(
            r#"{{"from":"outside","to":"vm100","proto":"tcp","dport":{port},"source":"{src}"}}"#
        )
    };
    assert_eq!(eval(&n, &q("203.0.113.9", 22)).verdict, Verdict::Accept);
    assert_eq!(eval(&n, &q("198.51.100.9", 22)).verdict, Verdict::Drop);
    assert_eq!(eval(&n, &q("198.51.100.9", 80)).verdict, Verdict::Accept);
}

#[test]
fn rules_are_family_aware() {
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source 198.51.100.0/24\nIN ACCEPT -p tcp -dport 443\n";
    let n = node(CLUSTER_ON, "", &[(100, fw)]);
    let d = eval(
        &n,
        r#"{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"2001:db8:1::7"}"#,
    );
    assert_eq!(d.verdict, Verdict::Drop, "an IPv4 rule never matches IPv6");
    let d = eval(
        &n,
        r#"{"from":"outside","to":"vm100","proto":"tcp","dport":443,"source":"2001:db8:1::7"}"#,
    );
    assert_eq!(
        d.verdict,
        Verdict::Accept,
        "a rule without addresses filters both families"
    );
}

#[test]
fn ipfilter_set_drops_spoofed_sources_and_empty_set_blocks_all() {
    let fw = "[OPTIONS]\nenable: 1\n\n[IPSET ipfilter-net0]\n192.0.2.100\n";
    let n = node(CLUSTER_ON, "", &[(100, fw)]);
    let ok = r#"{"from":"vm100","to":"outside","proto":"tcp","dport":443,"source":"192.0.2.100","dest":"203.0.113.5"}"#;
    let spoof = r#"{"from":"vm100","to":"outside","proto":"tcp","dport":443,"source":"192.0.2.99","dest":"203.0.113.5"}"#;
    assert_eq!(eval(&n, ok).verdict, Verdict::Accept);
    let d = eval(&n, spoof);
    assert_eq!(
        (d.verdict, by(&d)),
        (Verdict::Drop, DecidedBy::Builtin(Builtin::IpFilter))
    );

    let n = node(
        CLUSTER_ON,
        "",
        &[(100, "[OPTIONS]\nenable: 1\n\n[IPSET ipfilter-net0]\n")],
    );
    assert_eq!(
        eval(&n, ok).verdict,
        Verdict::Drop,
        "an explicitly empty set blocks all"
    );

    // ipfilter: 1 on a container allows its configured IPs implicitly.
    let n = node(
        CLUSTER_ON,
        "",
        &[(102, "[OPTIONS]\nenable: 1\nipfilter: 1\n")],
    );
    let ct_ok = r#"{"from":"ct102","to":"outside","proto":"udp","dport":53,"dest":"203.0.113.5"}"#;
    let ct_spoof = r#"{"from":"ct102","to":"outside","proto":"udp","dport":53,"source":"192.0.2.9","dest":"203.0.113.5"}"#;
    assert_eq!(eval(&n, ct_ok).verdict, Verdict::Accept);
    assert_eq!(eval(&n, ct_spoof).verdict, Verdict::Drop);
}

#[test]
fn macfilter_drops_foreign_macs_unless_disabled() {
    let n = node(CLUSTER_ON, "", &[(100, "[OPTIONS]\nenable: 1\n")]);
    let spoof = r#"{"from":"vm100","to":"outside","proto":"tcp","dport":443,"dest":"203.0.113.5","source_mac":"02:00:00:00:00:01"}"#;
    let d = eval(&n, spoof);
    assert_eq!(by(&d), DecidedBy::Builtin(Builtin::MacFilter));
    let n = node(
        CLUSTER_ON,
        "",
        &[(100, "[OPTIONS]\nenable: 1\nmacfilter: 0\n")],
    );
    assert_eq!(eval(&n, spoof).verdict, Verdict::Accept);
}

#[test]
fn dhcp_ndp_and_router_advertisements() {
    let n = node(
        CLUSTER_ON,
        "",
        &[(100, "[OPTIONS]\nenable: 1\ndhcp: 1\nndp: 1\n")],
    );
    let dhcp = r#"{"from":"outside","to":"vm100","proto":"udp","sport":67,"dport":68,"source":"192.0.2.1"}"#;
    assert_eq!(by(&eval(&n, dhcp)), DecidedBy::Builtin(Builtin::Dhcp));
    let ns = r#"{"from":"outside","to":"vm100","proto":"icmpv6","icmp_type":"neighbor-solicitation","source":"fe80::1"}"#;
    assert_eq!(by(&eval(&n, ns)), DecidedBy::Builtin(Builtin::Ndp));
    let ra = r#"{"from":"vm100","to":"outside","proto":"icmpv6","icmp_type":"router-advertisement","source":"2001:db8::100","dest":"ff02::1"}"#;
    assert_eq!(
        by(&eval(&n, ra)),
        DecidedBy::Builtin(Builtin::RouterAdvertisement)
    );
}

#[test]
fn guest_to_guest_crosses_sender_out_and_receiver_in() {
    let a = "[OPTIONS]\nenable: 1\n\n[RULES]\nOUT DROP -p tcp -dport 25\n";
    let b = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -source 192.0.2.100 -p tcp\n";
    let n = node(CLUSTER_ON, "", &[(100, a), (101, b)]);
    let d = eval(
        &n,
        r#"{"from":"vm100","to":"vm101","proto":"tcp","dport":80}"#,
    );
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(d.chains.len(), 2);
    assert_eq!(d.chains[0].chain.to_string(), "100/net0 OUT");
    assert_eq!(d.chains[1].chain.to_string(), "101/net0 IN");
    let d = eval(
        &n,
        r#"{"from":"vm100","to":"vm101","proto":"tcp","dport":25}"#,
    );
    assert_eq!(
        (d.verdict, d.chains.len()),
        (Verdict::Drop, 1),
        "dropped by the sender"
    );
}

#[test]
fn host_rules_come_before_cluster_rules_and_management_set_is_open() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[IPSET management]\n198.51.100.0/24\n\n[RULES]\nIN DROP -p tcp -dport 8080\nIN ACCEPT -p tcp -dport 8081\n";
    let host = "[RULES]\nIN ACCEPT -p tcp -dport 8080\n";
    let n = node(cluster, host, &[]);
    let q = |port: u16, src: &str| {
        format!(r#"{{"from":"outside","to":"host","proto":"tcp","dport":{port},"source":"{src}"}}"#)
    };
    let d = eval(&n, &q(8080, "203.0.113.1"));
    assert_eq!((d.verdict, rule_at(&d).0), (Verdict::Accept, FileRef::Host));
    assert_eq!(eval(&n, &q(8081, "203.0.113.1")).verdict, Verdict::Accept);
    assert_eq!(
        eval(&n, &q(8006, "203.0.113.1")).verdict,
        Verdict::Drop,
        "cluster policy_in DROP"
    );
    assert_eq!(
        by(&eval(&n, &q(8006, "198.51.100.5"))),
        DecidedBy::Builtin(Builtin::Management)
    );
    let n = node(cluster, "[OPTIONS]\nenable: 0\n", &[]);
    assert_eq!(
        by(&eval(&n, &q(1, "203.0.113.1"))),
        DecidedBy::NotFiltered(NotFiltered::HostDisabled)
    );
}

#[test]
fn explanation_names_rule_line_and_trace() {
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\n# comment line\nIN SSH(ACCEPT) -source 198.51.100.0/24 # admins\n";
    let n = node(CLUSTER_ON, "", &[(100, fw)]);
    let d = n.evaluate(&FlowPacket::from_json(SSH_IN).unwrap()).unwrap();
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(
        d.explain(),
        "ACCEPT by rule 100.fw [RULES] #0 (line 6) in 100/net0 IN"
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["verdict"], "ACCEPT");
}

#[test]
fn ndp_is_on_by_default_and_can_be_turned_off() {
    let ns = r#"{"from":"outside","to":"vm100","proto":"icmpv6","icmp_type":"neighbor-solicitation","source":"fe80::1"}"#;
    let n = node(CLUSTER_ON, "", &[(100, "[OPTIONS]\nenable: 1\n")]);
    assert_eq!(by(&eval(&n, ns)), DecidedBy::Builtin(Builtin::Ndp));
    let n = node(CLUSTER_ON, "", &[(100, "[OPTIONS]\nenable: 1\nndp: 0\n")]);
    assert_eq!(
        (eval(&n, ns).verdict, by(&eval(&n, ns))),
        (Verdict::Drop, DecidedBy::Policy)
    );
}

#[test]
fn blacklist_ip_set_drops_its_sources_first() {
    let cluster = "[OPTIONS]\nenable: 1\n\n[IPSET blacklist]\n203.0.113.0/24\n\n[IPSET management]\n203.0.113.0/24\n";
    let fw = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT\n";
    let n = node(cluster, "", &[(100, fw)]);
    let to_vm =
        r#"{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"203.0.113.9"}"#;
    assert_eq!(by(&eval(&n, to_vm)), DecidedBy::Builtin(Builtin::Blacklist));
    let to_host =
        r#"{"from":"outside","to":"host","proto":"tcp","dport":8006,"source":"203.0.113.9"}"#;
    assert_eq!(
        by(&eval(&n, to_host)),
        DecidedBy::Builtin(Builtin::Blacklist),
        "before management"
    );
    assert_eq!(eval(&n, SSH_IN).verdict, Verdict::Accept);
}
