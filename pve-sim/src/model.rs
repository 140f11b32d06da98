//! The simulated cluster: plain data plus the rules that advance it in time.
//!
//! Nothing here reads the clock: every function that depends on time takes `now` (milliseconds
//! since the Unix epoch) so tests can reason about it.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::faults::Faults;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node of the simulated cluster.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) online: bool,
    pub(crate) cpus: u32,
    pub(crate) maxmem: u64,
    pub(crate) boot_ms: u64,
}

/// A storage definition (cluster-wide, available on every node).
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    pub(crate) name: String,
    pub(crate) kind: String,
    /// Comma list as PVE writes it: `images,rootdir`, `backup`, `iso,vztmpl`.
    pub(crate) content: String,
    pub(crate) total: u64,
    pub(crate) shared: bool,
}

impl Storage {
    pub(crate) fn has_content(&self, c: &str) -> bool {
        self.content.split(',').any(|x| x == c)
    }
}

/// What a backup archive keeps so it can be restored.
#[derive(Debug, Clone)]
pub(crate) struct Archive {
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) firewall: Firewall,
}

/// A file volume on a storage (backups and ISO images; disk images are derived from configs).
#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) volid: String,
    pub(crate) storage: String,
    pub(crate) content: String,
    pub(crate) format: String,
    pub(crate) size: u64,
    pub(crate) ctime: u64,
    pub(crate) vmid: Option<u32>,
    pub(crate) notes: Option<String>,
    pub(crate) protected: bool,
    pub(crate) archive: Option<Archive>,
}

/// A snapshot of a VM.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) snaptime: u64,
    pub(crate) vmstate: bool,
    pub(crate) parent: Option<String>,
    /// The copied config, plus `vmstate`, `runningmachine` and `runningcpu` when RAM was saved.
    pub(crate) config: BTreeMap<String, String>,
    /// `prepare` while being created, `delete` while being removed (shown in the list).
    pub(crate) snapstate: Option<String>,
}

/// A firewall rule as PVE stores it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rule {
    pub(crate) fields: BTreeMap<String, String>,
}

/// One IP set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct IpSet {
    pub(crate) comment: Option<String>,
    /// cidr -> (comment, nomatch)
    pub(crate) entries: BTreeMap<String, (Option<String>, bool)>,
}

/// A firewall file (`cluster.fw` or `<VMID>.fw`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Firewall {
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) ipsets: BTreeMap<String, IpSet>,
    /// name -> (cidr, comment)
    pub(crate) aliases: BTreeMap<String, (String, Option<String>)>,
    /// Security groups (`[group name] # comment` sections; only `cluster.fw` has them, so
    /// they share the cluster digest as in PVE).
    pub(crate) groups: BTreeMap<String, SecurityGroup>,
}

/// A cluster firewall security group.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SecurityGroup {
    pub(crate) comment: Option<String>,
    pub(crate) rules: Vec<Rule>,
}

impl Firewall {
    /// A digest over the whole file, as PVE uses one digest per firewall file.
    pub(crate) fn digest(&self) -> String {
        let text = format!("{:?}", self);
        let d = Sha256::digest(text.as_bytes());
        hex::encode(d)[..40].to_string()
    }
}

/// A virtual machine.
#[derive(Debug, Clone)]
pub(crate) struct Vm {
    pub(crate) vmid: u32,
    pub(crate) node: String,
    /// The current config, as PVE's config file holds it (including `lock`, `parent`).
    pub(crate) config: BTreeMap<String, String>,
    /// Pending changes: `Some(value)` to set, `None` to delete.
    pub(crate) pending: BTreeMap<String, Option<String>>,
    /// Cloud-init values the generated drive currently holds.
    pub(crate) cloudinit_applied: BTreeMap<String, String>,
    pub(crate) started_ms: Option<u64>,
    pub(crate) pid: u32,
    pub(crate) snapshots: BTreeMap<String, Snapshot>,
    pub(crate) firewall: Firewall,
    /// The guest agent answers (when configured and running).
    pub(crate) agent_responding: bool,
    /// The guest ignores ACPI shutdown requests.
    pub(crate) ignore_shutdown: bool,
    /// A worker holds the config flock (`lock_config`) until this time (ms).
    pub(crate) flock_until: u64,
}

