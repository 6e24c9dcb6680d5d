//! The one loop every source runs under: it owns the signals, the ticks, reporting,
//! sd_notify, shutdown and the middleware's return path, so a source only produces input.
//!
//! ```text
//!            ┌──────────── Driver::run ─────────────────────────────────────────────┐
//! Source ────┤ ready() ─> [room, for sources that can wait] ─> deliver(&mut Pipeline) │
//!  (TC ring, │ SIGINT/SIGTERM, exit-after ─> stop() ─> finish ─> close ─> final report│
//!   pcap,    │ 1 s tick: expiry, output flush, metrics │ stats tick: summary line   │
//!   files)   │ middleware answers ─> the rest of dispatch                           │
//!            └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A [`Source`] says which level it enters at ([`Level`]: TCP segments, ordered streams
//! or whole messages), which clock its timestamps are in, and whether it can wait for
//! room when the stages after framing are full (files can; capture never waits, it drops
//! and counts). Its `ready` must be cancel-safe: the loop drops it whenever a signal,
//! a tick or a middleware answer comes first, and calls it again.

mod signals;

use std::future::Future;
use std::time::Duration;

use crate::{
    clock::Clock,
    config::Config,
    metrics::{Report, Reporter},
    pipeline::Pipeline,
};
use anyhow::Result;

pub use signals::StopSignals;

/// Where a source's input enters the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// TCP segments, in any order (TC ring buffer, pcap files): reassembled first.
    Segments,
    /// Ordered byte streams per connection (TLS plaintext): framed.
    Streams,
    /// Whole HTTP messages (saved traffic, a message broker): dispatched as they are.
    Messages,
}

/// What a source's wait found.
pub enum Ready {
    /// Input to deliver.
    Input,
    /// The source is exhausted (end of the files).
    Done,
}

/// How a source meets full stages after framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    /// Never waits: what does not fit is dropped and counted (capture).
    Never,
    /// Waits for room in the middleware's queue.
    ForMiddleware,
    /// Waits for room in the middleware's queue and in mirroring's.
    ForMiddlewareAndStaging,
}

/// A producer of input for the pipeline; see the module documentation.
pub trait Source {
    /// Its name in logs.
    fn name(&self) -> &'static str;

    fn level(&self) -> Level;

    /// The clock of its timestamps.
    fn clock(&self) -> Clock;

    /// Waits until there is input (or the source is done). Cancel-safe.
    fn ready(&mut self) -> impl Future<Output = Result<Ready>> + Send;

    /// Hands what is ready to the pipeline, at the source's level, without waiting.
    fn deliver(&mut self, pipeline: &mut Pipeline);

    fn waits(&self) -> Waits {
        Waits::Never
    }

    /// The source's time now: what idle connections expire against.
    fn now_ns(&self) -> u64 {
        self.clock().now_ns()
    }

    /// Stops producing (programs detached, readers told to stop), then delivers whatever
    /// was already taken in, without waiting: nothing captured is left behind.
    fn stop(&mut self, pipeline: &mut Pipeline);

    /// How often [`Source::chores`] runs, if the source has periodic work of its own.
    fn chores_every(&self) -> Option<Duration> {
        None
    }

    /// Periodic work of the source's own (a progress bar).
    fn chores(&mut self, _pipeline: &Pipeline) {}

    /// Called once after the last input, before the stages close.
    fn before_close(&mut self, _pipeline: &Pipeline) {}

    /// Called once after the stages closed (every answer taken), before the final
    /// report: a source that acknowledges what it delivered settles the rest here.
    fn after_close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Adds the source's counters to a report (its sections: `kernel` and `records` for
    /// captures, `input` for saved traffic).
    fn report(&self, report: &mut Report);
}

/// Runs sources; holds what outlives one: the reporter (and its metrics endpoint).
pub struct Driver {
    reporter: Reporter,
    stats_interval: Duration,
    shutdown_grace: Duration,
    /// `GOR_EXIT_AFTER`: the run stops then, as on SIGTERM.
    exit_after: Option<Duration>,
}

impl Driver {
    /// Starts the metrics endpoint if one is configured: before anything is attached, so
    /// an address that is taken fails the start.
    pub async fn start(cfg: &Config) -> Result<Driver> {
        Ok(Driver::with(
            cfg,
            Reporter::start(cfg.log.metrics_addr, cfg.outputs.stats_file.clone()).await?,
        ))
    }

    /// Without the metrics endpoint, for work that ends in seconds (a pcap file): the log
    /// and the stats file only.
    pub fn offline(cfg: &Config) -> Driver {
        Driver::with(cfg, Reporter::offline(cfg.outputs.stats_file.clone()))
    }

    fn with(cfg: &Config, reporter: Reporter) -> Driver {
        Driver {
            reporter,
            stats_interval: cfg.outputs.stats_interval,
            shutdown_grace: cfg.mirror.shutdown_grace,
            exit_after: cfg.outputs.exit_after,
        }
    }

    /// Runs `source` into `pipeline` until the source is done, SIGINT/SIGTERM or
    /// `GOR_EXIT_AFTER`, then ends everything in order and reports the final counts.
    pub async fn run<S: Source + Send>(
        mut self,
        mut source: S,
        mut pipeline: Pipeline,
    ) -> Result<()> {
        let mut stop = StopSignals::new(self.exit_after)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats_tick = tokio::time::interval(self.stats_interval);
        stats_tick.tick().await;
        let chores_every = source.chores_every();
        let mut chores = tokio::time::interval(chores_every.unwrap_or(Duration::from_secs(3600)));
        chores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::debug!(source = source.name(), level = ?source.level(), clock = source.clock().as_str(), "running");
        crate::notify::ready();

        'run: loop {
            tokio::select! {
                _ = stop.recv() => break,
                ready = source.ready() => match ready? {
                    Ready::Done => break,
                    Ready::Input => {
                        let staging = match source.waits() {
                            Waits::Never => None,
                            Waits::ForMiddleware => Some(false),
                            Waits::ForMiddlewareAndStaging => Some(true),
                        };
                        if let Some(staging) = staging {
                            tokio::select! {
                                _ = pipeline.dispatch.room(staging) => {}
                                _ = stop.recv() => break 'run,
                            }
                        }
                        source.deliver(&mut pipeline);
                    }
                },
                Some(b) = pipeline.dispatch.next_back() => pipeline.dispatch.back(b),
                _ = tick.tick() => {
                    pipeline.tick(source.now_ns());
                    if self.reporter.wants_metrics() {
                        self.reporter.publish(report(&source, &pipeline), pipeline.dispatch.histograms());
                    }
                }
                _ = stats_tick.tick() => self.reporter.log(&report(&source, &pipeline)),
                _ = chores.tick(), if chores_every.is_some() => source.chores(&pipeline),
            }
        }

        crate::notify::stopping();
        source.stop(&mut pipeline);
        pipeline.finish(source.now_ns());
        source.before_close(&pipeline);
        let closed = pipeline.close(self.shutdown_grace).await;
        source.after_close().await;
        let mut last = pipeline.report_with(&closed);
        source.report(&mut last);
        self.reporter.finish(&last);
        Ok(())
    }
}

fn report<S: Source>(source: &S, pipeline: &Pipeline) -> Report {
    let mut report = pipeline.report();
    source.report(&mut report);
    report
}

#[cfg(test)]
mod tests;
