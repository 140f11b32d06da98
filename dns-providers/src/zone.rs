//! Reverse zones: which configured zone holds the PTR of an address (pure).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::error::Error;
use crate::ptr::{canonical_ip, ptr_name};

/// The name of a reverse zone, fully qualified (trailing dot), lowercase.
///
/// Only names under `in-addr.arpa.` or `ip6.arpa.` are accepted. Labels are letters, digits,
/// `-` and `/` (RFC 2317 classless zones such as `0/26.2.0.192.in-addr.arpa.`). [`FromStr`]
/// accepts the name with or without one trailing dot; [`Display`](fmt::Display) prints it with
/// the dot.
///
/// ```
/// use pve_vps_dns::ZoneName;
/// let z: ZoneName = "2.0.192.IN-ADDR.ARPA".parse()?;
/// assert_eq!(z.to_string(), "2.0.192.in-addr.arpa.");
/// # Ok::<(), pve_vps_dns::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneName(String);

impl ZoneName {
    /// The name with its trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without its trailing dot (Cloudflare and HestiaCP write names so).
    pub fn without_dot(&self) -> &str {
        self.0.strip_suffix('.').unwrap_or(&self.0)
    }

    /// Labels left of `in-addr.arpa.` / `ip6.arpa.`, most significant last.
    fn inner_labels(&self) -> Vec<&str> {
        let body = self.without_dot();
        let rest = body
            .strip_suffix("in-addr.arpa")
            .or_else(|| body.strip_suffix("ip6.arpa"))
            .unwrap_or("");
        rest.split('.').filter(|l| !l.is_empty()).collect()
    }

    fn is_v4(&self) -> bool {
        self.0.ends_with("in-addr.arpa.")
    }
}

impl FromStr for ZoneName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::InvalidZone {
            zone: s.to_owned(),
            reason: reason.to_owned(),
        };
        let body = s.strip_suffix('.').unwrap_or(s);
        if body.ends_with('.') {
            return Err(invalid("more than one trailing dot"));
        }
        let lower = body.to_ascii_lowercase();
        if !(lower == "in-addr.arpa"
            || lower.ends_with(".in-addr.arpa")
            || lower == "ip6.arpa"
            || lower.ends_with(".ip6.arpa"))
        {
            return Err(invalid("not a reverse zone under in-addr.arpa or ip6.arpa"));
        }
        if lower.len() > 253 {
            return Err(invalid("longer than 253 characters"));
        }
        for label in lower.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("empty label or label over 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'/')
            {
                return Err(invalid("only letters, digits, `-` and `/` are allowed"));
            }
        }
        Ok(Self(format!("{lower}.")))
    }
}

impl TryFrom<&str> for ZoneName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One reverse zone a provider serves: an ordinary one (`2.0.192.in-addr.arpa.`) or an
/// RFC 2317 classless one configured for its IPv4 prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseZone {
    name: ZoneName,
    classless: Option<Ipv4Net>,
}

