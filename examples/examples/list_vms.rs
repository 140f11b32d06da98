//! Connect and list the VMs of the cluster (the embedded simulator when `PVE_URL` is not set).
//!
//! `cargo run -p examples --example list_vms`

use pve_vps_api::api::cluster::ResourceFilter;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, sim) = examples::cluster_or_sim().await?;
    println!(
        "connected to {} (PVE {})",
        client.base_url(),
        client.version().await?.version
    );
    let mut vms = client.cluster_resources(Some(ResourceFilter::Vm)).await?;
    vms.sort_by_key(|r| r.vmid);
    println!(
        "{:>6}  {:<6} {:<20} {:<8} {:>6}",
        "vmid", "node", "name", "status", "cpu%"
    );
    for r in vms.iter().filter(|r| !r.template) {
        println!(
            "{:>6}  {:<6} {:<20} {:<8} {:>6.1}",
            r.vmid.unwrap_or(0),
            r.node.as_deref().unwrap_or("?"),
            r.name.as_deref().unwrap_or(""),
            r.status.as_deref().unwrap_or("?"),
            r.cpu.unwrap_or(0.0) * 100.0
        );
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    Ok(())
}
