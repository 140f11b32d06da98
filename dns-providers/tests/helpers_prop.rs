//! Property tests of the pure helpers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use pve_vps_dns::{Hostname, ReverseZone, Zones, canonical_ip, ip_from_ptr_name, ptr_name};

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        // IPv4-mapped IPv6.
        any::<u32>().prop_map(|v| IpAddr::V6(Ipv4Addr::from(v).to_ipv6_mapped())),
    ]
}

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}

proptest! {
    #[test]
    fn ptr_name_round_trips(ip in any_ip()) {
        let name = ptr_name(ip);
        prop_assert!(name.ends_with(".in-addr.arpa.") || name.ends_with(".ip6.arpa."));
        prop_assert_eq!(ip_from_ptr_name(&name), Some(canonical_ip(ip)));
        prop_assert_eq!(ip_from_ptr_name(&name.to_uppercase()), Some(canonical_ip(ip)));
    }

    #[test]
    fn ip_from_ptr_name_never_panics(s in "\\PC{0,80}") {
        let _ = ip_from_ptr_name(&s);
    }

    #[test]
    fn hostname_parse_never_panics_and_accepted_values_reparse(s in "\\PC{0,300}") {
        if let Ok(h) = s.parse::<Hostname>() {
            prop_assert_eq!(h.to_string().parse::<Hostname>(), Ok(h.clone()));
            prop_assert_eq!(Hostname::from_fqdn(&h.to_fqdn()), Ok(h.clone()));
            prop_assert!(h.as_str().len() <= 253);
        }
    }

    #[test]
    fn hostname_like_input_reparses(labels in prop::collection::vec(label(), 1..6),
                                    tld in "[a-z]{2,6}", dot in any::<bool>()) {
        let mut s = labels.join(".");
        s.push('.');
        s.push_str(&tld);
        if dot { s.push('.'); }
        let h: Hostname = s.parse().map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(h.to_string().parse::<Hostname>(), Ok(h.clone()));
        prop_assert_eq!(h.to_string(), s.trim_end_matches('.'));
    }

    #[test]
    fn locate_picks_a_zone_that_contains_the_name(ip in any_ip()) {
        let zones = Zones::new([
            ReverseZone::new("in-addr.arpa.").unwrap(),
            ReverseZone::new("10.in-addr.arpa.").unwrap(),
            ReverseZone::new("ip6.arpa.").unwrap(),
            ReverseZone::new("8.b.d.0.1.0.0.2.ip6.arpa.").unwrap(),
            ReverseZone::classless("10.0.0.0/26".parse().unwrap(), "0-26.0.0.10.in-addr.arpa.")
                .unwrap(),
        ]);
        let at = zones.locate(ip).unwrap();
        let ip = canonical_ip(ip);
        prop_assert_eq!(at.ip(), ip);
        prop_assert!(at.record_name().ends_with(at.zone().as_str()));
        let in_classless = matches!(ip, IpAddr::V4(v4) if v4.octets()[..3] == [10, 0, 0]
            && v4.octets()[3] < 64);
        if in_classless {
            prop_assert_eq!(at.zone().as_str(), "0-26.0.0.10.in-addr.arpa.");
        } else {
            prop_assert_eq!(at.record_name(), ptr_name(ip));
            // Longest suffix: 10/8 and 2001:db8::/32 win over the root zones.
            let specific = match ip {
                IpAddr::V4(v4) => v4.octets()[0] == 10,
                IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
            };
            prop_assert_eq!(specific, at.zone().as_str().len() > "in-addr.arpa.".len());
        }
    }
}
