//! PVE's own data shapes: the VM config map and its property strings, parsed into typed values.
//!
//! Every type here parses what PVE sends and prints what PVE accepts; `parse(print(v)) == v`
//! is checked by property tests. Keys this crate does not interpret are kept, in order, in an
//! `extra` list so a rewrite never drops them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{MacAddr, StorageId, VolumeId, serde_via_str};

/// Splits a property string into `(key, value)` items; an item without `=` has no key.
fn items(s: &str) -> impl Iterator<Item = (Option<&str>, &str)> {
    s.split(',')
        .filter(|i| !i.is_empty())
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (Some(k), v),
            None => (None, i),
        })
}

fn prop_err(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::invalid(what, value, reason)
}

fn check_extra_value(what: &'static str, s: &str, v: &str) -> Result<(), Error> {
    if v.chars().any(|c| c.is_control() || c == ',') {
        return Err(prop_err(
            what,
            s,
            "value contains `,` or control characters",
        ));
    }
    Ok(())
}

fn write_extra(f: &mut fmt::Formatter<'_>, extra: &[(String, String)]) -> fmt::Result {
    for (k, v) in extra {
        write!(f, ",{k}={v}")?;
    }
    Ok(())
}

/// The `lock` a VM config carries while an operation holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// A vzdump backup is running.
    Backup,
    /// A clone is running.
    Clone,
    /// The VM is being created (or restored).
    Create,
    /// A migration is running.
    Migrate,
    /// A snapshot rollback is running.
    Rollback,
    /// A snapshot is being taken.
    Snapshot,
    /// A snapshot is being deleted.
    SnapshotDelete,
    /// The VM is suspending to disk.
    Suspending,
    /// The VM is suspended to disk.
    Suspended,
    /// A lock this crate does not know, kept verbatim.
    Other(String),
}

impl LockKind {
    /// Whether this lock is held by a backup or a restore (PVE locks a restore as `create`).
    pub fn is_backup_or_restore(&self) -> bool {
        matches!(self, Self::Backup | Self::Create)
    }
}

impl FromStr for LockKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "backup" => Self::Backup,
            "clone" => Self::Clone,
            "create" => Self::Create,
            "migrate" => Self::Migrate,
            "rollback" => Self::Rollback,
            "snapshot" => Self::Snapshot,
            "snapshot-delete" => Self::SnapshotDelete,
            "suspending" => Self::Suspending,
            "suspended" => Self::Suspended,
            "" => return Err(prop_err("lock", s, "empty")),
            other => Self::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Backup => "backup",
            Self::Clone => "clone",
            Self::Create => "create",
            Self::Migrate => "migrate",
            Self::Rollback => "rollback",
            Self::Snapshot => "snapshot",
            Self::SnapshotDelete => "snapshot-delete",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Other(s) => s,
        })
    }
}
serde_via_str!(LockKind);

/// A disk size, kept in bytes; printed in the largest exact unit (`100G`, `1536M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DiskSize(u64);

impl DiskSize {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * 1024 * 1024;
    const TIB: u64 = 1024 * 1024 * 1024 * 1024;

    /// A size in bytes.
    pub fn from_bytes(b: u64) -> Self {
        Self(b)
    }

    /// A size in GiB.
    pub fn from_gib(g: u64) -> Self {
        Self(g.saturating_mul(Self::GIB))
    }

    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// GiB, as a float for display.
    pub fn gib(self) -> f64 {
        self.0 as f64 / Self::GIB as f64
    }
}

