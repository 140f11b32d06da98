//! Back up VM 100 (or `VMID` on `NODE`, to `STORAGE`, default `local`) with vzdump and follow
//! the task: elapsed time, vzdump's percentage, and each new log line as it appears; then the
//! archive in the storage listing.
//!
//! `cargo run -p examples --example backup_wait`

use std::time::Duration;

use pve_vps_api::api::backup::{BackupMode, VzdumpRequest};
use pve_vps_api::{NodeName, StorageId, VmId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, sim) = examples::cluster_or_sim().await?;
    let var = |n: &str, d: &str| std::env::var(n).unwrap_or_else(|_| d.into());
    let node: NodeName = var("NODE", "pve1").parse()?;
    let storage: StorageId = var("STORAGE", "local").parse()?;
    let vmid = VmId::new(var("VMID", "100").parse()?)?;
    println!("backing up {node}/{vmid} to {storage}");
    let req = VzdumpRequest::new(vmid)
        .storage(storage.clone())
        .mode(BackupMode::Snapshot)
        .notes_template("taken by the backup_wait example")?;
    let task = client
        .node(&node)
        .vzdump(&req)
        .await?
        .timeout(Duration::from_secs(3 * 3600));
    let done = examples::progress::follow(
        &task,
        &examples::progress::Follow::new("backup"),
        &mut std::io::stdout(),
    )
    .await?;
    println!("done ({} warnings)", done.warnings);
    let mut archives = client
        .node(&node)
        .storage(&storage)
        .content(Some("backup"), Some(vmid))
        .await?;
    archives.sort_by_key(|a| a.ctime);
    if let Some(a) = archives.last() {
        println!(
            "newest archive: {} ({} bytes)",
            a.volid,
            a.size.unwrap_or(0)
        );
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}
