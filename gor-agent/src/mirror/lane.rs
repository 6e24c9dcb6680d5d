//! The tasks of one target: a dispatcher that routes requests to lanes, and the lanes.
//!
//! A lane serves one client connection: it sends that connection's requests in order on
//! one staging connection. A request that finds the lane idle goes alone (send, read the
//! full response, next); requests that queued up meanwhile go as one batch, pipelined
//! (all written, then the responses read in order), up to `pipeline` idempotent requests
//! and [`MAX_BATCH_BYTES`]. Requests staging did not answer because it closed the
//! connection are sent again on a new one. Lanes of different client connections run
//! concurrently, at most `workers` of them at once (a semaphore). A lane gives up its
//! slot, and its keep-alive connection to the target's pool, when its client connection
//! has been quiet for [`LANE_IDLE`], or at once after a request if other lanes wait for
//! a slot; a later request of the same client connection then gets a new lane, which
//! starts only after the old one has finished, so order holds across lanes too.
//!
//! Failures (connect or TLS handshake error, reset, timeout, unparsable response) put the
//! whole target into backoff: requests reaching a lane meanwhile are dropped and counted,
//! so a dead staging costs no memory and no connection storm, and mirroring resumes by
//! itself.
//!
//! With `redirects` > 0, a redirect response whose Location is on the target
//! ([`super::redirect`]) is not the request's answer: the request that follows it is sent
//! once the lane has read the responses of its batch, on the same connection if it is
//! kept alive (else on a new one), up to `redirects` times per request; the
//! last response is the request's answer, its latency the whole chain's.
//!
//! When a stage subscribed to results ([`super::result`]), each request written (or
//! given up on) also yields a [`StagingResult`]: the lane takes the subscriber once per
//! batch, has the response reader keep the final response up to the body limit, and
//! hands the result over without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::conn::{connect, ConnectError, Pool, PortExclusion, StagingConn};
use super::redirect::{self, Follow, Origin};
use super::response::{read_response_keeping, ReadError, Response};
use super::result::{FailureKind, Outcome, Results, Sink, StagingResponse, StagingResult};
use super::rewrite::{build_request, Rewrite};
use super::stats::{inc, sub, Counters};
use super::tls::TlsTarget;
use crate::envelope::{ConnKey, MessageId};
use crate::http::HttpMessage;
use crate::stream::Direction;

/// Which lane a request goes to. A request from a known client connection goes to that
/// connection's lane (its order is kept). A request of no known connection (saved
/// traffic written by another tool, a middleware's own messages) goes to an idle shared
/// lane, else a new one (up to `workers`), else the least loaded: while staging keeps up,
/// one lane serves them all in order; concurrency grows only when requests overlap, as
/// they did when they were recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LaneKey {
    Conn(ConnKey),
    Shared(u64),
}

/// Requests a lane may hold waiting; more are dropped (`lane_queue_full`). About a second
/// of a busy client connection (500 requests/s), so a staging hiccup or a moment without
/// CPU is absorbed rather than dropped; memory stays bounded by the byte budget.
pub(crate) const LANE_QUEUE: usize = 512;
/// Most bytes of requests a lane writes before reading their responses. Small enough to
/// sit in the socket buffers whole, so the write completes even while staging, blocked
/// on responses the lane has not read yet, stops reading requests.
pub(crate) const MAX_BATCH_BYTES: usize = 32 * 1024;
/// A lane ends after its client connection sent nothing for this long.
pub(crate) const LANE_IDLE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A captured request, as the lanes need it; cheap to clone (the bytes are shared).
#[derive(Clone, Debug)]
pub(crate) struct Request {
    /// The captured message's id, carried into the staging result; the client connection
    /// it names (when known) is the lane that keeps its order.
    pub id: MessageId,
    pub raw: Bytes,
    pub body_offset: usize,
    /// HEAD: the response has no body whatever its headers say.
    pub head: bool,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// Sending it twice does what sending it once does (GET, HEAD, PUT, ...): only such
    /// requests are pipelined, so a connection lost mid-batch never leaves it unknown
    /// whether staging processed a POST that is then sent again (RFC 9112, section
    /// 9.3.2); a POST goes alone, as without pipelining.
    pub idempotent: bool,
    /// A later request may be written before this one's response has come: it is
    /// idempotent, HTTP/1.1, keeps the connection and asks no upgrade.
    pub pipeline_after: bool,
}

