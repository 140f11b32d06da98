//! VM configuration (`.../config`, `.../pending`), resize, clone, delete, create/restore.

use super::{NodeHandle, VmHandle, check_text};
use crate::error::{Error, Result};
use crate::macros::{lenient_enum, wire_enum};
use crate::request::{self, Request};
use crate::task::TaskHandle;
use crate::types::{DiskSlot, NodeName, SnapshotName, StorageId, Upid, VmId, VolumeId};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::fmt;

/// Split a PVE property string (`a=1,b=2` or `default,b=2`) into its first bare value (if any)
/// and the key/value pairs.
pub fn parse_property_string(s: &str) -> (Option<String>, BTreeMap<String, String>) {
    let mut first = None;
    let mut map = BTreeMap::new();
    for (i, part) in s.split(',').enumerate() {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => {
                map.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            None if i == 0 => first = Some(part.to_owned()),
            None => {
                map.insert(part.to_owned(), String::new());
            }
        }
    }
    (first, map)
}

/// Parse a PVE size (`32G`, `512M`, `1T`, `1048576` = bytes, `10K`) into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

/// A disk (`scsiN`, `virtioN`, `ideN`, `sataN`, ...) from the VM config.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DiskSpec {
    /// Volume (`local-lvm:vm-100-disk-0`), `none`, or an ISO volume.
    pub volume: String,
    /// Size in bytes.
    pub size: Option<u64>,
    /// `cdrom` or `disk`.
    pub media: Option<String>,
    /// Image format.
    pub format: Option<String>,
    /// Cache mode.
    pub cache: Option<String>,
    /// Discard (`on`/`ignore`).
    pub discard: Option<String>,
    /// IO thread.
    pub iothread: Option<bool>,
    /// Emulate an SSD.
    pub ssd: Option<bool>,
    /// Included in backups (absent means yes).
    pub backup: Option<bool>,
    /// Read limit, MB/s.
    pub mbps_rd: Option<f64>,
    /// Write limit, MB/s.
    pub mbps_wr: Option<f64>,
    /// Read limit, operations/s.
    pub iops_rd: Option<u64>,
    /// Write limit, operations/s.
    pub iops_wr: Option<u64>,
    /// Every option as written, including the above.
    pub options: BTreeMap<String, String>,
}

impl DiskSpec {
    /// Parse a disk property string.
    pub fn parse(s: &str) -> Self {
        let (first, options) = parse_property_string(s);
        let get = |k: &str| options.get(k).cloned();
        let b = |k: &str| options.get(k).and_then(|v| crate::de::parse_bool(v));
        DiskSpec {
            volume: first.or_else(|| get("file")).unwrap_or_default(),
            size: options.get("size").and_then(|v| parse_size(v)),
            media: get("media"),
            format: get("format"),
            cache: get("cache"),
            discard: get("discard"),
            iothread: b("iothread"),
            ssd: b("ssd"),
            backup: b("backup"),
            mbps_rd: options.get("mbps_rd").and_then(|v| v.parse().ok()),
            mbps_wr: options.get("mbps_wr").and_then(|v| v.parse().ok()),
            iops_rd: options.get("iops_rd").and_then(|v| v.parse().ok()),
            iops_wr: options.get("iops_wr").and_then(|v| v.parse().ok()),
            options,
        }
    }

    /// Is this a CD-ROM drive?
    pub fn is_cdrom(&self) -> bool {
        self.media.as_deref() == Some("cdrom")
    }
}

lenient_enum! {
    /// NIC model.
    pub enum NetModel {
        /// virtio
        Virtio => "virtio",
        /// e1000
        E1000 => "e1000",
        /// e1000e
        E1000e => "e1000e",
        /// rtl8139
        Rtl8139 => "rtl8139",
        /// vmxnet3
        Vmxnet3 => "vmxnet3",
    }
}

const NET_MODELS: &[&str] = &[
    "virtio",
    "e1000",
    "e1000e",
    "rtl8139",
    "vmxnet3",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
];

