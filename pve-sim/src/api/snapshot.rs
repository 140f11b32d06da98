//! Snapshots: list (with the `current` pseudo-entry), create, delete, rollback, config.

use serde_json::{Value, json};

use super::qemu::{failed_task, fake_uuid};
use super::{ApiError, ApiResult, Reply, Req, check_lock, qemu::config_json, vm_mut, vm_task};
use crate::model::{Outcome, Snapshot, State};
use crate::seed::{RUNNING_CPU, RUNNING_MACHINE};

/// PVE's `pve-snapshot-name` format: a `pve-configid` (`^[a-z][a-z0-9_-]+$`, case-insensitive)
/// of at most 40 characters.
pub(crate) fn valid_snapname(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Keys of a snapshot config that are about the saved RAM, not the VM's configuration.
const STATE_KEYS: &[&str] = &["vmstate", "runningmachine", "runningcpu"];

pub(super) fn list(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, snapshot_list): items carry name, snaptime,
    // vmstate (0/1), description ('' when unset), parent and snapstate when set; the
    // `current` entry has digest, running (0/1), description "You are here!" and parent.
    let mut out: Vec<Value> = vm
        .snapshots
        .values()
        .map(|s| {
            let mut v = json!({
                "name": s.name, "description": s.description, "snaptime": s.snaptime,
                "vmstate": if s.vmstate { 1 } else { 0 },
            });
            if let Some(p) = &s.parent {
                v["parent"] = json!(p);
            }
            if let Some(p) = &s.snapstate {
                v["snapstate"] = json!(p);
            }
            v
        })
        .collect();
    let mut cur = json!({
        "name": "current", "description": "You are here!",
        "running": if vm.running() { 1 } else { 0 }, "digest": vm.config_digest(),
    });
    if let Some(p) = vm.config.get("parent") {
        cur["parent"] = json!(p);
    }
    out.push(cur);
    Reply::json(Value::Array(out))
}

fn check_name(req: &Req) -> Result<String, ApiError> {
    let name = req.req_arg("snapname")?.to_string();
    if !valid_snapname(&name) {
        return Err(ApiError::param(
            "snapname",
            &format!("invalid format - invalid configuration ID '{name}'"),
        ));
    }
    Ok(name)
}

pub(super) fn create(st: &mut State, req: &Req) -> ApiResult {
    let name = check_name(req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, snapshot): the reserved names are refused
    // before the worker is forked (HTTP 500).
    if name == "current" {
        return Err(ApiError::fail(
            "unable to use snapshot name 'current' (reserved name)",
        ));
    }
    if name.eq_ignore_ascii_case("pending") {
        return Err(ApiError::fail(
            "unable to use snapshot name 'pending' (reserved name)",
        ));
    }
    let description = req.arg("description").unwrap_or("").to_string();
    let want_vmstate = req.flag("vmstate");
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, __snapshot_prepare): inside the
    // `qmsnapshot` worker: template, lock, then "snapshot name '$snapname' already used".
    let failure = if vm.is_template() {
        Some("you can't take a snapshot if it's a template".to_string())
    } else if let Some(l) = vm.lock() {
        Some(format!("VM is locked ({l})"))
    } else if vm.snapshots.contains_key(&name) {
        Some(format!("snapshot name '{name}' already used"))
    } else {
        None
    };
    if let Some(e) = failure {
        return failed_task(st, req, "qmsnapshot", vmid, e);
    }
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, __snapshot_prepare): RAM is saved
    // only when asked for and the VM runs; the snapshot config records `vmstate` (the state
    // volume), `runningmachine` and `runningcpu` (qemu-server QemuConfig.pm).
    let running = vm.running();
    let mut config = vm.config.clone();
    let parent = config.remove("parent");
    config.remove("lock");
    config.retain(|k, _| !k.starts_with("unused"));
    let state = if want_vmstate && running {
        st.alloc_vmstate(vmid, &name, req.now_s())
    } else {
        None
    };
    if let Some(v) = &state {
        config.insert("vmstate".into(), v.clone());
        config.insert("runningmachine".into(), RUNNING_MACHINE.into());
        config.insert("runningcpu".into(), RUNNING_CPU.into());
    }
    let task_ms = st.timing.task_ms;
    let vm = vm_mut(st, req)?;
    vm.snapshots.insert(
        name.clone(),
        Snapshot {
            name: name.clone(),
            description,
            snaptime: req.now_s(),
            vmstate: state.is_some(),
            parent,
            config,
            snapstate: Some("prepare".into()),
        },
    );
    vm.config.insert("lock".into(), "snapshot".into());
    let dur = if state.is_some() {
        task_ms * 2
    } else {
        task_ms
    };
    let mut log = vec![];
    if let Some(v) = &state {
        let storage = v.split(':').next().unwrap_or("local-lvm");
        log.push((
            0,
            format!("saving VM state and RAM using storage '{storage}'"),
        ));
        log.push((
            dur / 2,
            "completed saving the VM state in 2s, saved 1.02 GiB".to_string(),
        ));
    }
    let disks: Vec<(String, String)> = vm
        .disks()
        .map(|(k, v, _)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in disks {
        log.push((dur, format!("snapshotting 'drive-{k}' ({v})")));
    }
    vm_task(st, req, "qmsnapshot", vmid, dur, log, move |st, end| {
        let failed = matches!(end.outcome, Outcome::Error(_));
        let Some(vm) = st.vms.get_mut(&vmid) else {
            return;
        };
        vm.unlock("snapshot");
        if failed {
            // FACT (pve-guest-common src/PVE/AbstractConfig.pm, snapshot_create): a failed
            // snapshot is cleaned up again.
            let gone = vm.snapshots.remove(&name);
            if let Some(v) = gone.and_then(|s| s.config.get("vmstate").cloned()) {
                st.volumes.remove(&v);
            }
            return;
        }
        if let Some(s) = vm.snapshots.get_mut(&name) {
            s.snapstate = None;
        }
        // FACT (pve-guest-common src/PVE/AbstractConfig.pm, __snapshot_commit): the new
        // snapshot becomes the current config's parent.
        vm.config.insert("parent".into(), name);
    })
}