/// A request accepted for one target, with its accounting.
pub(crate) struct Job {
    pub req: Request,
    pub ticket: Ticket,
}

/// Accounts for an accepted request until it is finished: keeps the target's `pending`
/// gauges, and counts it as aborted if it is dropped unfinished (only a shutdown abort
/// drops jobs without finishing them).
pub(crate) struct Ticket {
    ctx: Arc<TargetCtx>,
    bytes: u64,
    done: bool,
}

impl Ticket {
    /// Reserves room for `bytes` in the target's byte budget, or `None` if it is full.
    pub fn reserve(ctx: &Arc<TargetCtx>, bytes: usize) -> Option<Ticket> {
        let bytes = bytes as u64;
        let c = &ctx.counters;
        let before = c.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > ctx.max_pending_bytes {
            sub(&c.pending_bytes, bytes);
            return None;
        }
        inc(&c.pending);
        Some(Ticket {
            ctx: ctx.clone(),
            bytes,
            done: false,
        })
    }

    pub fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let c = &self.ctx.counters;
        sub(&c.pending, 1);
        sub(&c.pending_bytes, self.bytes);
        if !self.done {
            inc(&c.aborted_at_shutdown);
        }
    }
}

/// Everything the tasks of one target share.
pub(crate) struct TargetCtx {
    /// The target's index in the configuration.
    pub index: usize,
    pub name: String,
    pub addr: String,
    /// For `https://` targets.
    pub tls: Option<TlsTarget>,
    pub rewrite: Rewrite,
    pub timeout: Duration,
    pub exclusion: Option<Arc<dyn PortExclusion>>,
    pub counters: Counters,
    pub pool: Pool,
    pub slots: Arc<Semaphore>,
    /// The number of slots (`workers`).
    pub slots_total: usize,
    /// Lanes waiting for a slot: running lanes then hand over as soon as they are idle.
    pub waiting: AtomicUsize,
    pub max_lanes: usize,
    pub max_pending_bytes: u64,
    /// Most requests a lane writes before reading their responses (1: no pipelining).
    pub pipeline: usize,
    /// Most redirects followed per request (0: none).
    pub redirects: usize,
    /// The target's scheme, host and port: only redirects there are followed.
    pub origin: Origin,
    pub backoff: Backoff,
    /// Where staging results go, when something subscribed.
    pub results: Arc<Results>,
}

/// Exponential backoff of a target, shared by its lanes.
#[derive(Debug)]
pub(crate) struct Backoff {
    state: Mutex<BackoffState>,
}

#[derive(Debug)]
struct BackoffState {
    until: Option<Instant>,
    next_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            state: Mutex::new(BackoffState {
                until: None,
                next_delay: BACKOFF_MIN,
            }),
        }
    }
}

impl Backoff {
    pub fn active(&self) -> bool {
        self.lock().until.is_some_and(|u| Instant::now() < u)
    }

    /// Starts a backoff period. Failures during one (other lanes' requests that were
    /// already in flight) do not lengthen it, so concurrency does not inflate the delay.
    pub fn failure(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.until.is_some_and(|u| now < u) {
            return;
        }
        s.until = Some(now + s.next_delay);
        s.next_delay = (s.next_delay * 2).min(BACKOFF_MAX);
    }