/// A network device (`netN`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NetSpec {
    /// Model.
    pub model: NetModel,
    /// MAC address.
    pub mac: Option<String>,
    /// Bridge.
    pub bridge: Option<String>,
    /// VLAN tag.
    pub tag: Option<u16>,
    /// Rate limit, MB/s.
    pub rate: Option<f64>,
    /// PVE firewall on this NIC.
    pub firewall: Option<bool>,
    /// Link disconnected.
    pub link_down: Option<bool>,
    /// MTU.
    pub mtu: Option<u16>,
    /// Multiqueue.
    pub queues: Option<u16>,
    /// Other options as written (not the ones above).
    pub options: BTreeMap<String, String>,
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl NetSpec {
    /// A NIC with an explicit MAC (PVE would otherwise pick a random one) on `bridge`.
    pub fn new(model: NetModel, mac: &str, bridge: &str) -> Result<Self> {
        if !valid_mac(mac) {
            return Err(Error::invalid(
                "mac address",
                mac,
                "must be `XX:XX:XX:XX:XX:XX`",
            ));
        }
        if bridge.is_empty()
            || !bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(Error::invalid(
                "bridge",
                bridge,
                "must be an interface name",
            ));
        }
        if let NetModel::Other(m) = &model {
            check_text("nic model", m, false)?;
        }
        Ok(NetSpec {
            model,
            mac: Some(mac.to_ascii_uppercase()),
            bridge: Some(bridge.to_owned()),
            tag: None,
            rate: None,
            firewall: None,
            link_down: None,
            mtu: None,
            queues: None,
            options: BTreeMap::new(),
        })
    }

    /// VLAN tag (1..=4094).
    pub fn with_tag(mut self, tag: u16) -> Result<Self> {
        if !(1..=4094).contains(&tag) {
            return Err(Error::invalid(
                "vlan tag",
                tag.to_string(),
                "must be 1..=4094",
            ));
        }
        self.tag = Some(tag);
        Ok(self)
    }

    /// Rate limit in MB/s.
    pub fn with_rate(mut self, mbps: f64) -> Self {
        self.rate = Some(mbps);
        self
    }

    /// Enable the PVE firewall on this NIC.
    pub fn with_firewall(mut self, on: bool) -> Self {
        self.firewall = Some(on);
        self
    }

    /// Parse a `netN` value (`virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1`).
    pub fn parse(s: &str) -> Self {
        let (_, mut options) = parse_property_string(s);
        let mut model = NetModel::Other(String::new());
        let mut mac = None;
        if let Some(k) = NET_MODELS.iter().find(|m| options.contains_key(**m)) {
            let v = options.remove(*k).unwrap_or_default();
            model = k
                .parse()
                .unwrap_or_else(|e: std::convert::Infallible| match e {});
            mac = (!v.is_empty()).then_some(v);
        } else if let Some(m) = options.remove("model") {
            model = m
                .parse()
                .unwrap_or_else(|e: std::convert::Infallible| match e {});
            mac = options.remove("macaddr");
        }
        let b = |o: &mut BTreeMap<String, String>, k: &str| {
            o.remove(k).and_then(|v| crate::de::parse_bool(&v))
        };
        let n =
            |o: &mut BTreeMap<String, String>, k: &str| o.remove(k).and_then(|v| v.parse().ok());
        let firewall = b(&mut options, "firewall");
        let link_down = b(&mut options, "link_down");
        NetSpec {
            model,
            mac,
            bridge: options.remove("bridge"),
            tag: n(&mut options, "tag"),
            rate: options.remove("rate").and_then(|v| v.parse().ok()),
            firewall,
            link_down,
            mtu: n(&mut options, "mtu"),
            queues: n(&mut options, "queues"),
            options,
        }
    }
}

impl fmt::Display for NetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.model)?;
        if let Some(mac) = &self.mac {
            write!(f, "={mac}")?;
        }
        if let Some(b) = &self.bridge {
            write!(f, ",bridge={b}")?;
        }
        if let Some(t) = self.tag {
            write!(f, ",tag={t}")?;
        }
        if let Some(r) = self.rate {
            write!(f, ",rate={r}")?;
        }
        if let Some(fw) = self.firewall {
            write!(f, ",firewall={}", u8::from(fw))?;
        }
        if let Some(l) = self.link_down {
            write!(f, ",link_down={}", u8::from(l))?;
        }
        if let Some(m) = self.mtu {
            write!(f, ",mtu={m}")?;
        }
        if let Some(q) = self.queues {
            write!(f, ",queues={q}")?;
        }
        for (k, v) in &self.options {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

/// A cloud-init network config (`ipconfigN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpConfig {
    /// IPv4 `addr/prefix`, `dhcp` or absent.
    pub ip: Option<String>,
    /// IPv4 gateway.
    pub gw: Option<String>,
    /// IPv6 `addr/prefix`, `dhcp`, `auto` or absent.
    pub ip6: Option<String>,
    /// IPv6 gateway.
    pub gw6: Option<String>,
}

