//! Cluster-wide and node-level endpoints: version, nodes, resources, tasks.

use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, ApiResult, Reply, Req};
use crate::model::{Node, State};

/// Memory in use on node `n`: its running guests plus 2 GiB for the host.
fn node_mem_used(st: &State, n: &Node, now: u64) -> u64 {
    st.vms
        .values()
        .filter(|vm| vm.node == n.name && vm.running())
        .map(|vm| vm.figures(now).mem)
        .sum::<u64>()
        + (2u64 << 30)
}

/// Node `n`'s CPU load (a fraction), changing every 10 s.
fn node_cpu(n: &Node, now: u64) -> f64 {
    0.05 + crate::model::noise(n.cpus as u64, 9, now / 10_000) * 0.2
}

pub(super) fn version(_st: &mut State, _req: &Req) -> ApiResult {
    Reply::json(json!({
        "version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d", "console": "html5",
    }))
}

pub(super) fn nodes(st: &mut State, req: &Req) -> ApiResult {
    let mut out = Vec::new();
    for n in st.nodes.values() {
        // FACT (recorded /nodes answer, proxmox-api tests/fixtures/real): rows carry `id`
        // (node/NAME) and `type` (node), and when online also the root disk figures.
        let mut v = json!({
            "node": n.name, "id": format!("node/{}", n.name), "type": "node",
            "status": if n.online { "online" } else { "offline" }, "level": "",
        });
        if n.online {
            v["disk"] = json!(12u64 << 30);
            v["maxdisk"] = json!(100u64 << 30);
            v["cpu"] = json!(node_cpu(n, req.now));
            v["maxcpu"] = json!(n.cpus);
            v["mem"] = json!(node_mem_used(st, n, req.now));
            v["maxmem"] = json!(n.maxmem);
            v["uptime"] = json!(req.now.saturating_sub(n.boot_ms) / 1000);
            v["ssl_fingerprint"] = json!(st.fingerprint);
        }
        out.push(v);
    }
    Reply::json(Value::Array(out))
}

pub(super) fn node_status(st: &mut State, req: &Req) -> ApiResult {
    let n = &st.nodes[req.node()];
    let used = node_mem_used(st, n, req.now);
    let root_total: u64 = 100 << 30;
    Reply::json(json!({
        "cpu": node_cpu(n, req.now),
        "cpuinfo": { "cores": n.cpus / 2, "cpus": n.cpus, "model": "AMD EPYC 7402P 24-Core Processor", "sockets": 1 },
        "memory": { "total": n.maxmem, "used": used.min(n.maxmem), "free": n.maxmem.saturating_sub(used), "available": n.maxmem.saturating_sub(used) },
        "rootfs": { "total": root_total, "used": 12u64 << 30, "free": root_total - (12u64 << 30), "avail": root_total - (12u64 << 30) },
        "loadavg": ["0.42", "0.37", "0.33"],
        "uptime": req.now.saturating_sub(n.boot_ms) / 1000,
        "pveversion": "pve-manager/8.4.1/2a5fa54a8503f96d",
        "kversion": "Linux 6.8.12-9-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9",
        "current-kernel": { "machine": "x86_64", "release": "6.8.12-9-pve", "sysname": "Linux", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9" },
        "boot-info": { "mode": "efi", "secureboot": false },
    }))
}

pub(super) fn cluster_status(st: &mut State, _req: &Req) -> ApiResult {
    let mut out = vec![json!({
        "type": "cluster", "id": "cluster", "name": st.cluster_name, "nodes": st.nodes.len(),
        "quorate": true, "version": 4,
    })];
    for (i, n) in st.nodes.values().enumerate() {
        out.push(json!({
            "type": "node", "id": format!("node/{}", n.name), "name": n.name, "nodeid": i + 1,
            "online": n.online, "local": i == 0, "ip": format!("10.0.0.{}", i + 11), "level": "",
        }));
    }
    Reply::json(Value::Array(out))
}

pub(super) fn nextid(st: &mut State, req: &Req) -> ApiResult {
    if let Some(v) = req.int("vmid")? {
        if st.vms.contains_key(&(v as u32)) {
            return Err(ApiError::param("vmid", &format!("VM {v} already exists")));
        }
        return Reply::json(json!(v));
    }
    let mut id = 100u32;
    while st.vms.contains_key(&id) {
        id += 1;
    }
    // Real PVE serialises this as a string; the schema declares an integer, which we follow.
    Reply::json(json!(id))
}

#[derive(Serialize)]
struct QemuRow<'a> {
    id: QemuId,
    #[serde(rename = "type")]
    kind: &'static str,
    vmid: u32,
    node: &'a str,
    name: std::borrow::Cow<'a, str>,
    status: &'static str,
    template: u8,
    cpu: f64,
    maxcpu: u64,
    mem: u64,
    maxmem: u64,
    /// Host memory the guest uses (PVE 9; recorded in proxmox-api tests/fixtures/real).
    memhost: u64,
    disk: u64,
    maxdisk: u64,
    netin: u64,
    netout: u64,
    diskread: u64,
    diskwrite: u64,
    uptime: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a str>,
}

