//! The reassembler's settings: how many connections it tracks, how many out-of-order
//! bytes it holds, and how long it waits for an idle connection or a hole, validated
//! into its [`Limits`].

use clap::Args;

use super::Limits;
use crate::settings::{parse_count, parse_duration, parse_size, Problems};

/// The bounds of reassembly.
#[derive(Debug, Args)]
pub struct ReassemblyArgs {
    /// Connections tracked at once; the least recently active is evicted beyond that.
    #[arg(long, env = "GOR_MAX_CONNECTIONS", default_value = "100000")]
    pub max_connections: String,
    /// Out-of-order bytes held per connection direction before a hole is given up.
    #[arg(long, env = "GOR_CONN_BUFFER", default_value = "4MiB")]
    pub conn_buffer: String,
    /// Out-of-order bytes held for all connections together.
    #[arg(long, env = "GOR_TOTAL_BUFFER", default_value = "256MiB")]
    pub total_buffer: String,
    /// A connection with no packet for this long is ended.
    #[arg(long, env = "GOR_IDLE_TIMEOUT", default_value = "120s")]
    pub idle_timeout: String,
    /// A hole in a stream with later bytes waiting behind it is reported lost after this long.
    #[arg(long, env = "GOR_HOLE_TIMEOUT", default_value = "2s")]
    pub hole_timeout: String,
}

impl ReassemblyArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<Limits> {
        let mut c = p.of::<Self>();
        let max_connections = c.parse("max_connections", &self.max_connections, parse_count);
        let max_conn_buffer = c.parse("conn_buffer", &self.conn_buffer, parse_size);
        let max_total_buffer = c.parse("total_buffer", &self.total_buffer, parse_size);
        let idle = c.parse("idle_timeout", &self.idle_timeout, parse_duration);
        let hole = c.parse("hole_timeout", &self.hole_timeout, parse_duration);
        Some(Limits {
            max_conn_buffer: max_conn_buffer?,
            max_total_buffer: max_total_buffer?,
            max_connections: max_connections?,
            idle_timeout_ns: idle?.as_nanos() as u64,
            hole_timeout_ns: hole?.as_nanos() as u64,
        })
    }
}
