//! Property tests: identifiers never panic on any input, and valid ones round-trip.

use proptest::prelude::*;
use pve_vps_api::{SnapshotName, Upid, VmId, VolumeId};

proptest! {
    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = s.parse::<Upid>();
        let _ = s.parse::<VolumeId>();
        let _ = s.parse::<SnapshotName>();
        let _ = s.parse::<VmId>();
    }

    #[test]
    fn upid_like_strings_never_panic(s in "UPID:[a-z0-9:-]{0,20}:[0-9A-Fa-f:]{0,30}:[a-z!@:]{0,20}") {
        let _ = s.parse::<Upid>();
    }

    #[test]
    fn upid_round_trips(
        node in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        pid in any::<u32>(),
        pstart in 0u64..0xF_FFFF_FFFF,
        start in any::<u32>(),
        wtype in "[a-z]{1,12}",
        id in "[0-9]{0,6}",
        user in "[a-z]{1,8}@(pam|pve)(![a-z]{1,6})?",
    ) {
        let s = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{wtype}:{id}:{user}:");
        let u: Upid = s.parse().unwrap();
        prop_assert_eq!(u.to_string(), s.clone());
        prop_assert_eq!(u.node().as_str(), node.as_str());
        prop_assert_eq!(u.pid(), pid);
        prop_assert_eq!(u.pstart(), pstart);
        prop_assert_eq!(u.start_time(), i64::from(start));
        prop_assert_eq!(u.worker_type(), wtype.as_str());
        prop_assert_eq!(u.id(), id.as_str());
        prop_assert_eq!(u.user(), user.as_str());
        prop_assert_eq!(u.to_string().parse::<Upid>().unwrap(), u);
    }

    #[test]
    fn volume_id_round_trips(
        storage in "[a-z][a-z0-9_.-]{0,10}[a-z0-9]",
        content in proptest::option::of("(backup|iso|images|vztmpl)"),
        name in "[A-Za-z0-9_.-]{1,30}",
    ) {
        prop_assume!(!name.contains(".."));
        let s = match &content {
            Some(c) => format!("{storage}:{c}/{name}"),
            None => format!("{storage}:{name}"),
        };
        let v: VolumeId = s.parse().unwrap();
        prop_assert_eq!(v.to_string(), s.clone());
        prop_assert_eq!(v.storage().to_string(), storage.clone());
        prop_assert_eq!(v.to_string().parse::<VolumeId>().unwrap(), v);
    }

    #[test]
    fn volume_ids_with_dotdot_or_controls_are_rejected(prefix in "[a-z]{2,5}:[a-z]{0,5}", bad in "(\\.\\.|\n|\t|\u{0}| )", suffix in "[a-z]{0,5}") {
        let s = format!("{prefix}{bad}{suffix}");
        prop_assert!(s.parse::<VolumeId>().is_err());
    }

    #[test]
    fn snapshot_name_round_trips(s in "[a-zA-Z][a-zA-Z0-9_-]{0,39}") {
        prop_assume!(s != "current" && s != "pending");
        let n: SnapshotName = s.parse().unwrap();
        prop_assert_eq!(n.to_string(), s.clone());
        prop_assert_eq!(n.to_string().parse::<SnapshotName>().unwrap(), n);
    }

    #[test]
    fn snapshot_names_outside_the_grammar_are_rejected(s in "([0-9_-][a-z]{0,5}|[a-z]{1,5}[^a-zA-Z0-9_-][a-z]{0,5}|[a-z]{41,50})") {
        prop_assert!(s.parse::<SnapshotName>().is_err());
    }

    #[test]
    fn vmid_round_trips(n in 100u32..=999_999_999) {
        let v = VmId::new(n).unwrap();
        prop_assert_eq!(v.to_string().parse::<VmId>().unwrap(), v);
    }
}
