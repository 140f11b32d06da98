//! Helpers shared by the integration tests that run processes and simulators: a test
//! directory kept when the test fails, polling with a deadline, log line counting, and a
//! runtime with a timeout.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory removed when the test passed, kept (and named) when it failed.
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty `<temp>/<test file>-<pid>-<test>`.
pub fn test_dir(test: &str) -> TestDir {
    let suite = env!("CARGO_CRATE_NAME");
    let dir = std::env::temp_dir().join(format!("{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    TestDir(dir)
}

/// Polls `f` every 100 ms until it answers `Some`, failing with `what` after `within`.
pub async fn wait_for<T, Fut>(what: &str, within: Duration, mut f: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lines of `text` containing every one of `needles` (a needle ending in a space, such as
/// `field=value `, also matches at the end of a line).
pub fn count(text: &str, needles: &[&str]) -> usize {
    text.lines()
        .map(|l| format!("{l} "))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Runs `f` on a two-thread runtime, failing after `secs` seconds.
pub fn run(secs: u64, f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(secs), f)
                .await
                .unwrap_or_else(|_| panic!("the test took longer than {secs} s"))
        });
}
