//! What the comparison counted: one outcome per exchange and target, in total and per
//! endpoint, with production's and staging's latency per endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::histogram::{Histogram, LatencySummary, Series};

/// How one mirrored exchange on one target ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Staging's response equals production's, by the rules.
    Match,
    /// The status codes differ.
    Status,
    /// The decoded bodies differ (status equal).
    Body,
    /// Only headers differ.
    Headers,
    /// Staging gave no response (connect, TLS, timeout, reset, bad response).
    StagingError,
    /// Staging answered, production's response was never captured within the timeout.
    NoProductionResponse,
    /// Production's response waited for staging's beyond the timeout.
    Expired,
    /// Given up because the pending table was full.
    Evicted,
    /// Status and headers equal, the body too long to compare.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Match,
        Outcome::Status,
        Outcome::Body,
        Outcome::Headers,
        Outcome::StagingError,
        Outcome::NoProductionResponse,
        Outcome::Expired,
        Outcome::Evicted,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::Status => "status",
            Outcome::Body => "body",
            Outcome::Headers => "headers",
            Outcome::StagingError => "staging_error",
            Outcome::NoProductionResponse => "no_production_response",
            Outcome::Expired => "expired",
            Outcome::Evicted => "evicted",
            Outcome::Skipped => "skipped",
        }
    }

    /// A difference worth a line in the diffs file.
    pub fn is_difference(self) -> bool {
        matches!(
            self,
            Outcome::Status | Outcome::Body | Outcome::Headers | Outcome::StagingError
        )
    }
}

/// Counts by outcome (the JSON names are [`Outcome::as_str`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    #[serde(rename = "match")]
    pub matched: u64,
    pub status: u64,
    pub body: u64,
    pub headers: u64,
    pub staging_error: u64,
    pub no_production_response: u64,
    pub expired: u64,
    pub evicted: u64,
    pub skipped: u64,
}

impl Outcomes {
    pub fn add(&mut self, o: Outcome, n: u64) {
        *self.slot(o) += n;
    }

    pub fn get(&self, o: Outcome) -> u64 {
        let mut c = *self;
        *c.slot(o)
    }

    fn slot(&mut self, o: Outcome) -> &mut u64 {
        match o {
            Outcome::Match => &mut self.matched,
            Outcome::Status => &mut self.status,
            Outcome::Body => &mut self.body,
            Outcome::Headers => &mut self.headers,
            Outcome::StagingError => &mut self.staging_error,
            Outcome::NoProductionResponse => &mut self.no_production_response,
            Outcome::Expired => &mut self.expired,
            Outcome::Evicted => &mut self.evicted,
            Outcome::Skipped => &mut self.skipped,
        }
    }

    /// The non-zero counts, by name.
    pub fn nonzero(&self) -> serde_json::Map<String, serde_json::Value> {
        Outcome::ALL
            .iter()
            .filter(|&&o| self.get(o) > 0)
            .map(|&o| (o.as_str().to_string(), self.get(o).into()))
            .collect()
    }
}

/// One endpoint on one target.
#[derive(Default)]
struct Endpoint {
    outcomes: Outcomes,
    production: Histogram,
    staging: Histogram,
}

/// One endpoint's line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    pub target: String,
    pub outcomes: Outcomes,
    pub production_latency: LatencySummary,
    pub staging_latency: LatencySummary,
}

/// The counts, in total and by endpoint and target.
pub(super) struct Tally {
    targets: Vec<String>,
    pub total: Outcomes,
    endpoints: HashMap<(Arc<str>, usize), Endpoint>,
}

impl Tally {
    pub fn new(targets: Vec<String>) -> Tally {
        Tally {
            targets,
            total: Outcomes::default(),
            endpoints: HashMap::new(),
        }
    }

    pub fn target_name(&self, target: usize) -> &str {
        self.targets.get(target).map_or("", String::as_str)
    }

    /// Counts an outcome; the endpoint map is bounded by the endpoints' own bound.
    pub fn count(&mut self, endpoint: &Arc<str>, target: usize, o: Outcome, n: u64) {
        if n == 0 {
            return;
        }
        self.total.add(o, n);
        self.endpoint(endpoint, target).outcomes.add(o, n);
    }

    /// Both latencies of a compared exchange.
    pub fn latency(
        &mut self,
        endpoint: &Arc<str>,
        target: usize,
        production: Option<Duration>,
        staging: Duration,
    ) {
        let e = self.endpoint(endpoint, target);
        if let Some(p) = production {
            e.production.record(p);
        }
        e.staging.record(staging);
    }

    fn endpoint(&mut self, endpoint: &Arc<str>, target: usize) -> &mut Endpoint {
        self.endpoints
            .entry((endpoint.clone(), target))
            .or_default()
    }

    /// Per endpoint and target, the most results first.
    pub fn endpoints(&self) -> Vec<EndpointReport> {
        let mut out: Vec<EndpointReport> = self
            .endpoints
            .iter()
            .map(|((name, target), e)| EndpointReport {
                endpoint: name.to_string(),
                target: self.target_name(*target).to_string(),
                outcomes: e.outcomes,
                production_latency: e.production.snapshot().summary(),
                staging_latency: e.staging.snapshot().summary(),
            })
            .collect();
        out.sort_by(|a, b| {
            let n =
                |r: &EndpointReport| Outcome::ALL.iter().map(|&o| r.outcomes.get(o)).sum::<u64>();
            n(b).cmp(&n(a))
                .then_with(|| a.endpoint.cmp(&b.endpoint))
                .then_with(|| a.target.cmp(&b.target))
        });
        out
    }

    /// The latency histograms, labelled with endpoint, target and side.
    pub fn histograms(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for ((name, target), e) in &self.endpoints {
            for (side, h) in [("production", &e.production), ("staging", &e.staging)] {
                out.push(Series {
                    labels: vec![
                        ("endpoint", name.to_string()),
                        ("target", self.target_name(*target).to_string()),
                        ("side", side.to_string()),
                    ],
                    histogram: h.snapshot(),
                });
            }
        }
        out
    }
}
