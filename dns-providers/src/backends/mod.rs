//! Provider backends, one cargo feature each.

#[cfg(feature = "cloudflare")]
pub(crate) mod cloudflare;
#[cfg(feature = "hestia")]
pub(crate) mod hestia;
#[cfg(feature = "powerdns")]
pub(crate) mod powerdns;
#[cfg(feature = "whmcs-ticket")]
pub(crate) mod whmcs;

#[cfg(any(feature = "cloudflare", feature = "hestia", feature = "powerdns"))]
pub(crate) use zone_batch::{locate_all, per_zone};

/// What the zone-based backends share to answer for many addresses at once.
#[cfg(any(feature = "cloudflare", feature = "hestia", feature = "powerdns"))]
mod zone_batch {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use crate::error::Result;
    use crate::zone::{PtrLocation, ZoneName, Zones};

    /// Where the PTR of each address lives, in order; fails on the first address no zone holds.
    pub(crate) fn locate_all(
        zones: &Zones,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Vec<PtrLocation>> {
        ips.into_iter().map(|ip| zones.locate(ip)).collect()
    }

    /// `fetch` once for each distinct zone of `located`, in the order they first appear; the
    /// answers by zone, or the first error.
    pub(crate) async fn per_zone<'a, T, Fut>(
        located: &'a [PtrLocation],
        mut fetch: impl FnMut(&'a ZoneName) -> Fut,
    ) -> Result<BTreeMap<&'a ZoneName, T>>
    where
        Fut: Future<Output = Result<T>>,
    {
        let mut by_zone = BTreeMap::new();
        for at in located {
            if !by_zone.contains_key(at.zone()) {
                by_zone.insert(at.zone(), fetch(at.zone()).await?);
            }
        }
        Ok(by_zone)
    }
}
