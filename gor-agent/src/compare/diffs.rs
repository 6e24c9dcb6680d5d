//! `GOR_OUTPUT_DIFFS=FILE`: one JSON line per difference (the request, both responses,
//! what differed), at most a number of lines per endpoint, target and outcome, and a
//! summary line with the totals per endpoint when the agent stops. The format is in the
//! README; `gor-agent report` reads it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::tally::{EndpointReport, Outcome, Outcomes};

/// Most bytes of each body in a line.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The counters of the diffs file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffsStats {
    /// Difference lines written.
    pub written: u64,
    /// Differences over the per-endpoint limit, counted only.
    pub not_written: u64,
    /// Lines lost to write errors.
    pub errors: u64,
}

pub(super) struct DiffsFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Lines written per endpoint, target and outcome.
    groups: HashMap<(Arc<str>, usize, Outcome), usize>,
    limit: usize,
    started_ns: u64,
    pub stats: DiffsStats,
}

impl DiffsFile {
    pub fn create(path: &Path, limit: usize) -> io::Result<DiffsFile> {
        Ok(DiffsFile {
            path: path.to_path_buf(),
            // Mode 0600, like saved traffic: it holds request and response bodies.
            out: BufWriter::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)?,
            ),
            groups: HashMap::new(),
            limit,
            started_ns: crate::clock::realtime_ns(),
            stats: DiffsStats::default(),
        })
    }

    /// Whether a line for this group is still wanted (so it is built only then).
    pub fn wants(&mut self, endpoint: &Arc<str>, target: usize, outcome: Outcome) -> bool {
        let n = self
            .groups
            .entry((endpoint.clone(), target, outcome))
            .or_insert(0);
        if self.limit != 0 && *n >= self.limit {
            self.stats.not_written += 1;
            return false;
        }
        *n += 1;
        true
    }

    pub fn write(&mut self, line: &Value) {
        if let Err(e) = writeln!(self.out, "{line}") {
            self.failed(&e);
        } else {
            self.stats.written += 1;
        }
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed(&e);
        }
    }

    /// The totals line, then everything flushed.
    pub fn finish(&mut self, total: &Outcomes, endpoints: &[EndpointReport]) {
        let ms = |us: u64| us as f64 / 1000.0;
        let latency = |l: &crate::histogram::LatencySummary| json!({"count": l.count, "p50_ms": ms(l.p50_us), "p99_ms": ms(l.p99_us)});
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|e| {
                json!({
                    "endpoint": e.endpoint,
                    "target": e.target,
                    "outcomes": e.outcomes.nonzero(),
                    "production_latency": latency(&e.production_latency),
                    "staging_latency": latency(&e.staging_latency),
                })
            })
            .collect();
        let line = json!({
            "type": "summary",
            "started_ns": self.started_ns,
            "ended_ns": crate::clock::realtime_ns(),
            "outcomes": total,
            "endpoints": endpoints,
            "diffs_written": self.stats.written,
            "diffs_dropped": self.stats.not_written + self.stats.errors,
        });
        if let Err(e) = writeln!(self.out, "{line}") {
            self.failed(&e);
        }
        self.flush();
    }

    fn failed(&mut self, e: &io::Error) {
        self.stats.errors += 1;
        // One warning per hundred, so a full disk does not flood the log.
        if self.stats.errors % 100 == 1 {
            tracing::warn!(path = %self.path.display(), error = %e, errors = self.stats.errors, "writing the diffs file failed");
        }
    }
}

/// The base64 of at most [`BODY_LIMIT`] bytes.
pub fn body_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len().min(BODY_LIMIT)])
}

/// A head as text.
pub fn head_text(raw: &[u8], body_offset: usize) -> String {
    String::from_utf8_lossy(&raw[..body_offset.min(raw.len())]).into_owned()
}
