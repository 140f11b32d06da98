//! Random root passwords, drawn from an injected CSPRNG and kept in a `SecretString`.

use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng};
use secrecy::SecretString;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::permissions::{Feature, VmState, require};
use crate::product::Product;

/// The shortest password [`generate`] makes.
pub const MIN_LEN: usize = 16;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
// Symbols that survive shells, URLs of webmail and cloud-init YAML without quoting.
const SYMBOLS: &[u8] = b"-_.+=@%^*";

/// A password of `len` characters (at least [`MIN_LEN`]) with at least one lower-case letter,
/// upper-case letter, digit and symbol, shuffled; look-alike characters are left out.
///
/// Pass a CSPRNG, e.g. `rand::rngs::OsRng.unwrap_err()` or `rand::rng()`.
pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, len: usize) -> Result<SecretString, Error> {
    if len < MIN_LEN {
        return Err(Error::invalid(
            "password length",
            len.to_string(),
            "must be at least 16",
        ));
    }
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut out: Vec<u8> = Vec::with_capacity(len);
    for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
        out.push(class[rng.random_range(0..class.len())]);
    }
    while out.len() < len {
        out.push(all[rng.random_range(0..all.len())]);
    }
    out.shuffle(rng);
    let s: String = out.into_iter().map(char::from).collect();
    Ok(SecretString::from(s))
}

/// One step of a password reset. The password itself is never part of the plan: the executor
/// generates it with [`generate`] and keeps it in memory until [`ResetStep::Notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetStep {
    /// `PUT config` `cipassword`.
    SetCloudInitPassword,
    /// `PUT .../cloudinit` (regenerate the drive).
    RegenerateCloudInit,
    /// `POST .../agent/set-user-password` (running VM; a missing agent is not an error).
    AgentSetPassword,
    /// Send the new password by email.
    Notify,
}

/// Decides a "Reset Password" click: permission and lock, then the steps (the guest agent
/// step only when the VM runs).
pub fn plan_reset(product: &Product, state: &VmState) -> Result<Vec<ResetStep>, Error> {
    require(product, Feature::ResetPassword, state)?;
    let mut steps = vec![
        ResetStep::SetCloudInitPassword,
        ResetStep::RegenerateCloudInit,
    ];
    if state.running {
        steps.push(ResetStep::AgentSetPassword);
    }
    steps.push(ResetStep::Notify);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use secrecy::ExposeSecret;

    #[test]
    fn never_debug_printed_and_os_rng_works() {
        let mut rng = rand::TryRngCore::unwrap_err(rand::rngs::OsRng);
        let p = generate(&mut rng, 20).unwrap();
        assert!(!format!("{p:?}").contains(p.expose_secret()));
        assert_eq!(p.expose_secret().len(), 20);
        assert!(generate(&mut rng, 15).is_err());
    }

    #[test]
    fn reset_plan() {
        let p = crate::service::fixtures::product();
        let run = VmState {
            lock: None,
            running: true,
        };
        assert_eq!(plan_reset(&p, &run).unwrap().len(), 4);
        let stopped = VmState {
            lock: None,
            running: false,
        };
        assert!(
            !plan_reset(&p, &stopped)
                .unwrap()
                .contains(&ResetStep::AgentSetPassword)
        );
        let locked = VmState {
            lock: Some(crate::pve::LockKind::Backup),
            running: true,
        };
        assert!(plan_reset(&p, &locked).unwrap_err().is_locked());
    }

    proptest! {
        #[test]
        fn every_class_present(seed in any::<u64>(), len in 16usize..64) {
            let mut rng = StdRng::seed_from_u64(seed);
            let p = generate(&mut rng, len).unwrap();
            let s = p.expose_secret();
            prop_assert_eq!(s.len(), len);
            prop_assert!(s.bytes().any(|b| LOWER.contains(&b)));
            prop_assert!(s.bytes().any(|b| UPPER.contains(&b)));
            prop_assert!(s.bytes().any(|b| DIGITS.contains(&b)));
            prop_assert!(s.bytes().any(|b| SYMBOLS.contains(&b)));
        }
    }
}
