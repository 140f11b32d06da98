//! Several clusters (three pve-sim instances): every operation goes to the service's own
//! cluster; a stopped or faulted cluster shows its services as unavailable with the reason
//! while the others keep working.

mod common;

use std::time::Duration;

use pve_vps_services::ids::ClusterName;
use pve_vps_services::service::Service;
use pve_vps_services::{ClientArea, Fleet, ServiceStatus};
use pve_vps_sim::{PveSim, RequestMatch, SimConfig};

fn in_cluster(mut s: Service, cluster: &str) -> Service {
    s.cluster = cluster.parse().unwrap();
    s
}

fn area(sim: &PveSim, cluster: &str) -> ClientArea {
    ClientArea::builder(common::client(sim), common::catalog())
        .cluster(cluster.parse().unwrap())
        .task_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn an_offline_or_faulted_cluster_is_unavailable_while_the_others_work() {
    common::run(120, async {
        let east = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let west = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let north = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let fleet = Fleet::new(
            [
                area(&east, "east"),
                area(&west, "west"),
                area(&north, "north"),
            ],
            Duration::from_millis(100),
        )
        .unwrap()
        .with_timeout(Duration::from_secs(2));
        let names: Vec<&str> = fleet.clusters().map(ClusterName::as_str).collect();
        assert_eq!(names, ["east", "north", "west"]);
        let e104 = in_cluster(common::svc104(), "east");
        let w100 = in_cluster(common::svc100(), "west");
        let n101 = in_cluster(common::svc101(), "north");
        let s999 = in_cluster(common::svc100(), "south");
        let services = vec![e104.clone(), w100.clone(), n101.clone(), s999.clone()];

        // All up: every configured cluster's service is available.
        let all = fleet.overviews(&services).await;
        for (s, status) in &all[..3] {
            assert!(
                matches!(status, ServiceStatus::Available(_)),
                "{s:?}: {status:?}"
            );
        }
        assert!(
            matches!(&all[3].1, ServiceStatus::Unavailable { reason, .. } if reason.contains("`south` is not configured")),
            "{:?}",
            all[3]
        );

        // West goes away (connection refused), north answers every listing with HTTP 500.
        west.shutdown().await;
        north.fail_requests(RequestMatch::path("/cluster/resources"), 500, 10_000);
        let now = fleet.overviews(&services).await;
        assert!(
            matches!(&now[0].1, ServiceStatus::Available(o) if o.cores > 0),
            "{:?}",
            now[0]
        );
        for (s, status) in &now[1..3] {
            match status {
                ServiceStatus::Unavailable { cluster, reason } => {
                    assert_eq!(cluster, &s.cluster);
                    assert!(!reason.is_empty());
                }
                other => panic!("{s:?} should be unavailable: {other:?}"),
            }
        }

        // The working cluster keeps working: a power action goes to east only.
        let east_area = fleet.area(&e104).unwrap();
        let t = east_area.reboot(&e104, Some(10)).await.unwrap();
        assert_eq!(east_area.wait_task(&e104, &t).await.unwrap().ok, Some(true));
        // West's actions fail as upstream errors ("Something went wrong"), not panics.
        let err = fleet.area(&w100).unwrap().stop(&w100).await.unwrap_err();
        assert!(err.is_upstream(), "{err}");
        // A service of an unknown cluster is refused before any request.
        let err = fleet.area(&s999).unwrap_err();
        assert_eq!(err.to_string(), "cluster `south` is not configured");

        // A client area never serves another cluster's service (no request is sent).
        let before = east.request_count();
        let err = east_area.stop(&n101).await.unwrap_err();
        assert!(
            err.to_string().contains("cluster `north`") && err.to_string().contains("`east`"),
            "{err}"
        );
        assert_eq!(east.request_count(), before);

        // North becomes slow instead: past the fleet timeout it is unavailable, east is not.
        north.clear_faults();
        north.set_latency(Duration::from_secs(5));
        let slow = fleet.overviews(&services).await;
        assert!(
            matches!(&slow[0].1, ServiceStatus::Available(_)),
            "{:?}",
            slow[0]
        );
        assert!(
            matches!(&slow[2].1, ServiceStatus::Unavailable { reason, .. } if reason.contains("did not answer within 2 s")),
            "{:?}",
            slow[2]
        );
        // Back to normal: available again.
        north.set_latency(Duration::ZERO);
        let back = fleet.overviews(&services).await;
        assert!(
            matches!(&back[2].1, ServiceStatus::Available(_)),
            "{:?}",
            back[2]
        );

        // The scheduler's fleet-wide tick: each cluster's result on its own.
        let ticks = fleet.backup_tick(&services).await;
        assert!(ticks[&"east".parse().unwrap()].is_ok());
        assert!(ticks[&"north".parse().unwrap()].is_ok());
        assert!(ticks[&"south".parse().unwrap()].is_err());
        east.shutdown().await;
        north.shutdown().await;
    });
}

#[test]
fn two_areas_for_one_cluster_are_refused_and_defaults_keep_working() {
    common::run(60, async {
        let sim = PveSim::start(SimConfig::for_tests()).await.unwrap();
        let err = Fleet::new(
            [area(&sim, "east"), area(&sim, "east")],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        // Services that name no cluster are in `default`, served by a default client area.
        let default_area = ClientArea::builder(common::client(&sim), common::catalog())
            .build()
            .unwrap();
        let fleet = Fleet::new([default_area], Duration::from_secs(1)).unwrap();
        let s = common::svc104();
        assert!(s.cluster.is_default());
        let o = fleet.overviews(std::slice::from_ref(&s)).await;
        assert!(matches!(&o[0].1, ServiceStatus::Available(_)), "{o:?}");
        sim.shutdown().await;
    });
}