    pub fn success(&self) {
        let mut s = self.lock();
        s.until = None;
        s.next_delay = BACKOFF_MIN;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the dispatcher of one target until its queue is closed and drained, or until
/// `cancel` turns true, which aborts the lanes (their jobs count as aborted).
pub(crate) async fn run_target(
    ctx: Arc<TargetCtx>,
    rx: mpsc::Receiver<Job>,
    mut cancel: watch::Receiver<bool>,
) {
    let mut d = Dispatcher {
        ctx,
        lanes: HashMap::new(),
        tasks: JoinSet::new(),
        shared: Vec::new(),
        next_shared: 0,
    };
    tokio::select! {
        _ = cancelled(&mut cancel) => {}
        _ = d.run(rx) => {}
    }
    // After a cancel: the queue (moved into `run`) is dropped by now; wait until every
    // lane is really gone so the aborted jobs are counted when `shutdown` returns.
    d.tasks.abort_all();
    while d.tasks.join_next().await.is_some() {}
}

async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow_and_update() {
        if cancel.changed().await.is_err() {
            // The mirror was dropped without a shutdown: never cancel.
            std::future::pending::<()>().await;
        }
    }
}

struct LaneEntry {
    tx: mpsc::Sender<Job>,
    /// Jobs queued in the lane or being processed.
    load: Arc<AtomicUsize>,
    /// Resolves (with an error) once the lane task has ended.
    done: oneshot::Receiver<()>,
}

impl LaneEntry {
    /// The lane stopped taking requests and its task has ended.
    fn finished(&mut self) -> bool {
        self.tx.is_closed()
            && !matches!(
                self.done.try_recv(),
                Err(oneshot::error::TryRecvError::Empty)
            )
    }
}

struct Dispatcher {
    ctx: Arc<TargetCtx>,
    lanes: HashMap<LaneKey, LaneEntry>,
    tasks: JoinSet<LaneKey>,
    /// The lanes of requests of no known connection, oldest first.
    shared: Vec<LaneKey>,
    next_shared: u64,
}

impl Dispatcher {
    async fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => self.route(job),
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(conn) = done {
                        self.forget_if_finished(conn);
                    }
                }
                _ = tick.tick() => {
                    self.ctx.pool.prune();
                    self.lanes.retain(|_, e| !e.finished());
                }
            }
        }
        // Shutdown: dropping the senders lets each lane finish its queue and end.
        self.lanes.clear();
        while self.tasks.join_next().await.is_some() {}
    }

    fn forget_if_finished(&mut self, conn: LaneKey) {
        if self.lanes.get_mut(&conn).is_some_and(LaneEntry::finished) {
            self.lanes.remove(&conn);
        }
    }

    /// Hands a job to its client connection's lane, starting the lane if needed.
    fn route(&mut self, job: Job) {
        let Some(conn) = job.req.id.conn().map(LaneKey::Conn) else {
            return self.route_any(job);
        };
        let mut prev = None;
        let job = match self.lanes.get(&conn) {
            None => job,
            Some(lane) => match send(lane, job) {
                Ok(()) => return,
                Err(TrySendError::Full(job)) => {
                    inc(&self.ctx.counters.lane_queue_full);
                    return job.ticket.finish();
                }
                // The lane is retiring: a new one takes over once it has ended.
                Err(TrySendError::Closed(job)) => {
                    prev = self.lanes.remove(&conn).map(|e| e.done);
                    job
                }
            },
        };
        self.start_lane(conn, job, prev);
    }

    /// Routes a job of no known connection: see [`LaneKey`].
    fn route_any(&mut self, job: Job) {
        let lanes = &self.lanes;
        self.shared
            .retain(|id| lanes.get(id).is_some_and(|l| !l.tx.is_closed()));
        let load = |id: &LaneKey| {
            self.lanes
                .get(id)
                .map_or(usize::MAX, |l| l.load.load(Ordering::Relaxed))
        };
        let idle = self.shared.iter().copied().find(|id| load(id) == 0);
        let workers = self.ctx.slots_total;
        let pick = match idle {
            Some(id) => Some(id),
            None if self.shared.len() < workers => None,
            None => self.shared.iter().copied().min_by_key(load),
        };
        match pick.and_then(|id| self.lanes.get(&id)) {
            Some(lane) => match send(lane, job) {
                Ok(()) => {}
                Err(TrySendError::Full(job) | TrySendError::Closed(job)) => {
                    inc(&self.ctx.counters.lane_queue_full);
                    job.ticket.finish();
                }
            },
            None => {
                let id = LaneKey::Shared(self.next_shared);
                self.next_shared += 1;
                self.start_lane(id, job, None);
                if self.lanes.contains_key(&id) {
                    self.shared.push(id);
                }
            }
        }
    }

    fn start_lane(&mut self, conn: LaneKey, job: Job, prev: Option<oneshot::Receiver<()>>) {
        if self.lanes.len() >= self.ctx.max_lanes {
            self.lanes.retain(|_, e| !e.finished());
        }
        if self.lanes.len() >= self.ctx.max_lanes {
            inc(&self.ctx.counters.lanes_full);
            job.ticket.finish();
            return;
        }
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        let (done_tx, done) = oneshot::channel();
        if let Err(e) = tx.try_send(job) {
            // Cannot happen with a fresh channel; finish the job rather than lose count.
            e.into_inner().ticket.finish();
            return;
        }
        let load = Arc::new(AtomicUsize::new(1));
        let lane = Lane {
            ctx: self.ctx.clone(),
            conn: None,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            held: None,
            followups: Vec::new(),
            load: load.clone(),
            sink: None,
            began: (Instant::now(), SystemTime::now()),
        };
        self.tasks.spawn(lane.run(conn, rx, prev, done_tx));
        self.lanes.insert(conn, LaneEntry { tx, load, done });
    }
}

