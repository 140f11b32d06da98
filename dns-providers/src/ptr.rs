//! Pure helpers: PTR owner names of addresses, and back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address as DNS sees it: an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is its IPv4
/// address; everything else is unchanged.
///
/// ```
/// use pve_vps_dns::canonical_ip;
/// let mapped: std::net::IpAddr = "::ffff:192.0.2.1".parse().unwrap();
/// assert_eq!(canonical_ip(mapped).to_string(), "192.0.2.1");
/// ```
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The PTR owner name of an address, fully qualified (trailing dot), lowercase.
///
/// IPv4: reversed octets under `in-addr.arpa.`; IPv6: 32 reversed nibbles under `ip6.arpa.`;
/// IPv4-mapped IPv6 is treated as IPv4.
///
/// ```
/// use pve_vps_dns::ptr_name;
/// assert_eq!(ptr_name("192.0.2.5".parse().unwrap()), "5.2.0.192.in-addr.arpa.");
/// assert_eq!(
///     ptr_name("2001:db8::1".parse().unwrap()),
///     "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
/// );
/// ```
pub fn ptr_name(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    out.push('.');
                }
            }
            out.push_str("ip6.arpa.");
            out
        }
    }
}

/// The address a full PTR owner name stands for, if it is one (with or without trailing dot,
/// any case). The inverse of [`ptr_name`] for canonical addresses.
///
/// ```
/// use pve_vps_dns::ip_from_ptr_name;
/// assert_eq!(ip_from_ptr_name("5.2.0.192.in-addr.arpa."), Some("192.0.2.5".parse().unwrap()));
/// assert_eq!(ip_from_ptr_name("2.0.192.in-addr.arpa."), None);
/// ```
pub fn ip_from_ptr_name(name: &str) -> Option<IpAddr> {
    let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        for (i, label) in labels.iter().rev().enumerate() {
            // Canonical decimal only: no leading zeros, no sign.
            if label.is_empty()
                || label.len() > 3
                || (label.len() > 1 && label.starts_with('0'))
                || !label.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            octets[i] = label.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = lower.strip_suffix(".ip6.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 32 {
            return None;
        }
        let mut value: u128 = 0;
        for label in labels.iter().rev() {
            let mut chars = label.chars();
            let nibble = chars.next()?.to_digit(16)?;
            if chars.next().is_some() {
                return None;
            }
            value = (value << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(ptr_name(mapped), "7.100.51.198.in-addr.arpa.");
    }

    #[test]
    fn rejects_non_canonical_names() {
        for bad in [
            "05.2.0.192.in-addr.arpa.",
            "256.2.0.192.in-addr.arpa.",
            "1.2.0.192.168.in-addr.arpa.",
            "x.ip6.arpa.",
            "example.com.",
        ] {
            assert_eq!(ip_from_ptr_name(bad), None, "{bad}");
        }
    }
}
