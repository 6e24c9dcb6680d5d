//! `gor-agent replay`: saved traffic as a byte source. Records of `.gor` files (merged by
//! timestamp, see [`GorReader`]) are released at their original pace, scaled by the speed
//! factor, into the same path as captured messages ([`Dispatch`]: middleware, filters,
//! mirroring with its rate limit, message outputs).
//!
//! Reading and decompressing run on a thread of their own, a bounded number of records
//! ahead, so file IO never delays the release of a record that is due. A record whose id
//! gor wrote names its client connection (see the envelope): its requests keep that
//! connection's order on one staging connection, as live mirroring does. Records of other
//! tools name none: they are sent in timestamp order on whichever staging connection is
//! idle, so they reach staging in the recorded order while staging keeps up, and
//! concurrently (up to `GOR_WORKERS`) where they overlap.
//!
//! Each `--input-file` is an input of its own, as each is a plugin of its own in GoReplay:
//! its own reader, speed and schedule, all starting together; what is due first, of any
//! input, goes first. A dry run ([`dry_run`]) reads the inputs through the same schedules
//! and prints what a replay would send and how long it would take, sending nothing.

mod dry_run;
mod progress;
mod schedule;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::driver::{Level, Ready, Source, Waits};
use crate::gorfile::settings::FileInputConfig;
use crate::gorfile::{GorReader, InputStats, Record, RecordType};
use crate::metrics::Report;
use crate::pipeline::Pipeline;

pub use dry_run::{dry_run, DryRun};
pub use progress::Progress;
pub use schedule::Schedule;

/// Records read ahead of the one being waited for.
const READ_AHEAD: usize = 1024;

/// How often the progress is looked at: as often as the bar is redrawn.
const CHORES_EVERY: Duration = progress::BAR_REFRESH;

/// Records released back to back (already due) before the source yields to the runtime.
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

/// Saved traffic as a driver source; see the module documentation.
pub struct SavedTraffic {
    looping: bool,
    inputs: Vec<Input>,
    start: Instant,
    /// The input whose next record is due first, once `ready` found it.
    chosen: Option<usize>,
    /// Records released back to back without a timer.
    burst: u32,
    stats: InputStats,
    progress: Progress,
}

/// One `--input-file`: its reader thread, its schedule and its next record.
struct Input {
    pattern: String,
    speed: f64,
    rx: mpsc::Receiver<Item>,
    reading: Option<std::thread::JoinHandle<()>>,
    schedule: Schedule,
    /// The next record and when it is due (the schedule is computed once per record).
    next: Option<(Record, Instant)>,
    /// Its reader has nothing more to send.
    done: bool,
}

impl SavedTraffic {
    /// Opens the files of every input and starts reading them ahead.
    pub fn open(input: &FileInputConfig, stats_interval: Duration) -> Result<SavedTraffic> {
        let mut inputs = Vec::with_capacity(input.inputs.len());
        let mut total = 0;
        let mut reads = Vec::new();
        for one in &input.inputs {
            let reader = GorReader::open(&one.pattern)
                .with_context(|| format!("opening saved traffic {}", one.pattern))?;
            info!(
                files = ?reader.files(),
                speed = one.speed,
                looping = input.looping,
                "replaying saved traffic"
            );
            let read = reader.bytes_read();
            total += reader.total_bytes();
            reads.push(read.clone());
            let (tx, rx) = mpsc::channel(READ_AHEAD);
            let reading = std::thread::Builder::new()
                .name("gor-read".into())
                .spawn({
                    let pattern = one.pattern.clone();
                    let looping = input.looping;
                    move || read_files(reader, &pattern, looping, &read, &tx)
                })
                .context("starting the reader thread")?;
            inputs.push(Input {
                pattern: one.pattern.clone(),
                speed: one.speed,
                rx,
                reading: Some(reading),
                schedule: Schedule::new(one.speed, input.max_wait),
                next: None,
                done: false,
            });
        }
        Ok(SavedTraffic {
            looping: input.looping,
            inputs,
            start: Instant::now(),
            chosen: None,
            burst: 0,
            stats: InputStats::default(),
            progress: Progress::new(total, reads, stats_interval),
        })
    }
}

