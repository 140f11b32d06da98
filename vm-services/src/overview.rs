//! The overview page, assembled from one `/cluster/resources` row, the VM config and the service.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{DomainName, MacAddr};
use crate::product::Product;
use crate::pve::{DiskLimits, DiskSize, MbPerSec, NicModel, VmConfig};
use crate::service::Service;

/// The note the network section always shows.
pub const MAIN_IP_NOTE: &str = "Only the main IP address is automatically configured on the network interface. \
Additional IP addresses must be configured manually inside the VM.";

/// The fields of a `/cluster/resources?type=vm` row the overview needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceRow {
    /// `running`, `stopped`, ...
    pub status: String,
    /// Seconds since start.
    pub uptime: u64,
    /// CPU load as a fraction of `maxcpu` (0.0..=1.0).
    pub cpu: f64,
    /// Number of vCPUs.
    pub maxcpu: f64,
    /// Used memory in bytes.
    pub mem: u64,
    /// Total memory in bytes.
    pub maxmem: u64,
}

/// A disk line: `100 GiB R/W: 100/100 MB/s | 500/500 IOPS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Config key (`scsi0`).
    pub key: String,
    /// Size, when PVE reports it.
    pub size: Option<DiskSize>,
    /// Limits as configured.
    pub limits: DiskLimits,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string())
}

impl DiskInfo {
    /// The line the overview shows.
    pub fn summary(&self) -> String {
        let size = self
            .size
            .map_or_else(|| "?".to_owned(), |s| format_gib(s.gib()));
        format!(
            "{size} GiB R/W: {}/{} MB/s | {}/{} IOPS",
            opt(self.limits.mbps_rd),
            opt(self.limits.mbps_wr),
            opt(self.limits.iops_rd),
            opt(self.limits.iops_wr)
        )
    }
}

fn format_gib(g: f64) -> String {
    if g.fract() == 0.0 {
        format!("{g:.0}")
    } else {
        format!("{g:.2}")
    }
}

/// The network adapter line: `virtio BC:24:11:7A:40:98 | 12 MB/s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NicInfo {
    /// Model.
    pub model: NicModel,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// Rate limit.
    pub rate: Option<MbPerSec>,
}

impl NicInfo {
    /// The line the overview shows.
    pub fn summary(&self) -> String {
        let mac = self.mac.map_or_else(String::new, |m| m.to_string());
        match self.rate {
            Some(r) => format!("{} {mac} | {r} MB/s", self.model),
            None => format!("{} {mac} | unlimited", self.model),
        }
    }
}

/// The network configuration section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// Primary IPv4 with prefix.
    pub ipv4: Option<Ipv4Net>,
    /// Additional IPv4 addresses.
    pub ipv4_extra: Vec<Ipv4Addr>,
    /// IPv4 gateway.
    pub gateway4: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<IpAddr>,
    /// Primary IPv6 with prefix.
    pub ipv6: Option<Ipv6Net>,
    /// Additional IPv6 addresses.
    pub ipv6_extra: Vec<Ipv6Addr>,
    /// IPv6 gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// The VM's domain.
    pub domain: DomainName,
    /// [`MAIN_IP_NOTE`].
    pub note: String,
}

/// Whether the VM runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmStatus {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Anything else PVE says (`paused`, `suspended` ...), kept verbatim.
    Other(String),
}

/// The overview page's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// Status.
    pub status: VmStatus,
    /// Uptime formatted like `0 days 00:02:05`.
    pub uptime: String,
    /// CPU utilisation in percent of all allocated cores.
    pub cpu_percent: f64,
    /// Allocated cores.
    pub cores: u32,
    /// Used RAM in bytes.
    pub ram_used: u64,
    /// Total RAM in bytes.
    pub ram_total: u64,
    /// Used RAM in percent.
    pub ram_percent: f64,
    /// The system disk.
    pub system_disk: Option<DiskInfo>,
    /// The additional disk, if the package has one and the VM carries it.
    pub additional_disk: Option<DiskInfo>,
    /// The first network adapter.
    pub nic: Option<NicInfo>,
    /// The network section.
    pub network: NetworkSummary,
}

/// Formats seconds like the client area: `0 days 00:02:05`.
pub fn format_duration(secs: u64) -> String {
    let days = secs / 86_400;
    let h = (secs % 86_400) / 3600;
    let m = (secs % 3600) / 60;
    let s = secs % 60;
    format!("{days} days {h:02}:{m:02}:{s:02}")
}

fn disk_info(config: &VmConfig, key: &str) -> Result<Option<DiskInfo>, Error> {
    Ok(config.disk(key)?.map(|d| DiskInfo {
        key: key.to_owned(),
        size: d.size,
        limits: d.limits,
    }))
}