/// Queues a job in a lane, counting it in the lane's load.
fn send(lane: &LaneEntry, job: Job) -> Result<(), TrySendError<Job>> {
    lane.load.fetch_add(1, Ordering::Relaxed);
    lane.tx.try_send(job).inspect_err(|_| {
        lane.load.fetch_sub(1, Ordering::Relaxed);
    })
}

/// Decrements a gauge when dropped (also when the task is aborted).
struct GaugeGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        sub(self.0, 1);
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request of a batch, built for this target, waiting for its response.
struct Pending {
    bytes: Vec<u8>,
    head: bool,
    close: bool,
    /// See [`Request::idempotent`]; for a follow-up, of its own method.
    idempotent: bool,
    /// See [`Request::pipeline_after`].
    pipeline_after: bool,
    ticket: Ticket,
    id: MessageId,
    /// When it was last written (for its result).
    sent: Option<(Instant, SystemTime)>,
    /// Redirects followed so far.
    hops: usize,
    /// When the first request of its redirect chain was sent, once one was followed: the
    /// start of its latency and its `sent_at`.
    chain: Option<(Instant, SystemTime)>,
}

impl Pending {
    /// When the request (the first of its chain) was sent.
    fn first_sent(&self) -> Option<(Instant, SystemTime)> {
        self.chain.or(self.sent)
    }

    /// How many of `pending`, from the front, may be written together: each after the
    /// first must be idempotent and may follow the one before. Batches are gathered so
    /// (see [`Lane::gather`]); follow-ups of redirects are checked here.
    fn pipelinable(pending: &VecDeque<Pending>) -> usize {
        1 + pending
            .iter()
            .zip(pending.iter().skip(1))
            .take_while(|(prev, p)| prev.pipeline_after && p.idempotent)
            .count()
    }
}

struct Lane {
    ctx: Arc<TargetCtx>,
    conn: Option<StagingConn>,
    /// Response buffer, reused across requests; between pipelined responses it holds
    /// what was read past the previous one.
    buf: BytesMut,
    /// Write buffer for a batch, reused.
    out: BytesMut,
    /// A job taken from the queue that did not fit the previous batch.
    held: Option<Job>,
    /// Requests of the batch that follow a redirect, sent once the batch is answered.
    followups: Vec<Pending>,
    /// Shared with the dispatcher: jobs queued here or being processed.
    load: Arc<AtomicUsize>,
    /// The subscriber to results, taken once per batch; `None` keeps nothing.
    sink: Option<Sink>,
    /// When the current attempt began: the start of a failure's latency when the
    /// request was not written.
    began: (Instant, SystemTime),
}

