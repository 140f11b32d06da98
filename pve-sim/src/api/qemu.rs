//! VM lifecycle and configuration: list, status, power, config, resize, clone, create/restore.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    ApiError, ApiResult, Reply, Req, check_lock, check_running, snapshot, vm_mut, vm_task,
};
use crate::model::{
    Outcome, State, Vm, Volume, disk_size, format_size, is_cloudinit_key, is_cold_key, is_disk_key,
    noise, parse_size,
};

/// Parameters of config writes that are not config keys.
const CONTROL: &[&str] = &[
    "node",
    "vmid",
    "digest",
    "delete",
    "revert",
    "skiplock",
    "background_delay",
    "force",
    "archive",
    "storage",
    "unique",
    "start",
    "bwlimit",
    "pool",
    "live-restore",
    "current",
    "snapshot",
    "format",
];

/// Keys PVE reports as integers (or booleans it sends as 0/1).
const INT_KEYS: &[&str] = &[
    "cores",
    "sockets",
    "vcpus",
    "balloon",
    "template",
    "onboot",
    "numa",
    "protection",
    "acpi",
    "kvm",
    "tablet",
    "reboot",
    "shares",
    "localtime",
    "freeze",
    "ciupgrade",
    "cpuunits",
    "migrate_downtime",
    "migrate_speed",
];

/// A config map as JSON with PVE's value types.
pub(crate) fn config_json(config: &BTreeMap<String, String>) -> serde_json::Map<String, Value> {
    config
        .iter()
        .map(|(k, v)| {
            let val = if INT_KEYS.contains(&k.as_str()) {
                v.parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(v.clone()))
            } else {
                Value::from(v.clone())
            };
            (k.clone(), val)
        })
        .collect()
}

fn status_str(vm: &Vm) -> &'static str {
    if vm.running() { "running" } else { "stopped" }
}

fn vm_summary(vm: &Vm, now: u64) -> Value {
    let f = vm.figures(now);
    let mut v = json!({
        "vmid": vm.vmid, "name": vm.name(), "status": status_str(vm),
        "cpu": f.cpu, "cpus": vm.cpus(), "mem": f.mem, "maxmem": vm.maxmem(),
        "disk": f.disk, "maxdisk": vm.maxdisk(), "uptime": f.uptime,
        "netin": f.netin, "netout": f.netout, "diskread": f.diskread, "diskwrite": f.diskwrite,
    });
    if vm.running() {
        v["pid"] = json!(vm.pid);
    }
    if vm.is_template() {
        v["template"] = json!(1);
    }
    if let Some(l) = vm.lock() {
        v["lock"] = json!(l);
    }
    if let Some(t) = vm.config.get("tags") {
        v["tags"] = json!(t);
    }
    v
}

pub(super) fn list(st: &mut State, req: &Req) -> ApiResult {
    let out: Vec<Value> = st
        .vms
        .values()
        .filter(|vm| vm.node == req.node())
        .map(|vm| vm_summary(vm, req.now))
        .collect();
    Reply::json(Value::Array(out))
}

pub(super) fn status_current(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    let mut v = vm_summary(vm, req.now);
    v["ha"] = json!({ "managed": 0 });
    v["qmpstatus"] = v["status"].clone();
    if vm.agent_enabled() {
        v["agent"] = json!(1);
    }
    // FACT (qemu-server src/PVE/QemuServer.pm, vmstatus): `shares` (auto-ballooning weight,
    // default 1000) for every VM; for a running one the QMP answers add `running-machine`,
    // `running-qemu`, `blockstat` (query-blockstats per drive), `nics` (per tap device),
    // `proxmox-support`, and with a balloon device `balloon`, `balloon_min`, `ballooninfo`
    // and `freemem` (recorded from a PVE 8.0 VM: proxmox-api tests/fixtures/real).
    v["shares"] = json!(
        vm.config
            .get("shares")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1000)
    );
    // FACT (qemu-server src/PVE/QemuServer.pm, vmstatus; recorded PVE 9.1 answers in
    // proxmox-api tests/fixtures/real): `serial: 1` when a serial port is configured,
    // `memhost` (host memory of the QEMU process, 0 when stopped) and, running, the
    // pressure-stall figures.
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_status): with a `vga` setting the answer
    // has `clipboard` (its clipboard option or null) and `spice: 1` for virtio/qxl displays.
    if vm.config.keys().any(|k| {
        k.strip_prefix("serial")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }) {
        v["serial"] = json!(1);
    }
    if let Some(vga) = vm.config.get("vga") {
        let opt = |name: &str| {
            vga.split(',').find_map(|p| {
                p.split_once('=')
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let kind = opt("type").or_else(|| {
            vga.split(',')
                .next()
                .filter(|t| !t.contains('='))
                .map(str::to_string)
        });
        v["clipboard"] = opt("clipboard").map(Value::from).unwrap_or(Value::Null);
        if kind.is_some_and(|t| t.starts_with("virtio") || t.starts_with("qxl")) {
            v["spice"] = json!(1);
        }
    }
    let f = vm.figures(req.now);
    v["memhost"] = json!(if vm.running() { f.mem + (60 << 20) } else { 0 });
    if vm.running() {
        for k in [
            "pressurecpusome",
            "pressurecpufull",
            "pressureiosome",
            "pressureiofull",
            "pressurememorysome",
            "pressurememoryfull",
        ] {
            v[k] = json!(0);
        }
    }
    if vm.running() {
        let f = vm.figures(req.now);
        v["running-machine"] = json!(crate::seed::RUNNING_MACHINE);
        v["running-qemu"] = json!("9.2.0");
        let mut blockstat = serde_json::Map::new();
        for (k, val) in vm.config.iter().filter(|(k, _)| is_disk_key(k)) {
            let cdrom = val.contains("media=cdrom");
            let share = |x: u64| if cdrom { 0 } else { x };
            blockstat.insert(
                k.clone(),
                json!({
                    "rd_bytes": share(f.diskread), "wr_bytes": share(f.diskwrite),
                    "rd_operations": share(f.diskread / 4096), "wr_operations": share(f.diskwrite / 4096),
                    "flush_operations": share(f.diskwrite / 65536), "unmap_operations": 0,
                    "rd_total_time_ns": share(f.diskread * 10), "wr_total_time_ns": share(f.diskwrite * 40),
                    "flush_total_time_ns": share(f.diskwrite * 5), "unmap_total_time_ns": 0,
                    "rd_merged": 0, "wr_merged": 0, "unmap_merged": 0, "unmap_bytes": 0,
                    "wr_highest_offset": share(f.diskwrite.min(vm.maxdisk())),
                    "idle_time_ns": f.uptime * 1_000_000_000 / 3,
                    "failed_rd_operations": 0, "failed_wr_operations": 0,
                    "failed_flush_operations": 0, "failed_unmap_operations": 0,
                    "invalid_rd_operations": 0, "invalid_wr_operations": 0,
                    "invalid_flush_operations": 0, "invalid_unmap_operations": 0,
                    "account_invalid": true, "account_failed": true, "timed_stats": [],
                }),
            );
        }
        v["blockstat"] = Value::Object(blockstat);
        let nets: Vec<&String> = vm
            .config
            .keys()
            .filter(|k| {
                k.strip_prefix("net")
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
            })
            .collect();
        let count = nets.len().max(1) as u64;
        let nics: serde_json::Map<String, Value> = nets
            .iter()
            .map(|k| {
                (
                    format!("tap{}i{}", vm.vmid, &k[3..]),
                    json!({ "netin": f.netin / count, "netout": f.netout / count }),
                )
            })
            .collect();
        v["nics"] = Value::Object(nics);
        v["proxmox-support"] = json!({
            "pbs-dirty-bitmap": true, "pbs-dirty-bitmap-savevm": true,
            "pbs-dirty-bitmap-migration": true, "query-bitmap-info": true,
            "pbs-masterkey": true, "backup-max-workers": true, "backup-fleecing": true,
            "pbs-library-version": "1.5.1 (UNKNOWN)",
        });
        let balloon_dev = vm.config.get("balloon").is_none_or(|b| b != "0");
        if balloon_dev {
            let maxmem = vm.maxmem();
            let min = vm
                .config
                .get("balloon")
                .and_then(|b| b.parse::<u64>().ok())
                .map(|mb| mb << 20)
                .unwrap_or(maxmem);
            let free = maxmem.saturating_sub(f.mem);
            v["balloon"] = json!(maxmem);
            v["balloon_min"] = json!(min);
            v["freemem"] = json!(free);
            v["ballooninfo"] = json!({
                "actual": maxmem, "max_mem": maxmem, "total_mem": maxmem - maxmem / 25,
                "free_mem": free, "mem_swapped_in": 0, "mem_swapped_out": 0,
                "major_page_faults": f.uptime / 100, "minor_page_faults": f.uptime * 20,
                "last_update": req.now_s().saturating_sub(2),
            });
        }
    }
    Reply::json(v)
}

/// `skiplock`, which PVE lets only `root@pam` use (an API token of root is not root@pam).
pub(super) fn skiplock(req: &Req) -> Result<bool, ApiError> {
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_start/vm_stop/vm_reset/...): `raise_param_exc
    // ({ skiplock => "Only root may use this option." }) if $skiplock && $authuser ne
    // 'root@pam'`.
    let skip = req.flag("skiplock");
    if skip && req.user != "root@pam" {
        return Err(ApiError::param(
            "skiplock",
            "Only root may use this option.",
        ));
    }
    Ok(skip)
}

/// PVE's `check_lock` message, as a task error.
fn lock_error(vm: &Vm) -> Option<String> {
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, check_lock): "VM is locked ($lock)".
    vm.lock().map(|l| format!("VM is locked ({l})"))
}

