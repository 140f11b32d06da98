//! `fw-eval DIR [PACKETS]`: loads `cluster.fw`, `host.fw`, `<vmid>.fw`, `sdn/<vnet>.fw` and
//! `topology.json` from DIR, reads packets as JSON lines from PACKETS (or stdin) and prints one verdict per line.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use pve_vps_firewall::cli::{NodeFiles, eval_lines, load_node};

fn read_dir(dir: &Path) -> std::io::Result<NodeFiles> {
    let mut files = NodeFiles::default();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    files.cluster = read("cluster.fw").ok();
    files.host = read("host.fw").ok();
    files.topology = read("topology.json")?;
    let mut guests = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "fw")
            && let Ok(id) = stem.parse::<u32>()
        {
            guests.insert(id, std::fs::read_to_string(&path)?);
        }
    }
    files.guests = guests;
    // VNet files, as in /etc/pve/sdn/firewall/<vnet>.fw.
    if let Ok(entries) = std::fs::read_dir(dir.join("sdn")) {
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "fw")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                files
                    .vnets
                    .insert(stem.to_string(), std::fs::read_to_string(&path)?);
            }
        }
    }
    Ok(files)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: fw-eval DIR [PACKETS.jsonl]   (packets from stdin when omitted)");
        return ExitCode::from(2);
    };
    let files = match read_dir(Path::new(&dir)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fw-eval: cannot read {dir}: {e}");
            return ExitCode::from(1);
        }
    };
    let (node, warnings) = match load_node(&files) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("fw-eval: {e}");
            return ExitCode::from(1);
        }
    };
    for w in warnings {
        eprintln!("warning: {} {}", w.file, w.error);
    }
    let mut input = String::new();
    let read = match args.next() {
        Some(p) => std::fs::read_to_string(p).map(|s| input = s),
        None => std::io::stdin().read_to_string(&mut input).map(|_| ()),
    };
    if let Err(e) = read {
        eprintln!("fw-eval: cannot read packets: {e}");
        return ExitCode::from(1);
    }
    for line in eval_lines(&node, &input) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}
