//! TLS settings: system roots, an extra CA, a pinned leaf fingerprint, or an explicitly named
//! insecure mode. Builds a rustls config with the ring provider without touching any global state.

use crate::error::Error;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// SHA-256 fingerprint of a certificate (as PVE shows it: `AA:BB:...`; plain hex also accepted).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }
    /// Raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let cleaned: String = s.trim().chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&cleaned, &mut out).map_err(|_| {
            Error::invalid(
                "fingerprint",
                s,
                "must be 32 bytes of hex, optionally `:`-separated",
            )
        })?;
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// How the server certificate is verified.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Tls {
    /// Verify the chain against the system's root certificates (default).
    #[default]
    SystemRoots,
    /// Verify the chain against the system roots plus the given CA certificates (PEM).
    SystemRootsAndCa {
        /// PEM text with one or more CA certificates.
        ca_pem: String,
    },
    /// Verify the chain against only the given CA certificates (PEM).
    CustomCa {
        /// PEM text with one or more CA certificates.
        ca_pem: String,
    },
    /// Accept exactly the leaf certificate with this SHA-256 fingerprint, whatever its chain
    /// (the usual choice for PVE's self-signed certificates).
    Pinned(Fingerprint),
    /// Accept any certificate. Only for tests and labs: anyone on the path can read the traffic.
    DangerAcceptInvalidCerts,
}

impl Tls {
    /// The rustls client configuration this mode gives (ring provider, no global state), with an
    /// optional extra pin checked in every mode. Use it for connections the [`Client`] does not
    /// make itself, such as relaying the VNC websocket.
    ///
    /// [`Client`]: crate::Client
    pub fn rustls_client_config(
        &self,
        pin: Option<Fingerprint>,
    ) -> Result<rustls::ClientConfig, Error> {
        client_config(self, pin, Arc::new(PinMismatchSlot::default()))
    }
}

/// The pin mismatch seen by the verifier, so the client can turn the TLS failure into
/// [`Error::FingerprintMismatch`].
#[derive(Debug, Default)]
pub(crate) struct PinMismatchSlot(Mutex<Option<(String, String)>>);

impl PinMismatchSlot {
    pub(crate) fn take(&self) -> Option<(String, String)> {
        self.0.lock().map(|mut g| g.take()).unwrap_or(None)
    }
}

#[derive(Debug)]
struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("certificate fingerprint does not match the pinned one")
    }
}
impl std::error::Error for PinMismatch {}

#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    slot: Arc<PinMismatchSlot>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            let actual = Fingerprint::of_der(end_entity.as_ref());
            // Not secret, so a plain comparison is fine.
            if actual != *pin {
                if let Ok(mut g) = self.slot.0.lock() {
                    *g = Some((pin.to_string(), actual.to_string()));
                }
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
                ));
            }
        }
        match &self.chain {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn add_pem(roots: &mut rustls::RootCertStore, pem: &str) -> Result<(), Error> {
    use rustls_pki_types::pem::PemObject;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::Config(format!("bad CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("bad CA certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::Config("CA PEM holds no certificate".into()));
    }
    Ok(())
}

fn add_system(roots: &mut rustls::RootCertStore) {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "could not load some system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
}

/// Build the rustls client config for `tls` plus an optional extra pin that is checked in every
/// mode.
pub(crate) fn client_config(
    tls: &Tls,
    extra_pin: Option<Fingerprint>,
    slot: Arc<PinMismatchSlot>,
) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let (chain_needed, pin) = match tls {
        Tls::SystemRoots => {
            add_system(&mut roots);
            (true, extra_pin)
        }
        Tls::SystemRootsAndCa { ca_pem } => {
            add_system(&mut roots);
            add_pem(&mut roots, ca_pem)?;
            (true, extra_pin)
        }
        Tls::CustomCa { ca_pem } => {
            add_pem(&mut roots, ca_pem)?;
            (true, extra_pin)
        }
        Tls::Pinned(fp) => {
            if let Some(other) = extra_pin
                && other != *fp
            {
                return Err(Error::Config("two different fingerprint pins".into()));
            }
            (false, Some(*fp))
        }
        Tls::DangerAcceptInvalidCerts => (false, extra_pin),
    };
    let chain = if chain_needed {
        if roots.is_empty() {
            return Err(Error::Config("no trusted root certificates".into()));
        }
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| Error::Config(format!("tls verifier: {e}")))?,
        )
    } else {
        None
    };
    let verifier = Arc::new(Verifier {
        chain,
        pin,
        provider: provider.clone(),
        slot,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("tls: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_formats() {
        let colon = "AB:".repeat(31) + "CD";
        let fp: Fingerprint = colon.parse().unwrap();
        assert_eq!(fp.to_string(), colon);
        let plain: Fingerprint = colon.replace(':', "").to_lowercase().parse().unwrap();
        assert_eq!(plain, fp);
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }
}
