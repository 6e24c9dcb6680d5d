//! gor's agent, as a pipeline:
//!
//! ```text
//! capture (TC programs, ring buffer) ─Segment─> reassembly ─StreamEvent─> http framing ─HttpMessage─> dispatch
//! pcap files ────────────────────────────────────┘                                                  │
//! saved traffic (gorfile reader, playback) ─────────────────────────────────────────────────────────┤
//!                                                                                                  v
//!                        middleware ─> filters ─> replay (staging)  +  message outputs (gorfile, JSON lines)
//! ```
pub mod agent;
pub mod capture;
pub mod check;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod driver;
pub mod envelope;
pub mod filters;
pub mod gorfile;
pub mod histogram;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod middleware;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod playback;
pub mod reassembly;
pub mod replay;
pub mod settings;
pub mod source;
pub mod stream;
