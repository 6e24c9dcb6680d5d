//! GoReplay's distributed form, byte for byte: listeners send what they capture to a
//! replay server over TCP (`--output-tcp HOST:PORT`), the replay server reads it
//! (`--input-tcp :PORT`, `source::tcp`) and mirrors it. Either end may be GoReplay 1.x.
//!
//! ```text
//!  listener (gor or GoReplay)                                      replay server (gor or GoReplay)
//!  capture ─> framing ─> dispatch ─> [output::TcpOutput] ══ TCP ══> [source::tcp::TcpInput] ─> dispatch ─> staging
//!                                     bounded queues,     meta line   accepts, frame::Decoder     (middleware, filters,
//!                                     dropped+counted     + payload   per connection, skips and     mirroring, outputs)
//!                                     workers reconnect   + separator counts what is not a message
//! ```
//!
//! - [`frame`], one message on the wire (a `.gor` record: meta line, raw HTTP, `"\n🐵🙈🙉\n"`);
//! - [`output`], the listener's end, a message output;
//! - [`tls`], both ends' TLS (`--output-tcp-secure`, `--input-tcp-secure`);
//! - [`settings`], `GOR_OUTPUT_TCP*` and `GOR_INPUT_TCP*`;
//! - [`stats`], both ends' counters, for the report.
//!
//! The replay server's end is a driver source, in `source::tcp`.

pub mod frame;
pub mod output;
pub mod settings;
pub mod stats;
pub mod tls;
