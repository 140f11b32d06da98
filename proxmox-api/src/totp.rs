//! RFC 6238 time-based one-time passwords (HMAC-SHA1, 30 s steps, 6 digits), as PVE's TOTP
//! second factor expects them.
//!
//! FACTS (pve-access-control, PVE/API2/AccessControl.pm `verify_user_tfa_config`, and the
//! TOTP factor of proxmox-tfa): PVE's TOTP defaults are 6 digits and a 30 s step with
//! SHA-1; the secret is shown to the user Base32-encoded (RFC 4648, as in `otpauth://` URIs).

use crate::error::{Error, Result};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha1::{Digest, Sha1};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of one TOTP time step.
pub const STEP_SECONDS: u64 = 30;

/// Number of digits PVE expects.
pub const DIGITS: u32 = 6;

/// A TOTP shared secret. `Debug` never shows it.
#[derive(Clone)]
pub struct TotpSecret(SecretBox<[u8]>);

impl TotpSecret {
    /// Parse the Base32 secret shown when the factor was enrolled (`JBSWY3DPEHPK3PXP`; case,
    /// spaces and `=` padding are ignored).
    pub fn from_base32(text: &str) -> Result<Self> {
        let bytes = base32_decode(text).ok_or_else(|| {
            Error::invalid("totp secret", "<redacted>", "not valid base32 (A-Z, 2-7)")
        })?;
        Self::from_bytes(bytes)
    }

    /// Use raw secret bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::invalid("totp secret", "<redacted>", "is empty"));
        }
        Ok(TotpSecret(SecretBox::new(bytes.into_boxed_slice())))
    }

    /// The 6-digit code valid at `at`.
    pub fn code_at(&self, at: SystemTime) -> SecretString {
        let secs = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        SecretString::from(format!(
            "{:0width$}",
            hotp(self.0.expose_secret(), secs / STEP_SECONDS, DIGITS),
            width = DIGITS as usize
        ))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// RFC 4226 HOTP value of `counter`, reduced to `digits` decimal digits.
pub(crate) fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let h = hmac_sha1(key, &counter.to_be_bytes());
    // Dynamic truncation (RFC 4226 section 5.3).
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 10u32.pow(digits)
}

/// RFC 2104 HMAC over SHA-1 (64-byte blocks), written out so that the crate needs no second
/// `hmac`/`digest` major version next to the ones already in the workspace.
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha1::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha1::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// RFC 4648 Base32 without padding requirements; `None` on any other character.
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.chars() {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            ' ' | '=' | '-' => continue,
            _ => return None,
        };
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RFC_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 appendix B, SHA-1 column (8 digits).
        for (t, expected) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(RFC_KEY, t / 30, 8), expected, "t = {t}");
        }
    }

    #[test]
    fn rfc2202_hmac_sha1_test_vectors() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }

    #[test]
    fn rfc4226_hotp_test_vectors() {
        // RFC 4226 appendix D, 6 digits.
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, e) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC_KEY, counter as u64, 6), *e, "counter {counter}");
        }
    }

    #[test]
    fn six_digit_codes_keep_leading_zeros_and_step_every_30_s() {
        let secret = TotpSecret::from_bytes(RFC_KEY.to_vec()).unwrap();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        // 8-digit 07081804 -> last 6 digits 081804.
        assert_eq!(secret.code_at(at(1111111109)).expose_secret(), "081804");
        assert_eq!(secret.code_at(at(59)).expose_secret(), "287082");
        // Same 30 s window, same code; next window, a different one.
        assert_eq!(
            secret.code_at(at(30)).expose_secret(),
            secret.code_at(at(59)).expose_secret()
        );
        assert_ne!(
            secret.code_at(at(59)).expose_secret(),
            secret.code_at(at(60)).expose_secret()
        );
    }

    #[test]
    fn base32_secrets() {
        // "12345678901234567890" in Base32.
        let s = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(s.0.expose_secret(), RFC_KEY);
        let spaced = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(spaced.0.expose_secret(), RFC_KEY);
        assert!(TotpSecret::from_base32("not base32!").is_err());
        assert!(TotpSecret::from_base32("").is_err());
        assert_eq!(format!("{s:?}"), "TotpSecret(<redacted>)");
    }
}
