//! Validated identifiers: a value of these types cannot be invalid.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`, so stored values are
/// validated again when read back.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

fn no_control(what: &'static str, s: &str) -> Result<(), Error> {
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(what, s, "contains control characters"));
    }
    Ok(())
}

/// A PVE guest id (`100..=999999999`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmId(u32);

impl VmId {
    /// The smallest VMID PVE accepts.
    pub const MIN: u32 = 100;
    /// The largest VMID PVE accepts.
    pub const MAX: u32 = 999_999_999;

    /// Validates a numeric VMID.
    pub fn new(id: u32) -> Result<Self, Error> {
        if (Self::MIN..=Self::MAX).contains(&id) {
            Ok(Self(id))
        } else {
            Err(Error::invalid(
                "vmid",
                id.to_string(),
                "must be 100..=999999999",
            ))
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for VmId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return Err(Error::invalid("vmid", s, "must be a decimal number"));
        }
        let n: u32 = s
            .parse()
            .map_err(|_| Error::invalid("vmid", s, "must be 100..=999999999"))?;
        Self::new(n)
    }
}

impl TryFrom<u32> for VmId {
    type Error = Error;
    fn try_from(n: u32) -> Result<Self, Error> {
        Self::new(n)
    }
}

impl serde::Serialize for VmId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for VmId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        Self::new(n).map_err(serde::de::Error::custom)
    }
}

/// A PVE cluster node name (a DNS label).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl FromStr for NodeName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if is_dns_label(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "node name",
                s,
                "must be a dns label of letters, digits and `-`",
            ))
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(NodeName);

/// The name of a Proxmox VE cluster the hosting company runs (`default` unless several are):
/// 1 to 32 lowercase letters, digits, `-` or `_`, starting with a letter. It names the cluster
/// in the [`Fleet`](crate::Fleet), on each service, and the PostgreSQL schema of its stores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the single default cluster (`default`).
    pub fn is_default(&self) -> bool {
        self.0 == "default"
    }
}

impl Default for ClusterName {
    /// `default`: the cluster of services that name none.
    fn default() -> Self {
        Self("default".to_owned())
    }
}

impl FromStr for ClusterName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.is_empty()
            && s.len() <= 32
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "cluster name",
                s,
                "must be 1 to 32 lowercase letters, digits, `-` or `_`, starting with a letter",
            ))
        }
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(ClusterName);

/// A PVE storage id (`pve-storage-id`: a letter, then letters, digits, `-`, `_`, `.`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageId(String);

impl StorageId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StorageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = s.len() >= 2
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "storage id",
                s,
                "must start with a letter, end with a letter or digit, and contain only letters, digits, `-`, `_`, `.`",
            ))
        }
    }
}

impl fmt::Display for StorageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(StorageId);

/// A PVE volume id `storage:volname` (e.g. `iso-store:iso/Debian-12.5.0-amd64-netinst.iso`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeId {
    storage: StorageId,
    volname: String,
}

impl VolumeId {
    /// Builds a volume id from its parts.
    pub fn new(storage: StorageId, volname: &str) -> Result<Self, Error> {
        let full = format!("{storage}:{volname}");
        if volname.is_empty() {
            return Err(Error::invalid("volume id", full, "volume name is empty"));
        }
        if volname
            .chars()
            .any(|c| c.is_control() || c == ',' || c == '=' || c.is_whitespace())
        {
            return Err(Error::invalid(
                "volume id",
                full,
                "volume name contains control characters, whitespace, `,` or `=`",
            ));
        }
        Ok(Self {
            storage,
            volname: volname.to_owned(),
        })
    }

    /// The storage part.
    pub fn storage(&self) -> &StorageId {
        &self.storage
    }

    /// The part after `storage:`.
    pub fn volname(&self) -> &str {
        &self.volname
    }

    /// The file name: the part after the last `/` of the volume name.
    pub fn file_name(&self) -> &str {
        self.volname.rsplit('/').next().unwrap_or(&self.volname)
    }
}

impl FromStr for VolumeId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        no_control("volume id", s)?;
        let (storage, volname) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid("volume id", s, "expected `storage:volume`"))?;
        let storage: StorageId = storage
            .parse()
            .map_err(|_| Error::invalid("volume id", s, "invalid storage part"))?;
        Self::new(storage, volname)
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.storage, self.volname)
    }
}
serde_via_str!(VolumeId);

/// A MAC address; printed upper-case with colons as PVE does (`BC:24:11:7A:40:98`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Builds a MAC from its bytes.
    pub fn from_bytes(b: [u8; 6]) -> Self {
        Self(b)
    }

    /// The bytes.
    pub fn bytes(self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("mac address", s, "expected six hex pairs separated by `:`");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}
serde_via_str!(MacAddr);

/// The id of a product (`vps-small`): lower-case letters, digits, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductId(String);

impl ProductId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProductId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "product id",
                s,
                "must be lower-case letters, digits, `-` and `_`",
            ))
        }
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(ProductId);

/// A DNS name (a VM's domain or search domain): labels of letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    /// The name, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.strip_suffix('.').unwrap_or(s);
        if t.is_empty() || t.len() > 253 || !t.split('.').all(is_dns_label) {
            return Err(Error::invalid(
                "domain name",
                s,
                "must be dot-separated labels of letters, digits and `-`",
            ));
        }
        Ok(Self(t.to_owned()))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(DomainName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_bounds() {
        assert!(VmId::new(99).is_err());
        assert_eq!(VmId::new(100).unwrap().to_string(), "100");
        assert!("0100".parse::<VmId>().is_err());
        assert!("1000000000".parse::<VmId>().is_err());
        assert!("abc".parse::<VmId>().is_err());
    }

    #[test]
    fn mac_round_trip_uppercase() {
        let m: MacAddr = "bc:24:11:7a:40:98".parse().unwrap();
        assert_eq!(m.to_string(), "BC:24:11:7A:40:98");
        assert!("BC:24:11:7A:40".parse::<MacAddr>().is_err());
        assert!("BC:24:11:7A:40:98:00".parse::<MacAddr>().is_err());
        assert!("BC:24:11:7A:40:9".parse::<MacAddr>().is_err());
    }

    #[test]
    fn volume_id_parts() {
        let v: VolumeId = "iso-store:iso/Debian-12.5.0-amd64-netinst.iso"
            .parse()
            .unwrap();
        assert_eq!(v.storage().as_str(), "iso-store");
        assert_eq!(v.file_name(), "Debian-12.5.0-amd64-netinst.iso");
        assert!("nostorage".parse::<VolumeId>().is_err());
        assert!("a:".parse::<VolumeId>().is_err());
        assert!("st:iso/a\nb".parse::<VolumeId>().is_err());
    }

    #[test]
    fn domain_and_storage() {
        assert!("5546-1775785707.puqcloud.com".parse::<DomainName>().is_ok());
        assert!("-bad.com".parse::<DomainName>().is_err());
        assert!("local-lvm".parse::<StorageId>().is_ok());
        assert!("1local".parse::<StorageId>().is_err());
        assert!("vps-small".parse::<ProductId>().is_ok());
        assert!("VPS".parse::<ProductId>().is_err());
    }
}
