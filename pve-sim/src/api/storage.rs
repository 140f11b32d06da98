//! Storages, their content, and `vzdump` backups.

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Reply, Req};
use crate::model::{Archive, Outcome, State, Volume, archive_name};

fn storage_json(st: &State, name: &str) -> Value {
    let s = &st.storages[name];
    let used = st.storage_used(name);
    json!({
        "storage": s.name, "type": s.kind, "content": s.content, "active": 1, "enabled": 1,
        "shared": if s.shared { 1 } else { 0 }, "total": s.total, "used": used,
        "avail": s.total.saturating_sub(used), "used_fraction": used as f64 / s.total.max(1) as f64,
    })
}

pub(super) fn list(st: &mut State, req: &Req) -> ApiResult {
    let content = req.arg("content");
    let only = req.arg("storage");
    let out: Vec<Value> = st
        .storages
        .values()
        .filter(|s| content.is_none_or(|c| c.split(',').any(|c| s.has_content(c))))
        .filter(|s| only.is_none_or(|o| o == s.name))
        .map(|s| storage_json(st, &s.name))
        .collect();
    Reply::json(Value::Array(out))
}

fn storage_name(st: &State, req: &Req) -> Result<String, ApiError> {
    let name = req.p("storage");
    if st.storages.contains_key(name) {
        Ok(name.to_string())
    } else {
        Err(ApiError::fail(format!("storage '{name}' does not exist")))
    }
}

pub(super) fn status(st: &mut State, req: &Req) -> ApiResult {
    let name = storage_name(st, req)?;
    Reply::json(storage_json(st, &name))
}

fn volume_json(v: &Volume) -> Value {
    let mut o = json!({
        "volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime,
    });
    if let Some(id) = v.vmid {
        o["vmid"] = json!(id);
    }
    if let Some(n) = &v.notes {
        o["notes"] = json!(n);
    }
    if v.content == "backup" {
        o["protected"] = json!(if v.protected { 1 } else { 0 });
        o["subtype"] = json!("qemu");
    }
    o
}

pub(super) fn content(st: &mut State, req: &Req) -> ApiResult {
    let name = storage_name(st, req)?;
    let content = req.arg("content");
    let vmid: Option<u32> = req.int("vmid")?.map(|v| v as u32);
    let mut out: Vec<Value> = st
        .volumes
        .values()
        .filter(|v| v.storage == name)
        .filter(|v| content.is_none_or(|c| v.content == c))
        .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
        .map(volume_json)
        .collect();
    if content.is_none_or(|c| c == "images") && st.storages[&name].has_content("images") {
        for vm in st
            .vms
            .values()
            .filter(|vm| vmid.is_none_or(|id| id == vm.vmid))
        {
            for (_, volid, size) in vm.disks() {
                if volid.split(':').next() == Some(name.as_str()) {
                    out.push(json!({
                        "volid": volid, "content": "images", "format": "raw", "size": size,
                        "vmid": vm.vmid, "used": size / 3,
                    }));
                }
            }
        }
    }
    Reply::json(Value::Array(out))
}

fn volid_of(req: &Req, storage: &str) -> String {
    let v = req.p("volume");
    if v.contains(':') {
        v.to_string()
    } else {
        format!("{storage}:{v}")
    }
}

pub(super) fn volume_get(st: &mut State, req: &Req) -> ApiResult {
    let name = storage_name(st, req)?;
    let volid = volid_of(req, &name);
    let v = st
        .volumes
        .get(&volid)
        .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
    let file = volid.split_once(':').map(|x| x.1).unwrap_or("");
    let mut o = json!({
        "path": format!("/mnt/pve/{name}/{}", file.replace("backup/", "dump/").replace("iso/", "template/iso/")),
        "size": v.size, "used": v.size, "format": v.format,
    });
    if let Some(n) = &v.notes {
        o["notes"] = json!(n);
    }
    if v.content == "backup" {
        o["protected"] = json!(if v.protected { 1 } else { 0 });
    }
    Reply::json(o)
}

