//! Certificate pinning against a real TLS server on loopback with a self-signed certificate.

mod common;

use common::timed;
use pve_vps_api::{Auth, Client, Error, Fingerprint, RetryPolicy, Tls};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Server {
    port: u16,
    fingerprint: Fingerprint,
    pem: String,
}

/// Serve `{"data":{"version":"8.2.4","release":"8.2"}}` to every request over TLS.
async fn start_server() -> Server {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let fingerprint = Fingerprint::of_der(cert.as_ref());
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = r#"{"data":{"version":"8.2.4","release":"8.2"}}"#;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        port,
        fingerprint,
        pem,
    }
}

fn client(port: u16, tls: Tls, pin: Option<&str>) -> Client {
    let mut b = Client::builder(format!("https://127.0.0.1:{port}"))
        .auth(Auth::api_token("api@pve!ci", "secret").unwrap())
        .retry(RetryPolicy::none())
        .tls(tls);
    if let Some(p) = pin {
        b = b.pin_fingerprint(p).unwrap();
    }
    b.build().unwrap()
}

const WRONG: &str = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

#[tokio::test]
async fn right_pin_connects() {
    timed(async {
        let s = start_server().await;
        let c = client(s.port, Tls::Pinned(s.fingerprint), None);
        assert_eq!(c.version().await.unwrap().version, "8.2.4");
        // Plain lower-case hex works too.
        let hex_pin = s.fingerprint.to_string().replace(':', "").to_lowercase();
        let c = client(s.port, Tls::Pinned(hex_pin.parse().unwrap()), None);
        assert_eq!(c.version().await.unwrap().release, "8.2");
    })
    .await;
}

#[tokio::test]
async fn wrong_pin_fails_with_typed_error() {
    timed(async {
        let s = start_server().await;
        let c = client(s.port, Tls::Pinned(WRONG.parse().unwrap()), None);
        match c.version().await {
            Err(Error::FingerprintMismatch { expected, actual }) => {
                assert_eq!(expected, WRONG);
                assert_eq!(actual, s.fingerprint.to_string());
            }
            other => panic!("expected FingerprintMismatch, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn pin_is_checked_even_when_chain_is_valid() {
    timed(async {
        let s = start_server().await;
        // The chain verifies against the custom CA ...
        let ok = client(
            s.port,
            Tls::CustomCa {
                ca_pem: s.pem.clone(),
            },
            None,
        );
        assert_eq!(ok.version().await.unwrap().version, "8.2.4");
        let pinned = client(
            s.port,
            Tls::CustomCa {
                ca_pem: s.pem.clone(),
            },
            Some(&s.fingerprint.to_string()),
        );
        assert_eq!(pinned.version().await.unwrap().version, "8.2.4");
        // ... but a wrong pin still fails.
        let bad = client(
            s.port,
            Tls::CustomCa {
                ca_pem: s.pem.clone(),
            },
            Some(WRONG),
        );
        assert!(matches!(
            bad.version().await,
            Err(Error::FingerprintMismatch { .. })
        ));
        // And with the insecure mode too.
        let bad = client(s.port, Tls::DangerAcceptInvalidCerts, Some(WRONG));
        assert!(matches!(
            bad.version().await,
            Err(Error::FingerprintMismatch { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn untrusted_self_signed_is_rejected_and_insecure_mode_is_explicit() {
    timed(async {
        let s = start_server().await;
        let strict = client(
            s.port,
            Tls::CustomCa {
                ca_pem: other_ca_pem(),
            },
            None,
        );
        let err = strict.version().await.unwrap_err();
        assert!(matches!(err, Error::Transport(_)), "{err:?}");
        let insecure = client(s.port, Tls::DangerAcceptInvalidCerts, None);
        assert_eq!(insecure.version().await.unwrap().version, "8.2.4");
    })
    .await;
}

fn other_ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["other.invalid".to_owned()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn bad_ca_pem_is_a_config_error() {
    let r = Client::builder("pve.example.com")
        .auth(Auth::api_token("api@pve!ci", "secret").unwrap())
        .tls(Tls::CustomCa {
            ca_pem: "not a pem".into(),
        })
        .build();
    assert!(matches!(r, Err(Error::Config(_))));
}
