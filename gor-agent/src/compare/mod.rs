//! Production against staging (`GOR_COMPARE=1`): for each mirrored request whose
//! production response was captured, staging's answer is compared with it, counted by
//! outcome and endpoint, and each difference written to the diffs file.
//!
//! ```text
//! captured response ─┐
//! mirrored request ──┼─> pairing (by id, any order) ─> compare ─> tally, diffs file
//! staging's answer ──┘
//! ```
//!
//! How two responses are compared is pure and lives in [`diff`] (with [`body`] decoding,
//! [`headers`] and [`json`] rules and [`endpoint`] names). The stage, [`Comparison`],
//! pairs the three sides in whatever order they come (a response can skip the middleware
//! its request went through; staging may answer first), holds them within a count, a
//! byte budget and a timeout, and counts whatever it gives up.

pub mod body;
mod diff;
mod diffs;
pub mod endpoint;
pub mod headers;
pub mod json;
mod pairing;
pub mod settings;
mod tally;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clock::ToWall;
use crate::histogram::Series;
use crate::http::{HttpMessage, Kind};
use crate::mirror::{Accepted, FailureKind, Outcome as Answer, StagingResult};

pub use body::DecodedBody;
pub use diff::{compare, Change, DiffKind, Difference, Rules, Verdict};
pub use diffs::DiffsStats;
pub use endpoint::Endpoints;
pub use headers::IgnoreHeaders;
pub use json::JsonPaths;
pub use settings::CompareConfig;
pub use tally::{EndpointReport, Outcome, Outcomes};

use pairing::{Exchange, Pending, Request};
use tally::Tally;

/// The comparison's counters, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompareReport {
    pub outcomes: Outcomes,
    /// Per endpoint and target, the most results first.
    pub endpoints: Vec<EndpointReport>,
    /// Gauge: exchanges waiting for a response.
    pub pending: usize,
    /// Gauge: bytes they hold.
    pub pending_bytes: usize,
    /// Production responses to requests that were not mirrored (filtered, sampled out,
    /// rate-limited, dropped before staging): nothing to compare them with.
    pub not_mirrored: u64,
    /// Staging's answers that came after their exchange was given up.
    pub late: u64,
    pub diffs: Option<DiffsStats>,
}

/// The stage; see the module documentation.
pub struct Comparison {
    cfg: CompareConfig,
    endpoints: Endpoints,
    pending: Pending,
    tally: Tally,
    diffs: Option<diffs::DiffsFile>,
    /// Whether a production response may come before its request (the request went
    /// through the middleware, the response did not): then it waits for it.
    responses_first: bool,
    not_mirrored: u64,
    late: u64,
    to_wall: ToWall,
}

impl Comparison {
    /// `targets`: the staging targets' names, by index.
    pub fn new(
        cfg: CompareConfig,
        targets: Vec<String>,
        responses_first: bool,
        to_wall: ToWall,
    ) -> std::io::Result<Comparison> {
        let diffs = match &cfg.diffs_file {
            Some(path) => Some(diffs::DiffsFile::create(path, cfg.diffs_examples)?),
            None => None,
        };
        Ok(Comparison {
            endpoints: Endpoints::new(cfg.max_endpoints),
            pending: Pending::new(cfg.max_pending, cfg.max_pending_bytes),
            tally: Tally::new(targets),
            diffs,
            responses_first,
            not_mirrored: 0,
            late: 0,
            to_wall,
            cfg,
        })
    }

    /// A request the mirror queued for the `accepted` targets.
    pub fn request(&mut self, msg: &HttpMessage, accepted: Accepted) {
        let Kind::Request { method, target, .. } = &msg.kind else {
            return;
        };
        if !accepted.any() {
            return;
        }
        let endpoint = self.endpoints.name(method, target);
        let request = Request {
            endpoint,
            message: msg.clone(),
        };
        let now = Instant::now();
        self.pending.update(&msg.id, now, true, |ex| {
            ex.request = Some(request);
            ex.expected = accepted;
        });
        self.settle(&msg.id);
        self.enforce_limits();
    }

    /// A response production gave (captured, or read from saved traffic).
    pub fn production(&mut self, msg: &HttpMessage) {
        if !matches!(msg.kind, Kind::Response { .. }) {
            return;
        }
        let create = self.responses_first;
        let now = Instant::now();
        let known = self
            .pending
            .update(&msg.id, now, create, |ex| {
                if ex.production.is_none() {
                    ex.production = Some(msg.clone());
                }
            })
            .is_some();
        if !known {
            self.not_mirrored += 1;
            return;
        }
        self.settle(&msg.id);
        self.enforce_limits();
    }

