//! Evaluate a firewall change before applying it: what happens to SSH from the customer's
//! address, and whether the new rule set would lock them out.
//!
//! `cargo run -p examples --example firewall_change`

use std::collections::BTreeMap;

use pve_vps_firewall::{
    FileKind, FlowPacket, ManagementPorts, Topology, Zone, lockout_check, parse,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topology = r#"{"guests":[{"vmid":100,"nics":[{"net":0,"mac":"BC:24:11:00:64:5A","firewall":1,"ips":["203.0.113.10"]}]}]}"#;
    let cluster = parse("[OPTIONS]\nenable: 1\n", FileKind::Cluster)?;
    let host = parse("", FileKind::Host)?;
    let guest = |rules: &str| {
        parse(
            &format!("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\n{rules}"),
            FileKind::Guest,
        )
    };

    let mut before_guests = BTreeMap::new();
    before_guests.insert(
        100,
        guest("IN SSH(ACCEPT)\nIN ACCEPT -p tcp -dport 80,443\n")?,
    );
    let before =
        Topology::from_json(topology)?.into_node(cluster.clone(), host.clone(), before_guests)?;

    // The customer's change: drop everything from 0.0.0.0/0 on tcp first.
    let mut after_guests = BTreeMap::new();
    after_guests.insert(
        100,
        guest("IN DROP -p tcp\nIN SSH(ACCEPT)\nIN ACCEPT -p tcp -dport 80,443\n")?,
    );
    let after = Topology::from_json(topology)?.into_node(cluster, host, after_guests)?;

    let ssh = FlowPacket::from_json(
        r#"{"from":"outside","to":"vm100","proto":"tcp","dport":22,"source":"198.51.100.7"}"#,
    )?;
    println!("before: {}", before.evaluate(&ssh)?.explain());
    println!("after:  {}", after.evaluate(&ssh)?.explain());

    let report = lockout_check(
        &before,
        &after,
        &ManagementPorts::ssh(Zone::Guest {
            vmid: 100,
            nic: None,
        }),
        "198.51.100.7".parse()?,
    )?;
    if report.locks_out() {
        println!("refused: the change would lock the customer out of SSH");
    } else {
        println!("the change keeps SSH reachable");
    }
    Ok(())
}