pub(super) fn start(st: &mut State, req: &Req) -> ApiResult {
    let skip = skiplock(req)?;
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (qemu-server src/PVE/QemuServer.pm, vm_start): the API only forks the `qmstart`
    // worker; inside it, under the config lock: a template cannot start, a `backup` lock on a
    // running VM resumes it, any other lock refuses ("VM is locked (...)") unless skiplock,
    // and a running VM fails with "VM $vmid already running".
    let failure = if vm.is_template() {
        Some("you can't start a vm if it's a template".to_string())
    } else if vm.lock() == Some("backup") && vm.running() {
        None
    } else if let Some(e) = lock_error(vm).filter(|_| !skip && vm.lock() != Some("suspended")) {
        Some(e)
    } else if vm.running() {
        Some(format!("VM {vmid} already running"))
    } else {
        None
    };
    if let Some(e) = failure {
        return failed_task(st, req, "qmstart", vmid, e);
    }
    let already = vm.running();
    let dur = st.timing.task_ms;
    flock_task(st, req, "qmstart", vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) || already {
            return;
        }
        let pid = st.next_pid.wrapping_mul(3) % 900_000 + 1000;
        if let Some(vm) = st.vms.get_mut(&vmid) {
            // FACT (qemu-server src/PVE/QemuServer.pm, vm_start_nolock): pending changes are
            // applied and the cloud-init drive regenerated before QEMU starts.
            vm.apply_pending();
            vm.regenerate_cloudinit();
            vm.started_ms = Some(end.at_ms);
            vm.pid = pid;
        }
    })
}

/// Spawn a worker that holds the VM's config flock for its whole run, as qemu-server's
/// vm_start, vm_stop, vm_reboot, vm_reset and resize do (`lock_config` around the work).
#[allow(clippy::too_many_arguments)]
fn flock_task(
    st: &mut State,
    req: &Req,
    kind: &str,
    vmid: u32,
    duration_ms: u64,
    log: Vec<(u64, String)>,
    effect: impl FnOnce(&mut State, &mut crate::model::TaskEnd) + Send + 'static,
) -> ApiResult {
    let reply = vm_task(st, req, kind, vmid, duration_ms, log, move |st, end| {
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.flock_until = 0;
        }
        effect(st, end);
    })?;
    if let Some(vm) = st.vms.get_mut(&vmid)
        && duration_ms > 0
    {
        vm.flock_until = req.now + duration_ms;
    }
    Ok(reply)
}

/// Answer with the UPID of a task that fails at once with `error` (PVE forks the worker and
/// the worker dies on its first check).
pub(super) fn failed_task(
    st: &mut State,
    req: &Req,
    kind: &str,
    vmid: u32,
    error: String,
) -> ApiResult {
    vm_task(st, req, kind, vmid, 0, vec![], move |_, end| {
        end.outcome = Outcome::Error(error);
    })
}

