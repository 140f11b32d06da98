//! The product (the plan an admin configures) and its loading from TOML or JSON.
//!
//! Files hold a table `products` keyed by product id. Every validation error names the full
//! path of the field, e.g. `products.vps-small.snapshots.lifetime_days: must be 1..=10, got 12`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{ProductId, StorageId, VmId};
use crate::permissions::Feature;
use crate::pve::{DiskLimits, MbPerSec, NicModel, is_disk_key};

/// Which optional client-area features the product allows (overview and console always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Permissions {
    /// Performance charts.
    pub charts: bool,
    /// OS reinstall.
    pub reinstall: bool,
    /// Snapshots.
    pub snapshots: bool,
    /// Backups and their schedule.
    pub backups: bool,
    /// Root password reset.
    pub reset_password: bool,
    /// Reverse DNS.
    pub rdns: bool,
    /// ISO mount.
    pub iso: bool,
    /// Firewall management.
    pub firewall: bool,
}

impl Permissions {
    /// Every feature allowed.
    pub fn all() -> Self {
        Self {
            charts: true,
            reinstall: true,
            snapshots: true,
            backups: true,
            reset_password: true,
            rdns: true,
            iso: true,
            firewall: true,
        }
    }

    /// Whether the product allows `feature` (overview and console: always).
    pub fn allows(&self, feature: Feature) -> bool {
        match feature {
            Feature::Overview | Feature::Console | Feature::PowerControl => true,
            Feature::Charts => self.charts,
            Feature::Reinstall => self.reinstall,
            Feature::Snapshots => self.snapshots,
            Feature::Backups => self.backups,
            Feature::ResetPassword => self.reset_password,
            Feature::Rdns => self.rdns,
            Feature::Iso => self.iso,
            Feature::Firewall => self.firewall,
        }
    }
}

/// A snapshot lifetime in days, `1..=10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct LifetimeDays(u8);

impl LifetimeDays {
    /// Validates `1..=10`.
    pub fn new(days: u8) -> Result<Self, Error> {
        if (1..=10).contains(&days) {
            Ok(Self(days))
        } else {
            Err(Error::invalid(
                "snapshot lifetime",
                days.to_string(),
                "must be 1..=10 days",
            ))
        }
    }

    /// The days.
    pub fn days(self) -> u8 {
        self.0
    }

    /// The lifetime as a duration.
    pub fn duration(self) -> time::Duration {
        time::Duration::days(i64::from(self.0))
    }
}

impl<'de> Deserialize<'de> for LifetimeDays {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(u8::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Snapshot quota and lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPolicy {
    /// How many snapshots a VM may hold.
    pub quota: u32,
    /// How long a snapshot lives before the sweep removes it.
    pub lifetime: LifetimeDays,
}

/// Backup quota and storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    /// How many backups a VM may hold on `storage`.
    pub quota: u32,
    /// The PVE storage that receives the backups.
    pub storage: StorageId,
}

/// An OS template the customer may reinstall from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsTemplate {
    /// The template VM's id.
    pub vmid: VmId,
    /// The name shown in the dropdown.
    pub name: String,
}

/// CPU of the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPackage {
    /// Cores per socket.
    pub cores: u32,
    /// Sockets.
    pub sockets: u32,
}

/// A disk of the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskPackage {
    /// The config key (`scsi0`, `scsi1`, `virtio0` ...).
    pub key: String,
    /// The storage new volumes are allocated on.
    pub storage: StorageId,
    /// Size in GiB.
    pub size_gib: u64,
    /// Bandwidth and IOPS limits.
    pub limits: DiskLimits,
}

/// Network of the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPackage {
    /// The bridge (`vmbr0`).
    pub bridge: String,
    /// The VLAN tag, if any.
    pub vlan_tag: Option<u16>,
    /// The rate limit in MB/s, if any.
    pub rate: Option<MbPerSec>,
    /// The NIC model.
    pub model: NicModel,
}

