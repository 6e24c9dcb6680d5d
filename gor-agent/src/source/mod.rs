//! The driver's sources of captured traffic, each entering the pipeline at the level it
//! produces (see `driver::Level`):
//!
//! - [`live`]: the TC programs' ring buffer, TCP segments on the monotonic clock;
//! - [`pcap`]: a capture file read on a thread, TCP segments on the packets' clock;
//! - [`tcp`]: GoReplay's TCP protocol (`--input-tcp`), whole messages on the senders' clock.
//!
//! Saved traffic (`replay`, `gor-agent replay`) is another, entering with whole messages.
pub mod live;
pub mod pcap;
pub mod tcp;
