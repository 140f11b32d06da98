//! Validated identifiers. Each has a private field, validates in `FromStr`/`TryFrom`, and its
//! `Display` output parses back to an equal value.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

macro_rules! string_newtype_common {
    ($name:ident) => {
        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(s: &str) -> Result<Self, Error> {
                s.parse()
            }
        }
        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                s.parse()
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A guest id, `100..=999999999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u32);

impl VmId {
    /// Smallest valid id.
    pub const MIN: u32 = 100;
    /// Largest valid id.
    pub const MAX: u32 = 999_999_999;

    /// Validate a numeric id.
    pub fn new(id: u32) -> Result<Self, Error> {
        if (Self::MIN..=Self::MAX).contains(&id) {
            Ok(VmId(id))
        } else {
            Err(Error::invalid(
                "vmid",
                id.to_string(),
                "must be within 100..=999999999",
            ))
        }
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for VmId {
    type Error = Error;
    fn try_from(v: u32) -> Result<Self, Error> {
        VmId::new(v)
    }
}

impl TryFrom<u64> for VmId {
    type Error = Error;
    fn try_from(v: u64) -> Result<Self, Error> {
        u32::try_from(v)
            .map_err(|_| Error::invalid("vmid", v.to_string(), "must be within 100..=999999999"))
            .and_then(VmId::new)
    }
}

impl FromStr for VmId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return Err(Error::invalid(
                "vmid",
                s,
                "must be a decimal number without leading zeros",
            ));
        }
        let n: u32 = s
            .parse()
            .map_err(|_| Error::invalid("vmid", s, "out of range"))?;
        VmId::new(n)
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for VmId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VmId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = crate::de::u64(d)?;
        VmId::try_from(n).map_err(serde::de::Error::custom)
    }
}

fn is_hostname_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A cluster node name (a hostname label: letters, digits, `-`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl FromStr for NodeName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if is_hostname_label(s) {
            Ok(NodeName(s.to_owned()))
        } else {
            Err(Error::invalid(
                "node name",
                s,
                "must be a hostname label (letters, digits, `-`)",
            ))
        }
    }
}
string_newtype_common!(NodeName);

/// `s` has a byte length in `len`, starts with an ASCII letter and holds only ASCII
/// letters, digits and the bytes in `extra`.
fn is_ident(s: &str, len: std::ops::RangeInclusive<usize>, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    len.contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

fn is_storage_id(s: &str) -> bool {
    is_ident(s, 2..=64, b"-_.") && s.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A storage id (`pve-storage-id`: `[a-z][a-z0-9-_.]*[a-z0-9]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageId(String);

impl FromStr for StorageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if is_storage_id(s) {
            Ok(StorageId(s.to_owned()))
        } else {
            Err(Error::invalid(
                "storage id",
                s,
                "must match `[a-z][a-z0-9-_.]*[a-z0-9]`",
            ))
        }
    }
}
string_newtype_common!(StorageId);

/// A volume id: `storage:content/name`, `storage:name`, or a longer path such as PBS's
/// `pbs:backup/vm/100/2024-05-01T02:00:00Z`. No `..`, whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeId(String);

impl VolumeId {
    /// The storage part (before the first `:`).
    pub fn storage(&self) -> StorageId {
        let (s, _) = self.0.split_once(':').unwrap_or((&self.0, ""));
        StorageId(s.to_owned())
    }

    /// Everything after `storage:`.
    pub fn volume(&self) -> &str {
        self.0.split_once(':').map(|(_, v)| v).unwrap_or("")
    }
}

impl FromStr for VolumeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |r: &str| Err(Error::invalid("volume id", s, r));
        let Some((storage, rest)) = s.split_once(':') else {
            return bad("must be `storage:name` or `storage:content/name`");
        };
        if !is_storage_id(storage) {
            return bad("invalid storage part");
        }
        if rest.is_empty() || rest.starts_with('/') || rest.ends_with('/') {
            return bad("empty volume name");
        }
        if rest.contains("..") {
            return bad("must not contain `..`");
        }
        if has_control(rest) || rest.contains(char::is_whitespace) {
            return bad("must not contain control characters or whitespace");
        }
        if rest.split('/').any(str::is_empty) {
            return bad("empty path segment");
        }
        Ok(VolumeId(s.to_owned()))
    }
}
string_newtype_common!(VolumeId);

