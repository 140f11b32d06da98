//! Helpers shared by the integration tests: a small JSON client over reqwest.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use pve_vps_sim::{PveSim, Scenario, SimConfig};
use reqwest::Method;
use serde_json::Value;

/// Run a test body under a timeout so a hang fails instead of blocking.
pub async fn timed<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out");
}

pub async fn start() -> PveSim {
    PveSim::start(SimConfig::for_tests())
        .await
        .expect("sim starts")
}

pub async fn start_with(scenario: Scenario) -> PveSim {
    PveSim::start(SimConfig::for_tests().scenario(scenario))
        .await
        .expect("sim starts")
}

/// A rustls client config that pins a SHA-256 leaf fingerprint (`AA:BB:..`).
pub fn pinned_tls(fingerprint: &str) -> rustls::ClientConfig {
    pve_vps_sim::pinned_client_config(fingerprint)
}

pub fn http_client(fingerprint: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(pinned_tls(fingerprint))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A JSON API client with one kind of credentials.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub auth: Option<String>,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Api {
    pub fn token(sim: &PveSim) -> Api {
        Api {
            client: http_client(sim.fingerprint()),
            base: format!("{}/api2/json", sim.url()),
            auth: Some(sim.token_header()),
            cookie: None,
            csrf: None,
        }
    }

    pub fn with_header(sim: &PveSim, header: Option<String>) -> Api {
        Api {
            auth: header,
            ..Api::token(sim)
        }
    }

    pub async fn call(&self, method: Method, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut rb = self.client.request(method.clone(), &url);
        if method == Method::GET {
            rb = rb.query(form);
        } else if !form.is_empty() {
            rb = rb.form(form);
        }
        if let Some(a) = &self.auth {
            rb = rb.header("Authorization", a);
        }
        if let Some(c) = &self.cookie {
            rb = rb.header("Cookie", format!("PVEAuthCookie={c}"));
        }
        if let Some(c) = &self.csrf {
            rb = rb.header("CSRFPreventionToken", c);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.get_q(path, &[]).await
    }

    pub async fn get_q(&self, path: &str, q: &[(&str, &str)]) -> Value {
        let (s, b) = self.call(Method::GET, path, q).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        b["data"].clone()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let (s, b) = self.call(Method::POST, path, form).await;
        assert_eq!(s, 200, "POST {path}: {b}");
        b["data"].clone()
    }

    pub async fn put(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let (s, b) = self.call(Method::PUT, path, form).await;
        assert_eq!(s, 200, "PUT {path}: {b}");
        b["data"].clone()
    }

    pub async fn delete(&self, path: &str) -> Value {
        let (s, b) = self.call(Method::DELETE, path, &[]).await;
        assert_eq!(s, 200, "DELETE {path}: {b}");
        b["data"].clone()
    }

    /// Poll a task until it stops; return its exit status.
    pub async fn wait(&self, upid: &Value) -> String {
        let upid = upid.as_str().expect("upid string");
        let node = upid.split(':').nth(1).expect("node in upid");
        let path = format!("/nodes/{node}/tasks/{}/status", enc(upid));
        loop {
            let st = self.get(&path).await;
            if st["status"] == "stopped" {
                return st["exitstatus"].as_str().unwrap_or_default().to_string();
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

/// Percent-encode a path segment.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
