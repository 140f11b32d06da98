//! The in-memory backend.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::api::{Change, Ptr, ReverseDns};
use crate::error::Result;
use crate::hostname::Hostname;
use crate::zone::{ReverseZone, Zones};

/// Reverse DNS kept in memory: for tests and for hosting companies without any DNS API yet.
///
/// ```
/// # tokio_test_block_on(async {
/// use pve_vps_dns::{InMemory, ReverseDns, Change};
/// let dns = InMemory::any_zone();
/// let ip = "192.0.2.5".parse().unwrap();
/// assert_eq!(dns.set_ptr_str(ip, "vm1.example.com").await?, Change::Created);
/// assert_eq!(dns.set_ptr_str(ip, "vm1.example.com.").await?, Change::Unchanged);
/// assert_eq!(dns.get_ptr(ip).await?.unwrap().hostname().as_str(), "vm1.example.com");
/// # Ok::<(), pve_vps_dns::Error>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Default)]
pub struct InMemory {
    zones: Zones,
    records: Mutex<BTreeMap<String, Hostname>>,
}

impl InMemory {
    /// Records only for addresses inside `zones`.
    pub fn new(zones: Zones) -> Self {
        Self {
            zones,
            records: Mutex::default(),
        }
    }

    /// Records for any address (zones `in-addr.arpa.` and `ip6.arpa.`).
    pub fn any_zone() -> Self {
        let zones = ["in-addr.arpa.", "ip6.arpa."]
            .into_iter()
            .filter_map(|z| ReverseZone::new(z).ok());
        Self::new(Zones::new(zones))
    }

    /// Every record, by owner name.
    pub fn snapshot(&self) -> BTreeMap<String, Hostname> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ReverseDns for InMemory {
    fn provider(&self) -> &'static str {
        "memory"
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        let at = self.zones.locate(ip)?;
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(records.get(at.record_name()).cloned().map(Ptr::active))
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(
            match records.insert(at.record_name().to_owned(), hostname.clone()) {
                None => Change::Created,
                Some(old) if &old == hostname => Change::Unchanged,
                Some(_) => Change::Replaced,
            },
        )
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        let at = self.zones.locate(ip)?;
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match records.remove(at.record_name()) {
            Some(_) => Change::Removed,
            None => Change::Unchanged,
        })
    }

    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        let located = ips
            .iter()
            .map(|&ip| self.zones.locate(ip).map(|at| (ip, at)))
            .collect::<Result<Vec<_>>>()?;
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(located
            .into_iter()
            .map(|(ip, at)| (ip, records.get(at.record_name()).cloned().map(Ptr::active)))
            .collect())
    }
}
