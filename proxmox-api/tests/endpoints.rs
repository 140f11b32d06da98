//! Every typed endpoint against wiremock: method, path, exact query/body, the token header,
//! and decoding of real-shaped answers.

mod common;

use common::*;
use pve_vps_api::api::backup::{BackupMode, Compression, VzdumpRequest};
use pve_vps_api::api::cloudinit::CloudInitDump;
use pve_vps_api::api::cluster::{NodeStatus, ResourceFilter, ResourceKind};
use pve_vps_api::api::firewall::{FirewallOptionsUpdate, Policy, RuleSpec};
use pve_vps_api::api::qemu_config::{
    CloneFormat, CloneOptions, ConfigUpdate, CreateVm, IpConfig, NetModel, NetSpec,
};
use pve_vps_api::api::qemu_status::{ShutdownOptions, VmState};
use pve_vps_api::api::rrd::{Consolidation, Timeframe};
use pve_vps_api::api::tasks::TaskFilter;
use pve_vps_api::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VM: &str = "/api2/json/nodes/pve1/qemu/100";

async fn expect<M: wiremock::Match + 'static>(
    server: &MockServer,
    verb: &str,
    p: &str,
    params: M,
    body: serde_json::Value,
) {
    Mock::given(method(verb))
        .and(path(p))
        .and(header("authorization", TOKEN_HEADER))
        .and(params)
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

fn vm(client: &Client) -> pve_vps_api::api::VmHandle {
    client
        .node(&"pve1".parse().unwrap())
        .qemu(VmId::new(100).unwrap())
}

fn upid() -> serde_json::Value {
    data(json!(UPID))
}

#[tokio::test]
async fn cluster_version_nodes_resources() {
    timed(async {
        let (server, client) = server_and_client().await;
        expect(
            &server,
            "GET",
            "/api2/json/version",
            query_is(&[]),
            fixture("version.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            "/api2/json/nodes",
            query_is(&[]),
            fixture("nodes.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            "/api2/json/cluster/resources",
            query_is(&[("type", "vm")]),
            fixture("cluster_resources.json"),
        )
        .await;

        let v = client.version().await.unwrap();
        assert_eq!((v.version.as_str(), v.release.as_str()), ("8.2.4", "8.2"));

        let nodes = client.nodes().await.unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].status, NodeStatus::Online);
        assert_eq!(
            nodes[0].mem,
            Some(21_474_836_480),
            "stringly number decoded"
        );
        assert_eq!(nodes[1].status, NodeStatus::Offline);
        assert_eq!(nodes[1].maxmem, None);

        let res = client
            .cluster_resources(Some(ResourceFilter::Vm))
            .await
            .unwrap();
        assert_eq!(res.len(), 4);
        assert_eq!(res[0].kind, ResourceKind::Qemu);
        assert_eq!(res[0].netin, Some(123_456));
        assert_eq!(res[1].vmid, Some(101), "vmid sent as string");
        assert!(res[1].template, "template \"1\" is true");
        assert_eq!(res[1].lock.as_deref(), Some("backup"));
        assert_eq!(
            res[3].kind,
            ResourceKind::Other("vgpu".into()),
            "unknown kinds kept"
        );
    })
    .await;
}

#[tokio::test]
async fn qemu_status_and_power() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        expect(
            &server,
            "GET",
            &format!("{VM}/status/current"),
            query_is(&[]),
            fixture("status_current.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/status/start"),
            form_is(&[]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/status/shutdown"),
            form_is(&[("timeout", "60"), ("forceStop", "1")]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/status/stop"),
            form_is(&[]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/status/reboot"),
            form_is(&[("timeout", "30")]),
            upid(),
        )
        .await;

        let s = vm.status().await.unwrap();
        assert_eq!(s.status, VmState::Running);
        assert_eq!(s.mem, Some(536_870_912));
        assert_eq!(s.pid, Some(4242));
        assert_eq!(s.agent, Some(true));

        assert_eq!(vm.start().await.unwrap().upid().as_str(), UPID);
        let t = vm
            .shutdown(&ShutdownOptions::new().timeout(60).force_stop(true))
            .await
            .unwrap();
        assert_eq!(t.upid().node().as_str(), "pve1");
        vm.stop().await.unwrap();
        vm.reboot(Some(30)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn qemu_config_get_pending_and_set() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        expect(
            &server,
            "GET",
            &format!("{VM}/config"),
            query_is(&[("current", "1")]),
            fixture("config.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/pending"),
            query_is(&[]),
            fixture("pending.json"),
        )
        .await;
        let net = NetSpec::new(NetModel::Virtio, "bc:24:11:aa:bb:cc", "vmbr0")
            .unwrap()
            .with_tag(20)
            .unwrap()
            .with_firewall(true);
        let ip = IpConfig::new()
            .ip("192.0.2.10/24")
            .unwrap()
            .gw("192.0.2.1")
            .unwrap();
        expect(
            &server,
            "PUT",
            &format!("{VM}/config"),
            form_is(&[
                ("cores", "4"),
                ("memory", "4096"),
                (
                    "net0",
                    "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=20,firewall=1",
                ),
                ("ipconfig0", "ip=192.0.2.10/24,gw=192.0.2.1"),
                ("cipassword", "s3cret"),
                ("delete", "nameserver,searchdomain"),
                ("digest", "3f2a1b0c"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/config"),
            form_is(&[("scsi1", "local-lvm:10")]),
            upid(),
        )
        .await;

        let c = vm.config().await.unwrap();
        assert_eq!(c.name.as_deref(), Some("web-1"));
        assert_eq!(
            (c.cores, c.sockets, c.memory),
            (Some(2), Some(1), Some(2048))
        );
        assert_eq!(c.agent, Some(true));
        assert_eq!(c.lock.as_deref(), Some("backup"));
        let scsi0 = &c.disks[&"scsi0".parse::<DiskSlot>().unwrap()];
        assert_eq!(scsi0.volume, "local-lvm:vm-100-disk-0");
        assert_eq!(scsi0.size, Some(32 << 30));
        assert_eq!(
            (scsi0.mbps_rd, scsi0.mbps_wr, scsi0.iops_rd, scsi0.iops_wr),
            (Some(100.0), Some(50.0), Some(1000), Some(500))
        );
        assert!(c.disks[&"ide2".parse::<DiskSlot>().unwrap()].is_cdrom());
        assert_eq!(
            c.disks[&"virtio1".parse::<DiskSlot>().unwrap()].backup,
            Some(false)
        );
        assert_eq!(c.nets[&0].mac.as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(c.nets[&0].tag, Some(20));
        assert_eq!(c.nets[&1].model, NetModel::E1000);
        assert_eq!(c.nets[&1].link_down, Some(true));
        assert_eq!(c.ipconfigs[&0].gw6.as_deref(), Some("2001:db8::1"));
        assert_eq!(c.nameserver.as_deref(), Some("192.0.2.53"));
        assert_eq!(
            c.raw["smbios1"], "uuid=5d6a8f6e-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
            "unknown keys kept"
        );
        assert_eq!(c.raw["cores"], "2");

        let p = vm.pending().await.unwrap();
        assert_eq!(p[0].pending.as_deref(), Some("4"));
        assert_eq!(p[2].delete, Some(1));

        let update = ConfigUpdate::new()
            .cores(4)
            .memory_mib(4096)
            .net(0, &net)
            .unwrap()
            .ipconfig(0, &ip)
            .cipassword(SecretString::from("s3cret"))
            .delete("nameserver")
            .unwrap()
            .delete("searchdomain")
            .unwrap()
            .digest("3f2a1b0c")
            .unwrap();
        vm.update_config(&update).await.unwrap();
        let disk = ConfigUpdate::new()
            .disk("scsi1".parse().unwrap(), "local-lvm:10")
            .unwrap();
        assert_eq!(
            vm.update_config_async(&disk).await.unwrap().upid().as_str(),
            UPID
        );
    })
    .await;
}

#[tokio::test]
async fn config_update_other_keys_are_validated_before_sending() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        // Exactly one PUT and one create: refused updates never reach the server.
        expect(
            &server,
            "PUT",
            &format!("{VM}/config"),
            form_is(&[
                ("cores", "2"),
                ("tags", "customer-42;web"),
                ("boot", "order=scsi0;net0"),
                ("protection", "1"),
                ("balloon", "1024"),
                ("cpulimit", "1.5"),
                ("unused3", "local-lvm:vm-100-disk-3"),
                ("delete", "unused2,virtio7,tags"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "POST",
            "/api2/json/nodes/pve1/qemu",
            form_is(&[
                ("vmid", "101"),
                ("ostype", "l26"),
                ("scsihw", "virtio-scsi-single"),
            ]),
            upid(),
        )
        .await;

        let u = ConfigUpdate::new()
            .cores(2)
            .set_other("tags", "old")
            .unwrap()
            .set_other("tags", "customer-42;web")
            .unwrap()
            .set_other("boot", "order=scsi0;net0")
            .unwrap()
            .set_other("protection", "yes")
            .unwrap()
            .set_other("balloon", "1024")
            .unwrap()
            .set_other("cpulimit", "1.5")
            .unwrap()
            .set_other("unused3", "local-lvm:vm-100-disk-3")
            .unwrap()
            .delete("unused2")
            .unwrap()
            .delete("virtio7")
            .unwrap()
            .delete("tags")
            .unwrap();
        vm.update_config(&u).await.unwrap();

        let err = |r: Result<ConfigUpdate>| r.unwrap_err().to_string();
        let c = ConfigUpdate::new;
        // Not declared at all, or outside PVE's index range, or not canonical.
        assert!(err(c().set_other("bogus", "1")).contains("not a declared config key"));
        assert!(err(c().set_other("unused256", "x")).contains("not a declared config key"));
        assert!(err(c().set_other("hostpci16", "0000:01:00")).contains("not a declared"));
        assert!(err(c().set_other("unused03", "x")).contains("not a declared"));
        assert!(err(c().set_other("args", "-no-reboot")).contains("not a declared"));
        // Control parameters.
        for k in ["digest", "delete", "skiplock", "revert", "force"] {
            assert!(err(c().set_other(k, "1")).contains("not a declared"), "{k}");
            assert!(err(c().delete(k)).contains("not a declared"), "{k}");
        }
        // Keys with a typed setter.
        for k in [
            "cores",
            "name",
            "cipassword",
            "net0",
            "ipconfig1",
            "scsi0",
            "virtio7",
        ] {
            assert!(err(c().set_other(k, "1")).contains("typed setter"), "{k}");
        }
        // Values.
        assert!(err(c().set_other("tags", "a\nb")).contains("control characters"));
        assert!(err(c().set_other("tags", "a\rb")).contains("control characters"));
        assert!(err(c().set_other("tags", "a\tb")).contains("control characters"));
        assert!(err(c().set_other("tags", "")).contains("non-empty"));
        assert!(err(c().set_other("balloon", "lots")).contains("integer"));
        assert!(err(c().set_other("cpulimit", "NaN")).contains("number"));
        assert!(err(c().set_other("protection", "maybe")).contains("boolean"));
        // Delete: declared keys only, within ranges.
        assert!(err(c().delete("unused256")).contains("not a declared"));
        assert!(err(c().delete("virtio16")).contains("not a declared"));
        assert!(err(c().delete("bogus")).contains("not a declared"));
        assert!(err(c().delete("net0,net1")).contains("not a declared"));
        assert!(c().delete("unused255").is_ok() && c().delete("cipassword").is_ok());

        // The same keys work at create/restore time.
        let create = CreateVm::new(VmId::new(101).unwrap()).config(
            ConfigUpdate::new()
                .set_other("ostype", "l26")
                .unwrap()
                .set_other("scsihw", "virtio-scsi-single")
                .unwrap(),
        );
        client
            .node(&"pve1".parse().unwrap())
            .create_vm(&create)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn resize_clone_delete_create_restore() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        expect(
            &server,
            "PUT",
            &format!("{VM}/resize"),
            form_is(&[("disk", "scsi0"), ("size", "+10G")]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/clone"),
            form_is(&[
                ("newid", "123"),
                ("name", "web-2"),
                ("full", "1"),
                ("storage", "local-lvm"),
                ("target", "pve2"),
                ("snapname", "before-upgrade"),
                ("description", "customer 42\nweb tier"),
                ("format", "qcow2"),
                ("pool", "customers"),
                ("bwlimit", "51200"),
            ]),
            upid(),
        )
        .await;
        expect(
            &server,
            "DELETE",
            VM,
            query_is(&[("purge", "1"), ("destroy-unreferenced-disks", "1")]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            "/api2/json/nodes/pve1/qemu",
            form_is(&[
                ("vmid", "100"),
                (
                    "archive",
                    "local:backup/vzdump-qemu-100-2024_05_01-02_00_00.vma.zst",
                ),
                ("force", "1"),
                ("storage", "local-lvm"),
                ("cores", "4"),
            ]),
            upid(),
        )
        .await;

        let t = vm
            .resize_disk("scsi0".parse().unwrap(), "+10G", None)
            .await
            .unwrap();
        assert!(t.is_some());
        assert!(
            vm.resize_disk("scsi0".parse().unwrap(), "ten", None)
                .await
                .unwrap_err()
                .to_string()
                .contains("disk size")
        );
        let opts = CloneOptions::new(VmId::new(123).unwrap())
            .name("web-2")
            .unwrap()
            .full(true)
            .storage("local-lvm".parse().unwrap())
            .target("pve2".parse().unwrap())
            .snapshot("before-upgrade".parse().unwrap())
            .description("customer 42\nweb tier")
            .unwrap()
            .format(CloneFormat::Qcow2)
            .pool("customers")
            .unwrap()
            .bwlimit(51200);
        assert!(
            CloneOptions::new(VmId::new(124).unwrap())
                .description("bell\u{7}")
                .is_err()
        );
        assert!(
            CloneOptions::new(VmId::new(124).unwrap())
                .pool("a,b")
                .is_err()
        );
        vm.clone_vm(&opts).await.unwrap();
        vm.destroy(true, true).await.unwrap();
        let restore = CreateVm::restore(
            VmId::new(100).unwrap(),
            "local:backup/vzdump-qemu-100-2024_05_01-02_00_00.vma.zst"
                .parse()
                .unwrap(),
        )
        .force(true)
        .storage("local-lvm".parse().unwrap())
        .config(ConfigUpdate::new().cores(4));
        // `unique` is not sent unless asked for: the form matcher is exact.
        client
            .node(&"pve1".parse().unwrap())
            .create_vm(&restore)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn snapshots() {
    timed(async {
        let (server, client) = server_and_client().await;
        let snaps = vm(&client).snapshots();
        let name: SnapshotName = "before-upgrade".parse().unwrap();
        expect(
            &server,
            "GET",
            &format!("{VM}/snapshot"),
            query_is(&[]),
            fixture("snapshots.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/snapshot"),
            form_is(&[
                ("snapname", "before-upgrade"),
                ("description", "pre upgrade"),
                ("vmstate", "1"),
            ]),
            upid(),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{VM}/snapshot/before-upgrade"),
            query_is(&[]),
            upid(),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/snapshot/before-upgrade/rollback"),
            form_is(&[("start", "1")]),
            upid(),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/snapshot/before-upgrade/config"),
            query_is(&[]),
            data(json!({"cores": 2, "snaptime": 1700000000, "description": "pre upgrade"})),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{VM}/snapshot/before-upgrade/config"),
            form_is(&[("description", "new text")]),
            data(json!(null)),
        )
        .await;

        let list = snaps.list().await.unwrap();
        assert_eq!(list.len(), 3);
        assert!(list[2].is_current() && list[2].snapshot_name().is_none());
        assert_eq!(list[0].snapshot_name(), Some(name.clone()));
        assert_eq!(list[1].snaptime, Some(1_690_000_000));
        assert_eq!(list[1].vmstate, Some(true));
        snaps
            .create(&name, Some("pre upgrade"), true)
            .await
            .unwrap();
        snaps.delete(&name, false).await.unwrap();
        snaps.rollback(&name, true).await.unwrap();
        assert_eq!(snaps.config(&name).await.unwrap()["cores"], 2);
        snaps.set_description(&name, "new text").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn snapshot_config_is_typed() {
    timed(async {
        let (server, client) = server_and_client().await;
        let snaps = vm(&client).snapshots();
        let name: SnapshotName = "before-upgrade".parse().unwrap();
        Mock::given(method("GET"))
            .and(path(format!("{VM}/snapshot/before-upgrade/config")))
            .and(query_is(&[]))
            .and(header("authorization", TOKEN_HEADER))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture("snapshot_config.json")))
            .expect(2)
            .mount(&server)
            .await;

        let s = snaps.typed_config(&name).await.unwrap();
        // Snapshot metadata.
        assert_eq!(s.snaptime, Some(1_700_000_000));
        assert_eq!(s.parent.as_deref(), Some("base-install"));
        assert_eq!(s.description.as_deref(), Some("pre upgrade\n"));
        assert_eq!(
            s.vmstate.as_deref(),
            Some("local-lvm:vm-100-state-before-upgrade")
        );
        assert!(s.has_vmstate());
        assert_eq!(s.runningmachine.as_deref(), Some("pc-i440fx-8.1+pve0"));
        assert_eq!(s.snapstate, None);
        // The VM config as it was, typed like `config()`.
        let c = &s.config;
        assert_eq!(c.name.as_deref(), Some("web-1"));
        assert_eq!(
            (c.cores, c.sockets, c.memory),
            (Some(2), Some(1), Some(2048))
        );
        assert_eq!(c.onboot, Some(true));
        assert_eq!(c.agent, Some(true));
        let scsi0 = &c.disks[&"scsi0".parse::<DiskSlot>().unwrap()];
        assert_eq!(scsi0.volume, "local-lvm:vm-100-disk-0");
        assert_eq!(scsi0.size, Some(32 << 30));
        assert!(c.disks[&"ide2".parse::<DiskSlot>().unwrap()].is_cdrom());
        assert_eq!(c.nets[&0].mac.as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(c.ipconfigs[&0].gw.as_deref(), Some("192.0.2.1"));
        assert_eq!(c.description.as_deref(), Some("pre upgrade\n"));
        // Every key is kept raw, numbers as strings.
        assert_eq!(c.raw["snaptime"], "1700000000");
        assert_eq!(c.raw["vmgenid"], "0c9b8a7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d");
        assert_eq!(c.raw["numa"], "0");
        // The untyped call still works and sees the same data.
        assert_eq!(snaps.config(&name).await.unwrap()["cores"], 2);
    })
    .await;
}

#[tokio::test]
async fn backup_and_storage() {
    timed(async {
        let (server, client) = server_and_client().await;
        let node = client.node(&"pve1".parse().unwrap());
        expect(
            &server,
            "POST",
            "/api2/json/nodes/pve1/vzdump",
            form_is(&[
                ("vmid", "100,101"),
                ("storage", "local"),
                ("mode", "snapshot"),
                ("compress", "zstd"),
                ("notes-template", "{{guestname}}"),
                ("protected", "1"),
            ]),
            data(json!("UPID:pve1:0000A1B2:0012C3D4:6560F00D:vzdump::api@pve!ci:")),
        )
        .await;
        expect(&server, "GET", "/api2/json/nodes/pve1/storage", query_is(&[("content", "backup")]), fixture("storage.json")).await;
        expect(
            &server,
            "GET",
            "/api2/json/nodes/pve1/storage/local/content",
            query_is(&[("content", "backup"), ("vmid", "100")]),
            fixture("content.json"),
        )
        .await;
        let vol = "local:backup/vzdump-qemu-100-2024_05_01-02_00_00.vma.zst";
        let vol_path = "/api2/json/nodes/pve1/storage/local/content/local:backup%2Fvzdump-qemu-100-2024_05_01-02_00_00.vma.zst";
        Mock::given(method("DELETE"))
            .and(path(vol_path))
            .and(header("authorization", TOKEN_HEADER))
            .respond_with(ResponseTemplate::new(200).set_body_json(upid()))
            .expect(1)
            .mount(&server)
            .await;
        expect(&server, "PUT", vol_path, form_is(&[("notes", "keep"), ("protected", "1")]), data(json!(null))).await;

        let req = VzdumpRequest::new(VmId::new(100).unwrap())
            .and(VmId::new(101).unwrap())
            .storage("local".parse().unwrap())
            .mode(BackupMode::Snapshot)
            .compress(Compression::Zstd)
            .notes_template("{{guestname}}")
            .unwrap()
            .protected(true);
        let task = node.vzdump(&req).await.unwrap();
        assert_eq!(task.upid().worker_type(), "vzdump");

        let st = node.storages(Some("backup")).await.unwrap();
        assert_eq!(st[0].total, Some(100_861_726_720));
        assert_eq!(st[1].enabled, Some(true));
        let storage = node.storage(&"local".parse().unwrap());
        let items = storage.content(Some("backup"), Some(VmId::new(100).unwrap())).await.unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].size, Some(1_234_567_890));
        assert!(items[0].protected && !items[1].protected);
        assert_eq!(items[1].ctime, Some(1_714_615_200));
        assert_eq!(items[1].vmid, Some(100));
        assert_eq!(items[0].volume_id().unwrap().as_str(), vol);

        let v: VolumeId = vol.parse().unwrap();
        assert!(storage.delete_volume(&v).await.unwrap().is_some());
        storage.update_volume(&v, Some("keep"), Some(true)).await.unwrap();
        let other: VolumeId = "pbs:backup/vm/100/2024".parse().unwrap();
        assert!(storage.delete_volume(&other).await.is_err(), "volume of another storage rejected before sending");
    })
    .await;
}

#[tokio::test]
async fn console_rrd_agent_cloudinit() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        expect(
            &server,
            "POST",
            &format!("{VM}/vncproxy"),
            form_is(&[("websocket", "1"), ("generate-password", "1")]),
            fixture("vncproxy.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/rrddata"),
            query_is(&[("timeframe", "hour"), ("cf", "AVERAGE")]),
            fixture("rrddata.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/agent/ping"),
            form_is(&[]),
            data(json!({})),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/agent/network-get-interfaces"),
            query_is(&[]),
            fixture("agent_net.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/agent/set-user-password"),
            form_is(&[("username", "debian"), ("password", "hunter2!")]),
            data(json!({})),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{VM}/cloudinit"),
            form_is(&[]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/cloudinit/dump"),
            query_is(&[("type", "user")]),
            data(json!("#cloud-config\nhostname: web-1\n")),
        )
        .await;

        let proxy = vm.vncproxy(true).await.unwrap();
        assert_eq!(proxy.port, 5900);
        assert!(
            !format!("{proxy:?}").contains("PVEVNC"),
            "ticket redacted in Debug"
        );
        assert!(
            !format!("{proxy:?}").contains("secretvnc"),
            "password redacted in Debug"
        );
        let url = vm.vnc_websocket_url(&proxy);
        assert_eq!(url.scheme(), "ws", "http base gives ws; https gives wss");
        assert_eq!(url.path(), "/api2/json/nodes/pve1/qemu/100/vncwebsocket");
        assert_eq!(
            url.query(),
            Some("port=5900&vncticket=PVEVNC%3A6560F00D%3A%3Asig%2B%2F%3D")
        );
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            q[1].1,
            proxy.ticket.expose_secret(),
            "ticket round-trips through URL encoding"
        );

        let rows = vm
            .rrddata(Timeframe::Hour, Consolidation::Average)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].mem, Some(536_870_912.0));
        assert_eq!(rows[1].cpu, None, "missing field is a gap");
        assert_eq!(rows[2].time, Some(1_714_600_120));

        vm.agent_ping().await.unwrap();
        let ifs = vm.agent_network_interfaces().await.unwrap();
        assert_eq!(ifs[1].name, "eth0");
        assert_eq!(ifs[1].ip_addresses[1].ip_address, "2001:db8::10");
        assert_eq!(ifs[1].ip_addresses[1].prefix, Some(64));
        vm.agent_set_user_password("debian", &SecretString::from("hunter2!"), false)
            .await
            .unwrap();
        assert!(
            vm.agent_set_user_password("bad user", &SecretString::from("x"), false)
                .await
                .is_err()
        );
        vm.cloudinit_regenerate().await.unwrap();
        assert!(
            vm.cloudinit_dump(CloudInitDump::User)
                .await
                .unwrap()
                .starts_with("#cloud-config")
        );
    })
    .await;
}

#[tokio::test]
async fn vm_firewall() {
    timed(async {
        let (server, client) = server_and_client().await;
        let fw = vm(&client).firewall();
        let base = format!("{VM}/firewall");
        expect(
            &server,
            "GET",
            &format!("{base}/options"),
            query_is(&[]),
            fixture("fw_options_vm.json"),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/options"),
            form_is(&[
                ("enable", "1"),
                ("policy_in", "DROP"),
                ("ipfilter", "1"),
                ("digest", "bb22"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/rules"),
            query_is(&[]),
            fixture("fw_rules.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/rules/1"),
            query_is(&[]),
            fixture("fw_rule.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/rules"),
            form_is(&[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("macro", "SSH"),
                ("source", "+dc/admins"),
                ("comment", "ssh, admins"),
                ("enable", "1"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/rules/2"),
            form_is(&[("moveto", "0"), ("digest", "aa11")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/rules/3"),
            query_is(&[("digest", "aa11")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/ipset"),
            query_is(&[]),
            fixture("ipsets.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/ipset"),
            form_is(&[("name", "ipfilter-net0")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/ipset/ipfilter-net0"),
            query_is(&[]),
            fixture("ipset_entries.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/ipset/ipfilter-net0"),
            form_is(&[
                ("cidr", "192.0.2.66"),
                ("nomatch", "1"),
                ("comment", "blocked"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/ipset/ipfilter-net0/192.0.2.0%2F24"),
            form_is(&[("comment", "office")]),
            data(json!(null)),
        )
        .await;
        Mock::given(method("DELETE"))
            .and(path(format!("{base}/ipset/ipfilter-net0/192.0.2.0%2F24")))
            .and(header("authorization", TOKEN_HEADER))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!(null))))
            .expect(1)
            .mount(&server)
            .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/ipset/ipfilter-net0"),
            query_is(&[("force", "1")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/refs"),
            query_is(&[("type", "ipset")]),
            fixture("refs.json"),
        )
        .await;

        let o = fw.options().await.unwrap();
        assert_eq!(
            (o.enable, o.ipfilter, o.macfilter),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(o.policy_in, Some(Policy::Drop));
        fw.set_options(
            &FirewallOptionsUpdate::new()
                .enable(true)
                .policy_in(Policy::Drop)
                .ipfilter(true)
                .digest("bb22")
                .unwrap(),
        )
        .await
        .unwrap();
        let rules = fw.rules().await.unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].macro_name.as_deref(), Some("SSH"));
        assert!(rules[0].enable && !rules[1].enable && !rules[2].enable);
        assert_eq!(rules[1].pos, 1);
        assert_eq!(
            rules[1].dport.as_deref(),
            Some("25"),
            "numeric port decoded as text"
        );
        let r = fw.rule(1).await.unwrap();
        assert_eq!(r.icmp_type.as_deref(), Some("echo-request"));
        let spec = RuleSpec::new("in", "ACCEPT")
            .unwrap()
            .macro_name("SSH")
            .unwrap()
            .source("+dc/admins")
            .unwrap()
            .comment("ssh, admins")
            .unwrap();
        fw.create_rule(&spec).await.unwrap();
        fw.update_rule(2, &RuleSpec::update().move_to(0).digest("aa11").unwrap())
            .await
            .unwrap();
        fw.delete_rule(3, Some("aa11")).await.unwrap();

        let sets = fw.ipsets().await.unwrap();
        assert_eq!(sets[1].name, "ipfilter-net0");
        let set: FirewallName = "ipfilter-net0".parse().unwrap();
        fw.create_ipset(&set, None).await.unwrap();
        let entries = fw.ipset_entries(&set).await.unwrap();
        assert!(entries[1].nomatch && !entries[0].nomatch);
        fw.add_ipset_entry(&set, "192.0.2.66", true, Some("blocked"))
            .await
            .unwrap();
        fw.update_ipset_entry(&set, "192.0.2.0/24", None, Some("office"), None)
            .await
            .unwrap();
        fw.remove_ipset_entry(&set, "192.0.2.0/24", None)
            .await
            .unwrap();
        fw.delete_ipset(&set, true).await.unwrap();
        assert!(
            fw.add_ipset_entry(&set, "192.0.2.1,evil=1", false, None)
                .await
                .is_err()
        );
        let refs = fw.refs(Some("ipset")).await.unwrap();
        assert_eq!(refs[0].reference, "+dc/admins");
    })
    .await;
}

#[tokio::test]
async fn cluster_firewall() {
    timed(async {
        let (server, client) = server_and_client().await;
        let fw = client.cluster_firewall();
        let base = "/api2/json/cluster/firewall";
        expect(
            &server,
            "GET",
            &format!("{base}/options"),
            query_is(&[]),
            fixture("fw_options_cluster.json"),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/options"),
            form_is(&[("enable", "1"), ("policy_out", "REJECT")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/rules"),
            query_is(&[]),
            fixture("fw_rules.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/rules/0"),
            query_is(&[]),
            fixture("fw_rule.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/rules"),
            form_is(&[("type", "out"), ("action", "DROP"), ("enable", "0")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/rules/0"),
            form_is(&[("dport", "80,443"), ("proto", "tcp"), ("delete", "comment")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/rules/0"),
            query_is(&[]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/ipset"),
            query_is(&[]),
            fixture("ipsets.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/ipset"),
            form_is(&[("name", "admins"), ("comment", "office")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/ipset/admins"),
            query_is(&[]),
            fixture("ipset_entries.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/ipset/admins"),
            form_is(&[("cidr", "2001:db8::/32")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/ipset/admins/2001:db8::%2F32"),
            form_is(&[("nomatch", "1"), ("digest", "ee55")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/ipset/admins/2001:db8::%2F32"),
            query_is(&[("digest", "ee55")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/ipset/admins"),
            query_is(&[]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/aliases"),
            query_is(&[]),
            fixture("aliases.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/aliases"),
            form_is(&[
                ("name", "office"),
                ("cidr", "192.0.2.0/24"),
                ("comment", "HQ"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/aliases/office"),
            form_is(&[("cidr", "192.0.2.0/25"), ("digest", "ff66")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/aliases/office"),
            query_is(&[]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{base}/refs"),
            query_is(&[]),
            fixture("refs.json"),
        )
        .await;

        let o = fw.options().await.unwrap();
        assert_eq!((o.enable, o.ebtables), (Some(true), Some(true)));
        fw.set_options(
            &FirewallOptionsUpdate::new()
                .enable(true)
                .policy_out(Policy::Reject),
        )
        .await
        .unwrap();
        assert!(
            fw.set_options(&FirewallOptionsUpdate::new().dhcp(true))
                .await
                .is_err(),
            "VM-only option rejected at cluster level before sending"
        );
        assert_eq!(fw.rules().await.unwrap().len(), 3);
        assert_eq!(fw.rule(0).await.unwrap().kind, "out");
        fw.create_rule(&RuleSpec::new("out", "DROP").unwrap().enable(false))
            .await
            .unwrap();
        fw.update_rule(
            0,
            &RuleSpec::update()
                .dport("80,443")
                .unwrap()
                .proto("tcp")
                .unwrap()
                .delete("comment")
                .unwrap(),
        )
        .await
        .unwrap();
        fw.delete_rule(0, None).await.unwrap();
        let admins: FirewallName = "admins".parse().unwrap();
        assert_eq!(
            fw.ipsets().await.unwrap()[0].comment.as_deref(),
            Some("office")
        );
        fw.create_ipset(&admins, Some("office")).await.unwrap();
        assert_eq!(
            fw.ipset_entries(&admins).await.unwrap()[0].cidr,
            "192.0.2.0/24"
        );
        fw.add_ipset_entry(&admins, "2001:db8::/32", false, None)
            .await
            .unwrap();
        fw.update_ipset_entry(&admins, "2001:db8::/32", Some(true), None, Some("ee55"))
            .await
            .unwrap();
        fw.remove_ipset_entry(&admins, "2001:db8::/32", Some("ee55"))
            .await
            .unwrap();
        fw.delete_ipset(&admins, false).await.unwrap();
        let office: FirewallName = "office".parse().unwrap();
        assert_eq!(fw.aliases().await.unwrap()[0].cidr, "192.0.2.0/24");
        fw.create_alias(&office, "192.0.2.0/24", Some("HQ"))
            .await
            .unwrap();
        fw.update_alias(&office, "192.0.2.0/25", None, Some("ff66"))
            .await
            .unwrap();
        fw.delete_alias(&office, None).await.unwrap();
        assert_eq!(fw.refs(None).await.unwrap().len(), 2);
        assert!(fw.refs(Some("group")).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn firewall_security_groups() {
    timed(async {
        let (server, client) = server_and_client().await;
        const G: &str = "/api2/json/cluster/firewall/groups";
        const DIGEST: &str = "3f2a9c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49";
        expect(&server, "GET", G, query_is(&[]), fixture("fw_groups.json")).await;
        expect(
            &server,
            "POST",
            G,
            form_is(&[
                ("group", "webservers"),
                ("comment", "HTTP/HTTPS for web VMs"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "POST",
            G,
            form_is(&[
                ("group", "webservers"),
                ("rename", "webservers"),
                ("comment", "web tier"),
                ("digest", DIGEST),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "POST",
            G,
            form_is(&[("group", "web"), ("rename", "webservers")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{G}/mail"),
            query_is(&[]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{G}/webservers"),
            query_is(&[]),
            fixture("fw_group_rules.json"),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{G}/webservers/2"),
            query_is(&[]),
            data(
                json!({"pos": 2, "type": "in", "action": "DROP", "proto": "tcp",
                "dport": "8080:8090", "log": "info", "enable": 0, "digest": DIGEST}),
            ),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{G}/webservers"),
            form_is(&[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "443"),
                ("comment", "https"),
                ("enable", "1"),
                ("digest", DIGEST),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{G}/webservers/2"),
            form_is(&[
                ("enable", "1"),
                ("digest", DIGEST),
                ("moveto", "0"),
                ("delete", "log"),
            ]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{G}/webservers/1"),
            query_is(&[("digest", DIGEST)]),
            data(json!(null)),
        )
        .await;

        let groups = client.security_groups();
        let list = groups.list().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].group, "webservers");
        assert_eq!(list[0].comment.as_deref(), Some("HTTP/HTTPS for web VMs"));
        assert_eq!(list[1].comment, None);
        assert_eq!(list[1].digest.as_deref(), Some(DIGEST));
        let web: FirewallName = "webservers".parse().unwrap();
        groups
            .create(&web, Some("HTTP/HTTPS for web VMs"))
            .await
            .unwrap();
        groups
            .set_comment(&web, "web tier", Some(DIGEST))
            .await
            .unwrap();
        groups
            .rename(&web, &"web".parse().unwrap(), None)
            .await
            .unwrap();
        groups.delete(&"mail".parse().unwrap()).await.unwrap();
        // Refused before sending.
        let long: FirewallName = "a-very-long-group-name".parse().unwrap();
        assert!(
            groups
                .create(&long, None)
                .await
                .unwrap_err()
                .to_string()
                .contains("18")
        );
        assert!(groups.create(&web, Some("a\nb")).await.is_err());
        assert!(
            groups
                .set_comment(&web, "x", Some("not-hex"))
                .await
                .is_err()
        );

        let g = groups.group(&web);
        assert_eq!(g.name(), "webservers");
        let rules = g.rules().await.unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].macro_name.as_deref(), Some("HTTPS"));
        assert_eq!(rules[1].dport.as_deref(), Some("80"));
        assert!(!rules[2].enable);
        assert_eq!(rules[2].digest.as_deref(), Some(DIGEST));
        let r = g.rule(2).await.unwrap();
        assert_eq!((r.pos, r.log.as_deref()), (2, Some("info")));
        let spec = RuleSpec::new("in", "ACCEPT")
            .unwrap()
            .proto("tcp")
            .unwrap()
            .dport("443")
            .unwrap()
            .comment("https")
            .unwrap()
            .digest(DIGEST)
            .unwrap();
        g.create_rule(&spec).await.unwrap();
        assert!(
            g.create_rule(&RuleSpec::update().enable(true))
                .await
                .is_err()
        );
        let upd = RuleSpec::update()
            .enable(true)
            .move_to(0)
            .delete("log")
            .unwrap()
            .digest(DIGEST)
            .unwrap();
        g.update_rule(2, &upd).await.unwrap();
        g.delete_rule(1, Some(DIGEST)).await.unwrap();
        assert!(g.delete_rule(1, Some("zz")).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn task_list_status_log() {
    timed(async {
        let (server, client) = server_and_client().await;
        let node = client.node(&"pve1".parse().unwrap());
        expect(
            &server,
            "GET",
            "/api2/json/nodes/pve1/tasks",
            query_is(&[("vmid", "100"), ("limit", "50"), ("typefilter", "vzdump")]),
            fixture("tasks.json"),
        )
        .await;
        let upid_path = format!("/api2/json/nodes/pve1/tasks/{UPID}");
        expect(
            &server,
            "GET",
            &format!("{upid_path}/status"),
            query_is(&[]),
            data(json!({"status":"stopped","exitstatus":"OK","type":"qmstart","id":"100","user":"api@pve!ci","node":"pve1","pid":41394,"pstart":1229780,"starttime":1700851725,"upid":UPID})),
        )
        .await;
        expect(&server, "GET", &format!("{upid_path}/log"), query_is(&[("start", "0"), ("limit", "10")]), fixture("task_log.json")).await;

        let f = TaskFilter::new().vmid(VmId::new(100).unwrap()).limit(50).worker_type("vzdump").unwrap();
        let list = node.tasks(&f).await.unwrap();
        assert_eq!(list[0].endtime, Some(1_700_851_800));
        assert_eq!(list[1].status, None, "running task has no status yet");
        let task = client.task(UPID.parse().unwrap());
        let st = task.status().await.unwrap();
        assert_eq!(st.exitstatus.as_deref(), Some("OK"));
        let log = task.log(0, 10).await.unwrap();
        assert_eq!(log.len(), 5);
        assert!(log[1].t.contains("10%"));
    })
    .await;
}

#[tokio::test]
async fn untyped_escape_hatch() {
    timed(async {
        let (server, client) = server_and_client().await;
        expect(
            &server,
            "GET",
            "/api2/json/nodes/pve1/qemu/100/agent/info",
            query_is(&[("x", "1")]),
            data(json!({"result":{"version":"8.1"}})),
        )
        .await;
        expect(
            &server,
            "POST",
            "/api2/json/nodes/pve1/qemu/100/status/suspend",
            form_is(&[("todisk", "1")]),
            upid(),
        )
        .await;
        expect(
            &server,
            "PUT",
            "/api2/json/nodes/pve1/qemu/100/sendkey",
            form_is(&[("key", "ctrl-alt-delete")]),
            data(json!(null)),
        )
        .await;
        Mock::given(method("DELETE"))
            .and(path("/api2/json/nodes/pve1/tasks/x"))
            .respond_with(ResponseTemplate::new(200).set_body_json(data(json!(null))))
            .expect(1)
            .mount(&server)
            .await;
        let v: serde_json::Value = client
            .get("/nodes/pve1/qemu/100/agent/info", &[("x", "1")])
            .await
            .unwrap();
        assert_eq!(v["result"]["version"], "8.1");
        let u: Upid = client
            .post("/nodes/pve1/qemu/100/status/suspend", &[("todisk", "1")])
            .await
            .unwrap();
        assert_eq!(u.as_str(), UPID);
        let _: () = client
            .put(
                "/nodes/pve1/qemu/100/sendkey",
                &[("key", "ctrl-alt-delete")],
            )
            .await
            .unwrap();
        let _: () = client.delete("/nodes/pve1/tasks/x", &[]).await.unwrap();
        assert!(
            client
                .get::<serde_json::Value>("/nodes/../access", &[])
                .await
                .is_err()
        );
        assert!(client.get::<serde_json::Value>("nodes", &[]).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn vm_firewall_aliases_and_pending_config() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        let fw = vm.firewall();
        let base = format!("{VM}/firewall");
        expect(
            &server,
            "GET",
            &format!("{base}/aliases"),
            query_is(&[]),
            fixture("aliases.json"),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{base}/aliases"),
            form_is(&[("name", "gw"), ("cidr", "192.0.2.1")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "PUT",
            &format!("{base}/aliases/gw"),
            form_is(&[("cidr", "192.0.2.254"), ("comment", "new gateway")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "DELETE",
            &format!("{base}/aliases/gw"),
            query_is(&[("digest", "ff66")]),
            data(json!(null)),
        )
        .await;
        expect(
            &server,
            "GET",
            &format!("{VM}/config"),
            query_is(&[]),
            fixture("config.json"),
        )
        .await;

        assert_eq!(fw.aliases().await.unwrap()[0].name, "office");
        let gw: FirewallName = "gw".parse().unwrap();
        fw.create_alias(&gw, "192.0.2.1", None).await.unwrap();
        fw.update_alias(&gw, "192.0.2.254", Some("new gateway"), None)
            .await
            .unwrap();
        fw.delete_alias(&gw, Some("ff66")).await.unwrap();
        assert!(fw.create_alias(&gw, "not an address", None).await.is_err());
        assert_eq!(vm.config_with_pending().await.unwrap().cores, Some(2));
    })
    .await;
}

#[tokio::test]
async fn concurrency_limit_is_enforced() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(data(json!({"version": "8.2.4", "release": "8.2"})))
                    .set_delay(std::time::Duration::from_millis(100)),
            )
            .expect(6)
            .mount(&server)
            .await;
        let client = Client::builder(server.uri())
            .auth(Auth::api_token(TOKEN_ID, TOKEN_SECRET).unwrap())
            .max_concurrent_requests(2)
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let c = client.clone();
            set.spawn(async move { c.version().await.map(|_| ()) });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        // Six 100 ms answers, two at a time: at least three rounds.
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(290),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn reboot_and_hard_reset_are_separate_typed_calls() {
    timed(async {
        let (server, client) = server_and_client().await;
        let vm = vm(&client);
        let reset_upid = "UPID:pve1:0000A1B3:0012C3D5:6560F00E:qmreset:100:api@pve!ci:";
        expect(
            &server,
            "POST",
            &format!("{VM}/status/reset"),
            form_is(&[]),
            data(json!(reset_upid)),
        )
        .await;
        expect(
            &server,
            "POST",
            &format!("{VM}/status/reboot"),
            form_is(&[]),
            upid(),
        )
        .await;
        let t = vm.reset().await.unwrap();
        assert_eq!(t.upid().as_str(), reset_upid);
        assert_eq!(t.upid().worker_type(), "qmreset");
        // Reboot without a timeout sends no parameter at all.
        assert_eq!(vm.reboot(None).await.unwrap().upid().as_str(), UPID);
        // PVE refuses a reset of a stopped guest; the error names the endpoint.
        server.reset().await;
        Mock::given(method("POST"))
            .and(path(format!("{VM}/status/reset")))
            .respond_with(
                ResponseTemplate::new(500)
                    .set_body_json(json!({"data": null, "message": "VM 100 not running\n"})),
            )
            .mount(&server)
            .await;
        let err = vm.reset().await.unwrap_err();
        assert_eq!(err.status(), Some(500));
        assert!(
            err.to_string()
                .contains("POST /nodes/pve1/qemu/100/status/reset"),
            "{err}"
        );
        assert_eq!(err.message(), Some("VM 100 not running"));
    })
    .await;
}
