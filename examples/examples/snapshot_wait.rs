//! Take a snapshot of VM 100 (or `VMID` on `NODE`) and wait for the task, printing its
//! progress: elapsed time, percentage when the log prints one, and each new log line.
//!
//! `cargo run -p examples --example snapshot_wait`

use std::time::Duration;

use pve_vps_api::{NodeName, SnapshotName, VmId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, sim) = examples::cluster_or_sim().await?;
    let node: NodeName = std::env::var("NODE")
        .unwrap_or_else(|_| "pve1".into())
        .parse()?;
    let vmid = VmId::new(
        std::env::var("VMID")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    )?;
    let vm = client.node(&node).qemu(vmid);
    let now = time::OffsetDateTime::now_utc();
    let name: SnapshotName = format!(
        "example_{:04}{:02}{:02}_{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
    .parse()?;
    println!("taking snapshot {name} of {node}/{vmid}");
    let task = vm
        .snapshots()
        .create(&name, Some("taken by the snapshot_wait example"), false)
        .await?
        .timeout(Duration::from_secs(600));
    let done = examples::progress::follow(
        &task,
        &examples::progress::Follow::new("snapshot"),
        &mut std::io::stdout(),
    )
    .await?;
    println!("done ({} warnings)", done.warnings);
    for s in vm.snapshots().list().await? {
        if !s.is_current() {
            println!("snapshot {} taken at {:?}", s.name, s.snaptime);
        }
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}
