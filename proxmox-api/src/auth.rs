//! Authentication: API tokens, or tickets obtained by login and renewed transparently.

use crate::error::{Error, Result};
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
    /// Ticket login with user name and password (`POST /access/ticket`).
    Password {
        /// `user@realm`
        userid: Userid,
        /// The password.
        password: SecretString,
    },
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
        })
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
            Auth::Password { userid, .. } => f
                .debug_struct("Password")
                .field("userid", userid)
                .field("password", &"<redacted>")
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
            Auth::Password { userid, password } => AuthState::Ticket {
                userid,
                password,
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

/// Answer of `POST /access/ticket`.
#[derive(serde::Deserialize)]
pub(crate) struct TicketAnswer {
    pub(crate) ticket: Option<String>,
    #[serde(rename = "CSRFPreventionToken")]
    pub(crate) csrf: Option<String>,
}

pub(crate) fn fresh(t: &Ticket, renew_after: Duration) -> bool {
    t.obtained.elapsed() < renew_after
}

impl Ticket {
    pub(crate) fn from_answer(a: TicketAnswer) -> Result<Ticket> {
        match (a.ticket, a.csrf) {
            (Some(t), Some(c)) => Ok(Ticket {
                ticket: SecretString::from(t),
                csrf: SecretString::from(c),
                obtained: Instant::now(),
            }),
            _ => Err(Error::Login(
                "answer carries no ticket (two-factor required?)".into(),
            )),
        }
    }
}
