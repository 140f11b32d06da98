//! A stateful Proxmox VE simulator over real HTTP on loopback
