//! The VPS client-area domain: permissions, quotas, schedules and plans executed through proxmox-api