impl IpConfig {
    /// Empty config; fill it with the setters.
    pub fn new() -> Self {
        Self::default()
    }
    /// IPv4 address with prefix (`192.0.2.10/24`) or `dhcp`.
    pub fn ip(mut self, v: &str) -> Result<Self> {
        check_text("ip", v, false)?;
        self.ip = Some(v.to_owned());
        Ok(self)
    }
    /// IPv4 gateway.
    pub fn gw(mut self, v: &str) -> Result<Self> {
        check_text("gw", v, false)?;
        self.gw = Some(v.to_owned());
        Ok(self)
    }
    /// IPv6 address with prefix, `dhcp` or `auto`.
    pub fn ip6(mut self, v: &str) -> Result<Self> {
        check_text("ip6", v, false)?;
        self.ip6 = Some(v.to_owned());
        Ok(self)
    }
    /// IPv6 gateway.
    pub fn gw6(mut self, v: &str) -> Result<Self> {
        check_text("gw6", v, false)?;
        self.gw6 = Some(v.to_owned());
        Ok(self)
    }
    /// Parse an `ipconfigN` value.
    pub fn parse(s: &str) -> Self {
        let (_, mut m) = parse_property_string(s);
        IpConfig {
            ip: m.remove("ip"),
            gw: m.remove("gw"),
            ip6: m.remove("ip6"),
            gw6: m.remove("gw6"),
        }
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (k, v) in [
            ("ip", &self.ip),
            ("gw", &self.gw),
            ("ip6", &self.ip6),
            ("gw6", &self.gw6),
        ] {
            if let Some(v) = v {
                write!(f, "{sep}{k}={v}")?;
                sep = ",";
            }
        }
        Ok(())
    }
}

/// A VM configuration: common keys typed, and every key kept in [`raw`](Self::raw).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct VmConfig {
    /// Name.
    pub name: Option<String>,
    /// Cores per socket.
    pub cores: Option<u64>,
    /// Sockets.
    pub sockets: Option<u64>,
    /// Memory, MiB.
    pub memory: Option<u64>,
    /// Description.
    pub description: Option<String>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Guest agent enabled.
    pub agent: Option<bool>,
    /// Lock held (`backup`, `snapshot`, `rollback`, `clone`, ...).
    pub lock: Option<String>,
    /// Is a template.
    pub template: bool,
    /// Cloud-init DNS server(s).
    pub nameserver: Option<String>,
    /// Cloud-init search domain(s).
    pub searchdomain: Option<String>,
    /// Cloud-init user.
    pub ciuser: Option<String>,
    /// Disks by slot.
    pub disks: BTreeMap<DiskSlot, DiskSpec>,
    /// NICs by index.
    pub nets: BTreeMap<u32, NetSpec>,
    /// Cloud-init IP configs by index.
    pub ipconfigs: BTreeMap<u32, IpConfig>,
    /// Digest of the config file (send it back for optimistic concurrency).
    pub digest: Option<String>,
    /// Every key as a string, exactly as PVE returned it.
    pub raw: BTreeMap<String, String>,
}

fn indexed(key: &str, prefix: &str) -> Option<u32> {
    let d = key.strip_prefix(prefix)?;
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

impl VmConfig {
    /// Build from the key/value map PVE returns.
    pub fn from_map(map: BTreeMap<String, serde_json::Value>) -> Self {
        let raw: BTreeMap<String, String> = map
            .iter()
            .filter_map(|(k, v)| crate::de::value_to_string(v).map(|s| (k.clone(), s)))
            .collect();
        let s = |k: &str| raw.get(k).cloned();
        let n = |k: &str| raw.get(k).and_then(|v| v.trim().parse::<u64>().ok());
        let mut c = VmConfig {
            name: s("name"),
            cores: n("cores"),
            sockets: n("sockets"),
            memory: raw.get("memory").and_then(|v| {
                let (first, m) = parse_property_string(v);
                first
                    .or_else(|| m.get("current").cloned())
                    .and_then(|x| x.parse().ok())
            }),
            description: s("description"),
            onboot: raw.get("onboot").and_then(|v| crate::de::parse_bool(v)),
            agent: raw.get("agent").and_then(|v| {
                let (first, m) = parse_property_string(v);
                first
                    .or_else(|| m.get("enabled").cloned())
                    .and_then(|x| crate::de::parse_bool(&x))
            }),
            lock: s("lock"),
            template: raw
                .get("template")
                .and_then(|v| crate::de::parse_bool(v))
                .unwrap_or(false),
            nameserver: s("nameserver"),
            searchdomain: s("searchdomain"),
            ciuser: s("ciuser"),
            digest: s("digest"),
            ..Default::default()
        };
        for (k, v) in &raw {
            if let Ok(slot) = k.parse::<DiskSlot>() {
                c.disks.insert(slot, DiskSpec::parse(v));
            } else if let Some(i) = indexed(k, "net") {
                c.nets.insert(i, NetSpec::parse(v));
            } else if let Some(i) = indexed(k, "ipconfig") {
                c.ipconfigs.insert(i, IpConfig::parse(v));
            }
        }
        c.raw = raw;
        c
    }
}

impl<'de> serde::Deserialize<'de> for VmConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        Ok(VmConfig::from_map(map))
    }
}

