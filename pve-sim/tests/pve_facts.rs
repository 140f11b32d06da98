//! Behaviours read from PVE's own source (each test names the file): the simulator must answer
//! like a real PVE, not like our idea of it.

mod common;

use std::time::Duration;

use common::{Api, enc, timed};
use reqwest::Method;
use serde_json::Value;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST /access/ticket without credentials; returns (status, data).
async fn ticket(anon: &Api, form: &[(&str, &str)]) -> (u16, Value) {
    let (s, b) = anon.call(Method::POST, "/access/ticket", form).await;
    (s, b["data"].clone())
}

// pve-access-control src/PVE/API2/AccessControl.pm (create_ticket, create_ticket_do) and
// src/PVE/AccessControl.pm (authenticate_user, authenticate_2nd_new_do).
#[tokio::test]
async fn two_step_totp_login() {
    timed(async {
        let sim = common::start().await;
        let anon = Api::with_header(&sim, None);
        let u = sim.totp_user().expect("a totp user").clone();
        let secret = u.totp_secret.clone().unwrap();

        // Step 1: the password alone yields NeedTFA and a partial ticket, no `cap`.
        let (s, d) = ticket(&anon, &[("username", &u.userid), ("password", &u.password)]).await;
        assert_eq!(s, 200, "{d}");
        assert_eq!(d["NeedTFA"], 1);
        assert!(d.get("cap").is_none(), "{d}");
        assert_eq!(d["username"], u.userid.as_str());
        let partial = d["ticket"].as_str().unwrap().to_string();
        assert!(
            partial.starts_with(r#"PVE:!tfa!{"totp":true}:"#),
            "{partial}"
        );

        // The partial ticket is no session.
        let mut half = Api::with_header(&sim, None);
        half.cookie = Some(enc(&partial));
        assert_eq!(half.call(Method::GET, "/nodes", &[]).await.0, 401);

        // A wrong code, a bare code without `totp:`, and otp+tfa-challenge together: 401.
        let good = pve_vps_sim::totp_code(&secret, now_s()).unwrap();
        let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
        for (pw, otp) in [
            (format!("totp:{wrong}"), None),
            (good.clone(), None),
            (format!("totp:{good}"), Some("totp:000000")),
        ] {
            let mut form = vec![
                ("username", u.userid.as_str()),
                ("tfa-challenge", partial.as_str()),
                ("password", pw.as_str()),
            ];
            if let Some(o) = otp {
                form.push(("otp", o));
            }
            let (s, b) = anon.call(Method::POST, "/access/ticket", &form).await;
            assert_eq!(s, 401, "{pw} {otp:?}: {b}");
            assert_eq!(b["message"], "authentication failure\n");
        }
        // The challenge is bound to its user.
        let (s, _) = ticket(
            &anon,
            &[
                ("username", "root@pam"),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 401);

        // Step 2: username + tfa-challenge + password=totp:<code> gives a full ticket.
        let (s, d) = ticket(
            &anon,
            &[
                ("username", &u.userid),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 200, "{d}");
        assert!(d.get("NeedTFA").is_none(), "{d}");
        assert!(d["cap"].is_object(), "{d}");
        let full = d["ticket"].as_str().unwrap().to_string();
        assert!(full.starts_with(&format!("PVE:{}:", u.userid)), "{full}");
        let mut session = Api::with_header(&sim, None);
        session.cookie = Some(enc(&full));
        assert_eq!(session.call(Method::GET, "/nodes", &[]).await.0, 200);

        // The same code is good once (proxmox-tfa keeps the last used step).
        let (s, _) = ticket(
            &anon,
            &[
                ("username", &u.userid),
                ("tfa-challenge", &partial),
                ("password", &format!("totp:{good}")),
            ],
        )
        .await;
        assert_eq!(s, 401, "a replayed code is refused");

        // Renewal with the full ticket needs no second factor.
        let (s, d) = ticket(&anon, &[("username", &u.userid), ("password", &full)]).await;
        assert_eq!(s, 200);
        assert!(d.get("NeedTFA").is_none());
        // A user without TFA logs in in one step as before.
        let (user, pass) = sim.user_password().unwrap();
        let (s, d) = ticket(&anon, &[("username", user), ("password", pass)]).await;
        assert_eq!(s, 200);
        assert!(d.get("NeedTFA").is_none() && d["cap"].is_object());
        sim.shutdown().await;
    })
    .await;
}

#[test]
fn totp_codes_follow_rfc6238() {
    // RFC 6238 appendix B, SHA-1, seed "12345678901234567890" (base32 below), last 6 digits.
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    for (t, want) in [
        (59, "287082"),
        (1_111_111_109, "081804"),
        (1_111_111_111, "050471"),
        (1_234_567_890, "005924"),
        (2_000_000_000, "279037"),
        (20_000_000_000, "353130"),
    ] {
        assert_eq!(pve_vps_sim::totp_code(seed, t).as_deref(), Some(want));
    }
    assert_eq!(pve_vps_sim::totp_code("not base32!", 59), None);
    let _ = Duration::ZERO;
}