/// Stop (`graceful == false`) or shut down a VM inside its worker, like `_do_vm_stop`.
fn stop_task(st: &mut State, req: &Req, kind: &str, graceful: bool) -> ApiResult {
    let skip = skiplock(req)?;
    let force = req.flag("forceStop");
    let timeout = req.int("timeout")?;
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (qemu-server src/PVE/QemuServer.pm, _do_vm_stop): `return if !$pid` comes first,
    // so stopping a stopped VM is a successful no-op task (no lock check either); then the
    // lock is checked unless skiplock.
    if !vm.running() {
        return vm_task(st, req, kind, vmid, 0, vec![], |_, _| {});
    }
    if let Some(e) = lock_error(vm).filter(|_| !skip) {
        return failed_task(st, req, kind, vmid, e);
    }
    let ignores = graceful && vm.ignore_shutdown;
    let dur = if ignores {
        timeout
            .map(|t| (t.max(0) as u64) * 1000)
            .unwrap_or(st.timing.task_ms * 3)
            .min(st.timing.task_ms * 3)
    } else {
        st.timing.task_ms
    };
    flock_task(st, req, kind, vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            return;
        }
        if ignores {
            // FACT (qemu-server src/PVE/QemuServer.pm, _do_vm_stop): after the timeout,
            // forceStop kills with SIGTERM ("VM still running - terminating now with
            // SIGTERM"), otherwise "VM quit/powerdown failed - got timeout".
            if force {
                end.log
                    .push("VM still running - terminating now with SIGTERM".into());
            } else {
                end.outcome = Outcome::Error("VM quit/powerdown failed - got timeout".into());
                return;
            }
        }
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.started_ms = None;
            // FACT (qemu-server src/PVE/QemuServer.pm, vm_stop_cleanup): pending changes are
            // applied once the VM is down.
            vm.apply_pending();
        }
    })
}

pub(super) fn stop(st: &mut State, req: &Req) -> ApiResult {
    stop_task(st, req, "qmstop", false)
}

pub(super) fn shutdown(st: &mut State, req: &Req) -> ApiResult {
    stop_task(st, req, "qmshutdown", true)
}

pub(super) fn reboot(st: &mut State, req: &Req) -> ApiResult {
    let timeout = req.int("timeout")?;
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_reboot): "VM $vmid not running" is checked
    // before forking `qmreboot` (HTTP 500); the worker then shuts down without skiplock, so a
    // lock fails the task, and the guest comes back with its pending changes applied.
    check_running(vm)?;
    let vmid = vm.vmid;
    if let Some(e) = lock_error(vm) {
        return failed_task(st, req, "qmreboot", vmid, e);
    }
    let ignores = vm.ignore_shutdown;
    let dur = if ignores {
        timeout
            .map(|t| (t.max(0) as u64) * 1000)
            .unwrap_or(st.timing.task_ms * 3)
            .min(st.timing.task_ms * 3)
    } else {
        st.timing.task_ms
    };
    flock_task(st, req, "qmreboot", vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            return;
        }
        if ignores {
            end.outcome = Outcome::Error("VM quit/powerdown failed - got timeout".into());
            return;
        }
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.apply_pending();
            vm.regenerate_cloudinit();
            vm.started_ms = Some(end.at_ms);
        }
    })
}

/// `POST .../status/reset`: a hard reset of a running VM.
pub(super) fn reset(st: &mut State, req: &Req) -> ApiResult {
    let skip = skiplock(req)?;
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_reset): "VM $vmid not running" before the
    // fork (HTTP 500), then a `qmreset` worker (the answer is its UPID) that checks the lock
    // unless skiplock and sends QMP `system_reset` (same QEMU process, pending changes stay
    // pending).
    check_running(vm)?;
    let vmid = vm.vmid;
    if let Some(e) = lock_error(vm).filter(|_| !skip) {
        return failed_task(st, req, "qmreset", vmid, e);
    }
    let dur = st.timing.task_ms / 2;
    flock_task(st, req, "qmreset", vmid, dur, vec![], |_, _| {})
}

pub(super) fn get_config(st: &mut State, req: &Req) -> ApiResult {
    let current = req.flag("current");
    let snapshot = req.arg("snapshot").map(str::to_string);
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_config): `snapshot` and `current` exclude
    // each other (a parameter error on both), a snapshot's section comes with the file's
    // digest, and `cipassword` is always masked as '**********'.
    if snapshot.is_some() && current {
        let mut e = ApiError::param("snapshot", "cannot use 'snapshot' parameter with 'current'");
        if let Some(errs) = e.errors.as_mut() {
            errs.insert(
                "current".into(),
                "cannot use 'snapshot' parameter with 'current'".into(),
            );
        }
        return Err(e);
    }
    let vm = vm_mut(st, req)?;
    if let Some(s) = snapshot {
        let snap = vm
            .snapshots
            .get(&s)
            .ok_or_else(|| snapshot::no_snapshot(&s))?;
        let mut m = config_json(&snap.config);
        m.insert("snaptime".into(), json!(snap.snaptime));
        if !snap.description.is_empty() {
            m.insert("description".into(), json!(snap.description));
        }
        if let Some(p) = &snap.parent {
            m.insert("parent".into(), json!(p));
        }
        mask_cipassword(&mut m);
        m.insert("digest".into(), json!(vm.config_digest()));
        return Reply::json(Value::Object(m));
    }
    let mut cfg = vm.config.clone();
    if !current {
        for (k, v) in &vm.pending {
            match v {
                Some(v) => {
                    cfg.insert(k.clone(), v.clone());
                }
                None => {
                    cfg.remove(k);
                }
            }
        }
    }
    let mut m = config_json(&cfg);
    mask_cipassword(&mut m);
    m.insert("digest".into(), json!(vm.config_digest()));
    Reply::json(Value::Object(m))
}

/// PVE never hands out the cloud-init password.
pub(super) fn mask_cipassword(m: &mut serde_json::Map<String, Value>) {
    if m.contains_key("cipassword") {
        m.insert("cipassword".into(), json!("**********"));
    }
}

pub(super) fn pending(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    let mut keys: Vec<&String> = vm.config.keys().chain(vm.pending.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        // FACT (qemu-server src/PVE/API2/Qemu.pm, vm_pending): `cipassword` shows as
        // '**********', a pending one as '********** ' (with a space, so the two differ).
        let ci = k == "cipassword";
        let mut e = json!({ "key": k });
        if let Some(v) = vm.config.get(k) {
            e["value"] = if ci { json!("**********") } else { json!(v) };
        }
        match vm.pending.get(k) {
            Some(Some(p)) => e["pending"] = if ci { json!("********** ") } else { json!(p) },
            Some(None) => e["delete"] = json!(1),
            None => {}
        }
        out.push(e);
    }
    Reply::json(Value::Array(out))
}

