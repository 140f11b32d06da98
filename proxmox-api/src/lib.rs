//! Typed async client for the Proxmox VE REST API
