//! Folds the lines of one or more diffs files into a [`Report`]: totals, the endpoints
//! with differences and what differed there, a few examples of each, and latency. Lines
//! in, a report out, no IO: the caller reads the files.
//!
//! Totals come from the summary lines (added up over files and runs). A run that has no
//! summary (the agent was killed) is counted from its difference lines instead, which
//! know nothing of the exchanges that matched; [`Report::runs_without_summary`] says how
//! many such runs there were so the page can say so. A run is what a file holds up to
//! its summary line; difference lines after a file's last summary are a run of their own.

use std::collections::{BTreeMap, HashMap};

use super::model::{self, Difference, Item, Latency, Line, Parsed, Summary};

/// Examples kept per endpoint and kind of difference.
pub const EXAMPLES_PER_KIND: usize = 3;

/// The order outcomes are shown in: the spec's, then any other alphabetically.
pub const OUTCOME_ORDER: &[&str] = &[
    "match",
    "status",
    "body",
    "headers",
    "staging_error",
    "no_production_response",
    "expired",
    "evicted",
    "skipped",
];

/// The order kinds are shown in.
pub const KIND_ORDER: &[&str] = &["status", "headers", "body", "staging_error"];

/// What one file held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileStats {
    pub name: String,
    pub differences: u64,
    pub summaries: u64,
    /// Lines that did not parse (not JSON, wrong field types, no `"type"`).
    pub invalid_lines: u64,
    /// Lines with a `"type"` this reader does not know.
    pub unknown_lines: u64,
}

/// Where a latency figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencySource {
    /// The summary lines: every exchange of the endpoint.
    Summary,
    /// Difference lines only (no summary): the exchanges that differed.
    Differences,
    /// Both, from different runs.
    Mixed,
}

impl LatencySource {
    pub fn name(self) -> &'static str {
        match self {
            LatencySource::Summary => "summary",
            LatencySource::Differences => "differences",
            LatencySource::Mixed => "mixed",
        }
    }
}

/// Production's and staging's latency for one endpoint and target.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub endpoint: String,
    pub target: String,
    pub production: Option<Latency>,
    pub staging: Option<Latency>,
    pub source: LatencySource,
    /// Combined from several runs: p50 is their count-weighted mean and p99 their
    /// maximum, since percentiles of separate runs do not add up.
    pub approximate: bool,
}

/// A count per name, shown by count, most first.
pub type Counts = BTreeMap<String, u64>;

/// One kept example and the kinds it is an example of.
#[derive(Debug, Clone)]
pub struct Example {
    pub line: Difference,
    pub for_kinds: Vec<String>,
}

/// The differences of one endpoint at one target.
#[derive(Debug, Clone, Default)]
pub struct EndpointDiffs {
    pub endpoint: String,
    pub target: String,
    /// Difference lines.
    pub count: u64,
    pub kinds: Counts,
    pub json_paths: Counts,
    pub headers: Counts,
    pub staging_errors: Counts,
    /// Lines whose list of differences was cut by the writer.
    pub truncated: u64,
    pub examples: Vec<Example>,
    examples_per_kind: HashMap<String, usize>,
}

impl EndpointDiffs {
    fn add(&mut self, line: Difference) {
        self.count += 1;
        let kinds: Vec<String> = line.kinds().into_iter().map(str::to_owned).collect();
        for k in &kinds {
            *self.kinds.entry(k.clone()).or_default() += 1;
        }
        for p in line.json_paths() {
            *self.json_paths.entry(p.to_owned()).or_default() += 1;
        }
        for h in line.header_names() {
            *self.headers.entry(h).or_default() += 1;
        }
        for d in &line.differences {
            if let Item::StagingError { error } = d {
                *self.staging_errors.entry(error.clone()).or_default() += 1;
            }
        }
        self.truncated += u64::from(line.differences_truncated);
        let for_kinds: Vec<String> = kinds
            .into_iter()
            .filter(|k| {
                let n = self.examples_per_kind.entry(k.clone()).or_default();
                let wanted = *n < EXAMPLES_PER_KIND;
                *n += usize::from(wanted);
                wanted
            })
            .collect();
        // Only the examples keep their bodies: the rest of the file is folded into counts.
        if !for_kinds.is_empty() {
            self.examples.push(Example { line, for_kinds });
        }
    }
}

