//! The command-line examples' task progress against `pve-sim`: every log line with the elapsed
//! time and vzdump's percentage, heartbeat lines while the log is quiet, and how it ended.

use std::time::Duration;

use examples::progress::{Follow, follow};
use pve_vps_api::api::backup::VzdumpRequest;
use pve_vps_api::{NodeName, StorageId, VmId};
use pve_vps_sim::{PveSim, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_shows_percentages_elapsed_time_and_its_end() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = PveSim::start(
            SimConfig::for_tests()
                .task_durations(Duration::from_millis(50), Duration::from_secs(3)),
        )
        .await
        .expect("sim");
        let client = examples::sim_client(&sim).expect("client");
        let node: NodeName = "pve1".parse().expect("node");
        let storage: StorageId = "local".parse().expect("storage");
        let req = VzdumpRequest::new(VmId::new(100).expect("vmid")).storage(storage);
        let task = client
            .node(&node)
            .vzdump(&req)
            .await
            .expect("vzdump starts")
            .poll_interval(Duration::from_millis(100));
        let mut out = Vec::new();
        let how = Follow {
            label: "backup".into(),
            heartbeat: Duration::from_millis(300),
        };
        let done = follow(&task, &how, &mut out)
            .await
            .expect("the backup succeeds");
        assert_eq!(done.exit_status, "OK");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        // Every line: elapsed time, percentage column, label.
        for l in &lines {
            assert!(
                l.starts_with('[') && l.contains("s] ") && l.contains(" backup | "),
                "{l}"
            );
        }
        // vzdump's percentages as they were printed, in order, while the task ran.
        let pcts: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains("INFO: ") && l.contains("% ("))
            .map(|l| l[10..14].trim())
            .collect();
        assert_eq!(pcts, ["10%", "25%", "50%", "75%", "100%"], "{text}");
        // The log arrived as it grew (not all at the end): the 10% line came well before the end.
        let secs = |l: &str| l[1..7].trim().parse::<f64>().expect("seconds");
        let first = lines
            .iter()
            .find(|l| l.contains("INFO:  10%"))
            .expect("10%");
        let last = lines.last().expect("end line");
        assert!(secs(last) - secs(first) > 1.0, "{text}");
        assert!(
            text.contains("still running"),
            "heartbeats while quiet: {text}"
        );
        assert!(last.ends_with("| finished: OK"), "{text}");
        sim.shutdown().await;
    })
    .await
    .expect("took longer than 60 s");
}
