//! `gor-agent replay`: saved traffic as a byte source. Records of `.gor` files (merged by
//! timestamp, see [`GorReader`]) are released at their original pace, scaled by the speed
//! factor, into the same path as captured messages ([`Dispatch`]: middleware, filters,
//! mirroring with its rate limit, message outputs).
//!
//! Reading and decompressing run on a thread of their own, a bounded number of records
//! ahead, so file IO never delays the release of a record that is due. Files carry no
//! connections: requests are sent in timestamp order on whichever staging connection is
//! idle ([`ANY_CONNECTION`]), so they reach staging in the recorded order while staging
//! keeps up, and concurrently (up to `GOR_WORKERS`) where they overlap.

mod progress;
mod schedule;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::agent::StopSignals;
use crate::config::{Config, FileInputConfig};
use crate::dispatch::Dispatch;
use crate::gorfile::{GorReader, Record};
use crate::metrics::Reporter;
use crate::replay::ANY_CONNECTION;

pub use progress::Progress;
pub use schedule::Schedule;

/// Records read ahead of the one being waited for.
const READ_AHEAD: usize = 1024;

/// How often outputs flush.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How often the loop looks for due [`Chores`] while it waits: as often as the bar is
/// redrawn.
const CHORES_EVERY: Duration = progress::BAR_REFRESH;

/// Records released back to back (already due) before the loop looks at signals again.
const BURST: u32 = 256;

/// What the reading thread sends.
enum Item {
    Record(Record),
    /// One pass over the files is done, with the number of damaged records skipped.
    EndOfPass {
        damaged: u64,
    },
    /// The files could not be opened again for another pass.
    Failed(String),
}

/// Counters of the input side.
#[derive(Debug, Default, serde::Serialize)]
struct InputStats {
    records: u64,
    requests: u64,
    responses: u64,
    /// Records whose payload is not a valid HTTP message: skipped.
    invalid: u64,
    /// Damaged records skipped by the reader (each logged with its file and offset).
    damaged: u64,
    passes: u64,
}

/// Replays the files of `cfg.input_file` until they are done (or, looping, until SIGINT
/// or SIGTERM), then closes the stages and reports the counters.
pub async fn run(cfg: Config) -> Result<()> {
    let input = cfg
        .input_file
        .clone()
        .context("replay needs an input file")?;
    let reader = GorReader::open(&input.pattern)
        .with_context(|| format!("opening saved traffic {}", input.pattern))?;
    info!(
        files = ?reader.files(),
        speed = input.speed,
        looping = input.looping,
        "replaying saved traffic"
    );
    let read = reader.bytes_read();
    let total = reader.total_bytes();
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let reading = std::thread::Builder::new()
        .name("gor-read".into())
        .spawn({
            let input = input.clone();
            let read = read.clone();
            move || read_files(reader, &input, &read, &tx)
        })
        .context("starting the reader thread")?;

    // Record timestamps are wall-clock already.
    let mut dispatch = Dispatch::new(&cfg, None, 0)?;
    let mut stop = StopSignals::new()?;
    let reporter = Reporter::start(cfg.log.metrics_addr, cfg.outputs.stats_file.clone()).await?;
    let progress = Progress::new(total, read, cfg.outputs.stats_interval);
    let mut chores = Chores::new(progress, reporter, &cfg);
    let mut chores_tick = tokio::time::interval(CHORES_EVERY);
    crate::notify::ready();

    let mut schedule = Schedule::new(input.speed, input.max_wait);
    let unpaced = input.speed.is_infinite();
    let mut stats = InputStats::default();
    let start = Instant::now();
    let mut burst = 0;
    'records: loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = stop.recv() => break,
        };
        let rec = match item {
            None => break,
            Some(Item::Record(rec)) => rec,
            Some(Item::EndOfPass { damaged }) => {
                stats.damaged += damaged;
                stats.passes += 1;
                if input.looping {
                    schedule.new_pass();
                    chores.progress.new_pass();
                }
                continue;
            }
            Some(Item::Failed(e)) => {
                warn!("{e}");
                break;
            }
        };
        let due = start + schedule.due(rec.timestamp_ns);
        if due > Instant::now() {
            burst = 0;
            let sleep = tokio::time::sleep_until(due);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = stop.recv() => break 'records,
                    Some(back) = dispatch.next_returned() => dispatch.returned(back),
                    _ = chores_tick.tick() => chores.run(&mut dispatch, &stats),
                }
            }
        } else {
            // Late (a burst in the recording, or a high speed): no timer, but the rest
            // gets its turn now and then.
            burst += 1;
            if burst >= BURST {
                burst = 0;
                tokio::task::yield_now().await;
                dispatch.poll_returned();
                chores.run(&mut dispatch, &stats);
            }
        }
        stats.records += 1;
        if rec.kind.is_response() {
            stats.responses += 1;
        } else {
            stats.requests += 1;
        }
        match rec.to_message(ANY_CONNECTION) {
            Ok(msg) => {
                // A file can wait for a slow middleware, and at `max` speed for staging;
                // capture cannot (it drops). At a set speed, requests staging cannot
                // take in time are dropped, to keep the recorded pace.
                tokio::select! {
                    _ = dispatch.room(unpaced) => {}
                    _ = stop.recv() => break,
                }
                dispatch.message(msg);
            }
            Err(e) => {
                stats.invalid += 1;
                if stats.invalid <= 10 || stats.invalid.is_power_of_two() {
                    warn!(id = %rec.id, invalid = stats.invalid, "skipping a record that is not a valid HTTP message: {e}");
                }
            }
        }
    }
    // Stop the reader (it may be blocked on a full channel) and collect what it counted.
    rx.close();
    while let Some(item) = rx.recv().await {
        if let Item::EndOfPass { damaged } = item {
            stats.damaged += damaged;
        }
    }
    if reading.join().is_err() {
        warn!("the reader thread panicked");
    }
    chores.progress.finish(stats.records, &dispatch);
    let closed = dispatch.close(cfg.mirror.shutdown_grace).await;
    let mut report = dispatch.report_with(&closed);
    report["input"] = json!(stats);
    chores.reporter.finish(&report);
    Ok(())
}