/// Builds the overview; fails only when a config property the page shows does not parse.
pub fn build(
    row: &ResourceRow,
    config: &VmConfig,
    service: &Service,
    product: &Product,
) -> Result<Overview, Error> {
    let status = match row.status.as_str() {
        "running" => VmStatus::Running,
        "stopped" => VmStatus::Stopped,
        other => VmStatus::Other(other.to_owned()),
    };
    let uptime = if status == VmStatus::Running {
        row.uptime
    } else {
        0
    };
    let cpu_percent = if row.cpu.is_finite() {
        (row.cpu * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    let ram_percent = if row.maxmem == 0 {
        0.0
    } else {
        row.mem as f64 * 100.0 / row.maxmem as f64
    };
    let nic = config.net(0)?.map(|n| NicInfo {
        model: n.model,
        mac: n.mac,
        rate: n.rate,
    });
    let additional_disk = match &product.additional_disk {
        Some(d) => disk_info(config, &d.key)?,
        None => None,
    };
    Ok(Overview {
        status,
        uptime: format_duration(uptime),
        cpu_percent,
        cores: if row.maxcpu.is_finite() && row.maxcpu > 0.0 {
            row.maxcpu as u32
        } else {
            0
        },
        ram_used: row.mem,
        ram_total: row.maxmem,
        ram_percent,
        system_disk: disk_info(config, &product.system_disk.key)?,
        additional_disk,
        nic,
        network: NetworkSummary {
            ipv4: service.ipv4.as_ref().map(|a| a.primary),
            ipv4_extra: service
                .ipv4
                .as_ref()
                .map(|a| a.extra.clone())
                .unwrap_or_default(),
            gateway4: service.ipv4.as_ref().map(|a| a.gateway),
            dns: service.dns.clone(),
            ipv6: service.ipv6.as_ref().map(|a| a.primary),
            ipv6_extra: service
                .ipv6
                .as_ref()
                .map(|a| a.extra.clone())
                .unwrap_or_default(),
            gateway6: service.ipv6.as_ref().map(|a| a.gateway),
            domain: service.domain.clone(),
            note: MAIN_IP_NOTE.to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::fixtures;

    #[test]
    fn overview_of_the_guide_screenshot() {
        let config: VmConfig = [
            (
                "net0",
                "virtio=BC:24:11:7A:40:98,bridge=vmbr0,tag=10,rate=12,firewall=1",
            ),
            (
                "scsi0",
                "local-lvm:vm-100-disk-0,size=100G,mbps_rd=100,mbps_wr=100,iops_rd=500,iops_wr=500",
            ),
            (
                "scsi1",
                "local-lvm:vm-100-disk-1,size=200G,mbps_rd=200,mbps_wr=200,iops_rd=200,iops_wr=200",
            ),
        ]
        .into_iter()
        .collect();
        let row = ResourceRow {
            status: "running".into(),
            uptime: 125,
            cpu: 0.001,
            maxcpu: 1.0,
            mem: 154_000_000,
            maxmem: 1 << 30,
        };
        let o = build(
            &row,
            &config,
            &fixtures::service(),
            &fixtures::large_product(),
        )
        .unwrap();
        assert_eq!(o.uptime, "0 days 00:02:05");
        assert_eq!(o.cores, 1);
        assert!((o.cpu_percent - 0.1).abs() < 1e-9);
        assert_eq!(
            o.system_disk.unwrap().summary(),
            "100 GiB R/W: 100/100 MB/s | 500/500 IOPS"
        );
        assert_eq!(
            o.additional_disk.unwrap().summary(),
            "200 GiB R/W: 200/200 MB/s | 200/200 IOPS"
        );
        assert_eq!(
            o.nic.unwrap().summary(),
            "virtio BC:24:11:7A:40:98 | 12 MB/s"
        );
        assert_eq!(o.network.ipv4_extra.len(), 1);
        assert_eq!(o.network.gateway4.unwrap().to_string(), "192.168.130.1");
        assert_eq!(o.network.note, MAIN_IP_NOTE);

        let stopped = ResourceRow {
            status: "stopped".into(),
            ..row
        };
        let o = build(
            &stopped,
            &config,
            &fixtures::service(),
            &fixtures::product(),
        )
        .unwrap();
        assert_eq!(o.status, VmStatus::Stopped);
        assert_eq!(o.uptime, "0 days 00:00:00");
        assert_eq!(o.additional_disk, None);
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0 days 00:00:00");
        assert_eq!(format_duration(86_399), "0 days 23:59:59");
        assert_eq!(format_duration(3 * 86_400 + 61), "3 days 00:01:01");
    }
}