/// Give a `netN` value an explicit MAC if it has none (PVE generates a random one).
fn ensure_mac(st: &mut State, value: &str) -> String {
    let mut parts: Vec<String> = value.split(',').map(str::to_string).collect();
    let models = ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"];
    let has_mac = parts.iter().any(|p| {
        p.split_once('=')
            .is_some_and(|(k, v)| (models.contains(&k) || k == "macaddr") && v.len() == 17)
    });
    if has_mac {
        return value.to_string();
    }
    let mac = st.random_mac();
    if let Some(i) = parts.iter().position(|p| models.contains(&p.as_str())) {
        parts[i] = format!("{}={mac}", parts[i]);
    } else if let Some(i) = parts.iter().position(|p| p.starts_with("model=")) {
        let model = parts[i].trim_start_matches("model=").to_string();
        parts[i] = format!("{model}={mac}");
    } else {
        parts.insert(0, format!("virtio={mac}"));
    }
    parts.join(",")
}

/// Replace the MAC of a `netN` value with a new random one.
pub(crate) fn new_mac(st: &mut State, value: &str) -> String {
    let models = ["virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "macaddr"];
    let stripped: Vec<&str> = value
        .split(',')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if models.contains(&k) && k != "macaddr" => k,
            _ => p,
        })
        .filter(|p| !p.starts_with("macaddr="))
        .collect();
    ensure_mac(st, &stripped.join(","))
}

/// Turn `storage:SIZE_GB` disk values into allocated volumes.
fn allocate_disk(
    st: &mut State,
    vmid: u32,
    key: &str,
    value: &str,
    config: &BTreeMap<String, String>,
) -> Result<String, ApiError> {
    let mut parts = value.split(',');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let Some((storage, size)) = first.split_once(':') else {
        return Ok(value.to_string());
    };
    if !size.bytes().all(|b| b.is_ascii_digit() || b == b'.') || value.contains("media=cdrom") {
        return Ok(value.to_string());
    }
    let gb: f64 = size
        .parse()
        .map_err(|_| ApiError::param(key, "invalid size"))?;
    let s = st
        .storages
        .get(storage)
        .ok_or_else(|| ApiError::param(key, &format!("storage '{storage}' does not exist")))?;
    if !s.has_content("images") {
        return Err(ApiError::param(
            key,
            &format!("storage '{storage}' does not support vm images"),
        ));
    }
    let bytes = (gb * (1u64 << 30) as f64) as u64;
    if st.storage_used(storage) + bytes > s.total {
        return Err(ApiError::fail(format!(
            "error with cfs lock 'storage-{storage}': unable to create image: not enough free space on storage '{storage}'"
        )));
    }
    let volid = st.next_disk_name(storage, vmid, config);
    let mut out = vec![volid];
    out.extend(
        rest.iter()
            .filter(|p| !p.starts_with("size="))
            .map(|s| s.to_string()),
    );
    out.push(format!("size={}", format_size(bytes)));
    Ok(out.join(","))
}

/// Config keys the schema knows (from `PUT /nodes/{node}/qemu/{vmid}/config`).
const CONFIG_KEYS: &[&str] = &[
    "acpi",
    "affinity",
    "agent",
    "allow-ksm",
    "amd-sev",
    "arch",
    "args",
    "audio0",
    "autostart",
    "balloon",
    "bios",
    "boot",
    "bootdisk",
    "cdrom",
    "cicustom",
    "cipassword",
    "citype",
    "ciupgrade",
    "ciuser",
    "cores",
    "cpu",
    "cpulimit",
    "cpuunits",
    "description",
    "efidisk0",
    "freeze",
    "hookscript",
    "hotplug",
    "hugepages",
    "intel-tdx",
    "ivshmem",
    "keephugepages",
    "keyboard",
    "kvm",
    "localtime",
    "machine",
    "memory",
    "migrate_downtime",
    "migrate_speed",
    "name",
    "nameserver",
    "numa",
    "onboot",
    "ostype",
    "protection",
    "reboot",
    "rng0",
    "scsihw",
    "searchdomain",
    "shares",
    "smbios1",
    "smp",
    "sockets",
    "spice_enhancements",
    "sshkeys",
    "startdate",
    "startup",
    "tablet",
    "tags",
    "tdf",
    "template",
    "tpmstate0",
    "vcpus",
    "vga",
    "vmgenid",
    "vmstatestorage",
    "watchdog",
];

/// Indexed config keys (`net0`, `scsi3`, ...).
const INDEXED_KEYS: &[&str] = &[
    "hostpci", "ide", "ipconfig", "net", "numa", "parallel", "sata", "scsi", "serial", "unused",
    "usb", "virtio", "virtiofs",
];

