//! One-time console links: 256 random bits, valid 10 seconds, usable once, bound to a VM.
//!
//! The store never reads the clock: `now` comes in as an argument.

use std::fmt;
use std::sync::Mutex;

use rand::CryptoRng;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::error::Error;
use crate::permissions::VmState;
use crate::service::{Service, VmRef};

/// How long a link is valid.
pub const TOKEN_TTL: Duration = Duration::seconds(10);

/// How long a used or expired token is remembered (so a replay says "already used").
const FORGET_AFTER: Duration = Duration::seconds(120);

/// A console link token: 32 random bytes, printed as 64 hex digits. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleToken([u8; 32]);

impl ConsoleToken {
    /// Draws a token from a cryptographically secure generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Parses the hex form a link carries.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("console token", "<redacted>", "expected 64 hex digits");
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut b = [0u8; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(b))
    }

    /// The hex form to put in the link.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Debug for ConsoleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsoleToken(<redacted>)")
    }
}

#[derive(Debug)]
struct Entry {
    token: ConsoleToken,
    vm: VmRef,
    issued: OffsetDateTime,
    used: bool,
}

/// An in-memory store of issued console tokens.
#[derive(Debug, Default)]
pub struct ConsoleTokens {
    entries: Mutex<Vec<Entry>>,
}

/// What a redeemed token grants: open a console on this VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleGrant {
    /// The VM to open the console on.
    pub vm: VmRef,
}

impl ConsoleTokens {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a token for `service`'s VM, valid for [`TOKEN_TTL`] from `now`.
    pub fn issue<R: CryptoRng + ?Sized>(
        &self,
        service: &Service,
        rng: &mut R,
        now: OffsetDateTime,
    ) -> ConsoleToken {
        let token = ConsoleToken::generate(rng);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| now - e.issued < FORGET_AFTER);
        entries.push(Entry {
            token: token.clone(),
            vm: service.vm.clone(),
            issued: now,
            used: false,
        });
        token
    }

    /// Redeems a token for `service`. It must be known, unused, younger than [`TOKEN_TTL`],
    /// issued for this service's VM, and the VM must be running. A token is consumed by its
    /// first redeem attempt that finds it, even a failed one.
    pub fn redeem(
        &self,
        token: &ConsoleToken,
        service: &Service,
        state: &VmState,
        now: OffsetDateTime,
    ) -> Result<ConsoleGrant, Error> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Compare against every entry without stopping early, in constant time per entry.
        let mut found = None;
        for (i, e) in entries.iter().enumerate() {
            if bool::from(e.token.0.ct_eq(&token.0)) {
                found = Some(i);
            }
        }
        let e = &mut entries[found.ok_or(Error::TokenUnknown)?];
        if e.used {
            return Err(Error::TokenAlreadyUsed);
        }
        e.used = true;
        if now - e.issued >= TOKEN_TTL || now < e.issued {
            return Err(Error::TokenExpired);
        }
        if e.vm != service.vm {
            return Err(Error::TokenForeignService);
        }
        if !state.running {
            return Err(Error::NotRunning);
        }
        Ok(ConsoleGrant { vm: e.vm.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VmId;
    use crate::service::fixtures;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_775_785_707).unwrap()
    }

    #[test]
    fn one_time_ten_seconds_bound() {
        let store = ConsoleTokens::new();
        let mut rng = StdRng::seed_from_u64(1);
        let s = fixtures::service();
        let run = VmState {
            lock: None,
            running: true,
        };

        let t = store.issue(&s, &mut rng, t0());
        assert_eq!(ConsoleToken::parse(&t.to_hex()).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.to_hex()));
        let g = store
            .redeem(&t, &s, &run, t0() + Duration::seconds(9))
            .unwrap();
        assert_eq!(g.vm, s.vm);
        assert!(matches!(
            store.redeem(&t, &s, &run, t0()),
            Err(Error::TokenAlreadyUsed)
        ));

        let t = store.issue(&s, &mut rng, t0());
        assert!(matches!(
            store.redeem(&t, &s, &run, t0() + TOKEN_TTL),
            Err(Error::TokenExpired)
        ));

        let mut other = s.clone();
        other.vm = VmRef::new("pve1".parse().unwrap(), VmId::new(101).unwrap());
        let t = store.issue(&s, &mut rng, t0());
        let e = store.redeem(&t, &other, &run, t0()).unwrap_err();
        assert!(e.is_denied() && e.is_token_rejected());

        let t = store.issue(&s, &mut rng, t0());
        let stopped = VmState {
            lock: None,
            running: false,
        };
        assert!(matches!(
            store.redeem(&t, &s, &stopped, t0()),
            Err(Error::NotRunning)
        ));

        let never = ConsoleToken::generate(&mut rng);
        assert!(matches!(
            store.redeem(&never, &s, &run, t0()),
            Err(Error::TokenUnknown)
        ));
        assert!(ConsoleToken::parse("zz").is_err());
    }
}
