//! The crate's one error type.

use crate::ids::{StorageId, VmId, VolumeId};
use crate::permissions::Feature;
use crate::pve::LockKind;

/// Which quota a [`Error::QuotaExceeded`] or [`Error::QuotaMisconfigured`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// The number of snapshots a VM may hold.
    Snapshots,
    /// The number of backups a VM may hold on the product's backup storage.
    Backups,
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Snapshots => "snapshot",
            Self::Backups => "backup",
        })
    }
}

/// What can go wrong in the domain layer: every refusal carries its reason.
///
/// Use the predicates ([`Error::is_denied`], [`Error::is_locked`], [`Error::is_invalid_input`])
/// rather than matching variants: the enum grows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value failed validation (a VMID, a MAC, a property string ...).
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidValue {
        /// What kind of value it was meant to be.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A product definition has an invalid field; `field` is the full path.
    #[error("{field}: {reason}")]
    InvalidProduct {
        /// Dotted path of the field, e.g. `products.vps-small.snapshots.lifetime_days`.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// A product file could not be parsed at all.
    #[error("cannot parse product file: {message}")]
    ProductSyntax {
        /// The parser's message (it names the line or key).
        message: String,
    },
    /// The product does not allow this feature ("Access Denied").
    #[error("access denied: the product does not allow {feature}")]
    AccessDenied {
        /// The refused feature.
        feature: Feature,
    },
    /// The VM is locked by an operation in progress.
    #[error("vm is locked ({lock})")]
    Locked {
        /// The lock PVE reports.
        lock: LockKind,
    },
    /// The operation needs a running VM.
    #[error("vm is not running")]
    NotRunning,
    /// The operation needs a stopped VM.
    #[error("vm must be stopped first")]
    NotStopped,
    /// The reinstall confirmation word was not exactly `REINSTALL`.
    #[error("confirmation word must be exactly `REINSTALL`, got `{got}`")]
    WrongConfirmation {
        /// What the customer typed.
        got: String,
    },
    /// The chosen OS template is not in the product's allowed list.
    #[error("template `{template}` is not allowed for this product")]
    TemplateNotAllowed {
        /// The requested template VMID.
        template: VmId,
    },
    /// A quota is full.
    #[error("{kind} quota exceeded: {used}/{limit}")]
    QuotaExceeded {
        /// Which quota.
        kind: QuotaKind,
        /// How many exist.
        used: u32,
        /// How many are allowed.
        limit: u32,
    },
    /// A quota cannot be honoured because the product allows none.
    #[error("{kind} quota is misconfigured: {reason}")]
    QuotaMisconfigured {
        /// Which quota.
        kind: QuotaKind,
        /// Why.
        reason: String,
    },
    /// A backup schedule time of day is not `HH:MM`.
    #[error("invalid schedule time `{value}`: expected HH:MM between 00:00 and 23:59")]
    InvalidScheduleTime {
        /// The value as given.
        value: String,
    },
    /// A backup archive belongs to another VMID or lives on another storage.
    #[error("archive `{volid}` is refused: {reason}")]
    ForeignArchive {
        /// The archive's volume id.
        volid: VolumeId,
        /// Why: another VMID or another storage.
        reason: String,
    },
    /// The archive is protected and cannot be removed.
    #[error("archive `{volid}` is protected")]
    ProtectedArchive {
        /// The archive's volume id.
        volid: VolumeId,
    },
    /// The ISO is not in the product's ISO storage listing, or the request is malformed.
    #[error("unknown iso `{volid}`: {reason}")]
    UnknownIso {
        /// The requested volume id, as given.
        volid: String,
        /// Why it was refused.
        reason: String,
    },
    /// A VMID was given that is not the service's own.
    #[error("vmid `{got}` does not belong to this service (expected `{expected}`)")]
    ForeignVmid {
        /// The service's VMID.
        expected: VmId,
        /// The VMID that was given.
        got: VmId,
    },
    /// The customer tried to edit an object the module manages (e.g. `ipfilter-net0`).
    #[error("`{name}` is managed by the provider and cannot be edited")]
    Reserved {
        /// The reserved name.
        name: String,
    },
    /// A firewall rule position is outside the list.
    #[error("rule position {pos} is out of range (list has {len} rules)")]
    RulePosition {
        /// The requested position.
        pos: usize,
        /// How many rules exist.
        len: usize,
    },
    /// A console token's 10 seconds have passed.
    #[error("console link expired")]
    TokenExpired,
    /// A console token was already redeemed.
    #[error("console link was already used")]
    TokenAlreadyUsed,
    /// A console token was issued for another service.
    #[error("console link belongs to another service")]
    TokenForeignService,
    /// A console token is not known.
    #[error("console link is unknown")]
    TokenUnknown,
    /// No snapshot name could be generated that is unique.
    #[error("cannot generate a unique snapshot name")]
    SnapshotNameExhausted,
    /// A stored plan or schedule could not be read or written.
    #[error("store failed: {context}")]
    Store {
        /// What was being done.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored plan's progress is beyond its steps or for another plan.
    #[error("plan `{id}` progress is invalid: {reason}")]
    InvalidProgress {
        /// The plan id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A Proxmox VE request failed (network, credentials, API error, task failure): the
    /// client area shows "Something went wrong".
    #[error("proxmox request failed: {context}")]
    Pve {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: Box<pve_vps_api::Error>,
    },
    /// The reverse-DNS provider refused or failed.
    #[error("reverse dns provider failed")]
    Dns {
        /// The provider's error.
        #[source]
        source: Box<pve_vps_dns::Error>,
    },
    /// A firewall rule or option does not validate.
    #[error("firewall rule is invalid")]
    InvalidRule {
        /// The model's error (names the field).
        #[source]
        source: Box<pve_vps_firewall::Error>,
    },
    /// The change would make a management port unreachable; pass `confirm_lockout = true` to
    /// apply it anyway.
    #[error("change would block management port(s) {ports}: confirm to apply it anyway")]
    Lockout {
        /// The ports, e.g. `tcp/22`.
        ports: String,
    },
    /// Something the operation needs is not configured (e.g. no reverse-DNS provider).
    #[error("{what} is not configured")]
    NotConfigured {
        /// What is missing.
        what: &'static str,
    },
    /// Another long operation (restore, reinstall, backup) of this service is in progress.
    #[error("another operation is in progress on this vm ({operation})")]
    InProgress {
        /// Which one.
        operation: String,
    },
    /// A restore failed; retry it (same archive) with `resume` or reinstall instead.
    #[error("restore of `{archive}` failed (plan `{plan}`): {reason}")]
    RestoreFailed {
        /// The archive.
        archive: VolumeId,
        /// The stored plan to resume.
        plan: String,
        /// What failed.
        reason: String,
    },
    /// A storage other than the product's was named.
    #[error("storage `{got}` is not the product's storage `{expected}`")]
    ForeignStorage {
        /// The product's storage.
        expected: StorageId,
        /// The storage that was given.
        got: StorageId,
    },
    /// The service names a cluster the fleet does not have.
    #[error("cluster `{cluster}` is not configured")]
    UnknownCluster {
        /// The service's cluster.
        cluster: crate::ids::ClusterName,
    },
    /// The service lives in another cluster than this client area's (a routing mistake).
    #[error("the service is in cluster `{service}`, this client area serves `{area}`")]
    WrongCluster {
        /// The service's cluster.
        service: crate::ids::ClusterName,
        /// The client area's cluster.
        area: crate::ids::ClusterName,
    },
    /// The cluster did not answer in time.
    #[error("cluster `{cluster}` did not answer within {secs} s")]
    ClusterTimeout {
        /// The cluster.
        cluster: crate::ids::ClusterName,
        /// The time allowed.
        secs: u64,
    },
}

impl Error {
    /// The product or ownership refuses this (Access Denied, foreign VMID, foreign token).
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            Self::AccessDenied { .. }
                | Self::ForeignVmid { .. }
                | Self::TokenForeignService
                | Self::Reserved { .. }
        )
    }

    /// The VM is locked by another operation: retry later.
    pub fn is_locked(&self) -> bool {
        match self {
            Self::Locked { .. } | Self::InProgress { .. } => true,
            Self::Pve { source, .. } => source.is_locked(),
            _ => false,
        }
    }

    /// The VM (or another object) does not exist on Proxmox VE.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Pve { source, .. } if source.is_not_found())
    }

    /// Proxmox VE or the DNS provider failed ("Something went wrong" in the client area).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            Self::Pve { .. } | Self::Dns { .. } | Self::ClusterTimeout { .. }
        )
    }

    /// The change was refused because it would lock the customer out.
    pub fn is_lockout(&self) -> bool {
        matches!(self, Self::Lockout { .. })
    }

    /// A restore failed: offer retry (same archive) or reinstall.
    pub fn is_restore_failed(&self) -> bool {
        matches!(self, Self::RestoreFailed { .. })
    }

    pub(crate) fn pve(context: impl Into<String>) -> impl FnOnce(pve_vps_api::Error) -> Self {
        let context = context.into();
        move |source| Self::Pve {
            context,
            source: Box::new(source),
        }
    }

    /// The input was wrong: show the message to the user.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidValue { .. }
                | Self::InvalidProduct { .. }
                | Self::ProductSyntax { .. }
                | Self::WrongConfirmation { .. }
                | Self::TemplateNotAllowed { .. }
                | Self::InvalidScheduleTime { .. }
                | Self::ForeignArchive { .. }
                | Self::ProtectedArchive { .. }
                | Self::UnknownIso { .. }
                | Self::RulePosition { .. }
                | Self::ForeignStorage { .. }
                | Self::InvalidRule { .. }
        ) || matches!(self, Self::Dns { source } if source.is_invalid_input() || source.is_out_of_scope())
    }

    /// A quota is full or misconfigured.
    pub fn is_quota(&self) -> bool {
        matches!(
            self,
            Self::QuotaExceeded { .. } | Self::QuotaMisconfigured { .. }
        )
    }

    /// A console token cannot be redeemed (expired, used, foreign or unknown).
    pub fn is_token_rejected(&self) -> bool {
        matches!(
            self,
            Self::TokenExpired
                | Self::TokenAlreadyUsed
                | Self::TokenForeignService
                | Self::TokenUnknown
        )
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidValue {
            what,
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn store(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Store {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
