//! A throw-away `pdns_server` on free loopback ports, and a hand-crafted DNS PTR query.
//!
//! Shared by the PowerDNS tests and the throughput example (`#[path]` include).

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// A running `pdns_server`; killed (by PID) and its directory removed on drop.
#[derive(Debug)]
pub struct PdnsServer {
    child: Child,
    dir: PathBuf,
    /// Webserver/API base URL.
    pub api_url: String,
    /// API key.
    pub api_key: String,
    /// DNS (UDP/TCP) address.
    pub dns_addr: SocketAddr,
}

impl Drop for PdnsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.join("pdns.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "pdns_server log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A TCP port free on loopback (bound, then released).
fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free tcp port");
    l.local_addr().expect("local addr").port()
}

/// A port free for both UDP and TCP on loopback.
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a free udp port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both udp and tcp on 127.0.0.1");
}

fn create_db(db: &Path) {
    let schema = fs::read_to_string(SCHEMA).unwrap_or_else(|e| {
        panic!("cannot read {SCHEMA} ({e}): install pdns-backend-sqlite3 (scripts/test.sh does)")
    });
    let sqlite3 = find_binary("sqlite3")
        .unwrap_or_else(|| panic!("sqlite3 not found: install sqlite3 (scripts/test.sh does)"));
    let mut child = Command::new(sqlite3)
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqlite3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("sqlite3 stdin");
        stdin.write_all(schema.as_bytes()).expect("write schema");
    }
    let out = child.wait_with_output().expect("sqlite3 finished");
    assert!(
        out.status.success(),
        "sqlite3 failed creating the pdns database: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PdnsServer {
    /// Start a server, waiting until its API answers. Panics with a clear message when
    /// `pdns_server` is not installed: this test must never be skipped silently.
    pub fn start() -> Self {
        let binary = find_binary("pdns_server").unwrap_or_else(|| {
            panic!(
                "pdns_server not found: the PowerDNS tests need Debian packages `pdns-server` and \
                 `pdns-backend-sqlite3` (scripts/test.sh installs them)"
            )
        });
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dns-providers-pdns-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create pdns temp dir");
        let db = dir.join("pdns.sqlite3");
        create_db(&db);

        let mut last_log = String::new();
        // Ports are picked free then released, so a rare clash is retried.
        for _attempt in 0..3 {
            let web_port = free_tcp_port();
            let dns_port = free_dns_port();
            let api_key = format!("test-key-{}-{}", std::process::id(), web_port);
            let conf = format!(
                "launch=gsqlite3\n\
                 gsqlite3-database={db}\n\
                 local-address=127.0.0.1\n\
                 local-port={dns_port}\n\
                 api=yes\n\
                 api-key={api_key}\n\
                 webserver=yes\n\
                 webserver-address=127.0.0.1\n\
                 webserver-port={web_port}\n\
                 webserver-allow-from=127.0.0.1/32\n\
                 daemon=no\n\
                 guardian=no\n\
                 security-poll-suffix=\n\
                 socket-dir={dir}\n\
                 cache-ttl=0\n\
                 negquery-cache-ttl=0\n\
                 query-cache-ttl=0\n\
                 zone-cache-refresh-interval=0\n\
                 receiver-threads=1\n\
                 distributor-threads=1\n\
                 loglevel=4\n",
                db = db.display(),
                dir = dir.display(),
            );
            fs::write(dir.join("pdns.conf"), conf).expect("write pdns.conf");
            let log_path = dir.join("pdns.log");
            let log = fs::File::create(&log_path).expect("create pdns log");
            let child = Command::new(&binary)
                .arg(format!("--config-dir={}", dir.display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn pdns_server");
            let mut server = PdnsServer {
                child,
                dir: dir.clone(),
                api_url: format!("http://127.0.0.1:{web_port}"),
                api_key,
                dns_addr: SocketAddr::from(([127, 0, 0, 1], dns_port)),
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = server.child.try_wait() {
                    last_log = fs::read_to_string(&log_path).unwrap_or_default();
                    eprintln!("pdns_server exited with {status}; retrying on other ports");
                    break;
                }
                if api_ready(web_port) {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = fs::read_to_string(&log_path).unwrap_or(last_log);
            // Not ready: kill it without removing the directory (the guard would).
            let _ = server.child.kill();
            let _ = server.child.wait();
            std::mem::forget(server);
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("pdns_server did not start; last log:\n{last_log}");
    }
}

/// The API answers (any HTTP status) on the port.
fn api_ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /api/v1/servers HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf.starts_with(b"HTTP/"))
}

/// Encode a DNS name (absolute, with or without trailing dot).
fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(u8::try_from(label.len()).expect("label length"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// Decode a (possibly compressed) name at `pos`; returns the name and the offset after it.
fn decode_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            let after = end.unwrap_or(pos + 1);
            return Some((labels.join(".") + ".", after));
        }
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos + 1..pos + 1 + len)?).into_owned());
        pos += 1 + len;
    }
    None
}

/// Ask `server` for the PTR of `ip` over UDP (like `dig -x IP @server`); returns the PTR
/// targets in the answer section (following an in-answer CNAME as RFC 2317 zones need).
pub async fn query_ptr(server: SocketAddr, ip: IpAddr) -> Vec<String> {
    let qname = pve_vps_dns::ptr_name(ip);
    let id: u16 = 0x5a5a ^ (std::process::id() as u16);
    let mut msg = Vec::with_capacity(128);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00]); // RD
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    encode_name(&qname, &mut msg);
    msg.extend_from_slice(&[0, 12, 0, 1]); // PTR, IN

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind udp");
    let mut buf = vec![0u8; 4096];
    for _ in 0..5 {
        sock.send_to(&msg, server).await.expect("send dns query");
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
        else {
            continue;
        };
        let resp = &buf[..n];
        assert!(
            n >= 12 && resp[..2] == id.to_be_bytes(),
            "bad dns answer id"
        );
        let rcode = resp[3] & 0x0f;
        assert!(rcode == 0 || rcode == 3, "dns rcode {rcode} for {qname}");
        let qd = u16::from_be_bytes([resp[4], resp[5]]);
        let an = u16::from_be_bytes([resp[6], resp[7]]);
        let mut pos = 12;
        for _ in 0..qd {
            let (_, after) = decode_name(resp, pos).expect("question name");
            pos = after + 4;
        }
        let mut out = Vec::new();
        for _ in 0..an {
            let (_, after) = decode_name(resp, pos).expect("answer name");
            let rtype = u16::from_be_bytes([resp[after], resp[after + 1]]);
            let rdlen = u16::from_be_bytes([resp[after + 8], resp[after + 9]]) as usize;
            let rdata = after + 10;
            if rtype == 12 {
                out.push(decode_name(resp, rdata).expect("ptr rdata").0);
            }
            pos = rdata + rdlen;
        }
        return out;
    }
    panic!("no dns answer from {server} for {qname}");
}

impl PdnsServer {
    /// A raw API call over HTTP/1.0 (no client library needed); returns status and body.
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.api_url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect pdns api");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nX-API-Key: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.api_key,
            body.len()
        )
        .expect("write request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read response");
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}