impl FromStr for DiskSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            prop_err(
                "disk size",
                s,
                "expected a number with an optional K, M, G or T suffix",
            )
        };
        let (num, mult) = match s.as_bytes().last() {
            Some(b'K') => (&s[..s.len() - 1], Self::KIB),
            Some(b'M') => (&s[..s.len() - 1], Self::MIB),
            Some(b'G') => (&s[..s.len() - 1], Self::GIB),
            Some(b'T') => (&s[..s.len() - 1], Self::TIB),
            Some(_) => (s, 1),
            None => return Err(bad()),
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(bad());
        }
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(Self).ok_or_else(bad);
        }
        let f: f64 = num.parse().map_err(|_| bad())?;
        let bytes = f * mult as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Self(bytes.round() as u64))
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, suffix) in [
            (Self::TIB, 'T'),
            (Self::GIB, 'G'),
            (Self::MIB, 'M'),
            (Self::KIB, 'K'),
        ] {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{suffix}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A throughput limit in MB/s as PVE takes it (`rate=12`, `mbps_rd=100.5`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct MbPerSec(f64);

impl MbPerSec {
    /// Validates: finite and not negative.
    pub fn new(v: f64) -> Result<Self, Error> {
        if v.is_finite() && v >= 0.0 {
            Ok(Self(v))
        } else {
            Err(prop_err(
                "rate",
                &v.to_string(),
                "must be a finite number >= 0",
            ))
        }
    }

    /// The value in MB/s.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for MbPerSec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl FromStr for MbPerSec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(prop_err("rate", s, "must be a number >= 0"));
        }
        Self::new(
            s.parse()
                .map_err(|_| prop_err("rate", s, "must be a number >= 0"))?,
        )
    }
}

impl fmt::Display for MbPerSec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A NIC model (`virtio`, `e1000`, `vmxnet3` ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NicModel(String);

impl NicModel {
    /// The models PVE knows; a net property string starts with one of them.
    pub const KNOWN: &'static [&'static str] = &[
        "virtio",
        "e1000",
        "e1000-82540em",
        "e1000-82544gc",
        "e1000-82545em",
        "e1000e",
        "i82551",
        "i82557b",
        "i82559er",
        "ne2k_isa",
        "ne2k_pci",
        "pcnet",
        "rtl8139",
        "vmxnet3",
    ];

    /// `virtio`.
    pub fn virtio() -> Self {
        Self("virtio".into())
    }

    /// The model name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NicModel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if Self::KNOWN.contains(&s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(prop_err("nic model", s, "not a model pve knows"))
        }
    }
}

impl fmt::Display for NicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(NicModel);

/// A `netN` property: `virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetDevice {
    /// The NIC model.
    pub model: NicModel,
    /// The MAC; `None` means PVE will generate a random one (always write it explicitly).
    pub mac: Option<MacAddr>,
    /// The bridge (`vmbr0`).
    pub bridge: Option<String>,
    /// The VLAN tag (1..=4094).
    pub tag: Option<u16>,
    /// The rate limit in MB/s.
    pub rate: Option<MbPerSec>,
    /// Whether the PVE firewall filters this NIC.
    pub firewall: Option<bool>,
    /// Other keys, kept in order.
    pub extra: Vec<(String, String)>,
}

fn parse_bool01(what: &'static str, s: &str, v: &str) -> Result<bool, Error> {
    match v {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(prop_err(what, s, format!("`{v}` is not 0 or 1"))),
    }
}

