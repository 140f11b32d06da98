//! What a simulator starts with: addresses, credentials, timing and the scenario.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::auth::{TokenSpec, UserSpec};

/// The cluster a simulator starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scenario {
    /// Three nodes, templates 9000-9002, running and stopped VMs with snapshots and backups.
    Demo,
    /// One node (`pve1`) with the standard storages and ISO images, and no VMs.
    Minimal,
    /// The minimal cluster spread over `nodes` nodes plus `vms` generated VMs (VMIDs from 1000).
    Generated {
        /// Number of nodes (`pve1`..).
        nodes: usize,
        /// Number of VMs.
        vms: usize,
    },
}

/// How to start a simulator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Address to listen on (loopback by default).
    pub bind: IpAddr,
    /// HTTPS port; `0` picks an ephemeral one.
    pub https_port: u16,
    /// Plain HTTP port: `None` serves no HTTP, `Some(0)` an ephemeral port.
    pub http_port: Option<u16>,
    /// The starting cluster.
    pub scenario: Scenario,
    /// Seed for everything random (MACs, UUIDs, ticket keys stay random per start).
    pub seed: u64,
    /// How long ordinary tasks (start, stop, snapshot, ...) run.
    pub task_duration: Duration,
    /// How long backups and restores run.
    pub backup_duration: Duration,
    /// Delay before answering a failed login or any other 401 (PVE waits 3 s).
    pub failed_login_delay: Duration,
    /// How long a `vncproxy` task waits for its websocket client (PVE: 10 s).
    pub vnc_connect_timeout: Duration,
    /// How long a config write waits for a VM's config lock held by a running start, stop,
    /// shutdown, reboot, reset or resize worker before "can't lock file ... - got timeout"
    /// (PVE: 10 s).
    pub config_lock_timeout: Duration,
    /// Users that can log in with a password.
    pub users: Vec<UserSpec>,
    /// API tokens.
    pub tokens: Vec<TokenSpec>,
}

/// The default admin user.
pub const DEFAULT_USER: &str = "root@pam";
/// The default admin password.
pub const DEFAULT_PASSWORD: &str = "pve-sim-password";
/// The default admin token id (`root@pam!sim`).
pub const DEFAULT_TOKEN_ID: &str = "sim";
/// The default admin token secret.
pub const DEFAULT_TOKEN_SECRET: &str = "0b8a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d";
/// A user with a TOTP second factor (PVE's two-step ticket login).
pub const TFA_USER: &str = "tfa@pve";
/// [`TFA_USER`]'s password.
pub const TFA_PASSWORD: &str = "pve-sim-tfa-password";
/// [`TFA_USER`]'s base32 TOTP secret (RFC 6238: HMAC-SHA1, 30 s, 6 digits); codes come from
/// [`crate::totp_code`].
pub const TFA_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// The read-only token's user (`auditor@pve!readonly`).
pub const READONLY_USER: &str = "auditor@pve";
/// The read-only token's id.
pub const READONLY_TOKEN_ID: &str = "readonly";
/// The read-only token's secret.
pub const READONLY_TOKEN_SECRET: &str = "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f";

impl Default for SimConfig {
    /// Realistic timing (2 s tasks, 8 s backups, 3 s failed-login delay) and the demo scenario.
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            https_port: 0,
            http_port: Some(0),
            scenario: Scenario::Demo,
            seed: 1,
            task_duration: Duration::from_secs(2),
            backup_duration: Duration::from_secs(8),
            failed_login_delay: Duration::from_secs(3),
            vnc_connect_timeout: Duration::from_secs(10),
            config_lock_timeout: Duration::from_secs(10),
            users: vec![
                UserSpec::new(DEFAULT_USER, DEFAULT_PASSWORD),
                UserSpec::new(TFA_USER, TFA_PASSWORD).with_totp(TFA_TOTP_SECRET),
            ],
            tokens: vec![
                TokenSpec {
                    userid: DEFAULT_USER.into(),
                    tokenid: DEFAULT_TOKEN_ID.into(),
                    secret: DEFAULT_TOKEN_SECRET.into(),
                    read_only: false,
                },
                TokenSpec {
                    userid: READONLY_USER.into(),
                    tokenid: READONLY_TOKEN_ID.into(),
                    secret: READONLY_TOKEN_SECRET.into(),
                    read_only: true,
                },
            ],
        }
    }
}

