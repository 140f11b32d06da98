//! The client-area portal, the scheduler and small examples built on the workspace's crates.