/// A transport protocol of a management port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A management port protected by the lockout guard (`tcp/22`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManagementPort {
    /// Protocol.
    pub proto: Proto,
    /// Port.
    pub port: u16,
}

impl FromStr for ManagementPort {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("management port", s, "expected `tcp/PORT` or `udp/PORT`");
        let (p, n) = s.split_once('/').ok_or_else(bad)?;
        let proto = match p {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(bad()),
        };
        let port: u16 = n.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Self { proto, port })
    }
}

impl fmt::Display for ManagementPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{p}/{}", self.port)
    }
}
crate::ids::serde_via_str!(ManagementPort);

/// The plan an admin configures: permissions, quotas, templates and the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// The product id.
    pub id: ProductId,
    /// Which features the customer may use.
    pub permissions: Permissions,
    /// Snapshot quota and lifetime.
    pub snapshots: SnapshotPolicy,
    /// Backup quota and storage.
    pub backups: BackupPolicy,
    /// The storage whose ISOs the customer may mount.
    pub iso_storage: Option<StorageId>,
    /// The CD drive ISO mounts use (`iso.drive`, default `ide2`).
    #[serde(default)]
    pub iso_drive: crate::iso::CdDrive,
    /// The OS templates the customer may reinstall from.
    pub templates: Vec<OsTemplate>,
    /// CPU.
    pub cpu: CpuPackage,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// The system disk.
    pub system_disk: DiskPackage,
    /// The additional disk, if the package has one.
    pub additional_disk: Option<DiskPackage>,
    /// The network.
    pub network: NetworkPackage,
    /// Ports the firewall lockout guard protects (default `tcp/22`).
    pub lockout_ports: Vec<ManagementPort>,
}

impl Product {
    /// The template with this VMID, if the product allows it.
    pub fn template(&self, vmid: VmId) -> Option<&OsTemplate> {
        self.templates.iter().find(|t| t.vmid == vmid)
    }
}

/// All products, keyed by id, as loaded from a file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// The products.
    pub products: BTreeMap<ProductId, Product>,
}

impl Catalog {
    /// Loads and validates a TOML product file.
    pub fn from_toml_str(s: &str) -> Result<Self, Error> {
        let raw: RawFile = toml::from_str(s).map_err(|e| Error::ProductSyntax {
            message: e.to_string().trim().to_owned(),
        })?;
        raw.validate()
    }

    /// Loads and validates a JSON product file (same shape as the TOML one).
    pub fn from_json_str(s: &str) -> Result<Self, Error> {
        let raw: RawFile = serde_json::from_str(s).map_err(|e| Error::ProductSyntax {
            message: e.to_string(),
        })?;
        raw.validate()
    }

    /// A product by id.
    pub fn get(&self, id: &ProductId) -> Option<&Product> {
        self.products.get(id)
    }
}

