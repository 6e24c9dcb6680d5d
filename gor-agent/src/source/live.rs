//! Live capture as a [`Source`]: the TC programs' ring buffer, drained through `AsyncFd`
//! (epoll on the map's fd: no busy loop, no blocking), entering the pipeline as TCP
//! segments stamped with the kernel's monotonic clock.
//!
//! At stop the programs are detached first, then whatever is still in the ring buffer
//! is drained, so nothing captured is left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use aya_log::EbpfLogger;
use gor_common::wakeup;
use tokio::io::unix::AsyncFd;
use tracing::debug;

use crate::capture::{record, tc::TcCapture, Segment};
use crate::clock::Clock;
use crate::driver::{Level, Ready, Source};
use crate::metrics::report::{KernelReport, RecordsReport, Report};
use crate::mirror::PortExclusion;
use crate::pipeline::Pipeline;

/// Records taken from the ring buffer per delivery: a bound on the segments held between
/// the ring and the reassembler.
const TAKE_BATCH: usize = 1024;

/// See the module documentation.
pub struct LiveCapture {
    capture: TcCapture,
    ring: AsyncFd<RingBuf<MapData>>,
    logger: Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>,
    /// The kernel skips wake-ups while records keep coming (`gor_common::wakeup`): the
    /// ring is polled while they do.
    poll: tokio::time::Interval,
    found_at: Option<Instant>,
    taken: Taken,
}

/// Segments decoded from the ring buffer and not yet delivered, with the counts of
/// records read.
#[derive(Default)]
struct Taken {
    segments: Vec<Segment>,
    records: u64,
    decode_errors: u64,
}

impl Taken {
    /// Decodes up to [`TAKE_BATCH`] records; returns how many it read.
    fn take(&mut self, ring: &mut RingBuf<MapData>) -> usize {
        let mut n = 0;
        while n < TAKE_BATCH {
            let Some(item) = ring.next() else { break };
            n += 1;
            self.records += 1;
            match record::decode(&item) {
                Ok((_, seg)) => self.segments.push(seg),
                Err(e) => {
                    self.decode_errors += 1;
                    debug!("skipping a ring-buffer record: {e}");
                }
            }
        }
        n
    }
}

impl LiveCapture {
    /// Loads and attaches the programs; returns the source and the exclusion map that
    /// keeps the agent's own staging connections out of capture.
    pub fn start(
        ports: &[u16],
        interfaces: &[String],
        ring_bytes: u32,
    ) -> Result<(LiveCapture, Arc<dyn PortExclusion>)> {
        let mut capture = TcCapture::start(ports, interfaces, ring_bytes)?;
        // SAFETY (both registrations): the ring buffer and the logger own their map fds and
        // keep them open, unchanged, until they are dropped with the AsyncFd.
        let ring = unsafe { AsyncFd::register(capture.take_ring()?) }
            .map_err(std::io::Error::from)
            .context("registering the ring buffer with epoll")?;
        let logger = match capture.take_logger() {
            Some(l) => Some(
                unsafe { AsyncFd::register(l) }
                    .map_err(std::io::Error::from)
                    .context("registering the eBPF log buffer with epoll")?,
            ),
            None => None,
        };
        let exclusions: Arc<dyn PortExclusion> = Arc::new(capture.take_exclusions()?);
        let mut poll = tokio::time::interval(Duration::from_nanos(wakeup::INTERVAL_NS));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok((
            LiveCapture {
                capture,
                ring,
                logger,
                poll,
                found_at: None,
                taken: Taken {
                    segments: Vec::with_capacity(TAKE_BATCH),
                    ..Taken::default()
                },
            },
            exclusions,
        ))
    }

    fn kernel_report(&self) -> KernelReport {
        match self.capture.counters() {
            Ok(k) => KernelReport::Counters(k),
            Err(e) => KernelReport::Unavailable {
                error: e.to_string(),
            },
        }
    }
}

impl Source for LiveCapture {
    fn name(&self) -> &'static str {
        "live capture"
    }

    fn level(&self) -> Level {
        Level::Segments
    }

    fn clock(&self) -> Clock {
        Clock::Monotonic
    }

    async fn ready(&mut self) -> Result<Ready> {
        loop {
            if !self.taken.segments.is_empty() {
                return Ok(Ready::Input);
            }
            let polling = self
                .found_at
                .is_some_and(|t| t.elapsed() < Duration::from_nanos(wakeup::POLL_IDLE_NS));
            let Self {
                ring,
                logger,
                poll,
                found_at,
                taken,
                ..
            } = self;
            let n = tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    let n = taken.take(guard.get_inner_mut());
                    // Clear readiness only when the buffer was emptied: epoll is
                    // edge-triggered, and records left behind would otherwise wait for the
                    // next wake-up.
                    if n < TAKE_BATCH {
                        guard.clear_ready();
                    }
                    n
                }
                _ = poll.tick(), if polling => taken.take(ring.get_mut()),
                guard = async { logger.as_mut().expect("guarded by the branch condition").readable_mut().await }, if logger.is_some() => {
                    let mut guard = guard?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                    0
                }
            };
            if n > 0 {
                *found_at = Some(Instant::now());
            }
        }
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        for seg in self.taken.segments.drain(..) {
            pipeline.segment(seg);
        }
        pipeline.flush();
    }

    fn stop(&mut self, pipeline: &mut Pipeline) {
        self.capture.detach();
        // The programs are gone: what is in the ring buffer now is all there will be.
        loop {
            self.deliver(pipeline);
            let n = self.taken.take(self.ring.get_mut());
            if n == 0 {
                break;
            }
        }
        if let Some(l) = self.logger.as_mut() {
            l.get_mut().flush();
        }
    }

    fn report(&self, report: &mut Report) {
        report.kernel = Some(self.kernel_report());
        report.records = Some(RecordsReport {
            received: self.taken.records,
            decode_errors: self.taken.decode_errors,
        });
    }
}
