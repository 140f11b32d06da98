//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 30 s steps, 6 digits), as PVE's TOTP
//! second factor checks them. Pure functions of the secret and the time.

use ring::hmac;

/// Seconds per TOTP step.
pub const TOTP_STEP_S: u64 = 30;

/// Decode an RFC 4648 base32 string (upper or lower case, `=` padding and spaces ignored), the
/// form TOTP secrets are handed out in. `None` for any other character.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The RFC 4226 HOTP value of `key` at `counter`, `digits` long (zero-padded).
pub(crate) fn hotp(key: &[u8], counter: u64, digits: u32) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = hmac::sign(&k, &counter.to_be_bytes());
    let h = mac.as_ref();
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    let modulus = 10u64.pow(digits);
    format!(
        "{:0width$}",
        u64::from(bin) % modulus,
        width = digits as usize
    )
}

/// The 6-digit TOTP code of a base32 `secret` at `unix_s` (`None` if the secret is not base32).
///
/// ```
/// // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s (8-digit 94287082).
/// let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// assert_eq!(pve_vps_sim::totp_code(secret, 59).as_deref(), Some("287082"));
/// ```
pub fn totp_code(secret: &str, unix_s: u64) -> Option<String> {
    let key = base32_decode(secret)?;
    Some(hotp(&key, unix_s / TOTP_STEP_S, 6))
}

/// The step counter that `code` matches within one step either side of `unix_s`, if any.
pub(crate) fn totp_match(key: &[u8], code: &str, unix_s: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_s / TOTP_STEP_S;
    [now.checked_sub(1), Some(now), Some(now + 1)]
        .into_iter()
        .flatten()
        .find(|&c| hotp(key, c, 6) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B (SHA-1 rows), 8 digits.
        for (t, want) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(hotp(RFC_SEED, t / TOTP_STEP_S, 8), want, "T={t}");
            // The 6-digit code is the same number modulo 10^6.
            assert_eq!(hotp(RFC_SEED, t / TOTP_STEP_S, 6), want[2..], "T={t}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(hotp(RFC_SEED, c as u64, 6), *w);
        }
    }

    #[test]
    fn base32_of_the_rfc_seed() {
        assert_eq!(
            base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").as_deref(),
            Some(RFC_SEED)
        );
        assert_eq!(
            base32_decode("gezdgnbv gy3tqojq====").as_deref(),
            Some(&b"1234567890"[..])
        );
        assert_eq!(base32_decode("GEZ1"), None);
    }

    #[test]
    fn window_is_one_step_either_side() {
        let t = 1_700_000_015;
        let code = hotp(RFC_SEED, t / 30, 6);
        assert_eq!(totp_match(RFC_SEED, &code, t), Some(t / 30));
        assert_eq!(totp_match(RFC_SEED, &code, t + 30), Some(t / 30));
        assert_eq!(totp_match(RFC_SEED, &code, t - 30), Some(t / 30));
        assert_eq!(totp_match(RFC_SEED, &code, t + 90), None);
        assert_eq!(totp_match(RFC_SEED, &code, t - 90), None);
        assert_eq!(totp_match(RFC_SEED, "12345", t), None);
        assert_eq!(totp_match(RFC_SEED, "12345a", t), None);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_code_verifies_within_one_step(key in proptest::collection::vec(any::<u8>(), 10..40),
                                                t in 60u64..4_000_000_000, skew in -30i64..=30) {
                let code = hotp(&key, t / TOTP_STEP_S, 6);
                prop_assert_eq!(code.len(), 6);
                prop_assert!(code.bytes().all(|b| b.is_ascii_digit()));
                let at = (t as i64 + skew) as u64;
                prop_assert!(totp_match(&key, &code, at).is_some());
            }
        }
    }
}