pub(super) fn volume_update(st: &mut State, req: &Req) -> ApiResult {
    let name = storage_name(st, req)?;
    let volid = volid_of(req, &name);
    let notes = req.args.get("notes").cloned();
    let protected = req.arg("protected").map(|_| req.flag("protected"));
    let v = st
        .volumes
        .get_mut(&volid)
        .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
    if v.content != "backup" && (notes.is_some() || protected.is_some()) {
        return Err(ApiError::fail(
            "unable to change attributes of non-backup volume",
        ));
    }
    if let Some(n) = notes {
        v.notes = if n.is_empty() { None } else { Some(n) };
    }
    if let Some(p) = protected {
        v.protected = p;
    }
    Reply::null()
}

pub(super) fn volume_delete(st: &mut State, req: &Req) -> ApiResult {
    let name = storage_name(st, req)?;
    let volid = volid_of(req, &name);
    let Some(v) = st.volumes.get(&volid) else {
        if let Some(vm) = st
            .vms
            .values()
            .find(|vm| vm.disks().any(|(_, id, _)| id == volid))
        {
            return Err(ApiError::fail(format!(
                "unable to delete volume '{volid}' - volume is used by VM {}",
                vm.vmid
            )));
        }
        return Err(ApiError::fail(format!("volume '{volid}' does not exist")));
    };
    if v.protected {
        return Err(ApiError::fail(format!(
            "cannot delete protected volume '{volid}'"
        )));
    }
    // PVE forks this worker without an id (`UPID:node:...:imgdel::user@realm:`); the volid
    // contains `:` and would break UPID parsing.
    let upid = st.spawn_task(
        req.now,
        req.node(),
        "imgdel",
        "",
        &req.user,
        0,
        vec![],
        move |st, end| {
            if !matches!(end.outcome, Outcome::Error(_)) {
                st.volumes.remove(&volid);
                end.log.push(format!("Removed volume '{volid}'"));
            }
        },
    );
    Reply::json(json!(upid))
}

/// Render a `notes-template` the way vzdump does, or say why it cannot be.
pub(crate) fn render_notes(
    tpl: &str,
    name: &str,
    vmid: u32,
    node: &str,
    cluster: &str,
) -> Result<String, String> {
    // FACT (pve-manager PVE/VZDump.pm, generate_notes): escapes first (`\\` is a backslash,
    // `\n` a newline, anything else dies "unexpected escape character 'c'"), then
    // {{cluster}}, {{guestname}}, {{node}} and {{vmid}} are replaced; any other {{name}} dies
    // "unexpected variable name 'name'".
    let mut out = String::with_capacity(tpl.len());
    let mut chars = tpl.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => return Err(format!("unexpected escape character '{other}'")),
            None => out.push('\\'),
        }
    }
    let vmid = vmid.to_string();
    let mut rendered = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("{{") {
        rendered.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let var = after.find("}}").map(|j| &after[..j]);
        let value = match var {
            Some("cluster") => Some(cluster),
            Some("guestname") => Some(name),
            Some("node") => Some(node),
            Some("vmid") => Some(vmid.as_str()),
            _ => None,
        };
        match (var, value) {
            (Some(v), Some(val)) => {
                rendered.push_str(val);
                rest = &after[v.len() + 2..];
            }
            _ => {
                rendered.push_str("{{");
                rest = after;
            }
        }
    }
    rendered.push_str(rest);
    // The leftover check runs on the substituted text, like PVE's.
    let mut scan = rendered.as_str();
    while let Some(i) = scan.find("{{") {
        let after = &scan[i + 2..];
        if let Some(j) = after.find("}}") {
            let v = &after[..j];
            if !v.is_empty() && !v.contains(char::is_whitespace) && !v.contains('}') {
                return Err(format!("unexpected variable name '{v}'"));
            }
        }
        scan = after;
    }
    Ok(rendered)
}

