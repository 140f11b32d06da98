//! The `cron` binary serving several clusters (a clusters file, one pve-sim per cluster, one
//! PostgreSQL database from pg-test with one schema per cluster):
//!
//! * two workers, four clusters with the same VMIDs, one of them failing (every request
//!   answered 503 by pve-sim's fault injection) and one off (its simulator stopped: connection
//!   refused): every due backup of the healthy clusters is made exactly once, the failing and
//!   the stopped cluster's services are skipped with the reason logged, counted per cluster in
//!   the metrics, and nothing panics; once the fault is cleared the next rounds make the
//!   failing cluster's backups, once each;
//! * a bad configuration (a service naming a cluster that is not configured, a bad
//!   fingerprint, a cluster configured twice, an unknown field, ...) stops the binary at start
//!   with a message naming the setting, and changes nothing: no request to the cluster, no
//!   store file created.
//!
//! Every process is killed by its own PID when its guard drops, and each test runs under a
//! timeout.

mod common;

use common::{count, run, test_dir, wait_for};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use examples::portal::config;
use pve_vps_services::backups::{DaySchedule, WeeklySchedule, due_slot};
use pve_vps_services::ids::ClusterName;
use pve_vps_services::leases::LeaseKey;
use pve_vps_services::service::Service;
use pve_vps_services::stores::{LeaseStore, PgStore, ScheduleStore};
use pve_vps_services::time::{OffsetDateTime, UtcOffset};
use pve_vps_sim::{PveSim, RequestMatch, SimConfig};