fn valid_bridge(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 15
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

impl NetDevice {
    /// A NIC of `model` with the given MAC and nothing else set.
    pub fn new(model: NicModel, mac: Option<MacAddr>) -> Self {
        Self {
            model,
            mac,
            bridge: None,
            tag: None,
            rate: None,
            firewall: None,
            extra: Vec::new(),
        }
    }
}

impl FromStr for NetDevice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        const W: &str = "net device";
        let mut model = None;
        let mut dev = Self::new(NicModel::virtio(), None);
        for (k, v) in items(s) {
            match k {
                None if NicModel::KNOWN.contains(&v) && model.is_none() => model = Some(v.parse()?),
                None => return Err(prop_err(W, s, format!("unexpected item `{v}`"))),
                Some("model") => model = Some(v.parse()?),
                Some("macaddr") => dev.mac = Some(v.parse()?),
                Some(m) if NicModel::KNOWN.contains(&m) => {
                    model = Some(m.parse()?);
                    dev.mac = Some(v.parse()?);
                }
                Some("bridge") => {
                    if !valid_bridge(v) {
                        return Err(prop_err(W, s, format!("invalid bridge `{v}`")));
                    }
                    dev.bridge = Some(v.to_owned());
                }
                Some("tag") => {
                    let t: u16 = v
                        .parse()
                        .map_err(|_| prop_err(W, s, format!("invalid tag `{v}`")))?;
                    if !(1..=4094).contains(&t) {
                        return Err(prop_err(W, s, format!("tag `{v}` is not 1..=4094")));
                    }
                    dev.tag = Some(t);
                }
                Some("rate") => dev.rate = Some(v.parse()?),
                Some("firewall") => dev.firewall = Some(parse_bool01(W, s, v)?),
                Some(k) => {
                    check_extra_value(W, s, v)?;
                    dev.extra.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        dev.model = model.ok_or_else(|| prop_err(W, s, "no nic model"))?;
        Ok(dev)
    }
}

impl fmt::Display for NetDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mac {
            Some(m) => write!(f, "{}={m}", self.model)?,
            None => write!(f, "{}", self.model)?,
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
        write_extra(f, &self.extra)
    }
}

/// Bandwidth and IOPS limits of a disk (`mbps_rd`, `mbps_wr`, `iops_rd`, `iops_wr`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskLimits {
    /// Read MB/s.
    pub mbps_rd: Option<MbPerSec>,
    /// Write MB/s.
    pub mbps_wr: Option<MbPerSec>,
    /// Read IOPS.
    pub iops_rd: Option<u64>,
    /// Write IOPS.
    pub iops_wr: Option<u64>,
}

/// A disk property (`scsi0: local-lvm:vm-100-disk-0,size=100G,mbps_rd=100,...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// The volume (`local-lvm:vm-100-disk-0`), or a raw path for pass-through disks.
    pub volume: String,
    /// The `media` key (`cdrom` for CD drives).
    pub media: Option<String>,
    /// The size PVE records.
    pub size: Option<DiskSize>,
    /// Throughput and IOPS limits.
    pub limits: DiskLimits,
    /// Other keys, kept in order.
    pub extra: Vec<(String, String)>,
}

impl DiskSpec {
    /// Whether this is a CD/DVD drive (`media=cdrom`).
    pub fn is_cdrom(&self) -> bool {
        self.media.as_deref() == Some("cdrom")
    }

    /// The volume as a typed volume id, when it is one.
    pub fn volume_id(&self) -> Option<VolumeId> {
        self.volume.parse().ok()
    }

    /// The storage the volume lives on, when it is a volume id.
    pub fn storage(&self) -> Option<StorageId> {
        self.volume_id().map(|v| v.storage().clone())
    }
}

impl FromStr for DiskSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        const W: &str = "disk";
        let mut it = items(s);
        let volume = match it.next() {
            Some((None, v)) => v.to_owned(),
            Some((Some("file"), v)) => v.to_owned(),
            _ => return Err(prop_err(W, s, "must start with the volume")),
        };
        if volume.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(prop_err(
                W,
                s,
                "volume contains whitespace or control characters",
            ));
        }
        let mut d = Self {
            volume,
            media: None,
            size: None,
            limits: DiskLimits::default(),
            extra: Vec::new(),
        };
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| prop_err(W, s, format!("`{v}` is not a whole number")))
        };
        for (k, v) in it {
            match k {
                None => return Err(prop_err(W, s, format!("unexpected item `{v}`"))),
                Some("media") => d.media = Some(v.to_owned()),
                Some("size") => d.size = Some(v.parse()?),
                Some("mbps_rd") => d.limits.mbps_rd = Some(v.parse()?),
                Some("mbps_wr") => d.limits.mbps_wr = Some(v.parse()?),
                Some("iops_rd") => d.limits.iops_rd = Some(num(v)?),
                Some("iops_wr") => d.limits.iops_wr = Some(num(v)?),
                Some(k) => {
                    check_extra_value(W, s, v)?;
                    d.extra.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        Ok(d)
    }
}

impl fmt::Display for DiskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.volume)?;
        if let Some(m) = &self.media {
            write!(f, ",media={m}")?;
        }
        if let Some(v) = self.limits.mbps_rd {
            write!(f, ",mbps_rd={v}")?;
        }
        if let Some(v) = self.limits.mbps_wr {
            write!(f, ",mbps_wr={v}")?;
        }
        if let Some(v) = self.limits.iops_rd {
            write!(f, ",iops_rd={v}")?;
        }
        if let Some(v) = self.limits.iops_wr {
            write!(f, ",iops_wr={v}")?;
        }
        write_extra(f, &self.extra)?;
        if let Some(sz) = self.size {
            write!(f, ",size={sz}")?;
        }
        Ok(())
    }
}