/// Keys that cloud-init owns.
pub(crate) fn is_cloudinit_key(k: &str) -> bool {
    matches!(
        k,
        "ciuser"
            | "cipassword"
            | "nameserver"
            | "searchdomain"
            | "sshkeys"
            | "citype"
            | "ciupgrade"
    ) || k.starts_with("ipconfig")
}

/// Keys that cannot change on a running VM without a restart.
pub(crate) fn is_cold_key(k: &str) -> bool {
    matches!(
        k,
        "cores" | "sockets" | "memory" | "cpu" | "bios" | "machine" | "numa" | "vcpus" | "balloon"
    )
}

/// The file name vzdump gives a backup of `vmid` started at `start_s` (UTC), with extension
/// `ext` (`vma.zst`, ...).
pub(crate) fn archive_name(vmid: u32, start_s: u64, ext: &str) -> String {
    use time::OffsetDateTime;
    let t =
        OffsetDateTime::from_unix_timestamp(start_s as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "vzdump-qemu-{vmid}-{:04}_{:02}_{:02}-{:02}_{:02}_{:02}.{ext}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl Vm {
    /// A stopped VM with this config: no pending changes, snapshots or firewall settings; the
    /// guest agent answers and the guest obeys ACPI shutdown.
    pub(crate) fn new(vmid: u32, node: String, config: BTreeMap<String, String>) -> Self {
        Vm {
            vmid,
            node,
            config,
            pending: BTreeMap::new(),
            cloudinit_applied: BTreeMap::new(),
            started_ms: None,
            pid: 0,
            snapshots: BTreeMap::new(),
            firewall: Firewall::default(),
            agent_responding: true,
            ignore_shutdown: false,
            flock_until: 0,
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.started_ms.is_some()
    }
    pub(crate) fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }
    /// Remove the lock if it is still `lock` (another one may have replaced it).
    pub(crate) fn unlock(&mut self, lock: &str) {
        if self.lock() == Some(lock) {
            self.config.remove("lock");
        }
    }
    pub(crate) fn name(&self) -> String {
        self.config
            .get("name")
            .cloned()
            .unwrap_or_else(|| format!("VM {}", self.vmid))
    }
    pub(crate) fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|v| v == "1")
    }
    pub(crate) fn cpus(&self) -> u64 {
        let c: u64 = self
            .config
            .get("cores")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let s: u64 = self
            .config
            .get("sockets")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        c * s
    }
    pub(crate) fn maxmem(&self) -> u64 {
        self.config
            .get("memory")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(512)
            * 1024
            * 1024
    }
    pub(crate) fn agent_enabled(&self) -> bool {
        self.config.get("agent").is_some_and(|a| {
            a == "1" || a.starts_with("1,") || a.split(',').any(|p| p == "enabled=1")
        })
    }
    /// Sum of all disk sizes, in bytes.
    pub(crate) fn maxdisk(&self) -> u64 {
        self.disks().map(|(_, _, size)| size).sum()
    }
    /// `(key, volid, size_bytes)` of every disk (cdroms excluded).
    pub(crate) fn disks(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.config.iter().filter_map(|(k, v)| {
            if !is_disk_key(k) || v.contains("media=cdrom") {
                return None;
            }
            let volid = v.split(',').next()?;
            let size = disk_size(v).unwrap_or(0);
            Some((k.as_str(), volid, size))
        })
    }
    pub(crate) fn config_digest(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.config {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(v.as_bytes());
            h.update(b"\n");
        }
        for (k, v) in &self.pending {
            h.update(k.as_bytes());
            h.update(v.as_deref().unwrap_or("-").as_bytes());
        }
        hex::encode(h.finalize())[..40].to_string()
    }
    /// Apply pending changes (on a cold start).
    pub(crate) fn apply_pending(&mut self) {
        for (k, v) in std::mem::take(&mut self.pending) {
            match v {
                Some(v) => {
                    self.config.insert(k, v);
                }
                None => {
                    self.config.remove(&k);
                }
            }
        }
    }
    /// Regenerate the cloud-init drive from the config.
    pub(crate) fn regenerate_cloudinit(&mut self) {
        self.cloudinit_applied = self
            .config
            .iter()
            .filter(|(k, _)| is_cloudinit_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
}

pub(crate) fn is_disk_key(k: &str) -> bool {
    ["scsi", "virtio", "sata", "ide", "efidisk", "tpmstate"]
        .iter()
        .any(|p| {
            k.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Parse `size=32G` out of a drive string into bytes.
pub(crate) fn disk_size(v: &str) -> Option<u64> {
    let s = v.split(',').find_map(|p| p.strip_prefix("size="))?;
    parse_size(s)
}

/// Parse `32G`, `512M`, `1T`, `1024K` or bytes.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    Some((n * mul as f64) as u64)
}

/// Format bytes as PVE writes disk sizes (`32G`, `512M`).
pub(crate) fn format_size(b: u64) -> String {
    if b.is_multiple_of(1 << 40) && b > 0 {
        format!("{}T", b >> 40)
    } else if b.is_multiple_of(1 << 30) && b > 0 {
        format!("{}G", b >> 30)
    } else if b.is_multiple_of(1 << 20) && b > 0 {
        format!("{}M", b >> 20)
    } else if b.is_multiple_of(1 << 10) && b > 0 {
        format!("{}K", b >> 10)
    } else {
        b.to_string()
    }
}

/// How a task ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Warnings(u32),
    Error(String),
}

impl Outcome {
    pub(crate) fn exitstatus(&self) -> String {
        match self {
            Outcome::Ok => "OK".into(),
            Outcome::Warnings(n) => format!("WARNINGS: {n}"),
            Outcome::Error(e) => e.clone(),
        }
    }
}

/// Passed to a task's completion effect; the effect may turn the outcome into an error.
#[derive(Debug)]
pub(crate) struct TaskEnd {
    /// When the task ends (ms since the epoch).
    pub(crate) at_ms: u64,
    pub(crate) outcome: Outcome,
    pub(crate) log: Vec<String>,
}

type Effect = Box<dyn FnOnce(&mut State, &mut TaskEnd) + Send>;

/// A worker task.
pub(crate) struct Task {
    pub(crate) upid: String,
    pub(crate) node: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) pid: u32,
    pub(crate) pstart: u32,
    pub(crate) starttime: u64,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// Planned outcome (may be overridden by the effect).
    pub(crate) outcome: Outcome,
    /// `(offset_ms, line)`: a line shows once the task has run that long.
    pub(crate) log: Vec<(u64, String)>,
    pub(crate) effect: Option<Effect>,
    pub(crate) finished: bool,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("upid", &self.upid)
            .finish_non_exhaustive()
    }
}

