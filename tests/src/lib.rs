//! Helpers for gor's kernel tests: start the real agent binary and wait for its readiness
//! signal, stop it and read what it captured, make network namespaces and clean them up,
//! check that the host is left as it was, and put another tool's program on a tcx hook.
//! `nats` runs a nats-server of the test's own and `gor-agent replay-server`, for the
//! fleet tests (listeners publishing to JetStream, replay servers consuming it).
//! The benchmarks (`bench`, run by `cargo xtask bench`) are built on the same helpers.
//! `browser` renders the pages the agent writes in headless Chromium; `report` runs
//! `gor-agent report` and checks its page there (no kernel needed: these tests run with
//! the helpers' own, `cargo test -p gor-tests --lib`).
pub mod agent;
pub mod apps;
pub mod bench;
pub mod browser;
pub mod clients;
pub mod gorformat;
pub mod host;
pub mod nats;
pub mod netns;
pub mod nginx;
pub mod report;
pub mod staging;
pub mod tcpdump;
pub mod tcx;
pub mod tls_apps;
pub mod tls_staging;
pub mod traffic;
