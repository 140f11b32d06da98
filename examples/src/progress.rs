//! Following a PVE task in a plain terminal (no TTY needed, one line per update): every new
//! log line with the elapsed time and the last percentage the log printed, a heartbeat line
//! while the log is quiet, then how the task ended.
//!
//! ```text
//! [   0.6s]    - backup | INFO: starting new backup job: vzdump 100 --storage local
//! [   2.1s]  25% backup | INFO:  25% (8.0 GiB of 32.0 GiB)
//! [   7.1s]  25% backup | still running
//! [   9.4s] 100% backup | finished: OK
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pve_vps_api::{TaskHandle, TaskOutcome};

/// How [`follow`] prints.
#[derive(Debug, Clone)]
pub struct Follow {
    /// A short name of the task for every line (`backup`, `snapshot`).
    pub label: String,
    /// A "still running" line after this long without a new log line (default 5 s).
    pub heartbeat: Duration,
}

impl Follow {
    /// Lines labelled `label`, a heartbeat every 5 s of silence.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            heartbeat: Duration::from_secs(5),
        }
    }
}

/// One progress line: elapsed seconds, the percentage (or `-`), the label and the text.
pub fn line(elapsed: Duration, percent: Option<f32>, label: &str, text: &str) -> String {
    let pct = percent.map_or_else(|| "   -".to_owned(), |p| format!("{p:>3.0}%"));
    format!("[{:>6.1}s] {pct} {label} | {text}", elapsed.as_secs_f64())
}

/// Follows `task` to its end, writing progress lines to `out`, and returns its outcome (a
/// failed task is [`pve_vps_api::Error::TaskFailed`], after its last log lines were printed).
pub async fn follow(
    task: &TaskHandle,
    how: &Follow,
    out: &mut impl Write,
) -> pve_vps_api::Result<TaskOutcome> {
    let started = Instant::now();
    let mut percent: Option<f32> = None;
    let mut lines = std::pin::pin!(task.log_stream());
    let mut quiet_since = Instant::now();
    loop {
        let next = tokio::time::timeout_at(
            tokio::time::Instant::from_std(quiet_since + how.heartbeat),
            lines.next(),
        )
        .await;
        match next {
            Ok(Some(Ok(l))) => {
                if let Some(p) = pve_vps_services::tasks::percent_in(&l.t) {
                    percent = Some(p);
                }
                let _ = writeln!(
                    out,
                    "{}",
                    line(started.elapsed(), percent, &how.label, &l.t)
                );
                quiet_since = Instant::now();
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => break,
            Err(_) => {
                let _ = writeln!(
                    out,
                    "{}",
                    line(started.elapsed(), percent, &how.label, "still running")
                );
                quiet_since = Instant::now();
            }
        }
        let _ = out.flush();
    }
    // The log is complete; one more status request says how it ended.
    let r = task.wait().await;
    let end = match &r {
        Ok(o) => format!("finished: {}", o.exit_status),
        Err(e) => format!("failed: {e}"),
    };
    if r.is_ok() && percent.is_some() {
        percent = Some(100.0);
    }
    let _ = writeln!(
        out,
        "{}",
        line(started.elapsed(), percent, &how.label, &end)
    );
    let _ = out.flush();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_plain_and_aligned() {
        assert_eq!(
            line(
                Duration::from_millis(2100),
                Some(25.0),
                "backup",
                "INFO:  25%"
            ),
            "[   2.1s]  25% backup | INFO:  25%"
        );
        assert_eq!(
            line(Duration::from_secs(125), None, "snapshot", "x"),
            "[ 125.0s]    - snapshot | x"
        );
    }
}
