//! Everything between a source and the stages after framing, with three ways in, one for
//! each level a source can produce:
//!
//! ```text
//! Pipeline::segment ─ TCP segments ─> reassembly ─┐
//! Pipeline::stream  ─ ordered streams ────────────┴─> stream outputs, HTTP framing ─┐
//! Pipeline::message ─ whole HTTP messages ─────────────────────────────────────────┴─> dispatch
//! ```
//!
//! It holds no IO of its own and knows no source: the TC ring buffer and pcap files enter
//! with segments, TLS plaintext will enter with streams, saved traffic (and a message
//! broker's consumer) with messages. Connection numbers come from here ([`ConnIds`],
//! shared with the reassembler and stream sources), and every framed message gets this
//! run's [`Origin`] and the source's [`Clock`] in its envelope.

use std::time::Duration;

use anyhow::{Context, Result};
use tracing::warn;

use crate::{
    capture::Segment,
    config::Config,
    dispatch::{Closed, Dispatch, Hooks},
    envelope::{Clock, ConnIds, Origin},
    http::{HttpFramer, HttpMessage},
    metrics::Report,
    mirror::PortExclusion,
    output::{stdout::StdoutStreams, streams_dir::StreamsDir, StreamOutput},
    reassembly::Reassembler,
    stream::{ConnId, StreamEvent},
};

/// Stream events gathered before they go on to the outputs and the framer.
const EVENT_BATCH: usize = 1024;

/// See the module documentation.
pub struct Pipeline {
    clock: Clock,
    conn_ids: ConnIds,
    reassembler: Reassembler,
    outputs: Vec<Box<dyn StreamOutput>>,
    events: Vec<StreamEvent>,
    framer: HttpFramer,
    messages: Vec<HttpMessage>,
    /// Middleware, filters, mirroring and message outputs.
    pub dispatch: Dispatch,
    /// Source time of the last reassembly tick, for sources on a recorded clock.
    last_tick_ns: u64,
    output_errors: u64,
}

impl Pipeline {
    /// Builds the pipeline for a source whose timestamps are in `clock`; must run inside
    /// the tokio runtime when mirroring or a middleware is configured (they spawn tasks).
    /// `exclusion` keeps the agent's own connections to staging out of capture.
    pub fn new(
        cfg: &Config,
        clock: Clock,
        origin: Origin,
        exclusion: Option<std::sync::Arc<dyn PortExclusion>>,
    ) -> Result<Self> {
        Self::with_hooks(cfg, clock, origin, exclusion, Hooks::default())
    }

    /// [`Pipeline::new`] with dispatch's [`Hooks`], for a source that answers for its
    /// messages (the replay server).
    pub fn with_hooks(
        cfg: &Config,
        clock: Clock,
        origin: Origin,
        exclusion: Option<std::sync::Arc<dyn PortExclusion>>,
        hooks: Hooks,
    ) -> Result<Self> {
        let mut outputs: Vec<Box<dyn StreamOutput>> = Vec::new();
        if cfg.outputs.stdout {
            outputs.push(Box::new(StdoutStreams::new()));
        }
        if let Some(dir) = &cfg.outputs.streams_dir {
            let o = StreamsDir::create(dir)
                .with_context(|| format!("creating the streams directory {}", dir.display()))?;
            outputs.push(Box::new(o));
        }
        let conn_ids = ConnIds::default();
        Ok(Pipeline {
            clock,
            reassembler: Reassembler::with_conn_ids(
                cfg.capture.reassembly.clone(),
                conn_ids.clone(),
            ),
            conn_ids,
            outputs,
            events: Vec::new(),
            framer: {
                let framer = HttpFramer::with_origin(cfg.capture.http, origin, clock);
                if cfg.needs_responses() {
                    framer
                } else {
                    framer.without_responses()
                }
            },
            messages: Vec::new(),
            dispatch: Dispatch::with_hooks(cfg, clock, exclusion, hooks)?,
            last_tick_ns: 0,
            output_errors: 0,
        })
    }

    /// A new connection number, for sources that enter with ordered streams.
    pub fn open_conn(&self) -> ConnId {
        self.conn_ids.next()
    }

    /// Entry for TCP segments. On a recorded clock (pcap files) idle connections and stale
    /// holes expire as the source's time advances, not the wall clock's.
    pub fn segment(&mut self, seg: Segment) {
        let ts = seg.ts_ns;
        self.reassembler.push(seg, &mut self.events);
        if self.clock == Clock::Realtime && ts.saturating_sub(self.last_tick_ns) >= 1_000_000_000 {
            self.last_tick_ns = ts;
            self.reassembler.tick(ts, &mut self.events);
        }
        if self.events.len() >= EVENT_BATCH {
            self.flush();
        }
    }

    /// Entry for ordered byte streams (connection numbers from [`Pipeline::open_conn`]).
    pub fn stream(&mut self, ev: StreamEvent) {
        self.events.push(ev);
        if self.events.len() >= EVENT_BATCH {
            self.flush();
        }
    }

    /// Entry for whole messages.
    pub fn message(&mut self, msg: HttpMessage) {
        self.flush();
        self.dispatch.message(msg);
    }

    /// Hands what the entries gathered to the outputs, the framer and dispatch; sources
    /// call it at the end of each batch.
    pub fn flush(&mut self) {
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

    /// Periodic work at `now_ns` (the source's clock): expiry, then the outputs flush.
    pub fn tick(&mut self, now_ns: u64) {
        self.reassembler.tick(now_ns, &mut self.events);
        self.flush();
        self.dispatch.tick();
    }

    /// Ends every connection and the stream outputs; [`Pipeline::close`] ends the rest.
    pub fn finish(&mut self, now_ns: u64) {
        self.reassembler.finish(now_ns, &mut self.events);
        self.flush();
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

    /// The counters now (the source adds its own).
    pub fn report(&self) -> Report {
        self.add_framing(self.dispatch.report())
    }

    /// The counters, with the final counts of the stages that have been closed.
    pub fn report_with(&self, closed: &Closed) -> Report {
        self.add_framing(self.dispatch.report_with(closed))
    }

    fn add_framing(&self, mut report: Report) -> Report {
        report.reassembly = self.reassembler.stats().clone();
        report.http = self.framer.stats().clone();
        report.open_connections = self.reassembler.connections();
        report.buffered_bytes = self.reassembler.buffered_bytes();
        // One count for every output, stream and message alike.
        report.outputs.errors = self.output_errors + self.dispatch.output_errors();
        report
    }
}
