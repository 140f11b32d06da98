//! Cloud-init: regenerate the drive and dump the generated config.

use super::VmHandle;
use crate::error::Result;
use crate::macros::wire_enum;
use crate::request::{self, Request};

wire_enum! {
    /// Which generated cloud-init document to dump.
    pub enum CloudInitDump {
        /// user-data
        User => "user",
        /// network-config
        Network => "network",
        /// meta-data
        Meta => "meta",
    }
}

impl VmHandle {
    /// `PUT .../cloudinit`: regenerate the cloud-init drive so pending changes apply.
    pub async fn cloudinit_regenerate(&self) -> Result<()> {
        let (n, v) = self.args();
        self.client
            .call_unit(Request::new(&request::CLOUDINIT_REGENERATE, &[&n, &v]))
            .await
    }

    /// `GET .../cloudinit/dump?type=`.
    pub async fn cloudinit_dump(&self, kind: CloudInitDump) -> Result<String> {
        let (n, v) = self.args();
        self.client
            .call(Request::new(&request::CLOUDINIT_DUMP, &[&n, &v]).param("type", kind.as_str()))
            .await
    }
}
