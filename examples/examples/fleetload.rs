//! A bounded load test of a whole deployment on loopback: several `portal` processes and
//! several `cron` workers sharing one PostgreSQL database (pg-test), in front of several
//! simulated clusters (`pve-sim`, generated VMs), with every customer's browser polling.
//!
//! Defaults (the figure in `benches/README.md`): 3 portals, 2 cron workers, 3 clusters with
//! 10,000 VMs in all, 5,000 customers with two VMs each, polling `live.json` every 7 s (one of
//! their two VMs per tick, on the portal `i % 3`, as a load balancer would spread them) for
//! `PACED_SECS`; meanwhile a daily backup schedule due now on `BACKUP_VMS` VMs spread over the
//! clusters. It prints:
//!
//! * the polling: answers, failures, latency p50/p99/max, per portal;
//! * the cluster API calls per 7 s tick per cluster, the portals' and the workers' apart (each
//!   side has its own API token, and the simulator counts what it serves by token and route),
//!   with the busiest routes;
//! * the workers' rounds per cluster and the CPU time of every process;
//! * the scheduled backups: each scheduled VM must have exactly one new archive (0 lost,
//!   0 duplicate), and no other VM any new archive. The run fails (exit 1) otherwise.
//!
//! ```text
//! cargo build --release -p examples --bins --examples
//! target/release/examples/fleetload
//! ```
//!
//! Environment (defaults): `PORTALS` (3), `WORKERS` (2), `CLUSTERS` (3), `VMS` (10000),
//! `CUSTOMERS` (5000, two VMs each, at most `VMS / 2`), `PACED_SECS` (63), `BACKUP_VMS` (300),
//! `CRON_INTERVAL_SECS` (10), `BACKUP_WAIT_SECS` (900). Needs PostgreSQL's server binaries
//! (Debian's `postgresql` package, as `scripts/test.sh` installs). The processes are stopped by
//! their PIDs when the run ends, failed or not; their logs stay in a temporary directory that
//! the run names.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Poll, env, pct};
use examples::portal::config;
use futures_util::StreamExt;
use pve_vps_api::api::cluster::ResourceFilter;
use pve_vps_services::backups::{DaySchedule, WeeklySchedule, due_slot};
use pve_vps_services::ids::{ClusterName, VmId};
use pve_vps_services::leases::LeaseKey;
use pve_vps_services::stores::{LeaseStore, PgStore, ScheduleStore};
use pve_vps_services::time::{OffsetDateTime, UtcOffset};
use pve_vps_sim::{PveSim, Scenario, SimConfig, TokenSpec};

type Error = Box<dyn std::error::Error>;

fn ms(d: Duration) -> String {
    common::ms(d, 1)
}

/// The worker's token on every simulator: the portals use the simulator's default token.
const CRON_TOKEN: &str = "cron";
const CRON_SECRET: &str = "7c1d9e2a-4b3f-4e5d-9a8b-1c2d3e4f5a6b";

/// A child process (a portal or a cron worker), stopped by its PID when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(bin: &Path, name: &str, dir: &Path, env: &[(&str, String)]) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin)
            .env_clear()
            .env("RUST_LOG", "info,pve_vps_sim=warn")
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// User plus system CPU time so far, from `/proc/PID/stat`.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// Waits for the portal's `client area: URL` line.
    async fn portal_url(&mut self, within: Duration) -> Result<String, Error> {
        let end = Instant::now() + within;
        loop {
            if let Some(url) = self
                .log_text()
                .lines()
                .find_map(|l| l.strip_prefix("client area: "))
            {
                return Ok(url.trim().trim_end_matches('/').to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("{} exited with {status}", self.name).into());
            }
            if Instant::now() > end {
                return Err(format!("{} did not start within {within:?}", self.name).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(20);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `portal` and `cron` next to this example's executable (`target/release/`).
fn sibling_binary(name: &str) -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the example's directory")?;
    let bin = dir.join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: build the binaries first (cargo build --release -p examples --bins \
             --examples)",
            bin.display()
        )
        .into())
    }
}