/// One entry of `GET .../pending`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct PendingItem {
    /// Config key.
    pub key: String,
    /// Current value.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub value: Option<String>,
    /// Pending new value.
    #[serde(default, deserialize_with = "crate::de::opt_string")]
    pub pending: Option<String>,
    /// 1: pending deletion, 2: forced deletion.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub delete: Option<u64>,
}

/// A set of config changes (`PUT`/`POST .../config`, and overrides at create/restore).
#[derive(Debug, Clone, Default)]
pub struct ConfigUpdate {
    typed: Vec<(&'static str, String)>,
    indexed: Vec<(String, String)>,
    cipassword: Option<SecretString>,
    delete: Vec<String>,
    digest: Option<String>,
    other: Vec<(String, String)>,
}

/// Keys [`ConfigUpdate`] has a typed setter for (indexed ones as `x[n]`).
const TYPED_KEYS: &[&str] = &[
    "name",
    "cores",
    "sockets",
    "memory",
    "description",
    "onboot",
    "agent",
    "nameserver",
    "searchdomain",
    "ciuser",
    "cipassword",
    "net[n]",
    "ipconfig[n]",
    "scsi[n]",
    "virtio[n]",
    "ide[n]",
    "sata[n]",
];

/// Parameters of `PUT .../config` that steer the request instead of naming a config key.
const CONTROL_KEYS: &[&str] = &["delete", "digest", "skiplock", "revert", "force"];

/// The declaration of `key` among the config keys of `PUT .../config` in the catalogue (with
/// PVE's index ranges), unless it is a control parameter.
fn declared_config_key(key: &str) -> Option<&'static (&'static str, request::ParamKind)> {
    if CONTROL_KEYS.contains(&key) {
        return None;
    }
    request::QEMU_CONFIG_PUT
        .params
        .iter()
        .find(|(p, _)| !CONTROL_KEYS.contains(p) && request::vm_config_key_matches(p, key))
}

