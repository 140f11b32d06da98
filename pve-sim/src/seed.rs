//! Starting clusters: the demo scenario, a minimal one, and a generator for many VMs.

use std::collections::BTreeMap;

use crate::config::{Scenario, VmSpec, mac_for};
use crate::model::{
    Archive, IpSet, Node, Rule, Snapshot, State, Storage, Vm, Volume, archive_name, noise,
};

/// ISO images every scenario puts on `local`.
pub const ISO_IMAGES: &[&str] = &[
    "Debian-12.5.0-amd64-netinst.iso",
    "Ubuntu-24.04-live-server-amd64.iso",
    "AlmaLinux-9.4-x86_64-minimal.iso",
    "virtio-win.iso",
];

fn add_node(st: &mut State, name: &str, now: u64, i: u64) {
    st.nodes.insert(
        name.to_string(),
        Node {
            name: name.to_string(),
            online: true,
            cpus: 32,
            maxmem: 256 << 30,
            boot_ms: now.saturating_sub((20 + i * 3) * 86_400_000),
        },
    );
}

fn add_storages(st: &mut State, now: u64) {
    for (name, kind, content, total, shared) in [
        (
            "local",
            "dir",
            "iso,vztmpl,backup,snippets",
            100u64 << 30,
            false,
        ),
        ("local-lvm", "lvmthin", "images,rootdir", 4u64 << 40, false),
        ("backup", "nfs", "backup", 8u64 << 40, true),
    ] {
        st.storages.insert(
            name.into(),
            Storage {
                name: name.into(),
                kind: kind.into(),
                content: content.into(),
                total,
                shared,
            },
        );
    }
    for (i, iso) in ISO_IMAGES.iter().enumerate() {
        let volid = format!("local:iso/{iso}");
        st.volumes.insert(
            volid.clone(),
            Volume {
                volid,
                storage: "local".into(),
                content: "iso".into(),
                format: "iso".into(),
                size: [658u64, 2_690, 1_012, 612][i] << 20,
                ctime: now / 1000 - 86_400 * (40 - i as u64),
                vmid: None,
                notes: None,
                protected: false,
                archive: None,
            },
        );
    }
}

impl State {
    /// Insert a VM from a spec (running VMs get an uptime derived from the VMID).
    pub(crate) fn insert_vm(&mut self, spec: VmSpec, now: u64) {
        let uptime_ms = (3_600 + (noise(spec.vmid as u64, 41, 0) * 30.0 * 86_400.0) as u64) * 1000;
        let mut vm = Vm {
            started_ms: spec.running.then(|| now.saturating_sub(uptime_ms)),
            pid: 1000 + spec.vmid % 60_000,
            ..Vm::new(spec.vmid, spec.node, spec.config)
        };
        vm.regenerate_cloudinit();
        self.vms.insert(vm.vmid, vm);
    }