impl Task {
    pub(crate) fn visible_log(&self, now: u64) -> Vec<&str> {
        let elapsed = now.saturating_sub(self.start_ms);
        self.log
            .iter()
            .filter(|(at, _)| self.finished || *at <= elapsed)
            .map(|(_, l)| l.as_str())
            .collect()
    }
}

/// A scheduled lock that appears (and optionally disappears) on its own.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledLock {
    pub(crate) vmid: u32,
    pub(crate) lock: String,
    pub(crate) at_ms: u64,
    pub(crate) release_ms: Option<u64>,
    pub(crate) applied: bool,
}

/// A VNC ticket handed out by `vncproxy`.
#[derive(Debug, Clone)]
pub(crate) struct VncTicket {
    pub(crate) vmid: u32,
    pub(crate) port: u16,
    pub(crate) expires_ms: u64,
    /// The `vncproxy` task waiting for this connection.
    pub(crate) upid: String,
    /// Who asked for it (`user@realm` or `user@realm!token`): only they may use it.
    pub(crate) authid: String,
}

/// Timing knobs for tasks.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) task_ms: u64,
    pub(crate) backup_ms: u64,
    /// How long a `vncproxy` task waits for its client.
    pub(crate) vnc_ms: u64,
}

/// The whole simulated cluster.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cluster_name: String,
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) storages: BTreeMap<String, Storage>,
    pub(crate) volumes: BTreeMap<String, Volume>,
    pub(crate) vms: BTreeMap<u32, Vm>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) task_index: HashMap<String, usize>,
    pub(crate) active_tasks: Vec<usize>,
    pub(crate) cluster_fw: Firewall,
    pub(crate) faults: Faults,
    /// Authenticated API requests served, by caller (`user@realm!token` or `user@realm`),
    /// method and route template; kept across [`clear_faults`](crate::PveSim::clear_faults).
    pub(crate) served: BTreeMap<(String, &'static str, &'static str), u64>,
    pub(crate) scheduled_locks: Vec<ScheduledLock>,
    pub(crate) vnc_tickets: HashMap<String, VncTicket>,
    pub(crate) rng: StdRng,
    pub(crate) next_pid: u32,
    pub(crate) timing: Timing,
    pub(crate) cert_pem: String,
    pub(crate) fingerprint: String,
    /// Bumped by every change; keys the `/cluster/resources` cache.
    pub(crate) generation: u64,
    /// `((generation, second, type filter), answer)`.
    pub(crate) resources_cache: Option<ResourcesKey>,
}

