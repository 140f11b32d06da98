//! Pure model of the Proxmox VE firewall: config types, .fw parse/print, evaluator and lint
