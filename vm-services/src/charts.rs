//! Performance charts from PVE's `rrddata` rows; a missing field is a gap, not a zero.

use serde::{Deserialize, Deserializer, Serialize};

/// The time period tabs; each maps to PVE's `timeframe` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timeframe {
    /// Last 60 minutes.
    Hour,
    /// Last 24 hours.
    Day,
    /// Last 7 days.
    Week,
    /// Last 30 days.
    Month,
    /// Last 12 months.
    Year,
}

impl Timeframe {
    /// Every tab, in order.
    pub const ALL: [Timeframe; 5] = [Self::Hour, Self::Day, Self::Week, Self::Month, Self::Year];

    /// The value of PVE's `timeframe` query parameter.
    pub fn as_pve_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }
}

/// Accepts a number, a numeric string or null (PVE's Perl serialiser is loose).
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        F(f64),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::F(f)) => Some(f),
        Some(N::S(s)) => s.trim().parse().ok(),
        None => None,
    }
    .filter(|f: &f64| f.is_finite()))
}

/// One `rrddata` row; every field may be missing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RrdRow {
    /// Unix time of the sample.
    pub time: i64,
    /// CPU load as a fraction of `maxcpu`.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub cpu: Option<f64>,
    /// vCPUs.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub maxcpu: Option<f64>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub mem: Option<f64>,
    /// Total memory, bytes.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub maxmem: Option<f64>,
    /// Disk read, bytes/s.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub diskread: Option<f64>,
    /// Disk write, bytes/s.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub diskwrite: Option<f64>,
    /// Network in, bytes/s.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub netin: Option<f64>,
    /// Network out, bytes/s.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub netout: Option<f64>,
}

/// The unit of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Percent (0..=100).
    Percent,
    /// Bytes.
    Bytes,
    /// Megabytes (10^6 bytes) per second.
    MegabytesPerSecond,
}

/// One line of a chart: `(unix time, value or gap)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Label (`Read MB/s`).
    pub label: String,
    /// Unit of the values.
    pub unit: Unit,
    /// Points in time order; `None` is a gap.
    pub points: Vec<(i64, Option<f64>)>,
}

/// The four charts of the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charts {
    /// The timeframe they cover.
    pub timeframe: Timeframe,
    /// CPU usage in percent of the allocated cores.
    pub cpu: Series,
    /// RAM used and total, bytes.
    pub ram: [Series; 2],
    /// Disk read and write, MB/s.
    pub disk: [Series; 2],
    /// Network in and out, MB/s.
    pub net: [Series; 2],
}

const MB: f64 = 1_000_000.0;

fn series(rows: &[RrdRow], label: &str, unit: Unit, f: impl Fn(&RrdRow) -> Option<f64>) -> Series {
    Series {
        label: label.to_owned(),
        unit,
        points: rows.iter().map(|r| (r.time, f(r))).collect(),
    }
}

/// Builds the charts; rows are sorted by time first.
pub fn build(rows: &[RrdRow], timeframe: Timeframe) -> Charts {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.time);
    let rows = &rows;
    Charts {
        timeframe,
        cpu: series(rows, "CPU %", Unit::Percent, |r| r.cpu.map(|c| c * 100.0)),
        ram: [
            series(rows, "Used", Unit::Bytes, |r| r.mem),
            series(rows, "Total", Unit::Bytes, |r| r.maxmem),
        ],
        disk: [
            series(rows, "Read MB/s", Unit::MegabytesPerSecond, |r| {
                r.diskread.map(|v| v / MB)
            }),
            series(rows, "Write MB/s", Unit::MegabytesPerSecond, |r| {
                r.diskwrite.map(|v| v / MB)
            }),
        ],
        net: [
            series(rows, "In MB/s", Unit::MegabytesPerSecond, |r| {
                r.netin.map(|v| v / MB)
            }),
            series(rows, "Out MB/s", Unit::MegabytesPerSecond, |r| {
                r.netout.map(|v| v / MB)
            }),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_units() {
        let rows: Vec<RrdRow> = serde_json::from_str(
            r#"[{"time":120,"cpu":"0.5","mem":100,"maxmem":200,"diskread":2000000,"netin":1000000,"netout":null},
                {"time":60}]"#,
        )
        .unwrap();
        let c = build(&rows, Timeframe::Hour);
        assert_eq!(c.cpu.points, vec![(60, None), (120, Some(50.0))]);
        assert_eq!(c.disk[0].points[1], (120, Some(2.0)));
        assert_eq!(c.disk[1].points[1], (120, None));
        assert_eq!(c.net[1].points[1], (120, None));
        assert_eq!(c.ram[1].points[1], (120, Some(200.0)));
        assert_eq!(Timeframe::Week.as_pve_str(), "week");
    }
}
