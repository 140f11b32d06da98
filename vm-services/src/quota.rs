//! The `N/M` counters shown next to the Snapshots and Backups headings.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, QuotaKind};

/// How many exist out of how many are allowed (`2/3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaCounter {
    /// Which quota.
    pub kind: QuotaKind,
    /// How many exist.
    pub used: u32,
    /// How many are allowed.
    pub limit: u32,
}

impl QuotaCounter {
    /// Whether one more fits.
    pub fn has_room(&self) -> bool {
        self.used < self.limit
    }

    /// Refuses when no more fit, or when the product allows none.
    pub fn check_room(&self) -> Result<(), Error> {
        if self.limit == 0 {
            return Err(Error::QuotaMisconfigured {
                kind: self.kind,
                reason: "the product allows 0".into(),
            });
        }
        if !self.has_room() {
            return Err(Error::QuotaExceeded {
                kind: self.kind,
                used: self.used,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

impl fmt::Display for QuotaCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.used, self.limit)
    }
}
