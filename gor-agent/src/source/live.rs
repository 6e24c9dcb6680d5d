//! Live capture as a [`Source`]: the TC programs' ring buffer, drained through `AsyncFd`
//! (epoll on the map's fd: no busy loop, no blocking), entering the pipeline as TCP
//! segments stamped with the kernel's monotonic clock; and with `GOR_TLS=openssl`, the
//! OpenSSL probes' ring, whose plaintext records enter as ordered streams
//! (`crate::tls_streams`), on the same clock.
//!
//! At stop the programs are detached first, then whatever is still in the ring buffers
//! is drained, so nothing captured is left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use aya_log::EbpfLogger;
use gor_common::wakeup;
use tokio::io::unix::AsyncFd;
use tracing::debug;

use crate::capture::tls::record::{self as tls_record, TlsRecord};
use crate::capture::{
    record::{self, RecordError},
    slab::Slab,
    tc::TcCapture,
    Segment,
};
use crate::clock::Clock;
use crate::config::CaptureConfig;
use crate::driver::{Level, Ready, Source};
use crate::metrics::report::{KernelReport, RecordsReport, Report, TlsReport};
use crate::mirror::PortExclusion;
use crate::pipeline::Pipeline;
use crate::stream::StreamEvent;
use crate::tls_streams::TlsStreams;

/// How often TLS connections are checked for idleness.
const TLS_EXPIRE_EVERY: Duration = Duration::from_secs(1);
/// How often the host is searched for OpenSSL libraries that appeared (new containers).
const TLS_RESCAN_EVERY: Duration = Duration::from_secs(10);

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
    taken: Taken<Segment>,
    tls: Option<TlsSide>,
}

/// The TLS plaintext ring and the streams made of it.
struct TlsSide {
    ring: AsyncFd<RingBuf<MapData>>,
    streams: TlsStreams,
    taken: Taken<TlsRecord>,
    /// Stream events made outside a delivery (idle expiry), delivered next.
    events: Vec<StreamEvent>,
    tick: tokio::time::Interval,
    rescanned: Instant,
}

impl TlsSide {
    fn take_all(&mut self) -> usize {
        self.taken.take(self.ring.get_mut())
    }

    /// Waits for records (takes them) or for the expiry tick (ends idle connections);
    /// returns the records taken and whether it is time to look for new libraries.
    async fn wait(&mut self) -> Result<(usize, bool)> {
        tokio::select! {
            guard = self.ring.readable_mut() => {
                let mut guard = guard?;
                let n = self.taken.take(guard.get_inner_mut());
                // As for the chunk ring: edge-triggered, cleared only when emptied.
                if n < TAKE_BATCH {
                    guard.clear_ready();
                }
                Ok((n, false))
            }
            _ = self.tick.tick() => {
                self.streams.expire(Clock::Monotonic.now_ns(), &mut self.events);
                let rescan = self.rescanned.elapsed() >= TLS_RESCAN_EVERY;
                if rescan {
                    self.rescanned = Instant::now();
                }
                Ok((0, rescan))
            }
        }
    }

    fn pending(&self) -> bool {
        !self.taken.items.is_empty() || !self.events.is_empty()
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        let open = || pipeline.open_conn();
        for r in self.taken.items.drain(..) {
            self.streams.push(r, &open, &mut self.events);
        }
        for ev in self.events.drain(..) {
            pipeline.stream(ev);
        }
    }
}

/// Records decoded from a ring buffer (TC segments or TLS plaintext) and not yet
/// delivered, with the counts of records read.
struct Taken<T> {
    items: Vec<T>,
    records: u64,
    decode_errors: u64,
    decode: fn(&[u8], &mut Slab) -> Result<T, RecordError>,
    /// Where the records' payloads are copied.
    payloads: Slab,
}

impl<T> Taken<T> {
    fn new(decode: fn(&[u8], &mut Slab) -> Result<T, RecordError>) -> Self {
        Taken {
            items: Vec::with_capacity(TAKE_BATCH),
            records: 0,
            decode_errors: 0,
            decode,
            payloads: Slab::default(),
        }
    }

