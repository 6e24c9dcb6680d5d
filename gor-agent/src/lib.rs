//! gor's agent, as a pipeline run by one driver (`driver`), one module a stage:
//!
//! ```text
//! source::live (TC programs, ring buffer) ─┐
//! source::pcap (capture files) ────────────┴─ Segment ─> reassembly ─ StreamEvent ─> http framing ─┐
//! (TLS plaintext, next) ─────────────────────────────────────────── StreamEvent ──────────────────┤
//! replay (saved traffic, `gor-agent replay`) ─────────────────────────────────────── HttpMessage ──┤
//! source::tcp (GoReplay's TCP protocol, `--input-tcp`) ───────────────────────────── HttpMessage ──┤
//!                                                                                                  v
//!               pipeline ─> dispatch: middleware ─> filters ─> mirror (staging, StagingResult)
//!                                                           └─> output (saved traffic, JSON lines,
//!                                                                        goreplay_tcp: `--output-tcp`)
//!   captured responses + StagingResult ─> compare (outcomes, diffs file) ─> diffs_report (HTML)
//! ```
//!
//! `goreplay` rewrites GoReplay's command lines into gor's before clap reads them;
//! `goreplay_tcp` speaks GoReplay's TCP protocol between a listener and a replay server.
//! `agent` picks the source, `config` composes the stages' settings, `envelope` and
//! `clock` say what identifies a message and when it was seen. `diffs_report` runs after
//! the pipeline, on the diffs files that comparing responses wrote (`gor-agent report`).
pub mod agent;
pub mod broker;
pub mod capture;
pub mod check;
pub mod clock;
pub mod compare;
pub mod config;
pub mod diffs_report;
pub mod dispatch;
pub mod driver;
pub mod envelope;
pub mod fasthash;
pub mod filters;
pub mod goreplay;
pub mod goreplay_tcp;
pub mod gorfile;
pub mod histogram;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod mirror;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod reassembly;
pub mod replay;
pub mod replay_server;
pub mod settings;
pub mod source;
pub mod stream;
pub mod tls_streams;
