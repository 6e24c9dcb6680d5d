//! HTTP framing's settings: the largest head and body a message may have before it is
//! counted instead of emitted, validated into its [`Limits`].

use clap::Args;

use super::Limits;
use crate::settings::{parse_size, Problems};

/// The bounds of framing.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Largest HTTP head (start line and headers); a larger message is counted, not emitted.
    #[arg(long, env = "GOR_HTTP_MAX_HEAD", default_value = "64KiB")]
    pub http_max_head: String,
    /// Largest HTTP body; a larger message is counted, not emitted, and the connection goes on.
    #[arg(long, env = "GOR_HTTP_MAX_BODY", default_value = "16MiB")]
    pub http_max_body: String,
}

impl HttpArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<Limits> {
        let mut c = p.of::<Self>();
        let max_head = c.parse("http_max_head", &self.http_max_head, parse_size);
        let max_body = c.parse("http_max_body", &self.http_max_body, parse_size);
        Some(Limits {
            max_head: max_head?,
            max_body: max_body? as u64,
        })
    }
}