impl Source for SavedTraffic {
    fn name(&self) -> &'static str {
        "saved traffic"
    }

    fn level(&self) -> Level {
        Level::Messages
    }

    /// Record timestamps are wall-clock already.
    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    async fn ready(&mut self) -> Result<Ready> {
        // Every input's next record first: what is due first is known only then. What is
        // received is kept at once, so a cancelled wait loses nothing.
        for input in &mut self.inputs {
            while input.next.is_none() && !input.done {
                match input.rx.recv().await {
                    None => input.done = true,
                    Some(Item::Record(rec)) => {
                        let due = self.start + input.schedule.due(rec.timestamp_ns);
                        input.next = Some((rec, due));
                    }
                    Some(Item::EndOfPass { damaged }) => {
                        self.stats.damaged += damaged;
                        self.stats.passes += 1;
                        if self.looping {
                            input.schedule.new_pass();
                            self.progress.new_pass();
                        }
                    }
                    Some(Item::Failed(e)) => {
                        warn!("{e}");
                        input.done = true;
                    }
                }
            }
        }
        let first = self
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(i, input)| input.next.as_ref().map(|(_, due)| (*due, i)))
            .min();
        let Some((due, chosen)) = first else {
            return Ok(Ready::Done);
        };
        self.chosen = Some(chosen);
        if due > Instant::now() {
            self.burst = 0;
            tokio::time::sleep_until(due).await;
        } else {
            // Late (a burst in the recording, or a high speed): no timer, but the rest
            // gets its turn now and then.
            self.burst += 1;
            if self.burst >= BURST {
                self.burst = 0;
                tokio::task::yield_now().await;
            }
        }
        Ok(Ready::Input)
    }

    /// A file can wait for a slow middleware, and at `max` speed for staging; capture
    /// cannot (it drops). At a set speed, requests staging cannot take in time are
    /// dropped, to keep the recorded pace.
    fn waits(&self) -> Waits {
        if self.inputs.iter().all(|i| i.speed.is_infinite()) {
            Waits::ForMiddlewareAndStaging
        } else {
            Waits::ForMiddleware
        }
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        let Some((rec, _)) = self
            .chosen
            .take()
            .and_then(|i| self.inputs.get_mut(i))
            .and_then(|input| input.next.take())
        else {
            return;
        };
        let stats = &mut self.stats;
        stats.records += 1;
        match rec.kind {
            RecordType::Request => stats.requests += 1,
            RecordType::Response => stats.responses += 1,
            // Staging's answers at recording time are no input: production's responses
            // are the ones compared, and staging answers anew.
            RecordType::ReplayedResponse => {
                stats.staging_responses += 1;
                return;
            }
        }
        match rec.to_message() {
            Ok(msg) => pipeline.message(msg),
            Err(e) => {
                stats.invalid += 1;
                if stats.invalid <= 10 || stats.invalid.is_power_of_two() {
                    warn!(id = %rec.id, invalid = stats.invalid, "skipping a record that is not a valid HTTP message: {e}");
                }
            }
        }
    }

    /// Stops the reader (it may be blocked on a full channel) and collects what it
    /// counted.
    fn stop(&mut self, _pipeline: &mut Pipeline) {
        for input in &mut self.inputs {
            input.rx.close();
            while let Ok(item) = input.rx.try_recv() {
                if let Item::EndOfPass { damaged } = item {
                    self.stats.damaged += damaged;
                }
            }
            if let Some(reading) = input.reading.take() {
                if reading.join().is_err() {
                    warn!(input = %input.pattern, "the reader thread panicked");
                }
            }
        }
    }

    fn chores_every(&self) -> Option<Duration> {
        Some(CHORES_EVERY)
    }

    fn chores(&mut self, pipeline: &Pipeline) {
        if self.progress.due() {
            self.progress.show(self.stats.records, &pipeline.dispatch);
        }
    }

    fn before_close(&mut self, pipeline: &Pipeline) {
        self.progress.finish(self.stats.records, &pipeline.dispatch);
    }

    fn report(&self, report: &mut Report) {
        report.input = Some(self.stats.clone());
    }
}

/// The reading thread of one input: every pass over its files, records in timestamp
/// order.
fn read_files(
    mut reader: GorReader,
    pattern: &str,
    looping: bool,
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
        if tx.blocking_send(Item::EndOfPass { damaged }).is_err() || !looping {
            return;
        }
        read.store(0, Ordering::Relaxed);
        reader = match GorReader::open_counting(pattern, read.clone()) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Item::Failed(format!(
                    "opening {pattern} again for the next pass: {e}"
                )));
                return;
            }
        };
    }
}
