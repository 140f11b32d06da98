//! Real `cron` worker processes sharing one PostgreSQL database (pg-test) against one pve-sim
//! (HTTPS, API token, pinned certificate):
//!
//! * three workers share the due scheduled backups of four customer VMs, and each is made
//!   exactly once;
//! * the worker running an interrupted restore (or reinstall) is killed (SIGKILL to its PID)
//!   mid-plan, the other worker takes the plan over once the lease expired and finishes it,
//!   once;
//! * the worker running a slow scheduled backup is killed while vzdump runs; the other takes
//!   the slot over and makes no second archive;
//! * SIGTERM during a round: the worker finishes it (the backup made, the lease completed)
//!   and exits 0; when the round outlasts `CRON_GRACE_SECS` it stops it, releases the slot
//!   for the next worker at once, and still no second archive is made.
//!
//! Every worker process is killed by its own PID when its guard drops (a failed assertion
//! included), and each test runs under a timeout.

mod common;

use common::{count, run, test_dir, wait_for};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use examples::portal::config;
use pve_vps_services::ClientArea;
use pve_vps_services::backups::{DaySchedule, WeeklySchedule, due_slot};
use pve_vps_services::leases::{Lease, LeaseKey};
use pve_vps_services::outcomes::{Ending, OperationKind};
use pve_vps_services::product::Catalog;
use pve_vps_services::service::Service;
use pve_vps_services::stores::{LeaseStore, PgStore, PlanStore, ScheduleStore};
use pve_vps_services::time::{OffsetDateTime, UtcOffset};
use pve_vps_sim::{PveSim, SimConfig};

/// One `cron` process; killed (SIGKILL to its PID) and reaped when dropped.
struct Worker {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// Starts `cron` as worker `name` on the store `db` against `sim`, one round a second.
    fn spawn(name: &str, sim: &PveSim, db: &str, lease_secs: u64, dir: &Path) -> Self {
        Self::spawn_with(name, sim, db, lease_secs, dir, &[])
    }

    /// [`spawn`](Self::spawn) with more environment variables.
    fn spawn_with(
        name: &str,
        sim: &PveSim,
        db: &str,
        lease_secs: u64,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let token = sim.token().expect("the simulator's token");
        let child = Command::new(env!("CARGO_BIN_EXE_cron"))
            // Nothing from the caller's environment (PORTAL_*, CRON_*, RUST_LOG) leaks in.
            .env_clear()
            .env("PVE_URL", sim.https_url())
            .env(
                "PVE_TOKEN_ID",
                format!("{}!{}", token.userid, token.tokenid),
            )
            .env("PVE_TOKEN_SECRET", &token.secret)
            .env("PVE_FINGERPRINT", sim.fingerprint())
            .env("CRON_STORE", db)
            .env("CRON_WORKER", name)
            .env("CRON_LEASE_SECS", lease_secs.to_string())
            .env("CRON_INTERVAL_SECS", "1")
            .env("CRON_GRACE_SECS", "20")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("cron starts");
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing every one of `needles`.
    fn count(&self, needles: &[&str]) -> usize {
        count(&self.log_text(), needles)
    }

    /// SIGKILL to this PID (never a group), then reaped.
    fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("kill");
        self.child.wait().expect("reap")
    }

    /// SIGTERM to this PID; the exit status once it stopped (within `within`).
    async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "SIGTERM to {pid}");
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{} did not stop within {within:?} of SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {} ---", self.name);
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

fn services() -> Vec<Service> {
    config::parse_customers(config::DEFAULT_CUSTOMERS)
        .expect("customers")
        .into_iter()
        .flat_map(|c| c.services)
        .collect()
}

fn daily() -> WeeklySchedule {
    WeeklySchedule::new(
        [DaySchedule {
            enabled: true,
            time: "00:00".parse().expect("time"),
        }; 7],
    )
}

