//! What the agent shows about itself: Prometheus metrics on `GOR_METRICS_ADDR`, a
//! one-line summary in the log every `GOR_STATS_INTERVAL`, and the latency histograms
//! (recorded by the stages, see the `histogram` module) beside them.
//!
//! The counters have one source: the [`Report`] the pipeline and the source build from
//! every stage's own counters (its JSON is the stats file). The pipeline publishes that report, with its histograms, into a
//! [`Metrics`] handle about once a second; a scrape renders the latest one through the
//! [`catalog`], which names each series, its help text and where in the report it lives.
//! Nothing on the capture path waits for a scrape.

pub mod catalog;
pub mod process;
pub mod report;
pub mod server;
pub mod summary;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};
use serde_json::Value;
use tracing::{debug, info, warn};

pub use crate::histogram::{Histograms, Series};
pub use report::Report;

/// The latest report and histograms, shared by the pipeline (writer) and the metrics
/// endpoint (reader).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    latest: Arc<Mutex<Option<Snapshot>>>,
}

#[derive(Debug)]
struct Snapshot {
    report: Report,
    histograms: Histograms,
}

impl Metrics {
    /// Replaces what the next scrape shows.
    pub fn publish(&self, report: Report, histograms: Histograms) {
        let snapshot = Snapshot { report, histograms };
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }

    /// The Prometheus text exposition (format 0.0.4) of the latest snapshot, with the
    /// process' own figures read now.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing into a String cannot fail; a series that would not encode is skipped.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let guard = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        // Before the first report, the process' own figures only.
        if let Some(snapshot) = guard.as_ref() {
            catalog::encode(&snapshot.report, &snapshot.histograms, &mut encoder)?;
        }
        process::encode(&mut encoder)
    }
}

/// Where the counters go: the metrics endpoint (about once a second), and every
/// `GOR_STATS_INTERVAL` the summary line in the log and the stats file. Live capture and
/// file replay report through one of these.
pub struct Reporter {
    metrics: Option<Metrics>,
    stats_file: Option<PathBuf>,
    started: Instant,
    /// The last report logged (as JSON, the form the summary reads), and when: the
    /// summary's rates are since then.
    last: Option<(Instant, Value)>,
}

impl Reporter {
    /// Starts the metrics endpoint if one is configured. Must run inside the runtime.
    /// `metrics_addr` is `GOR_METRICS_ADDR`, `stats_file` is `GOR_STATS_FILE`.
    pub async fn start(
        metrics_addr: Option<std::net::SocketAddr>,
        stats_file: Option<PathBuf>,
    ) -> anyhow::Result<Reporter> {
        let mut reporter = Reporter::offline(stats_file);
        if let Some(addr) = metrics_addr {
            let m = Metrics::default();
            server::start(addr, m.clone()).await?;
            reporter.metrics = Some(m);
        }
        Ok(reporter)
    }

    /// A reporter without the metrics endpoint (for work that ends in seconds): the log
    /// and the stats file only.
    pub fn offline(stats_file: Option<PathBuf>) -> Reporter {
        Reporter {
            metrics: None,
            stats_file,
            started: Instant::now(),
            last: None,
        }
    }

    /// Whether anyone reads [`Reporter::publish`] (so the caller can skip building it).
    pub fn wants_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// What the next scrape shows.
    pub fn publish(&self, report: Report, histograms: Histograms) {
        if let Some(m) = &self.metrics {
            m.publish(report, histograms);
        }
    }

    /// The periodic report: the summary line, the full counters at debug level, the
    /// stats file.
    pub fn log(&mut self, report: &Report) {
        let json = report.to_json();
        info!("stats: {}", self.summary(&json));
        debug!(counters = %json, "counters");
        write_stats(self.stats_file.as_deref(), &json);
        self.last = Some((Instant::now(), json));
    }

    /// The final report, at exit: the summary, with rates over the whole run, and the
    /// full counters.
    pub fn finish(&mut self, report: &Report) {
        self.last = None;
        let json = report.to_json();
        info!("final stats: {}", self.summary(&json));
        info!(counters = %json, "final counters");
        write_stats(self.stats_file.as_deref(), &json);
    }

    fn summary(&self, report: &Value) -> String {
        let (since, before) = match &self.last {
            Some((at, v)) => (*at, Some(v)),
            None => (self.started, None),
        };
        let secs = since.elapsed().as_secs_f64();
        summary::line(report, before, secs, process::rss_bytes())
    }
}

/// Writes the counters as JSON, atomically (a reader never sees half a file).
pub fn write_stats(file: Option<&Path>, report: &Value) {
    if let Some(path) = file {
        let tmp = path.with_extension("tmp");
        let res =
            std::fs::write(&tmp, report.to_string()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            warn!("writing the stats file {}: {e}", path.display());
        }
    }
}
