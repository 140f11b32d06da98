//! QEMU guest agent: ping, network interfaces, set user password.

use super::VmHandle;
use crate::error::{Error, Result};
use crate::request::{self, Request};
use secrecy::{ExposeSecret, SecretString};

/// An IP address reported by the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct GuestIpAddress {
    /// Address.
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    /// `ipv4` or `ipv6`.
    #[serde(rename = "ip-address-type", default)]
    pub ip_address_type: Option<String>,
    /// Prefix length.
    #[serde(default, deserialize_with = "crate::de::opt_u64")]
    pub prefix: Option<u64>,
}

/// A network interface reported by the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct GuestInterface {
    /// Interface name inside the guest.
    pub name: String,
    /// MAC address.
    #[serde(rename = "hardware-address", default)]
    pub hardware_address: Option<String>,
    /// Addresses.
    #[serde(rename = "ip-addresses", default)]
    pub ip_addresses: Vec<GuestIpAddress>,
}

#[derive(serde::Deserialize)]
struct AgentResult<T> {
    result: T,
}

impl VmHandle {
    /// `POST .../agent/ping`: `Ok` when the agent answers.
    pub async fn agent_ping(&self) -> Result<()> {
        let (n, v) = self.args();
        self.client
            .call_unit(Request::new(&request::AGENT_PING, &[&n, &v]))
            .await
    }

    /// `GET .../agent/network-get-interfaces`.
    pub async fn agent_network_interfaces(&self) -> Result<Vec<GuestInterface>> {
        let (n, v) = self.args();
        let r: AgentResult<Vec<GuestInterface>> = self
            .client
            .call(Request::new(&request::AGENT_NET, &[&n, &v]))
            .await?;
        Ok(r.result)
    }

    /// `POST .../agent/set-user-password`. With `crypted`, `password` is already a crypt(3) hash.
    pub async fn agent_set_user_password(
        &self,
        username: &str,
        password: &SecretString,
        crypted: bool,
    ) -> Result<()> {
        if username.is_empty()
            || username.len() > 64
            || username
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ':')
        {
            return Err(Error::invalid("username", username, "must be a login name"));
        }
        let (n, v) = self.args();
        let req = Request::new(&request::AGENT_SET_PASSWORD, &[&n, &v])
            .param("username", username)
            .param("password", password.expose_secret())
            .opt("crypted", crypted.then_some(true));
        self.client.call_unit(req).await
    }
}
