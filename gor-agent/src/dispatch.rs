//! After framing: where every HTTP message goes, whatever its source (live capture, a pcap
//! file, saved traffic, a replay server's stream).
//!
//! ```text
//! message ──> intake ──> middleware (optional, a child process) ──> filters and rewrites ──> mirroring
//!    │                                                                          ├─> message outputs
//!    │                                                                          ├─> NATS (a listener)
//!    │                                                                          └─> `--output-tcp` (GoReplay's protocol)
//!    └─ production's responses ──> comparison <── staging's answers <── mirroring
//!                                                  ├─> type 3 records ──> middleware, outputs
//!                                                  └─> receipts (the replay server's acks)
//! ```
//!
//! The middleware comes before the filters and rewrites, as in GoReplay, so existing
//! middleware programs see the messages they always saw; the intake rules (the client's
//! address as a header, bodies decoded: [`crate::filters::intake`]) come before it, as
//! GoReplay's `--input-raw-realip-header` and `--prettify-http` do. It is asynchronous: [`Dispatch::message`] hands a message to
//! its bounded queue and returns; what the child writes back, and staging's answers,
//! arrive later through [`Dispatch::next_back`] and go on with [`Dispatch::back`].
//! Staging's answers go to the comparison (`GOR_COMPARE`), as GoReplay's type 3 records
//! (`GOR_TRACK_STAGING_RESPONSES`) to the middleware or straight to the outputs without
//! one, and to the [`Receipts`] of a source that answers for its messages. Nothing here
//! blocks the byte source: the middleware queue, the mirror, the publisher's queue and
//! the answers' channel drop and count what they cannot take.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    broker::publish::{PublishStats, Publisher},
    clock::{Clock, ToWall},
    compare::Comparison,
    config::Config,
    envelope::MessageId,
    filters::{Filters, Verdict},
    goreplay_tcp::{output::TcpOutput, stats::TcpOutputStats},
    gorfile::{FileOutput, Record, RecordType},
    histogram::{Histogram, Histograms},
    http::{HttpMessage, Kind},
    metrics::report::{MiddlewareReport, MirrorReport, OutputsReport, Report},
    middleware::{Middleware, MiddlewareStats},
    mirror::{Accepted, Mirror, MirrorStats, PortExclusion, RateGate, StagingResult},
    output::messages::{MessageOutput, MessagesFile, Replayed},
    stream::Flow,
};

/// Messages in the middleware whose origin (connection, flow, clock) is remembered. A
/// message the child drops is never claimed, so the oldest are forgotten beyond this; one
/// that comes back after that is still delivered, on any idle lane.
const ORIGINS: usize = 65_536;

/// Staging's answers waiting to be taken from the mirror; more are dropped and counted
/// (`results_dropped`).
const ANSWERS: usize = 8_192;

/// Told what became of each message after the middleware, for a source that answers for
/// every message it delivered (the replay server acknowledges each to JetStream once it
/// was sent or dropped on purpose). Called on the driver's task, never waited on.
pub trait Receipts: Send {
    /// The message reached mirroring, and these targets queued it; none: it was dropped
    /// on purpose (filters, rate, sampling) or is not a request to mirror.
    fn submitted(&mut self, id: &MessageId, accepted: Accepted);
    /// Staging's answer (or failure) for one target that queued it.
    fn answered(&mut self, result: &StagingResult);
}

/// What a source can give dispatch besides the settings.
#[derive(Default)]
pub struct Hooks {
    pub receipts: Option<Box<dyn Receipts>>,
    /// Per target (in the order of the settings), a gate in place of the local per-second
    /// rate limit: one rate shared by the whole fleet.
    pub gates: Vec<Option<std::sync::Arc<dyn RateGate>>>,
}