/// Everything the page and the text summary show.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub files: Vec<FileStats>,
    /// Outcome totals, in [`OUTCOME_ORDER`].
    pub outcomes: Vec<(String, u64)>,
    /// Runs that had a summary line.
    pub runs_with_summary: u64,
    /// Runs (files, or the part of a file after its last summary) that had difference
    /// lines but no summary: their outcomes were counted from the difference lines.
    pub runs_without_summary: u64,
    pub diffs_written: Option<u64>,
    pub diffs_dropped: Option<u64>,
    pub started_ns: Option<u64>,
    pub ended_ns: Option<u64>,
    /// Endpoints with differences, most first.
    pub endpoints: Vec<EndpointDiffs>,
    pub latency: Vec<LatencyRow>,
}

impl Report {
    pub fn differences(&self) -> u64 {
        self.endpoints.iter().map(|e| e.count).sum()
    }

    pub fn skipped_lines(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.invalid_lines + f.unknown_lines)
            .sum()
    }

    /// Whether every outcome total came from summary lines.
    pub fn totals_complete(&self) -> bool {
        self.runs_without_summary == 0 && self.runs_with_summary > 0
    }
}

/// Latency gathered for one endpoint: figures from summaries, raw samples from the
/// difference lines of runs without one.
#[derive(Debug, Default)]
struct LatencyParts {
    production: Vec<Latency>,
    staging: Vec<Latency>,
    from_summary: bool,
    from_differences: bool,
}

/// Difference lines not yet covered by a summary line.
#[derive(Debug, Default)]
struct PendingRun {
    lines: u64,
    outcomes: Counts,
    /// Latency samples in ns, per (endpoint, target).
    production_ns: HashMap<(String, String), Vec<u64>>,
    staging_ns: HashMap<(String, String), Vec<u64>>,
}

/// Folds lines into a [`Report`]: [`Aggregator::file`] before each file's lines,
/// [`Aggregator::line`] for each line, [`Aggregator::finish`] at the end.
#[derive(Debug, Default)]
pub struct Aggregator {
    files: Vec<FileStats>,
    outcomes: Counts,
    runs_with_summary: u64,
    runs_without_summary: u64,
    diffs_written: Option<u64>,
    diffs_dropped: Option<u64>,
    started_ns: Option<u64>,
    ended_ns: Option<u64>,
    endpoints: HashMap<(String, String), EndpointDiffs>,
    latency: HashMap<(String, String), LatencyParts>,
    pending: PendingRun,
}

impl Aggregator {
    /// Starts the next file.
    pub fn file(&mut self, name: &str) {
        self.end_run();
        self.files.push(FileStats {
            name: name.to_owned(),
            ..FileStats::default()
        });
    }

    /// One line of the current file, without its newline.
    pub fn line(&mut self, bytes: &[u8]) {
        if self.files.is_empty() {
            self.file("-");
        }
        let file = self.files.len() - 1;
        match model::parse(bytes) {
            Parsed::Blank => {}
            Parsed::Invalid => self.files[file].invalid_lines += 1,
            Parsed::Line(Line::Unknown) => self.files[file].unknown_lines += 1,
            Parsed::Line(Line::Summary(s)) => {
                self.files[file].summaries += 1;
                self.summary(s);
            }
            Parsed::Line(Line::Difference(d)) => {
                self.files[file].differences += 1;
                self.difference(*d);
            }
        }
    }

    fn summary(&mut self, s: Summary) {
        // The summary counts every exchange of its run, the pending lines' included.
        self.pending = PendingRun::default();
        self.runs_with_summary += 1;
        for (k, v) in s.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        add_opt(&mut self.diffs_written, s.diffs_written);
        add_opt(&mut self.diffs_dropped, s.diffs_dropped);
        self.started_ns = min_opt(self.started_ns, s.started_ns);
        self.ended_ns = self.ended_ns.max(s.ended_ns);
        for e in s.endpoints {
            let parts = self.latency.entry((e.endpoint, e.target)).or_default();
            parts.from_summary = true;
            parts.production.extend(e.production_latency);
            parts.staging.extend(e.staging_latency);
        }
    }

    fn difference(&mut self, d: Difference) {
        let key = (d.endpoint().to_owned(), d.target.clone());
        let run = &mut self.pending;
        run.lines += 1;
        if !d.outcome.is_empty() {
            *run.outcomes.entry(d.outcome.clone()).or_default() += 1;
        }
        if let Some(ns) = d.production.latency_ns {
            run.production_ns.entry(key.clone()).or_default().push(ns);
        }
        // A staging error's latency is how long until it failed, not a response time.
        if let (Some(ns), None) = (d.staging.latency_ns, &d.staging.error) {
            run.staging_ns.entry(key.clone()).or_default().push(ns);
        }
        let e = self
            .endpoints
            .entry(key)
            .or_insert_with_key(|(endpoint, target)| EndpointDiffs {
                endpoint: endpoint.clone(),
                target: target.clone(),
                ..EndpointDiffs::default()
            });
        e.add(d);
    }