fn backups(sim: &PveSim, services: &[Service]) -> BTreeMap<u32, Vec<String>> {
    services
        .iter()
        .map(|s| (s.vmid().get(), sim.backup_volids(s.vmid().get())))
        .collect()
}

async fn lease(store: &PgStore, key: &LeaseKey) -> Option<Lease> {
    store.lease(key).await.expect("lease read")
}

#[test]
fn three_workers_share_the_due_backups_and_make_each_once() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("cron_share");
    run(90, async move {
        // Slow backups (1.5 s), so that one worker cannot serve every VM before the others.
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(50), Duration::from_millis(1500)),
        )
        .await
        .expect("sim");
        // Connecting creates the tables before the workers start.
        let store = PgStore::connect(&url).await.expect("store");
        let services = services();
        let vmids: Vec<u32> = services.iter().map(|s| s.vmid().get()).collect();
        assert_eq!(vmids.len(), 4, "the demo customers own four VMs");
        let before = backups(&sim, &services);
        let dir = test_dir("share");
        let mut workers: Vec<Worker> = ["cron-a", "cron-b", "cron-c"]
            .iter()
            .map(|n| Worker::spawn(n, &sim, &url, 2, &dir))
            .collect();

        // All three are up and past a first round (nothing due yet) before the schedules
        // are stored, so that they compete for the same slots.
        wait_for(
            "every worker's first round",
            Duration::from_secs(30),
            || {
                let ready = workers.iter().all(|w| w.count(&["backup tick"]) >= 1);
                async move { ready.then_some(()) }
            },
        )
        .await;
        let schedule = daily();
        for s in &services {
            store.put(s.vmid(), &schedule).await.expect("schedule");
        }
        let slot = due_slot(&schedule, OffsetDateTime::now_utc(), UtcOffset::UTC)
            .expect("due at 00:00 every day");
        let keys: Vec<(u32, LeaseKey)> = services
            .iter()
            .map(|s| (s.vmid().get(), LeaseKey::backup_slot(s.vmid(), slot)))
            .collect();

        let holders: BTreeMap<u32, String> =
            wait_for("every slot served", Duration::from_secs(40), || async {
                let mut holders = BTreeMap::new();
                for (vmid, key) in &keys {
                    match lease(&store, key).await {
                        Some(l) if l.done => holders.insert(*vmid, l.holder.to_string()),
                        _ => return None,
                    };
                }
                Some(holders)
            })
            .await;
        // Two more rounds of every worker after that: nothing more is made.
        let ticks: Vec<usize> = workers.iter().map(|w| w.count(&["backup tick"])).collect();
        wait_for("two more rounds each", Duration::from_secs(20), || {
            let done = workers
                .iter()
                .zip(&ticks)
                .all(|(w, t)| w.count(&["backup tick"]) >= t + 2);
            async move { done.then_some(()) }
        })
        .await;

        let logs: Vec<(String, String)> = workers
            .iter()
            .map(|w| (w.name.clone(), w.log_text()))
            .collect();
        let today = {
            let d = OffsetDateTime::now_utc().date();
            format!("{:04}_{:02}_{:02}", d.year(), u8::from(d.month()), d.day())
        };
        for s in &services {
            let vmid = s.vmid().get();
            let after = sim.backup_volids(vmid);
            let new: Vec<&String> = after
                .iter()
                .filter(|v| !before[&vmid].contains(v))
                .collect();
            assert_eq!(new.len(), 1, "vm {vmid}: one new archive: {after:?}");
            assert!(
                new[0].contains(&format!("vzdump-qemu-{vmid}-{today}")),
                "{new:?}"
            );
            for old in &before[&vmid] {
                assert!(after.contains(old), "vm {vmid}: {old} kept (within quota)");
            }
            // One worker made it, logged it and completed the slot's lease: the lease holder.
            let key = format!("lease={} ", LeaseKey::backup_slot(s.vmid(), slot));
            let created = format!("vm={} ", s.vm);
            let makers: Vec<&str> = logs
                .iter()
                .filter(|(_, text)| count(text, &["scheduled backup created", &created]) > 0)
                .map(|(n, _)| n.as_str())
                .collect();
            assert_eq!(makers, vec![holders[&vmid].as_str()], "vm {vmid}");
            let completions: Vec<(&str, usize)> = logs
                .iter()
                .map(|(n, text)| (n.as_str(), count(text, &["lease completed", &key])))
                .filter(|(_, c)| *c > 0)
                .collect();
            assert_eq!(completions, vec![(holders[&vmid].as_str(), 1)], "vm {vmid}");
            let total: usize = logs
                .iter()
                .map(|(_, t)| count(t, &["scheduled backup created", &created]))
                .sum();
            assert_eq!(total, 1, "vm {vmid}: created once");
        }
        // The work was shared: the slots were served by more than one worker.
        let distinct: BTreeSet<&String> = holders.values().collect();
        assert!(
            distinct.len() >= 2,
            "one worker did everything: {holders:?}"
        );
        eprintln!("slots served by: {holders:?}");

        // SIGTERM: each stops cleanly; every line of its log names it.
        for w in &mut workers {
            let status = w.terminate(Duration::from_secs(25)).await;
            assert!(status.success(), "{}: {status}", w.name);
            let text = w.log_text();
            assert_eq!(count(&text, &["scheduler stopped"]), 1, "{text}");
            let prefix = format!("[{}] ", w.name);
            assert!(text.lines().all(|l| l.starts_with(&prefix)), "{text}");
        }
        sim.shutdown().await;
    });
}