fn cluster_table(name: &str, sim: &PveSim, tokenid: &str, secret: &str) -> String {
    format!(
        "[clusters.{name}]\nurl = \"{}\"\ntoken_id = \"root@pam!{tokenid}\"\ntoken_secret = \
         \"{secret}\"\nfingerprint = \"{}\"\n\n",
        sim.https_url(),
        sim.fingerprint()
    )
}

/// Per cluster: the portals' and the workers' requests served, by route.
type Served = BTreeMap<String, BTreeMap<(bool, String), u64>>;

fn served(sims: &BTreeMap<String, PveSim>) -> Served {
    sims.iter()
        .map(|(name, sim)| {
            let mut by: BTreeMap<(bool, String), u64> = BTreeMap::new();
            for r in sim.served_requests() {
                let cron = r.caller.ends_with(&format!("!{CRON_TOKEN}"));
                *by.entry((cron, format!("{} {}", r.method, r.route)))
                    .or_default() += r.count;
            }
            (name.clone(), by)
        })
        .collect()
}

/// Prints the API calls per tick per cluster between two counts, portals' and workers' apart,
/// with the busiest routes.
fn calls(title: &str, from: &Served, to: &Served, ticks: f64) {
    println!(" {title}:");
    for (name, after) in to {
        let mut delta: Vec<((bool, String), u64)> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - from[name].get(k).copied().unwrap_or(0)))
            .filter(|(_, d)| *d > 0)
            .collect();
        let side = |cron: bool| -> u64 {
            delta
                .iter()
                .filter(|((c, _), _)| *c == cron)
                .map(|(_, d)| d)
                .sum()
        };
        println!(
            "  {name}: {:.1} | {:.1}",
            side(false) as f64 / ticks,
            side(true) as f64 / ticks
        );
        delta.sort_by_key(|d| std::cmp::Reverse(d.1));
        for ((cron, route), d) in delta.iter().take(4) {
            println!(
                "    {} {route}: {:.1}",
                if *cron { "worker" } else { "portal" },
                *d as f64 / ticks
            );
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("fleetload: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let portals = env("PORTALS", 3).max(1) as usize;
    let workers = env("WORKERS", 2).max(1) as usize;
    let clusters = env("CLUSTERS", 3).max(1) as usize;
    let vms = env("VMS", 10_000).max(2 * clusters as u64) as usize;
    let customers = (env("CUSTOMERS", 5_000) as usize).min(vms / 2).max(1);
    let paced_secs = env("PACED_SECS", 63);
    let backup_vms = env("BACKUP_VMS", 300) as usize;
    let interval = env("CRON_INTERVAL_SECS", 10);
    let backup_wait = env("BACKUP_WAIT_SECS", 900);
    let portal_bin = sibling_binary("portal")?;
    let cron_bin = sibling_binary("cron")?;

    let pg = pg_test::PgServer::start();
    let db = pg.create_database("fleetload");
    let dir = std::env::temp_dir().join(format!("fleetload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("logs in {}", dir.display());

    // The clusters: VMIDs from 1000 in each, as separate PVE clusters number them.
    let t = Instant::now();
    let mut sims = BTreeMap::new();
    let mut cron_clusters = String::new();
    let mut portal_clusters = String::new();
    let mut vm_list: Vec<(String, String, u32)> = Vec::new();
    for c in 0..clusters {
        let name = format!("c{}", c + 1);
        let here = vms / clusters + usize::from(c < vms % clusters);
        let mut cfg = SimConfig::default()
            .scenario(Scenario::Generated {
                nodes: 3,
                vms: here,
            })
            .task_durations(Duration::from_millis(100), Duration::from_millis(500));
        cfg.tokens.push(TokenSpec {
            userid: "root@pam".into(),
            tokenid: CRON_TOKEN.into(),
            secret: CRON_SECRET.into(),
            read_only: false,
        });
        let sim = PveSim::start(cfg).await?;
        let token = sim.token().ok_or("no token")?;
        portal_clusters.push_str(&cluster_table(&name, &sim, &token.tokenid, &token.secret));
        cron_clusters.push_str(&cluster_table(&name, &sim, CRON_TOKEN, CRON_SECRET));
        let client = pve_vps_api::Client::builder(sim.https_url())
            .auth(pve_vps_api::Auth::api_token(
                &token.full_id(),
                token.secret.clone(),
            )?)
            .tls(pve_vps_api::Tls::Pinned(sim.fingerprint().parse()?))
            .build()?;
        let mut here: Vec<(String, String, u32)> = client
            .cluster_resources(Some(ResourceFilter::Vm))
            .await?
            .into_iter()
            .filter(|r| !r.template)
            .filter_map(|r| Some((name.clone(), r.node?, r.vmid? as u32)))
            .collect();
        here.sort_by_key(|v| v.2);
        vm_list.extend(here);
        sims.insert(name, sim);
    }
    println!(
        "{} clusters, {} VMs in all, up in {:.1} s",
        sims.len(),
        vm_list.len(),
        t.elapsed().as_secs_f64()
    );

    // The customers: two consecutive VMs each (never the same VMID twice).
    let mut toml = String::new();
    let mut owned: Vec<Vec<u32>> = Vec::new();
    for (i, pair) in vm_list.chunks(2).take(customers).enumerate() {
        let _ = writeln!(
            toml,
            "[[customers]]\nusername = \"customer{i:05}\"\npassword = \"fleet-load-password-{i}\"\n"
        );
        let mut mine = Vec::new();
        for (cluster, node, vmid) in pair {
            if mine.contains(vmid) {
                continue;
            }
            mine.push(*vmid);
            let _ = writeln!(
                toml,
                "[[customers.services]]\ncluster = \"{cluster}\"\nproduct = \"vps-small\"\n\
                 domain = \"vm{vmid}.{cluster}.example.com\"\nmac = \"{}\"\n\
                 dns = []\nvm = {{ node = \"{node}\", vmid = {vmid} }}\n",
                pve_vps_sim::mac_for(*vmid, 0)
            );
        }
        owned.push(mine);
    }
    let parsed = config::parse_customers(&toml)?;
    let services: usize = parsed.iter().map(|c| c.services.len()).sum();
    println!("{} customers, {services} services", parsed.len());
    let customers_file = dir.join("customers.toml");
    std::fs::write(&customers_file, &toml)?;
    let portal_clusters_file = dir.join("portal-clusters.toml");
    std::fs::write(&portal_clusters_file, &portal_clusters)?;
    let cron_clusters_file = dir.join("cron-clusters.toml");
    std::fs::write(&cron_clusters_file, &cron_clusters)?;

    // The portals: each hashes every customer's password at start (Argon2id).
    let t = Instant::now();
    let mut portal_procs = Vec::new();
    for p in 0..portals {
        portal_procs.push(Proc::spawn(
            &portal_bin,
            &format!("portal-{}", p + 1),
            &dir,
            &[
                ("PORTAL_DB", db.clone()),
                ("PORTAL_LISTEN", "127.0.0.1:0".into()),
                (
                    "PORTAL_CLUSTERS",
                    portal_clusters_file.display().to_string(),
                ),
                ("PORTAL_CUSTOMERS", customers_file.display().to_string()),
                ("PORTAL_CACHE_DIR", dir.join("cache").display().to_string()),
            ],
        )?);
    }
    let mut bases = Vec::new();
    for p in &mut portal_procs {
        bases.push(p.portal_url(Duration::from_secs(900)).await?);
    }
    println!(
        "{portals} portals up in {:.1} s ({} Argon2id hashes each)",
        t.elapsed().as_secs_f64(),
        parsed.len()
    );

    // The workers, before any schedule exists.
    let mut cron_procs = Vec::new();
    for w in 0..workers {
        let name = format!("cron-{}", w + 1);
        cron_procs.push(Proc::spawn(
            &cron_bin,
            &name,
            &dir,
            &[
                ("CRON_WORKER", name.clone()),
                ("CRON_STORE", db.clone()),
                ("CRON_CLUSTERS", cron_clusters_file.display().to_string()),
                ("PORTAL_CUSTOMERS", customers_file.display().to_string()),
                ("CRON_INTERVAL_SECS", interval.to_string()),
            ],
        )?);
    }

    // Log everyone in, spread over the portals.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let t = Instant::now();
    let mut sessions: Vec<(usize, usize, String, String)> =
        futures_util::stream::iter(parsed.iter())
            .enumerate()
            .map(|(i, c)| {
                let (http, base) = (http.clone(), bases[i % portals].clone());
                async move {
                    let cookie = common::login(&http, &base, &c.username, &c.password)
                        .await
                        .inspect_err(|e| eprintln!("{}: {e}", c.username))
                        .ok()?;
                    Some((i, i % portals, base, cookie))
                }
            })
            .buffer_unordered(8)
            .filter_map(|x| async move { x })
            .collect()
            .await;
    println!(
        "{} logins in {:.1} s",
        sessions.len(),
        t.elapsed().as_secs_f64()
    );
    if sessions.len() != parsed.len() {
        return Err(format!("only {} of {} logged in", sessions.len(), parsed.len()).into());
    }
    sessions.sort_by_key(|s| s.0);
    let sessions: Vec<(usize, String, String)> =
        sessions.into_iter().map(|(_, p, b, c)| (p, b, c)).collect();

    // The backup schedules: daily at 00:00 (due now) on BACKUP_VMS VMs spread evenly.
    let schedule = WeeklySchedule::new(
        [DaySchedule {
            enabled: true,
            time: "00:00".parse()?,
        }; 7],
    );
    let slot = due_slot(&schedule, OffsetDateTime::now_utc(), UtcOffset::UTC)
        .ok_or("the schedule is due")?;
    let owned_vms: Vec<(String, u32)> = parsed
        .iter()
        .flat_map(|c| &c.services)
        .map(|s| (s.cluster.to_string(), s.vmid().get()))
        .collect();
    let step = (owned_vms.len() / backup_vms.max(1)).max(1);
    let scheduled: BTreeSet<(String, u32)> = owned_vms
        .iter()
        .step_by(step)
        .take(backup_vms)
        .cloned()
        .collect();
    let before: BTreeMap<(String, u32), Vec<String>> = owned_vms
        .iter()
        .map(|(c, v)| ((c.clone(), *v), sims[c].backup_volids(*v)))
        .collect();
    let mut stores = BTreeMap::new();
    for name in sims.keys() {
        let cluster: ClusterName = name.parse()?;
        stores.insert(name.clone(), PgStore::connect_scoped(&db, &cluster).await?);
    }
    for (c, v) in &scheduled {
        stores[c].put(VmId::new(*v)?, &schedule).await?;
    }
    println!(
        "{} VMs with a backup due now (slot {slot})",
        scheduled.len()
    );

    // The paced phase: every customer polls every 7 s, alternating its VMs.
    let cpu0: Vec<Duration> = portal_procs
        .iter()
        .chain(&cron_procs)
        .map(Proc::cpu)
        .collect();
    let served0 = served(&sims);
    let n = sessions.len();
    let polling = common::paced(&http, n, paced_secs, Duration::from_secs(7), move |i, k| {
        let (p, base, cookie) = &sessions[i];
        let vmid = owned[i][k % owned[i].len()];
        Poll {
            url: format!("{base}/s/{vmid}/live.json"),
            cookie: cookie.clone(),
            tag: *p,
        }
    });
    // After two ticks every customer has viewed both VMs once: the first views read each
    // VM's configuration; what follows is the steady state.
    let warm_secs = 14.min(paced_secs);
    let t = Instant::now();
    let (polls, (served_mid, mid)) = tokio::join!(polling, async {
        tokio::time::sleep(Duration::from_secs(warm_secs)).await;
        (served(&sims), t.elapsed().as_secs_f64())
    });
    let secs = polls.secs;
    let served1 = served(&sims);
    let cpu1: Vec<Duration> = portal_procs
        .iter()
        .chain(&cron_procs)
        .map(Proc::cpu)
        .collect();
    let lat = polls.latencies;
    let mut all: Vec<Duration> = lat.iter().map(|(_, d)| *d).collect();
    all.sort();
    println!(
        "\npolling ({n} customers, every 7 s, {secs:.0} s): {} answers, {} failed, {:.0} req/s; \
         latency p50 {} p99 {} max {}",
        polls.ok,
        polls.failed,
        polls.ok as f64 / secs,
        ms(pct(&all, 0.5)),
        ms(pct(&all, 0.99)),
        ms(pct(&all, 1.0))
    );
    for p in 0..portals {
        let mut mine: Vec<Duration> = lat
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, d)| *d)
            .collect();
        mine.sort();
        println!(
            "  portal-{}: {} answers, p50 {} p99 {}, CPU {:.1} s",
            p + 1,
            mine.len(),
            ms(pct(&mine, 0.5)),
            ms(pct(&mine, 0.99)),
            (cpu1[p] - cpu0[p]).as_secs_f64()
        );
    }
    for w in 0..workers {
        println!(
            "  cron-{}: CPU {:.1} s",
            w + 1,
            (cpu1[portals + w] - cpu0[portals + w]).as_secs_f64()
        );
    }
    println!("cluster API calls per 7 s tick (portals | workers), busiest routes:");
    calls(
        &format!("first {mid:.0} s (first views)"),
        &served0,
        &served_mid,
        mid / 7.0,
    );
    calls(
        &format!("then {:.0} s (steady)", secs - mid),
        &served_mid,
        &served1,
        (secs - mid) / 7.0,
    );
    for w in &cron_procs {
        let text = w.log_text();
        let rounds: Vec<String> = sims
            .keys()
            .map(|c| {
                let needle = format!("cluster={c} ");
                let r = text
                    .lines()
                    .filter(|l| l.contains("cluster round") && format!("{l} ").contains(&needle))
                    .count();
                format!("{c} {r}")
            })
            .collect();
        println!("  {} rounds so far: {}", w.name, rounds.join(", "));
    }

    // The scheduled backups: wait for every slot's lease to be completed, then count.
    let t = Instant::now();
    let end = t + Duration::from_secs(backup_wait);
    loop {
        let mut pending = 0;
        for (c, v) in &scheduled {
            let key = LeaseKey::backup_slot(VmId::new(*v)?, slot);
            if !stores[c].lease(&key).await?.is_some_and(|l| l.done) {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        if Instant::now() > end {
            println!("{pending} scheduled backups still pending after {backup_wait} s");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "\nscheduled backups settled {:.0} s after the polling ended",
        t.elapsed().as_secs_f64()
    );
    let (mut made, mut lost, mut dup, mut stray) = (0, 0, 0, 0);
    for ((c, v), old) in &before {
        let new = sims[c]
            .backup_volids(*v)
            .into_iter()
            .filter(|x| !old.contains(x))
            .count();
        if scheduled.contains(&(c.clone(), *v)) {
            match new {
                0 => lost += 1,
                1 => made += 1,
                _ => dup += 1,
            }
        } else if new > 0 {
            stray += 1;
        }
    }
    println!(
        "scheduled backups: {} due, {made} made once, {lost} lost, {dup} duplicated; \
         {stray} unscheduled VMs with a new archive",
        scheduled.len()
    );
    for w in &cron_procs {
        let created = w
            .log_text()
            .lines()
            .filter(|l| l.contains("scheduled backup created"))
            .count();
        println!("  {} created {created}", w.name);
    }

    drop(cron_procs);
    drop(portal_procs);
    for (_, sim) in sims {
        sim.shutdown().await;
    }
    if lost + dup + stray > 0 || polls.failed > 0 {
        return Err(format!(
            "{lost} lost, {dup} duplicated, {stray} stray backups, {} failed polls; logs in {}",
            polls.failed,
            dir.display()
        )
        .into());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