fn check_key(k: &str) -> Result<(), ApiError> {
    let indexed = INDEXED_KEYS.iter().any(|p| {
        k.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    if indexed || CONFIG_KEYS.contains(&k) {
        Ok(())
    } else {
        Err(ApiError::param(
            k,
            "property is not defined in schema and the schema does not allow additional properties",
        ))
    }
}

/// Apply a config write (PUT/POST config, create) to `vmid`.
pub(crate) fn write_config(
    st: &mut State,
    req: &Req,
    vmid: u32,
    allow_locked: bool,
) -> Result<(), ApiError> {
    let vm = st
        .vms
        .get(&vmid)
        .ok_or_else(|| ApiError::fail("vm vanished"))?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, update_vm_api): the write runs under
    // lock_config, so it waits for a worker holding the config flock.
    super::check_flock(vm, req.now)?;
    if !allow_locked && !req.flag("skiplock") {
        check_lock(vm)?;
    }
    if let Some(d) = req.arg("digest")
        && d != vm.config_digest()
    {
        return Err(ApiError::fail(
            "detected modified configuration - file changed by other user? Try again.",
        ));
    }
    let running = vm.running();
    let mut config = vm.config.clone();
    let mut sets: Vec<(String, String)> = Vec::new();
    let mut keys: Vec<&String> = req.args.keys().collect();
    keys.sort();
    for k in keys {
        if CONTROL.contains(&k.as_str()) {
            continue;
        }
        check_key(k)?;
        let mut v = req.args[k].clone();
        if k.starts_with("net") && k[3..].bytes().all(|b| b.is_ascii_digit()) {
            v = ensure_mac(st, &v);
        }
        if is_disk_key(k) {
            v = allocate_disk(st, vmid, k, &v, &config)?;
            config.insert(k.clone(), v.clone());
        }
        if k == "template" {
            return Err(ApiError::param(k, "use the template endpoint"));
        }
        sets.push((k.clone(), v));
    }
    let deletes: Vec<String> = req
        .arg("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for d in &deletes {
        if sets.iter().any(|(k, _)| k == d) {
            return Err(ApiError::param(
                "delete",
                &format!("cannot set and delete '{d}' at the same time"),
            ));
        }
    }
    // Like PVE: a disk that is deleted or replaced by another volume stays as `unusedN`;
    // deleting `unusedN` destroys the volume; CD-ROM and cloud-init drives just go.
    let before = st.vms[&vmid].config.clone();
    let mut detached: Vec<(String, u64)> = Vec::new();
    let mut reattached: Vec<String> = Vec::new();
    let mut destroyed: Vec<String> = Vec::new();
    for (k, v) in &sets {
        if !is_disk_key(k) {
            continue;
        }
        let new_vol = v.split(',').next().unwrap_or("");
        if let Some(old) = before.get(k).and_then(|o| detachable(o))
            && old.0 != new_vol
        {
            detached.push(old);
        }
        reattached.extend(
            before
                .iter()
                .filter(|(uk, uv)| is_unused_key(uk) && uv.split(',').next() == Some(new_vol))
                .map(|(uk, _)| uk.clone()),
        );
    }
    for d in &deletes {
        if is_disk_key(d) {
            detached.extend(before.get(d).and_then(|o| detachable(o)));
        } else if is_unused_key(d)
            && let Some(v) = before.get(d)
        {
            destroyed.push(v.split(',').next().unwrap_or("").to_string());
        }
    }
    let vm = st
        .vms
        .get_mut(&vmid)
        .ok_or_else(|| ApiError::fail("vm vanished"))?;
    for k in &reattached {
        vm.config.remove(k);
    }
    for (k, v) in sets {
        if running && is_cold_key(&k) {
            vm.pending.insert(k, Some(v));
        } else {
            vm.pending.remove(&k);
            vm.config.insert(k, v);
        }
    }
    for d in deletes {
        if running && is_cold_key(&d) {
            vm.pending.insert(d, None);
        } else {
            vm.pending.remove(&d);
            vm.config.remove(&d);
        }
    }
    if let Some(revert) = req.arg("revert") {
        for k in revert.split(',') {
            vm.pending.remove(k);
        }
    }
    for (volid, _) in &detached {
        let n = (0u32..)
            .find(|n| !vm.config.contains_key(&format!("unused{n}")))
            .unwrap_or_default();
        vm.config.insert(format!("unused{n}"), volid.clone());
    }
    // Unused disks are listed and counted as storage volumes of the VM.
    for key in &reattached {
        if let Some(v) = before.get(key) {
            st.volumes.remove(v.split(',').next().unwrap_or(""));
        }
    }
    for (volid, size) in detached {
        st.volumes.insert(
            volid.clone(),
            Volume {
                storage: volid.split(':').next().unwrap_or("").to_string(),
                volid,
                content: "images".into(),
                format: "raw".into(),
                size,
                ctime: req.now / 1000,
                vmid: Some(vmid),
                notes: None,
                protected: false,
                archive: None,
            },
        );
    }
    for volid in destroyed {
        st.volumes.remove(&volid);
    }
    Ok(())
}

/// `unused0`, `unused1`, ...: disks detached from the VM but still on its storage.
pub(crate) fn is_unused_key(k: &str) -> bool {
    k.strip_prefix("unused")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The volume and size of a drive that becomes `unusedN` when detached: not a CD-ROM, not a
/// cloud-init drive, not empty.
fn detachable(drive: &str) -> Option<(String, u64)> {
    let volid = drive.split(',').next()?;
    if drive.split(',').any(|p| p == "media=cdrom")
        || volid.is_empty()
        || volid == "none"
        || volid.contains("cloudinit")
    {
        return None;
    }
    Some((volid.to_string(), disk_size(drive).unwrap_or(0)))
}

pub(super) fn put_config(st: &mut State, req: &Req) -> ApiResult {
    let vmid = vm_mut(st, req)?.vmid;
    write_config(st, req, vmid, false)?;
    Reply::null()
}

pub(super) fn post_config(st: &mut State, req: &Req) -> ApiResult {
    let vmid = vm_mut(st, req)?.vmid;
    write_config(st, req, vmid, false)?;
    vm_task(st, req, "qmconfig", vmid, 0, vec![], |_, _| {})
}

pub(super) fn resize(st: &mut State, req: &Req) -> ApiResult {
    let disk = req.req_arg("disk")?.to_string();
    let size = req.req_arg("size")?.to_string();
    let skip = skiplock(req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, resize_vm): `size` must match
    // `\+?\d+(\.\d+)?[KMGT]?` (a parameter error); everything else is checked by the
    // `resize` worker under the config lock: digest ("checksum mismatch (file change by
    // other user?)"), lock, "disk '$disk' does not exist", "you can't resize a cdrom",
    // "shrinking disks is not supported"; the same size is a no-op.
    let digits = size.trim_start_matches('+');
    let num = digits.trim_end_matches(['K', 'M', 'G', 'T']);
    let unit_ok = digits.len() - num.len() <= 1;
    let num_ok = {
        let (i, f) = num.split_once('.').unwrap_or((num, "0"));
        !i.is_empty()
            && !f.is_empty()
            && i.bytes().all(|b| b.is_ascii_digit())
            && f.bytes().all(|b| b.is_ascii_digit())
    };
    if !unit_ok || !num_ok {
        return Err(ApiError::param(
            "size",
            "value does not match the regex pattern",
        ));
    }
    let digest = req.arg("digest").map(str::to_string);
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    let value = vm.config.get(&disk).cloned();
    let current = value
        .as_deref()
        .and_then(crate::model::disk_size)
        .unwrap_or(0);
    let new = if let Some(inc) = size.strip_prefix('+') {
        current + parse_size(inc).unwrap_or(0)
    } else {
        parse_size(&size).unwrap_or(0)
    };
    let failure = if digest.is_some_and(|d| d != vm.config_digest()) {
        Some("checksum mismatch (file change by other user?)".to_string())
    } else if let Some(e) = lock_error(vm).filter(|_| !skip) {
        Some(e)
    } else {
        match &value {
            None => Some(format!("disk '{disk}' does not exist")),
            Some(v) if v.contains("media=cdrom") => Some("you can't resize a cdrom".into()),
            Some(_) if new < current => Some("shrinking disks is not supported".into()),
            Some(_) => None,
        }
    };
    if let Some(e) = failure {
        return failed_task(st, req, "resize", vmid, e);
    }
    let value = value.unwrap_or_default();
    let storage = value.split(':').next().unwrap_or("").to_string();
    if let Some(s) = st.storages.get(&storage)
        && st.storage_used(&storage) + (new - current) > s.total
    {
        return failed_task(
            st,
            req,
            "resize",
            vmid,
            format!("not enough free space on storage '{storage}'"),
        );
    }
    if new != current {
        let new_value: Vec<String> = value
            .split(',')
            .filter(|p| !p.starts_with("size="))
            .map(str::to_string)
            .chain(std::iter::once(format!("size={}", format_size(new))))
            .collect();
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config.insert(disk, new_value.join(","));
        }
    }
    vm_task(st, req, "resize", vmid, 0, vec![], |_, _| {})
}

pub(super) fn template(st: &mut State, req: &Req) -> ApiResult {
    let vm = vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, template): checked before the `qmtemplate`
    // worker (HTTP 500) and again inside it.
    check_lock(vm)?;
    if !vm.snapshots.is_empty() {
        return Err(ApiError::fail(
            "unable to create template, because VM contains snapshots",
        ));
    }
    if vm.is_template() && req.arg("disk").is_none() {
        return Err(ApiError::fail("you can't convert a template to a template"));
    }
    if vm.running() {
        return Err(ApiError::fail(
            "you can't convert a VM to template if VM is running",
        ));
    }
    let vmid = vm.vmid;
    let dur = st.timing.task_ms;
    vm_task(st, req, "qmtemplate", vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            return;
        }
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config.insert("template".into(), "1".into());
            for v in vm.config.values_mut() {
                *v = v.replace(&format!("vm-{vmid}-disk"), &format!("base-{vmid}-disk"));
            }
        }
    })
}