#[test]
fn a_worker_killed_mid_restore_is_taken_over_and_the_plan_finishes_once() {
    takeover(OperationKind::Restore);
}

#[test]
fn a_worker_killed_mid_reinstall_is_taken_over_and_the_plan_finishes_once() {
    takeover(OperationKind::Reinstall);
}

/// A portal instance starts a restore (VM 104) or a reinstall (VM 101, template 9000) and
/// dies after the first step; two workers start, one takes the plan over and is killed
/// mid-plan; the other takes it over after the lease expired and finishes it, once.
fn takeover(kind: OperationKind) {
    let pg = pg_test::PgServer::start();
    let (vmid, name) = match kind {
        OperationKind::Restore => (104, "restore"),
        _ => (101, "reinstall"),
    };
    let url = pg.create_database(&format!("cron_takeover_{name}"));
    run(120, async move {
        // Slow tasks: the plan's steps are surely under way when a worker is killed (a
        // restore has 4 steps, a reinstall 11).
        let task_ms = if kind == OperationKind::Restore {
            2000
        } else {
            1000
        };
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(task_ms), Duration::from_millis(300)),
        )
        .await
        .expect("sim");
        let store = Arc::new(PgStore::connect(&url).await.expect("store"));
        let services = services();
        let s = services
            .iter()
            .find(|s| s.vmid().get() == vmid)
            .expect("the vm")
            .clone();
        let portal = ClientArea::builder(
            examples::sim_client(&sim).expect("client"),
            Catalog::from_toml_str(config::DEFAULT_PRODUCTS).expect("products"),
        )
        .stores(store.clone())
        .worker("portal-1".parse().expect("name"))
        .lease_ttl(Duration::from_secs(1))
        .build()
        .expect("client area");
        let before = backups(&sim, &services);
        let archive = portal.backups(&s).await.expect("backups").backups[0]
            .volid
            .clone();

        // A portal instance starts the operation and dies after its first step (VM stopped).
        let task = {
            let (portal, s) = (portal.clone(), s.clone());
            tokio::spawn(async move {
                match kind {
                    OperationKind::Restore => portal.restore(&s, &archive).await.map(|_| ()),
                    _ => portal
                        .reinstall(&s, "9000".parse().expect("vmid"), "REINSTALL")
                        .await
                        .map(|_| ()),
                }
            })
        };
        let plan = wait_for(
            "the operation's first step",
            Duration::from_secs(20),
            || async {
                let plans = store.unfinished().await.expect("plans");
                plans.into_iter().find(|p| p.done >= 1)
            },
        )
        .await;
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
        wait_for(
            "the portal's PVE task to end",
            Duration::from_secs(10),
            || {
                let free = sim.vm_lock(vmid).is_none();
                async move { free.then_some(()) }
            },
        )
        .await;

        let dir = test_dir(name);
        let mut workers: Vec<Worker> = ["cron-a", "cron-b"]
            .iter()
            .map(|n| Worker::spawn(n, &sim, &url, 3, &dir))
            .collect();
        let key = LeaseKey::plan(&plan.id);
        // One worker takes the plan over from the dead portal (its lease expired).
        let first = wait_for(
            "a worker to take the plan",
            Duration::from_secs(20),
            || async {
                lease(&store, &key)
                    .await
                    .filter(|l| !l.done && l.holder.as_str() != "portal-1")
                    .map(|l| l.holder.to_string())
            },
        )
        .await;
        let (victim, survivor) = if first == "cron-a" { (0, 1) } else { (1, 0) };
        // The other worker sees the plan held and leaves it alone.
        let held_by = format!("held by worker `{first}`");
        let plan_field = format!("plan={} ", plan.id);
        wait_for(
            "the other worker to see the lease",
            Duration::from_secs(20),
            || {
                let seen =
                    workers[survivor].count(&["unfinished plan left alone", &plan_field, &held_by])
                        > 0;
                async move { seen.then_some(()) }
            },
        )
        .await;
        // Killed mid-plan, holding the lease: SIGKILL to that PID.
        let status = workers[victim].kill();
        assert_eq!(status.signal(), Some(9), "{status}");
        let at_kill = store
            .load(&plan.id)
            .await
            .expect("plan")
            .expect("the plan is stored");
        assert!(
            !at_kill.is_finished(),
            "the plan finished before its worker could be killed"
        );
        assert!(
            lease(&store, &key).await.is_some_and(|l| !l.done),
            "the killed worker held the lease"
        );
        eprintln!(
            "killed with {} of {} steps done",
            at_kill.done,
            at_kill.plan.len()
        );
        let killed_at = Instant::now();
        let victim_name = workers[victim].name.clone();
        let survivor_name = workers[survivor].name.clone();

        wait_for(
            "the other worker to finish the plan",
            Duration::from_secs(40),
            || async {
                let l = lease(&store, &key).await?;
                let open = store.unfinished().await.expect("plans");
                (l.done && open.is_empty()).then_some(())
            },
        )
        .await;
        let l = lease(&store, &key).await.expect("lease");
        assert_eq!(l.holder.as_str(), survivor_name);
        eprintln!(
            "taken over {:.1} s after the kill",
            killed_at.elapsed().as_secs_f64()
        );

        let lease_field = format!("lease={key} ");
        let from_victim = format!("from={victim_name}");
        // The survivor logs the plan finished once its resume phase returned, a moment after
        // the lease was completed in the store.
        let finished = ["interrupted operation resumed and finished", &plan_field];
        wait_for("the survivor's log line", Duration::from_secs(10), || {
            let n = workers[survivor].count(&finished);
            async move { (n > 0).then_some(()) }
        })
        .await;
        let survivor_log = workers[survivor].log_text();
        let victim_log = workers[victim].log_text();
        assert_eq!(
            count(
                &survivor_log,
                &["lease taken over", &lease_field, &from_victim]
            ),
            1,
            "{survivor_log}"
        );
        assert!(
            count(
                &victim_log,
                &["lease taken over", &lease_field, "from=portal-1"]
            ) == 1,
            "{victim_log}"
        );
        // Finished once, by the survivor.
        assert_eq!(count(&survivor_log, &finished), 1, "{survivor_log}");
        assert_eq!(count(&victim_log, &finished), 0, "{victim_log}");
        let outcomes: Vec<_> = portal
            .outcomes(&s)
            .await
            .expect("outcomes")
            .into_iter()
            .filter(|o| o.plan == plan.id)
            .collect();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        assert_eq!(outcomes[0].operation, kind);
        assert_eq!(outcomes[0].ending, Ending::Succeeded);
        assert_eq!(sim.vm_status(vmid), Some("running"));
        assert_eq!(sim.vm_lock(vmid), None);
        // No backup lost or added.
        assert_eq!(backups(&sim, &services), before);

        // Later rounds leave the finished plan alone; SIGTERM stops the survivor cleanly.
        let ticks = workers[survivor].count(&["backup tick"]);
        wait_for("two more rounds", Duration::from_secs(10), || {
            let done = workers[survivor].count(&["backup tick"]) >= ticks + 2;
            async move { done.then_some(()) }
        })
        .await;
        let status = workers[survivor].terminate(Duration::from_secs(25)).await;
        assert!(status.success(), "{status}");
        let survivor_log = workers[survivor].log_text();
        assert_eq!(count(&survivor_log, &finished), 1, "{survivor_log}");
        assert_eq!(
            portal
                .outcomes(&s)
                .await
                .expect("outcomes")
                .iter()
                .filter(|o| o.plan == plan.id)
                .count(),
            1
        );
        sim.shutdown().await;
    });
}