/// A snapshot name (`pve-configid`: `^[a-zA-Z][a-zA-Z0-9_-]*$`, at most 40 characters,
/// not `current` or `pending`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(String);

impl FromStr for SnapshotName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !is_ident(s, 1..=40, b"_-") {
            return Err(Error::invalid(
                "snapshot name",
                s,
                "must match `^[a-zA-Z][a-zA-Z0-9_-]*$` with at most 40 characters",
            ));
        }
        if s == "current" || s == "pending" {
            return Err(Error::invalid("snapshot name", s, "is reserved"));
        }
        Ok(SnapshotName(s.to_owned()))
    }
}
string_newtype_common!(SnapshotName);

fn is_realm(s: &str) -> bool {
    is_ident(s, 2..=32, b".-_")
}

fn is_token_name(s: &str) -> bool {
    is_ident(s, 1..=64, b".-_")
}

/// A user id `user@realm`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Userid(String);

impl Userid {
    /// The user part.
    pub fn user(&self) -> &str {
        self.0.rsplit_once('@').map(|(u, _)| u).unwrap_or("")
    }
    /// The realm part.
    pub fn realm(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, r)| r).unwrap_or("")
    }
}

impl FromStr for Userid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let Some((user, realm)) = s.rsplit_once('@') else {
            return Err(Error::invalid("userid", s, "must be `user@realm`"));
        };
        let user_ok = !user.is_empty()
            && user.len() <= 64
            && !has_control(user)
            && !user.contains([':', '!', '/', ' ', '\t']);
        if !user_ok || !is_realm(realm) {
            return Err(Error::invalid("userid", s, "must be `user@realm`"));
        }
        Ok(Userid(s.to_owned()))
    }
}
string_newtype_common!(Userid);

/// An API token id `user@realm!tokenname`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiTokenId(String);

impl ApiTokenId {
    /// The owning user.
    pub fn userid(&self) -> Userid {
        Userid(
            self.0
                .split_once('!')
                .map(|(u, _)| u)
                .unwrap_or("")
                .to_owned(),
        )
    }
    /// The token name.
    pub fn token_name(&self) -> &str {
        self.0.split_once('!').map(|(_, t)| t).unwrap_or("")
    }
}

impl FromStr for ApiTokenId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let Some((user, token)) = s.split_once('!') else {
            return Err(Error::invalid(
                "api token id",
                s,
                "must be `user@realm!tokenname`",
            ));
        };
        Userid::from_str(user)?;
        if !is_token_name(token) {
            return Err(Error::invalid("api token id", s, "invalid token name"));
        }
        Ok(ApiTokenId(s.to_owned()))
    }
}
string_newtype_common!(ApiTokenId);

/// A firewall object name (IP set, alias): `[A-Za-z][A-Za-z0-9_-]+`, 2..=64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirewallName(String);

impl FromStr for FirewallName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if is_ident(s, 2..=64, b"_-") {
            Ok(FirewallName(s.to_owned()))
        } else {
            Err(Error::invalid(
                "firewall name",
                s,
                "must match `[A-Za-z][A-Za-z0-9_-]+`",
            ))
        }
    }
}
string_newtype_common!(FirewallName);

/// A disk bus of a QEMU guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DiskBus {
    /// `ideN` (0..=3)
    Ide,
    /// `sataN` (0..=5)
    Sata,
    /// `scsiN` (0..=30)
    Scsi,
    /// `virtioN` (0..=15)
    Virtio,
    /// `efidisk0`
    EfiDisk,
    /// `tpmstate0`
    TpmState,
}