pub(super) fn clone_vm(st: &mut State, req: &Req) -> ApiResult {
    let newid: u32 = req
        .req_arg("newid")?
        .parse()
        .ok()
        .filter(|n| *n >= 100)
        .ok_or_else(|| ApiError::param("newid", "invalid VM ID"))?;
    let name = req.arg("name").map(str::to_string);
    let target = req.arg("target").unwrap_or(req.node()).to_string();
    let full = req.arg("full").map(|_| req.flag("full"));
    let storage = req.arg("storage").map(str::to_string);
    let description = req.arg("description").map(str::to_string);
    if !st.nodes.contains_key(&target) {
        return Err(ApiError::param(
            "target",
            &format!("no such cluster node '{target}'"),
        ));
    }
    let src = vm_mut(st, req)?;
    let vmid = src.vmid;
    let is_template = src.is_template();
    // FACT (qemu-server src/PVE/API2/Qemu.pm, clone_vm): checked before the `qmclone` worker:
    // the lock, `storage` only for full clones, and a linked clone needs a base volume
    // ("Linked clone feature is not supported for '$volid' ($opt)").
    check_lock(src)?;
    let full = full.unwrap_or(!is_template);
    if !full && storage.is_some() {
        return Err(ApiError::fail(
            "parameter 'storage' not allowed for linked clones",
        ));
    }
    if !is_template
        && !full
        && let Some((k, volid, _)) = src.disks().next()
    {
        return Err(ApiError::fail(format!(
            "Linked clone feature is not supported for '{volid}' ({k})"
        )));
    }
    let src_config = src.config.clone();
    let src_fw = src.firewall.clone();
    if st.vms.contains_key(&newid) {
        return Err(ApiError::fail(format!(
            "unable to create VM {newid}: config file already exists"
        )));
    }
    let mut config: BTreeMap<String, String> = BTreeMap::new();
    let mut needed: u64 = 0;
    for (k, v) in &src_config {
        if matches!(
            k.as_str(),
            "template" | "lock" | "parent" | "vmgenid" | "meta"
        ) || is_unused_key(k)
        {
            continue;
        }
        let v = if k.starts_with("net") && k[3..].bytes().all(|b| b.is_ascii_digit()) {
            new_mac(st, v)
        } else if is_disk_key(k) && !v.contains("media=cdrom") {
            let (volid, rest) = v.split_once(',').unwrap_or((v.as_str(), ""));
            let src_storage = volid.split(':').next().unwrap_or("local-lvm");
            let target_storage = storage.as_deref().unwrap_or(src_storage);
            let disk_no = volid.rsplit('-').next().unwrap_or("0");
            let newvol = if full {
                needed += crate::model::disk_size(v).unwrap_or(0);
                format!("{target_storage}:vm-{newid}-disk-{disk_no}")
            } else {
                format!(
                    "{src_storage}:{}/vm-{newid}-disk-{disk_no}",
                    volid.split(':').nth(1).unwrap_or("")
                )
            };
            if rest.is_empty() {
                newvol
            } else {
                format!("{newvol},{rest}")
            }
        } else {
            v.clone()
        };
        config.insert(k.clone(), v);
    }
    if let Some(sto) = storage.as_deref().or_else(|| {
        config
            .iter()
            .find(|(k, _)| is_disk_key(k))
            .and_then(|(_, v)| v.split(':').next())
    }) && let Some(s) = st.storages.get(sto)
        && st.storage_used(sto) + needed > s.total
    {
        return Err(ApiError::fail(format!(
            "clone failed: not enough free space on storage '{sto}'"
        )));
    }
    config.insert(
        "name".into(),
        name.unwrap_or_else(|| {
            format!(
                "Copy-of-VM-{}",
                src_config.get("name").cloned().unwrap_or_default()
            )
        }),
    );
    if let Some(d) = description {
        config.insert("description".into(), d);
    }
    config.insert("lock".into(), "clone".into());
    let smbios = format!("uuid={}", fake_uuid(st));
    config.insert("smbios1".into(), smbios);
    st.vms.insert(
        newid,
        Vm {
            firewall: src_fw,
            ..Vm::new(newid, target, config)
        },
    );
    if !is_template && let Some(src) = st.vms.get_mut(&vmid) {
        src.config.insert("lock".into(), "clone".into());
    }
    let dur = st.timing.task_ms * 2;
    let log = vec![
        (
            0,
            format!(
                "create full clone of drive scsi0 ({})",
                src_config
                    .get("scsi0")
                    .map(|s| s.split(',').next().unwrap_or(""))
                    .unwrap_or("")
            ),
        ),
        (
            dur / 2,
            "transferred 16.0 GiB of 32.0 GiB (50.00%)".to_string(),
        ),
        (
            dur,
            "transferred 32.0 GiB of 32.0 GiB (100.00%)".to_string(),
        ),
    ];
    vm_task(st, req, "qmclone", vmid, dur, log, move |st, end| {
        if !is_template && let Some(src) = st.vms.get_mut(&vmid) {
            src.unlock("clone");
        }
        if matches!(end.outcome, Outcome::Error(_)) {
            st.vms.remove(&newid);
            return;
        }
        if let Some(vm) = st.vms.get_mut(&newid) {
            vm.config.remove("lock");
            vm.regenerate_cloudinit();
        }
    })
}

