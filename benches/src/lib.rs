//! Criterion benchmarks for the workspace's hot paths.
//!
//! The benchmarks live in `benches/benches/`, one file per hot path; figures and the commands
//! that produced them are in `benches/README.md`.