/// Cache key and body of the last `/cluster/resources` answer.
pub(crate) type ResourcesKey = ((u64, u64, Option<String>), bytes::Bytes);

impl State {
    pub(crate) fn new(seed: u64, timing: Timing) -> State {
        State {
            cluster_name: "pve-sim".into(),
            nodes: BTreeMap::new(),
            storages: BTreeMap::new(),
            volumes: BTreeMap::new(),
            vms: BTreeMap::new(),
            tasks: Vec::new(),
            task_index: HashMap::new(),
            active_tasks: Vec::new(),
            cluster_fw: Firewall::default(),
            faults: Faults::default(),
            served: BTreeMap::new(),
            scheduled_locks: Vec::new(),
            vnc_tickets: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            next_pid: 0x1000 + (seed % 0x1000) as u32,
            timing,
            cert_pem: String::new(),
            fingerprint: String::new(),
            generation: 0,
            resources_cache: None,
        }
    }

    /// A random locally administered MAC in Proxmox's `BC:24:11` prefix.
    pub(crate) fn random_mac(&mut self) -> String {
        let b: [u8; 3] = self.rng.random();
        format!("BC:24:11:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2])
    }

    /// Finish tasks whose time has come and apply scheduled locks.
    pub(crate) fn advance(&mut self, now: u64) {
        if !self.scheduled_locks.is_empty() {
            self.generation += 1;
            let mut locks = std::mem::take(&mut self.scheduled_locks);
            for l in &mut locks {
                if !l.applied && now >= l.at_ms {
                    if let Some(vm) = self.vms.get_mut(&l.vmid) {
                        vm.config.insert("lock".into(), l.lock.clone());
                    }
                    l.applied = true;
                }
                if l.applied
                    && l.release_ms.is_some_and(|r| now >= r)
                    && let Some(vm) = self.vms.get_mut(&l.vmid)
                {
                    vm.unlock(&l.lock);
                }
            }
            locks.retain(|l| !(l.applied && l.release_ms.is_none_or(|r| now >= r)));
            self.scheduled_locks = locks;
        }
        if self.active_tasks.is_empty() {
            return;
        }
        let mut due: Vec<usize> = self
            .active_tasks
            .iter()
            .copied()
            .filter(|&i| self.tasks[i].end_ms <= now)
            .collect();
        due.sort_by_key(|&i| (self.tasks[i].end_ms, i));
        if !due.is_empty() {
            self.generation += 1;
        }
        self.active_tasks.retain(|i| !due.contains(i));
        for i in due {
            self.finish_task(i);
        }
    }

    fn finish_task(&mut self, i: usize) {
        let effect = self.tasks[i].effect.take();
        let mut end = TaskEnd {
            at_ms: self.tasks[i].end_ms,
            outcome: self.tasks[i].outcome.clone(),
            log: Vec::new(),
        };
        if let Some(effect) = effect {
            effect(self, &mut end);
        }
        let t = &mut self.tasks[i];
        let at = t.end_ms - t.start_ms;
        for l in end.log {
            t.log.push((at, l));
        }
        let last = match &end.outcome {
            Outcome::Ok => "TASK OK".to_string(),
            Outcome::Warnings(n) => format!("TASK WARNINGS: {n}"),
            Outcome::Error(e) => format!("TASK ERROR: {e}"),
        };
        t.log.push((at, last));
        t.outcome = end.outcome;
        t.finished = true;
    }

    /// Start a task. Its effect runs when it ends (`duration_ms` from `now`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_task(
        &mut self,
        now: u64,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        duration_ms: u64,
        log: Vec<(u64, String)>,
        effect: impl FnOnce(&mut State, &mut TaskEnd) + Send + 'static,
    ) -> String {
        debug_assert!(
            !id.contains(':') && !kind.contains(':'),
            "a UPID field cannot hold `:` ({kind}:{id})"
        );
        self.next_pid += 1;
        let pid = self.next_pid;
        let starttime = now / 1000;
        let pstart = (starttime as u32).wrapping_mul(7) & 0x0FFF_FFFF;
        let upid =
            format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{user}:");
        let outcome = self.faults.take_task_outcome(kind);
        let task = Task {
            upid: upid.clone(),
            node: node.into(),
            kind: kind.into(),
            id: id.into(),
            user: user.into(),
            pid,
            pstart,
            starttime,
            start_ms: now,
            end_ms: now + duration_ms,
            outcome,
            log,
            effect: Some(Box::new(effect)),
            finished: false,
        };
        let idx = self.tasks.len();
        self.generation += 1;
        self.tasks.push(task);
        self.task_index.insert(upid.clone(), idx);
        self.active_tasks.push(idx);
        if duration_ms == 0 {
            self.advance(now);
        }
        upid
    }

