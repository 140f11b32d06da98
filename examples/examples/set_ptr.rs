//! Set a PTR record through a reverse-DNS backend (the in-memory one), refusing an address the
//! customer does not own.
//!
//! `cargo run -p examples --example set_ptr -- 203.0.113.10 web-01.example.com`

use std::net::IpAddr;

use ipnet::IpNet;
use pve_vps_dns::{InMemory, ReverseDns, check_allowed, ptr_name};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ip: IpAddr = args
        .next()
        .unwrap_or_else(|| "203.0.113.10".into())
        .parse()?;
    let host = args.next().unwrap_or_else(|| "web-01.example.com".into());
    // The addresses assigned to the customer's service.
    let owned: Vec<IpNet> = vec!["203.0.113.10/32".parse()?, "2001:db8:10::10/128".parse()?];

    let dns = InMemory::any_zone();
    if let Err(e) = check_allowed(ip, &owned) {
        println!("refused: {e}");
        return Ok(());
    }
    let change = dns.set_ptr_str(ip, &host).await?;
    println!("{} PTR {host}: {change}", ptr_name(ip));
    let back = dns.get_ptr(ip).await?.map(|p| p.hostname().to_string());
    println!("now: {ip} -> {back:?}");
    let other: IpAddr = "198.51.100.1".parse()?;
    println!(
        "{other}: {}",
        check_allowed(other, &owned).map_or_else(|e| e.to_string(), |()| "allowed".into())
    );
    Ok(())
}
