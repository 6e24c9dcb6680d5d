//! The pipeline: segments -> reassembly -> stream outputs and HTTP framing -> message
//! outputs, fed either live (ring buffer, driven by tokio) or from a pcap file.
//!
//! One task owns the whole path. The ring buffer is drained through `AsyncFd` (epoll on
//! the map's fd: no busy loop, no blocking), a one-second tick expires idle connections
//! and stale holes, and SIGINT/SIGTERM end the loop: the programs are detached first, then
//! whatever is still in the ring buffer is drained, so nothing captured is left behind.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use gor_common::wakeup;
use serde_json::json;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
};
use tracing::{debug, info, warn};

use crate::{
    capture::{pcap, record, tc::TcCapture, Segment},
    config::Config,
    dispatch::{Closed, Dispatch},
    http::{HttpFramer, HttpMessage},
    metrics::Reporter,
    output::{stdout::StdoutStreams, streams_dir::StreamsDir, StreamOutput},
    reassembly::Reassembler,
    replay::PortExclusion,
    stream::StreamEvent,
};

/// Records handled per wake-up before the loop looks at signals and timers again.
const DRAIN_BATCH: usize = 65_536;

/// Everything after the byte source: reassembly, framing and outputs, with their counters.
pub struct Pipeline {
    reassembler: Reassembler,
    outputs: Vec<Box<dyn StreamOutput>>,
    events: Vec<StreamEvent>,
    framer: HttpFramer,
    messages: Vec<HttpMessage>,
    /// Middleware, filters, mirroring and message outputs.
    dispatch: Dispatch,
    records: u64,
    decode_errors: u64,
    output_errors: u64,
}

impl Pipeline {
    /// Builds the pipeline; must run inside the tokio runtime when mirroring is configured
    /// (the replayer spawns its tasks). `exclusion` keeps the agent's own connections to
    /// staging out of capture.
    pub fn new(cfg: &Config, exclusion: Option<std::sync::Arc<dyn PortExclusion>>) -> Result<Self> {
        let mut outputs: Vec<Box<dyn StreamOutput>> = Vec::new();
        if cfg.outputs.stdout {
            outputs.push(Box::new(StdoutStreams::new()));
        }
        if let Some(dir) = &cfg.outputs.streams_dir {
            let o = StreamsDir::create(dir)
                .with_context(|| format!("creating the streams directory {}", dir.display()))?;
            outputs.push(Box::new(o));
        }
        // Live timestamps are CLOCK_MONOTONIC; saved traffic and the middleware want
        // wall-clock time. pcap timestamps are wall-clock already.
        let offset = if cfg.capture.input_pcap.is_some() {
            0
        } else {
            realtime_ns() as i128 - monotonic_ns() as i128
        };
        Ok(Pipeline {
            reassembler: Reassembler::new(cfg.capture.reassembly.clone()),
            outputs,
            events: Vec::new(),
            framer: HttpFramer::new(cfg.capture.http),
            messages: Vec::new(),
            dispatch: Dispatch::new(cfg, exclusion, offset)?,
            records: 0,
            decode_errors: 0,
            output_errors: 0,
        })
    }

