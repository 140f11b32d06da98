//! VNC console: `POST .../vncproxy` and the `vncwebsocket` URL.

use super::VmHandle;
use crate::error::Result;
use crate::request::{self, Request};
use secrecy::SecretString;
use std::fmt;

/// Answer of `POST .../vncproxy` with `websocket=1`. The ticket lives about 40 s.
#[derive(Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct VncProxy {
    /// VNC ticket (secret).
    #[serde(deserialize_with = "crate::de::secret")]
    pub ticket: SecretString,
    /// Port to pass to `vncwebsocket`.
    #[serde(deserialize_with = "crate::de::u64")]
    pub port: u64,
    /// User.
    pub user: String,
    /// Server certificate (PEM).
    pub cert: String,
    /// Task id of the proxy.
    pub upid: String,
    /// One-time VNC password (with `generate-password`).
    #[serde(default, deserialize_with = "crate::de::opt_secret")]
    pub password: Option<SecretString>,
}

impl fmt::Debug for VncProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VncProxy")
            .field("ticket", &"<redacted>")
            .field("port", &self.port)
            .field("user", &self.user)
            .field("upid", &self.upid)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl VmHandle {
    /// `POST .../vncproxy` with `websocket=1`.
    pub async fn vncproxy(&self, generate_password: bool) -> Result<VncProxy> {
        let (n, v) = self.args();
        let req = Request::new(&request::VNCPROXY, &[&n, &v])
            .param("websocket", true)
            .opt("generate-password", generate_password.then_some(true));
        self.client.call(req).await
    }

    /// The `wss://host:port/api2/json/nodes/{node}/qemu/{vmid}/vncwebsocket?port=..&vncticket=..`
    /// URL for `proxy`. Opening it needs a ticket session cookie (API tokens cannot).
    pub fn vnc_websocket_url(&self, proxy: &VncProxy) -> url::Url {
        use secrecy::ExposeSecret;
        let (n, v) = self.args();
        let req = Request::new(&request::VNCWEBSOCKET, &[&n, &v])
            .param("port", proxy.port)
            .param("vncticket", proxy.ticket.expose_secret());
        let mut url = url::Url::parse(self.client.base_url()).expect("base url is valid");
        let scheme = if url.scheme() == "http" { "ws" } else { "wss" };
        let _ = url.set_scheme(scheme);
        let path = format!("{}{}", url.path(), req.path);
        url.set_path(&path);
        url.query_pairs_mut()
            .extend_pairs(req.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        url
    }
}