#[test]
fn a_worker_killed_mid_backup_leaves_one_archive() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("cron_backup_kill");
    run(90, async move {
        // A six-second vzdump: it runs on in PVE after its worker died, past the lease.
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(50), Duration::from_millis(6000)),
        )
        .await
        .expect("sim");
        let store = PgStore::connect(&url).await.expect("store");
        let services = services();
        let web = services
            .iter()
            .find(|s| s.vmid().get() == 100)
            .expect("vm 100");
        let schedule = daily();
        store.put(web.vmid(), &schedule).await.expect("schedule");
        let slot = due_slot(&schedule, OffsetDateTime::now_utc(), UtcOffset::UTC).expect("due");
        let key = LeaseKey::backup_slot(web.vmid(), slot);
        let before = backups(&sim, &services);

        let dir = test_dir("backup");
        let mut workers: Vec<Worker> = ["cron-a", "cron-b"]
            .iter()
            .map(|n| Worker::spawn(n, &sim, &url, 2, &dir))
            .collect();
        // Whoever claimed the slot is killed while its vzdump runs.
        let first = wait_for("a worker's vzdump", Duration::from_secs(20), || async {
            let l = lease(&store, &key).await?;
            (sim.vm_lock(100).as_deref() == Some("backup")).then(|| l.holder.to_string())
        })
        .await;
        let (victim, survivor) = if first == "cron-a" { (0, 1) } else { (1, 0) };
        let status = workers[victim].kill();
        assert_eq!(status.signal(), Some(9), "{status}");
        let victim_name = workers[victim].name.clone();

        // The survivor takes the expired slot over while the VM is still locked by the dead
        // worker's vzdump, and gives it back without a second backup.
        let lease_field = format!("lease={key} ");
        let from_victim = format!("from={victim_name}");
        wait_for("the takeover", Duration::from_secs(20), || {
            let seen =
                workers[survivor].count(&["lease taken over", &lease_field, &from_victim]) > 0;
            async move { seen.then_some(()) }
        })
        .await;
        let had = before[&100].len();
        wait_for("the dead worker's archive", Duration::from_secs(20), || {
            let n = sim.backup_volids(100).len();
            async move { (n > had).then_some(()) }
        })
        .await;
        let ticks = workers[survivor].count(&["backup tick"]);
        wait_for("two more rounds", Duration::from_secs(10), || {
            let done = workers[survivor].count(&["backup tick"]) >= ticks + 2;
            async move { done.then_some(()) }
        })
        .await;

        let after = backups(&sim, &services);
        let new: Vec<&String> = after[&100]
            .iter()
            .filter(|v| !before[&100].contains(v))
            .collect();
        assert_eq!(new.len(), 1, "one archive for the slot: {after:?}");
        for (vmid, old) in &before {
            for v in old {
                assert!(after[vmid].contains(v), "{v} kept");
            }
            if *vmid != 100 {
                assert_eq!(&after[vmid], old, "vm {vmid}: no schedule, no backup");
            }
        }
        let survivor_log = workers[survivor].log_text();
        assert_eq!(
            count(&survivor_log, &["scheduled backup created"]),
            0,
            "{survivor_log}"
        );
        let status = workers[survivor].terminate(Duration::from_secs(25)).await;
        assert!(status.success(), "{status}");
        sim.shutdown().await;
    });
}