impl ReverseZone {
    /// An ordinary reverse zone on an octet (IPv4) or nibble (IPv6) boundary.
    ///
    /// A name that is not made of octets or nibbles (a classless name such as `0/26.…` or
    /// `0-26.…`) is refused: configure it with [`ReverseZone::classless`].
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name: ZoneName = name.as_ref().parse()?;
        let labels = name.inner_labels();
        let ok = if name.is_v4() {
            labels.len() <= 4
                && labels.iter().all(|l| {
                    l.len() <= 3
                        && l.bytes().all(|b| b.is_ascii_digit())
                        && l.parse::<u8>().is_ok()
                        && (l.len() == 1 || !l.starts_with('0'))
                })
        } else {
            labels.len() <= 32
                && labels
                    .iter()
                    .all(|l| l.len() == 1 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        if !ok {
            return Err(Error::InvalidZone {
                zone: name.to_string(),
                reason: "not on an octet or nibble boundary; configure a classless (RFC 2317) \
                         zone with its prefix"
                    .to_owned(),
            });
        }
        Ok(Self {
            name,
            classless: None,
        })
    }

    /// An RFC 2317 classless zone (`0/26.2.0.192.in-addr.arpa.` or `0-26.2.0.192.in-addr.arpa.`)
    /// holding the PTRs of `prefix` (a /25 to /32). Its records are named
    /// `<last octet>.<zone>`; the parent zone delegates to them with CNAMEs.
    ///
    /// ```
    /// use pve_vps_dns::{ReverseZone, Zones};
    /// let zones = Zones::new([
    ///     ReverseZone::new("2.0.192.in-addr.arpa.")?,
    ///     ReverseZone::classless("192.0.2.0/26".parse().unwrap(), "0-26.2.0.192.in-addr.arpa.")?,
    /// ]);
    /// let at = zones.locate("192.0.2.5".parse().unwrap())?;
    /// assert_eq!(at.zone().as_str(), "0-26.2.0.192.in-addr.arpa.");
    /// assert_eq!(at.record_name(), "5.0-26.2.0.192.in-addr.arpa.");
    /// let at = zones.locate("192.0.2.200".parse().unwrap())?;
    /// assert_eq!(at.record_name(), "200.2.0.192.in-addr.arpa.");
    /// # Ok::<(), pve_vps_dns::Error>(())
    /// ```
    pub fn classless(prefix: Ipv4Net, name: impl AsRef<str>) -> Result<Self, Error> {
        let name: ZoneName = name.as_ref().parse()?;
        let invalid = |reason: String| Error::InvalidZone {
            zone: name.to_string(),
            reason,
        };
        if !(25..=32).contains(&prefix.prefix_len()) {
            return Err(invalid(format!(
                "classless prefix `{prefix}` must be a /25 to /32"
            )));
        }
        let [a, b, c, _] = prefix.network().octets();
        let parent = format!(".{c}.{b}.{a}.in-addr.arpa.");
        let first = name.as_str().strip_suffix(&parent).unwrap_or("");
        if first.is_empty() || first.contains('.') {
            return Err(invalid(format!(
                "a classless zone for `{prefix}` is one label under `{}`",
                &parent[1..]
            )));
        }
        Ok(Self {
            name,
            classless: Some(prefix.trunc()),
        })
    }

    /// The zone name.
    pub fn name(&self) -> &ZoneName {
        &self.name
    }

    /// The prefix of a classless zone.
    pub fn classless_prefix(&self) -> Option<Ipv4Net> {
        self.classless
    }
}

/// Where the PTR of one address lives: its zone and its owner name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrLocation {
    ip: IpAddr,
    zone: ZoneName,
    record_name: String,
}

impl PtrLocation {
    /// The (canonical) address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
    /// The zone holding the record.
    pub fn zone(&self) -> &ZoneName {
        &self.zone
    }
    /// The record's owner name, fully qualified (trailing dot).
    pub fn record_name(&self) -> &str {
        &self.record_name
    }
    /// The owner name relative to the zone (`5` in `2.0.192.in-addr.arpa.`), as HestiaCP wants
    /// it; `@` when the record is the zone apex.
    pub fn relative_name(&self) -> &str {
        let zone = self.zone.as_str();
        match self.record_name.strip_suffix(zone) {
            Some(rest) => rest.strip_suffix('.').unwrap_or("@"),
            None => &self.record_name,
        }
    }
}

/// The reverse zones one provider serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zones {
    zones: Vec<ReverseZone>,
}

impl Zones {
    /// A zone set.
    pub fn new(zones: impl IntoIterator<Item = ReverseZone>) -> Self {
        Self {
            zones: zones.into_iter().collect(),
        }
    }