    pub(crate) fn task_json(&self, t: &Task) -> Value {
        let mut v = serde_json::json!({
            "upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
            "starttime": t.starttime, "type": t.kind, "id": t.id,
            "status": if t.finished { "stopped" } else { "running" },
        });
        split_task_user(&mut v, &t.user);
        if t.finished {
            v["exitstatus"] = Value::from(t.outcome.exitstatus());
        }
        v
    }

    /// Allocate the RAM-state volume of snapshot `snap` of running VM `vmid` and return its
    /// volid.
    pub(crate) fn alloc_vmstate(&mut self, vmid: u32, snap: &str, now_s: u64) -> Option<String> {
        let vm = self.vms.get(&vmid)?;
        // FACT (qemu-server src/PVE/QemuConfig.pm, __snapshot_save_vmstate): the state goes to
        // `vmstatestorage` (else a storage of the VM's disks) as `vm-VMID-state-SNAP`, with
        // `.raw` on file-based storages, sized twice the memory plus 500 MiB.
        let storage = vm
            .config
            .get("vmstatestorage")
            .cloned()
            .or_else(|| {
                vm.disks()
                    .filter_map(|(_, volid, _)| volid.split(':').next())
                    .find(|s| self.storages.contains_key(*s))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "local-lvm".into());
        let file_based = self
            .storages
            .get(&storage)
            .is_some_and(|s| matches!(s.kind.as_str(), "dir" | "nfs" | "cifs" | "glusterfs"));
        let ext = if file_based { ".raw" } else { "" };
        let volid = format!("{storage}:vm-{vmid}-state-{snap}{ext}");
        let size = (vm.maxmem() >> 20) * 2 * (1 << 20) + (500 << 20);
        self.volumes.insert(
            volid.clone(),
            Volume {
                volid: volid.clone(),
                storage,
                content: "images".into(),
                format: "raw".into(),
                size,
                ctime: now_s,
                vmid: Some(vmid),
                notes: None,
                protected: false,
                archive: None,
            },
        );
        Some(volid)
    }

    /// End task `upid` now (if still running) with `outcome`.
    pub(crate) fn end_task(&mut self, upid: &str, now: u64, outcome: Outcome) {
        if let Some(&i) = self.task_index.get(upid)
            && !self.tasks[i].finished
        {
            self.tasks[i].outcome = outcome;
            self.tasks[i].end_ms = now.max(self.tasks[i].start_ms);
            self.advance(now);
        }
    }

    /// Keep task `upid` running until [`State::end_task`] (a console with a client).
    pub(crate) fn hold_task(&mut self, upid: &str) {
        if let Some(&i) = self.task_index.get(upid)
            && !self.tasks[i].finished
        {
            self.tasks[i].outcome = Outcome::Ok;
            self.tasks[i].end_ms = u64::MAX / 2;
        }
    }

    /// Used bytes of a storage.
    pub(crate) fn storage_used(&self, storage: &str) -> u64 {
        let files: u64 = self
            .volumes
            .values()
            .filter(|v| v.storage == storage)
            .map(|v| v.size)
            .sum();
        let disks: u64 = self
            .vms
            .values()
            .flat_map(|vm| {
                vm.disks()
                    .map(|(_, volid, size)| (volid.to_string(), size))
                    .collect::<Vec<_>>()
            })
            .filter(|(volid, _)| volid.split(':').next() == Some(storage))
            .map(|(_, s)| s)
            .sum();
        files + disks
    }

    /// Next free disk number for `vm-VMID-disk-N` on a storage.
    pub(crate) fn next_disk_name(
        &self,
        storage: &str,
        vmid: u32,
        config: &BTreeMap<String, String>,
    ) -> String {
        let mut n = 0;
        loop {
            let candidate = format!("{storage}:vm-{vmid}-disk-{n}");
            if !config
                .values()
                .any(|v| v.split(',').next() == Some(candidate.as_str()))
            {
                return candidate;
            }
            n += 1;
        }
    }
}

/// Put a task's `user` into `v`: an API token's task shows `user` and `tokenid` apart, as the
/// recorded PVE 9.2 task status of a token's task does (proxmox-api tests/fixtures/real), while
/// the UPID keeps `user@realm!token`.
pub(crate) fn split_task_user(v: &mut Value, user: &str) {
    match user.split_once('!') {
        Some((u, token)) => {
            v["user"] = Value::from(u);
            v["tokenid"] = Value::from(token);
        }
        None => v["user"] = Value::from(user),
    }
}

/// Deterministic pseudo-random in `[0,1)` from a few integers (for figures that move with time).
pub(crate) fn noise(a: u64, b: u64, c: u64) -> f64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .wrapping_add(c.wrapping_mul(0x1656_67B1_9E37_79F9));
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Live figures of a VM at `now`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) cpu: f64,
    pub(crate) mem: u64,
    pub(crate) disk: u64,
    pub(crate) netin: u64,
    pub(crate) netout: u64,
    pub(crate) diskread: u64,
    pub(crate) diskwrite: u64,
    pub(crate) uptime: u64,
}

