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
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
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
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct AgentResult<T> {
    result: T,
}

/// Decode an agent `result`, turning the agent's own error object into
/// [`Error::GuestAgent`]. PVE 6 answered HTTP 200 with `{"result": {"error": {"class": ..,
/// "desc": ..}}}` when the guest agent refused a command (recorded in
/// tests/fixtures/real/agent_net_pve6.2_unsupported.json); later versions answer HTTP 500.
fn agent_result<T: serde::de::DeserializeOwned>(
    endpoint: &request::Endpoint,
    path: &str,
    result: serde_json::Value,
) -> Result<T> {
    if let Some(err) = result.as_object().and_then(|o| o.get("error")) {
        let text = |k: &str| {
            err.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        return Err(Error::GuestAgent {
            path: path.to_owned(),
            class: text("class"),
            message: text("desc"),
        });
    }
    serde_path_to_error::deserialize(result).map_err(|e| Error::Decode {
        method: endpoint.method.as_str().to_owned(),
        path: path.to_owned(),
        field: format!("data.result{}", display_subpath(e.path())),
        source: e.into_inner(),
    })
}

fn display_subpath(p: &serde_path_to_error::Path) -> String {
    let s = p.to_string();
    if s == "." {
        String::new()
    } else if s.starts_with('[') {
        s
    } else {
        format!(".{s}")
    }
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
        let req = Request::new(&request::AGENT_NET, &[&n, &v]);
        let path = req.path.clone();
        let r: AgentResult<serde_json::Value> = self.client.call(req).await?;
        agent_result(&request::AGENT_NET, &path, r.result)
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
