//! Long-running PVE tasks: status polling, logs and waiting with progress.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::macros::lenient_enum;
use crate::request::{self, Request};
use crate::types::Upid;
use std::time::{Duration, Instant};

lenient_enum! {
    /// Whether a task is still running.
    pub enum TaskState {
        /// Still running.
        Running => "running",
        /// Finished (see the exit status).
        Stopped => "stopped",
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, serde::Deserialize)]
#[non_exhaustive]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: TaskState,
    /// `OK`, `WARNINGS: N` or an error text, once stopped.
    #[serde(default)]
    pub exitstatus: Option<String>,
    /// Worker type.
    #[serde(default, rename = "type")]
    pub worker_type: Option<String>,
    /// Worker id.
    #[serde(default)]
    pub id: Option<String>,
    /// User who started it.
    #[serde(default)]
    pub user: Option<String>,
    /// Start time (Unix seconds).
    #[serde(default, deserialize_with = "crate::de::opt_i64")]
    pub starttime: Option<i64>,
    /// Fields this crate does not model, kept as PVE sent them (newer PVE versions add
    /// fields, e.g. `blockstat`, `ballooninfo`, `proxmox-support`, `pressure*`).
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One line of a task log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// Line number (1-based).
    #[serde(deserialize_with = "crate::de::u64")]
    pub n: u64,
    /// Text.
    #[serde(default)]
    pub t: String,
}

/// Successful end of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// Number of warnings (`WARNINGS: N`), 0 for `OK`.
    pub warnings: u32,
    /// Raw exit status.
    pub exit_status: String,
}

/// Classify a task exit status: `Some(warnings)` for success (`OK` is 0 warnings,
/// `WARNINGS: N` is N), `None` for a failure.
pub fn classify_exit_status(exit: &str) -> Option<u32> {
    let e = exit.trim();
    if e == "OK" {
        return Some(0);
    }
    e.strip_prefix("WARNINGS:")
        .and_then(|n| n.trim().parse().ok())
}

/// A running or finished task on some node, identified by its UPID.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    client: Client,
    upid: Upid,
    poll_interval: Duration,
    timeout: Duration,
    /// How long a 400 answer to the status call is tolerated after dispatch.
    startup_grace: Duration,
    tail_lines: usize,
}

impl TaskHandle {
    /// Handle for an existing task.
    pub fn new(client: Client, upid: Upid) -> Self {
        let (poll_interval, timeout) = client.task_defaults();
        TaskHandle {
            client,
            upid,
            poll_interval,
            timeout,
            startup_grace: Duration::from_secs(10),
            tail_lines: 20,
        }
    }

    /// The task id.
    pub fn upid(&self) -> &Upid {
        &self.upid
    }

    /// Poll every `d` (default from the client builder).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Give up waiting after `d` (the task keeps running on the server).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Tolerate HTTP 400 from the status call for this long after dispatch (default 10 s).
    pub fn startup_grace(mut self, d: Duration) -> Self {
        self.startup_grace = d;
        self
    }

    /// How many log lines a failure carries (default 20).
    pub fn tail_lines(mut self, n: usize) -> Self {
        self.tail_lines = n;
        self
    }

    /// Current status, polled on the UPID's node.
    pub async fn status(&self) -> Result<TaskStatus> {
        let node = self.upid.node().as_str();
        self.client
            .call(Request::new(
                &request::TASK_STATUS,
                &[node, self.upid.as_str()],
            ))
            .await
    }

    /// Log lines from line `start` (0-based), at most `limit`.
    pub async fn log(&self, start: u64, limit: u64) -> Result<Vec<LogLine>> {
        let node = self.upid.node().as_str();
        let req = Request::new(&request::TASK_LOG, &[node, self.upid.as_str()])
            .param("start", start)
            .param("limit", limit);
        self.client.call(req).await
    }

    /// Wait until the task stops. `OK` and `WARNINGS: N` are success; anything else is
    /// [`Error::TaskFailed`] with the last log lines.
    pub async fn wait(&self) -> Result<TaskOutcome> {
        self.wait_inner(None::<fn(&LogLine)>).await
    }

    /// Like [`wait`](Self::wait), calling `on_line` for every new log line as it appears (vzdump
    /// prints percentages there).
    pub async fn wait_with_progress(&self, on_line: impl FnMut(&LogLine)) -> Result<TaskOutcome> {
        self.wait_inner(Some(on_line)).await
    }