    /// Staging's answer to a mirrored request on one target.
    pub fn staging(&mut self, result: StagingResult) {
        let id = result.id.clone();
        if !self.pending.contains(&id) {
            self.late += 1;
            return;
        }
        let now = Instant::now();
        self.pending
            .update(&id, now, false, |ex| ex.staging.push(result));
        self.settle(&id);
        self.enforce_limits();
    }

    /// Compares what can be compared in the exchange of `id`, and forgets it once done.
    fn settle(&mut self, id: &crate::envelope::MessageId) {
        let Some(ex) = self.pending.get_mut(id) else {
            return;
        };
        let Some(request) = &ex.request else { return };
        let mut waiting = Vec::new();
        for r in std::mem::take(&mut ex.staging) {
            match (&r.outcome, &ex.production) {
                (Answer::Failure(kind), _) => {
                    record_failure(
                        &mut self.tally,
                        &mut self.diffs,
                        &self.to_wall,
                        request,
                        &r,
                        *kind,
                    );
                    ex.expected = ex.expected.without(r.target);
                }
                (Answer::Response(_), Some(production)) => {
                    record_comparison(
                        &self.cfg.rules,
                        &mut self.tally,
                        &mut self.diffs,
                        &self.to_wall,
                        request,
                        production,
                        &r,
                    );
                    ex.expected = ex.expected.without(r.target);
                }
                (Answer::Response(_), None) => waiting.push(r),
            }
        }
        ex.staging = waiting;
        if ex.is_done() {
            self.pending.remove(id);
        } else {
            // The byte count follows what was taken out.
            self.pending.update(id, Instant::now(), false, |_| ());
        }
    }

    fn enforce_limits(&mut self) {
        while let Some(ex) = self.pending.pop_over_limits() {
            self.give_up(ex, Outcome::Evicted);
        }
    }

    /// Counts what an exchange given up still waited for.
    fn give_up(&mut self, ex: Exchange, why: Outcome) {
        let Some(request) = &ex.request else {
            // A response whose request never came: it was not mirrored.
            if ex.production.is_some() {
                self.not_mirrored += 1;
            }
            return;
        };
        let e = &request.endpoint;
        // Staging answered, production's response never came.
        for r in &ex.staging {
            let o = if why == Outcome::Evicted {
                why
            } else {
                Outcome::NoProductionResponse
            };
            self.tally.count(e, r.target, o, 1);
        }
        // Targets that never answered.
        for t in 0..crate::mirror::MAX_TARGETS {
            if ex.expected.contains(t) && !ex.staging.iter().any(|r| r.target == t) {
                let o = if why == Outcome::Evicted || ex.production.is_some() {
                    why
                } else {
                    // Neither production nor staging answered in time.
                    Outcome::NoProductionResponse
                };
                self.tally.count(e, t, o, 1);
            }
        }
    }

    /// About once a second: gives up exchanges older than the timeout, flushes the file.
    pub fn tick(&mut self) {
        let Some(deadline) = Instant::now().checked_sub(self.cfg.timeout) else {
            return;
        };
        while let Some(ex) = self.pending.pop_older(deadline) {
            self.give_up(ex, Outcome::Expired);
        }
        if let Some(d) = &mut self.diffs {
            d.flush();
        }
    }

    /// At the end (after mirroring's last answers): gives up what still waits and writes
    /// the totals.
    pub fn finish(&mut self) {
        for ex in self.pending.drain() {
            self.give_up(ex, Outcome::Expired);
        }
        let endpoints = self.tally.endpoints();
        if let Some(d) = &mut self.diffs {
            d.finish(&self.tally.total, &endpoints);
        }
    }

    pub fn report(&self) -> CompareReport {
        CompareReport {
            outcomes: self.tally.total,
            endpoints: self.tally.endpoints(),
            pending: self.pending.len(),
            pending_bytes: self.pending.bytes(),
            not_mirrored: self.not_mirrored,
            late: self.late,
            diffs: self.diffs.as_ref().map(|d| d.stats),
        }
    }

    /// Production's and staging's latency per endpoint and target.
    pub fn histograms(&self) -> Vec<Series> {
        self.tally.histograms()
    }
}

