//! The comparison's settings: whether to compare, what to ignore, how long and how much
//! to hold while waiting for the other side, and the diffs file.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{IgnoreHeaders, JsonPaths, Rules};
use crate::settings::{parse_count, parse_duration, parse_size, Problems};

/// Production-vs-staging comparison.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Compare staging's response to every mirrored request with production's captured
    /// response (needs GOR_TARGET).
    #[arg(long, env = "GOR_COMPARE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub compare: bool,
    /// Headers left out of the comparison, comma-separated, case-insensitive; `default`
    /// stands for the usual noise (Date, Server, ETag, Last-Modified, Expires, Age,
    /// Set-Cookie values, X-Request-Id, and the framing and hop headers); empty: none.
    #[arg(long, env = "GOR_COMPARE_IGNORE_HEADERS", default_value = "default")]
    pub compare_ignore_headers: String,
    /// JSON paths left out when bodies are compared as JSON, comma-separated
    /// (`$.timestamp,$.items[*].id,$..trace_id`).
    #[arg(long, env = "GOR_COMPARE_IGNORE_JSON", default_value = "")]
    pub compare_ignore_json: String,
    /// How long one side's response waits for the other's before it is given up and
    /// counted (`expired`, `no_production_response`).
    #[arg(long, env = "GOR_COMPARE_TIMEOUT", default_value = "30s")]
    pub compare_timeout: String,
    /// Exchanges waiting for a response at most; beyond that the oldest is given up and
    /// counted (`evicted`).
    #[arg(long, env = "GOR_COMPARE_MAX_PENDING", default_value = "10000")]
    pub compare_max_pending: String,
    /// Bytes of requests and responses held while waiting, at most (oldest given up first).
    #[arg(long, env = "GOR_COMPARE_MAX_PENDING_BYTES", default_value = "64MiB")]
    pub compare_max_pending_bytes: String,
    /// Endpoints counted separately at most; the rest are counted under `other`.
    #[arg(long, env = "GOR_COMPARE_MAX_ENDPOINTS", default_value = "200")]
    pub compare_max_endpoints: String,
    /// Most bytes of a decoded body compared; a longer one is not compared (`skipped`).
    #[arg(long, env = "GOR_COMPARE_MAX_BODY", default_value = "4MiB")]
    pub compare_max_body: String,
    /// Write every difference as a JSON line (the request, both responses, what
    /// differed) to this file, and totals per endpoint at exit; read it with
    /// `gor-agent report FILE --html report.html`.
    #[arg(long, env = "GOR_OUTPUT_DIFFS", value_name = "FILE")]
    pub output_diffs: Option<PathBuf>,
    /// Difference lines written per endpoint, target and outcome at most (the counts
    /// stay complete); 0: no limit.
    #[arg(long, env = "GOR_OUTPUT_DIFFS_EXAMPLES", default_value = "100")]
    pub output_diffs_examples: String,
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub rules: Rules,
    pub timeout: Duration,
    pub max_pending: usize,
    pub max_pending_bytes: usize,
    pub max_endpoints: usize,
    pub diffs_file: Option<PathBuf>,
    /// 0: no limit.
    pub diffs_examples: usize,
}

impl CompareArgs {
    /// The comparison's settings, `None` inside when it is off. `mirroring`: whether a
    /// target is set, which the comparison needs.
    pub fn validate(&self, p: &mut Problems, mirroring: bool) -> Option<Option<CompareConfig>> {
        let mut c = p.of::<Self>();
        let headers = c.parse(
            "compare_ignore_headers",
            &self.compare_ignore_headers,
            IgnoreHeaders::parse,
        );
        let json = c.parse(
            "compare_ignore_json",
            &self.compare_ignore_json,
            JsonPaths::parse,
        );
        let timeout = c.parse("compare_timeout", &self.compare_timeout, parse_duration);
        let max_pending = c.parse(
            "compare_max_pending",
            &self.compare_max_pending,
            parse_count,
        );
        let max_bytes = c.parse(
            "compare_max_pending_bytes",
            &self.compare_max_pending_bytes,
            parse_size,
        );
        let max_endpoints = c.parse(
            "compare_max_endpoints",
            &self.compare_max_endpoints,
            parse_count,
        );
        let max_body = c.parse("compare_max_body", &self.compare_max_body, parse_size);
        let examples = c.parse("output_diffs_examples", &self.output_diffs_examples, |s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| "a count (0: no limit)".into())
        });
        if self.compare && !mirroring {
            c.field::<()>(
                "compare",
                "true",
                Err("a comparison needs staging's answers: set GOR_TARGET".into()),
            );
        }
        if let Some(path) = &self.output_diffs {
            if !self.compare {
                c.field::<()>(
                    "output_diffs",
                    &path.display().to_string(),
                    Err("differences come from the comparison: set GOR_COMPARE=1 too".into()),
                );
            }
        }
        let config = CompareConfig {
            rules: Rules {
                ignore_headers: headers?,
                ignore_json: json?,
                max_body: max_body?,
                ..Rules::default()
            },
            timeout: timeout?,
            max_pending: max_pending?,
            max_pending_bytes: max_bytes?,
            max_endpoints: max_endpoints?,
            diffs_file: self.output_diffs.clone(),
            diffs_examples: examples?,
        };
        Some(self.compare.then_some(config))
    }
}