/// `qemu/VMID`, written without an intermediate allocation.
struct QemuId(u32);

impl Serialize for QemuId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("qemu/{}", self.0))
    }
}

/// `GET /cluster/resources`: serialised directly (the hot path for 10,000 VMs).
pub(super) fn resources(st: &mut State, req: &Req) -> ApiResult {
    let filter = req.arg("type");
    if let Some(f) = filter
        && !matches!(f, "vm" | "storage" | "node" | "sdn")
    {
        return Err(ApiError::param(
            "type",
            &format!(
                "value '{f}' does not have a value in the enumeration 'vm, storage, node, sdn'"
            ),
        ));
    }
    // Like PVE (which answers from a status cache), the list is rebuilt at most once per second
    // unless something changed.
    let key = (st.generation, req.now_s(), filter.map(str::to_string));
    if let Some((k, bytes)) = &st.resources_cache
        && *k == key
    {
        return Ok(Reply::Raw(bytes.clone()));
    }
    let mut out: Vec<u8> = Vec::with_capacity(st.vms.len() * 300 + 1024);
    out.extend_from_slice(b"{\"data\":[");
    let mut first = true;
    let mut push = |out: &mut Vec<u8>, v: &dyn erased::Ser| {
        if !first {
            out.push(b',');
        }
        first = false;
        v.write(out);
    };
    if filter.is_none() || filter == Some("node") {
        for n in st.nodes.values() {
            let mut v = json!({
                "id": format!("node/{}", n.name), "type": "node", "node": n.name,
                "status": if n.online { "online" } else { "offline" },
                "maxcpu": n.cpus, "maxmem": n.maxmem, "cpu": if n.online { 0.08 } else { 0.0 },
                "mem": if n.online { 4u64 << 30 } else { 0 }, "disk": 12u64 << 30, "maxdisk": 100u64 << 30,
                "uptime": if n.online { req.now.saturating_sub(n.boot_ms) / 1000 } else { 0 }, "level": "",
            });
            // FACT (recorded /cluster/resources, proxmox-api tests/fixtures/real): online
            // node rows carry `cgroup-mode` (2: unified cgroup v2 hierarchy).
            if n.online {
                v["cgroup-mode"] = json!(2);
            }
            push(&mut out, &v);
        }
    }
    if filter.is_none() || filter == Some("storage") {
        for n in st.nodes.values() {
            for s in st.storages.values() {
                let used = st.storage_used(&s.name);
                let v = json!({
                    "id": format!("storage/{}/{}", n.name, s.name), "type": "storage", "node": n.name,
                    "storage": s.name, "status": if n.online { "available" } else { "unknown" },
                    "content": s.content, "plugintype": s.kind, "shared": if s.shared { 1 } else { 0 },
                    "disk": used, "maxdisk": s.total,
                });
                push(&mut out, &v);
            }
        }
    }
    if filter.is_none() || filter == Some("vm") {
        let offline: Vec<&str> = st
            .nodes
            .values()
            .filter(|n| !n.online)
            .map(|n| n.name.as_str())
            .collect();
        for vm in st.vms.values() {
            let online = !offline.contains(&vm.node.as_str()) && st.nodes.contains_key(&vm.node);
            let f = vm.figures(req.now);
            let row = QemuRow {
                id: QemuId(vm.vmid),
                kind: "qemu",
                vmid: vm.vmid,
                node: &vm.node,
                name: match vm.config.get("name") {
                    Some(n) => std::borrow::Cow::Borrowed(n.as_str()),
                    None => std::borrow::Cow::Owned(vm.name()),
                },
                status: if !online {
                    "unknown"
                } else if vm.running() {
                    "running"
                } else {
                    "stopped"
                },
                template: u8::from(vm.is_template()),
                cpu: f.cpu,
                maxcpu: vm.cpus(),
                mem: f.mem,
                maxmem: vm.maxmem(),
                memhost: f.mem + if vm.running() { 60 << 20 } else { 0 },
                disk: f.disk,
                maxdisk: vm.maxdisk(),
                netin: f.netin,
                netout: f.netout,
                diskread: f.diskread,
                diskwrite: f.diskwrite,
                uptime: f.uptime,
                lock: vm.lock(),
                tags: vm.config.get("tags").map(String::as_str),
            };
            push(&mut out, &row);
        }
    }
    out.extend_from_slice(b"]}");
    let bytes = bytes::Bytes::from(out);
    st.resources_cache = Some((key, bytes.clone()));
    Ok(Reply::Raw(bytes))
}