    /// Counts the difference lines that no summary covered.
    fn end_run(&mut self) {
        let run = std::mem::take(&mut self.pending);
        if run.lines == 0 {
            return;
        }
        self.runs_without_summary += 1;
        for (k, v) in run.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (key, ns) in run.production_ns {
            let parts = self.latency.entry(key).or_default();
            parts.from_differences = true;
            parts.production.push(percentiles(ns));
        }
        for (key, ns) in run.staging_ns {
            let parts = self.latency.entry(key).or_default();
            parts.from_differences = true;
            parts.staging.push(percentiles(ns));
        }
    }

    pub fn finish(mut self) -> Report {
        self.end_run();
        let mut outcomes: Vec<(String, u64)> = self.outcomes.into_iter().collect();
        outcomes.sort_by_key(|(k, _)| {
            (
                OUTCOME_ORDER
                    .iter()
                    .position(|o| o == k)
                    .unwrap_or(OUTCOME_ORDER.len()),
                k.clone(),
            )
        });
        let mut endpoints: Vec<EndpointDiffs> = self.endpoints.into_values().collect();
        endpoints.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.endpoint, &a.target).cmp(&(&b.endpoint, &b.target)))
        });
        let mut latency: Vec<LatencyRow> = self
            .latency
            .into_iter()
            .map(|((endpoint, target), parts)| {
                let approximate = parts.production.len() > 1 || parts.staging.len() > 1;
                LatencyRow {
                    endpoint,
                    target,
                    production: combine(&parts.production),
                    staging: combine(&parts.staging),
                    source: match (parts.from_summary, parts.from_differences) {
                        (true, false) => LatencySource::Summary,
                        (false, _) => LatencySource::Differences,
                        (true, true) => LatencySource::Mixed,
                    },
                    approximate,
                }
            })
            .collect();
        let count = |r: &LatencyRow| r.production.map_or(0, |l| l.count);
        latency.sort_by(|a, b| {
            count(b)
                .cmp(&count(a))
                .then_with(|| (&a.endpoint, &a.target).cmp(&(&b.endpoint, &b.target)))
        });
        Report {
            files: self.files,
            outcomes,
            runs_with_summary: self.runs_with_summary,
            runs_without_summary: self.runs_without_summary,
            diffs_written: self.diffs_written,
            diffs_dropped: self.diffs_dropped,
            started_ns: self.started_ns,
            ended_ns: self.ended_ns,
            endpoints,
            latency,
        }
    }
}

fn add_opt(sum: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *sum = Some(sum.unwrap_or(0) + v);
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// p50 and p99 of samples in ns (nearest rank), in ms.
fn percentiles(mut ns: Vec<u64>) -> Latency {
    ns.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * ns.len() as f64).ceil() as usize).clamp(1, ns.len().max(1)) - 1;
        ns.get(i).map_or(0.0, |&v| v as f64 / 1e6)
    };
    Latency {
        count: ns.len() as u64,
        p50_ms: rank(0.50),
        p99_ms: rank(0.99),
    }
}

/// Several runs' figures as one: see [`LatencyRow::approximate`].
fn combine(parts: &[Latency]) -> Option<Latency> {
    match parts {
        [] => None,
        [one] => Some(*one),
        many => {
            let count: u64 = many.iter().map(|l| l.count).sum();
            let weighted: f64 = many.iter().map(|l| l.p50_ms * l.count as f64).sum();
            Some(Latency {
                count,
                p50_ms: if count == 0 {
                    0.0
                } else {
                    weighted / count as f64
                },
                p99_ms: many.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
            })
        }
    }
}

/// `counts` by count, most first, then by name.
pub fn by_count(counts: &Counts) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = counts.iter().map(|(k, &n)| (k.as_str(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    v
}

/// An endpoint's kinds in [`KIND_ORDER`], then any other.
pub fn kinds_in_order(counts: &Counts) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = counts.iter().map(|(k, &n)| (k.as_str(), n)).collect();
    v.sort_by_key(|(k, _)| {
        (
            KIND_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(KIND_ORDER.len()),
            *k,
        )
    });
    v
}
