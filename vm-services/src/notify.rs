//! The emails the product sends, behind a trait; a logging implementation never logs secrets.

use std::fmt;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::Error;
use crate::ids::VolumeId;
use crate::service::Service;

/// A message to the customer. Passwords are `SecretString`s: `Debug` shows `[REDACTED]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Notification {
    /// A password reset produced a new password.
    NewPassword {
        /// The new password.
        password: SecretString,
    },
    /// A backup was restored and the package re-applied.
    BackupRestored {
        /// The archive.
        archive: VolumeId,
    },
    /// A reinstall finished.
    ReinstallDone {
        /// The template's display name.
        template: String,
        /// The new root password.
        password: SecretString,
    },
    /// A restore failed; the customer may retry or reinstall.
    RestoreFailed {
        /// The archive.
        archive: VolumeId,
        /// What failed.
        reason: String,
    },
}

impl Notification {
    /// A one-line description without any secret, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::NewPassword { .. } => "new password".to_owned(),
            Self::BackupRestored { archive } => format!("backup `{archive}` restored"),
            Self::ReinstallDone { template, .. } => format!("reinstall with `{template}` done"),
            Self::RestoreFailed { archive, reason } => {
                format!("restore of `{archive}` failed: {reason}")
            }
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Sends notifications to the customer of a service (email in production).
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Sends one notification.
    async fn notify(&self, service: &Service, notification: &Notification) -> Result<(), Error>;
}

/// A notifier that only logs, through `tracing`, what it would send (never a password).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoggingNotifier;

#[async_trait]
impl Notifier for LoggingNotifier {
    async fn notify(&self, service: &Service, notification: &Notification) -> Result<(), Error> {
        tracing::info!(vm = %service.vm, domain = %service.domain, "notify: {}", notification.describe());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;

    #[tokio::test]
    async fn never_shows_the_password() {
        let n = Notification::ReinstallDone {
            template: "Debian 12".into(),
            password: SecretString::from("hunter2-very-secret".to_owned()),
        };
        assert!(!n.describe().contains("hunter2"));
        assert!(!format!("{n:?}").contains("hunter2"));
        assert!(!n.to_string().contains("hunter2"));
        let boxed: Box<dyn Notifier> = Box::new(LoggingNotifier);
        boxed.notify(&fixtures::service(), &n).await.unwrap();
    }
}