/// PVE's error for a snapshot name the VM does not have.
pub(super) fn no_snapshot(name: &str) -> ApiError {
    ApiError::fail(format!("snapshot '{name}' does not exist"))
}

fn snap_name(req: &Req) -> String {
    req.p("snapname").to_string()
}

pub(super) fn delete(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, snapshot_delete): all checks run in
    // the `qmdelsnapshot` worker; set_lock checks the lock even with `force`.
    let failure = if !vm.snapshots.contains_key(&name) {
        Some(format!("snapshot '{name}' does not exist"))
    } else {
        vm.lock().map(|l| format!("VM is locked ({l})"))
    };
    if let Some(e) = failure {
        return failed_task(st, req, "qmdelsnapshot", vmid, e);
    }
    vm.config.insert("lock".into(), "snapshot-delete".into());
    if let Some(s) = vm.snapshots.get_mut(&name) {
        s.snapstate = Some("delete".into());
    }
    let dur = st.timing.task_ms;
    vm_task(
        st,
        req,
        "qmdelsnapshot",
        vmid,
        dur,
        vec![],
        move |st, end| {
            let Some(vm) = st.vms.get_mut(&vmid) else {
                return;
            };
            vm.unlock("snapshot-delete");
            if matches!(end.outcome, Outcome::Error(_)) {
                return;
            }
            if let Some(snap) = vm.snapshots.remove(&name) {
                for s in vm.snapshots.values_mut() {
                    if s.parent.as_deref() == Some(name.as_str()) {
                        s.parent = snap.parent.clone();
                    }
                }
                if vm.config.get("parent") == Some(&name) {
                    match snap.parent {
                        Some(p) => vm.config.insert("parent".into(), p),
                        None => vm.config.remove("parent"),
                    };
                }
                // FACT (qemu-server src/PVE/QemuConfig.pm, __snapshot_delete_vmstate_file):
                // the RAM-state volume is freed with the snapshot.
                if let Some(v) = snap.config.get("vmstate") {
                    st.volumes.remove(v);
                }
            }
        },
    )
}

