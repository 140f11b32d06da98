//! ISO mount: folders of the ISO storage, what is mounted, and validated mount requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::VolumeId;
use crate::permissions::{Feature, VmState, require};
use crate::product::Product;
use crate::pve::{CdromMedia, VmConfig};

/// The CD drive the module uses by default (a product may choose another: [`CdDrive`]).
pub const CDROM_KEY: &str = "ide2";

/// The CD drive the ISO feature uses: `ide0`..`ide3`, `sata0`..`sata5` or `scsi0`..`scsi30`
/// (default [`CDROM_KEY`]). Set per product as `iso.drive`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CdDrive(String);

impl CdDrive {
    /// The config key (`ide2`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CdDrive {
    fn default() -> Self {
        Self(CDROM_KEY.to_owned())
    }
}

impl std::str::FromStr for CdDrive {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = [("ide", 3u8), ("sata", 5), ("scsi", 30)]
            .iter()
            .any(|(p, max)| {
                s.strip_prefix(p).is_some_and(|n| {
                    !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && (n == "0" || !n.starts_with('0'))
                        && n.parse::<u8>().is_ok_and(|n| n <= *max)
                })
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::invalid(
                "cd drive",
                s.chars().filter(|c| !c.is_control()).collect::<String>(),
                "must be one of ide0..ide3, sata0..sata5, scsi0..scsi30",
            ))
        }
    }
}

impl std::fmt::Display for CdDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
crate::ids::serde_via_str!(CdDrive);

/// The folder of files whose name has no `-`.
pub const OTHER_FOLDER: &str = "OTHER";

/// One item of the ISO storage listing (`GET .../storage/{s}/content?content=iso`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoItem {
    /// The volume id.
    pub volid: VolumeId,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

/// A folder of the ISO page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsoFolder {
    /// The part of the file name before the first `-`, or [`OTHER_FOLDER`].
    pub name: String,
    /// The files, sorted by file name.
    pub files: Vec<VolumeId>,
}

impl IsoFolder {
    /// How many files.
    pub fn count(&self) -> usize {
        self.files.len()
    }
}

/// The folder a file belongs to: the part before the first `-`
/// (`Debian-12.5.0-amd64-netinst.iso` → `Debian`), or `OTHER` when there is none.
pub fn folder_of(file_name: &str) -> &str {
    match file_name.split_once('-') {
        Some((prefix, _)) if !prefix.is_empty() => prefix,
        _ => OTHER_FOLDER,
    }
}

/// Groups a listing into folders, sorted by folder name.
pub fn group(listing: &[IsoItem]) -> Vec<IsoFolder> {
    let mut map: BTreeMap<&str, Vec<VolumeId>> = BTreeMap::new();
    for it in listing {
        map.entry(folder_of(it.volid.file_name()))
            .or_default()
            .push(it.volid.clone());
    }
    map.into_iter()
        .map(|(name, mut files)| {
            files.sort_by(|a, b| a.file_name().cmp(b.file_name()));
            IsoFolder {
                name: name.to_owned(),
                files,
            }
        })
        .collect()
}

/// What `ide2` holds: `Some(volid)` when an ISO image is mounted (a cloud-init drive there is
/// not a mounted ISO). See [`mounted_in`] for a product's drive.
pub fn mounted(config: &VmConfig) -> Result<Option<VolumeId>, Error> {
    mounted_in(config, &CdDrive::default())
}

/// What `drive` holds: `Some(volid)` when an ISO image is mounted (a cloud-init drive there
/// is not a mounted ISO).
pub fn mounted_in(config: &VmConfig, drive: &CdDrive) -> Result<Option<VolumeId>, Error> {
    Ok(match config.cdrom(drive.as_str())? {
        Some(CdromMedia::Volume(v)) if !is_cloudinit(&v) => Some(v),
        _ => None,
    })
}

fn is_cloudinit(v: &VolumeId) -> bool {
    v.volname().contains("cloudinit")
}

/// Refuses to touch `ide2` when it holds the VM's cloud-init drive: replacing it would break
/// password resets and reinstalls (the provider must move that drive, e.g. to `ide0`). See
/// [`check_drive_free_in`] for a product's drive.
pub fn check_drive_free(config: &VmConfig) -> Result<(), Error> {
    check_drive_free_in(config, &CdDrive::default())
}