    /// New log lines as a stream, ending after the task has stopped and its last lines were
    /// delivered. It does not judge the exit status: call [`wait`](Self::wait) afterwards (one
    /// more status request) for the outcome.
    pub fn log_stream(&self) -> impl futures_util::Stream<Item = Result<LogLine>> + Send + 'static {
        struct State {
            task: TaskHandle,
            next_line: u64,
            buffered: std::collections::VecDeque<LogLine>,
            done: bool,
            started: Instant,
        }
        let state = State {
            task: self.clone(),
            next_line: 0,
            buffered: Default::default(),
            done: false,
            started: Instant::now(),
        };
        futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(line) = st.buffered.pop_front() {
                    return Some((Ok(line), st));
                }
                if st.done {
                    return None;
                }
                let stopped = match st.task.status().await {
                    Ok(s) => Some(s.status == TaskState::Stopped),
                    Err(Error::Api { status: 400, .. })
                        if st.started.elapsed() < st.task.startup_grace =>
                    {
                        None
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                };
                if let Some(stopped) = stopped {
                    match st.task.log(st.next_line, 500).await {
                        Ok(lines) => {
                            st.next_line += lines.len() as u64;
                            st.buffered.extend(lines);
                        }
                        Err(e) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                    // The log was read after the status said stopped, so it is complete.
                    st.done = stopped;
                }
                if st.buffered.is_empty() && !st.done {
                    if st.started.elapsed() >= st.task.timeout {
                        st.done = true;
                        let waited = st.started.elapsed();
                        return Some((
                            Err(Error::TaskTimeout {
                                upid: st.task.upid.to_string(),
                                waited,
                            }),
                            st,
                        ));
                    }
                    tokio::time::sleep(st.task.poll_interval).await;
                }
            }
        })
    }

    /// Wait inside a `pve_task_wait` span, so that the status and log polls (each its own
    /// `pve_request` span) nest under the wait that caused them.
    async fn wait_inner(&self, on_line: Option<impl FnMut(&LogLine)>) -> Result<TaskOutcome> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "pve_task_wait",
            upid = self.upid.as_str(),
            node = self.upid.node().as_str(),
            worker_type = self.upid.worker_type(),
            exit_status = tracing::field::Empty,
        );
        let result = self.wait_polling(on_line).instrument(span.clone()).await;
        match &result {
            Ok(o) => span.record("exit_status", o.exit_status.as_str()),
            Err(Error::TaskFailed { exit_status, .. }) => {
                span.record("exit_status", exit_status.as_str())
            }
            Err(_) => span.record("exit_status", "(not finished)"),
        };
        result
    }

    async fn wait_polling(&self, mut on_line: Option<impl FnMut(&LogLine)>) -> Result<TaskOutcome> {
        let started = Instant::now();
        let mut next_line: u64 = 0;
        loop {
            let status = match self.status().await {
                Ok(s) => Some(s),
                // Just after dispatch the status call can answer 400 ("no such task").
                Err(Error::Api { status: 400, .. }) if started.elapsed() < self.startup_grace => {
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(cb) = on_line.as_mut()
                && status.is_some()
            {
                let lines = self.log(next_line, 500).await?;
                for l in &lines {
                    cb(l);
                }
                next_line += lines.len() as u64;
            }
            if let Some(s) = status
                && s.status == TaskState::Stopped
            {
                let exit = s.exitstatus.unwrap_or_default();
                return match classify_exit_status(&exit) {
                    Some(warnings) => Ok(TaskOutcome {
                        upid: self.upid.clone(),
                        warnings,
                        exit_status: exit,
                    }),
                    None => {
                        let log = self.log(0, 100_000).await.unwrap_or_default();
                        let skip = log.len().saturating_sub(self.tail_lines);
                        Err(Error::TaskFailed {
                            upid: self.upid.to_string(),
                            exit_status: exit,
                            log_tail: log.into_iter().skip(skip).map(|l| l.t).collect(),
                        })
                    }
                };
            }
            if started.elapsed() >= self.timeout {
                return Err(Error::TaskTimeout {
                    upid: self.upid.to_string(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status() {
        assert_eq!(classify_exit_status("OK"), Some(0));
        assert_eq!(classify_exit_status("WARNINGS: 3"), Some(3));
        assert_eq!(classify_exit_status("VM is locked (backup)"), None);
        assert_eq!(classify_exit_status(""), None);
    }
}
