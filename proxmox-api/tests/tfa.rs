//! Ticket login with a TOTP second factor, the way PVE does it (pve-access-control,
//! PVE/API2/AccessControl.pm): the first `POST /access/ticket` answers `NeedTFA: 1` and a
//! challenge ticket; the second sends `username`, `tfa-challenge` = that ticket and
//! `password` = `totp:<code>`.

mod common;

use common::*;
use pve_vps_api::totp::TotpSecret;
use pve_vps_api::{Auth, Client, Error, RetryPolicy};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

const PASSWORD: &str = "s3cret-pw";
/// RFC 6238's test secret "12345678901234567890" in Base32.
const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const CHALLENGE: &str = "PVE:!tfa!%7B%22totp%22%3Atrue%7D:6560F00D::aGFsZi10aWNrZXQ=";
const FULL: &str = "PVE:alice@pve:6560F00E::ZnVsbC10aWNrZXQ=";
const RENEWED: &str = "PVE:alice@pve:6560F10E::cmVuZXdlZA==";

fn form(req: &Request) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect()
}

/// First step: username and password, asking for the new challenge format.
struct FirstStep;
impl Match for FirstStep {
    fn matches(&self, req: &Request) -> bool {
        let f = form(req);
        f.get("username").map(String::as_str) == Some("alice@pve")
            && f.get("password").map(String::as_str) == Some(PASSWORD)
            && !f.contains_key("tfa-challenge")
            && !f.contains_key("otp")
    }
}

/// Second step: the challenge ticket and `totp:<code>` with a code valid now (the window
/// before or after is accepted too, as PVE's TOTP check does, so the test is not flaky at a
/// 30 s boundary).
struct SecondStep {
    fixed: Option<&'static str>,
}
impl Match for SecondStep {
    fn matches(&self, req: &Request) -> bool {
        let f = form(req);
        let valid = |code: &str| match self.fixed {
            Some(c) => code == c,
            None => {
                let secret = TotpSecret::from_base32(SECRET_B32).unwrap();
                let now = SystemTime::now();
                [
                    now - Duration::from_secs(30),
                    now,
                    now + Duration::from_secs(30),
                ]
                .iter()
                .any(|t| secret.code_at(*t).expose_secret() == code)
            }
        };
        f.len() == 3
            && f.get("username").map(String::as_str) == Some("alice@pve")
            && f.get("tfa-challenge").map(String::as_str) == Some(CHALLENGE)
            && f.get("password")
                .and_then(|p| p.strip_prefix("totp:"))
                .is_some_and(valid)
    }
}

/// Renewal: the full ticket as password, no second factor.
struct Renewal;
impl Match for Renewal {
    fn matches(&self, req: &Request) -> bool {
        let f = form(req);
        f.get("password").map(String::as_str) == Some(FULL) && !f.contains_key("tfa-challenge")
    }
}

fn challenge_answer() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(data(json!({
        "username": "alice@pve",
        "ticket": CHALLENGE,
        "CSRFPreventionToken": "6560F00D:aGFsZg",
        "NeedTFA": 1
    })))
}

fn full_answer(ticket: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(data(json!({
        "username": "alice@pve",
        "ticket": ticket,
        "CSRFPreventionToken": "6560F00E:ZnVsbA",
        "cap": {}
    })))
}

async fn mount_version(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api2/json/version"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(data(json!({"version": "8.2.4", "release": "8.2"}))),
        )
        .mount(server)
        .await;
}

fn client(server: &MockServer, auth: Auth, renew_after: Duration) -> Client {
    Client::builder(server.uri())
        .auth(auth)
        .retry(RetryPolicy::none())
        .ticket_renew_after(renew_after)
        .build()
        .unwrap()
}

fn alice() -> Auth {
    Auth::password("alice", "pve", PASSWORD).unwrap()
}

async fn cookies_sent(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .filter_map(|r| r.headers.get("cookie").and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .collect()
}

async fn ticket_posts(server: &MockServer) -> Vec<BTreeMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(form)
        .collect()
}

#[tokio::test]
async fn totp_secret_answers_the_challenge_and_the_full_ticket_is_used() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .and(FirstStep)
            .respond_with(challenge_answer())
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api2/json/access/ticket"))
            .and(SecondStep { fixed: None })
            .respond_with(full_answer(FULL))
            .expect(1)
            .mount(&server)
            .await;
        mount_version(&server).await;
        let auth = alice().with_totp_secret(TotpSecret::from_base32(SECRET_B32).unwrap());
        let c = client(&server, auth, Duration::from_secs(3600));
        c.version().await.unwrap();
        c.version().await.unwrap();
        // The half-authenticated challenge ticket is never used as a session.
        assert_eq!(
            cookies_sent(&server).await,
            vec![format!("PVEAuthCookie={FULL}"); 2]
        );
        // Before PVE 9 the challenge flow needs new-format=1 on the first request.
        let posts = ticket_posts(&server).await;
        assert_eq!(posts[0].get("new-format").map(String::as_str), Some("1"));
    })
    .await;
}

