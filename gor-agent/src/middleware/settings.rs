//! The middleware's settings: the program with its arguments and the queue in front of
//! it. [`MiddlewareArgs::validate`] splits the command line only; whether the program
//! exists and may be run is the resolve step's question (`config::resolve`).

use clap::Args;

use super::MiddlewareConfig;
use crate::settings::{parse_count, Problems};

/// A GoReplay-compatible middleware program between framing and the outputs.
#[derive(Debug, Args)]
pub struct MiddlewareArgs {
    /// Program and arguments (run directly, no shell) that receives every message as a
    /// hex line on stdin and writes back, as hex lines, the messages that continue.
    #[arg(long, env = "GOR_MIDDLEWARE", value_name = "CMD ARGS")]
    pub middleware: Option<String>,
    /// Messages waiting for the middleware at most; beyond that they are dropped and counted.
    #[arg(long, env = "GOR_MIDDLEWARE_QUEUE", default_value = "1000")]
    pub middleware_queue: String,
}

impl MiddlewareArgs {
    /// `Some(None)`: valid, and no middleware.
    pub fn validate(&self, p: &mut Problems) -> Option<Option<MiddlewareConfig>> {
        let mut c = p.of::<Self>();
        let queue = c.parse("middleware_queue", &self.middleware_queue, parse_count);
        let command = match self.middleware.as_deref().map(str::trim) {
            None | Some("") => return queue.map(|_| None),
            Some(v) => c.parse("middleware", v, MiddlewareConfig::from_command),
        };
        Some(Some(MiddlewareConfig {
            queue: queue?,
            ..command?
        }))
    }
}