/// The reading thread: every pass over the files, records in timestamp order.
fn read_files(
    mut reader: GorReader,
    input: &FileInputConfig,
    read: &Arc<AtomicU64>,
    tx: &mpsc::Sender<Item>,
) {
    loop {
        for rec in reader.by_ref() {
            if tx.blocking_send(Item::Record(rec)).is_err() {
                return;
            }
        }
        let damaged = reader.damaged().len() as u64;
        if tx.blocking_send(Item::EndOfPass { damaged }).is_err() || !input.looping {
            return;
        }
        read.store(0, Ordering::Relaxed);
        reader = match GorReader::open_counting(&input.pattern, read.clone()) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Item::Failed(format!(
                    "opening {} again for the next pass: {e}",
                    input.pattern
                )));
                return;
            }
        };
    }
}

/// Periodic work, done whether the loop waits for a record or releases late ones back to
/// back: progress, flushing the outputs, publishing the counters.
struct Chores {
    progress: Progress,
    reporter: Reporter,
    last_flush: Instant,
    last_stats: Instant,
    stats_every: Duration,
}

impl Chores {
    fn new(progress: Progress, reporter: Reporter, cfg: &Config) -> Chores {
        Chores {
            progress,
            reporter,
            last_flush: Instant::now(),
            last_stats: Instant::now(),
            stats_every: cfg.outputs.stats_interval,
        }
    }

    /// Does what is due.
    fn run(&mut self, dispatch: &mut Dispatch, stats: &InputStats) {
        if self.progress.due() {
            self.progress.show(stats.records, dispatch);
        }
        let report = |dispatch: &Dispatch| {
            let mut report = dispatch.report();
            report["input"] = json!(stats);
            report
        };
        let flush = self.last_flush.elapsed() >= FLUSH_EVERY;
        let log = self.last_stats.elapsed() >= self.stats_every;
        if flush {
            self.last_flush = Instant::now();
            dispatch.tick();
        }
        // The report is built only for a reader (the metrics endpoint, the log), and once
        // when both are due.
        let publish = flush && self.reporter.wants_metrics();
        if publish || log {
            let report = report(dispatch);
            if log {
                self.last_stats = Instant::now();
                self.reporter.log(&report);
            }
            if publish {
                self.reporter.publish(report, dispatch.histograms());
            }
        }
    }
}