impl ConfigUpdate {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }
    fn set(mut self, k: &'static str, v: String) -> Self {
        self.typed.retain(|(key, _)| *key != k);
        self.typed.push((k, v));
        self
    }
    /// VM name (a DNS name).
    pub fn name(self, name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !ok {
            return Err(Error::invalid("vm name", name, "must be a DNS name"));
        }
        Ok(self.set("name", name.to_owned()))
    }
    /// Cores per socket.
    pub fn cores(self, n: u32) -> Self {
        self.set("cores", n.to_string())
    }
    /// Sockets.
    pub fn sockets(self, n: u32) -> Self {
        self.set("sockets", n.to_string())
    }
    /// Memory in MiB.
    pub fn memory_mib(self, mib: u64) -> Self {
        self.set("memory", mib.to_string())
    }
    /// Description.
    pub fn description(self, text: &str) -> Self {
        self.set("description", text.to_owned())
    }
    /// Start at boot.
    pub fn onboot(self, yes: bool) -> Self {
        self.set("onboot", u8::from(yes).to_string())
    }
    /// Enable the guest agent.
    pub fn agent(self, enabled: bool) -> Self {
        self.set("agent", u8::from(enabled).to_string())
    }
    /// Cloud-init DNS servers (space separated).
    pub fn nameserver(self, v: &str) -> Result<Self> {
        check_text("nameserver", v, false)?;
        Ok(self.set("nameserver", v.to_owned()))
    }
    /// Cloud-init search domains.
    pub fn searchdomain(self, v: &str) -> Result<Self> {
        check_text("searchdomain", v, false)?;
        Ok(self.set("searchdomain", v.to_owned()))
    }
    /// Cloud-init user.
    pub fn ciuser(self, v: &str) -> Result<Self> {
        check_text("ciuser", v, false)?;
        Ok(self.set("ciuser", v.to_owned()))
    }
    /// Cloud-init password (a secret, never logged).
    pub fn cipassword(mut self, v: SecretString) -> Self {
        self.cipassword = Some(v);
        self
    }
    /// Set NIC `netN`.
    pub fn net(mut self, index: u32, spec: &NetSpec) -> Result<Self> {
        if spec.mac.is_none() {
            return Err(Error::invalid(
                "net",
                spec.to_string(),
                "a MAC address is required",
            ));
        }
        self.indexed.push((format!("net{index}"), spec.to_string()));
        Ok(self)
    }
    /// Set cloud-init `ipconfigN`.
    pub fn ipconfig(mut self, index: u32, cfg: &IpConfig) -> Self {
        self.indexed
            .push((format!("ipconfig{index}"), cfg.to_string()));
        self
    }
    /// Set a disk (`scsi0`, ...) to a raw property string (e.g. `local-lvm:32` to allocate).
    pub fn disk(mut self, slot: DiskSlot, spec: &str) -> Result<Self> {
        check_text("disk", spec, true)?;
        if matches!(
            slot.bus(),
            crate::types::DiskBus::EfiDisk | crate::types::DiskBus::TpmState
        ) {
            return Err(Error::invalid(
                "disk slot",
                slot.to_string(),
                "not supported here",
            ));
        }
        self.indexed.push((slot.to_string(), spec.to_owned()));
        Ok(self)
    }
    /// Delete this key. It must be a config key the client declares for `PUT .../config` (see
    /// [`request::catalogue`], indexed keys within PVE's ranges, e.g. `unused0..=255`); control
    /// parameters (`digest`, `delete`, ...) are refused.
    pub fn delete(mut self, key: &str) -> Result<Self> {
        if declared_config_key(key).is_none() {
            return Err(Error::invalid(
                "config key",
                key,
                "not a declared config key of PUT /nodes/{node}/qemu/{vmid}/config",
            ));
        }
        if !self.delete.iter().any(|k| k == key) {
            self.delete.push(key.to_owned());
        }
        Ok(self)
    }

    /// Set a config key that has no typed setter (`tags`, `boot`, `cpu`, `unused3`, `hostpci0`,
    /// ...), checked before any request is made:
    ///
    /// - the key must be a declared parameter of `PUT /nodes/{node}/qemu/{vmid}/config` in
    ///   [`request::catalogue`] (so the conformance test covers it), indexed keys within PVE's
    ///   ranges (`unused[n]`: 0..=255, `virtio[n]`: 0..=15, ...);
    /// - keys with a typed setter (`name`, `cores`, `net0`, `scsi0`, ...) and control parameters
    ///   (`delete`, `digest`, `skiplock`, ...) are refused: use the typed method;
    /// - the value must not be empty (use [`delete`](Self::delete)) nor contain control
    ///   characters or line breaks, and must fit the declared type (integer, number, boolean
    ///   `0`/`1`/`true`/`false`/`yes`/`no`/`on`/`off`, sent as `0`/`1`).
    ///
    /// Setting the same key again replaces the value.
    pub fn set_other(mut self, key: &str, value: &str) -> Result<Self> {
        let Some((_, kind)) = declared_config_key(key) else {
            return Err(Error::invalid(
                "config key",
                key,
                "not a declared config key of PUT /nodes/{node}/qemu/{vmid}/config",
            ));
        };
        if TYPED_KEYS
            .iter()
            .any(|t| request::vm_config_key_matches(t, key))
        {
            return Err(Error::invalid(
                "config key",
                key,
                "has a typed setter on ConfigUpdate; use it",
            ));
        }
        let bad = |reason: &str| Error::invalid("config value", format!("{key}: {value}"), reason);
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(bad(
                "must be non-empty without control characters or line breaks",
            ));
        }
        let value = match kind {
            request::ParamKind::String => value.to_owned(),
            request::ParamKind::Integer => match value.parse::<i64>() {
                Ok(n) => n.to_string(),
                Err(_) => return Err(bad("must be an integer")),
            },
            request::ParamKind::Number => match value.parse::<f64>() {
                Ok(n) if n.is_finite() => value.to_owned(),
                _ => return Err(bad("must be a number")),
            },
            request::ParamKind::Boolean => match crate::de::parse_bool(value) {
                Some(b) => u8::from(b).to_string(),
                None => return Err(bad("must be a boolean")),
            },
        };
        self.other.retain(|(k, _)| k != key);
        self.other.push((key.to_owned(), value));
        Ok(self)
    }
    /// Only apply if the config still has this digest.
    pub fn digest(mut self, digest: &str) -> Result<Self> {
        if digest.is_empty() || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid("digest", digest, "must be hex"));
        }
        self.digest = Some(digest.to_owned());
        Ok(self)
    }

    fn apply(&self, req: &mut Request, with_delete: bool) {
        for (k, v) in &self.typed {
            req.push(k, v.as_str());
        }
        for (k, v) in &self.indexed {
            req.push(k, v.as_str());
        }
        for (k, v) in &self.other {
            req.push(k, v.as_str());
        }
        if let Some(p) = &self.cipassword {
            req.push("cipassword", p.expose_secret());
        }
        if with_delete {
            if !self.delete.is_empty() {
                req.push("delete", self.delete.join(","));
            }
            if let Some(d) = &self.digest {
                req.push("digest", d.as_str());
            }
        }
    }
}