pub(super) fn rollback(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let start_after = req.flag("start");
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, snapshot_rollback): inside the
    // `qmrollback` worker: template, unknown snapshot, incomplete snapshot, lock; then the VM
    // is stopped and locked `rollback`.
    let failure = match vm.snapshots.get(&name) {
        _ if vm.is_template() => Some("you can't rollback if vm is a template".to_string()),
        None => Some(format!("snapshot '{name}' does not exist")),
        Some(s) if s.snapstate.is_some() => Some(format!(
            "unable to rollback to incomplete snapshot (snapstate = {})",
            s.snapstate.as_deref().unwrap_or("")
        )),
        Some(_) => vm.lock().map(|l| format!("VM is locked ({l})")),
    };
    if let Some(e) = failure {
        return failed_task(st, req, "qmrollback", vmid, e);
    }
    let Some(snap) = vm.snapshots.get(&name).cloned() else {
        return Err(no_snapshot(&name));
    };
    vm.config.insert("lock".into(), "rollback".into());
    vm.started_ms = None;
    let genid = fake_uuid(st);
    let dur = st.timing.task_ms;
    vm_task(st, req, "qmrollback", vmid, dur, vec![], move |st, end| {
        let pid = st.next_pid.wrapping_mul(3) % 900_000 + 1000;
        let Some(vm) = st.vms.get_mut(&vmid) else {
            return;
        };
        if matches!(end.outcome, Outcome::Error(_)) {
            vm.unlock("rollback");
            return;
        }
        // FACT (pve-guest-common src/PVE/AbstractConfig.pm, __snapshot_apply_config): the
        // snapshot's config replaces the current one, which keeps its description and unused
        // disks; `parent` becomes the snapshot.
        let mut cfg = snap.config.clone();
        for k in STATE_KEYS {
            cfg.remove(*k);
        }
        for (k, v) in &vm.config {
            if k == "description" || k.starts_with("unused") {
                cfg.insert(k.clone(), v.clone());
            }
        }
        if !vm.config.contains_key("description") {
            cfg.remove("description");
        }
        // FACT (qemu-server src/PVE/QemuConfig.pm, __snapshot_rollback_hook): a new vmgenid
        // tells the guest it is another generation.
        if cfg.contains_key("vmgenid") {
            cfg.insert("vmgenid".into(), genid);
        }
        cfg.insert("parent".into(), snap.name.clone());
        vm.config = cfg;
        vm.pending.clear();
        // FACT (qemu-server src/PVE/API2/Qemu.pm, rollback): a snapshot with RAM resumes the
        // VM; otherwise it starts only with `start=1`.
        if snap.vmstate || start_after {
            vm.started_ms = Some(end.at_ms);
            vm.pid = pid;
        }
    })
}

pub(super) fn get_config(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let vm = vm_mut(st, req)?;
    let snap = vm.snapshots.get(&name).ok_or_else(|| no_snapshot(&name))?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, get_snapshot_config): the snapshot section as
    // stored (snaptime, description when set, vmstate/runningmachine/runningcpu with RAM,
    // parent) with `cipassword` masked.
    let mut m = config_json(&snap.config);
    m.insert("snaptime".into(), json!(snap.snaptime));
    if !snap.description.is_empty() {
        m.insert("description".into(), json!(snap.description));
    }
    if let Some(p) = &snap.parent {
        m.insert("parent".into(), json!(p));
    }
    if let Some(s) = &snap.snapstate {
        m.insert("snapstate".into(), json!(s));
    }
    if m.contains_key("cipassword") {
        m.insert("cipassword".into(), json!("**********"));
    }
    Reply::json(Value::Object(m))
}

pub(super) fn set_config(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let description = req.args.get("description").cloned();
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, update_snapshot_config): nothing to do without
    // `description`; otherwise lock check, then "snapshot '$snapname' does not exist".
    let Some(d) = description else {
        return Reply::null();
    };
    super::check_flock(vm, req.now)?;
    check_lock(vm)?;
    let snap = vm
        .snapshots
        .get_mut(&name)
        .ok_or_else(|| no_snapshot(&name))?;
    snap.description = d;
    Reply::null()
}

/// `GET .../snapshot/{snapname}`: the directory index of one snapshot.
pub(super) fn index(st: &mut State, req: &Req) -> ApiResult {
    vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, snapshot_cmd_idx): `cmd` entries, answered
    // without looking the snapshot up.
    Reply::json(json!([{ "cmd": "rollback" }, { "cmd": "config" }]))
}