impl SimConfig {
    /// Fast timing for tests: 50 ms tasks, 200 ms backups, no login delay, 2 s for a console
    /// client to connect, 1 s for a config lock.
    pub fn for_tests() -> Self {
        Self {
            task_duration: Duration::from_millis(50),
            backup_duration: Duration::from_millis(200),
            failed_login_delay: Duration::ZERO,
            vnc_connect_timeout: Duration::from_secs(2),
            config_lock_timeout: Duration::from_secs(1),
            ..Self::default()
        }
    }

    /// Replace the scenario.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = scenario;
        self
    }

    /// Replace the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the HTTPS port (`0`: ephemeral).
    pub fn https_port(mut self, port: u16) -> Self {
        self.https_port = port;
        self
    }

    /// Set the plain HTTP port (`None`: no HTTP listener).
    pub fn http_port(mut self, port: Option<u16>) -> Self {
        self.http_port = port;
        self
    }

    /// Set task durations.
    pub fn task_durations(mut self, task: Duration, backup: Duration) -> Self {
        self.task_duration = task;
        self.backup_duration = backup;
        self
    }
}

/// A VM to add to a running simulator (see [`crate::PveSim::add_vm`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// VMID (100 or more).
    pub vmid: u32,
    /// The node it lives on.
    pub node: String,
    /// Whether it runs.
    pub running: bool,
    /// Raw config keys as PVE writes them (`cores`, `memory`, `net0`, `scsi0`, ...).
    pub config: BTreeMap<String, String>,
}

impl VmSpec {
    /// A small VM: 1 core, 1 GiB, a 16 GiB `scsi0` on `local-lvm`, `net0` with a MAC derived
    /// from the VMID on `vmbr0`, the guest agent on, stopped.
    pub fn new(vmid: u32, node: impl Into<String>) -> Self {
        let mut config = BTreeMap::new();
        config.insert("name".into(), format!("vm{vmid}"));
        config.insert("cores".into(), "1".into());
        config.insert("sockets".into(), "1".into());
        config.insert("memory".into(), "1024".into());
        config.insert("ostype".into(), "l26".into());
        config.insert("scsihw".into(), "virtio-scsi-single".into());
        config.insert("agent".into(), "1".into());
        config.insert(
            "scsi0".into(),
            format!("local-lvm:vm-{vmid}-disk-0,iothread=1,size=16G"),
        );
        config.insert(
            "net0".into(),
            format!("virtio={},bridge=vmbr0,firewall=1", mac_for(vmid, 0)),
        );
        config.insert("boot".into(), "order=scsi0;net0".into());
        config.insert("smbios1".into(), format!("uuid={}", uuid_for(vmid)));
        Self {
            vmid,
            node: node.into(),
            running: false,
            config,
        }
    }

    /// Set the name.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.set("name", name)
    }

    /// Set a raw config key.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Mark it running.
    pub fn running(mut self, running: bool) -> Self {
        self.running = running;
        self
    }

    /// Make it a template.
    pub fn template(self) -> Self {
        self.set("template", "1")
    }
}

/// The deterministic MAC the seed scenarios give `netN` of a VM.
pub fn mac_for(vmid: u32, n: u32) -> String {
    let b = vmid.to_be_bytes();
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        b[2] ^ (n as u8 * 16),
        b[3],
        (b[1] ^ 0x5A)
    )
}

fn uuid_for(vmid: u32) -> String {
    format!("{vmid:08x}-5c1d-4000-8000-{vmid:012x}")
}
