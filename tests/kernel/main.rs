//! Kernel tests: the real agent binary, real eBPF programs on real interfaces, real
//! sockets. Each test asserts that the agent's reconstructed client->server stream equals
//! the bytes the client sent and the server->client stream the bytes the server sent, that
//! nothing was dropped or truncated, and that the host is left without our programs.
//!
//! They need root; `cargo xtask test` runs them one at a time.
mod bad_input;
mod check;
mod compare;
mod config;
mod deploy;
mod filters;
mod fleet;
mod goreplay_files;
mod goreplay_http;
mod goreplay_outputs;
mod goreplay_redirects;
mod goreplay_tcp;
mod http;
mod middleware;
mod mirror;
mod mirror_tls;
mod netns;
mod observability;
mod replay;
mod saved;
mod streams;
mod tls;