    /// Takes up to `max` records from the ring buffer; returns how many it took.
    pub fn drain(&mut self, ring: &mut RingBuf<MapData>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(item) = ring.next() else { break };
            n += 1;
            self.records += 1;
            match record::decode(&item) {
                Ok((_, seg)) => self.push(seg),
                Err(e) => {
                    self.decode_errors += 1;
                    debug!("skipping a ring-buffer record: {e}");
                }
            }
            drop(item);
            if self.events.len() >= 1024 {
                self.emit();
            }
        }
        self.emit();
        n
    }

    /// Takes one segment from any source.
    pub fn push(&mut self, seg: Segment) {
        self.reassembler.push(seg, &mut self.events);
    }

    pub fn tick(&mut self, now_ns: u64) {
        self.reassembler.tick(now_ns, &mut self.events);
        self.emit();
        self.dispatch.tick();
    }

    /// Ends every connection and the stream outputs; [`Pipeline::close`] ends the rest.
    pub fn finish(&mut self, now_ns: u64) {
        self.reassembler.finish(now_ns, &mut self.events);
        self.emit();
        for o in &mut self.outputs {
            if let Err(e) = o.finish() {
                self.output_errors += 1;
                warn!("finishing an output: {e}");
            }
        }
    }

    /// Ends the stages after framing (middleware, message outputs, mirroring), each with
    /// `grace` for work in flight; returns their final counts.
    pub async fn close(&mut self, grace: Duration) -> Closed {
        self.dispatch.close(grace).await
    }

    fn emit(&mut self) {
        for ev in self.events.drain(..) {
            for o in &mut self.outputs {
                if let Err(e) = o.event(&ev) {
                    self.output_errors += 1;
                    warn!("output error (the event is skipped for this output): {e}");
                }
            }
            self.framer.on_event(&ev, &mut self.messages);
        }
        for msg in self.messages.drain(..) {
            self.dispatch.message(msg);
        }
    }

    pub fn report(&self, kernel: serde_json::Value) -> serde_json::Value {
        self.add_capture(kernel, self.dispatch.report())
    }

    /// The counters, with the final counts of the stages that have been closed.
    pub fn report_with(&self, kernel: serde_json::Value, closed: &Closed) -> serde_json::Value {
        self.add_capture(kernel, self.dispatch.report_with(closed))
    }

    fn add_capture(
        &self,
        kernel: serde_json::Value,
        mut v: serde_json::Value,
    ) -> serde_json::Value {
        v["kernel"] = kernel;
        v["records"] = json!({"received": self.records, "decode_errors": self.decode_errors});
        v["reassembly"] = json!(self.reassembler.stats());
        v["http"] = json!(self.framer.stats());
        v["open_connections"] = self.reassembler.connections().into();
        v["buffered_bytes"] = self.reassembler.buffered_bytes().into();
        // One count for every output, stream and message alike.
        v["outputs"]["errors"] = (self.output_errors + self.dispatch.output_errors()).into();
        v
    }
}

/// Runs the agent: replaying saved traffic, reading a pcap file, or live.
pub async fn run(cfg: Config) -> Result<()> {
    if cfg.input_file.is_some() {
        return crate::playback::run(cfg).await;
    }
    match cfg.capture.input_pcap.clone() {
        Some(path) => {
            let mut pipeline = Pipeline::new(&cfg, None)?;
            // Reading the file is blocking work; the replayer's tasks run meanwhile.
            let grace = cfg.mirror.shutdown_grace;
            // A file is read in seconds: no metrics endpoint, the summary at the end.
            let mut reporter = Reporter::offline(cfg.outputs.stats_file.clone());
            let (mut pipeline, stats) = tokio::task::spawn_blocking(move || {
                let stats = run_pcap(&cfg.capture, &path, &mut pipeline);
                (pipeline, stats)
            })
            .await?;
            let closed = pipeline.close(grace).await;
            reporter.finish(&pipeline.report_with(json!({"pcap": stats}), &closed));
            Ok(())
        }
        None => run_live(cfg).await,
    }
}

/// Feeds a capture file through the pipeline. Time is the packets' own: idle connections
/// and stale holes expire as the file's clock advances, not the wall clock's.
fn run_pcap(
    cfg: &crate::config::CaptureConfig,
    path: &Path,
    pipeline: &mut Pipeline,
) -> pcap::PcapStats {
    let mut last_tick = 0u64;
    let mut last_ts = 0u64;
    let mut stats = pcap::PcapStats::default();
    let read = pcap::read_segments(path, &cfg.ports, &mut stats, |seg| {
        last_ts = last_ts.max(seg.ts_ns);
        pipeline.push(seg);
        if last_ts.saturating_sub(last_tick) >= 1_000_000_000 {
            last_tick = last_ts;
            pipeline.tick(last_ts);
        } else {
            pipeline.emit();
        }
        pipeline.dispatch.poll_returned();
    });
    // What was read before damage in the file has been delivered; the damage is reported.
    if let Err(e) = read {
        warn!("reading {}: {e}", path.display());
    }
    pipeline.finish(last_ts);
    stats
}