#[test]
fn sigterm_finishes_the_round_or_releases_the_slot() {
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("cron_sigterm");
    run(90, async move {
        // A three-second vzdump: SIGTERM arrives while it runs.
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(50), Duration::from_millis(3000)),
        )
        .await
        .expect("sim");
        let store = PgStore::connect(&url).await.expect("store");
        let services = services();
        let vm = |id: u32| {
            services
                .iter()
                .find(|s| s.vmid().get() == id)
                .expect("vm")
                .clone()
        };
        let (web, db) = (vm(100), vm(101));
        let schedule = daily();
        let slot = due_slot(&schedule, OffsetDateTime::now_utc(), UtcOffset::UTC).expect("due");
        let before = backups(&sim, &services);
        let dir = test_dir("sigterm");

        // 1. Enough grace: the round is finished, the backup made, the lease completed.
        store.put(web.vmid(), &schedule).await.expect("schedule");
        let key = LeaseKey::backup_slot(web.vmid(), slot);
        let mut a = Worker::spawn("cron-a", &sim, &url, 2, &dir);
        wait_for("cron-a's vzdump", Duration::from_secs(20), || async {
            let l = lease(&store, &key).await?;
            (l.holder.as_str() == "cron-a" && sim.vm_lock(100).as_deref() == Some("backup"))
                .then_some(())
        })
        .await;
        let status = a.terminate(Duration::from_secs(20)).await;
        assert!(status.success(), "{status}");
        let log = a.log_text();
        let lease_field = format!("lease={key} ");
        for line in [
            "stopping: finishing the current round first",
            "round finished",
            "scheduler stopped",
        ] {
            assert_eq!(count(&log, &[line]), 1, "{line}: {log}");
        }
        assert_eq!(count(&log, &["lease completed", &lease_field]), 1, "{log}");
        assert!(lease(&store, &key).await.expect("lease").done);
        assert_eq!(
            sim.backup_volids(100).len(),
            before[&100].len() + 1,
            "the backup was made before the worker stopped"
        );

        // 2. Grace over (1 s) while vzdump runs: the round is stopped and the slot released.
        store.put(db.vmid(), &schedule).await.expect("schedule");
        let key = LeaseKey::backup_slot(db.vmid(), slot);
        let mut b = Worker::spawn_with("cron-b", &sim, &url, 2, &dir, &[("CRON_GRACE_SECS", "1")]);
        wait_for("cron-b's vzdump", Duration::from_secs(20), || async {
            let l = lease(&store, &key).await?;
            (l.holder.as_str() == "cron-b" && sim.vm_lock(101).as_deref() == Some("backup"))
                .then_some(())
        })
        .await;
        let status = b.terminate(Duration::from_secs(10)).await;
        assert!(status.success(), "{status}");
        let log = b.log_text();
        let lease_field = format!("lease={key} ");
        assert_eq!(
            count(&log, &["the round did not finish within the grace time"]),
            1,
            "{log}"
        );
        assert_eq!(count(&log, &["lease released", &lease_field]), 1, "{log}");
        assert!(
            lease(&store, &key).await.is_none(),
            "the slot was given back"
        );
        // The next worker claims it at once (no expiry to wait for), finds the VM locked by
        // the stopped worker's vzdump or its archive made, and makes no second one.
        let c = Worker::spawn("cron-c", &sim, &url, 2, &dir);
        let had = before[&101].len();
        wait_for(
            "the stopped worker's archive",
            Duration::from_secs(20),
            || {
                let n = sim.backup_volids(101).len();
                async move { (n > had).then_some(()) }
            },
        )
        .await;
        let ticks = c.count(&["backup tick"]);
        wait_for("two more rounds", Duration::from_secs(10), || {
            let done = c.count(&["backup tick"]) >= ticks + 2;
            async move { done.then_some(()) }
        })
        .await;
        assert_eq!(sim.backup_volids(101).len(), had + 1, "{}", c.log_text());
        assert_eq!(count(&c.log_text(), &["scheduled backup created"]), 0);
        assert_eq!(count(&c.log_text(), &["lease taken over", &lease_field]), 0);
        drop(c);
        sim.shutdown().await;
    });
}