impl VmHandle {
    /// `GET .../config?current=1`: the running config without pending changes.
    pub async fn config(&self) -> Result<VmConfig> {
        let (n, v) = self.args();
        self.client
            .call(Request::new(&request::QEMU_CONFIG_GET, &[&n, &v]).param("current", true))
            .await
    }

    /// `GET .../config`: the config with pending changes applied.
    pub async fn config_with_pending(&self) -> Result<VmConfig> {
        let (n, v) = self.args();
        self.client
            .call(Request::new(&request::QEMU_CONFIG_GET, &[&n, &v]))
            .await
    }

    /// `GET .../pending`: each key with current and pending value.
    pub async fn pending(&self) -> Result<Vec<PendingItem>> {
        let (n, v) = self.args();
        self.client
            .call(Request::new(&request::QEMU_PENDING, &[&n, &v]))
            .await
    }

    /// `PUT .../config`: apply synchronously.
    pub async fn update_config(&self, update: &ConfigUpdate) -> Result<()> {
        let (n, v) = self.args();
        let mut req = Request::new(&request::QEMU_CONFIG_PUT, &[&n, &v]);
        update.apply(&mut req, true);
        self.client.call_unit(req).await
    }

    /// `POST .../config`: apply as a task (needed when disks get allocated).
    pub async fn update_config_async(&self, update: &ConfigUpdate) -> Result<TaskHandle> {
        let (n, v) = self.args();
        let mut req = Request::new(&request::QEMU_CONFIG_POST, &[&n, &v]);
        update.apply(&mut req, true);
        self.client.call_task(req).await
    }

    /// `PUT .../resize`: `size` is absolute (`32G`) or relative (`+10G`). Returns the task on PVE
    /// versions that run it as one.
    pub async fn resize_disk(
        &self,
        disk: DiskSlot,
        size: &str,
        digest: Option<&str>,
    ) -> Result<Option<TaskHandle>> {
        let s = size.strip_prefix('+').unwrap_or(size);
        if parse_size(s).is_none() || s.starts_with(['+', '-']) {
            return Err(Error::invalid(
                "disk size",
                size,
                "must be like `32G` or `+10G`",
            ));
        }
        let (n, v) = self.args();
        let req = Request::new(&request::QEMU_RESIZE, &[&n, &v])
            .param("disk", disk.to_string())
            .param("size", size)
            .opt("digest", digest);
        let upid: Option<Upid> = self.client.call(req).await?;
        Ok(upid.map(|u| self.task(u)))
    }

