//! The scheduler: two workers running the same round at once (as on two hosts sharing the
//! SQLite store) create one scheduled backup, and a later round creates none.

use std::time::Duration;

use examples::portal::config;
use examples::scheduler::round;
use pve_vps_api::{Auth, Client, Tls};
use pve_vps_services::ClientArea;
use pve_vps_services::backups::{DaySchedule, WeeklySchedule};
use pve_vps_services::product::Catalog;
use pve_vps_services::stores::{ScheduleStore, SqliteStore};
use pve_vps_sim::{PveSim, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_make_one_scheduled_backup() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("the scheduler test took longer than 60 s");
}

async fn run() {
    let sim = PveSim::start(SimConfig::for_tests()).await.expect("sim");
    let token = sim.token().expect("token");
    let catalog = Catalog::from_toml_str(config::DEFAULT_PRODUCTS).expect("products");
    let services: Vec<_> = config::parse_customers(config::DEFAULT_CUSTOMERS)
        .expect("customers")
        .into_iter()
        .flat_map(|c| c.services)
        .collect();
    let web = services
        .iter()
        .find(|s| s.vmid().get() == 100)
        .expect("vm 100");

    let db = std::env::temp_dir().join(format!("cron-test-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    // The customer scheduled every day at 00:00, so the backup is due whenever this runs.
    let daily = DaySchedule {
        enabled: true,
        time: "00:00".parse().expect("time"),
    };
    SqliteStore::open(&db)
        .expect("store")
        .put(web.vmid(), &WeeklySchedule::new([daily; 7]))
        .await
        .expect("schedule saved");

    let worker = || {
        let client = Client::builder(sim.https_url())
            .auth(
                Auth::api_token(
                    &format!("{}!{}", token.userid, token.tokenid),
                    token.secret.clone(),
                )
                .expect("token"),
            )
            .tls(Tls::Pinned(sim.fingerprint().parse().expect("fingerprint")))
            .build()
            .expect("client");
        ClientArea::builder(client, catalog.clone())
            .sqlite_file(&db)
            .build()
            .expect("client area")
    };
    let (a, b) = (worker(), worker());
    let before = sim.backup_volids(100).len();
    let (ra, rb) = tokio::join!(round(&a, &services), round(&b, &services));
    let created = ra.backups_created + rb.backups_created;
    assert_eq!(sim.backup_volids(100).len(), before + 1, "{ra:?} {rb:?}");
    assert_eq!(
        created, 1,
        "one worker created it, the other saw it: {ra:?} {rb:?}"
    );

    let again = round(&a, &services).await;
    assert_eq!(again.backups_created, 0, "{again:?}");
    assert_eq!(sim.backup_volids(100).len(), before + 1);

    sim.shutdown().await;
    let _ = std::fs::remove_file(&db);
}