#[tokio::test]
async fn a_fixed_code_is_sent_as_totp_colon_code() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(FirstStep)
            .respond_with(challenge_answer())
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(SecondStep {
                fixed: Some("492039"),
            })
            .respond_with(full_answer(FULL))
            .expect(1)
            .mount(&server)
            .await;
        mount_version(&server).await;
        let auth = alice().with_totp_code(" 492039 ").unwrap();
        client(&server, auth, Duration::from_secs(3600))
            .version()
            .await
            .unwrap();
        assert!(alice().with_totp_code("12345").is_err());
        assert!(alice().with_totp_code("12345a").is_err());
    })
    .await;
}

#[tokio::test]
async fn a_wrong_code_is_a_login_error_and_nothing_else_is_sent() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(FirstStep)
            .respond_with(challenge_answer())
            .mount(&server)
            .await;
        // PVE answers any failed second step with 401 "authentication failure".
        Mock::given(method("POST"))
            .and(SecondStep {
                fixed: Some("000000"),
            })
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"data": null, "message": "authentication failure\n"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        mount_version(&server).await;
        let auth = alice().with_totp_code("000000").unwrap();
        let err = client(&server, auth, Duration::from_secs(3600))
            .version()
            .await
            .unwrap_err();
        assert!(err.is_auth(), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("second factor rejected"), "{text}");
        assert!(text.contains("401"), "{text}");
        assert!(
            !text.contains("000000") && !text.contains(CHALLENGE),
            "{text}"
        );
        assert!(
            cookies_sent(&server).await.is_empty(),
            "no call without a full ticket"
        );
    })
    .await;
}

#[tokio::test]
async fn a_server_that_does_not_ask_for_tfa_gets_one_request() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(FirstStep)
            .respond_with(full_answer(FULL))
            .expect(1)
            .mount(&server)
            .await;
        mount_version(&server).await;
        let auth = alice().with_totp_secret(TotpSecret::from_base32(SECRET_B32).unwrap());
        client(&server, auth, Duration::from_secs(3600))
            .version()
            .await
            .unwrap();
        assert_eq!(ticket_posts(&server).await.len(), 1);
        assert_eq!(
            cookies_sent(&server).await,
            vec![format!("PVEAuthCookie={FULL}")]
        );
    })
    .await;
}

#[tokio::test]
async fn need_tfa_without_a_configured_factor_is_a_clear_login_error() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(challenge_answer())
            .expect(1)
            .mount(&server)
            .await;
        let err = client(&server, alice(), Duration::from_secs(3600))
            .version()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Login(m) if m.contains("second factor")),
            "{err:?}"
        );
        // Without a second factor the first request stays as old PVE versions expect it.
        let posts = ticket_posts(&server).await;
        assert!(!posts[0].contains_key("new-format"));
    })
    .await;
}

#[tokio::test]
async fn renewal_after_a_tfa_login_uses_the_ticket_and_no_second_factor() {
    timed(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(FirstStep)
            .respond_with(challenge_answer())
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(SecondStep { fixed: None })
            .respond_with(full_answer(FULL))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(Renewal)
            .respond_with(full_answer(RENEWED))
            .expect(1)
            .mount(&server)
            .await;
        mount_version(&server).await;
        let auth = alice().with_totp_secret(TotpSecret::from_base32(SECRET_B32).unwrap());
        let c = client(&server, auth, Duration::from_millis(50));
        c.version().await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        c.version().await.unwrap();
        assert_eq!(
            cookies_sent(&server).await,
            vec![
                format!("PVEAuthCookie={FULL}"),
                format!("PVEAuthCookie={RENEWED}")
            ]
        );
    })
    .await;
}

#[test]
fn secrets_stay_out_of_debug() {
    let with_secret = alice().with_totp_secret(TotpSecret::from_base32(SECRET_B32).unwrap());
    let with_code = alice().with_totp_code("492039").unwrap();
    for a in [&with_secret, &with_code] {
        let d = format!("{a:?}");
        assert!(
            !d.contains(SECRET_B32) && !d.contains("492039") && !d.contains(PASSWORD),
            "{d}"
        );
        assert!(d.contains("second_factor"), "{d}");
    }
    // An API token ignores a second factor.
    let token = Auth::api_token(TOKEN_ID, TOKEN_SECRET)
        .unwrap()
        .with_totp_code("492039")
        .unwrap();
    assert!(!format!("{token:?}").contains("second_factor"));
}