fn record_failure(
    tally: &mut Tally,
    diffs: &mut Option<diffs::DiffsFile>,
    to_wall: &ToWall,
    request: &Request,
    r: &StagingResult,
    kind: FailureKind,
) {
    let e = &request.endpoint;
    tally.count(e, r.target, Outcome::StagingError, 1);
    let Some(file) = diffs else { return };
    if !file.wants(e, r.target, Outcome::StagingError) {
        return;
    }
    let error = failure_name(kind);
    let mut line = line_head(to_wall, request, r, Outcome::StagingError);
    line["kinds"] = json!(["staging_error"]);
    line["differences"] = json!([{"kind": "staging_error", "error": error}]);
    line["differences_truncated"] = false.into();
    line["staging"] = json!({"error": error, "latency_ns": r.latency.as_nanos() as u64});
    file.write(&line);
}

fn record_comparison(
    rules: &Rules,
    tally: &mut Tally,
    diffs: &mut Option<diffs::DiffsFile>,
    to_wall: &ToWall,
    request: &Request,
    production: &HttpMessage,
    r: &StagingResult,
) {
    let Answer::Response(staging) = &r.outcome else {
        return;
    };
    let e = &request.endpoint;
    let verdict = compare(
        production,
        &staging.message,
        !staging.body_truncated(),
        rules,
    );
    let outcome = match verdict.outcome() {
        Some(DiffKind::Status) => Outcome::Status,
        Some(DiffKind::Body) => Outcome::Body,
        Some(DiffKind::Headers) => Outcome::Headers,
        None if !verdict.body_compared => Outcome::Skipped,
        None => Outcome::Match,
    };
    tally.count(e, r.target, outcome, 1);
    tally.latency(
        e,
        r.target,
        production.latency_ns.map(Duration::from_nanos),
        r.latency,
    );
    if !outcome.is_difference() {
        return;
    }
    let Some(file) = diffs else { return };
    if !file.wants(e, r.target, outcome) {
        return;
    }
    let mut line = line_head(to_wall, request, r, outcome);
    line["kinds"] = verdict
        .kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .into();
    line["differences"] = verdict
        .differences
        .iter()
        .map(Difference::to_json)
        .collect::<Vec<_>>()
        .into();
    line["differences_truncated"] = verdict.truncated.into();
    line["production"] = response_json(
        production,
        production.latency_ns.unwrap_or(0),
        &verdict.production,
        verdict.production_json,
    );
    line["staging"] = response_json(
        &staging.message,
        r.latency.as_nanos() as u64,
        &verdict.staging,
        verdict.staging_json,
    );
    file.write(&line);
}

/// The fields every difference line has: what, where, and the request.
fn line_head(to_wall: &ToWall, request: &Request, r: &StagingResult, outcome: Outcome) -> Value {
    let m = &request.message;
    let (method, target) = match &m.kind {
        Kind::Request { method, target, .. } => (method.as_str(), target.as_str()),
        Kind::Response { .. } => ("", ""),
    };
    let ts = (i128::from(m.first_ts_ns) + to_wall.offset_ns(m.clock)).max(0) as u64;
    let body = m.body();
    json!({
        "type": "difference",
        "id": m.id.to_string(),
        "ts_ns": ts,
        "target": r.target_name,
        "endpoint": &*request.endpoint,
        "outcome": outcome.as_str(),
        "request": {
            "method": method,
            "target": target,
            "head": diffs::head_text(&m.raw, m.body_offset),
            "body": diffs::body_b64(&body),
            "body_len": body.len(),
            "body_truncated": body.len() > diffs::BODY_LIMIT,
        },
    })
}

fn response_json(m: &HttpMessage, latency_ns: u64, body: &DecodedBody, json_body: bool) -> Value {
    let status = match &m.kind {
        Kind::Response { status, .. } => *status,
        Kind::Request { .. } => 0,
    };
    json!({
        "status": status,
        "latency_ns": latency_ns,
        "head": diffs::head_text(&m.raw, m.body_offset),
        "body": diffs::body_b64(&body.bytes),
        "body_len": body.len,
        "body_truncated": !body.complete || body.bytes.len() > diffs::BODY_LIMIT,
        "content_encoding": body.encoding,
        "json": json_body,
    })
}

fn failure_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Connect => "connect",
        FailureKind::Tls => "tls",
        FailureKind::Timeout => "timeout",
        FailureKind::Write => "write",
        FailureKind::Closed => "closed",
        FailureKind::BadResponse => "bad_response",
    }
}

#[cfg(test)]
mod stage_tests;
