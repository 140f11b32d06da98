//! Inside the guest: cloud-init, the QEMU guest agent, and the VNC console proxy.

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Reply, Req, qemu::ci_key, vm_mut};
use crate::auth::percent_decode;
use crate::model::{Outcome, State, VncTicket};

pub(super) fn cloudinit_get(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    let mut keys: Vec<&String> = vm
        .config
        .keys()
        .filter(|k| ci_key(k))
        .chain(vm.cloudinit_applied.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let out: Vec<Value> = keys
        .into_iter()
        .map(|k| {
            // FACT (qemu-server src/PVE/API2/Qemu.pm, cloudinit_pending): added keys carry
            // `pending`, changed ones `value` (what the drive holds) and `pending`, removed
            // ones `delete: 1`; `cipassword` is masked as '**********'.
            let show = |v: &String| {
                if k.as_str() == "cipassword" {
                    json!("**********")
                } else {
                    json!(v)
                }
            };
            let applied = vm.cloudinit_applied.get(k);
            let wanted = vm.config.get(k);
            let mut e = json!({ "key": k });
            if let Some(a) = applied {
                e["value"] = show(a);
            }
            match (applied, wanted) {
                (Some(a), Some(w)) if a != w => e["pending"] = show(w),
                (None, Some(w)) => e["pending"] = show(w),
                (Some(_), None) => e["delete"] = json!(1),
                _ => {}
            }
            e
        })
        .collect();
    Reply::json(Value::Array(out))
}

pub(super) fn cloudinit_regenerate(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, cloudinit_update, and QemuServer.pm,
    // vmconfig_update_cloudinit_drive): under the config lock, refused while locked; a VM
    // without a cloud-init drive is left alone without an error.
    super::check_flock(vm, req.now)?;
    super::check_lock(vm)?;
    if vm.config.values().any(|v| v.contains("cloudinit")) {
        vm.regenerate_cloudinit();
    }
    Reply::null()
}

/// Render the generated cloud-init files from what the drive holds.
pub(super) fn cloudinit_dump(st: &mut State, req: &Req) -> ApiResult {
    let kind = req.req_arg("type")?.to_string();
    let vm = vm_mut(st, req)?;
    let ci = &vm.cloudinit_applied;
    let name = vm.name();
    let text = match kind.as_str() {
        "user" => {
            let mut s =
                format!("#cloud-config\nhostname: {name}\nmanage_etc_hosts: true\nfqdn: {name}\n");
            if let Some(u) = ci.get("ciuser") {
                s.push_str(&format!("user: {u}\n"));
            }
            if let Some(p) = ci.get("cipassword") {
                let hashed = if p.starts_with('$') {
                    p.clone()
                } else {
                    format!(
                        "$5$sim${}",
                        &hex::encode(sha2::Digest::finalize(
                            <sha2::Sha256 as sha2::Digest>::new_with_prefix(p.as_bytes())
                        ))[..43]
                    )
                };
                s.push_str(&format!("password: {hashed}\n"));
            }
            if let Some(k) = ci.get("sshkeys") {
                s.push_str("ssh_authorized_keys:\n");
                for line in percent_decode(k).lines().filter(|l| !l.trim().is_empty()) {
                    s.push_str(&format!("  - {line}\n"));
                }
            }
            s.push_str("chpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n");
            s
        }
        "network" => {
            let mut s = String::from("version: 1\nconfig:\n");
            for (k, v) in ci.iter().filter(|(k, _)| k.starts_with("ipconfig")) {
                let idx = &k["ipconfig".len()..];
                let mac = vm
                    .config
                    .get(&format!("net{idx}"))
                    .and_then(|n| mac_in(n))
                    .unwrap_or_default();
                s.push_str(&format!("    - type: physical\n      name: eth{idx}\n      mac_address: '{mac}'\n      subnets:\n"));
                for part in v.split(',') {
                    match part.split_once('=') {
                        Some(("ip", "dhcp")) => s.push_str("      - type: dhcp4\n"),
                        Some(("ip6", "dhcp")) => s.push_str("      - type: dhcp6\n"),
                        Some(("ip6", "auto")) => s.push_str("      - type: ipv6_slaac\n"),
                        Some(("ip" | "ip6", addr)) => s.push_str(&format!(
                            "      - type: static\n        address: '{addr}'\n"
                        )),
                        Some(("gw" | "gw6", gw)) => {
                            s.push_str(&format!("        gateway: '{gw}'\n"))
                        }
                        _ => {}
                    }
                }
            }
            if let Some(ns) = ci.get("nameserver") {
                s.push_str("    - type: nameserver\n      address:\n");
                for a in ns.split([' ', ',']).filter(|a| !a.is_empty()) {
                    s.push_str(&format!("      - '{a}'\n"));
                }
                if let Some(sd) = ci.get("searchdomain") {
                    s.push_str(&format!("      search:\n      - '{sd}'\n"));
                }
            }
            s
        }
        "meta" => {
            let id = hex::encode(sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(format!("{:?}", ci).as_bytes()),
            ));
            format!("instance-id: {}\n", &id[..40])
        }
        other => {
            return Err(ApiError::param(
                "type",
                &format!(
                    "value '{other}' does not have a value in the enumeration 'user, network, meta'"
                ),
            ));
        }
    };
    Reply::json(json!(text))
}

/// The MAC address (lower case) in a `netN` value.
fn mac_in(net: &str) -> Option<String> {
    net.split(',').find_map(|p| {
        p.split_once('=')
            .filter(|(_, m)| m.len() == 17)
            .map(|(_, m)| m.to_ascii_lowercase())
    })
}

