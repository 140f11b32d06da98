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

/// A user that can log in with a password (`POST /access/ticket`).
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// `user@realm`, e.g. `root@pam`.
    pub userid: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("userid", &self.userid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// `user@realm` or `user@realm!token`.
    pub(crate) id: String,
    pub(crate) read_only: bool,
    pub(crate) ticket: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// 401: no or wrong credentials.
    Unauthorized,
    /// 401 with PVE's CSRF message.
    Csrf,
}

const TICKET_LIFETIME_S: u64 = 7200;

#[derive(Debug)]
pub(crate) struct Auth {
    secret: [u8; 32],
    pub(crate) users: Vec<UserSpec>,
    pub(crate) tokens: Vec<TokenSpec>,
}

fn sig(secret: &[u8], data: &str) -> String {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h.finalize())
}

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
        }
    }

    /// Issue a ticket and CSRF token for `user` at `now_s`.
    pub(crate) fn issue(&self, user: &str, now_s: u64) -> (String, String) {
        let plain = format!("PVE:{user}:{now_s:08X}");
        let ticket = format!("{plain}::{}", sig(&self.secret, &plain));
        let csrf_data = format!("{now_s:08X}:{user}");
        let csrf = format!("{now_s:08X}:{}", sig(&self.secret, &csrf_data));
        (ticket, csrf)
    }

    /// The user a still valid ticket belongs to.
    pub(crate) fn verify_ticket(&self, ticket: &str, now_s: u64) -> Option<String> {
        let (plain, signature) = ticket.split_once("::")?;
        if sig(&self.secret, plain) != signature {
            return None;
        }
        let mut parts = plain.split(':');
        if parts.next()? != "PVE" {
            return None;
        }
        let user = parts.next()?.to_string();
        let ts = u64::from_str_radix(parts.next()?, 16).ok()?;
        if now_s > ts + TICKET_LIFETIME_S || ts > now_s + 300 {
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

    /// Password login; a valid ticket as password renews it.
    pub(crate) fn login(&self, username: &str, password: &str, now_s: u64) -> Option<String> {
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.userid == username && u.password == password)
        {
            return Some(u.userid.clone());
        }
        match self.verify_ticket(password, now_s) {
            Some(u) if u == username => Some(u),
            _ => None,
        }
    }

    /// Authenticate a request from its headers.
    pub(crate) fn authenticate(
        &self,
        headers: &http::HeaderMap,
        write: bool,
        now_s: u64,
    ) -> Result<Identity, AuthFailure> {
        if let Some(h) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let rest = h
                .strip_prefix("PVEAPIToken=")
                .or_else(|| h.strip_prefix("PVEAPIToken "))
                .ok_or(AuthFailure::Unauthorized)?;
            let (id, secret) = rest
                .trim()
                .split_once('=')
                .ok_or(AuthFailure::Unauthorized)?;
            let t = self
                .tokens
                .iter()
                .find(|t| t.full_id() == id && t.secret == secret)
                .ok_or(AuthFailure::Unauthorized)?;
            return Ok(Identity {
                id: t.full_id(),
                read_only: t.read_only,
                ticket: false,
            });
        }
        let cookie_ticket = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("PVEAuthCookie=").map(percent_decode));
        let ticket = cookie_ticket.ok_or(AuthFailure::Unauthorized)?;
        let user = self
            .verify_ticket(&ticket, now_s)
            .ok_or(AuthFailure::Unauthorized)?;
        if write {
            let csrf = headers
                .get("CSRFPreventionToken")
                .and_then(|v| v.to_str().ok())
                .ok_or(AuthFailure::Csrf)?;
            if !self.verify_csrf(csrf, &user, now_s) {
                return Err(AuthFailure::Csrf);
            }
        }
        Ok(Identity {
            id: user,
            read_only: false,
            ticket: true,
        })
    }
}