impl DiskBus {
    fn prefix(self) -> &'static str {
        match self {
            DiskBus::Ide => "ide",
            DiskBus::Sata => "sata",
            DiskBus::Scsi => "scsi",
            DiskBus::Virtio => "virtio",
            DiskBus::EfiDisk => "efidisk",
            DiskBus::TpmState => "tpmstate",
        }
    }
    fn max_index(self) -> u8 {
        match self {
            DiskBus::Ide => 3,
            DiskBus::Sata => 5,
            DiskBus::Scsi => 30,
            DiskBus::Virtio => 15,
            DiskBus::EfiDisk | DiskBus::TpmState => 0,
        }
    }
}

/// A disk slot key such as `scsi0` or `virtio3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiskSlot {
    bus: DiskBus,
    index: u8,
}

impl DiskSlot {
    /// Validate bus and index.
    pub fn new(bus: DiskBus, index: u8) -> Result<Self, Error> {
        if index > bus.max_index() {
            return Err(Error::invalid(
                "disk slot",
                format!("{}{index}", bus.prefix()),
                format!("index must be at most {}", bus.max_index()),
            ));
        }
        Ok(DiskSlot { bus, index })
    }
    /// The bus.
    pub fn bus(self) -> DiskBus {
        self.bus
    }
    /// The index on the bus.
    pub fn index(self) -> u8 {
        self.index
    }
}

impl FromStr for DiskSlot {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let split = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
        let (prefix, digits) = s.split_at(split);
        let bus = match prefix {
            "ide" => DiskBus::Ide,
            "sata" => DiskBus::Sata,
            "scsi" => DiskBus::Scsi,
            "virtio" => DiskBus::Virtio,
            "efidisk" => DiskBus::EfiDisk,
            "tpmstate" => DiskBus::TpmState,
            _ => return Err(Error::invalid("disk slot", s, "unknown bus")),
        };
        if digits.is_empty() || digits.len() > 2 || (digits.len() == 2 && digits.starts_with('0')) {
            return Err(Error::invalid("disk slot", s, "bad index"));
        }
        let index: u8 = digits
            .parse()
            .map_err(|_| Error::invalid("disk slot", s, "bad index"))?;
        DiskSlot::new(bus, index)
    }
}

impl fmt::Display for DiskSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.bus.prefix(), self.index)
    }
}

/// A task id: `UPID:node:PID:PSTART:STARTTIME:type:id:user:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    raw: String,
    node: NodeName,
    pid: u32,
    pstart: u64,
    starttime: i64,
    worker_type: String,
    id: String,
    user: String,
}