fn agent_ready(st: &mut State, req: &Req) -> Result<u32, ApiError> {
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server PVE/QemuServer/Agent.pm, agent_available): "No QEMU guest agent
    // configured", then "VM $vmid is not running", then "QEMU guest agent is not running"
    // (a guest-ping that gets no answer).
    if !vm.agent_enabled() {
        return Err(ApiError::fail("No QEMU guest agent configured"));
    }
    if !vm.running() {
        return Err(ApiError::fail(format!("VM {} is not running", vm.vmid)));
    }
    if !vm.agent_responding {
        return Err(ApiError::fail("QEMU guest agent is not running"));
    }
    Ok(vm.vmid)
}

pub(super) fn agent_ping(st: &mut State, req: &Req) -> ApiResult {
    agent_ready(st, req)?;
    Reply::json(json!({ "result": {} }))
}

pub(super) fn agent_interfaces(st: &mut State, req: &Req) -> ApiResult {
    let vmid = agent_ready(st, req)?;
    let vm = &st.vms[&vmid];
    let mut ifaces = vec![json!({
        "name": "lo", "hardware-address": "00:00:00:00:00:00",
        "ip-addresses": [
            { "ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8 },
            { "ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128 },
        ],
        "statistics": { "rx-bytes": 0, "tx-bytes": 0, "rx-packets": 0, "tx-packets": 0, "rx-errs": 0, "tx-errs": 0, "rx-dropped": 0, "tx-dropped": 0 },
    })];
    for (k, v) in vm.config.iter().filter(|(k, _)| k.starts_with("net")) {
        let idx = &k[3..];
        let mac = mac_in(v).unwrap_or_default();
        let mut addrs = Vec::new();
        if let Some(ipc) = vm.config.get(&format!("ipconfig{idx}")) {
            for part in ipc.split(',') {
                match part.split_once('=') {
                    Some(("ip", a)) if a != "dhcp" => {
                        let (ip, prefix) = a.split_once('/').unwrap_or((a, "24"));
                        addrs.push(json!({ "ip-address": ip, "ip-address-type": "ipv4", "prefix": prefix.parse::<u32>().unwrap_or(24) }));
                    }
                    Some(("ip", "dhcp")) => {
                        addrs.push(json!({ "ip-address": format!("10.10.{}.{}", vmid / 250 % 250, vmid % 250 + 2), "ip-address-type": "ipv4", "prefix": 24 }));
                    }
                    Some(("ip6", a)) if a.contains(':') => {
                        let (ip, prefix) = a.split_once('/').unwrap_or((a, "64"));
                        addrs.push(json!({ "ip-address": ip, "ip-address-type": "ipv6", "prefix": prefix.parse::<u32>().unwrap_or(64) }));
                    }
                    _ => {}
                }
            }
        }
        let f = vm.figures(req.now);
        ifaces.push(json!({
            "name": format!("eth{idx}"), "hardware-address": mac, "ip-addresses": addrs,
            "statistics": { "rx-bytes": f.netin, "tx-bytes": f.netout, "rx-packets": f.netin / 900, "tx-packets": f.netout / 900, "rx-errs": 0, "tx-errs": 0, "rx-dropped": 0, "tx-dropped": 0 },
        }));
    }
    Reply::json(json!({ "result": ifaces }))
}

pub(super) fn agent_set_password(st: &mut State, req: &Req) -> ApiResult {
    let user = req.req_arg("username")?.to_string();
    let password = req.req_arg("password")?;
    if password.len() < 5 && !req.flag("crypted") {
        return Err(ApiError::param(
            "password",
            "value must have at least length 5",
        ));
    }
    let vmid = agent_ready(st, req)?;
    if user.is_empty() || user.contains(':') {
        return Err(ApiError::fail(format!(
            "VM {vmid} qmp command 'guest-set-user-password' failed - user not found"
        )));
    }
    Reply::json(json!({ "result": {} }))
}

pub(super) fn vncproxy(st: &mut State, req: &Req) -> ApiResult {
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vncproxy): only the config must exist (a stopped
    // VM gets a ticket too; its `qm vncproxy` fails once a client connects). The answer is
    // {user, ticket, port, upid, cert, password}: for a non-serial display the ticket is
    // "PASSWORD:PVEVNC:..." and `password` (8 printable characters) is returned; the port
    // comes from 5900-5999; the `vncproxy` worker waits 10 s for the client and dies with
    // "connection timed out" otherwise.
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    let port = 5900 + (st.next_pid % 100) as u16;
    use rand::Rng;
    let raw: [u8; 24] = st.rng.random();
    let pw: String = (0..8)
        .map(|_| char::from(st.rng.random_range(b'!'..=b'~')))
        .collect();
    let ticket = format!(
        "{pw}:PVEVNC:{:08X}::{}",
        req.now_s(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, raw)
    );
    let dur = st.timing.vnc_ms;
    let upid = st.spawn_task(
        req.now,
        req.node(),
        "vncproxy",
        &vmid.to_string(),
        &req.user,
        dur,
        vec![],
        |_, _| {},
    );
    if let Some(&i) = st.task_index.get(&upid)
        && st.tasks[i].outcome == Outcome::Ok
    {
        st.tasks[i].outcome = Outcome::Error("connection timed out".into());
    }
    // FACT (pve-access-control src/PVE/AccessControl.pm, verify_vnc_ticket): the VNC ticket
    // is valid from -20 s to 40 s of its creation time.
    st.vnc_tickets.insert(
        ticket.clone(),
        VncTicket {
            vmid,
            port,
            expires_ms: req.now + 40_000,
            upid: upid.clone(),
            authid: req.user.clone(),
        },
    );
    Reply::json(json!({
        "ticket": ticket, "port": port, "user": req.user, "cert": st.cert_pem, "upid": upid,
        "password": pw,
    }))
}