impl Lane {
    async fn run(
        mut self,
        conn_id: LaneKey,
        mut rx: mpsc::Receiver<Job>,
        prev: Option<oneshot::Receiver<()>>,
        _done: oneshot::Sender<()>,
    ) -> LaneKey {
        let ctx = self.ctx.clone();
        inc(&ctx.counters.lanes);
        let _lanes = GaugeGuard(&ctx.counters.lanes);
        if let Some(prev) = prev {
            let _ = prev.await; // Err once the previous lane's task has ended.
        }
        let Some(_slot) = self.acquire_slot().await else {
            return conn_id;
        };
        self.conn = ctx.pool.take();
        while let Some(job) = self.next_job(&mut rx).await {
            self.process(job, &mut rx).await;
        }
        // Requests that slipped in before the close are still ours, in order.
        rx.close();
        while let Some(job) = match self.held.take() {
            Some(job) => Some(job),
            None => rx.recv().await,
        } {
            self.process(job, &mut rx).await;
        }
        if let Some(conn) = self.conn.take() {
            ctx.pool.put(conn);
        }
        conn_id
    }

    async fn acquire_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let ctx = &self.ctx;
        ctx.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = WaitingGuard(&ctx.waiting);
        ctx.slots.clone().acquire_owned().await.ok()
    }

    /// The next request, or `None` when the lane should end: queue closed, client
    /// connection idle, or (when other lanes wait for a slot) nothing queued right now.
    async fn next_job(&mut self, rx: &mut mpsc::Receiver<Job>) -> Option<Job> {
        if let Some(job) = self.held.take() {
            return Some(job);
        }
        match rx.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) if self.ctx.waiting.load(Ordering::Relaxed) > 0 => None,
            Err(TryRecvError::Empty) => tokio::time::timeout(LANE_IDLE, rx.recv())
                .await
                .ok()
                .flatten(),
        }
    }

    /// The batch that starts with `first`: the requests queued behind it, as long as
    /// each is idempotent and may follow the one before (see [`Request::pipeline_after`]) and
    /// the batch stays within [`ctx.pipeline`](TargetCtx::pipeline) requests and
    /// [`MAX_BATCH_BYTES`]. It never waits: a lane that keeps up sends one at a time.
    fn gather(&mut self, first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
        let mut bytes = first.req.raw.len();
        let mut batch = vec![first];
        while batch.len() < self.ctx.pipeline && batch[batch.len() - 1].req.pipeline_after {
            let Ok(job) = rx.try_recv() else { break };
            bytes += job.req.raw.len();
            if bytes > MAX_BATCH_BYTES || !job.req.idempotent {
                self.held = Some(job);
                break;
            }
            batch.push(job);
        }
        batch
    }

    /// Sends `first` and the requests pipelined behind it, reads their responses, and
    /// counts the outcome of each.
    async fn process(&mut self, first: Job, rx: &mut mpsc::Receiver<Job>) {
        let batch = self.gather(first, rx);
        let n = batch.len();
        let ctx = self.ctx.clone();
        let c = &ctx.counters;
        let mut pending = VecDeque::with_capacity(n);
        self.sink = ctx.results.sink();
        for job in batch {
            if ctx.backoff.active() {
                inc(&c.dropped_backoff);
                job.ticket.finish();
                continue;
            }
            match build_request(&job.req.raw, job.req.body_offset, &ctx.rewrite) {
                Some(bytes) => pending.push_back(Pending {
                    bytes,
                    head: job.req.head,
                    close: job.req.close,
                    idempotent: job.req.idempotent,
                    pipeline_after: job.req.pipeline_after,
                    ticket: job.ticket,
                    id: job.req.id,
                    sent: None,
                    hops: 0,
                    chain: None,
                }),
                None => {
                    inc(&c.bad_requests);
                    job.ticket.finish();
                }
            }
        }
        loop {
            if pending.is_empty() {
                if self.followups.is_empty() {
                    break;
                }
                pending.extend(self.followups.drain(..));
            }
            if let Err(kind) = self.attempt(&mut pending).await {
                let counter = match kind {
                    FailureKind::Connect | FailureKind::Tls => &c.connect_errors,
                    FailureKind::Write | FailureKind::Closed => &c.resets,
                    FailureKind::BadResponse => &c.bad_responses,
                    FailureKind::Timeout => &c.timeouts,
                };
                counter.fetch_add(pending.len() as u64, Ordering::Relaxed);
                for p in pending.drain(..) {
                    self.failed(&p, kind);
                    p.ticket.finish();
                }
                self.conn = None;
                ctx.backoff.failure();
            }
        }
        self.load.fetch_sub(n, Ordering::Relaxed);
        self.sink = None;
    }

    /// Hands the subscriber the failure of a request, if there is a subscriber.
    fn failed(&self, p: &Pending, kind: FailureKind) {
        let Some(sink) = &self.sink else { return };
        let (since, sent_at) = p.first_sent().unwrap_or(self.began);
        let result = staging_result(
            &self.ctx,
            p,
            sent_at,
            since.elapsed(),
            Outcome::Failure(kind),
        );
        sink.send(result, &self.ctx.counters.results_dropped);
    }

    /// Writes the pending requests on one connection, then reads their responses in
    /// order, finishing each answered request; returns once some are answered and the
    /// rest (if any) must go on another connection, or with the failure that ends them all.
    ///
    /// A new connection carries one request until its response shows that it is kept
    /// alive, so a staging that closes every connection (HTTP/1.0, `Connection: close`)
    /// never has requests pipelined behind one it will not answer. A reused keep-alive
    /// connection that turns out to be closed by staging (the write fails, or EOF/reset
    /// before any byte of a response) is replaced and the unanswered requests are sent
    /// again, as HTTP clients do: staging may close an idle connection at any moment. A
    /// new connection is only given up on that way after it answered something, so
    /// every return without a failure makes progress.
    async fn attempt(&mut self, pending: &mut VecDeque<Pending>) -> Result<(), FailureKind> {
        let ctx = self.ctx.clone();
        let c = &ctx.counters;
        self.began = (Instant::now(), SystemTime::now());
        let reused = self.conn.is_some();
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let connecting = connect(&ctx.addr, ctx.tls.as_ref(), ctx.exclusion.as_ref());
                match tokio::time::timeout(ctx.timeout, connecting).await {
                    Ok(Ok(conn)) => self.conn.insert(conn),
                    Ok(Err(e)) => {
                        tracing::debug!(target = %ctx.name, error = %e, "connect failed");
                        return Err(match e {
                            ConnectError::Tcp(_) => FailureKind::Connect,
                            ConnectError::Tls(_) => FailureKind::Tls,
                        });
                    }
                    Err(_) => return Err(FailureKind::Timeout),
                }
            }
        };
        let written = if reused {
            Pending::pipelinable(pending)
        } else {
            1
        };
        self.out.clear();
        for p in pending.iter().take(written) {
            self.out.extend_from_slice(&p.bytes);
        }
        // TLS may keep the tail of the batch buffered until flushed (no-op for TCP).
        let write = async {
            conn.stream.write_all(&self.out).await?;
            conn.stream.flush().await
        };
        match tokio::time::timeout(ctx.timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if reused => {
                self.conn = None;
                c.retries.fetch_add(written as u64, Ordering::Relaxed);
                return Ok(());
            }
            Ok(Err(e)) => {
                tracing::debug!(target = %ctx.name, error = %e, "write failed");
                return Err(FailureKind::Write);
            }
            Err(_) => return Err(FailureKind::Timeout),
        }
        c.sent.fetch_add(written as u64, Ordering::Relaxed);
        c.pipelined.fetch_add(written as u64 - 1, Ordering::Relaxed);
        let start = Instant::now();
        if self.sink.is_some() {
            let at = (start, SystemTime::now());
            pending
                .iter_mut()
                .take(written)
                .for_each(|p| p.sent = Some(at));
        }
        let keep_body = self.sink.as_ref().map(|s| s.body_limit);
        self.buf.clear();
        // A pipelined request's latency starts when staging could start on it: when it
        // was written or when the response before it was read, whichever is later, so a
        // fast endpoint behind a slow one on the same connection is not counted slow.
        let mut since = start;
        for answered in 0..written {
            let p = pending.front().expect("written requests are pending");
            let more = written - answered > 1;
            let reading =
                read_response_keeping(&mut conn.stream, &mut self.buf, p.head, more, keep_body);
            let resp = match tokio::time::timeout(ctx.timeout, reading).await {
                Ok(Ok(resp)) => resp,
                Ok(Err(e)) if e.nothing_received() && (reused || answered > 0) => {
                    self.conn = None;
                    c.retries
                        .fetch_add((written - answered) as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::debug!(target = %ctx.name, error = %e, "mirrored request failed");
                    return Err(match e {
                        ReadError::Bad(_) => FailureKind::BadResponse,
                        _ => FailureKind::Closed,
                    });
                }
                Err(_) => {
                    tracing::debug!(target = %ctx.name, "mirrored request timed out");
                    return Err(FailureKind::Timeout);
                }
            };
            let hop_start = since;
            since = Instant::now();
            ctx.backoff.success();
            let mut done = pending.pop_front().expect("front");
            let keep_alive = resp.keep_alive;
            let close = done.close;
            if follow(&ctx, &mut done, &resp, hop_start) {
                self.followups.push(done);
            } else {
                let latency = done.chain.map_or(hop_start, |(at, _)| at).elapsed();
                c.status(resp.status);
                c.latency.record(latency);
                if let Some(sink) = &self.sink {
                    hand_over_response(sink, &ctx, &done, resp, latency);
                }
                done.ticket.finish();
            }
            if !keep_alive || close {
                // Staging did not process what was written behind this one.
                self.conn = None;
                let unanswered = written - answered - 1;
                c.retries.fetch_add(unanswered as u64, Ordering::Relaxed);
                return Ok(());
            }
            if more && self.buf.is_empty() {
                conn.take_ready_or_ack(&mut self.buf);
            }
        }
        Ok(())
    }
}

