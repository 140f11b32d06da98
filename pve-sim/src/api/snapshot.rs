//! Snapshots: list (with the `current` pseudo-entry), create, delete, rollback, config.

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Reply, Req, check_lock, qemu::config_json, vm_mut, vm_task};
use crate::model::{Outcome, Snapshot, State};

/// PVE's `pve-configid` rule for snapshot names.
pub(crate) fn valid_snapname(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
        && name != "current"
        && name != "pending"
}

pub(super) fn list(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
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
            v
        })
        .collect();
    let mut cur = json!({
        "name": "current", "description": "You are here!", "running": if vm.running() { 1 } else { 0 },
    });
    if let Some(p) = vm.config.get("parent") {
        cur["parent"] = json!(p);
    }
    out.push(cur);
    Reply::json(Value::Array(out))
}

pub(super) fn create(st: &mut State, req: &Req) -> ApiResult {
    let name = req.req_arg("snapname")?.to_string();
    if !valid_snapname(&name) {
        return Err(ApiError::param(
            "snapname",
            &format!("invalid format - invalid configuration ID '{name}'"),
        ));
    }
    let description = req.arg("description").unwrap_or("").to_string();
    let want_vmstate = req.flag("vmstate");
    let vm = vm_mut(st, req)?;
    check_lock(vm)?;
    if vm.snapshots.contains_key(&name) {
        return Err(ApiError::fail(format!(
            "snapshot name '{name}' already used"
        )));
    }
    if vm.is_template() {
        return Err(ApiError::fail("you can't take a snapshot of a template"));
    }
    let vmid = vm.vmid;
    let vmstate = want_vmstate && vm.running();
    let mut config = vm.config.clone();
    config.remove("lock");
    let parent = vm.config.get("parent").cloned();
    config.remove("parent");
    vm.snapshots.insert(
        name.clone(),
        Snapshot {
            name: name.clone(),
            description,
            snaptime: req.now_s(),
            vmstate,
            parent: parent.clone(),
            config,
        },
    );
    vm.config.insert("lock".into(), "snapshot".into());
    let dur = if vmstate {
        st.timing.task_ms * 2
    } else {
        st.timing.task_ms
    };
    let mut log = vec![];
    if vmstate {
        log.push((
            0,
            "saving VM state and RAM using storage 'local-lvm'".to_string(),
        ));
        log.push((
            dur / 2,
            "completed saving the VM state in 2s, saved 1.02 GiB".to_string(),
        ));
    }
    log.push((
        dur,
        format!("snapshotting 'drive-scsi0' (local-lvm:vm-{vmid}-disk-0)"),
    ));
    vm_task(st, req, "qmsnapshot", vmid, dur, log, move |st, end| {
        let Some(vm) = st.vms.get_mut(&vmid) else {
            return;
        };
        vm.unlock("snapshot");
        if matches!(end.outcome, Outcome::Error(_)) {
            vm.snapshots.remove(&name);
            return;
        }
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
    let force = req.flag("force");
    let vm = vm_mut(st, req)?;
    if !force {
        check_lock(vm)?;
    }
    if !vm.snapshots.contains_key(&name) {
        return Err(no_snapshot(&name));
    }
    let vmid = vm.vmid;
    vm.config.insert("lock".into(), "snapshot-delete".into());
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
            }
        },
    )
}

pub(super) fn rollback(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let start_after = req.flag("start");
    let vm = vm_mut(st, req)?;
    check_lock(vm)?;
    let Some(snap) = vm.snapshots.get(&name).cloned() else {
        return Err(no_snapshot(&name));
    };
    let vmid = vm.vmid;
    vm.config.insert("lock".into(), "rollback".into());
    // Rolling back stops the VM first.
    vm.started_ms = None;
    let dur = st.timing.task_ms;
    vm_task(st, req, "qmrollback", vmid, dur, vec![], move |st, end| {
        let Some(vm) = st.vms.get_mut(&vmid) else {
            return;
        };
        if matches!(end.outcome, Outcome::Error(_)) {
            vm.unlock("rollback");
            return;
        }
        let mut cfg = snap.config.clone();
        cfg.insert("parent".into(), snap.name.clone());
        vm.config = cfg;
        vm.pending.clear();
        if snap.vmstate || start_after {
            vm.started_ms = Some(end.at_ms);
        }
    })
}

pub(super) fn get_config(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let vm = vm_mut(st, req)?;
    let snap = vm.snapshots.get(&name).ok_or_else(|| no_snapshot(&name))?;
    let mut m = config_json(&snap.config);
    m.insert("snaptime".into(), json!(snap.snaptime));
    m.insert("description".into(), json!(snap.description));
    if snap.vmstate {
        m.insert(
            "vmstate".into(),
            json!(format!("local-lvm:vm-{}-state-{}", vm.vmid, snap.name)),
        );
    }
    if let Some(p) = &snap.parent {
        m.insert("parent".into(), json!(p));
    }
    Reply::json(Value::Object(m))
}

pub(super) fn set_config(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let description = req.arg("description").map(str::to_string);
    let vm = vm_mut(st, req)?;
    check_lock(vm)?;
    let snap = vm
        .snapshots
        .get_mut(&name)
        .ok_or_else(|| no_snapshot(&name))?;
    if let Some(d) = description {
        snap.description = d;
    }
    Reply::null()
}

/// `GET .../snapshot/{snapname}`: the directory index of one snapshot.
pub(super) fn index(st: &mut State, req: &Req) -> ApiResult {
    let name = snap_name(req);
    let vm = vm_mut(st, req)?;
    if !vm.snapshots.contains_key(&name) {
        return Err(no_snapshot(&name));
    }
    Reply::json(json!([{ "subdir": "config" }, { "subdir": "rollback" }]))
}