impl Vm {
    pub(crate) fn figures(&self, now: u64) -> Figures {
        let Some(start) = self.started_ms else {
            return Figures {
                cpu: 0.0,
                mem: 0,
                disk: 0,
                netin: 0,
                netout: 0,
                diskread: 0,
                diskwrite: 0,
                uptime: 0,
            };
        };
        let up = now.saturating_sub(start) / 1000;
        let v = self.vmid as u64;
        let slot = now / 10_000;
        let base = noise(v, 1, 0);
        let cpu = (0.02 + 0.3 * base + 0.1 * noise(v, 2, slot)).min(1.0);
        let maxmem = self.maxmem();
        let mem = (maxmem as f64 * (0.25 + 0.5 * base + 0.1 * noise(v, 3, slot))) as u64;
        // Counters grow with uptime at a per-VM rate.
        let rate = |k: u64, scale: f64| (up as f64 * scale * (0.5 + noise(v, k, 0))) as u64;
        Figures {
            cpu,
            mem: mem.min(maxmem),
            disk: 0,
            netin: rate(4, 40_000.0),
            netout: rate(5, 20_000.0),
            diskread: rate(6, 100_000.0),
            diskwrite: rate(7, 60_000.0),
            uptime: up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(
            7,
            Timing {
                task_ms: 100,
                backup_ms: 200,
                vnc_ms: 10_000,
            },
        )
    }

    #[test]
    fn sizes_round_trip() {
        for s in ["32G", "512M", "1T", "4K", "123"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        assert_eq!(
            disk_size("local-lvm:vm-1-disk-0,iothread=1,size=10G"),
            Some(10 << 30)
        );
        assert!(
            is_disk_key("scsi0")
                && is_disk_key("virtio15")
                && !is_disk_key("scsihw")
                && !is_disk_key("net0")
        );
    }

    #[test]
    fn tasks_finish_when_their_time_comes_and_faults_pick_the_outcome() {
        let mut st = state();
        st.faults.tasks.push(crate::faults::TaskFault {
            kind: "qmstop".into(),
            outcome: Outcome::Warnings(1),
        });
        let a = st.spawn_task(
            1_000_000,
            "pve1",
            "qmstart",
            "100",
            "root@pam",
            100,
            vec![],
            |_, _| {},
        );
        let b = st.spawn_task(
            1_000_000,
            "pve1",
            "qmstop",
            "100",
            "root@pam",
            300,
            vec![],
            |_, end| {
                end.log.push("stopped".into());
            },
        );
        let upid_parts: Vec<&str> = a.split(':').collect();
        assert_eq!(upid_parts[5], "qmstart");
        st.advance(1_000_050);
        assert!(!st.tasks[st.task_index[&a]].finished);
        st.advance(1_000_100);
        assert!(st.tasks[st.task_index[&a]].finished);
        assert!(!st.tasks[st.task_index[&b]].finished);
        st.advance(1_000_300);
        let t = &st.tasks[st.task_index[&b]];
        assert_eq!(t.outcome.exitstatus(), "WARNINGS: 1");
        assert_eq!(
            t.visible_log(1_000_300),
            vec!["stopped", "TASK WARNINGS: 1"]
        );
    }

    #[test]
    fn scheduled_lock_appears_and_goes() {
        let mut st = state();
        st.insert_vm(crate::config::VmSpec::new(100, "pve1"), 0);
        st.scheduled_locks.push(ScheduledLock {
            vmid: 100,
            lock: "backup".into(),
            at_ms: 10,
            release_ms: Some(20),
            applied: false,
        });
        st.advance(5);
        assert_eq!(st.vms[&100].lock(), None);
        st.advance(10);
        assert_eq!(st.vms[&100].lock(), Some("backup"));
        st.advance(20);
        assert_eq!(st.vms[&100].lock(), None);
        assert!(st.scheduled_locks.is_empty());
    }

    #[test]
    fn figures_are_deterministic() {
        let mut st = state();
        st.insert_vm(
            crate::config::VmSpec::new(100, "pve1").running(true),
            1_000_000_000,
        );
        let vm = &st.vms[&100];
        let a = vm.figures(1_000_500_000);
        let b = vm.figures(1_000_500_000);
        assert_eq!((a.cpu, a.mem, a.netin), (b.cpu, b.mem, b.netin));
        assert!(a.uptime > 0 && a.mem <= vm.maxmem());
        assert_eq!(noise(1, 2, 3), noise(1, 2, 3));
    }
}
