//! Helpers for gor's kernel tests: start the real agent binary and wait for its readiness
//! signal, stop it and read what it captured, make network namespaces and clean them up,
//! check that the host is left as it was, and put another tool's program on a tcx hook.
//! The benchmarks (`bench`, run by `cargo xtask bench`) are built on the same helpers.
pub mod agent;
pub mod apps;
pub mod bench;
pub mod clients;
pub mod gorformat;
pub mod host;
pub mod netns;
pub mod nginx;
pub mod staging;
pub mod tcpdump;
pub mod tcx;
pub mod tls_staging;
pub mod traffic;