/// Runs live capture until SIGINT or SIGTERM.
async fn run_live(cfg: Config) -> Result<()> {
    // Before anything is attached: a metrics address that is taken fails the start.
    let mut reporter =
        Reporter::start(cfg.log.metrics_addr, cfg.outputs.stats_file.clone()).await?;
    let mut capture = TcCapture::start(
        &cfg.capture.ports,
        &cfg.capture.interfaces,
        cfg.capture.ring_bytes,
    )?;
    // SAFETY (both registrations): the ring buffer and the logger own their map fds and
    // keep them open, unchanged, until they are dropped with the AsyncFd.
    let mut ring = unsafe { AsyncFd::register(capture.take_ring()?) }
        .map_err(std::io::Error::from)
        .context("registering the ring buffer with epoll")?;
    let mut logger = match capture.take_logger() {
        Some(l) => Some(
            unsafe { AsyncFd::register(l) }
                .map_err(std::io::Error::from)
                .context("registering the eBPF log buffer with epoll")?,
        ),
        None => None,
    };
    let exclusions: std::sync::Arc<dyn PortExclusion> =
        std::sync::Arc::new(capture.take_exclusions()?);
    let mut pipeline = Pipeline::new(&cfg, Some(exclusions))?;
    pipeline.dispatch.measure_capture_latency();
    let mut stop = StopSignals::new()?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel skips wake-ups while records keep coming (gor_common::wakeup): poll
    // while they do.
    let mut poll = tokio::time::interval(Duration::from_nanos(wakeup::INTERVAL_NS));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut found_at: Option<std::time::Instant> = None;
    let polling = |found_at: Option<std::time::Instant>| {
        found_at.is_some_and(|t| t.elapsed() < Duration::from_nanos(wakeup::POLL_IDLE_NS))
    };
    let mut stats_tick = tokio::time::interval(cfg.outputs.stats_interval);
    stats_tick.tick().await;
    crate::notify::ready();

    loop {
        tokio::select! {
            _ = stop.recv() => break,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let n = pipeline.drain(guard.get_inner_mut(), DRAIN_BATCH);
                // Clear readiness only when the buffer was emptied: epoll is edge-triggered,
                // and records left behind would otherwise wait for the next wake-up.
                if n < DRAIN_BATCH {
                    guard.clear_ready();
                }
                if n > 0 {
                    found_at = Some(std::time::Instant::now());
                }
            }
            _ = poll.tick(), if polling(found_at) => {
                if pipeline.drain(ring.get_mut(), DRAIN_BATCH) > 0 {
                    found_at = Some(std::time::Instant::now());
                }
            }
            guard = async { logger.as_mut().expect("guarded by the branch condition").readable_mut().await }, if logger.is_some() => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            Some(rec) = pipeline.dispatch.next_returned() => pipeline.dispatch.returned(rec),
            _ = tick.tick() => {
                pipeline.tick(monotonic_ns());
                if reporter.wants_metrics() {
                    reporter.publish(pipeline.report(kernel_json(&capture)), pipeline.dispatch.histograms());
                }
            }
            _ = stats_tick.tick() => reporter.log(&pipeline.report(kernel_json(&capture))),
        }
    }

    crate::notify::stopping();
    capture.detach();
    // The programs are gone: what is in the ring buffer now is all there will be.
    while pipeline.drain(ring.get_mut(), DRAIN_BATCH) > 0 {}
    if let Some(l) = logger.as_mut() {
        l.get_mut().flush();
    }
    pipeline.finish(monotonic_ns());
    let closed = pipeline.close(cfg.mirror.shutdown_grace).await;
    reporter.finish(&pipeline.report_with(kernel_json(&capture), &closed));
    Ok(())
}

/// SIGTERM and SIGINT, the two ways an operator (or systemd) stops the agent.
pub(crate) struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub(crate) fn new() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves at the next of them, logged.
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM: stopping"),
            _ = self.int.recv() => info!("SIGINT: stopping"),
        }
    }
}

fn kernel_json(capture: &TcCapture) -> serde_json::Value {
    match capture.counters() {
        Ok(k) => k.to_json(),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// CLOCK_REALTIME in nanoseconds (wall clock, for saved traffic).
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, so kernel timestamps
/// and the agent's timers compare directly.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
