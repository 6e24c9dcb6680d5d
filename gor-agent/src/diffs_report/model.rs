//! The lines of a diffs file (`GOR_OUTPUT_DIFFS`, issue 12's spec), as the report reads
//! them: leniently, so that a field the writer left out (or a newer writer added) does
//! not cost the whole line. A line whose fields have the wrong types, or whose `"type"`
//! is neither `difference` nor `summary`, is reported as such and skipped by the caller.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One line of a diffs file.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Difference(Box<Difference>),
    Summary(Summary),
    /// A `"type"` this reader does not know (a newer writer's); counted, not shown.
    #[serde(other)]
    Unknown,
}

/// One compared exchange whose responses did not match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Difference {
    pub id: String,
    pub ts_ns: u64,
    pub target: String,
    pub endpoint: String,
    /// The primary outcome: `staging_error`, `status`, `body` or `headers`.
    pub outcome: String,
    /// Every kind that differed, in the order `status`, `headers`, `body`.
    pub kinds: Vec<String>,
    pub differences: Vec<Item>,
    pub differences_truncated: bool,
    pub request: Request,
    pub production: Side,
    pub staging: Side,
}

impl Difference {
    /// The kinds this line counts under: `kinds`, or the primary outcome when a writer
    /// left `kinds` out.
    pub fn kinds(&self) -> Vec<&str> {
        if self.kinds.is_empty() && !self.outcome.is_empty() {
            vec![self.outcome.as_str()]
        } else {
            self.kinds.iter().map(String::as_str).collect()
        }
    }

    /// The endpoint, `other` when the writer gave none.
    pub fn endpoint(&self) -> &str {
        if self.endpoint.is_empty() {
            "other"
        } else {
            &self.endpoint
        }
    }

    /// The names (lowercase) of the headers that differ.
    pub fn header_names(&self) -> Vec<String> {
        self.differences
            .iter()
            .filter_map(|d| match d {
                Item::Header { name, .. } => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect()
    }

    /// The JSON paths that differ.
    pub fn json_paths(&self) -> Vec<&str> {
        self.differences
            .iter()
            .filter_map(|d| match d {
                Item::Json { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether the status differs.
    pub fn status_differs(&self) -> bool {
        self.kinds().contains(&"status")
            || self
                .differences
                .iter()
                .any(|d| matches!(d, Item::Status { .. }))
    }

    /// The byte offset of the first difference of a non-JSON body, if one was reported.
    pub fn first_body_difference(&self) -> Option<u64> {
        self.differences.iter().find_map(|d| match d {
            Item::Body {
                first_difference, ..
            } => *first_difference,
            _ => None,
        })
    }
}

/// One difference within an exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Status {
        #[serde(default)]
        production: Option<u16>,
        #[serde(default)]
        staging: Option<u16>,
    },
    /// `None`: the header is absent on that side; otherwise every value, duplicates kept.
    Header {
        name: String,
        #[serde(default)]
        production: Option<Vec<String>>,
        #[serde(default)]
        staging: Option<Vec<String>>,
    },
    Json {
        path: String,
        /// `changed`, `added` or `removed`.
        #[serde(default)]
        change: String,
        #[serde(default)]
        production: Value,
        #[serde(default)]
        staging: Value,
    },
    /// A non-JSON body: lengths of the decoded bodies and the first differing byte.
    Body {
        #[serde(default)]
        production_len: Option<u64>,
        #[serde(default)]
        staging_len: Option<u64>,
        #[serde(default)]
        first_difference: Option<u64>,
    },
    StagingError {
        #[serde(default)]
        error: String,
    },
    /// A kind this reader does not know: kept in the count, not shown.
    #[serde(other)]
    Unknown,
}

/// The mirrored request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub head: String,
    /// Base64 of the wire body, at most 64 KiB of it.
    pub body: String,
    pub body_len: u64,
    pub body_truncated: bool,
}

/// One side's response; for a staging error only `error` and `latency_ns` are set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Side {
    pub status: Option<u16>,
    pub latency_ns: Option<u64>,
    pub head: Option<String>,
    /// Base64 of the decoded body (chunked framing and Content-Encoding removed).
    pub body: Option<String>,
    pub body_len: Option<u64>,
    pub body_truncated: bool,
    pub content_encoding: Option<String>,
    /// Whether the body was compared as JSON.
    pub json: bool,
    pub error: Option<String>,
}

/// Written once when the agent stops.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub started_ns: Option<u64>,
    pub ended_ns: Option<u64>,
    pub outcomes: BTreeMap<String, u64>,
    pub endpoints: Vec<SummaryEndpoint>,
    pub diffs_written: Option<u64>,
    pub diffs_dropped: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SummaryEndpoint {
    pub endpoint: String,
    pub target: String,
    /// Only the non-zero outcomes.
    pub outcomes: BTreeMap<String, u64>,
    pub production_latency: Option<Latency>,
    pub staging_latency: Option<Latency>,
}

/// Latency percentiles of one endpoint on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What one line of a diffs file is, for the reader.
#[derive(Debug)]
pub enum Parsed {
    Line(Line),
    /// Not JSON, not an object with a known shape, or fields of the wrong type.
    Invalid,
    /// Only whitespace: not counted as anything.
    Blank,
}

/// Parses one line (without its newline).
pub fn parse(line: &[u8]) -> Parsed {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Blank;
    }
    match serde_json::from_slice::<Line>(line) {
        Ok(l) => Parsed::Line(l),
        Err(_) => Parsed::Invalid,
    }
}