/// Minimal type erasure so rows of different types share one writer.
mod erased {
    pub(super) trait Ser {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Ser for T {
        fn write(&self, out: &mut Vec<u8>) {
            let _ = serde_json::to_writer(out, self);
        }
    }
}

fn find_task<'a>(st: &'a State, req: &Req) -> Result<&'a crate::model::Task, ApiError> {
    let upid = req.p("upid");
    st.task_index
        .get(upid)
        .map(|&i| &st.tasks[i])
        .filter(|t| t.node == req.node())
        .ok_or_else(|| ApiError::fail(format!("unable to parse worker upid '{upid}'")))
}

pub(super) fn task_status(st: &mut State, req: &Req) -> ApiResult {
    let lag = st.faults.task_status_lag.as_millis() as u64;
    let t = find_task(st, req)?;
    if req.now < t.start_ms + lag {
        return Err(ApiError::status(
            400,
            format!(
                "unable to open file '/var/log/pve/tasks/active/{}' - No such file or directory",
                t.upid
            ),
        ));
    }
    Reply::json(st.task_json(t))
}

pub(super) fn task_log(st: &mut State, req: &Req) -> ApiResult {
    let t = find_task(st, req)?;
    let start = req.int("start")?.unwrap_or(0).max(0) as usize;
    let limit = req.int("limit")?.unwrap_or(50).max(0) as usize;
    let lines: Vec<Value> = t
        .visible_log(req.now)
        .into_iter()
        .enumerate()
        .skip(start)
        .take(limit)
        .map(|(i, l)| json!({ "n": i + 1, "t": l }))
        .collect();
    Reply::json(Value::Array(lines))
}

pub(super) fn task_stop(st: &mut State, req: &Req) -> ApiResult {
    let upid = req.p("upid").to_string();
    let idx = *st
        .task_index
        .get(&upid)
        .ok_or_else(|| ApiError::fail(format!("unable to parse worker upid '{upid}'")))?;
    if !st.tasks[idx].finished {
        st.tasks[idx].outcome = crate::model::Outcome::Error("interrupted by signal".into());
        st.tasks[idx].end_ms = req.now;
        st.advance(req.now);
    }
    Reply::null()
}

pub(super) fn task_list(st: &mut State, req: &Req) -> ApiResult {
    let start = req.int("start")?.unwrap_or(0).max(0) as usize;
    let limit = req.int("limit")?.unwrap_or(50).max(0) as usize;
    let vmid = req.arg("vmid");
    let typefilter = req.arg("typefilter");
    let errors = req.flag("errors");
    let source = req.arg("source").unwrap_or("archive");
    let out: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|t| t.node == req.node())
        .filter(|t| vmid.is_none_or(|v| t.id == v))
        .filter(|t| typefilter.is_none_or(|f| t.kind == f))
        .filter(|t| !errors || matches!(t.outcome, crate::model::Outcome::Error(_)) && t.finished)
        .filter(|t| match source {
            "active" => !t.finished,
            "all" => true,
            _ => t.finished,
        })
        .skip(start)
        .take(limit)
        .map(|t| {
            let mut v = json!({
                "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
                "starttime": t.starttime, "type": t.kind, "id": t.id,
            });
            crate::model::split_task_user(&mut v, &t.user);
            if t.finished {
                v["status"] = json!(t.outcome.exitstatus());
                v["endtime"] = json!(t.end_ms / 1000);
            }
            v
        })
        .collect();
    Reply::json(Value::Array(out))
}