/// `POST /nodes/{node}/vzdump`.
pub(super) fn vzdump(st: &mut State, req: &Req) -> ApiResult {
    let node = req.node().to_string();
    let vmids: Vec<u32> = if req.flag("all") {
        st.vms
            .values()
            .filter(|vm| vm.node == node && !vm.is_template())
            .map(|vm| vm.vmid)
            .collect()
    } else {
        let list = req.req_arg("vmid")?;
        list.split([',', ' ', ';'])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| ApiError::param("vmid", &format!("invalid VM ID '{s}'")))
            })
            .collect::<Result<_, _>>()?
    };
    let storage = match req.arg("storage") {
        Some(s) => s.to_string(),
        None => st
            .storages
            .values()
            .find(|s| s.has_content("backup"))
            .map(|s| s.name.clone())
            .ok_or_else(|| ApiError::fail("no backup storage configured"))?,
    };
    let sto = st
        .storages
        .get(&storage)
        .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
    if !sto.has_content("backup") {
        return Err(ApiError::fail(format!(
            "storage '{storage}' does not support backups"
        )));
    }
    for id in &vmids {
        match st.vms.get(id) {
            Some(vm) if vm.node == node => {}
            _ => {
                return Err(ApiError::fail(format!(
                    "guest {id} is not on node '{node}'"
                )));
            }
        }
    }
    let mode = req.arg("mode").unwrap_or("snapshot").to_string();
    // FACT (pve-guest-common src/PVE/VZDump/Common.pm, compress): enum 0, 1, gzip, lzo,
    // zstd with default 0 (no compression); `1` means lzo (pve-manager PVE/VZDump.pm,
    // compressor_info).
    let ext = match req.arg("compress").unwrap_or("0") {
        "0" => "vma",
        "1" | "lzo" => "vma.lzo",
        "gzip" => "vma.gz",
        "zstd" => "vma.zst",
        other => {
            return Err(ApiError::param(
                "compress",
                &format!(
                    "value '{other}' does not have a value in the enumeration '0, 1, gzip, lzo, zstd'"
                ),
            ));
        }
    };
    let notes_tpl = req.arg("notes-template").map(str::to_string);
    // FACT (pve-guest-common src/PVE/VZDump/Common.pm, notes-template): `requires =>
    // 'storage'` and `maxLength => 1024`.
    if notes_tpl.is_some() && req.arg("storage").is_none() {
        return Err(ApiError::param(
            "storage",
            "missing property - 'notes-template' requires this property",
        ));
    }
    if notes_tpl.as_deref().is_some_and(|t| t.len() > 1024) {
        return Err(ApiError::param(
            "notes-template",
            "value may only be 1024 characters long",
        ));
    }
    let protected = req.flag("protected");
    let start_s = req.now_s();
    let dur = st.timing.backup_ms;
    let mut log: Vec<(u64, String)> = vec![(
        0,
        format!(
            "INFO: starting new backup job: vzdump {} --storage {storage} --mode {mode}",
            vmids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )];
    // Lock the guests that can be backed up; locked ones fail inside the task as on PVE.
    let mut locked_out: Vec<(u32, String)> = Vec::new();
    let mut plan: Vec<(u32, String, u64, String)> = Vec::new();
    let per = dur / vmids.len().max(1) as u64;
    for (i, id) in vmids.iter().enumerate() {
        let vm = st
            .vms
            .get_mut(id)
            .ok_or_else(|| ApiError::fail("vanished"))?;
        let base = per * i as u64;
        log.push((base, format!("INFO: Starting Backup of VM {id} (qemu)")));
        if let Some(l) = vm.lock() {
            log.push((
                base,
                format!("ERROR: Backup of VM {id} failed - VM is locked ({l})"),
            ));
            locked_out.push((*id, l.to_string()));
            continue;
        }
        vm.config.insert("lock".into(), "backup".into());
        let name = archive_name(*id, start_s + (base / 1000), ext);
        let size = (vm.maxdisk() as f64 * (0.15 + 0.2 * crate::model::noise(*id as u64, 31, 0)))
            as u64
            + (64 << 20);
        log.push((base, format!("INFO: VM Name: {}", vm.name())));
        log.push((
            base,
            format!("INFO: creating vzdump archive '/mnt/pve/{storage}/dump/{name}'"),
        ));
        for pct in [10u64, 25, 50, 75, 100] {
            log.push((
                base + per * pct / 100,
                format!(
                    "INFO: {pct:>3}% ({} of {})",
                    gib(vm.maxdisk() * pct / 100),
                    gib(vm.maxdisk())
                ),
            ));
        }
        plan.push((*id, name, size, vm.name()));
    }
    let cluster = st.cluster_name.clone();
    let id_field = if vmids.len() == 1 {
        vmids[0].to_string()
    } else {
        String::new()
    };
    let node2 = node.clone();
    let upid = st.spawn_task(req.now, &node, "vzdump", &id_field, &req.user, dur, log, move |st, end| {
        let failed = matches!(end.outcome, Outcome::Error(_));
        let mut errors = locked_out.len();
        let mut warnings = 0u32;
        for (vmid, name, size, guestname) in plan {
            if let Some(vm) = st.vms.get_mut(&vmid) {
                vm.unlock("backup");
            }
            if failed {
                continue;
            }
            let total = st.storages.get(&storage).map(|s| s.total).unwrap_or(0);
            if st.storage_used(&storage) + size > total {
                end.log.push(format!("ERROR: Backup of VM {vmid} failed - vma_queue_write: write error - No space left on device"));
                errors += 1;
                continue;
            }
            let Some(vm) = st.vms.get(&vmid) else { continue };
            let mut cfg = vm.config.clone();
            cfg.remove("lock");
            let archive = Archive { config: cfg, firewall: vm.firewall.clone() };
            let volid = format!("{storage}:backup/{name}");
            // FACT (pve-manager PVE/VZDump.pm, exec_backup_task): "adding notes to backup";
            // a template that does not render is a warning ("unable to add notes - ...") and
            // the backup keeps no notes; `protected` is marked after.
            let notes = match notes_tpl.as_deref() {
                Some(t) => {
                    end.log.push("INFO: adding notes to backup".into());
                    match render_notes(t, &guestname, vmid, &node2, &cluster) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            end.log.push(format!("WARN: unable to add notes - {e}"));
                            warnings += 1;
                            None
                        }
                    }
                }
                None => None,
            };
            if protected {
                end.log.push("INFO: marking backup as protected".into());
            }
            st.volumes.insert(volid.clone(), Volume {
                volid,
                storage: storage.clone(),
                content: "backup".into(),
                format: name.split_once('.').map(|x| x.1).unwrap_or("vma.zst").to_string(),
                size,
                ctime: end.at_ms / 1000,
                vmid: Some(vmid),
                notes,
                protected,
                archive: Some(archive),
            });
            end.log.push(format!("INFO: archive file size: {}", gib(size)));
            let secs = (per / 1000).max(1);
            end.log.push(format!(
                "INFO: Finished Backup of VM {vmid} ({:02}:{:02}:{:02})",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            ));
        }
        if failed {
            return;
        }
        if errors > 0 {
            end.log.push("INFO: Backup job finished with errors".into());
            end.outcome = Outcome::Error("job errors".into());
        } else {
            end.log.push("INFO: Backup job finished successfully".into());
            if warnings > 0 && end.outcome == Outcome::Ok {
                end.outcome = Outcome::Warnings(warnings);
            }
        }
    });
    Reply::json(json!(upid))
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::render_notes;
    use proptest::prelude::*;

    fn r(t: &str) -> Result<String, String> {
        render_notes(t, "web-01", 100, "pve1", "prod")
    }

    #[test]
    fn variables_and_escapes_like_vzdump() {
        assert_eq!(
            r("{{guestname}} ({{vmid}}) on {{node}}/{{cluster}}").unwrap(),
            "web-01 (100) on pve1/prod"
        );
        assert_eq!(r(r"a\nb\\c").unwrap(), "a\nb\\c");
        assert_eq!(r("{{ vmid }} {{}}").unwrap(), "{{ vmid }} {{}}");
        assert_eq!(
            r("{{hostname}}").unwrap_err(),
            "unexpected variable name 'hostname'"
        );
        assert_eq!(
            r(r"C:\temp").unwrap_err(),
            "unexpected escape character 't'"
        );
    }

    proptest! {
        #[test]
        fn plain_text_is_kept(s in "[a-zA-Z0-9 .,:;!?()-]{0,64}") {
            prop_assert_eq!(r(&s).unwrap(), s);
        }
    }
}
