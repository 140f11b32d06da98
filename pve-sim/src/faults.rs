//! Fault injection: what a test asks the simulator to get wrong, and when.

use std::time::Duration;

use crate::model::Outcome;

/// Which requests a fault applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMatch {
    /// HTTP method (`GET`, `POST`, ...); `None` matches any.
    pub method: Option<String>,
    /// A substring of the request path (after `/api2/json`); empty matches any.
    pub path_contains: String,
}

impl RequestMatch {
    /// Match every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Match requests whose path contains `fragment`, any method.
    pub fn path(fragment: impl Into<String>) -> Self {
        Self {
            method: None,
            path_contains: fragment.into(),
        }
    }

    /// Match requests with `method` whose path contains `fragment`.
    pub fn method_path(method: impl Into<String>, fragment: impl Into<String>) -> Self {
        Self {
            method: Some(method.into().to_ascii_uppercase()),
            path_contains: fragment.into(),
        }
    }

    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HttpFault {
    pub(crate) on: RequestMatch,
    pub(crate) status: u16,
    pub(crate) remaining: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct DropFault {
    pub(crate) on: RequestMatch,
    pub(crate) remaining: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskFault {
    pub(crate) kind: String,
    pub(crate) outcome: Outcome,
}

/// The active faults.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    pub(crate) latency: Duration,
    pub(crate) http: Vec<HttpFault>,
    pub(crate) drops: Vec<DropFault>,
    pub(crate) tasks: Vec<TaskFault>,
    /// For this long after dispatch a task's status answers 400, as PVE's can.
    pub(crate) task_status_lag: Duration,
    pub(crate) requests_seen: u64,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Serve,
    Status(u16),
    Drop,
}

impl Faults {
    pub(crate) fn verdict(&mut self, method: &str, path: &str) -> Verdict {
        self.requests_seen += 1;
        if let Some(d) = self
            .drops
            .iter_mut()
            .find(|d| d.remaining > 0 && d.on.matches(method, path))
        {
            d.remaining -= 1;
            self.drops.retain(|d| d.remaining > 0);
            return Verdict::Drop;
        }
        if let Some(f) = self
            .http
            .iter_mut()
            .find(|f| f.remaining > 0 && f.on.matches(method, path))
        {
            f.remaining -= 1;
            let s = f.status;
            self.http.retain(|f| f.remaining > 0);
            return Verdict::Status(s);
        }
        Verdict::Serve
    }

    pub(crate) fn take_task_outcome(&mut self, kind: &str) -> Outcome {
        match self.tasks.iter().position(|t| t.kind == kind) {
            Some(i) => self.tasks.remove(i).outcome,
            None => Outcome::Ok,
        }
    }
}
