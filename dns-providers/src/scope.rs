//! The scope guard: only the VM's own addresses.

use std::net::IpAddr;

use async_trait::async_trait;
use ipnet::IpNet;

use crate::api::{Change, Ptr, PtrChange, ReverseDns};
use crate::error::{Error, Result};
use crate::hostname::Hostname;
use crate::ptr::canonical_ip;

/// Check that `ip` is inside one of `allowed` (addresses or prefixes, e.g. a VM's IPv6 /64).
///
/// IPv4-mapped IPv6 addresses count as IPv4 on both sides.
pub fn check_allowed(ip: IpAddr, allowed: &[IpNet]) -> Result<()> {
    let ip = canonical_ip(ip);
    let ok = allowed.iter().any(|net| match (net, ip) {
        (IpNet::V6(v6), IpAddr::V4(v4)) => {
            // A mapped prefix such as ::ffff:192.0.2.0/120.
            v6.contains(&v4.to_ipv6_mapped())
        }
        _ => net.contains(&ip),
    });
    if ok {
        Ok(())
    } else {
        Err(Error::NotAllowed { ip })
    }
}

/// A backend restricted to one VM's addresses: any other address fails with
/// [`Error::NotAllowed`] before the inner backend sees it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use pve_vps_dns::{InMemory, ReverseDns, Scoped};
/// let vm_ips: [std::net::IpAddr; 1] = ["192.0.2.5".parse().unwrap()];
/// let dns = Scoped::new(InMemory::any_zone(), vm_ips);
/// let other = "192.0.2.6".parse().unwrap();
/// let err = dns.set_ptr_str(other, "vm1.example.com").await.unwrap_err();
/// assert!(err.is_out_of_scope());
/// # });
/// ```
#[derive(Debug)]
pub struct Scoped<D> {
    inner: D,
    allowed: Vec<IpNet>,
}

impl<D: ReverseDns> Scoped<D> {
    /// Wrap `inner`, allowing only `allowed` (single addresses or prefixes).
    pub fn new<N: Into<IpNet>>(inner: D, allowed: impl IntoIterator<Item = N>) -> Self {
        Self {
            inner,
            allowed: allowed.into_iter().map(Into::into).collect(),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The allowed addresses and prefixes.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }
}

#[async_trait]
impl<D: ReverseDns> ReverseDns for Scoped<D> {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn get_ptr(&self, ip: IpAddr) -> Result<Option<Ptr>> {
        check_allowed(ip, &self.allowed)?;
        self.inner.get_ptr(ip).await
    }

    async fn set_ptr(&self, ip: IpAddr, hostname: &Hostname) -> Result<Change> {
        check_allowed(ip, &self.allowed)?;
        self.inner.set_ptr(ip, hostname).await
    }

    async fn remove_ptr(&self, ip: IpAddr) -> Result<Change> {
        check_allowed(ip, &self.allowed)?;
        self.inner.remove_ptr(ip).await
    }

    async fn list_ptrs(&self, ips: &[IpAddr]) -> Result<Vec<(IpAddr, Option<Ptr>)>> {
        for &ip in ips {
            check_allowed(ip, &self.allowed)?;
        }
        self.inner.list_ptrs(ips).await
    }

    async fn apply(&self, changes: &[PtrChange]) -> Result<Vec<Change>> {
        for c in changes {
            check_allowed(c.ip(), &self.allowed)?;
        }
        self.inner.apply(changes).await
    }
}