/// Filters, middleware, mirroring and message outputs; see the module documentation.
pub struct Dispatch {
    filters: Filters,
    middleware: Option<Stage>,
    /// Mirroring to staging, when targets are configured. `submit` never blocks.
    mirror: Option<Mirror>,
    /// The `.gor` file output, held as itself for its counters; it comes before `outputs`.
    file: Option<FileOutput>,
    /// Publishing to NATS JetStream (a listener), held as itself for its counters; it
    /// comes after `file`, before `outputs`.
    publisher: Option<Publisher>,
    /// `--output-tcp`, held as itself for its counters; after `publisher`, before `outputs`.
    tcp: Option<TcpOutput>,
    outputs: Vec<Box<dyn MessageOutput>>,
    output_errors: u64,
    /// Told what became of each message (the replay server, which acknowledges them).
    receipts: Option<Box<dyn Receipts>>,
    /// Staging's answers, when something wants them (the comparison, type 3 records).
    answers: Option<mpsc::Receiver<StagingResult>>,
    /// Staging's responses become type 3 records (`GOR_TRACK_STAGING_RESPONSES`).
    track_staging: bool,
    compare: Option<Comparison>,
    /// Capture to dispatch, for a source on this host's monotonic clock (live capture),
    /// whose timestamps the agent's own clock can be compared with.
    capture_latency: Option<Histogram>,
    to_wall: ToWall,
}

/// The middleware and what is needed to carry messages through it.
struct Stage {
    child: Middleware,
    back: Back,
}

/// The way back from the middleware.
struct Back {
    returned: mpsc::Receiver<Record>,
    /// Original responses go to the middleware only when they are tracked, as in GoReplay;
    /// otherwise they skip it.
    responses: bool,
    origins: Origins,
    /// Lines the child returned that are not a valid HTTP message.
    refused: u64,
    /// Messages returned that were not (or no longer) known: mirrored on any idle lane.
    unknown: u64,
}

impl Dispatch {
    /// Builds the stages for a source whose timestamps are in `clock`; must run inside the
    /// tokio runtime when mirroring or a middleware is configured (they spawn tasks).
    pub fn new(
        cfg: &Config,
        clock: Clock,
        exclusion: Option<std::sync::Arc<dyn PortExclusion>>,
    ) -> Result<Self> {
        Self::with_hooks(cfg, clock, exclusion, Hooks::default())
    }

    /// [`Dispatch::new`], for a source that must answer for each message or rate.
    pub fn with_hooks(
        cfg: &Config,
        clock: Clock,
        exclusion: Option<std::sync::Arc<dyn PortExclusion>>,
        hooks: Hooks,
    ) -> Result<Self> {
        let to_wall = ToWall::measure();
        let file = match &cfg.outputs.gor_file {
            Some(file) => Some(
                FileOutput::new(file.clone(), to_wall)
                    .with_context(|| format!("opening the output file {}", file.pattern))?,
            ),
            None => None,
        };
        let mut outputs: Vec<Box<dyn MessageOutput>> = Vec::new();
        if cfg.outputs.stdout_records {
            outputs.push(Box::new(FileOutput::stdout(
                cfg.outputs.track_responses,
                to_wall,
            )));
        }
        if let Some(path) = &cfg.outputs.messages_file {
            let o = MessagesFile::create(path)
                .with_context(|| format!("creating the messages file {}", path.display()))?;
            outputs.push(Box::new(o));
        }
        let middleware = cfg.middleware.clone().map(|m| {
            let (child, returned) = Middleware::start(m);
            Stage {
                child,
                back: Back {
                    returned,
                    responses: cfg.outputs.track_responses,
                    origins: Origins::default(),
                    refused: 0,
                    unknown: 0,
                },
            }
        });
        let mut mirror = (!cfg.mirror.targets.is_empty()).then(|| {
            let mut options = cfg.mirror.options(exclusion);
            options.gates = hooks.gates;
            Mirror::start(options)
        });
        // A listener publishes; a replay server consumes what listeners published.
        let publisher = match (&cfg.nats, cfg.replay_server) {
            (Some(nats), false) => Some(Publisher::start(
                nats,
                &crate::envelope::host_name(cfg.agent_id.as_deref()),
                cfg.outputs.track_responses,
                to_wall,
            )),
            _ => None,
        };
        let tcp = cfg
            .tcp_output
            .as_ref()
            .map(|t| TcpOutput::start(t, &cfg.mirror.tls_ca, cfg.outputs.track_responses, to_wall));
        let track_staging = cfg.outputs.track_staging_responses;
        let compare = match &cfg.compare {
            Some(c) => {
                let names = cfg
                    .mirror
                    .targets
                    .iter()
                    .map(|t| t.scheme_host_port.clone())
                    .collect();
                let responses_first = cfg.middleware.is_some();
                Some(
                    Comparison::new(c.clone(), names, responses_first, to_wall).with_context(
                        || match &c.diffs_file {
                            Some(p) => format!("creating the diffs file {}", p.display()),
                            None => "starting the comparison".into(),
                        },
                    )?,
                )
            }
            None => None,
        };
        let receipts = hooks.receipts;
        let answers = match &mut mirror {
            Some(m) if track_staging || compare.is_some() || receipts.is_some() => {
                Some(m.subscribe(ANSWERS))
            }
            _ => None,
        };
        Ok(Dispatch {
            filters: Filters::new(cfg.filters.clone()),
            middleware,
            mirror,
            file,
            publisher,
            tcp,
            outputs,
            output_errors: 0,
            receipts,
            answers,
            track_staging,
            compare,
            capture_latency: (clock == Clock::Monotonic).then(Histogram::default),
            to_wall,
        })
    }

