//! The backend trait and its values.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::hostname::Hostname;

/// Whether a PTR is in DNS or only requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PtrStatus {
    /// The provider serves it.
    Active,
    /// Requested from a human (ticket fallback), not confirmed yet.
    Pending,
}

/// A PTR record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ptr {
    hostname: Hostname,
    status: PtrStatus,
}

impl Ptr {
    /// A PTR the provider serves.
    pub fn active(hostname: Hostname) -> Self {
        Self {
            hostname,
            status: PtrStatus::Active,
        }
    }

    /// A PTR that was requested and is pending.
    pub fn pending(hostname: Hostname) -> Self {
        Self {
            hostname,
            status: PtrStatus::Pending,
        }
    }

    /// The hostname it points to.
    pub fn hostname(&self) -> &Hostname {
        &self.hostname
    }

    /// Active or pending.
    pub fn status(&self) -> PtrStatus {
        self.status
    }
}

/// What a call changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A record was created.
    Created,
    /// An existing record was replaced.
    Replaced,
    /// A record was removed.
    Removed,
    /// Nothing to do: the record already was as asked (or already absent).
    Unchanged,
    /// The change was requested from a human (ticket fallback); `reference` names the request.
    Requested {
        /// Ticket number or similar.
        reference: String,
    },
}

impl Change {
    /// Anything was done or requested.
    pub fn is_change(&self) -> bool {
        !matches!(self, Self::Unchanged)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Replaced => f.write_str("replaced"),
            Self::Removed => f.write_str("removed"),
            Self::Unchanged => f.write_str("unchanged"),
            Self::Requested { reference } => write!(f, "requested in `{reference}`"),
        }
    }
}

/// One wanted PTR state in a batch: point `ip` to a hostname, or remove its PTR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrChange {
    pub(crate) ip: IpAddr,
    pub(crate) hostname: Option<Hostname>,
}

impl PtrChange {
    /// Point `ip` to `hostname`.
    pub fn set(ip: IpAddr, hostname: Hostname) -> Self {
        Self {
            ip,
            hostname: Some(hostname),
        }
    }

    /// Remove the PTR of `ip`.
    pub fn remove(ip: IpAddr) -> Self {
        Self { ip, hostname: None }
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The wanted hostname; `None` removes.
    pub fn hostname(&self) -> Option<&Hostname> {
        self.hostname.as_ref()
    }
}

/// Refuse a batch naming one address twice (IPv4-mapped IPv6 counts as IPv4).
pub(crate) fn check_distinct(changes: &[PtrChange]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in changes {
        let ip = crate::ptr::canonical_ip(c.ip);
        if !seen.insert(ip) {
            return Err(Error::DuplicateAddress { ip });
        }
    }
    Ok(())
}

/// Reverse DNS through one provider.
///
/// Every method is idempotent (setting the same value twice returns [`Change::Unchanged`],
/// removing an absent record succeeds with [`Change::Unchanged`]) and safe to call
/// concurrently. Addresses are taken as given; IPv4-mapped IPv6 addresses mean their IPv4
/// address. Out-of-scope addresses and invalid input fail before any request.
#[async_trait]
pub trait ReverseDns: fmt::Debug + Send + Sync {
    /// The provider's name, as used in errors (`"powerdns"`, `"cloudflare"`, ...).
    fn provider(&self) -> &'static str;

    /// The PTR of `ip`, if any.
    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>>;

    /// Make `ip` point to `hostname`, creating or replacing its PTR.
    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change>;

    /// Remove the PTR of `ip`; succeeds with [`Change::Unchanged`] when there is none.
    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change>;

    /// The PTRs of several addresses, in the order given. Every address is checked before any
    /// request is sent.
    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        let mut out = Vec::with_capacity(ips.len());
        for &ip in ips {
            out.push((ip, self.get_ptr(ip).await?));
        }
        Ok(out)
    }

    /// Apply several changes, all or nothing: every address is checked (scope, zone, no
    /// duplicates) before any request; if one change fails, those already applied are put back
    /// as they were and the first error is returned. Returns one [`Change`] per entry.
    ///
    /// The default applies the changes one by one and rolls back by re-applying the previous
    /// values; backends with atomic multi-record updates (PowerDNS: one PATCH per zone) or a
    /// single request (the ticket fallback: one ticket) override it.
    async fn apply(&self, changes: &[PtrChange]) -> Result<Vec<Change>> {
        check_distinct(changes)?;
        let ips: Vec<IpAddr> = changes.iter().map(PtrChange::ip).collect();
        // Validates every address before any write, and gives the state to roll back to.
        let before = self.list_ptrs(&ips).await?;
        let mut done: Vec<Change> = Vec::with_capacity(changes.len());
        for change in changes {
            let result = match change.hostname() {
                Some(h) => self.set_ptr(change.ip, h).await,
                None => self.remove_ptr(change.ip).await,
            };
            match result {
                Ok(c) => done.push(c),
                Err(err) => {
                    for ((ip, old), c) in before.iter().zip(&done).rev() {
                        if !c.is_change() {
                            continue;
                        }
                        let undo = match old {
                            Some(ptr) => self.set_ptr(*ip, ptr.hostname()).await,
                            None => self.remove_ptr(*ip).await,
                        };
                        if let Err(e) = undo {
                            tracing::error!(provider = self.provider(), %ip, error = %e,
                                "rollback of a failed batch failed");
                        }
                    }
                    return Err(err);
                }
            }
        }
        Ok(done)
    }

    /// [`set_ptr`](ReverseDns::set_ptr) from an unvalidated string: an invalid hostname fails
    /// with [`Error::InvalidHostname`] and nothing is sent.
    async fn set_ptr_str(&self, ip: IpAddr, hostname: &str) -> Result<Change> {
        let hostname: Hostname = hostname
            .parse()
            .map_err(|reason| Error::invalid_hostname(hostname, reason))?;
        self.set_ptr(ip, &hostname).await
    }
}