    /// Decodes up to [`TAKE_BATCH`] records; returns how many it read.
    fn take(&mut self, ring: &mut RingBuf<MapData>) -> usize {
        let mut n = 0;
        while n < TAKE_BATCH {
            let Some(item) = ring.next() else { break };
            n += 1;
            self.records += 1;
            match (self.decode)(&item, &mut self.payloads) {
                Ok(r) => self.items.push(r),
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
    pub fn start(cfg: &CaptureConfig) -> Result<(LiveCapture, Arc<dyn PortExclusion>)> {
        let mut capture = TcCapture::start(
            &cfg.ports,
            cfg.tls.as_ref(),
            &cfg.interfaces,
            cfg.ring_bytes,
            cfg.response_snap,
        )?;
        let tls = match capture.take_tls_ring()? {
            None => None,
            // SAFETY: as for the chunk ring below.
            Some(ring) => Some(TlsSide {
                ring: unsafe { AsyncFd::register(ring) }
                    .map_err(std::io::Error::from)
                    .context("registering the TLS ring buffer with epoll")?,
                streams: TlsStreams::new(
                    Duration::from_nanos(cfg.reassembly.idle_timeout_ns),
                    cfg.reassembly.max_connections,
                ),
                taken: Taken::new(tls_record::decode),
                events: Vec::new(),
                tick: tokio::time::interval(TLS_EXPIRE_EVERY),
                rescanned: Instant::now(),
            }),
        };
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
        let exclusions: Arc<dyn PortExclusion> = Arc::new(capture.take_exclusions(cfg.tc_ports())?);
        let mut poll = tokio::time::interval(Duration::from_nanos(wakeup::INTERVAL_NS));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok((
            LiveCapture {
                capture,
                ring,
                logger,
                poll,
                found_at: None,
                taken: Taken::new(|r, payloads| record::decode(r, payloads).map(|(_, seg)| seg)),
                tls,
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
            if !self.taken.items.is_empty() || self.tls.as_ref().is_some_and(TlsSide::pending) {
                return Ok(Ready::Input);
            }
            let polling = self
                .found_at
                .is_some_and(|t| t.elapsed() < Duration::from_nanos(wakeup::POLL_IDLE_NS));
            let Self {
                capture,
                ring,
                logger,
                poll,
                found_at,
                taken,
                tls,
            } = self;
            let mut polled = false;
            let mut n = tokio::select! {
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
                _ = poll.tick(), if polling => {
                    polled = true;
                    taken.take(ring.get_mut())
                }
                r = async { tls.as_mut().expect("guarded by the branch condition").wait().await }, if tls.is_some() => {
                    let (n, rescan) = r?;
                    if rescan {
                        capture.rescan_tls();
                    }
                    n
                }
                guard = async { logger.as_mut().expect("guarded by the branch condition").readable_mut().await }, if logger.is_some() => {
                    let mut guard = guard?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                    0
                }
            };
            if polled {
                n += tls.as_mut().map_or(0, TlsSide::take_all);
            }
            if n > 0 {
                *found_at = Some(Instant::now());
            }
        }
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        for seg in self.taken.items.drain(..) {
            pipeline.segment(seg);
        }
        if let Some(t) = self.tls.as_mut() {
            t.deliver(pipeline);
        }
        pipeline.flush();
    }

    fn stop(&mut self, pipeline: &mut Pipeline) {
        self.capture.detach();
        // The programs are gone: what is in the ring buffer now is all there will be.
        loop {
            self.deliver(pipeline);
            let n = self.taken.take(self.ring.get_mut())
                + self.tls.as_mut().map_or(0, TlsSide::take_all);
            if n == 0 {
                break;
            }
        }
        if let Some(t) = self.tls.as_mut() {
            t.streams.finish(Clock::Monotonic.now_ns(), &mut t.events);
            t.deliver(pipeline);
            pipeline.flush();
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
        if let Some(t) = &self.tls {
            report.tls = Some(TlsReport {
                libraries: self
                    .capture
                    .tls_libraries()
                    .unwrap_or_default()
                    .iter()
                    .map(|l| l.path.clone())
                    .collect(),
                records: t.taken.records,
                decode_errors: t.taken.decode_errors,
                open_connections: t.streams.connections(),
                streams: t.streams.stats().clone(),
            });
        }
    }
}