/// The IPv4 part of an `ipconfigN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ip4Setting {
    /// `ip=dhcp`.
    Dhcp,
    /// A static address with prefix.
    Static(Ipv4Net),
}

/// The IPv6 part of an `ipconfigN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ip6Setting {
    /// `ip6=dhcp`.
    Dhcp,
    /// `ip6=auto` (SLAAC).
    Auto,
    /// A static address with prefix.
    Static(Ipv6Net),
}

/// A cloud-init `ipconfigN`: `ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::3/64,gw6=2001:db8::1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpConfig {
    /// IPv4 address.
    pub ip: Option<Ip4Setting>,
    /// IPv4 gateway.
    pub gw: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ip6: Option<Ip6Setting>,
    /// IPv6 gateway.
    pub gw6: Option<Ipv6Addr>,
}

impl FromStr for IpConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        const W: &str = "ipconfig";
        let mut c = Self::default();
        for (k, v) in items(s) {
            let bad = || prop_err(W, s, format!("invalid value `{v}`"));
            match k {
                Some("ip") => {
                    c.ip = Some(if v == "dhcp" {
                        Ip4Setting::Dhcp
                    } else {
                        Ip4Setting::Static(v.parse().map_err(|_| bad())?)
                    })
                }
                Some("gw") => c.gw = Some(v.parse().map_err(|_| bad())?),
                Some("ip6") => {
                    c.ip6 = Some(match v {
                        "dhcp" => Ip6Setting::Dhcp,
                        "auto" => Ip6Setting::Auto,
                        _ => Ip6Setting::Static(v.parse().map_err(|_| bad())?),
                    })
                }
                Some("gw6") => c.gw6 = Some(v.parse().map_err(|_| bad())?),
                _ => return Err(prop_err(W, s, format!("unknown item `{v}`"))),
            }
        }
        Ok(c)
    }
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match self.ip {
            Some(Ip4Setting::Dhcp) => parts.push("ip=dhcp".into()),
            Some(Ip4Setting::Static(n)) => parts.push(format!("ip={n}")),
            None => {}
        }
        if let Some(g) = self.gw {
            parts.push(format!("gw={g}"));
        }
        match self.ip6 {
            Some(Ip6Setting::Dhcp) => parts.push("ip6=dhcp".into()),
            Some(Ip6Setting::Auto) => parts.push("ip6=auto".into()),
            Some(Ip6Setting::Static(n)) => parts.push(format!("ip6={n}")),
            None => {}
        }
        if let Some(g) = self.gw6 {
            parts.push(format!("gw6={g}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// The `nameserver` value: addresses separated by spaces (`8.8.8.8 1.1.1.1`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Nameservers(pub Vec<IpAddr>);

impl FromStr for Nameservers {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        s.split([' ', ',', ';'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse()
                    .map_err(|_| prop_err("nameserver", s, format!("`{p}` is not an ip address")))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for Nameservers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// What a CD drive (`ide2: ...,media=cdrom`) holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CdromMedia {
    /// `none,media=cdrom`: the drive is empty.
    Empty,
    /// `cdrom,media=cdrom`: the host's physical drive.
    Physical,
    /// An image from a storage (an ISO, or the cloud-init drive).
    Volume(VolumeId),
}

impl CdromMedia {
    /// The config value that puts this medium in a CD drive (`<volid>,media=cdrom`).
    pub fn config_value(&self) -> String {
        match self {
            Self::Empty => "none,media=cdrom".into(),
            Self::Physical => "cdrom,media=cdrom".into(),
            Self::Volume(v) => format!("{v},media=cdrom"),
        }
    }

    /// Parses a drive value; `None` when it is not a CD drive.
    pub fn parse_drive(value: &str) -> Result<Option<Self>, Error> {
        let d: DiskSpec = value.parse()?;
        if !d.is_cdrom() {
            return Ok(None);
        }
        Ok(Some(match d.volume.as_str() {
            "none" => Self::Empty,
            "cdrom" => Self::Physical,
            v => Self::Volume(v.parse()?),
        }))
    }
}

/// The keys PVE uses for disks (`scsi0`, `virtio1`, `sata0`, `ide0`, `efidisk0`, `tpmstate0`, `unused0`).
pub fn is_disk_key(key: &str) -> bool {
    let prefixes = [
        "scsi", "virtio", "sata", "ide", "efidisk", "tpmstate", "unused",
    ];
    prefixes.iter().any(|p| {
        key.strip_prefix(p)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A VM config as PVE returns it: string keys to string values, with typed accessors.
///
/// Accessors return `Ok(None)` when the key is absent and an error naming the key when the
/// value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VmConfig(BTreeMap<String, String>);

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for VmConfig {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl VmConfig {
    /// An empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps a map.
    pub fn from_map(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// A raw value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets a raw value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    fn typed<T: FromStr<Err = Error>>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| match e {
                Error::InvalidValue { reason, .. } => {
                    Error::invalid("vm config property", format!("{key}: {v}"), reason)
                }
                other => other,
            }),
        }
    }

    fn number(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => {
                // PVE 8 allows `memory: current=2048`.
                let n = v.strip_prefix("current=").unwrap_or(v);
                n.parse().map(Some).map_err(|_| {
                    Error::invalid(
                        "vm config property",
                        format!("{key}: {v}"),
                        "not a whole number",
                    )
                })
            }
        }
    }

    /// `cores` (PVE's default is 1).
    pub fn cores(&self) -> Result<Option<u64>, Error> {
        self.number("cores")
    }

    /// `sockets` (PVE's default is 1).
    pub fn sockets(&self) -> Result<Option<u64>, Error> {
        self.number("sockets")
    }

    /// `memory` in MiB (PVE's default is 512).
    pub fn memory_mib(&self) -> Result<Option<u64>, Error> {
        self.number("memory")
    }

    /// `lock`, when one holds.
    pub fn lock(&self) -> Result<Option<LockKind>, Error> {
        self.typed("lock")
    }

    /// `netN`.
    pub fn net(&self, n: u8) -> Result<Option<NetDevice>, Error> {
        self.typed(&format!("net{n}"))
    }

    /// Every `netN` key with its parsed value, in key order.
    pub fn nets(&self) -> Result<Vec<(String, NetDevice)>, Error> {
        self.0
            .keys()
            .filter(|k| {
                k.strip_prefix("net")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|k| {
                Ok((
                    k.clone(),
                    self.typed(k)?
                        .unwrap_or_else(|| NetDevice::new(NicModel::virtio(), None)),
                ))
            })
            .collect()
    }

    /// A disk by key (`scsi0`).
    pub fn disk(&self, key: &str) -> Result<Option<DiskSpec>, Error> {
        self.typed(key)
    }

    /// Every disk key that is not a CD drive, with its parsed value.
    pub fn disks(&self) -> Result<Vec<(String, DiskSpec)>, Error> {
        let mut out = Vec::new();
        for k in self.0.keys().filter(|k| is_disk_key(k)) {
            if let Some(d) = self.disk(k)?
                && !d.is_cdrom()
            {
                out.push((k.clone(), d));
            }
        }
        Ok(out)
    }

    /// `ipconfigN`.
    pub fn ipconfig(&self, n: u8) -> Result<Option<IpConfig>, Error> {
        self.typed(&format!("ipconfig{n}"))
    }

    /// `nameserver`.
    pub fn nameservers(&self) -> Result<Option<Nameservers>, Error> {
        self.typed("nameserver")
    }

    /// `searchdomain`.
    pub fn searchdomain(&self) -> Option<&str> {
        self.get("searchdomain")
    }

    /// A CD drive by key (`ide2`); `None` when absent or not a CD drive.
    pub fn cdrom(&self, key: &str) -> Result<Option<CdromMedia>, Error> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => CdromMedia::parse_drive(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_brief_examples() {
        let n: NetDevice = "virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1"
            .parse()
            .unwrap();
        assert_eq!(n.model.as_str(), "virtio");
        assert_eq!(n.mac.unwrap().to_string(), "BC:24:11:7A:40:98");
        assert_eq!(n.bridge.as_deref(), Some("vmbr0"));
        assert_eq!(n.tag, Some(10));
        assert_eq!(n.rate.unwrap().get(), 12.0);
        assert_eq!(n.firewall, Some(true));
        assert_eq!(
            n.to_string(),
            "virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1"
        );

        let d: DiskSpec =
            "local-lvm:vm-100-disk-0,size=100G,mbps_rd=100,mbps_wr=100,iops_rd=500,iops_wr=500"
                .parse()
                .unwrap();
        assert_eq!(d.size, Some(DiskSize::from_gib(100)));
        assert_eq!(d.limits.iops_wr, Some(500));
        assert_eq!(d.storage().unwrap().as_str(), "local-lvm");

        let ip: IpConfig = "ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::3/64,gw6=2001:db8::1"
            .parse()
            .unwrap();
        assert_eq!(
            ip.to_string(),
            "ip=192.0.2.10/24,gw=192.0.2.1,ip6=2001:db8::3/64,gw6=2001:db8::1"
        );

        let ns: Nameservers = "8.8.8.8 1.1.1.1".parse().unwrap();
        assert_eq!(ns.0.len(), 2);
        assert_eq!(ns.to_string(), "8.8.8.8 1.1.1.1");

        assert_eq!(
            CdromMedia::parse_drive("iso-store:iso/Debian-12.5.0-amd64-netinst.iso,media=cdrom")
                .unwrap(),
            Some(CdromMedia::Volume(
                "iso-store:iso/Debian-12.5.0-amd64-netinst.iso"
                    .parse()
                    .unwrap()
            ))
        );
        assert_eq!(
            CdromMedia::parse_drive("none,media=cdrom").unwrap(),
            Some(CdromMedia::Empty)
        );
        assert_eq!(
            CdromMedia::parse_drive("local-lvm:vm-100-disk-1,size=4G").unwrap(),
            None
        );
    }

    #[test]
    fn net_variants_and_errors() {
        let n: NetDevice = "model=e1000,macaddr=bc:24:11:00:00:01,queues=4"
            .parse()
            .unwrap();
        assert_eq!(n.model.as_str(), "e1000");
        assert_eq!(n.extra, vec![("queues".into(), "4".into())]);
        let n: NetDevice = "virtio,bridge=vmbr1".parse().unwrap();
        assert_eq!(n.mac, None);
        assert!("virtio=zz,bridge=vmbr0".parse::<NetDevice>().is_err());
        assert!(
            "virtio=BC:24:11:7A:40:98,tag=5000"
                .parse::<NetDevice>()
                .is_err()
        );
        assert!("bridge=vmbr0".parse::<NetDevice>().is_err());
    }

    #[test]
    fn config_accessors_name_the_key() {
        let c: VmConfig = [
            ("cores", "2"),
            ("memory", "current=2048"),
            ("net0", "bogus"),
            ("lock", "backup"),
        ]
        .into_iter()
        .collect();
        assert_eq!(c.cores().unwrap(), Some(2));
        assert_eq!(c.memory_mib().unwrap(), Some(2048));
        assert_eq!(c.lock().unwrap(), Some(LockKind::Backup));
        let e = c.net(0).unwrap_err().to_string();
        assert!(e.contains("net0: bogus"), "{e}");
    }

    #[test]
    fn disk_sizes() {
        assert_eq!("1536M".parse::<DiskSize>().unwrap().to_string(), "1536M");
        assert_eq!("1.5G".parse::<DiskSize>().unwrap().to_string(), "1536M");
        assert_eq!("2048G".parse::<DiskSize>().unwrap().to_string(), "2T");
        assert!("G".parse::<DiskSize>().is_err());
        assert!("-1G".parse::<DiskSize>().is_err());
    }

    fn arb_rate() -> impl Strategy<Value = MbPerSec> {
        (0u32..100_000).prop_map(|n| MbPerSec::new(f64::from(n) / 10.0).unwrap())
    }

    fn arb_extra() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("x[a-z]{1,6}", "[a-z0-9.]{1,6}"), 0..3)
    }

    prop_compose! {
        fn arb_net()(model in proptest::sample::select(NicModel::KNOWN), mac in proptest::option::of(any::<[u8; 6]>()),
            bridge in proptest::option::of("vmbr[0-9]{1,3}"), tag in proptest::option::of(1u16..=4094),
            rate in proptest::option::of(arb_rate()), firewall in proptest::option::of(any::<bool>()), extra in arb_extra()) -> NetDevice {
            NetDevice { model: model.parse().unwrap(), mac: mac.map(MacAddr::from_bytes), bridge, tag, rate, firewall, extra }
        }
    }

    prop_compose! {
        fn arb_disk()(vol in "[a-z][a-z0-9-]{1,8}:vm-[0-9]{3}-disk-[0-9]", size in proptest::option::of(prop_oneof![
                (1u64..4096).prop_map(DiskSize::from_gib), (1u64..1 << 40).prop_map(DiskSize::from_bytes)]),
            rd in proptest::option::of(arb_rate()), wr in proptest::option::of(arb_rate()),
            ird in proptest::option::of(0u64..1_000_000), iwr in proptest::option::of(0u64..1_000_000), extra in arb_extra()) -> DiskSpec {
            DiskSpec { volume: vol, media: None, size, limits: DiskLimits { mbps_rd: rd, mbps_wr: wr, iops_rd: ird, iops_wr: iwr }, extra }
        }
    }

    prop_compose! {
        fn arb_ipconfig()(ip in proptest::option::of(prop_oneof![Just(Ip4Setting::Dhcp),
                (any::<u32>(), 0u8..=32).prop_map(|(a, p)| Ip4Setting::Static(Ipv4Net::new(a.into(), p).unwrap()))]),
            gw in proptest::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
            ip6 in proptest::option::of(prop_oneof![Just(Ip6Setting::Dhcp), Just(Ip6Setting::Auto),
                (any::<u128>(), 0u8..=128).prop_map(|(a, p)| Ip6Setting::Static(Ipv6Net::new(a.into(), p).unwrap()))]),
            gw6 in proptest::option::of(any::<u128>().prop_map(Ipv6Addr::from))) -> IpConfig {
            IpConfig { ip, gw, ip6, gw6 }
        }
    }

    proptest! {
        #[test]
        fn net_round_trips(n in arb_net()) {
            let s = n.to_string();
            prop_assert_eq!(s.parse::<NetDevice>().unwrap(), n);
        }

        #[test]
        fn disk_round_trips(d in arb_disk()) {
            let s = d.to_string();
            prop_assert_eq!(s.parse::<DiskSpec>().unwrap(), d);
        }

        #[test]
        fn ipconfig_round_trips(c in arb_ipconfig()) {
            let s = c.to_string();
            prop_assert_eq!(s.parse::<IpConfig>().unwrap(), c);
        }

        #[test]
        fn nameservers_round_trip(v in proptest::collection::vec(any::<std::net::IpAddr>(), 0..4)) {
            let n = Nameservers(v);
            prop_assert_eq!(n.to_string().parse::<Nameservers>().unwrap(), n);
        }

        #[test]
        fn mac_round_trips(b in any::<[u8; 6]>()) {
            let m = MacAddr::from_bytes(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
        }

        #[test]
        fn parse_never_panics(s in "[ -~]{0,60}") {
            let _ = s.parse::<NetDevice>();
            let _ = s.parse::<DiskSpec>();
            let _ = s.parse::<IpConfig>();
            let _ = s.parse::<DiskSize>();
        }
    }
}
