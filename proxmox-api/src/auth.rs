//! Authentication: API tokens, or tickets obtained by login and renewed transparently.

use crate::error::{Error, Result};
use crate::totp::TotpSecret;
use crate::types::{ApiTokenId, Userid};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// PVE tickets are valid for two hours.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

/// Default age after which a ticket is renewed (well before it expires).
pub const DEFAULT_TICKET_RENEW_AFTER: Duration = Duration::from_secs(90 * 60);

/// Credentials. `Debug` never shows secrets.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// API token: `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`. No CSRF token needed.
    ApiToken {
        /// `user@realm!tokenid`
        id: ApiTokenId,
        /// The token secret (a UUID).
        secret: SecretString,
    },
    /// Ticket login with user name and password (`POST /access/ticket`), optionally answering
    /// PVE's second-factor challenge (see [`Auth::with_totp_secret`]).
    Password {
        /// `user@realm`
        userid: Userid,
        /// The password.
        password: SecretString,
        /// Second factor for users that have one (TOTP).
        second_factor: Option<SecondFactor>,
    },
}

/// A second factor for ticket login.
#[derive(Clone)]
#[non_exhaustive]
pub enum SecondFactor {
    /// Compute the current RFC 6238 code from the shared secret at every login: logins keep
    /// working unattended.
    Totp(TotpSecret),
    /// One code typed by a person. It is used at the first login only; a later full login
    /// (after the ticket could not be renewed within its two hours) will fail with it.
    Code(SecretString),
}

impl SecondFactor {
    /// The `password` value of the second `POST /access/ticket`: `totp:<code>`.
    pub(crate) fn response(&self, now: std::time::SystemTime) -> Result<SecretString> {
        let code = match self {
            SecondFactor::Totp(secret) => secret.code_at(now),
            SecondFactor::Code(code) => code.clone(),
        };
        Ok(SecretString::from(format!("totp:{}", code.expose_secret())))
    }
}

impl fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecondFactor::Totp(_) => f.write_str("Totp(<redacted>)"),
            SecondFactor::Code(_) => f.write_str("Code(<redacted>)"),
        }
    }
}

impl Auth {
    /// API token authentication. `id` is `user@realm!tokenid`.
    pub fn api_token(id: &str, secret: impl Into<String>) -> Result<Self> {
        Ok(Auth::ApiToken {
            id: id.parse()?,
            secret: SecretString::from(secret.into()),
        })
    }

    /// Ticket authentication for `username@realm`.
    pub fn password(username: &str, realm: &str, password: impl Into<String>) -> Result<Self> {
        Ok(Auth::Password {
            userid: format!("{username}@{realm}").parse()?,
            password: SecretString::from(password.into()),
            second_factor: None,
        })
    }

    /// Answer PVE's TOTP challenge with codes computed from `secret` (ticket auth only; an
    /// API token needs no second factor and ignores it). A server that does not ask for a
    /// second factor is logged into with the password alone.
    ///
    /// ```
    /// use pve_vps_api::{Auth, totp::TotpSecret};
    /// let auth = Auth::password("alice", "pve", "hunter2")?
    ///     .with_totp_secret(TotpSecret::from_base32("JBSWY3DPEHPK3PXP")?);
    /// assert!(!format!("{auth:?}").contains("JBSWY3DPEHPK3PXP"));
    /// # Ok::<(), pve_vps_api::Error>(())
    /// ```
    pub fn with_totp_secret(self, secret: TotpSecret) -> Self {
        self.with_second_factor(SecondFactor::Totp(secret))
    }