pub(super) fn fake_uuid(st: &mut State) -> String {
    use rand::Rng;
    let b: [u8; 16] = st.rng.random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(super) fn destroy(st: &mut State, req: &Req) -> ApiResult {
    let skip = skiplock(req)?;
    let vm = vm_mut(st, req)?;
    let vmid = vm.vmid;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, destroy_vm): protection and "is running" are
    // early checks (HTTP 500); the lock is checked by destroy_vm inside the `qmdestroy`
    // worker, unless skiplock.
    // FACT (pve-guest-common src/PVE/AbstractConfig.pm, check_protection): "$err_msg -
    // protection mode enabled".
    if vm.config.get("protection").is_some_and(|p| p == "1") {
        return Err(ApiError::fail(format!(
            "can't remove VM {vmid} - protection mode enabled"
        )));
    }
    if vm.running() {
        return Err(ApiError::fail(format!(
            "VM {vmid} is running - destroy failed"
        )));
    }
    if let Some(e) = lock_error(vm).filter(|_| !skip) {
        return failed_task(st, req, "qmdestroy", vmid, e);
    }
    let vm = vm_mut(st, req)?;
    vm.config.insert("lock".into(), "destroyed".into());
    let dur = st.timing.task_ms;
    vm_task(st, req, "qmdestroy", vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            if let Some(vm) = st.vms.get_mut(&vmid) {
                vm.config.remove("lock");
            }
            return;
        }
        st.vms.remove(&vmid);
        st.volumes
            .retain(|_, v| !(v.content == "images" && v.vmid == Some(vmid)));
    })
}

/// `POST /nodes/{node}/qemu`: create a VM, or restore one from a backup archive.
pub(super) fn create(st: &mut State, req: &Req) -> ApiResult {
    let vmid: u32 = req
        .req_arg("vmid")?
        .parse()
        .ok()
        .filter(|n| *n >= 100)
        .ok_or_else(|| ApiError::param("vmid", "invalid VM ID"))?;
    let node = req.node().to_string();
    if let Some(archive) = req.arg("archive") {
        return restore(st, req, vmid, archive.to_string());
    }
    if let Some(existing) = st.vms.get(&vmid) {
        return Err(ApiError::fail(format!(
            "unable to create VM {vmid} - VM {vmid} already exists on node '{}'",
            existing.node
        )));
    }
    let mut vm = Vm::new(vmid, node.clone(), BTreeMap::new());
    vm.config
        .insert("smbios1".into(), format!("uuid={}", fake_uuid(st)));
    vm.config.insert("vmgenid".into(), fake_uuid(st));
    st.vms.insert(vmid, vm);
    if let Err(e) = write_config(st, req, vmid, true) {
        st.vms.remove(&vmid);
        return Err(e);
    }
    let start = req.flag("start");
    if let Some(vm) = st.vms.get_mut(&vmid) {
        vm.config.insert("lock".into(), "create".into());
        vm.config
            .entry("memory".into())
            .or_insert_with(|| "512".into());
    }
    let dur = st.timing.task_ms;
    vm_task(st, req, "qmcreate", vmid, dur, vec![], move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            st.vms.remove(&vmid);
            return;
        }
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config.remove("lock");
            vm.regenerate_cloudinit();
            if start {
                vm.started_ms = Some(end.at_ms);
            }
        }
    })
}

fn restore(st: &mut State, req: &Req, vmid: u32, archive: String) -> ApiResult {
    let node = req.node().to_string();
    let force = req.flag("force");
    let unique = req.flag("unique");
    let target_storage = req.arg("storage").map(str::to_string);
    let vol = st
        .volumes
        .get(&archive)
        .filter(|v| v.content == "backup")
        .ok_or_else(|| ApiError::fail(format!("volume '{archive}' does not exist")))?;
    let arch = vol
        .archive
        .clone()
        .ok_or_else(|| ApiError::fail(format!("unable to read archive '{archive}'")))?;
    if let Some(existing) = st.vms.get(&vmid) {
        if !force {
            return Err(ApiError::fail(format!(
                "unable to restore VM {vmid} - VM {vmid} already exists on node '{}'",
                existing.node
            )));
        }
        check_lock(existing)?;
        if existing.running() {
            return Err(ApiError::fail(format!(
                "unable to restore VM {vmid} - VM is running"
            )));
        }
        if existing.node != node {
            return Err(ApiError::fail(format!(
                "unable to restore VM {vmid} - VM {vmid} already exists on node '{}'",
                existing.node
            )));
        }
    }
    // Overrides: non-disk options sent with the request win over the archive's.
    let overrides: Vec<(String, String)> = req
        .args
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()) && !is_disk_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let placeholder = st
        .vms
        .entry(vmid)
        .or_insert_with(|| Vm::new(vmid, node.clone(), BTreeMap::new()));
    placeholder.config.insert("lock".into(), "create".into());
    let dur = st.timing.backup_ms;
    let log = vec![
        (
            0,
            format!(
                "restore vma archive: zstd -q -d -c {archive} | vma extract -v -r /var/tmp/vzdumptmp.fifo - /var/tmp/vzdumptmp"
            ),
        ),
        (
            dur / 2,
            "progress 50% (read 17179869184 bytes, duration 4 sec)".to_string(),
        ),
        (
            dur,
            "progress 100% (read 34359738368 bytes, duration 8 sec)".to_string(),
        ),
    ];
    let start = req.flag("start");
    vm_task(st, req, "qmrestore", vmid, dur, log, move |st, end| {
        if matches!(end.outcome, Outcome::Error(_)) {
            if let Some(vm) = st.vms.get_mut(&vmid) {
                if vm.config.len() <= 1 {
                    st.vms.remove(&vmid);
                } else {
                    vm.config.remove("lock");
                }
            }
            return;
        }
        let mut config: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &arch.config {
            if matches!(k.as_str(), "lock" | "parent") || is_unused_key(k) {
                continue;
            }
            if is_disk_key(k) && v.contains("backup=0") {
                continue; // not in the archive: the disk vanishes
            }
            let mut v = v.clone();
            if is_disk_key(k) && !v.contains("media=cdrom") {
                let (volid, rest) = v.split_once(',').unwrap_or((v.as_str(), ""));
                let sto = target_storage
                    .clone()
                    .unwrap_or_else(|| volid.split(':').next().unwrap_or("local-lvm").to_string());
                let disk_no = volid.rsplit('-').next().unwrap_or("0");
                let nv = format!("{sto}:vm-{vmid}-disk-{disk_no}");
                v = if rest.is_empty() {
                    nv
                } else {
                    format!("{nv},{rest}")
                };
            }
            config.insert(k.clone(), v);
        }
        for (k, v) in &overrides {
            config.insert(k.clone(), v.clone());
        }
        // FACT (qemu-server src/PVE/QemuServer.pm, restore_update_config_line): `vmgenid` is
        // always regenerated; only with `unique` do the NICs get new MACs and smbios1 a new
        // UUID (without it the archive's MACs are kept).
        if config.get("vmgenid").is_some_and(|g| g != "0") {
            let g = fake_uuid(st);
            config.insert("vmgenid".into(), g);
        }
        if unique {
            let nets: Vec<String> = config
                .keys()
                .filter(|k| k.starts_with("net"))
                .cloned()
                .collect();
            for k in nets {
                let nv = new_mac(st, &config[&k]);
                config.insert(k, nv);
            }
            let u = fake_uuid(st);
            config.insert("smbios1".into(), format!("uuid={u}"));
        }
        // The old config's unused disks are destroyed with it.
        st.volumes
            .retain(|_, v| !(v.content == "images" && v.vmid == Some(vmid)));
        if let Some(vm) = st.vms.get_mut(&vmid) {
            vm.config = config;
            vm.pending.clear();
            vm.snapshots.clear();
            vm.firewall = arch.firewall.clone();
            vm.regenerate_cloudinit();
            if start {
                vm.started_ms = Some(end.at_ms);
            }
        }
    })
}