// The file shape: plain types, checked field by field so every error names its path.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    products: BTreeMap<String, RawProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    #[serde(default)]
    permissions: Permissions,
    snapshots: RawSnapshots,
    backups: RawBackups,
    iso_storage: Option<String>,
    iso: Option<RawIso>,
    #[serde(default)]
    templates: Vec<RawTemplate>,
    cpu: RawCpu,
    memory_mib: i64,
    system_disk: RawDisk,
    additional_disk: Option<RawDisk>,
    network: RawNetwork,
    lockout_ports: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIso {
    drive: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshots {
    quota: i64,
    lifetime_days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackups {
    quota: i64,
    storage: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    vmid: i64,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpu {
    cores: i64,
    #[serde(default = "one")]
    sockets: i64,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    key: Option<String>,
    storage: String,
    size_gib: i64,
    mbps_rd: Option<f64>,
    mbps_wr: Option<f64>,
    iops_rd: Option<i64>,
    iops_wr: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    bridge: String,
    vlan_tag: Option<i64>,
    rate_mbps: Option<f64>,
    #[serde(default = "virtio")]
    model: String,
}

fn virtio() -> String {
    "virtio".into()
}

fn field_err(path: &str, field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidProduct {
        field: format!("{path}.{field}"),
        reason: reason.into(),
    }
}

fn range(path: &str, field: &str, v: i64, lo: i64, hi: i64) -> Result<i64, Error> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(field_err(
            path,
            field,
            format!("must be {lo}..={hi}, got {v}"),
        ))
    }
}

fn parsed<T: FromStr<Err = Error>>(path: &str, field: &str, v: &str) -> Result<T, Error> {
    v.parse().map_err(|e| match e {
        Error::InvalidValue { reason, .. } => field_err(path, field, format!("`{v}`: {reason}")),
        other => field_err(path, field, other.to_string()),
    })
}

fn rate(path: &str, field: &str, v: Option<f64>) -> Result<Option<MbPerSec>, Error> {
    v.map(|r| {
        MbPerSec::new(r)
            .map_err(|_| field_err(path, field, format!("must be a number >= 0, got {r}")))
    })
    .transpose()
}

impl RawDisk {
    fn validate(self, path: &str, default_key: &str) -> Result<DiskPackage, Error> {
        let key = self.key.unwrap_or_else(|| default_key.to_owned());
        let bus_ok = ["scsi", "virtio", "sata", "ide"]
            .iter()
            .any(|p| key.starts_with(p));
        if !is_disk_key(&key) || !bus_ok {
            return Err(field_err(
                path,
                "key",
                format!("`{key}` is not a disk key like `scsi0` or `virtio1`"),
            ));
        }
        let iops = |f: &str, v: Option<i64>| {
            v.map(|n| range(path, f, n, 0, i64::MAX).map(|n| n as u64))
                .transpose()
        };
        Ok(DiskPackage {
            key,
            storage: parsed(path, "storage", &self.storage)?,
            size_gib: range(path, "size_gib", self.size_gib, 1, 1 << 20)? as u64,
            limits: DiskLimits {
                mbps_rd: rate(path, "mbps_rd", self.mbps_rd)?,
                mbps_wr: rate(path, "mbps_wr", self.mbps_wr)?,
                iops_rd: iops("iops_rd", self.iops_rd)?,
                iops_wr: iops("iops_wr", self.iops_wr)?,
            },
        })
    }
}

impl RawProduct {
    fn validate(self, id: ProductId, path: &str) -> Result<Product, Error> {
        let sp = format!("{path}.snapshots");
        let snapshots = SnapshotPolicy {
            quota: range(&sp, "quota", self.snapshots.quota, 0, 1000)? as u32,
            lifetime: LifetimeDays::new(range(
                &sp,
                "lifetime_days",
                self.snapshots.lifetime_days,
                1,
                10,
            )? as u8)?,
        };
        if self.permissions.snapshots && snapshots.quota == 0 {
            return Err(field_err(
                &sp,
                "quota",
                "must be at least 1 when snapshots are allowed, got 0",
            ));
        }
        let bp = format!("{path}.backups");
        let backups = BackupPolicy {
            quota: range(&bp, "quota", self.backups.quota, 0, 1000)? as u32,
            storage: parsed(&bp, "storage", &self.backups.storage)?,
        };
        if self.permissions.backups && backups.quota == 0 {
            return Err(field_err(
                &bp,
                "quota",
                "must be at least 1 when backups are allowed, got 0",
            ));
        }
        let iso_storage = self
            .iso_storage
            .as_deref()
            .map(|s| parsed::<StorageId>(path, "iso_storage", s))
            .transpose()?;
        if self.permissions.iso && iso_storage.is_none() {
            return Err(field_err(
                path,
                "iso_storage",
                "must be set when iso mount is allowed",
            ));
        }
        let iso_drive: crate::iso::CdDrive = self
            .iso
            .and_then(|i| i.drive)
            .map(|d| parsed(&format!("{path}.iso"), "drive", &d))
            .transpose()?
            .unwrap_or_default();
        let mut templates: Vec<OsTemplate> = Vec::new();
        for (i, t) in self.templates.into_iter().enumerate() {
            let tp = format!("{path}.templates[{i}]");
            let vmid = VmId::new(range(&tp, "vmid", t.vmid, 100, 999_999_999)? as u32)?;
            if templates.iter().any(|o| o.vmid == vmid) {
                return Err(field_err(
                    &tp,
                    "vmid",
                    format!("template `{vmid}` is listed twice"),
                ));
            }
            let name = t.name.trim().to_owned();
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(field_err(&tp, "name", "must be a non-empty display name"));
            }
            templates.push(OsTemplate { vmid, name });
        }
        if self.permissions.reinstall && templates.is_empty() {
            return Err(field_err(
                path,
                "templates",
                "must list at least one template when reinstall is allowed",
            ));
        }
        let cp = format!("{path}.cpu");
        let cpu = CpuPackage {
            cores: range(&cp, "cores", self.cpu.cores, 1, 1024)? as u32,
            sockets: range(&cp, "sockets", self.cpu.sockets, 1, 16)? as u32,
        };
        let memory_mib = range(path, "memory_mib", self.memory_mib, 16, 64 << 20)? as u64;
        let system_disk = self
            .system_disk
            .validate(&format!("{path}.system_disk"), "scsi0")?;
        let additional_disk = self
            .additional_disk
            .map(|d| d.validate(&format!("{path}.additional_disk"), "scsi1"))
            .transpose()?;
        if let Some(a) = &additional_disk
            && a.key == system_disk.key
        {
            return Err(field_err(
                &format!("{path}.additional_disk"),
                "key",
                format!("`{}` is already the system disk", a.key),
            ));
        }
        for (disk, what) in [
            (Some(&system_disk), "the system disk"),
            (additional_disk.as_ref(), "the additional disk"),
        ] {
            if disk.is_some_and(|d| d.key == iso_drive.as_str()) {
                return Err(field_err(
                    &format!("{path}.iso"),
                    "drive",
                    format!("`{iso_drive}` is already {what}"),
                ));
            }
        }
        let np = format!("{path}.network");
        let n = self.network;
        if !(!n.bridge.is_empty()
            && n.bridge.len() <= 15
            && n.bridge
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-'))
        {
            return Err(field_err(
                &np,
                "bridge",
                format!("`{}` is not a bridge name", n.bridge),
            ));
        }
        let network = NetworkPackage {
            bridge: n.bridge,
            vlan_tag: n
                .vlan_tag
                .map(|t| range(&np, "vlan_tag", t, 1, 4094).map(|t| t as u16))
                .transpose()?,
            rate: rate(&np, "rate_mbps", n.rate_mbps)?,
            model: parsed(&np, "model", &n.model)?,
        };
        let lockout_ports = match self.lockout_ports {
            None => vec![ManagementPort {
                proto: Proto::Tcp,
                port: 22,
            }],
            Some(v) => v
                .iter()
                .enumerate()
                .map(|(i, p)| parsed(path, &format!("lockout_ports[{i}]"), p))
                .collect::<Result<_, _>>()?,
        };
        Ok(Product {
            id,
            permissions: self.permissions,
            snapshots,
            backups,
            iso_storage,
            iso_drive,
            templates,
            cpu,
            memory_mib,
            system_disk,
            additional_disk,
            network,
            lockout_ports,
        })
    }
}

impl RawFile {
    fn validate(self) -> Result<Catalog, Error> {
        let mut products = BTreeMap::new();
        for (id, raw) in self.products {
            let path = format!("products.{id}");
            let pid: ProductId = id.parse().map_err(|e: Error| Error::InvalidProduct {
                field: path.clone(),
                reason: e.to_string(),
            })?;
            products.insert(pid.clone(), raw.validate(pid, &path)?);
        }
        Ok(Catalog { products })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/products.toml");

    #[test]
    fn example_file_loads() {
        let c = Catalog::from_toml_str(EXAMPLE).unwrap();
        let p = c.get(&"vps-small".parse().unwrap()).unwrap();
        assert_eq!(p.snapshots.lifetime.days(), 1);
        assert_eq!(p.system_disk.key, "scsi0");
        assert_eq!(p.lockout_ports, vec!["tcp/22".parse().unwrap()]);
        assert!(c.products.len() >= 2);
    }

    #[test]
    fn json_loads_the_same_shape() {
        let raw: serde_json::Value = toml::from_str(EXAMPLE).unwrap();
        let c = Catalog::from_json_str(&raw.to_string()).unwrap();
        assert_eq!(c, Catalog::from_toml_str(EXAMPLE).unwrap());
    }

    #[test]
    fn typed_products_round_trip_through_json() {
        let c = Catalog::from_toml_str(EXAMPLE).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Catalog>(&json).unwrap(), c);
    }

    #[test]
    fn cross_field_rules() {
        let bad = EXAMPLE.replacen("iso_storage = \"iso-store\"\n", "", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "products.vps-small.iso_storage: must be set when iso mount is allowed"
        );
        let bad = EXAMPLE.replacen("vmid = 9001", "vmid = 9000", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "products.vps-small.templates[1].vmid: template `9000` is listed twice"
        );
        let bad = EXAMPLE.replacen("quota = 3", "quota = 0", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("products.vps-small.snapshots.quota: must be at least 1"),
            "{e}"
        );
        let bad = EXAMPLE.replacen(
            "lockout_ports = [\"tcp/22\"]",
            "lockout_ports = [\"tcp/22\", \"icmp/1\"]",
            1,
        );
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("products.vps-small.lockout_ports[1]: `icmp/1`"),
            "{e}"
        );
        let e = Catalog::from_toml_str("[products.vps-small]\nmemory_mib = \"x\"").unwrap_err();
        assert!(matches!(e, Error::ProductSyntax { .. }));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = EXAMPLE.replacen("lifetime_days = 1", "lifetime_days = 12", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err();
        assert!(e.is_invalid_input());
        assert_eq!(
            e.to_string(),
            "products.vps-small.snapshots.lifetime_days: must be 1..=10, got 12"
        );

        let bad = EXAMPLE.replacen("storage = \"backup-store\"", "storage = \"9bad\"", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("products.vps-small.backups.storage: `9bad`"),
            "{e}"
        );

        let bad = EXAMPLE.replacen("cores = 1", "cores = 0", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert_eq!(e, "products.vps-small.cpu.cores: must be 1..=1024, got 0");

        let bad = EXAMPLE.replacen("vlan_tag = 10", "vlan_tag = 5000", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "products.vps-small.network.vlan_tag: must be 1..=4094, got 5000"
        );

        let bad = EXAMPLE.replacen("drive = \"ide2\"", "drive = \"virtio0\"", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err();
        assert!(e.is_invalid_input());
        assert_eq!(
            e.to_string(),
            "products.vps-small.iso.drive: `virtio0`: must be one of ide0..ide3, sata0..sata5, scsi0..scsi30"
        );
        let bad = EXAMPLE.replacen("drive = \"ide2\"", "drive = \"scsi0\"", 1);
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "products.vps-small.iso.drive: `scsi0` is already the system disk"
        );
        let ok = EXAMPLE.replacen("drive = \"ide2\"", "drive = \"sata1\"", 1);
        let c = Catalog::from_toml_str(&ok).unwrap();
        let p = c.get(&"vps-small".parse().unwrap()).unwrap();
        assert_eq!(p.iso_drive.as_str(), "sata1");
        let omitted = EXAMPLE.replacen("[products.vps-small.iso]\ndrive = \"ide2\"\n", "", 1);
        assert_ne!(omitted, EXAMPLE);
        let c = Catalog::from_toml_str(&omitted).unwrap();
        let p = c.get(&"vps-small".parse().unwrap()).unwrap();
        assert_eq!(p.iso_drive.as_str(), "ide2");

        let bad = EXAMPLE.replacen(
            "[products.vps-small.cpu]",
            "[products.vps-small.cpu]\ncorez = 1",
            1,
        );
        let e = Catalog::from_toml_str(&bad).unwrap_err().to_string();
        assert!(e.contains("corez"), "{e}");
    }
}
