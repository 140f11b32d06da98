//! How long operations (restores, reinstalls) ended, kept in an
//! [`OutcomeStore`](crate::stores::OutcomeStore) so that any portal instance can show the
//! customer the result, whichever worker carried the operation out.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::reinstall::PlanId;
use crate::service::VmRef;

/// Which long operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Restore from a backup.
    Restore,
    /// Reinstall from a template.
    Reinstall,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ended", rename_all = "snake_case")]
pub enum Ending {
    /// Every step finished.
    Succeeded,
    /// A step failed; the stored plan stays and is resumed later (a reinstall).
    Failed {
        /// Why (safe to show: no secrets).
        reason: String,
    },
    /// A restore failed: the customer retries it (same archive) or reinstalls.
    NeedsRetryOrReinstall {
        /// Why.
        reason: String,
    },
}

/// One ended operation. A plan has at most one outcome: a later one (a resumed plan that
/// finished) replaces the earlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationOutcome {
    /// The stored plan.
    pub plan: PlanId,
    /// The VM.
    pub vm: VmRef,
    /// Restore or reinstall.
    pub operation: OperationKind,
    /// How it ended.
    pub ending: Ending,
    /// When (second precision, as stored).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}