    /// `POST .../clone` (a task).
    pub async fn clone_vm(&self, opts: &CloneOptions) -> Result<TaskHandle> {
        let (n, v) = self.args();
        let req = Request::new(&request::QEMU_CLONE, &[&n, &v])
            .param("newid", opts.newid)
            .opt("name", opts.name.as_deref())
            .opt("full", opts.full)
            .opt("target", opts.target.as_ref().map(|t| t.to_string()))
            .opt("storage", opts.storage.as_ref().map(|s| s.to_string()))
            .opt("snapname", opts.snapname.as_ref().map(|s| s.to_string()))
            .opt("description", opts.description.as_deref())
            .opt("format", opts.format.map(|f| f.as_str()))
            .opt("pool", opts.pool.as_deref())
            .opt("bwlimit", opts.bwlimit);
        self.client.call_task(req).await
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}` (a task). `purge` also removes the VM from backup
    /// jobs, HA and replication; `destroy_unreferenced_disks` removes disks not in the config.
    pub async fn destroy(
        &self,
        purge: bool,
        destroy_unreferenced_disks: bool,
    ) -> Result<TaskHandle> {
        let (n, v) = self.args();
        let req = Request::new(&request::QEMU_DELETE, &[&n, &v])
            .param("purge", purge)
            .param("destroy-unreferenced-disks", destroy_unreferenced_disks);
        self.client.call_task(req).await
    }
}

/// Options of `POST .../clone`.
#[derive(Debug, Clone)]
pub struct CloneOptions {
    newid: VmId,
    name: Option<String>,
    full: Option<bool>,
    target: Option<NodeName>,
    storage: Option<StorageId>,
    snapname: Option<SnapshotName>,
    description: Option<String>,
    format: Option<CloneFormat>,
    pool: Option<String>,
    bwlimit: Option<u64>,
}

wire_enum! {
    /// Image format of a full clone's disks (`format`).
    pub enum CloneFormat {
        /// raw
        Raw => "raw",
        /// qcow2
        Qcow2 => "qcow2",
        /// vmdk
        Vmdk => "vmdk",
    }
}

impl CloneOptions {
    /// Clone into `newid`.
    pub fn new(newid: VmId) -> Self {
        CloneOptions {
            newid,
            name: None,
            full: None,
            target: None,
            storage: None,
            snapname: None,
            description: None,
            format: None,
            pool: None,
            bwlimit: None,
        }
    }
    /// Name of the new VM.
    pub fn name(mut self, name: &str) -> Result<Self> {
        check_text("vm name", name, false)?;
        self.name = Some(name.to_owned());
        Ok(self)
    }
    /// Full clone instead of a linked clone.
    pub fn full(mut self, yes: bool) -> Self {
        self.full = Some(yes);
        self
    }
    /// Target node.
    pub fn target(mut self, node: NodeName) -> Self {
        self.target = Some(node);
        self
    }
    /// Target storage (full clones).
    pub fn storage(mut self, storage: StorageId) -> Self {
        self.storage = Some(storage);
        self
    }
    /// Clone from this snapshot.
    pub fn snapshot(mut self, name: SnapshotName) -> Self {
        self.snapname = Some(name);
        self
    }
    /// Description of the new VM (free text: line breaks allowed, other control characters
    /// refused).
    pub fn description(mut self, text: &str) -> Result<Self> {
        check_text("description", text, true)?;
        self.description = Some(text.to_owned());
        Ok(self)
    }
    /// Image format of the target disks (full clones on file storages).
    pub fn format(mut self, format: CloneFormat) -> Self {
        self.format = Some(format);
        self
    }
    /// Add the new VM to this resource pool.
    pub fn pool(mut self, pool: &str) -> Result<Self> {
        let ok = !pool.is_empty()
            && pool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !ok {
            return Err(Error::invalid("pool", pool, "must be a pool id"));
        }
        self.pool = Some(pool.to_owned());
        Ok(self)
    }
    /// I/O bandwidth limit in KiB/s.
    pub fn bwlimit(mut self, kib_per_s: u64) -> Self {
        self.bwlimit = Some(kib_per_s);
        self
    }
}

/// `POST /nodes/{node}/qemu`: create a VM, or restore one from a backup archive.
#[derive(Debug, Clone)]
pub struct CreateVm {
    vmid: VmId,
    archive: Option<VolumeId>,
    force: Option<bool>,
    storage: Option<StorageId>,
    unique: Option<bool>,
    start: Option<bool>,
    config: ConfigUpdate,
}

impl CreateVm {
    /// Create an empty VM `vmid`; add settings with [`config`](Self::config).
    pub fn new(vmid: VmId) -> Self {
        CreateVm {
            vmid,
            archive: None,
            force: None,
            storage: None,
            unique: None,
            start: None,
            config: ConfigUpdate::new(),
        }
    }
    /// Restore `vmid` from `archive`. `unique` stays unset so MAC addresses and the SMBIOS UUID
    /// are preserved.
    pub fn restore(vmid: VmId, archive: VolumeId) -> Self {
        CreateVm {
            archive: Some(archive),
            ..CreateVm::new(vmid)
        }
    }
    /// Overwrite an existing VM (restore).
    pub fn force(mut self, yes: bool) -> Self {
        self.force = Some(yes);
        self
    }
    /// Default storage for the disks.
    pub fn storage(mut self, s: StorageId) -> Self {
        self.storage = Some(s);
        self
    }
    /// Assign new MACs and UUID (changes the guest's identity; off unless asked for).
    pub fn unique(mut self, yes: bool) -> Self {
        self.unique = Some(yes);
        self
    }
    /// Start after creation.
    pub fn start(mut self, yes: bool) -> Self {
        self.start = Some(yes);
        self
    }
    /// Config settings (override the archive's non-disk options on restore). Deletions and
    /// digest are ignored here.
    pub fn config(mut self, config: ConfigUpdate) -> Self {
        self.config = config;
        self
    }
}

impl NodeHandle {
    /// `POST /nodes/{node}/qemu` (a task): create or restore a VM.
    pub async fn create_vm(&self, spec: &CreateVm) -> Result<TaskHandle> {
        let node = self.node.to_string();
        let mut req = Request::new(&request::QEMU_CREATE, &[&node])
            .param("vmid", spec.vmid)
            .opt("archive", spec.archive.as_ref().map(|a| a.to_string()))
            .opt("force", spec.force)
            .opt("storage", spec.storage.as_ref().map(|s| s.to_string()))
            .opt("unique", spec.unique)
            .opt("start", spec.start);
        spec.config.apply(&mut req, false);
        self.client.call_task(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_net_parse() {
        let d = DiskSpec::parse(
            "local-lvm:vm-100-disk-0,iothread=1,size=32G,mbps_rd=100,iops_wr=500,backup=0",
        );
        assert_eq!(d.volume, "local-lvm:vm-100-disk-0");
        assert_eq!(d.size, Some(32 << 30));
        assert_eq!(d.mbps_rd, Some(100.0));
        assert_eq!(d.iops_wr, Some(500));
        assert_eq!(d.iothread, Some(true));
        assert_eq!(d.backup, Some(false));
        let c = DiskSpec::parse("none,media=cdrom");
        assert!(c.is_cdrom());
        let n = NetSpec::parse(
            "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=20,rate=12.5,firewall=1,queues=4",
        );
        assert_eq!(n.model, NetModel::Virtio);
        assert_eq!(n.mac.as_deref(), Some("BC:24:11:AA:BB:CC"));
        assert_eq!(n.bridge.as_deref(), Some("vmbr0"));
        assert_eq!(n.tag, Some(20));
        assert_eq!(n.rate, Some(12.5));
        assert_eq!(n.firewall, Some(true));
        assert_eq!(n.queues, Some(4));
        assert_eq!(NetSpec::parse(&n.to_string()), n);
        let ip = IpConfig::parse("ip=192.0.2.10/24,gw=192.0.2.1,ip6=auto");
        assert_eq!(ip.ip.as_deref(), Some("192.0.2.10/24"));
        assert_eq!(ip.ip6.as_deref(), Some("auto"));
        assert_eq!(IpConfig::parse(&ip.to_string()), ip);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("abc"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn net_requires_valid_mac() {
        assert!(NetSpec::new(NetModel::Virtio, "BC:24:11:00:00:01", "vmbr0").is_ok());
        assert!(NetSpec::new(NetModel::Virtio, "BC:24:11:00:00", "vmbr0").is_err());
        assert!(NetSpec::new(NetModel::Virtio, "BC:24:11:00:00:01", "vmbr0,tag=5").is_err());
    }
}

#[cfg(test)]
mod text_tests {
    use super::super::check_text;

    #[test]
    fn free_text_allows_line_breaks_only() {
        assert!(check_text("notes", "line 1\nline 2, a=b", true).is_ok());
        assert!(check_text("notes", "bell\u{7}", true).is_err());
        assert!(check_text("ip", "10.0.0.1/24,gw=1", false).is_err());
        assert!(check_text("ip", "10.0.0.1/24\n", false).is_err());
    }
}
