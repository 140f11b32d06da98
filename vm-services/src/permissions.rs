//! Which client-area actions a customer may use right now, and why not.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::product::Product;
use crate::pve::LockKind;

/// A client-area feature (a button or a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// The overview page (always allowed).
    Overview,
    /// Start and stop (always allowed by the product).
    PowerControl,
    /// The noVNC console (always allowed by the product; needs a running VM).
    Console,
    /// Performance charts.
    Charts,
    /// OS reinstall.
    Reinstall,
    /// Snapshots.
    Snapshots,
    /// Backups.
    Backups,
    /// Root password reset.
    ResetPassword,
    /// Reverse DNS.
    Rdns,
    /// ISO mount.
    Iso,
    /// Firewall.
    Firewall,
}

impl Feature {
    /// Every feature, in menu order.
    pub const ALL: [Feature; 11] = [
        Self::Overview,
        Self::PowerControl,
        Self::Console,
        Self::Charts,
        Self::Reinstall,
        Self::Snapshots,
        Self::Backups,
        Self::ResetPassword,
        Self::Rdns,
        Self::Iso,
        Self::Firewall,
    ];

    /// Whether using the feature changes the VM's config or disks (so any lock blocks it).
    fn touches_vm(self) -> bool {
        matches!(
            self,
            Self::PowerControl
                | Self::Reinstall
                | Self::Snapshots
                | Self::Backups
                | Self::ResetPassword
                | Self::Iso
        )
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overview => "overview",
            Self::PowerControl => "power control",
            Self::Console => "console",
            Self::Charts => "charts",
            Self::Reinstall => "reinstall",
            Self::Snapshots => "snapshots",
            Self::Backups => "backups",
            Self::ResetPassword => "reset password",
            Self::Rdns => "reverse dns",
            Self::Iso => "iso mount",
            Self::Firewall => "firewall",
        })
    }
}

/// What the permission check needs to know about the VM right now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VmState {
    /// The config's `lock`, if one holds.
    pub lock: Option<LockKind>,
    /// Whether the VM is running.
    pub running: bool,
}

/// Why an allowed feature cannot be used right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// A lock holds (backup, snapshot, restore ...).
    Locked(LockKind),
    /// The feature needs a running VM.
    NotRunning,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(LockKind::Backup) => f.write_str("a backup is in progress"),
            Self::Locked(LockKind::Create) => f.write_str("a restore is in progress"),
            Self::Locked(l) => write!(f, "the vm is locked ({l})"),
            Self::NotRunning => f.write_str("the vm is not running"),
        }
    }
}

/// The answer of [`check`]: a UI shows every button and dims those not `Allowed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Usable now.
    Allowed,
    /// The product does not include it ("Access Denied").
    Denied,
    /// Included, but temporarily unavailable.
    Unavailable {
        /// Why.
        reason: Unavailable,
    },
}

impl Access {
    /// Whether usable now.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }

    /// Turns a refusal into the typed error.
    pub fn into_result(self, feature: Feature) -> Result<(), Error> {
        match self {
            Self::Allowed => Ok(()),
            Self::Denied => Err(Error::AccessDenied { feature }),
            Self::Unavailable {
                reason: Unavailable::Locked(lock),
            } => Err(Error::Locked { lock }),
            Self::Unavailable {
                reason: Unavailable::NotRunning,
            } => Err(Error::NotRunning),
        }
    }
}

/// Decides whether `feature` is usable on a VM of `product` in `state`.
///
/// Rules: a feature the product does not include is `Denied` whatever the state. While a
/// backup or restore lock holds, everything except the overview is `Unavailable`. Any other
/// lock makes the features that change the VM (power, reinstall, snapshots, backups, password,
/// ISO) `Unavailable`. The console needs a running VM.
pub fn check(product: &Product, feature: Feature, state: &VmState) -> Access {
    if feature == Feature::Overview {
        return Access::Allowed;
    }
    if !product.permissions.allows(feature) {
        return Access::Denied;
    }
    if let Some(lock) = &state.lock
        && (lock.is_backup_or_restore() || feature.touches_vm())
    {
        return Access::Unavailable {
            reason: Unavailable::Locked(lock.clone()),
        };
    }
    if feature == Feature::Console && !state.running {
        return Access::Unavailable {
            reason: Unavailable::NotRunning,
        };
    }
    Access::Allowed
}

/// [`check`] as a `Result`, for operations.
pub fn require(product: &Product, feature: Feature, state: &VmState) -> Result<(), Error> {
    check(product, feature, state).into_result(feature)
}

/// Every feature with its access, in menu order: what a UI needs to draw (and dim) its buttons.
pub fn check_all(product: &Product, state: &VmState) -> Vec<(Feature, Access)> {
    Feature::ALL
        .iter()
        .map(|&f| (f, check(product, f, state)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;

    #[test]
    fn denied_unavailable_allowed() {
        let mut p = fixtures::product();
        p.permissions.rdns = false;
        let idle = VmState {
            lock: None,
            running: true,
        };
        assert_eq!(check(&p, Feature::Rdns, &idle), Access::Denied);
        assert!(require(&p, Feature::Rdns, &idle).unwrap_err().is_denied());
        assert_eq!(check(&p, Feature::Snapshots, &idle), Access::Allowed);

        let backup = VmState {
            lock: Some(LockKind::Backup),
            running: true,
        };
        for (f, a) in check_all(&p, &backup) {
            match f {
                Feature::Overview => assert_eq!(a, Access::Allowed),
                Feature::Rdns => assert_eq!(a, Access::Denied),
                _ => assert_eq!(
                    a,
                    Access::Unavailable {
                        reason: Unavailable::Locked(LockKind::Backup)
                    },
                    "{f}"
                ),
            }
        }
        assert!(
            require(&p, Feature::Reinstall, &backup)
                .unwrap_err()
                .is_locked()
        );

        let snap = VmState {
            lock: Some(LockKind::Snapshot),
            running: true,
        };
        assert!(check(&p, Feature::Charts, &snap).is_allowed());
        assert!(check(&p, Feature::Console, &snap).is_allowed());
        assert!(!check(&p, Feature::Snapshots, &snap).is_allowed());

        let stopped = VmState {
            lock: None,
            running: false,
        };
        assert_eq!(
            check(&p, Feature::Console, &stopped),
            Access::Unavailable {
                reason: Unavailable::NotRunning
            }
        );
        assert!(check(&p, Feature::Charts, &stopped).is_allowed());
    }

    #[test]
    fn overview_and_console_cannot_be_denied() {
        let mut p = fixtures::product();
        p.permissions = crate::product::Permissions::default();
        let s = VmState {
            lock: None,
            running: true,
        };
        assert!(check(&p, Feature::Overview, &s).is_allowed());
        assert!(check(&p, Feature::Console, &s).is_allowed());
        assert!(check(&p, Feature::PowerControl, &s).is_allowed());
        assert_eq!(check(&p, Feature::Firewall, &s), Access::Denied);
    }
}
