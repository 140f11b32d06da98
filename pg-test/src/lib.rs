//! A throw-away PostgreSQL server for tests.
//!
//! [`PgServer::start`] runs Debian's PostgreSQL (`/usr/lib/postgresql/<version>/bin`, the
//! newest installed version): `initdb` in a fresh temporary directory, `postgres` on a free
//! loopback port with its socket in that directory and `fsync=off`, waits until it accepts
//! connections and creates a database. Dropping the server stops it by its PID (fast shutdown,
//! then a kill if it does not exit) and removes the directory.
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root (CI does), both
//! run as the `postgres` system user (through `setpriv`, which execs, so the PID we hold is
//! the server's), with the directory handed to that user.
//!
//! Without PostgreSQL installed, [`PgServer::start`] panics naming the missing binary and the
//! Debian package `postgresql`: a test that needs a real server must never be skipped quietly.
//!
//! ```no_run
//! let pg = pg_test::PgServer::start();
//! let url = pg.url(); // postgres://postgres@127.0.0.1:PORT/test
//! let other = pg.create_database("second");
//! assert_ne!(url, other);
//! ```

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL server; stopped (by PID) and its directory removed on drop.
#[derive(Debug)]
pub struct PgServer {
    child: Child,
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    url: String,
}

/// Who runs the server: ourselves, or the `postgres` system user when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl PgServer {
    /// Starts a server and creates the database `test`. Panics with a clear message when
    /// PostgreSQL is not installed or does not start.
    pub fn start() -> Self {
        let bin = find_bin_dir();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let root = effective_uid() == 0;
        // As root the server runs as `postgres`, which must reach the directory: `/tmp`
        // rather than a `TMPDIR` that may sit under `/root`. Short paths also keep the socket
        // path under its 107-byte limit.
        let base = if root && Path::new("/tmp").is_dir() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "pg-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the postgres temp dir");
        let run_as = if root {
            let who = postgres_user();
            std::os::unix::fs::chown(&dir, Some(who.uid), Some(who.gid))
                .expect("hand the temp dir to the postgres user");
            Some(who)
        } else {
            None
        };
        let data = dir.join("data");
        let out = command(run_as, &bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        check(&out, "initdb");

        let mut last_log = String::new();
        // Ports are picked free then released, so a rare clash is retried.
        for _attempt in 0..3 {
            let port = free_port();
            let log_path = dir.join("postgres.log");
            let log = fs::File::create(&log_path).expect("create the postgres log");
            if let Some(who) = run_as {
                std::os::unix::fs::chown(&log_path, Some(who.uid), Some(who.gid))
                    .expect("hand the log to the postgres user");
            }
            let child = command(run_as, &bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(&dir)
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=100"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn postgres");
            let mut server = PgServer {
                child,
                dir: dir.clone(),
                bin: bin.clone(),
                port,
                url: String::new(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = server.child.try_wait() {
                    last_log = fs::read_to_string(&log_path).unwrap_or_default();
                    eprintln!("postgres exited with {status}; retrying on another port");
                    break;
                }
                if server.accepts_connections() {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if ready {
                server.url = server.create_database("test");
                return server;
            }
            last_log = fs::read_to_string(&log_path).unwrap_or(last_log);
            server.stop();
            // Keep the directory for the next attempt (the guard would remove it).
            std::mem::forget(server);
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("postgres did not start; last log:\n{last_log}");
    }

    /// The connection URL of the database `test`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates another database (a fresh, empty one per test) and returns its URL.
    /// `name` must be a plain identifier (letters, digits, `_`).
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database name `{name}`: letters, digits and `_` only"
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .expect("run createdb");
        check(&out, "createdb");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn accepts_connections(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-t", "1"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Fast shutdown by PID (SIGINT: PostgreSQL's SIGTERM is the "smart" mode that waits for
    /// every client to leave, which a test holding a pool would never do), then SIGKILL if it
    /// has not exited within 10 s.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "postgres log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `bin` directory of the newest PostgreSQL installed the Debian way.
fn find_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    let Some((_, bin)) = versions.pop() else {
        panic!(
            "PostgreSQL not found: no /usr/lib/postgresql/<version>/bin/postgres (and initdb); \
             these tests need a real server: install the Debian package `postgresql` \
             (scripts/test.sh does)"
        );
    };
    for tool in ["initdb", "pg_isready", "createdb"] {
        assert!(
            bin.join(tool).is_file(),
            "PostgreSQL's `{tool}` is missing from {}: install the Debian package `postgresql`",
            bin.display()
        );
    }
    bin
}

fn command(run_as: Option<RunAs>, program: &Path) -> Command {
    match run_as {
        None => Command::new(program),
        Some(who) => {
            // setpriv execs the program, so the child's PID is the program's own.
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={}", who.uid))
                .arg(format!("--regid={}", who.gid))
                .arg("--clear-groups")
                .arg(program);
            c
        }
    }
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The effective uid, from `/proc/self/status` (no `unsafe` for `geteuid`).
fn effective_uid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .expect("the Uid line of /proc/self/status")
}

/// The `postgres` system user the Debian package creates.
fn postgres_user() -> RunAs {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || f[0] != "postgres" {
                return None;
            }
            Some(RunAs {
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "running as root but there is no `postgres` user to run PostgreSQL as: \
                 install the Debian package `postgresql` (it creates the user)"
            )
        })
}

/// A TCP port free on loopback (bound, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free tcp port");
    l.local_addr().expect("local addr").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_accepts_and_stops() {
        let pg = PgServer::start();
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        assert!(pg.accepts_connections());
        let second = pg.create_database("second_db");
        assert!(second.ends_with("/second_db"));
        let dir = pg.dir.clone();
        let port = pg.port();
        drop(pg);
        assert!(!dir.exists(), "the temp dir is removed");
        // The port is released: the server is gone.
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
