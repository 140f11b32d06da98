//! The client-area portal, the scheduler and small examples built on the workspace's crates.
//!
//! * `cargo run -p examples --bin portal` — the web client area (on the embedded simulator when
//!   no cluster is configured).
//! * `cargo run -p examples --bin cron` — the scheduled work.
//! * `cargo run -p examples --example <name>` — the small examples of the docs.

pub mod portal;