/// Refuses to touch `drive` when it holds the VM's cloud-init drive (replacing it would break
/// password resets and reinstalls) or a disk that is not a CD drive.
pub fn check_drive_free_in(config: &VmConfig, drive: &CdDrive) -> Result<(), Error> {
    let refuse = |reason: &str| {
        Err(Error::UnknownIso {
            volid: drive.to_string(),
            reason: reason.to_owned(),
        })
    };
    match config.cdrom(drive.as_str())? {
        Some(CdromMedia::Volume(v)) if is_cloudinit(&v) => {
            refuse("the cd drive holds the cloud-init drive")
        }
        None if config.get(drive.as_str()).is_some() => refuse("the drive is not a cd drive"),
        _ => Ok(()),
    }
}

/// A config change for the CD drive: `PUT .../config` with `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdromChange {
    /// The drive key (the product's [`CdDrive`], [`CDROM_KEY`] by default).
    pub key: String,
    /// The value (`<volid>,media=cdrom` or `none,media=cdrom`).
    pub value: String,
}

/// Validates a mount request and gives the config change. Only an ISO that is listed in the
/// product's ISO storage can be mounted; another storage, `..`, control characters or an
/// unlisted file are refused.
pub fn plan_mount(
    product: &Product,
    state: &VmState,
    listing: &[IsoItem],
    requested: &str,
) -> Result<CdromChange, Error> {
    require(product, Feature::Iso, state)?;
    let refuse = |reason: &str| Error::UnknownIso {
        volid: requested.chars().filter(|c| !c.is_control()).collect(),
        reason: reason.to_owned(),
    };
    if requested.chars().any(char::is_control) {
        return Err(refuse("contains control characters"));
    }
    if requested.contains("..") {
        return Err(refuse("contains `..`"));
    }
    let volid: VolumeId = requested.parse().map_err(|_| refuse("not a volume id"))?;
    let Some(storage) = &product.iso_storage else {
        return Err(refuse("the product has no iso storage"));
    };
    if volid.storage() != storage {
        return Err(refuse("not on the product's iso storage"));
    }
    if !volid.volname().starts_with("iso/")
        || !volid.file_name().to_ascii_lowercase().ends_with(".iso")
    {
        return Err(refuse("not an iso image"));
    }
    if !listing.iter().any(|i| i.volid == volid) {
        return Err(refuse("not in the storage listing"));
    }
    Ok(CdromChange {
        key: product.iso_drive.to_string(),
        value: CdromMedia::Volume(volid).config_value(),
    })
}