impl Upid {
    /// Node the task runs on (poll its status there).
    pub fn node(&self) -> &NodeName {
        &self.node
    }
    /// Worker process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Process start time (in clock ticks since boot).
    pub fn pstart(&self) -> u64 {
        self.pstart
    }
    /// Start time, seconds since the Unix epoch.
    pub fn start_time(&self) -> i64 {
        self.starttime
    }
    /// Worker type (`qmstart`, `vzdump`, ...).
    pub fn worker_type(&self) -> &str {
        &self.worker_type
    }
    /// Worker id (often the vmid; may be empty).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// User (or token) that started the task.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The full UPID string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

fn hex_field(s: &str, min: usize, max: usize) -> Option<u64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

impl FromStr for Upid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |r: &str| Error::invalid("upid", s, r);
        let parts: Vec<&str> = s.split(':').collect();
        // "UPID", node, pid, pstart, starttime, type, id, user, "" (trailing colon)
        if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
            return Err(bad(
                "must be `UPID:node:pid:pstart:starttime:type:id:user:`",
            ));
        }
        let node: NodeName = parts[1].parse().map_err(|_| bad("invalid node"))?;
        let pid = hex_field(parts[2], 8, 8).ok_or_else(|| bad("pid must be 8 hex digits"))?;
        let pstart =
            hex_field(parts[3], 8, 9).ok_or_else(|| bad("pstart must be 8-9 hex digits"))?;
        let starttime =
            hex_field(parts[4], 8, 8).ok_or_else(|| bad("starttime must be 8 hex digits"))?;
        let clean =
            |f: &str| !f.is_empty() && !f.chars().any(|c| c.is_control() || c.is_whitespace());
        if !clean(parts[5]) {
            return Err(bad("invalid worker type"));
        }
        if !parts[6].is_empty() && !clean(parts[6]) {
            return Err(bad("invalid worker id"));
        }
        if !clean(parts[7]) {
            return Err(bad("invalid user"));
        }
        Ok(Upid {
            raw: s.to_owned(),
            node,
            pid: pid as u32,
            pstart,
            starttime: starttime as i64,
            worker_type: parts[5].to_owned(),
            id: parts[6].to_owned(),
            user: parts[7].to_owned(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_bounds() {
        assert!(VmId::new(99).is_err());
        assert_eq!(VmId::new(100).unwrap().get(), 100);
        assert!(VmId::new(999_999_999).is_ok());
        assert!(VmId::new(1_000_000_000).is_err());
        assert!("0100".parse::<VmId>().is_err());
        assert!("1e3".parse::<VmId>().is_err());
        assert_eq!("4242".parse::<VmId>().unwrap().to_string(), "4242");
    }

    #[test]
    fn upid_parts() {
        let u: Upid = "UPID:pve1:000A1B2C:0003F1A2B:6560F00D:qmstart:100:root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.node().as_str(), "pve1");
        assert_eq!(u.pid(), 0x000A1B2C);
        assert_eq!(u.pstart(), 0x0003F1A2B);
        assert_eq!(u.start_time(), 0x6560F00D);
        assert_eq!(u.worker_type(), "qmstart");
        assert_eq!(u.id(), "100");
        assert_eq!(u.user(), "root@pam");
        let t: Upid = "UPID:pve1:000A1B2C:0003F1A2:6560F00D:vzdump::api@pve!tok:"
            .parse()
            .unwrap();
        assert_eq!(t.id(), "");
        assert_eq!(t.user(), "api@pve!tok");
        assert!(
            "UPID:pve1:0A1B2C:0003F1A2:6560F00D:qmstart:100:root@pam:"
                .parse::<Upid>()
                .is_err()
        );
        assert!(
            "UPID:pve1:000A1B2C:0003F1A2:6560F00D:qmstart:100:root@pam"
                .parse::<Upid>()
                .is_err()
        );
    }

    #[test]
    fn volume_and_snapshot() {
        let v: VolumeId = "local:backup/vzdump-qemu-100-2024_01_01-00_00_00.vma.zst"
            .parse()
            .unwrap();
        assert_eq!(v.storage().as_str(), "local");
        assert!("local-lvm:vm-100-disk-0".parse::<VolumeId>().is_ok());
        assert!("local:../etc/passwd".parse::<VolumeId>().is_err());
        assert!("local:backup/a\nb".parse::<VolumeId>().is_err());
        assert!("nocolon".parse::<VolumeId>().is_err());
        assert!("before-upgrade".parse::<SnapshotName>().is_ok());
        assert!("current".parse::<SnapshotName>().is_err());
        assert!("pending".parse::<SnapshotName>().is_err());
        assert!("1abc".parse::<SnapshotName>().is_err());
        assert!("a".repeat(41).parse::<SnapshotName>().is_err());
        assert!("a".repeat(40).parse::<SnapshotName>().is_ok());
    }

    #[test]
    fn ids() {
        assert!("root@pam".parse::<Userid>().is_ok());
        assert!("root".parse::<Userid>().is_err());
        let t: ApiTokenId = "svc@pve!deploy".parse().unwrap();
        assert_eq!(t.userid().as_str(), "svc@pve");
        assert_eq!(t.token_name(), "deploy");
        assert!("svc@pve".parse::<ApiTokenId>().is_err());
        assert!("pve-1".parse::<NodeName>().is_ok());
        assert!("pve/1".parse::<NodeName>().is_err());
        assert_eq!("scsi30".parse::<DiskSlot>().unwrap().to_string(), "scsi30");
        assert!("scsi31".parse::<DiskSlot>().is_err());
        assert!("ide4".parse::<DiskSlot>().is_err());
        assert!("net0".parse::<DiskSlot>().is_err());
    }
}
