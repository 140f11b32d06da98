//! Metrics: `GET .../rrddata`.

use super::VmHandle;
use crate::error::Result;
use crate::macros::wire_enum;
use crate::request::{self, Request};

wire_enum! {
    /// Time span of RRD data.
    pub enum Timeframe {
        /// Last hour.
        Hour => "hour",
        /// Last day.
        Day => "day",
        /// Last week.
        Week => "week",
        /// Last month.
        Month => "month",
        /// Last year.
        Year => "year",
    }
}

wire_enum! {
    /// Consolidation function.
    pub enum Consolidation {
        /// Average.
        Average => "AVERAGE",
        /// Maximum.
        Max => "MAX",
    }
}

/// One RRD row. Missing fields are gaps (no data for that interval).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[non_exhaustive]
pub struct RrdRow {
    /// Unix seconds.
    #[serde(deserialize_with = "crate::de::opt_i64", default)]
    pub time: Option<i64>,
    /// CPU usage.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub cpu: Option<f64>,
    /// CPUs.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub maxcpu: Option<f64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub mem: Option<f64>,
    /// Memory, bytes.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub maxmem: Option<f64>,
    /// Disk read, bytes/s.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub diskread: Option<f64>,
    /// Disk write, bytes/s.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub diskwrite: Option<f64>,
    /// Network in, bytes/s.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub netin: Option<f64>,
    /// Network out, bytes/s.
    #[serde(default, deserialize_with = "crate::de::opt_f64")]
    pub netout: Option<f64>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

impl VmHandle {
    /// `GET .../rrddata?timeframe=&cf=`.
    pub async fn rrddata(&self, timeframe: Timeframe, cf: Consolidation) -> Result<Vec<RrdRow>> {
        let (n, v) = self.args();
        let req = Request::new(&request::RRDDATA, &[&n, &v])
            .param("timeframe", timeframe.as_str())
            .param("cf", cf.as_str());
        self.client.call(req).await
    }
}