    /// Add `count` generated VMs from `first_vmid`, spread over the nodes.
    pub(crate) fn generate_vms(&mut self, first_vmid: u32, count: usize, now: u64) {
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        if nodes.is_empty() {
            return;
        }
        for i in 0..count {
            let vmid = first_vmid + i as u32;
            let node = &nodes[i % nodes.len()];
            let r = noise(vmid as u64, 51, 0);
            let cores = [1, 2, 2, 4, 8][(r * 5.0) as usize % 5];
            let mem = [1024, 2048, 4096, 8192][(r * 4.0) as usize % 4];
            let disk = [20, 40, 80, 160][(r * 7.0) as usize % 4];
            let spec = VmSpec::new(vmid, node.clone())
                .name(format!("vps-{vmid}"))
                .set("cores", cores.to_string())
                .set("memory", mem.to_string())
                .set(
                    "scsi0",
                    format!("local-lvm:vm-{vmid}-disk-0,iothread=1,size={disk}G"),
                )
                .set("ide0", format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom"))
                .set("ide2", "none,media=cdrom")
                .set(
                    "ipconfig0",
                    format!(
                        "ip=10.{}.{}.{}/16,gw=10.{}.0.1",
                        100 + vmid / 65_536 % 100,
                        vmid / 256 % 256,
                        vmid % 256,
                        100 + vmid / 65_536 % 100
                    ),
                )
                .running(r < 0.8);
            self.insert_vm(spec, now);
        }
    }

    fn add_backup(&mut self, vmid: u32, ctime: u64, notes: &str, protected: bool) {
        let Some(vm) = self.vms.get(&vmid) else {
            return;
        };
        let name = archive_name(vmid, ctime, "vma.zst");
        let volid = format!("backup:backup/{name}");
        let mut cfg = vm.config.clone();
        cfg.remove("lock");
        let size = vm.maxdisk() / 5 + (300 << 20);
        let archive = Archive {
            config: cfg,
            firewall: vm.firewall.clone(),
        };
        self.volumes.insert(
            volid.clone(),
            Volume {
                volid,
                storage: "backup".into(),
                content: "backup".into(),
                format: "vma.zst".into(),
                size,
                ctime,
                vmid: Some(vmid),
                notes: Some(notes.into()),
                protected,
                archive: Some(archive),
            },
        );
    }

    fn add_snapshot(
        &mut self,
        vmid: u32,
        name: &str,
        description: &str,
        snaptime: u64,
        vmstate: bool,
    ) {
        let state = if vmstate {
            self.alloc_vmstate(vmid, name, snaptime)
        } else {
            None
        };
        let Some(vm) = self.vms.get_mut(&vmid) else {
            return;
        };
        let parent = vm.config.get("parent").cloned();
        let mut config = vm.config.clone();
        config.remove("parent");
        if let Some(v) = state {
            config.insert("vmstate".into(), v);
            config.insert("runningmachine".into(), RUNNING_MACHINE.into());
            config.insert("runningcpu".into(), RUNNING_CPU.into());
        }
        vm.snapshots.insert(
            name.into(),
            Snapshot {
                name: name.into(),
                description: description.into(),
                snaptime,
                vmstate,
                parent,
                config,
                snapstate: None,
            },
        );
        vm.config.insert("parent".into(), name.into());
    }
}

/// The machine type a running VM reports (and a RAM snapshot records).
pub(crate) const RUNNING_MACHINE: &str = "pc-i440fx-9.2+pve1";
/// The QEMU `-cpu` argument a RAM snapshot records.
pub(crate) const RUNNING_CPU: &str = "kvm64,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+lahf_lm,+sep";

fn rule(pairs: &[(&str, &str)]) -> Rule {
    Rule {
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Build the starting state for a scenario.
pub(crate) fn build(st: &mut State, scenario: &Scenario, now: u64) {
    let now_s = now / 1000;
    match scenario {
        Scenario::Minimal => {
            add_node(st, "pve1", now, 0);
            add_storages(st, now);
        }
        Scenario::Generated { nodes, vms } => {
            for i in 0..(*nodes).max(1) {
                add_node(st, &format!("pve{}", i + 1), now, i as u64);
            }
            add_storages(st, now);
            // Room for many VMs.
            if let Some(s) = st.storages.get_mut("local-lvm") {
                s.total = s.total.max(*vms as u64 * (200 << 30));
            }
            st.generate_vms(1000, *vms, now);
        }
        Scenario::Demo => {
            for (i, n) in ["pve1", "pve2", "pve3"].iter().enumerate() {
                add_node(st, n, now, i as u64);
            }
            add_storages(st, now);
            for (vmid, name, ostype) in [
                (9000, "Debian-12", "l26"),
                (9001, "Ubuntu-24.04", "l26"),
                (9002, "AlmaLinux-9", "l26"),
            ] {
                let spec = VmSpec::new(vmid, "pve1")
                    .name(name)
                    .set("ostype", ostype)
                    .set("cores", "1")
                    .set("memory", "2048")
                    .set(
                        "scsi0",
                        format!("local-lvm:base-{vmid}-disk-0,iothread=1,size=10G"),
                    )
                    .set("ide0", format!("local-lvm:vm-{vmid}-cloudinit,media=cdrom"))
                    .set("ide2", "none,media=cdrom")
                    .set("serial0", "socket")
                    .set("vga", "serial0")
                    .set("ipconfig0", "ip=dhcp")
                    .set("description", format!("{name} cloud image template"))
                    .template();
                st.insert_vm(spec, now);
            }
            let web = VmSpec::new(100, "pve1")
                .name("web-01")
                .set("cores", "2")
                .set("sockets", "1")
                .set("memory", "4096")
                .set("scsi0", "local-lvm:vm-100-disk-0,iothread=1,mbps_rd=200,mbps_wr=150,iops_rd=4000,iops_wr=2000,size=32G")
                .set("scsi1", "local-lvm:vm-100-disk-1,iothread=1,backup=0,size=50G")
                .set("ide2", "none,media=cdrom")
                .set("ide0", "local-lvm:vm-100-cloudinit,media=cdrom")
                .set("net0", format!("virtio={},bridge=vmbr0,firewall=1,tag=10,rate=125", mac_for(100, 0)))
                .set("ipconfig0", "ip=203.0.113.10/24,gw=203.0.113.1,ip6=2001:db8:10::10/64,gw6=2001:db8:10::1")
                .set("nameserver", "1.1.1.1 9.9.9.9")
                .set("searchdomain", "example.com")
                .set("ciuser", "debian")
                .set("cipassword", "$5$sim$Zm9vYmFyYmF6cXV4c2ltdWxhdGVkaGFzaA")
                .set("tags", "customer-1042;web")
                .set("onboot", "1")
                .running(true);
            st.insert_vm(web, now);
            let db = VmSpec::new(101, "pve1")
                .name("db-01")
                .set("cores", "4")
                .set("sockets", "1")
                .set("memory", "8192")
                .set("scsi0", "local-lvm:vm-101-disk-0,iothread=1,size=100G")
                .set("ide0", "local-lvm:vm-101-cloudinit,media=cdrom")
                .set("ide2", "none,media=cdrom")
                .set(
                    "net0",
                    format!("virtio={},bridge=vmbr0,firewall=1", mac_for(101, 0)),
                )
                .set(
                    "net1",
                    format!("virtio={},bridge=vmbr1,tag=20", mac_for(101, 1)),
                )
                .set("ipconfig0", "ip=203.0.113.11/24,gw=203.0.113.1")
                .set("ipconfig1", "ip=10.20.0.11/24")
                .set("ciuser", "admin")
                .set("tags", "customer-1042;db")
                .running(true);
            st.insert_vm(db, now);
            let mail = VmSpec::new(102, "pve2")
                .name("mail-01")
                .set("cores", "2")
                .set("memory", "2048")
                .set(
                    "virtio0",
                    "local-lvm:vm-102-disk-0,mbps_rd=100,mbps_wr=100,size=40G",
                )
                .set("ide0", "local-lvm:vm-102-cloudinit,media=cdrom")
                .set("ide2", "none,media=cdrom")
                .set(
                    "net0",
                    format!("virtio={},bridge=vmbr0,firewall=1", mac_for(102, 0)),
                )
                .set("ipconfig0", "ip=203.0.113.12/24,gw=203.0.113.1")
                .set("tags", "customer-2077");
            st.insert_vm(mail, now);
            let staging = VmSpec::new(103, "pve2")
                .name("staging")
                .set("cores", "2")
                .set("memory", "2048")
                .set("ide0", "local-lvm:vm-103-cloudinit,media=cdrom")
                .set("ide2", "none,media=cdrom")
                .set("ipconfig0", "ip=dhcp")
                .set("agent", "0")
                .running(true);
            st.insert_vm(staging, now);
            let vps = VmSpec::new(104, "pve3")
                .name("customer-vps-104")
                .set("cores", "1")
                .set("memory", "1024")
                .set("scsi0", "local-lvm:vm-104-disk-0,iothread=1,size=25G")
                .set("ide0", "local-lvm:vm-104-cloudinit,media=cdrom")
                .set("ide2", "none,media=cdrom")
                .set(
                    "net0",
                    format!(
                        "virtio={},bridge=vmbr0,firewall=1,rate=12.5",
                        mac_for(104, 0)
                    ),
                )
                .set("ipconfig0", "ip=198.51.100.104/24,gw=198.51.100.1")
                .set("ciuser", "ubuntu")
                .set("tags", "customer-3001")
                .running(true);
            st.insert_vm(vps, now);
            let win = VmSpec::new(105, "pve3")
                .name("win-2022")
                .set("ostype", "win11")
                .set("cores", "4")
                .set("memory", "8192")
                .set("bios", "ovmf")
                .set("scsi0", "local-lvm:vm-105-disk-0,size=80G")
                .set("ide2", "none,media=cdrom")
                .set("net0", format!("e1000={},bridge=vmbr0", mac_for(105, 0)))
                .set("agent", "0");
            st.insert_vm(win, now);

            st.add_snapshot(
                100,
                "before-upgrade",
                "Before apt full-upgrade",
                now_s - 7 * 86_400,
                false,
            );
            st.add_snapshot(
                100,
                "after-upgrade",
                "After upgrade, with RAM",
                now_s - 6 * 86_400,
                true,
            );
            st.add_snapshot(
                101,
                "pre-migration",
                "Before schema migration",
                now_s - 2 * 86_400,
                false,
            );
            st.cluster_fw.options.insert("enable".into(), "1".into());
            st.cluster_fw
                .options
                .insert("policy_in".into(), "DROP".into());
            st.cluster_fw
                .options
                .insert("policy_out".into(), "ACCEPT".into());
            st.cluster_fw.rules.push(rule(&[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("source", "+management"),
                ("proto", "tcp"),
                ("dport", "8006"),
                ("enable", "1"),
                ("comment", "PVE GUI from management"),
            ]));
            st.cluster_fw.rules.push(rule(&[
                ("type", "in"),
                ("action", "SSH(ACCEPT)"),
                ("macro", "SSH"),
                ("source", "office"),
                ("enable", "1"),
            ]));
            let mut mgmt = IpSet {
                comment: Some("management networks".into()),
                entries: BTreeMap::new(),
            };
            mgmt.entries
                .insert("192.0.2.0/24".into(), (Some("ops VPN".into()), false));
            mgmt.entries.insert("198.51.100.7".into(), (None, false));
            st.cluster_fw.ipsets.insert("management".into(), mgmt);
            st.cluster_fw.aliases.insert(
                "office".into(),
                ("192.0.2.10".into(), Some("office NAT".into())),
            );
            if let Some(vm) = st.vms.get_mut(&100) {
                vm.firewall.options.insert("enable".into(), "1".into());
                vm.firewall
                    .options
                    .insert("policy_in".into(), "DROP".into());
                vm.firewall
                    .options
                    .insert("policy_out".into(), "ACCEPT".into());
                vm.firewall.options.insert("ipfilter".into(), "1".into());
                vm.firewall.rules.push(rule(&[
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("proto", "tcp"),
                    ("dport", "80,443"),
                    ("enable", "1"),
                    ("comment", "web"),
                ]));
                vm.firewall.rules.push(rule(&[
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("macro", "SSH"),
                    ("source", "+dc/management"),
                    ("enable", "1"),
                ]));
                vm.firewall.rules.push(rule(&[
                    ("type", "in"),
                    ("action", "DROP"),
                    ("proto", "tcp"),
                    ("dport", "25"),
                    ("enable", "0"),
                    ("comment", "no smtp"),
                ]));
                let mut f = IpSet {
                    comment: None,
                    entries: BTreeMap::new(),
                };
                f.entries.insert("203.0.113.10".into(), (None, false));
                f.entries.insert("2001:db8:10::10".into(), (None, false));
                vm.firewall.ipsets.insert("ipfilter-net0".into(), f);
            }
            st.add_backup(100, now_s - 2 * 86_400, "web-01 nightly", false);
            st.add_backup(100, now_s - 86_400, "web-01 nightly", false);
            st.add_backup(101, now_s - 86_400, "db-01 nightly", false);
            st.add_backup(
                104,
                now_s - 3 * 86_400,
                "customer-vps-104 before reinstall",
                true,
            );
        }
    }
}
