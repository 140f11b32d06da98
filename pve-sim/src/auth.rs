//! Credentials: API tokens, ticket login and CSRF tokens, as PVE checks them.

use base64::Engine;
use sha2::{Digest, Sha256};

/// An API token the simulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The owning user, `user@realm`.
    pub userid: String,
    /// The token name (the part after `!`).
    pub tokenid: String,
    /// The token secret (a UUID on a real PVE).
    pub secret: String,
    /// A read-only token: every non-GET request answers 403.
    pub read_only: bool,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("userid", &self.userid)
            .field("tokenid", &self.tokenid)
            .field("secret", &"<redacted>")
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl TokenSpec {
    /// `user@realm!tokenid`.
    pub fn full_id(&self) -> String {
        format!("{}!{}", self.userid, self.tokenid)
    }

    /// The whole `Authorization` header value: `PVEAPIToken=user@realm!tokenid=secret`.
    pub fn header_value(&self) -> String {
        format!("PVEAPIToken={}={}", self.full_id(), self.secret)
    }
}

/// A user that can log in with a password (`POST /access/ticket`), optionally with a TOTP
/// second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// `user@realm`, e.g. `root@pam`.
    pub userid: String,
    /// The password.
    pub password: String,
    /// Base32 TOTP secret: the user must answer PVE's two-step login with a code.
    pub totp_secret: Option<String>,
}

impl UserSpec {
    /// A password-only user.
    pub fn new(userid: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            userid: userid.into(),
            password: password.into(),
            totp_secret: None,
        }
    }

    /// Require a TOTP second factor with this base32 secret.
    pub fn with_totp(mut self, secret: impl Into<String>) -> Self {
        self.totp_secret = Some(secret.into());
        self
    }
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("userid", &self.userid)
            .field("password", &"<redacted>")
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `user@realm` or `user@realm!token`.
    pub(crate) id: String,
    pub(crate) read_only: bool,
}

/// Why a request was refused: PVE's 401 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthFailure(pub(crate) String);

impl AuthFailure {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

const TICKET_LIFETIME_S: u64 = 7200;

/// What a successful first or second login step yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    /// Fully authenticated.
    User(String),
    /// Password accepted, second factor outstanding: `(userid, challenge JSON)`.
    NeedTfa(String, String),
}

pub(crate) struct Auth {
    secret: [u8; 32],
    pub(crate) users: Vec<UserSpec>,
    pub(crate) tokens: Vec<TokenSpec>,
    /// Last accepted TOTP step per user: a code is good once (proxmox-tfa's `last-count`).
    totp_last: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.users)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

fn sig(secret: &[u8], data: &str) -> String {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h.finalize())
}

// FACT (pve-access-control src/PVE/API2/AccessControl.pm, create_ticket_do): a user with a
// second factor gets a partial ticket whose data is `!tfa!<challenge JSON>`, signed with the
// username as additional authenticated data, plus `NeedTFA: 1`; the challenge JSON is
// proxmox-tfa's `TfaChallenge` (`{"totp":true}` for a TOTP-only user, pve-rs serialises it
// with serde_json).
const TFA_PREFIX: &str = "!tfa!";
/// The challenge of a user whose only second factor is TOTP.
pub(crate) const TOTP_CHALLENGE: &str = r#"{"totp":true}"#;