/// The logging lease store keeps the wrapped store's decisions and knows what this worker
/// holds: on a stop, backup slots are released at once, plan leases left to expire.
#[tokio::test]
async fn logged_leases_track_what_the_worker_holds() {
    use examples::scheduler::LoggedLeases;
    use pve_vps_services::leases::WorkerId;
    use pve_vps_services::stores::MemoryLeaseStore;

    let inner = Arc::new(MemoryLeaseStore::new());
    let a_store = LoggedLeases::new(inner.clone());
    let b_store = LoggedLeases::new(inner.clone());
    let (a, b): (WorkerId, WorkerId) = ("cron-a".parse().unwrap(), "cron-b".parse().unwrap());
    let now = OffsetDateTime::now_utc();
    let ttl = Duration::from_secs(10);
    let slot: LeaseKey = "backup:100:1796428800".parse().unwrap();
    let other: LeaseKey = "backup:101:1796428800".parse().unwrap();
    let plan: LeaseKey = "plan:restore-104-1796459984".parse().unwrap();

    for k in [&slot, &other, &plan] {
        assert!(a_store.acquire(k, &a, now, ttl).await.unwrap());
        // Refused to another worker while valid, as the wrapped store decides.
        assert!(!b_store.acquire(k, &b, now, ttl).await.unwrap());
    }
    assert!(b_store.held().is_empty());
    // Renewing keeps it held; completing and releasing forget it.
    assert!(a_store.acquire(&slot, &a, now, ttl).await.unwrap());
    assert!(a_store.complete(&other, &a).await.unwrap());
    let held: BTreeSet<LeaseKey> = a_store.held().into_iter().collect();
    assert_eq!(held, BTreeSet::from([slot.clone(), plan.clone()]));

    // Stopping: the slot is released (B may claim it at once), the plan lease is not.
    let released = a_store.release_held(&a).await;
    assert_eq!(released, vec![slot.clone()]);
    assert!(a_store.held().is_empty());
    assert!(b_store.acquire(&slot, &b, now, ttl).await.unwrap());
    assert!(!b_store.acquire(&plan, &b, now, ttl).await.unwrap());
    // Once the plan lease expired, B takes it over; A's renewal then fails (lease lost).
    let later = now + pve_vps_services::time::Duration::seconds(11);
    assert!(b_store.acquire(&plan, &b, later, ttl).await.unwrap());
    assert_eq!(inner.lease(&plan).await.unwrap().unwrap().holder, b);
    assert!(!a_store.acquire(&plan, &a, later, ttl).await.unwrap());
    // A completed lease is never granted again.
    assert!(!b_store.acquire(&other, &b, later, ttl).await.unwrap());
}
