//! Lint and lockout check on real `.fw` snippets.

use std::collections::BTreeMap;

use pve_vps_firewall::{
    FileKind, FwFile, LintKind, ManagementPorts, Node, Protocol, Topology, Zone, lint_guest,
    lockout_check, parse,
};

fn node(guest: &str) -> Node {
    let topo = r#"{"guests":[{"vmid":100,"nics":[{"net":0,"mac":"52:54:00:00:01:00","firewall":1,"ips":["192.0.2.100"]}]}]}"#;
    let cluster =
        "[OPTIONS]\nenable: 1\n\n[IPSET empty]\n\n[group web]\nIN ACCEPT -p tcp -dport 80\n";
    let mut files = BTreeMap::new();
    files.insert(100, parse(guest, FileKind::Guest).unwrap());
    Topology::from_json(topo)
        .unwrap()
        .into_node(
            parse(cluster, FileKind::Cluster).unwrap(),
            parse("", FileKind::Host).unwrap(),
            files,
        )
        .unwrap()
}

#[test]
fn finds_shadowed_and_dead_rules() {
    let fw = "\
[OPTIONS]
enable: 1

[ALIASES]
v6host fe80::1

[RULES]
IN ACCEPT -p tcp -dport 1:1024
IN DROP -p tcp -dport 22 -source 198.51.100.0/24
IN SSH(REJECT)
IN ACCEPT -source 198.51.100.1 -dest v6host
IN ACCEPT -source +dc/empty
IN ACCEPT -source +nosuch
IN ACCEPT -i net7 -p udp
GROUP web
GROUP nosuch
IN ACCEPT -p udp -dport 53
";
    let findings = lint_guest(&node(fw), 100);
    let kinds: Vec<(usize, String)> = findings
        .iter()
        .map(|f| {
            (
                f.rule.index,
                format!("{:?}", f.kind)
                    .split(['{', '('])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            )
        })
        .collect();
    assert!(kinds.contains(&(1, "Shadowed".into())), "{kinds:?}");
    assert!(kinds.contains(&(2, "Shadowed".into())), "{kinds:?}");
    assert!(
        kinds.contains(&(3, "NeverMatches".into())),
        "v4 source with v6 dest: {kinds:?}"
    );
    assert!(
        kinds.contains(&(4, "NeverMatches".into())),
        "empty ip set: {kinds:?}"
    );
    assert!(
        kinds.contains(&(6, "NeverMatches".into())),
        "no net7 on this guest: {kinds:?}"
    );
    assert!(kinds.contains(&(8, "UnknownGroup".into())), "{kinds:?}");
    assert!(
        !kinds.iter().any(|(i, _)| *i == 9),
        "udp/53 is live: {kinds:?}"
    );
    let f5 = findings.iter().find(|f| f.rule.index == 5).unwrap();
    assert_eq!(
        f5.kind,
        LintKind::NeverMatches {
            reason: "ip set `nosuch` does not exist".into()
        }
    );
    // Group rule 0 of `web` (tcp/80) is shadowed by rule 0 (tcp 1:1024).
    assert!(
        findings.iter().any(
            |f| matches!(&f.rule.section, pve_vps_firewall::SectionRef::Group(g) if g == "web")
        )
    );
}

#[test]
fn lockout_check_catches_a_policy_change_that_blocks_ssh() {
    let before = node("[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT) -source 198.51.100.0/24\n");
    let after_ok =
        node("[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT) -source 198.51.100.7\nIN DROP\n");
    let after_bad = node(
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN DROP -p tcp\nIN SSH(ACCEPT) -source 198.51.100.0/24\n",
    );
    let ports = ManagementPorts::ssh(Zone::Guest {
        vmid: 100,
        nic: None,
    })
    .with(Protocol::TCP, 8006);
    let me = "198.51.100.7".parse().unwrap();
    let r = lockout_check(&before, &after_ok, &ports, me).unwrap();
    assert!(!r.locks_out());
    assert!(!r.reachable_after(), "8006 was never open");
    let r = lockout_check(&before, &after_bad, &ports, me).unwrap();
    assert!(r.locks_out());
    let blocked: Vec<u16> = r.newly_blocked().map(|c| c.port).collect();
    assert_eq!(blocked, vec![22]);
    let why = r.newly_blocked().next().unwrap().after.explain();
    assert!(why.contains("100.fw [RULES] #0"), "{why}");
    // The same check from a proposed file, as vm-services will call it.
    let proposed = parse("[OPTIONS]\nenable: 1\npolicy_in: DROP\n", FileKind::Guest).unwrap();
    let after = before.with_guest_firewall(100, proposed).unwrap();
    assert!(
        lockout_check(&before, &after, &ports, me)
            .unwrap()
            .locks_out()
    );
    assert!(
        before
            .with_guest_firewall(999, FwFile::new(FileKind::Guest))
            .is_err()
    );
}