    /// Takes one framed message. Never blocks.
    pub fn message(&mut self, msg: HttpMessage) {
        if let Some(h) = &self.capture_latency {
            let now = crate::clock::monotonic_ns();
            h.record(Duration::from_nanos(now.saturating_sub(msg.last_ts_ns)));
        }
        let msg = self.filters.intake(msg);
        let is_response = matches!(msg.kind, Kind::Response { .. });
        // Production's answer as it was, whatever the middleware makes of it.
        if let (Some(c), true) = (&mut self.compare, is_response) {
            c.production(&msg);
        }
        if let Some(stage) = &mut self.middleware {
            if !is_response || stage.back.responses {
                let rec = Record::from_message(&msg, self.to_wall.offset_ns(msg.clock));
                stage.back.origins.insert(&msg);
                stage.child.send(&rec);
                return;
            }
        }
        self.after_middleware(msg);
    }

    /// Waits until the middleware's queue has room (and, with `staging`, the mirror's),
    /// taking the middleware's answers meanwhile. For sources that can wait (saved
    /// traffic), so a burst is not lost to a full queue; capture never waits.
    pub async fn room(&mut self, staging: bool) {
        while self
            .middleware
            .as_ref()
            .is_some_and(|s| !s.child.has_room())
            || (staging && self.mirror.as_ref().is_some_and(|r| !r.has_room()))
        {
            tokio::select! {
                Some(b) = self.next_back() => self.back(b),
                // A child that drops messages answers nothing, and staging's answers
                // come to other tasks: look again soon.
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
    }

    /// The next thing coming back: what the middleware wrote back, or staging's answer to
    /// a mirrored request. Pending forever while neither can come (for `select!`).
    pub async fn next_back(&mut self) -> Option<Coming> {
        let middleware = async {
            match &mut self.middleware {
                Some(stage) => stage.back.returned.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(rec) = middleware => Some(Coming::Returned(rec)),
            Some(r) = next_answer(&mut self.answers) => Some(Coming::Staging(r)),
            else => None,
        }
    }

    /// Takes what [`Dispatch::next_back`] brought.
    pub fn back(&mut self, coming: Coming) {
        match coming {
            Coming::Returned(rec) => self.returned(rec),
            Coming::Staging(r) => self.staging(r),
        }
    }

    /// Takes staging's answer to a mirrored request: to the comparison, and as a type 3
    /// record to the middleware or, without one, to the outputs.
    pub fn staging(&mut self, result: StagingResult) {
        if let Some(r) = &mut self.receipts {
            r.answered(&result);
        }
        if self.track_staging {
            if let Some(rec) = replayed_record(&result) {
                match &mut self.middleware {
                    Some(stage) => stage.child.send(&rec),
                    None => self.replayed(&rec),
                }
            }
        }
        if let Some(c) = &mut self.compare {
            c.staging(result);
        }
    }

    /// A type 3 record to the outputs.
    fn replayed(&mut self, rec: &Record) {
        let r = Replayed {
            id: &rec.id,
            timestamp_ns: rec.timestamp_ns,
            latency_ns: rec.latency_ns,
            payload: &rec.payload,
        };
        for o in each(
            &mut self.file,
            &mut self.publisher,
            &mut self.tcp,
            &mut self.outputs,
        ) {
            if let Err(e) = o.replayed(&r) {
                self.output_errors += 1;
                warn!("output error (the record is skipped for this output): {e}");
            }
        }
    }

    /// Takes a record the middleware wrote back.
    fn returned(&mut self, rec: Record) {
        // Staging's responses go on to the outputs only: they are nobody's input.
        if rec.kind == RecordType::ReplayedResponse {
            return self.replayed(&rec);
        }
        if let Some(msg) = self
            .middleware
            .as_mut()
            .and_then(|s| s.back.message_of(rec, &self.to_wall))
        {
            self.after_middleware(msg);
        }
    }

    /// A record the middleware wrote back while it is being closed (taken out of `self`).
    fn returned_by(&mut self, back: &mut Back, rec: Record) {
        if rec.kind == RecordType::ReplayedResponse {
            return self.replayed(&rec);
        }
        if let Some(msg) = back.message_of(rec, &self.to_wall) {
            self.after_middleware(msg);
        }
    }

    fn after_middleware(&mut self, msg: HttpMessage) {
        // A receipt is for a request (a response shares its id), and needs the id after
        // the filters have taken the message.
        let is_request = matches!(msg.kind, Kind::Request { .. });
        let id = self
            .receipts
            .as_ref()
            .filter(|_| is_request)
            .map(|_| msg.id.clone());
        let msg = match self.filters.apply(msg) {
            Verdict::Keep(m) => m,
            Verdict::Drop => {
                if let (Some(r), Some(id)) = (&mut self.receipts, id) {
                    r.submitted(&id, Accepted::NONE);
                }
                return;
            }
        };
        if let Some(r) = &self.mirror {
            let accepted = r.submit(&msg);
            if let Some(c) = &mut self.compare {
                c.request(&msg, accepted);
            }
            if let (Some(receipts), true) = (&mut self.receipts, is_request) {
                receipts.submitted(&msg.id, accepted);
            }
        }
        for o in each(
            &mut self.file,
            &mut self.publisher,
            &mut self.tcp,
            &mut self.outputs,
        ) {
            if let Err(e) = o.message(&msg) {
                self.output_errors += 1;
                warn!("output error (the message is skipped for this output): {e}");
            }
        }
    }

    /// Periodic work: outputs flush, the comparison gives up what waited too long.
    pub fn tick(&mut self) {
        for o in each(
            &mut self.file,
            &mut self.publisher,
            &mut self.tcp,
            &mut self.outputs,
        ) {
            o.tick();
        }
        if let Some(c) = &mut self.compare {
            c.tick();
        }
    }

    /// Ends the middleware (its queue is written out and it gets `grace` to answer, while
    /// its answers go on), then mirroring (in-flight requests get `grace`; their answers
    /// still reach the comparison and the outputs), then the comparison and the outputs.
    /// Returns the final counts of mirroring and the middleware.
    pub async fn close(&mut self, grace: Duration) -> Closed {
        let middleware = match self.middleware.take() {
            Some(Stage { child, mut back }) => {
                let shutdown = child.shutdown(grace);
                tokio::pin!(shutdown);
                // The child's last answers must keep flowing while it finishes, or it would
                // block writing them and be killed at the end of the grace period.
                let stats = loop {
                    tokio::select! {
                        stats = &mut shutdown => break stats,
                        Some(rec) = back.returned.recv() => self.returned_by(&mut back, rec),
                        Some(r) = next_answer(&mut self.answers) => self.staging(r),
                    }
                };
                while let Some(rec) = back.returned.recv().await {
                    self.returned_by(&mut back, rec);
                }
                let report = back.report(&stats);
                Some(report)
            }
            None => None,
        };
        let mirror = match self.mirror.take() {
            Some(r) => {
                let shutdown = r.shutdown(grace);
                tokio::pin!(shutdown);
                let stats = loop {
                    tokio::select! {
                        stats = &mut shutdown => break stats,
                        Some(r) = next_answer(&mut self.answers) => self.staging(r),
                    }
                };
                // The lanes have ended: what they handed over is all there.
                while let Some(r) = self.answers.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    self.staging(r);
                }
                Some(stats)
            }
            None => None,
        };
        if let Some(c) = &mut self.compare {
            c.finish();
        }
        let publish = match &mut self.publisher {
            Some(p) => Some(p.close(grace).await),
            None => None,
        };
        let tcp = match &mut self.tcp {
            Some(t) => Some(t.close(grace).await),
            None => None,
        };
        for o in each(&mut self.file, &mut None, &mut None, &mut self.outputs) {
            if let Err(e) = o.finish() {
                self.output_errors += 1;
                warn!("finishing an output: {e}");
            }
        }
        Closed {
            mirror,
            middleware,
            publish,
            tcp,
        }
    }

    /// Mirroring's counters now, if mirroring.
    pub fn mirror_stats(&self) -> Option<MirrorStats> {
        self.mirror.as_ref().map(Mirror::stats)
    }

    /// The latency histograms, for the metrics endpoint.
    pub fn histograms(&self) -> Histograms {
        Histograms {
            compare_latency: self
                .compare
                .as_ref()
                .map(Comparison::histograms)
                .unwrap_or_default(),
            capture_to_dispatch: self.capture_latency.as_ref().map(Histogram::snapshot),
            staging_response: self
                .mirror
                .as_ref()
                .map(Mirror::latency_histograms)
                .unwrap_or_default(),
        }
    }

    /// Messages an output failed to take.
    pub fn output_errors(&self) -> u64 {
        self.output_errors
    }

    /// The counters of the stages after framing now (the rest of the report is the
    /// pipeline's and the source's).
    pub fn report(&self) -> Report {
        self.report_with(&Closed {
            publish: self.publisher.as_ref().map(Publisher::stats),
            tcp: self.tcp.as_ref().map(TcpOutput::stats),
            mirror: self.mirror_stats(),
            middleware: self
                .middleware
                .as_ref()
                .map(|s| s.back.report(&s.child.stats())),
        })
    }

    /// The counters, with the final counts of stages that have been closed.
    pub fn report_with(&self, closed: &Closed) -> Report {
        Report {
            mirror: closed.mirror.clone().map(MirrorReport::from),
            middleware: closed.middleware.clone(),
            filters: self.filters.stats().clone(),
            compare: self.compare.as_ref().map(Comparison::report),
            nats_publish: closed.publish.clone(),
            tcp_output: closed.tcp.clone(),
            outputs: OutputsReport {
                errors: self.output_errors,
                file: self.file.as_ref().map(FileOutput::stats),
            },
            ..Report::default()
        }
    }
}

/// What comes back to dispatch after the stages it feeds.
pub enum Coming {
    /// A record the middleware wrote back.
    Returned(Record),
    /// Staging's answer to a mirrored request.
    Staging(StagingResult),
}

/// Staging's next answer, when something wants them; pending forever otherwise.
async fn next_answer(answers: &mut Option<mpsc::Receiver<StagingResult>>) -> Option<StagingResult> {
    match answers {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Every message output, the `.gor` file first.
fn each<'a>(
    file: &'a mut Option<FileOutput>,
    publisher: &'a mut Option<Publisher>,
    tcp: &'a mut Option<TcpOutput>,
    others: &'a mut [Box<dyn MessageOutput>],
) -> impl Iterator<Item = &'a mut (dyn MessageOutput + 'static)> {
    let file = file
        .iter_mut()
        .map(|f| f as &mut (dyn MessageOutput + 'static));
    let publisher = publisher
        .iter_mut()
        .map(|p| p as &mut (dyn MessageOutput + 'static));
    let tcp = tcp
        .iter_mut()
        .map(|t| t as &mut (dyn MessageOutput + 'static));
    file.chain(publisher)
        .chain(tcp)
        .chain(others.iter_mut().map(|o| o.as_mut()))
}

/// GoReplay's type 3 record of staging's response: the request's id, the time the
/// request was written to staging, the latency, the response as kept.
fn replayed_record(r: &StagingResult) -> Option<Record> {
    let crate::mirror::Outcome::Response(resp) = &r.outcome else {
        return None;
    };
    let sent = r
        .sent_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Some(Record {
        kind: RecordType::ReplayedResponse,
        id: r.id.to_string(),
        timestamp_ns: sent,
        latency_ns: r.latency.as_nanos() as u64,
        payload: resp.message.raw.clone(),
    })
}

/// Final counts of the stages that run tasks.
#[derive(Default)]
pub struct Closed {
    pub mirror: Option<MirrorStats>,
    pub middleware: Option<MiddlewareReport>,
    pub publish: Option<PublishStats>,
    pub tcp: Option<TcpOutputStats>,
}

impl Back {
    /// The message a returned record stands for, with its origin restored when known.
    fn message_of(&mut self, rec: Record, to_wall: &ToWall) -> Option<HttpMessage> {
        let id = rec.message_id();
        let origin = self.origins.get(id, rec.kind.is_response());
        if origin.is_none() {
            self.unknown += 1;
        }
        // The connection to keep order with is in the id; a message of an id gor did not
        // write has none, and any idle lane serves it.
        let mut msg = match rec.to_message() {
            Ok(m) => m,
            Err(e) => {
                self.refused += 1;
                warn!(id = %rec.id, "middleware returned a message that is not valid HTTP: {e}");
                return None;
            }
        };
        // Back into the clock the message was captured in.
        let clock = origin.as_ref().map_or(Clock::Realtime, |o| o.clock);
        let ts = (i128::from(rec.timestamp_ns) - to_wall.offset_ns(clock)).max(0) as u64;
        msg.clock = clock;
        msg.first_ts_ns = ts;
        msg.last_ts_ns = ts;
        if let Some(o) = origin {
            msg.flow = o.flow;
            msg.offset = o.offset;
            msg.last_ts_ns = o.last_ts_ns.max(ts);
        }
        Some(msg)
    }

    fn report(&self, stats: &MiddlewareStats) -> MiddlewareReport {
        MiddlewareReport {
            stats: stats.clone(),
            refused: self.refused,
            unknown: self.unknown,
        }
    }
}

/// Where a message in the middleware came from.
#[derive(Clone, Copy)]
struct Origin {
    flow: Flow,
    clock: Clock,
    offset: u64,
    last_ts_ns: u64,
}

/// Origins by (message id, is response), bounded: oldest forgotten first.
#[derive(Default)]
struct Origins {
    by_id: HashMap<(MessageId, bool), Origin>,
    order: VecDeque<(MessageId, bool)>,
}

impl Origins {
    fn insert(&mut self, msg: &HttpMessage) {
        let key = (msg.id.clone(), matches!(msg.kind, Kind::Response { .. }));
        if self.order.len() >= ORIGINS {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        let origin = Origin {
            flow: msg.flow,
            clock: msg.clock,
            offset: msg.offset,
            last_ts_ns: msg.last_ts_ns,
        };
        if self.by_id.insert(key.clone(), origin).is_none() {
            self.order.push_back(key);
        }
    }

    /// The origin of a returned message. A middleware may return a message more than
    /// once (to duplicate it), so the entry stays until it ages out.
    fn get(&self, id: MessageId, response: bool) -> Option<Origin> {
        self.by_id.get(&(id, response)).copied()
    }
}