    /// Parse ordinary zone names (no classless zones).
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let zones = names
            .into_iter()
            .map(ReverseZone::new)
            .collect::<Result<_, _>>()?;
        Ok(Self { zones })
    }

    /// The configured zones.
    pub fn iter(&self) -> impl Iterator<Item = &ReverseZone> {
        self.zones.iter()
    }

    /// The zone holding the PTR of `ip`: the narrowest classless zone whose prefix contains it,
    /// else the ordinary zone with the longest matching suffix.
    ///
    /// Fails with [`Error::NoZone`] when no configured zone holds it.
    pub fn locate(&self, ip: IpAddr) -> Result<PtrLocation, Error> {
        let ip = canonical_ip(ip);
        if let IpAddr::V4(v4) = ip {
            let best = self
                .zones
                .iter()
                .filter_map(|z| z.classless.map(|p| (z, p)))
                .filter(|(_, p)| p.contains(&v4))
                .max_by_key(|(_, p)| p.prefix_len());
            if let Some((zone, _)) = best {
                let last = v4.octets()[3];
                return Ok(PtrLocation {
                    ip,
                    zone: zone.name.clone(),
                    record_name: format!("{last}.{}", zone.name),
                });
            }
        }
        let name = ptr_name(ip);
        let best = self
            .zones
            .iter()
            .filter(|z| z.classless.is_none())
            .filter(|z| {
                let zone = z.name.as_str();
                name == zone
                    || (name.ends_with(zone)
                        && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
            })
            .max_by_key(|z| z.name.as_str().len());
        match best {
            Some(zone) => Ok(PtrLocation {
                ip,
                zone: zone.name.clone(),
                record_name: name,
            }),
            None => Err(Error::NoZone { ip }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_suffix_wins() {
        let zones = Zones::from_names([
            "in-addr.arpa",
            "192.in-addr.arpa.",
            "2.0.192.in-addr.arpa.",
            "8.b.d.0.1.0.0.2.ip6.arpa.",
        ])
        .unwrap();
        let at = zones.locate("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(at.zone().as_str(), "2.0.192.in-addr.arpa.");
        assert_eq!(at.relative_name(), "9");
        let at = zones.locate("192.0.3.9".parse().unwrap()).unwrap();
        assert_eq!(at.zone().as_str(), "192.in-addr.arpa.");
        let at = zones.locate("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(at.zone().as_str(), "8.b.d.0.1.0.0.2.ip6.arpa.");
        assert!(matches!(
            zones.locate("2001:db9::1".parse().unwrap()),
            Err(Error::NoZone { .. })
        ));
    }

    #[test]
    fn suffix_matches_on_label_boundary() {
        let zones = Zones::from_names(["2.0.192.in-addr.arpa."]).unwrap();
        // 12.0.192 must not match 2.0.192.
        assert!(zones.locate("192.0.12.1".parse().unwrap()).is_err());
    }

    #[test]
    fn classless_both_namings() {
        for name in ["0/26.2.0.192.in-addr.arpa.", "0-26.2.0.192.in-addr.arpa."] {
            let zones = Zones::new([
                ReverseZone::new("2.0.192.in-addr.arpa.").unwrap(),
                ReverseZone::classless("192.0.2.0/26".parse().unwrap(), name).unwrap(),
            ]);
            let at = zones.locate("192.0.2.63".parse().unwrap()).unwrap();
            assert_eq!(at.zone().as_str(), name);
            assert_eq!(at.relative_name(), "63");
            let at = zones.locate("192.0.2.64".parse().unwrap()).unwrap();
            assert_eq!(at.zone().as_str(), "2.0.192.in-addr.arpa.");
        }
    }

    #[test]
    fn bad_zones() {
        assert!(ReverseZone::new("example.com").is_err());
        assert!(ReverseZone::new("0/26.2.0.192.in-addr.arpa.").is_err());
        assert!(ReverseZone::new("2.0.192.in-addr.arpa..").is_err());
        assert!(
            ReverseZone::classless("192.0.2.0/24".parse().unwrap(), "0/24.2.0.192.in-addr.arpa")
                .is_err()
        );
        assert!(
            ReverseZone::classless("192.0.2.0/26".parse().unwrap(), "0/26.3.0.192.in-addr.arpa")
                .is_err()
        );
    }
}