/// One `cron` process; killed (SIGKILL to its PID) and reaped when dropped.
struct Worker {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn spawn(name: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cron"))
            .args(args)
            // Nothing from the caller's environment (PVE_*, PORTAL_*, CRON_*) leaks in.
            .env_clear()
            .env("CRON_WORKER", name)
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

    fn count(&self, needles: &[&str]) -> usize {
        count(&self.log_text(), needles)
    }

    /// SIGTERM to this PID; the exit status once it stopped.
    async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
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
            assert!(Instant::now() < end, "{} did not stop", self.name);
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
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}

fn daily() -> WeeklySchedule {
    WeeklySchedule::new(
        [DaySchedule {
            enabled: true,
            time: "00:00".parse().expect("time"),
        }; 7],
    )
}

/// The demo customers, once per cluster: each service bound to `cluster` (usernames made
/// distinct), all in one customers file.
fn customers_file(clusters: &[&str]) -> String {
    let mut text = String::new();
    for c in clusters {
        text.push_str(
            &config::DEFAULT_CUSTOMERS
                .replace(
                    "[[customers.services]]",
                    &format!("[[customers.services]]\ncluster = \"{c}\""),
                )
                .replace("username = \"alice\"", &format!("username = \"alice-{c}\""))
                .replace("username = \"bob\"", &format!("username = \"bob-{c}\"")),
        );
        text.push('\n');
    }
    text
}

/// `[clusters.<name>]` for `sim`, its secret inline or (`secret_env`) in that variable.
fn cluster_table(name: &str, sim: &PveSim, secret_env: Option<&str>) -> String {
    let token = sim.token().expect("the simulator's token");
    let secret = match secret_env {
        Some(var) => format!("token_secret_env = \"{var}\""),
        None => format!("token_secret = \"{}\"", token.secret),
    };
    format!(
        "[clusters.{name}]\nurl = \"{}\"\ntoken_id = \"{}!{}\"\n{secret}\nfingerprint = \"{}\"\n\n",
        sim.https_url(),
        token.userid,
        token.tokenid,
        sim.fingerprint()
    )
}

/// The archives of each VM of `vmids` in `sim`.
fn archives(sim: &PveSim, vmids: &[u32]) -> BTreeMap<u32, Vec<String>> {
    vmids.iter().map(|v| (*v, sim.backup_volids(*v))).collect()
}

/// The value of the metric line starting with `prefix` (`name{labels}`), 0 when absent.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_offline_cluster_is_skipped_while_the_others_make_their_backups_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = pg_test::PgServer::start();
    let url = pg.create_database("cron_clusters");
    run(180, async move {
        let names = ["east", "west", "north"];
        let mut sims = BTreeMap::new();
        for n in names {
            sims.insert(n, PveSim::start(SimConfig::for_tests()).await.expect("sim"));
        }
        // North is failing: every request to it is answered 503 until the fault is cleared.
        sims["north"].fail_requests(RequestMatch::any(), 503, u32::MAX);
        // South is off: its simulator is stopped, its port refuses connections.
        let south = PveSim::start(SimConfig::for_tests()).await.expect("sim");
        let south_table = cluster_table("south", &south, None);
        south.shutdown().await;
        let dir = test_dir("offline");
        let clusters_file = dir.join("clusters.toml");
        std::fs::write(
            &clusters_file,
            format!(
                "{}{}{}{south_table}",
                cluster_table("east", &sims["east"], None),
                cluster_table("west", &sims["west"], Some("WEST_TOKEN_SECRET")),
                cluster_table("north", &sims["north"], None)
            ),
        )
        .expect("clusters file");
        let customers = dir.join("customers.toml");
        let all = ["east", "west", "north", "south"];
        std::fs::write(&customers, customers_file(&all)).expect("customers file");
        let services: Vec<Service> = config::parse_customers(&customers_file(&all))
            .expect("customers")
            .into_iter()
            .flat_map(|c| c.services)
            .collect();
        let vmids: Vec<u32> = {
            let mut v: Vec<u32> = services.iter().map(|s| s.vmid().get()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        assert_eq!(services.len(), 16, "four services in each of four clusters");

        // The same VMIDs in every cluster, each cluster's schedules in its own schema.
        let schedule = daily();
        let mut stores = BTreeMap::new();
        for n in all {
            let cluster: ClusterName = n.parse().expect("cluster name");
            let store = PgStore::connect_scoped(&url, &cluster)
                .await
                .expect("store");
            for v in &vmids {
                store
                    .put(v.to_string().parse().expect("vmid"), &schedule)
                    .await
                    .expect("schedule");
            }
            stores.insert(n, store);
        }
        let slot = due_slot(&schedule, OffsetDateTime::now_utc(), UtcOffset::UTC)
            .expect("due at 00:00 every day");
        let before: BTreeMap<&str, BTreeMap<u32, Vec<String>>> = names
            .iter()
            .map(|n| (*n, archives(&sims[n], &vmids)))
            .collect();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let west_secret = sims["west"].token().expect("token").secret.clone();
        let env = |extra: &'static [(&'static str, &'static str)]| {
            let mut e = vec![
                ("CRON_STORE", url.clone()),
                ("PORTAL_CUSTOMERS", customers.display().to_string()),
                ("CRON_CLUSTERS", clusters_file.display().to_string()),
                ("WEST_TOKEN_SECRET", west_secret.clone()),
                ("CRON_INTERVAL_SECS", "1".to_owned()),
                ("CRON_LEASE_SECS", "3".to_owned()),
                // Sweep every round, as the problem counts below expect.
                ("CRON_SWEEP_SECS", "0".to_owned()),
            ];
            e.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            e
        };
        let spawn = |name: &str, args: &[&str]| {
            let e = env(&[]);
            let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Worker::spawn(name, &dir, args, &e)
        };
        let metrics_addr = format!("127.0.0.1:{port}");
        let mut workers = [
            spawn("cron-a", &["--metrics-addr", &metrics_addr]),
            spawn("cron-b", &[]),
        ];

        let done = |cluster: &'static str| {
            let store = &stores[cluster];
            let vmids = &vmids;
            async move {
                for v in vmids {
                    let key = LeaseKey::backup_slot(v.to_string().parse().expect("vmid"), slot);
                    match store.lease(&key).await.expect("lease read") {
                        Some(l) if l.done => {}
                        _ => return None,
                    }
                }
                Some(())
            }
        };
        wait_for("east's slots done", Duration::from_secs(60), || {
            done("east")
        })
        .await;
        wait_for("west's slots done", Duration::from_secs(30), || {
            done("west")
        })
        .await;
        // Three more rounds of both workers in which north was tried and failed.
        let north_rounds = |w: &Worker| w.count(&["cluster round had problems", "cluster=north"]);
        let metrics_url = format!("http://{metrics_addr}/metrics");
        let problems = || async {
            let text = reqwest::get(&metrics_url)
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            let of = |c: &str| {
                metric(
                    &text,
                    &format!("scheduler_cluster_problems_total{{cluster=\"{c}\"}}"),
                )
                .unwrap_or_else(|| panic!("{c} has a problems counter: {text}"))
            };
            let counts: BTreeMap<&str, f64> = ["east", "west", "north", "south"]
                .into_iter()
                .map(|c| (c, of(c)))
                .collect();
            (counts, text)
        };
        // Two whole rounds of cron-a after the slots were served first (the first rounds'
        // sweeps may meet a VM the other worker's sweep holds locked).
        let settled = north_rounds(&workers[0]) + 2;
        wait_for("two settled rounds", Duration::from_secs(40), || {
            let ok = north_rounds(&workers[0]) >= settled;
            async move { ok.then_some(()) }
        })
        .await;
        let (problems_before, _) = problems().await;
        let east_rounds = |w: &Worker| w.count(&["cluster round done", "cluster=east"]);
        let seen: Vec<usize> = workers.iter().map(north_rounds).collect();
        let east_seen: Vec<usize> = workers.iter().map(east_rounds).collect();
        // South (connection refused) runs its rounds on its own pace too: the skips counted
        // below need five of its rounds on each worker.
        let south_rounds = |w: &Worker| w.count(&["cluster round had problems", "cluster=south"]);
        wait_for("three more rounds each", Duration::from_secs(40), || {
            let ok = workers
                .iter()
                .zip(&seen)
                .all(|(w, s)| north_rounds(w) >= s + 3 && south_rounds(w) >= 5);
            async move { ok.then_some(()) }
        })
        .await;
        // Each cluster runs its rounds on its own: north's, slowed by the client's retries
        // of the 503s (seconds each), do not hold up east's, one a second.
        for (i, w) in workers.iter().enumerate() {
            let (north, east) = (north_rounds(w) - seen[i], east_rounds(w) - east_seen[i]);
            assert!(
                east >= 2 * north,
                "{}: {east} east rounds while north made {north}",
                w.name
            );
            eprintln!("{}: {east} east rounds while north made {north}", w.name);
        }

        let today = {
            let d = OffsetDateTime::now_utc().date();
            format!("{:04}_{:02}_{:02}", d.year(), u8::from(d.month()), d.day())
        };
        let new_archives = |n: &str| -> BTreeMap<u32, Vec<String>> {
            archives(&sims[n], &vmids)
                .into_iter()
                .map(|(v, after)| {
                    let new = after
                        .into_iter()
                        .filter(|a| !before[n][&v].contains(a))
                        .collect();
                    (v, new)
                })
                .collect()
        };
        for n in ["east", "west"] {
            for (v, new) in new_archives(n) {
                assert_eq!(
                    new.len(),
                    1,
                    "{n}: vm {v}: exactly one new archive: {new:?}"
                );
                assert!(
                    new[0].contains(&format!("vzdump-qemu-{v}-{today}")),
                    "{n}: {new:?}"
                );
            }
        }
        for (v, new) in new_archives("north") {
            assert!(new.is_empty(), "north is down: vm {v} got {new:?}");
        }
        let logs: Vec<String> = workers.iter().map(Worker::log_text).collect();
        // The healthy clusters' backups were made once in all, between both workers.
        for n in ["east", "west"] {
            let cluster = format!("cluster={n}");
            for s in services.iter().filter(|s| s.cluster.as_str() == n) {
                let vm = format!("vm={} ", s.vm);
                let made: usize = logs
                    .iter()
                    .map(|t| count(t, &["scheduled backup created", &cluster, &vm]))
                    .sum();
                assert_eq!(made, 1, "{n} {vm}: created once");
            }
        }
        // North's and south's services were skipped, each with the reason, by both workers.
        for (w, text) in workers.iter().zip(&logs) {
            for (cluster, reason) in [("north", "503"), ("south", "connect")] {
                let at = format!("cluster={cluster}");
                for s in services.iter().filter(|s| s.cluster.as_str() == cluster) {
                    let vm = format!("vm={} ", s.vm);
                    assert!(
                        count(text, &["service skipped", &at, &vm, reason]) >= 5,
                        "{}: {cluster} {vm} skipped with the reason `{reason}`",
                        w.name
                    );
                }
                assert_eq!(count(text, &["scheduled backup created", &at]), 0);
            }
            assert_eq!(count(text, &["service skipped", "cluster=east"]), 0);
            assert_eq!(count(text, &["service skipped", "cluster=west"]), 0);
            assert_eq!(count(text, &["panicked"]), 0, "{}", w.name);
        }
        for w in &mut workers {
            assert!(
                w.child.try_wait().expect("try_wait").is_none(),
                "{} still runs",
                w.name
            );
        }
        // Counted per cluster in the metrics of cron-a: north and south one problem per
        // phase and service they could not serve (the failed backup tick of each of the three
        // rounds, and each sweep that reached the cluster; a sweep that found the VM held by
        // the other worker left it to that worker and is not a problem), the others none in
        // these rounds, although both workers share their VMs.
        let (problems_after, text) = problems().await;
        for c in ["north", "south"] {
            assert!(
                problems_after[c] - problems_before[c] >= 3.0,
                "{c}: {problems_before:?} {problems_after:?}"
            );
        }
        for c in ["east", "west"] {
            assert_eq!(
                problems_after[c], problems_before[c],
                "{c}: {problems_before:?} {problems_after:?}"
            );
        }
        for n in names {
            assert!(
                text.contains(&format!(
                    "scheduler_cluster_tick_duration_seconds_count{{cluster=\"{n}\",phase=\"backup\"}}"
                )),
                "{n}: {text}"
            );
        }
        assert!(
            text.contains(
                "scheduler_cluster_tick_duration_seconds_count{cluster=\"south\",phase=\"backup\"}"
            ),
            "{text}"
        );

        // North comes back: the next rounds make its backups, once each.
        sims["north"].clear_faults();
        wait_for("north's slots done", Duration::from_secs(60), || {
            done("north")
        })
        .await;
        let after: Vec<usize> = workers
            .iter()
            .map(|w| w.count(&["cluster round done", "cluster=north"]))
            .collect();
        wait_for(
            "two healthy north rounds each",
            Duration::from_secs(30),
            || {
                let ok = workers
                    .iter()
                    .zip(&after)
                    .all(|(w, a)| w.count(&["cluster round done", "cluster=north"]) >= a + 2);
                async move { ok.then_some(()) }
            },
        )
        .await;
        for n in names {
            for (v, new) in new_archives(n) {
                assert_eq!(
                    new.len(),
                    1,
                    "{n}: vm {v}: exactly one new archive: {new:?}"
                );
            }
        }
        let logs: Vec<String> = workers.iter().map(Worker::log_text).collect();
        for s in services.iter().filter(|s| s.cluster.as_str() == "north") {
            let vm = format!("vm={} ", s.vm);
            let made: usize = logs
                .iter()
                .map(|t| count(t, &["scheduled backup created", "cluster=north", &vm]))
                .sum();
            assert_eq!(made, 1, "north {vm}: created once after the fault cleared");
        }
        // South is still off: nothing made there, its slots still open for when it is back.
        for t in &logs {
            assert_eq!(count(t, &["scheduled backup created", "cluster=south"]), 0);
        }
        assert!(done("south").await.is_none(), "south's slots are not done");

        for w in &mut workers {
            let status = w.terminate(Duration::from_secs(25)).await;
            assert!(status.success(), "{}: {status}", w.name);
            assert_eq!(w.count(&["scheduler stopped"]), 1);
        }
        for (_, s) in sims {
            s.shutdown().await;
        }
    });
}