    /// Answer PVE's TOTP challenge with this one code (six digits), e.g. typed by a person at
    /// an interactive login. Prefer [`with_totp_secret`](Self::with_totp_secret) for
    /// unattended clients.
    pub fn with_totp_code(self, code: &str) -> Result<Self> {
        let c = code.trim();
        if c.len() != 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid(
                "totp code",
                "<redacted>",
                "must be six digits",
            ));
        }
        Ok(self.with_second_factor(SecondFactor::Code(SecretString::from(c.to_owned()))))
    }

    fn with_second_factor(self, factor: SecondFactor) -> Self {
        match self {
            Auth::Password {
                userid, password, ..
            } => Auth::Password {
                userid,
                password,
                second_factor: Some(factor),
            },
            other => other,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ApiToken { id, .. } => f
                .debug_struct("ApiToken")
                .field("id", id)
                .field("secret", &"<redacted>")
                .finish(),
            Auth::Password {
                userid,
                second_factor,
                ..
            } => f
                .debug_struct("Password")
                .field("userid", userid)
                .field("password", &"<redacted>")
                .field("second_factor", second_factor)
                .finish(),
        }
    }
}

/// A valid ticket and its CSRF token.
#[derive(Clone)]
pub(crate) struct Ticket {
    pub(crate) ticket: SecretString,
    pub(crate) csrf: SecretString,
    pub(crate) obtained: Instant,
}

/// Runtime state of the authentication.
pub(crate) enum AuthState {
    Token {
        /// The ready `Authorization` value, marked sensitive (built once, cloned cheaply).
        header: http::HeaderValue,
    },
    Ticket {
        userid: Userid,
        password: SecretString,
        second_factor: Option<SecondFactor>,
        renew_after: Duration,
        current: RwLock<Option<Ticket>>,
        /// Single flight: only one login/renewal at a time.
        login: Mutex<()>,
    },
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthState::Token { .. } => f.write_str("AuthState::Token(<redacted>)"),
            AuthState::Ticket {
                userid,
                renew_after,
                ..
            } => f
                .debug_struct("AuthState::Ticket")
                .field("userid", userid)
                .field("renew_after", renew_after)
                .finish_non_exhaustive(),
        }
    }
}

impl AuthState {
    pub(crate) fn new(auth: Auth, renew_after: Duration) -> Result<Self> {
        Ok(match auth {
            Auth::ApiToken { id, secret } => {
                let text =
                    SecretString::from(format!("PVEAPIToken={}={}", id, secret.expose_secret()));
                let mut header =
                    http::HeaderValue::from_str(text.expose_secret()).map_err(|_| {
                        Error::Config(
                            "api token secret contains characters not allowed in a header".into(),
                        )
                    })?;
                header.set_sensitive(true);
                AuthState::Token { header }
            }
            Auth::Password {
                userid,
                password,
                second_factor,
            } => AuthState::Ticket {
                userid,
                password,
                second_factor,
                renew_after,
                current: RwLock::new(None),
                login: Mutex::new(()),
            },
        })
    }
}

/// Which headers to attach to one request.
pub(crate) enum Credentials {
    Token(http::HeaderValue),
    Ticket(Ticket),
}

/// Answer of `POST /access/ticket`. The ticket is wrapped at once: it is a credential.
#[derive(serde::Deserialize)]
pub(crate) struct TicketAnswer {
    #[serde(default, deserialize_with = "crate::de::opt_secret")]
    pub(crate) ticket: Option<SecretString>,
    #[serde(
        rename = "CSRFPreventionToken",
        default,
        deserialize_with = "crate::de::opt_secret"
    )]
    pub(crate) csrf: Option<SecretString>,
    /// `1` when the ticket is only a second-factor challenge (PVE/API2/AccessControl.pm).
    #[serde(rename = "NeedTFA", default, deserialize_with = "crate::de::opt_bool")]
    need_tfa: Option<bool>,
}

impl TicketAnswer {
    pub(crate) fn needs_tfa(&self) -> bool {
        self.need_tfa == Some(true)
    }
}

pub(crate) fn fresh(t: &Ticket, renew_after: Duration) -> bool {
    t.obtained.elapsed() < renew_after
}

impl Ticket {
    pub(crate) fn from_answer(a: TicketAnswer) -> Result<Ticket> {
        match (a.ticket, a.csrf) {
            (Some(ticket), Some(csrf)) => Ok(Ticket {
                ticket,
                csrf,
                obtained: Instant::now(),
            }),
            _ => Err(Error::Login("answer carries no ticket".into())),
        }
    }
}
