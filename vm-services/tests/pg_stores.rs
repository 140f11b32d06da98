//! The PostgreSQL stores against a real server (pg-test): the same conformance suites as the
//! in-memory and SQLite stores, and the schema migrations.

use std::time::Duration;

use pve_vps_services::stores::{PgStore, conformance};

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_conform() {
    let pg = pg_test::PgServer::start();
    within(async {
        let s = PgStore::connect(pg.url()).await.unwrap();
        conformance::schedule_store(&s).await;
        conformance::plan_store(&s).await;
        conformance::lease_store(&s).await;
        conformance::outcome_store(&s).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_race() {
    let pg = pg_test::PgServer::start();
    within(async {
        let url = pg.create_database("migrations");
        // Four stores (four processes starting at once) migrate the same empty database.
        let stores = futures_util::future::join_all((0..4).map(|_| PgStore::connect(&url))).await;
        for s in &stores {
            let s = s.as_ref().expect("connect and migrate");
            assert!(s.is_current().await.unwrap());
        }
        let again = PgStore::connect(&url).await.unwrap();
        assert_eq!(again.schema_version().await.unwrap(), 3);
        // Data written through one store is seen through another.
        use pve_vps_services::stores::ScheduleStore;
        let vmid = pve_vps_services::ids::VmId::new(100).unwrap();
        again
            .put(vmid, &pve_vps_services::backups::WeeklySchedule::default())
            .await
            .unwrap();
        let first = stores[0].as_ref().unwrap();
        assert!(first.get(vmid).await.unwrap().is_some());
        // The password never shows in Debug.
        let dbg = format!("{first:?}");
        assert!(
            dbg.contains("PgStore") && !dbg.contains("password"),
            "{dbg}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_store_error() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = within(PgStore::connect(&format!(
        "postgres://u:hunter2@127.0.0.1:{port}/db"
    )))
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("store failed"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    let err = within(PgStore::connect("not a url at all ::"))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("store failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_stores_keep_clusters_apart_in_one_database() {
    use pve_vps_services::backups::{DaySchedule, WeeklySchedule};
    use pve_vps_services::ids::VmId;
    use pve_vps_services::stores::ScheduleStore;
    let pg = pg_test::PgServer::start();
    within(async {
        let url = pg.create_database("fleet");
        let east = PgStore::connect_scoped(&url, &"east".parse().unwrap())
            .await
            .unwrap();
        let west = PgStore::connect_scoped(&url, &"west-2".parse().unwrap())
            .await
            .unwrap();
        // The same suites pass in a scoped store.
        conformance::plan_store(&west).await;
        conformance::lease_store(&west).await;
        // VM 100 exists in both clusters: two schedules, no collision.
        let vmid = VmId::new(100).unwrap();
        let on = DaySchedule {
            enabled: true,
            time: "03:00".parse().unwrap(),
        };
        east.put(vmid, &WeeklySchedule::new([on; 7])).await.unwrap();
        assert_eq!(west.get(vmid).await.unwrap(), None);
        west.put(vmid, &WeeklySchedule::default()).await.unwrap();
        assert_eq!(
            east.get(vmid).await.unwrap(),
            Some(WeeklySchedule::new([on; 7]))
        );
        assert!(east.is_current().await.unwrap() && west.is_current().await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leases_match_the_in_memory_decision() {
    use pve_vps_services::leases::{LeaseKey, WorkerId, from_unix_millis};
    use pve_vps_services::stores::{LeaseStore, MemoryLeaseStore};
    use rand::{Rng, SeedableRng};
    let pg = pg_test::PgServer::start();
    within(async {
        let sql = PgStore::connect(&pg.create_database("differential"))
            .await
            .unwrap();
        let mem = MemoryLeaseStore::new();
        let keys: Vec<LeaseKey> = (0..3)
            .map(|i| format!("plan:p{i}").parse().unwrap())
            .collect();
        let who: Vec<WorkerId> = (0..3).map(|i| format!("w{i}").parse().unwrap()).collect();
        let t = |s: i64| from_unix_millis(1_775_793_600_000 + s * 1000);
        // A fixed seed: the same 400 operations every run.
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for step in 0..400 {
            let (k, w) = (&keys[rng.random_range(0..3)], &who[rng.random_range(0..3)]);
            let (a, b) = match rng.random_range(0..7) {
                0..=3 => {
                    let at = t(rng.random_range(0..600));
                    let ttl = Duration::from_secs(rng.random_range(1..30));
                    (
                        mem.acquire(k, w, at, ttl).await.unwrap() as usize,
                        sql.acquire(k, w, at, ttl).await.unwrap() as usize,
                    )
                }
                4 => (
                    mem.complete(k, w).await.unwrap() as usize,
                    sql.complete(k, w).await.unwrap() as usize,
                ),
                5 => (
                    mem.release(k, w).await.unwrap() as usize,
                    sql.release(k, w).await.unwrap() as usize,
                ),
                _ => {
                    let before = t(rng.random_range(0..200));
                    (
                        mem.prune(before).await.unwrap(),
                        sql.prune(before).await.unwrap(),
                    )
                }
            };
            assert_eq!(a, b, "step {step}");
            for k in &keys {
                assert_eq!(
                    mem.lease(k).await.unwrap(),
                    sql.lease(k).await.unwrap(),
                    "step {step}"
                );
            }
        }
    })
    .await;
}