pub(super) fn rrddata(st: &mut State, req: &Req) -> ApiResult {
    let timeframe = req.req_arg("timeframe")?;
    let step: u64 = match timeframe {
        "hour" => 60,
        "day" => 1800,
        "week" => 10800,
        "month" => 43200,
        "year" => 604_800,
        other => {
            return Err(ApiError::param(
                "timeframe",
                &format!(
                    "value '{other}' does not have a value in the enumeration 'hour, day, week, month, year'"
                ),
            ));
        }
    };
    let cf_max = match req.arg("cf").unwrap_or("AVERAGE") {
        "AVERAGE" => false,
        "MAX" => true,
        other => {
            return Err(ApiError::param(
                "cf",
                &format!("value '{other}' does not have a value in the enumeration 'AVERAGE, MAX'"),
            ));
        }
    };
    let vm = vm_mut(st, req)?;
    let v = vm.vmid as u64;
    let maxmem = vm.maxmem();
    let maxcpu = vm.cpus();
    let maxdisk = vm.maxdisk();
    let running = vm.running();
    let end = req.now_s() / step * step;
    let rows: Vec<Value> = (0..70u64)
        .rev()
        .map(|i| {
            let t = end - i * step;
            // FACT (recorded rrddata of a stopped VM, proxmox-api tests/fixtures/real): a
            // stopped VM's rows carry only time, maxcpu, maxmem, maxdisk and disk.
            if !running {
                return json!({
                    "time": t, "maxcpu": maxcpu, "maxmem": maxmem, "maxdisk": maxdisk, "disk": 0,
                });
            }
            let bump = if cf_max { 1.4 } else { 1.0 };
            let day_wave =
                0.5 + 0.5 * ((t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU).sin();
            let cpu = ((0.03 + 0.25 * noise(v, 1, 0) * day_wave + 0.05 * noise(v, 11, t)) * bump)
                .min(1.0);
            let mem = ((0.3 + 0.4 * noise(v, 3, 0) + 0.1 * noise(v, 13, t)) * maxmem as f64)
                .min(maxmem as f64);
            let io = |k: u64, scale: f64| scale * (0.2 + noise(v, k, t)) * day_wave.max(0.1) * bump;
            // FACT (recorded PVE 9.2 rrddata, proxmox-api tests/fixtures/real): rows of a
            // running VM also carry `memhost` and the six pressure-stall averages.
            json!({
                "time": t, "cpu": cpu, "maxcpu": maxcpu, "mem": mem, "maxmem": maxmem,
                "memhost": mem * 1.15, "disk": 0, "maxdisk": maxdisk,
                "diskread": io(21, 2.0e6), "diskwrite": io(22, 1.2e6),
                "netin": io(23, 4.0e5), "netout": io(24, 2.5e5),
                "pressurecpusome": 0, "pressurecpufull": 0, "pressureiosome": 0,
                "pressureiofull": 0, "pressurememorysome": 0, "pressurememoryfull": 0,
            })
        })
        .collect();
    Reply::json(Value::Array(rows))
}

/// Is `k` a cloud-init key (re-exported for the guest module).
pub(super) fn ci_key(k: &str) -> bool {
    is_cloudinit_key(k)
}

/// `GET /nodes/{node}/qemu/{vmid}`: the directory index of a VM.
pub(super) fn index(st: &mut State, req: &Req) -> ApiResult {
    vm_mut(st, req)?;
    let dirs = [
        "config",
        "pending",
        "status",
        "snapshot",
        "firewall",
        "agent",
        "rrddata",
        "cloudinit",
        "vncproxy",
        "vncwebsocket",
        "clone",
        "resize",
        "template",
    ];
    Reply::json(Value::Array(
        dirs.iter().map(|d| json!({ "subdir": d })).collect(),
    ))
}

/// `GET /nodes/{node}/qemu/{vmid}/status`: the directory index of the power actions.
pub(super) fn status_index(st: &mut State, req: &Req) -> ApiResult {
    vm_mut(st, req)?;
    // FACT (qemu-server src/PVE/API2/Qemu.pm, vmcmdidx): the index lists these seven.
    let dirs = [
        "current", "start", "stop", "reset", "shutdown", "suspend", "reboot",
    ];
    Reply::json(Value::Array(
        dirs.iter().map(|d| json!({ "subdir": d })).collect(),
    ))
}