/// Turns `p` into the request that follows `resp` when it is a redirect to follow
/// (see [`super::redirect`]), counting what is followed and what is not because it
/// points elsewhere. `hop_start`: when `p`'s latency started on this hop.
fn follow(ctx: &TargetCtx, p: &mut Pending, resp: &Response, hop_start: Instant) -> bool {
    let c = &ctx.counters;
    let Some(location) = resp.location.as_ref().filter(|_| p.hops < ctx.redirects) else {
        return false;
    };
    match redirect::follow(&p.bytes, resp.status, location, &ctx.origin) {
        Follow::Request(next) => {
            let sent_at = p.sent.map_or_else(SystemTime::now, |(_, at)| at);
            p.chain.get_or_insert((hop_start, sent_at));
            p.bytes = next.bytes;
            p.head = next.head;
            p.idempotent = next.idempotent;
            p.hops += 1;
            inc(&c.redirects_followed);
            true
        }
        Follow::Elsewhere => {
            inc(&c.redirects_elsewhere);
            false
        }
        Follow::No => false,
    }
}

/// Hands the subscriber the response to a request (kept by the response reader).
fn hand_over_response(
    sink: &Sink,
    ctx: &TargetCtx,
    p: &Pending,
    resp: Response,
    latency: Duration,
) {
    let Some(kept) = resp.kept else { return };
    let now = crate::clock::monotonic_ns();
    let message = HttpMessage {
        id: p.id.clone(),
        clock: crate::clock::Clock::Monotonic,
        // The captured flow is not carried along (it would double the size of every
        // queued request); the id pairs the result with the captured messages.
        flow: crate::http::unknown_flow(),
        dir: Direction::ServerToClient,
        offset: 0,
        first_ts_ns: now,
        last_ts_ns: now,
        raw: kept.raw,
        kind: kept.kind,
        headers: kept.headers,
        body_offset: kept.body_offset,
        latency_ns: Some(latency.as_nanos() as u64),
    };
    let response = StagingResponse {
        status: resp.status,
        message,
        body_len: kept.body_len,
    };
    // Written in this attempt, so `sent` is set.
    let sent_at = p.first_sent().map_or_else(SystemTime::now, |(_, at)| at);
    let result = staging_result(
        ctx,
        p,
        sent_at,
        latency,
        Outcome::Response(Box::new(response)),
    );
    sink.send(result, &ctx.counters.results_dropped);
}

fn staging_result(
    ctx: &TargetCtx,
    p: &Pending,
    sent_at: SystemTime,
    latency: Duration,
    outcome: Outcome,
) -> StagingResult {
    StagingResult {
        id: p.id.clone(),
        target: ctx.index,
        target_name: ctx.name.clone(),
        sent_at,
        latency,
        outcome,
    }
}