/// A configuration the binary must refuse at start, and what its message must contain.
struct BadCase {
    what: &'static str,
    clusters: String,
    customers: String,
    env: Vec<(&'static str, String)>,
    expect: &'static [&'static str],
}

#[test]
fn a_bad_cluster_configuration_is_refused_at_start_naming_the_setting_and_changes_nothing() {
    run(120, async {
        let sim = PveSim::start(SimConfig::for_tests()).await.expect("sim");
        let token = sim.token().expect("token");
        let east = cluster_table("east", &sim, None);
        let west = cluster_table("west", &sim, None);
        let both = customers_file(&["east", "west"]);
        let pve_env = vec![
            ("PVE_URL", sim.https_url()),
            (
                "PVE_TOKEN_ID",
                format!("{}!{}", token.userid, token.tokenid),
            ),
            ("PVE_TOKEN_SECRET", token.secret.clone()),
            ("PVE_FINGERPRINT", sim.fingerprint().to_owned()),
        ];
        let cases = vec![
            BadCase {
                what: "a service names a cluster that is not configured",
                clusters: format!("{east}{west}"),
                customers: customers_file(&["east", "south"]),
                env: vec![],
                expect: &[
                    "customers.alice-south.services[0].cluster: `south`",
                    "not a configured cluster (configured: east, west)",
                ],
            },
            BadCase {
                what: "services name no cluster and `default` is not configured",
                clusters: format!("{east}{west}"),
                customers: config::DEFAULT_CUSTOMERS.to_owned(),
                env: vec![],
                expect: &[
                    "customers.alice.services[0].cluster: `default` (the service names none)",
                ],
            },
            BadCase {
                what: "a bad url",
                clusters: format!(
                    "{east}{}",
                    west.replace("url = \"https://", "url = \"ftp://")
                ),
                customers: both.clone(),
                env: vec![],
                expect: &["clusters.west.url: invalid client configuration: bad host `ftp://"],
            },
            BadCase {
                what: "a bad fingerprint",
                clusters: format!("{east}{}", west.replace(sim.fingerprint(), "AB:CD:not-hex")),
                customers: both.clone(),
                env: vec![],
                expect: &["clusters.west.fingerprint: invalid fingerprint `AB:CD:not-hex`"],
            },
            BadCase {
                what: "a token id without `!`",
                clusters: format!("{east}{}", west.replace(&format!("!{}", token.tokenid), "")),
                customers: both.clone(),
                env: vec![],
                expect: &["clusters.west.token_id"],
            },
            BadCase {
                what: "a cluster twice in the file",
                clusters: format!("{east}{west}{east}"),
                customers: both.clone(),
                env: vec![],
                expect: &["duplicate key", "east"],
            },
            BadCase {
                what: "`default` in the file and by PVE_URL",
                clusters: format!("{east}{}", cluster_table("default", &sim, None)),
                customers: both.clone(),
                env: pve_env.clone(),
                expect: &["clusters.default: configured twice", "PVE_URL"],
            },
            BadCase {
                what: "two names for one store",
                clusters: format!(
                    "{}{}",
                    cluster_table("east-1", &sim, None),
                    cluster_table("east_1", &sim, None)
                ),
                customers: customers_file(&["east-1"]),
                env: vec![],
                expect: &["clusters.east_1: shares its store with clusters.east-1"],
            },
            BadCase {
                what: "a bad cluster name",
                clusters: format!("{east}{}", cluster_table("West", &sim, None)),
                customers: both.clone(),
                env: vec![],
                expect: &["clusters.West: invalid cluster name `West`"],
            },
            BadCase {
                what: "an unknown field",
                clusters: format!("{east}{}", west.replace("fingerprint =", "fingerprnt =")),
                customers: both.clone(),
                env: vec![],
                expect: &["unknown field `fingerprnt`"],
            },
            BadCase {
                what: "a secret variable that is not set",
                clusters: format!(
                    "{east}{}",
                    west.replace(
                        &format!("token_secret = \"{}\"", token.secret),
                        "token_secret_env = \"WEST_SECRET\""
                    )
                ),
                customers: both.clone(),
                env: vec![],
                expect: &["clusters.west.token_secret_env: the variable `WEST_SECRET` is not set"],
            },
        ];
        for case in cases {
            let dir = test_dir("bad");
            let clusters = dir.join("clusters.toml");
            std::fs::write(&clusters, &case.clusters).expect("clusters file");
            let customers = dir.join("customers.toml");
            std::fs::write(&customers, &case.customers).expect("customers file");
            let store_dir = dir.join("store");
            std::fs::create_dir_all(&store_dir).expect("store dir");
            let store = store_dir.join("cron.sqlite");
            let requests = sim.request_count();
            let mut env = vec![
                ("CRON_STORE", store.display().to_string()),
                ("PORTAL_CUSTOMERS", customers.display().to_string()),
            ];
            env.extend(case.env.iter().cloned());
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let clusters_arg = clusters.display().to_string();
            let mut w = Worker::spawn("cron-bad", &dir, &["--clusters", &clusters_arg], &env);
            let end = Instant::now() + Duration::from_secs(20);
            let status = loop {
                if let Some(s) = w.child.try_wait().expect("try_wait") {
                    break s;
                }
                assert!(Instant::now() < end, "{}: still running", case.what);
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let text = w.log_text();
            assert_eq!(status.code(), Some(2), "{}: {status}\n{text}", case.what);
            for e in case.expect {
                assert!(text.contains(e), "{}: `{e}` in:\n{text}", case.what);
            }
            assert!(
                text.contains("configuration refused, nothing started"),
                "{text}"
            );
            assert!(!text.contains("panicked"), "{}: {text}", case.what);
            // No secret in the message.
            assert!(!text.contains(&token.secret), "{}: {text}", case.what);
            // Nothing changed: no store created, not one request to the cluster.
            let files: Vec<_> = std::fs::read_dir(&store_dir)
                .expect("store dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert!(files.is_empty(), "{}: {files:?}", case.what);
            assert_eq!(sim.request_count(), requests, "{}", case.what);
            let said = text
                .lines()
                .find(|l| l.contains("configuration refused"))
                .unwrap_or_default();
            eprintln!("refused as expected: {}: {said}", case.what);
        }

        // The same files, corrected, are accepted (the refusals were not for something else):
        // one round against both clusters, every store file created.
        let dir = test_dir("good");
        let clusters = dir.join("clusters.toml");
        std::fs::write(&clusters, format!("{east}{west}")).expect("clusters file");
        let customers = dir.join("customers.toml");
        std::fs::write(&customers, &both).expect("customers file");
        let store = dir.join("cron.sqlite");
        let env = [
            ("CRON_STORE", store.display().to_string()),
            ("PORTAL_CUSTOMERS", customers.display().to_string()),
            ("CRON_CLUSTERS", clusters.display().to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut w = Worker::spawn("cron-good", &dir, &["--once"], &env);
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = w.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(Instant::now() < end, "--once did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let text = w.log_text();
        assert!(status.success(), "{status}\n{text}");
        assert!(text.contains("clusters=east,west"), "{text}");
        // (Both names lead to the same simulator here, so their sweeps may meet.)
        assert_eq!(
            count(&text, &["cluster round", "cluster=east"]),
            1,
            "{text}"
        );
        assert_eq!(
            count(&text, &["cluster round", "cluster=west"]),
            1,
            "{text}"
        );
        assert!(dir.join("cron-east.sqlite").exists());
        assert!(dir.join("cron-west.sqlite").exists());
        assert!(
            !store.exists(),
            "no `default` cluster, so no file of its own"
        );
        sim.shutdown().await;
    });
}
