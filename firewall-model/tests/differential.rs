//! The compiled evaluator agrees with the reference on generated configs and packets, and
//! generated configs round-trip through print and parse.

use firewall_model::fuzzing;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compiled_agrees_with_reference(data in proptest::collection::vec(any::<u8>(), 64..1500)) {
        if let Err(e) = fuzzing::differential(&data) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn printed_files_parse_back_to_the_same_model(data in proptest::collection::vec(any::<u8>(), 16..800)) {
        let mut c = fuzzing::Choices::new(&data);
        let (cl, h, g) = fuzzing::config_texts(&mut c);
        for (text, kind) in [(cl, firewall_model::FileKind::Cluster), (h, firewall_model::FileKind::Host), (g, firewall_model::FileKind::Guest)] {
            let (file, _) = firewall_model::parse_lenient(&text, kind);
            prop_assert!(fuzzing::roundtrip(&file).is_ok(), "{:?}", fuzzing::roundtrip(&file));
        }
    }

    #[test]
    fn parser_never_panics_on_junk(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = fuzzing::parse_roundtrip(&data);
    }
}