/// Decode `%XX` escapes (a `%` not followed by two hex digits stays as it is).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(hex) = std::str::from_utf8(&b[i + 1..i + 3])
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Auth {
    pub(crate) fn new(secret: [u8; 32], users: Vec<UserSpec>, tokens: Vec<TokenSpec>) -> Self {
        Self {
            secret,
            users,
            tokens,
            totp_last: Default::default(),
        }
    }

    // FACT (pve-common src/PVE/Ticket.pm, assemble_rsa_ticket): `PREFIX:DATA:HEXTIME::SIG`
    // where the signature covers `PREFIX:DATA:HEXTIME` plus `:SECRET_DATA` when given (the
    // simulator signs with a SHA-256 keyed digest instead of PVE's RSA key).
    fn assemble(&self, data: &str, aad: Option<&str>, now_s: u64) -> String {
        let plain = format!("PVE:{data}:{now_s:08X}");
        let signed = match aad {
            Some(a) => format!("{plain}:{a}"),
            None => plain.clone(),
        };
        format!("{plain}::{}", sig(&self.secret, &signed))
    }

    /// `(data, timestamp)` of a ticket whose signature (with `aad`) holds and which is within
    /// PVE's age range (-5 min .. 2 h).
    fn open(&self, ticket: &str, aad: Option<&str>, now_s: u64) -> Option<String> {
        let (plain, signature) = ticket.split_once("::")?;
        let signed = match aad {
            Some(a) => format!("{plain}:{a}"),
            None => plain.to_string(),
        };
        if sig(&self.secret, &signed) != signature {
            return None;
        }
        let rest = plain.strip_prefix("PVE:")?;
        let (data, ts) = rest.rsplit_once(':')?;
        if ts.len() != 8 {
            return None;
        }
        let ts = u64::from_str_radix(ts, 16).ok()?;
        if now_s > ts + TICKET_LIFETIME_S || ts > now_s + 300 {
            return None;
        }
        Some(data.to_string())
    }

    /// Issue a ticket and CSRF token for `user` at `now_s`.
    pub(crate) fn issue(&self, user: &str, now_s: u64) -> (String, String) {
        let ticket = self.assemble(user, None, now_s);
        let csrf_data = format!("{now_s:08X}:{user}");
        let csrf = format!("{now_s:08X}:{}", sig(&self.secret, &csrf_data));
        (ticket, csrf)
    }

    /// A partial ticket carrying the TFA challenge for `user`, and the CSRF token.
    pub(crate) fn issue_tfa(&self, user: &str, challenge: &str, now_s: u64) -> (String, String) {
        let ticket = self.assemble(&format!("{TFA_PREFIX}{challenge}"), Some(user), now_s);
        let csrf_data = format!("{now_s:08X}:{user}");
        let csrf = format!("{now_s:08X}:{}", sig(&self.secret, &csrf_data));
        (ticket, csrf)
    }

    /// The user a still valid, complete ticket belongs to (a partial TFA ticket is not one).
    pub(crate) fn verify_ticket(&self, ticket: &str, now_s: u64) -> Option<String> {
        let user = self.open(ticket, None, now_s)?;
        if user.starts_with(TFA_PREFIX) || !user.contains('@') {
            return None;
        }
        Some(user)
    }

    fn verify_csrf(&self, token: &str, user: &str, now_s: u64) -> bool {
        let Some((ts_hex, signature)) = token.split_once(':') else {
            return false;
        };
        let Ok(ts) = u64::from_str_radix(ts_hex, 16) else {
            return false;
        };
        if now_s > ts + TICKET_LIFETIME_S {
            return false;
        }
        sig(&self.secret, &format!("{ts_hex}:{user}")) == signature
    }

    /// Check a TOTP response (`totp:123456`) of `user` at `now_s`, once per code.
    fn check_totp(&self, user: &UserSpec, response: &str, now_s: u64) -> bool {
        // FACT (pve-access-control src/PVE/AccessControl.pm, authenticate_2nd_new_do): the
        // response must look like `TYPE:VALUE` ("bad otp response" otherwise); a wrong code
        // fails with "failed 2nd factor"; every such error ends as 401 "authentication
        // failure" in create_ticket.
        let Some(secret) = &user.totp_secret else {
            return false;
        };
        let Some(code) = response.strip_prefix("totp:") else {
            return false;
        };
        let Some(key) = crate::totp::base32_decode(secret) else {
            return false;
        };
        let Some(step) = crate::totp::totp_match(&key, code, now_s) else {
            return false;
        };
        let mut last = self.totp_last.lock().unwrap_or_else(|e| e.into_inner());
        let seen = last.get(&user.userid).copied();
        if seen.is_some_and(|s| step <= s) {
            return false; // replayed or older code
        }
        last.insert(user.userid.clone(), step);
        true
    }

    /// `POST /access/ticket` as PVE's create_ticket_do decides it: `username` with `password`
    /// (a password, or a valid ticket to renew), optionally `otp` (first factor and TOTP in
    /// one step) or `tfa_challenge` (second step: the partial ticket, with the TOTP response
    /// in `password`). `None` is PVE's 401 "authentication failure".
    pub(crate) fn login(
        &self,
        username: &str,
        password: &str,
        otp: Option<&str>,
        tfa_challenge: Option<&str>,
        now_s: u64,
    ) -> Option<Login> {
        // FACT (pve-access-control src/PVE/API2/AccessControl.pm, create_ticket_do): "TFA
        // response should be in 'password', not 'otp' when 'tfa-challenge' is set".
        if otp.is_some() && tfa_challenge.is_some() {
            return None;
        }
        let user = self.users.iter().find(|u| u.userid == username);
        if let Some(challenge) = tfa_challenge {
            let user = user?;
            let data = self.open(challenge, Some(username), now_s)?;
            data.strip_prefix(TFA_PREFIX)?;
            return self
                .check_totp(user, password, now_s)
                .then(|| Login::User(user.userid.clone()));
        }
        // Renewal: a complete ticket of the same user (root@pam may renew for anyone).
        if let Some(t) = self.verify_ticket(password, now_s)
            && (t == username || t == "root@pam")
            && user.is_some()
        {
            return Some(Login::User(username.to_string()));
        }
        let user = user.filter(|u| u.password == password)?;
        if user.totp_secret.is_none() {
            return Some(Login::User(user.userid.clone()));
        }
        match otp {
            // The one-step form: `otp` answers the challenge at once; proxmox-tfa parses it as
            // a typed response, so it is `totp:CODE` like the second step's password.
            Some(o) => self
                .check_totp(user, o, now_s)
                .then(|| Login::User(user.userid.clone())),
            None => Some(Login::NeedTfa(
                user.userid.clone(),
                TOTP_CHALLENGE.to_string(),
            )),
        }
    }

    /// Authenticate a request from its headers.
    pub(crate) fn authenticate(
        &self,
        headers: &http::HeaderMap,
        write: bool,
        now_s: u64,
    ) -> Result<Identity, AuthFailure> {
        // FACT (pve-http-server src/PVE/APIServer/AnyEvent.pm, authenticate_and_handle_request):
        // the `PVEAuthCookie` cookie first, then a cookie in `Authorization`, and only without
        // a ticket the `PVEAPIToken` in `Authorization`.
        let auth_header = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let cookie_ticket = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("PVEAuthCookie=").map(percent_decode))
            .or_else(|| {
                auth_header
                    .and_then(|h| h.trim().strip_prefix("PVEAuthCookie="))
                    .map(percent_decode)
            });
        let Some(ticket) = cookie_ticket else {
            // FACT (pve-manager PVE/HTTPServer.pm, auth_handler): "No ticket" without
            // credentials; a token goes through PVE::AccessControl::verify_token, whose
            // refusals are "no tokenid specified", "no such token '$token' for user
            // '$username'" and "invalid token value!".
            let h = auth_header.ok_or_else(|| AuthFailure::new("No ticket"))?;
            let rest = h
                .strip_prefix("PVEAPIToken=")
                .or_else(|| h.strip_prefix("PVEAPIToken "))
                .ok_or_else(|| AuthFailure::new("No ticket"))?;
            let (id, secret) = rest
                .trim()
                .rsplit_once('=')
                .ok_or_else(|| AuthFailure::new("no tokenid specified"))?;
            let (user, tokenid) = id.split_once('!').ok_or_else(|| {
                AuthFailure::new(format!(
                    "'{id}' is not a valid token ID - not able to split into user and token parts"
                ))
            })?;
            let t = self
                .tokens
                .iter()
                .find(|t| t.full_id() == id)
                .ok_or_else(|| {
                    AuthFailure::new(format!("no such token '{tokenid}' for user '{user}'"))
                })?;
            if t.secret != secret {
                return Err(AuthFailure::new("invalid token value!"));
            }
            // Tokens need no CSRF token.
            return Ok(Identity {
                id: t.full_id(),
                read_only: t.read_only,
            });
        };
        if self
            .open(&ticket, None, now_s)
            .is_some_and(|d| d.starts_with(TFA_PREFIX))
        {
            // FACT (pve-manager PVE/HTTPServer.pm, auth_handler): a ticket still waiting for
            // its second factor is "No ticket".
            return Err(AuthFailure::new("No ticket"));
        }
        // FACT (pve-common src/PVE/Ticket.pm, verify_rsa_ticket): "permission denied - invalid
        // PVE ticket".
        let user = self
            .verify_ticket(&ticket, now_s)
            .ok_or_else(|| AuthFailure::new("permission denied - invalid PVE ticket"))?;
        if write {
            // FACT (pve-common src/PVE/Ticket.pm, verify_csrf_prevention_token): "Permission
            // denied - invalid csrf token".
            let csrf = headers
                .get("CSRFPreventionToken")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| AuthFailure::new("Permission denied - invalid csrf token"))?;
            if !self.verify_csrf(csrf, &user, now_s) {
                return Err(AuthFailure::new("Permission denied - invalid csrf token"));
            }
        }
        Ok(Identity {
            id: user,
            read_only: false,
        })
    }
}
