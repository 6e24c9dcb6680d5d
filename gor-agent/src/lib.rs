//! gor's agent, as a pipeline:
//!
//! ```text
//! capture (TC programs, ring buffer)  ──Segment──>  reassembly  ──StreamEvent──>  http framing ──> outputs
//! pcap files ───────────────────────────────────────────┘
//! ```
pub mod agent;
pub mod capture;
pub mod config;
pub mod filters;
pub mod gorfile;
pub mod http;
pub mod logging;
pub mod notify;
pub mod output;
pub mod reassembly;
pub mod replay;
pub mod stream;