/// The config change that ejects the image.
pub fn plan_unmount(product: &Product, state: &VmState) -> Result<CdromChange, Error> {
    require(product, Feature::Iso, state)?;
    Ok(CdromChange {
        key: product.iso_drive.to_string(),
        value: CdromMedia::Empty.config_value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;

    fn item(v: &str) -> IsoItem {
        IsoItem {
            volid: v.parse().unwrap(),
            size: None,
        }
    }

    fn listing() -> Vec<IsoItem> {
        vec![
            item("iso-store:iso/Debian-12.5.0-amd64-netinst.iso"),
            item("iso-store:iso/alpine-standard-3.21.3-x86_64.iso"),
            item("iso-store:iso/myimage.iso"),
            item("iso-store:iso/Debian-11.0.0-amd64-netinst.iso"),
        ]
    }

    #[test]
    fn cloud_init_drive_is_not_an_iso() {
        let c: VmConfig = [("ide2", "local-lvm:vm-104-cloudinit,media=cdrom")]
            .into_iter()
            .collect();
        assert_eq!(mounted(&c).unwrap(), None);
        assert!(check_drive_free(&c).unwrap_err().is_invalid_input());
        let c: VmConfig = [("ide2", "none,media=cdrom")].into_iter().collect();
        assert!(check_drive_free(&c).is_ok());
    }

    #[test]
    fn cd_drive_keys() {
        for ok in ["ide0", "ide3", "sata5", "scsi0", "scsi30"] {
            assert_eq!(ok.parse::<CdDrive>().unwrap().as_str(), ok);
        }
        for bad in [
            "ide4", "sata6", "scsi31", "virtio0", "ide", "ide02", "net0", "ide2\n", "",
        ] {
            assert!(
                bad.parse::<CdDrive>().unwrap_err().is_invalid_input(),
                "{bad}"
            );
        }
        assert_eq!(CdDrive::default().as_str(), CDROM_KEY);
        let c: VmConfig = [
            ("ide0", "local-lvm:vm-104-cloudinit,media=cdrom"),
            ("ide2", "none,media=cdrom"),
            ("scsi0", "local-lvm:vm-104-disk-0,size=25G"),
        ]
        .into_iter()
        .collect();
        let ide0: CdDrive = "ide0".parse().unwrap();
        assert!(
            check_drive_free_in(&c, &ide0)
                .unwrap_err()
                .is_invalid_input()
        );
        assert_eq!(mounted_in(&c, &ide0).unwrap(), None);
        assert!(check_drive_free_in(&c, &CdDrive::default()).is_ok());
        let scsi0: CdDrive = "scsi0".parse().unwrap();
        assert!(
            check_drive_free_in(&c, &scsi0)
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(check_drive_free_in(&c, &"sata1".parse().unwrap()).is_ok());
    }

    #[test]
    fn folders() {
        let g = group(&listing());
        let names: Vec<_> = g.iter().map(|f| (f.name.as_str(), f.count())).collect();
        assert_eq!(names, vec![("Debian", 2), ("OTHER", 1), ("alpine", 1)]);
        assert_eq!(g[0].files[0].file_name(), "Debian-11.0.0-amd64-netinst.iso");
        assert_eq!(folder_of("-x.iso"), OTHER_FOLDER);
    }

    proptest::proptest! {
        #[test]
        fn traversal_and_control_chars_never_mount(prefix in "[ -~]{0,20}", bad in proptest::sample::select(vec!["..", "\n", "\u{0}", "\t"]), suffix in "[ -~]{0,20}") {
            let p = fixtures::product();
            let s = VmState { lock: None, running: true };
            let req = format!("{prefix}{bad}{suffix}");
            proptest::prop_assert!(plan_mount(&p, &s, &listing(), &req).is_err());
        }

        #[test]
        fn grouping_keeps_every_file(names in proptest::collection::vec("[A-Za-z0-9._-]{1,20}", 0..30)) {
            let items: Vec<IsoItem> = names.iter().map(|n| item(&format!("iso-store:iso/{n}"))).collect();
            let g = group(&items);
            proptest::prop_assert_eq!(g.iter().map(IsoFolder::count).sum::<usize>(), items.len());
            for f in &g {
                for v in &f.files {
                    proptest::prop_assert_eq!(folder_of(v.file_name()), f.name.as_str());
                }
            }
        }
    }

    #[test]
    fn mount_rules() {
        let p = fixtures::product();
        let s = VmState {
            lock: None,
            running: true,
        };
        let ok = plan_mount(&p, &s, &listing(), "iso-store:iso/myimage.iso").unwrap();
        assert_eq!(ok.value, "iso-store:iso/myimage.iso,media=cdrom");
        let cfg: VmConfig = [("ide2", ok.value.as_str())].into_iter().collect();
        assert_eq!(mounted(&cfg).unwrap().unwrap().file_name(), "myimage.iso");
        for bad in [
            "local:iso/myimage.iso",
            "iso-store:iso/../images/100/vm-100-disk-0.raw",
            "iso-store:iso/missing.iso",
            "iso-store:iso/my\nimage.iso",
            "iso-store:vztmpl/debian.tar.zst",
            "nonsense",
        ] {
            let e = plan_mount(&p, &s, &listing(), bad).unwrap_err();
            assert!(e.is_invalid_input(), "{bad}: {e}");
        }
        let un = plan_unmount(&p, &s).unwrap();
        assert_eq!(un.value, "none,media=cdrom");
        let cfg: VmConfig = [("ide2", un.value.as_str())].into_iter().collect();
        assert_eq!(mounted(&cfg).unwrap(), None);
    }
}
