//! Mirroring to staging: sends captured HTTP requests to one or more staging targets.
//! (Playing saved traffic back, `gor-agent replay`, is the `replay` module: a source.)
//!
//! [`Mirror::submit`] is called on the capture path and never blocks: it samples the
//! request (the default `Rate`, one decision for the targets that use it), picks the
//! targets (all of them, or with [`MirrorOptions::split`] the one of its client
//! connection), then for each target applies its rate limit (its own `Rate` if it has
//! one, a leaky bucket or a [`RateGate`] that shares the limit with other processes) and a
//! bounded queue, dropping and counting whatever does not fit. Behind each queue a dispatcher routes
//! requests to one lane per client connection, which sends them in order on a
//! keep-alive staging connection (see [`lane`]). Requests are rewritten minimally
//! ([`rewrite`]): only `Host`, configured headers (and the target's basic auth) and the
//! base path (or the target's fixed path) change, everything else is sent byte for byte as
//! the client sent it. With [`MirrorOptions::redirects`], staging's redirects to the
//! same target are followed ([`redirect`]), and the last response is the answer.
//!
//! `https://` targets are reached over TLS (rustls; system roots plus
//! [`MirrorOptions::tls_ca`]); everything else is the same for them.
//!
//! Memory is bounded per target by the queue length, the lane count and lane queue
//! length, and a byte budget over all accepted requests.
//!
//! Staging's answers can be had as data: [`Mirror::subscribe`] returns a bounded channel
//! of [`StagingResult`]s, one per request sent to a target (see [`result`]), each with
//! the captured request's id and staging's response framed like a captured one (or the
//! kind of failure). Without a subscriber nothing of a response is kept.

mod conn;
mod lane;
mod redirect;
mod response;
mod result;
mod rewrite;
pub mod settings;
mod stats;
mod target;
#[cfg(test)]
mod tests;
pub(crate) mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leaky_bucket::RateLimiter;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::http::{HttpMessage, Kind};
use crate::stream::Direction;
use lane::{Backoff, Job, Request, TargetCtx, Ticket};
use stats::{inc, Counters, HistogramSnapshot};

pub use conn::PortExclusion;
pub use result::{FailureKind, Outcome, StagingResponse, StagingResult};
pub use stats::{LatencySummary, MirrorStats, TargetStats};
pub use target::{PathMode, Secret, Target};
pub use tls::{load_ca_file, CaCert};

/// Requests accepted per target may hold at most this many bytes in total.
const MAX_PENDING_BYTES: u64 = 64 * 1024 * 1024;

/// Default [`MirrorOptions::result_body_limit`].
pub const DEFAULT_RESULT_BODY_LIMIT: usize = 64 * 1024;

/// Which share of the captured requests is mirrored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    All,
    /// At most this many requests per second per target; the excess is dropped. With a
    /// [`RateGate`] for the target (see [`MirrorOptions::gates`]) the gate decides
    /// instead, so that the limit can hold for a whole fleet rather than this process.
    PerSecond(u32),
    /// Each request is kept with this probability (0..=100), the same decision for all
    /// targets.
    Percent(f64),
}

/// Decides, for one target, whether one more request fits in its `Rate::PerSecond`
/// limit, in place of the local leaky bucket: a fleet of replay servers shares one budget
/// through it (the broker's `SharedRate`). The mirror knows only this trait, not how the
/// budget is kept.
pub trait RateGate: Send + Sync {
    /// Takes one request's worth of the budget if there is one. Called on the capture
    /// path for every request, so it must not block or await.
    fn try_take(&self) -> bool;
}

/// How to mirror.
#[derive(Clone)]
pub struct MirrorOptions {
    pub targets: Vec<Target>,
    /// The rate of targets without their own ([`Target::rate`]).
    pub rate: Rate,
    /// Each request goes to one target only instead of every target: a client
    /// connection's requests all to the same one, the targets taking connections in turn
    /// (requests of no known connection take the targets in turn one by one).
    pub split: bool,
    /// Per request: connect + write + read of the full response.
    pub timeout: Duration,
    /// Most concurrent staging connections (lanes) per target.
    pub workers: usize,
    /// Most requests written on a staging connection before their responses are read
    /// (HTTP/1.1 pipelining, only of requests already waiting); 1 turns it off.
    pub pipeline: usize,
    /// Most redirects of staging followed per request, each only to the same target
    /// (see [`redirect`]); 0: none, a redirect is the answer.
    pub redirects: usize,
    /// Length of each target's queue.
    pub queue: usize,
    /// Keep the client's `Host` header instead of the target's.
    pub original_host: bool,
    /// Headers to set: each replaces the first header of that name, or is appended.
    pub set_headers: Vec<(String, String)>,
    /// Told the local port of every staging connection, so capture can skip it.
    pub exclusion: Option<Arc<dyn PortExclusion>>,
    /// CA certificates trusted for `https://` targets besides the system roots.
    pub tls_ca: Vec<CaCert>,
    /// Accept any certificate from `https://` targets (no verification).
    pub tls_skip_verify: bool,
    /// Most body bytes of a staging response kept in its [`StagingResult`] (only kept for
    /// a subscriber, see [`Mirror::subscribe`]); [`DEFAULT_RESULT_BODY_LIMIT`].
    pub result_body_limit: usize,
    /// Each target's [`RateGate`], indexed like `targets` (missing entries and `None`
    /// mean none); used only when the target's rate (its own, or the default) is
    /// `Rate::PerSecond(n)`, n > 0. Empty: every target has its own local limit.
    pub gates: Vec<Option<Arc<dyn RateGate>>>,
}

/// The targets that queued a request: bit `i` for target `i` of
/// [`MirrorOptions::targets`] (at most [`MAX_TARGETS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted(pub u64);

impl Accepted {
    pub const NONE: Accepted = Accepted(0);

    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub fn contains(self, target: usize) -> bool {
        target < MAX_TARGETS && self.0 & (1 << target) != 0
    }

    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// Without `target`.
    pub fn without(self, target: usize) -> Accepted {
        if target < MAX_TARGETS {
            Accepted(self.0 & !(1 << target))
        } else {
            self
        }
    }
}

/// Staging targets one agent mirrors to, at most.
pub const MAX_TARGETS: usize = 64;

/// Mirrors requests to staging; see the module documentation.
pub struct Mirror {
    targets: Vec<TargetHandle>,
    /// The default rate's `Rate::Percent` draw, for the targets that use it.
    sampler: Sampler,
    /// Whether the draw is made: some target uses it (or there is none, so that the
    /// sampling is still counted).
    draws: bool,
    /// [`MirrorOptions::split`]: the next target for a request of no known connection.
    split: Option<AtomicU64>,
    globals: Arc<Globals>,
    cancel: watch::Sender<bool>,
    results: Arc<result::Results>,
}

#[derive(Default)]
struct Globals {
    submitted: AtomicU64,
    ignored: AtomicU64,
    sampled_out: AtomicU64,
}

struct TargetHandle {
    ctx: Arc<TargetCtx>,
    /// It has no rate of its own: the default rate's draw applies.
    shares_draw: bool,
    limiter: Limiter,
    tx: mpsc::Sender<Job>,
    task: JoinHandle<()>,
}

impl Mirror {
    /// Starts the target tasks on the current tokio runtime (panics outside one, like
    /// `tokio::spawn`).
    pub fn start(cfg: MirrorOptions) -> Mirror {
        let set_headers = valid_set_headers(&cfg.set_headers);
        let (cancel, cancel_rx) = watch::channel(false);
        let results = result::Results::new(cfg.result_body_limit);
        // One TLS configuration for all https targets, built only if there is one.
        let tls = cfg
            .targets
            .iter()
            .any(|t| t.tls)
            .then(|| tls::client_config(&cfg.tls_ca, cfg.tls_skip_verify));
        let targets = cfg
            .targets
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let shared = Shared {
                    tls: tls.as_ref(),
                    set_headers: &set_headers,
                    results: &results,
                };
                start_target(&cfg, index, t, shared, cancel_rx.clone())
            })
            .collect::<Vec<TargetHandle>>();
        let draws = targets.is_empty() || targets.iter().any(|t| t.shares_draw);
        Mirror {
            targets,
            sampler: Sampler::new(cfg.rate),
            draws,
            split: cfg.split.then(AtomicU64::default),
            globals: Arc::default(),
            cancel,
            results,
        }
    }

    /// Subscribes to staging's answers: from now on every request sent to a target (or
    /// given up on after a failure) yields one [`StagingResult`] on the returned
    /// channel, which holds at most `capacity` of them. The lanes never wait for it: a
    /// result that does not fit is dropped and counted (`results_dropped`). A later call
    /// replaces the subscriber; without one (or once its receiver is dropped) no response
    /// is kept.
    pub fn subscribe(&mut self, capacity: usize) -> mpsc::Receiver<StagingResult> {
        self.results.subscribe(capacity)
    }

    /// Offers a captured message for mirroring. Never blocks or awaits: whatever cannot
    /// be taken at once is dropped and counted. Only client requests are mirrored
    /// (CONNECT excepted: tunnels cannot be mirrored). Returns the targets that queued
    /// it: each of them yields a [`StagingResult`] for it to a subscriber, unless it is
    /// dropped later (lane queue full, backoff, shutdown; counted).
    pub fn submit(&self, msg: &HttpMessage) -> Accepted {
        inc(&self.globals.submitted);
        let Some(req) = request_of(msg) else {
            inc(&self.globals.ignored);
            return Accepted::NONE;
        };
        let sampled_out = self.draws && !self.sampler.keep();
        if sampled_out {
            inc(&self.globals.sampled_out);
        }
        let chosen = self
            .split
            .as_ref()
            .map(|next| self.split_target(&req, next));
        let mut accepted = Accepted::NONE;
        for (i, t) in self.targets.iter().enumerate() {
            if chosen.is_some_and(|c| c != i) || (sampled_out && t.shares_draw) {
                continue;
            }
            if t.offer(&req) {
                accepted.0 |= 1 << i;
            }
        }
        accepted
    }

    /// With [`MirrorOptions::split`], the target of a request: by its client connection
    /// (connections are numbered in order, so they take the targets in turn), or the next
    /// one in turn for a request of no known connection.
    fn split_target(&self, req: &Request, next: &AtomicU64) -> usize {
        let n = self.targets.len().max(1) as u64;
        let turn = match req.id.conn() {
            Some(c) => (c.origin.0 % n + c.conn % n) % n,
            None => next.fetch_add(1, Ordering::Relaxed) % n,
        };
        turn as usize
    }

    /// Whether every target can take another request now without dropping it: a source
    /// that can wait (saved traffic replayed as fast as staging goes) waits for this.
    pub fn has_room(&self) -> bool {
        self.targets.iter().all(TargetHandle::has_room)
    }

    /// Each target's staging response times, labelled with the target.
    pub fn latency_histograms(&self) -> Vec<crate::histogram::Series> {
        self.targets
            .iter()
            .map(|t| crate::histogram::Series {
                labels: vec![("target", t.ctx.name.clone())],
                histogram: t.ctx.counters.latency.snapshot(),
            })
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MirrorStats {
        let ctxs: Vec<&TargetCtx> = self.targets.iter().map(|t| &*t.ctx).collect();
        snapshot(&self.globals, &ctxs)
    }

    /// Stops accepting, lets queued and in-flight requests finish within `grace`, then
    /// aborts the rest (counted as `aborted_at_shutdown`) and returns the final stats.
    pub async fn shutdown(self, grace: Duration) -> MirrorStats {
        let Mirror {
            targets,
            globals,
            cancel,
            ..
        } = self;
        let deadline = tokio::time::Instant::now() + grace;
        let mut tasks = Vec::with_capacity(targets.len());
        let mut ctxs = Vec::with_capacity(targets.len());
        for t in targets {
            // Closing the queue makes the dispatcher drain it and let its lanes finish.
            drop(t.tx);
            tasks.push(t.task);
            ctxs.push(t.ctx);
        }
        let mut results = Vec::with_capacity(tasks.len());
        let mut rest = tasks.into_iter();
        for mut task in rest.by_ref() {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(res) => results.push(res),
                Err(_) => {
                    // Grace is over: cancel every target, then wait for the cancellations.
                    let _ = cancel.send(true);
                    results.push(task.await);
                }
            }
        }
        let _ = cancel.send(true);
        for res in results {
            // A panic in a task is reported, not rethrown.
            if let Err(e) = res {
                tracing::warn!(error = %e, "mirroring task failed");
            }
        }
        let refs: Vec<&TargetCtx> = ctxs.iter().map(|c| &**c).collect();
        snapshot(&globals, &refs)
    }
}

impl TargetHandle {
    /// Room in the queue, in the lanes and in the byte budget. Requests of no connection
    /// go to the least loaded lane, so fewer pending than all lanes can hold leaves one
    /// with room; half the byte budget leaves room for any request up to the body limit.
    fn has_room(&self) -> bool {
        let c = &self.ctx.counters;
        let lanes = (self.ctx.slots_total * lane::LANE_QUEUE) as u64;
        c.pending.load(Ordering::Relaxed) < lanes
            && self.tx.capacity() > 0
            && c.pending_bytes.load(Ordering::Relaxed) < self.ctx.max_pending_bytes / 2
    }

    /// Queues the request for this target; false if it was dropped (and counted).
    fn offer(&self, req: &Request) -> bool {
        let c = &self.ctx.counters;
        if !self.limiter.allow() {
            inc(&c.rate_limited);
            return false;
        }
        let Some(ticket) = Ticket::reserve(&self.ctx, req.raw.len()) else {
            inc(&c.queue_full);
            return false;
        };
        let job = Job {
            req: req.clone(),
            ticket,
        };
        match self.tx.try_send(job) {
            Ok(()) => {
                inc(&c.accepted);
                true
            }
            Err(e) => {
                inc(&c.queue_full);
                e.into_inner().ticket.finish();
                false
            }
        }
    }
}

/// What every target shares, built once by [`Mirror::start`].
struct Shared<'a> {
    tls: Option<&'a Arc<rustls::ClientConfig>>,
    set_headers: &'a [(String, String)],
    results: &'a Arc<result::Results>,
}

fn start_target(
    cfg: &MirrorOptions,
    index: usize,
    t: &Target,
    shared: Shared<'_>,
    cancel: watch::Receiver<bool>,
) -> TargetHandle {
    let Shared {
        tls,
        set_headers,
        results,
    } = shared;
    let workers = cfg.workers.max(1);
    let ctx = Arc::new(TargetCtx {
        index,
        name: t.scheme_host_port.clone(),
        addr: t.addr.clone(),
        tls: tls
            .filter(|_| t.tls)
            .map(|c| tls::TlsTarget::new(c.clone(), &t.host)),
        rewrite: rewrite::Rewrite {
            host: (!cfg.original_host).then(|| t.host_header.clone()),
            base_path: t.base_path.clone(),
            fixed_target: t.fixed_target.clone(),
            set_headers: with_authorization(set_headers, t.authorization.as_ref()),
        },
        timeout: cfg.timeout,
        exclusion: cfg.exclusion.clone(),
        counters: Counters::default(),
        pool: conn::Pool::new(workers),
        slots: Arc::new(Semaphore::new(workers)),
        slots_total: workers,
        waiting: Default::default(),
        // Lanes waiting for a slot hold queued requests, so their number is bounded too.
        max_lanes: (workers * 4).max(64),
        max_pending_bytes: MAX_PENDING_BYTES,
        pipeline: cfg.pipeline.max(1),
        redirects: cfg.redirects,
        origin: redirect::Origin::new(t.tls, &t.host, &t.addr),
        backoff: Backoff::default(),
        results: results.clone(),
    });
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let task = tokio::spawn(lane::run_target(ctx.clone(), rx, cancel));
    let gate = cfg.gates.get(index).cloned().flatten();
    TargetHandle {
        ctx,
        shares_draw: t.rate.is_none(),
        limiter: match t.rate {
            // The default rate's share is the mirror's one draw; its limit is each target's.
            None => Limiter::new(cfg.rate, gate),
            Some(own @ Rate::Percent(_)) => Limiter::Sample(Sampler::new(own)),
            Some(own) => Limiter::new(own, gate),
        },
        tx,
        task,
    }
}

/// The headers to set on a target's requests: `set` and, when the target's URL had
/// `user:pass@`, its `Authorization`, which replaces the client's and any set one.
fn with_authorization(set: &[(String, String)], auth: Option<&Secret>) -> Vec<(String, String)> {
    let Some(auth) = auth else {
        return set.to_vec();
    };
    let mut out: Vec<(String, String)> = set
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    out.push(("Authorization".into(), auth.0.clone()));
    out
}

/// Drops `set_headers` entries that would break the request framing (a CR or LF could
/// inject headers; a bad name could make staging reject every request). The check is the
/// configuration's ([`crate::http::validate::set_header`]): this one catches entries of a
/// `MirrorOptions` built without it.
fn valid_set_headers(set: &[(String, String)]) -> Vec<(String, String)> {
    set.iter()
        .filter(|(n, v)| {
            let ok = crate::http::validate::set_header(n, v);
            if let Err(e) = ok {
                tracing::warn!(name = %n, error = %e, "ignoring invalid header to set");
            }
            ok.is_ok()
        })
        .cloned()
        .collect()
}

/// What the lanes need from a captured message, if it is a request worth mirroring.
fn request_of(msg: &HttpMessage) -> Option<Request> {
    let Kind::Request {
        method, version, ..
    } = &msg.kind
    else {
        return None;
    };
    if msg.dir != Direction::ClientToServer || method.eq_ignore_ascii_case("CONNECT") {
        return None;
    }
    let tokens = |name: &str, token: &str| msg.headers().lists(name, token);
    let close =
        tokens("connection", "close") || (*version == 0 && !tokens("connection", "keep-alive"));
    let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m));
    Some(Request {
        id: msg.id.clone(),
        raw: msg.raw.clone(),
        body_offset: msg.body_offset,
        head: method.eq_ignore_ascii_case("HEAD"),
        close,
        idempotent,
        pipeline_after: idempotent && *version >= 1 && !close && !tokens("connection", "upgrade"),
    })
}

fn snapshot(globals: &Globals, ctxs: &[&TargetCtx]) -> MirrorStats {
    let mut total = TargetStats {
        target: "total".into(),
        ..TargetStats::default()
    };
    let mut hist = HistogramSnapshot::empty();
    let mut targets = Vec::with_capacity(ctxs.len());
    for ctx in ctxs {
        let mut s = ctx.counters.snapshot(&ctx.name);
        s.idle_connections = ctx.pool.len() as u64;
        total.add(&s);
        hist.merge(&ctx.counters.latency.snapshot());
        targets.push(s);
    }
    total.latency = hist.summary();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    MirrorStats {
        submitted: get(&globals.submitted),
        ignored: get(&globals.ignored),
        sampled_out: get(&globals.sampled_out),
        total,
        targets,
    }
}

/// The `Rate::Percent` decision: one draw per request from a lock-free xorshift64
/// generator (statistical quality is plenty for sampling; no `rand` dependency).
struct Sampler {
    keep_below: Option<u64>,
    state: AtomicU64,
}

impl Sampler {
    fn new(rate: Rate) -> Sampler {
        let keep_below = match rate {
            Rate::Percent(p) if p.is_finite() && p < 100.0 => {
                // Compare the top 53 bits of the draw with p% of 2^53.
                Some(((p.max(0.0) / 100.0) * (1u64 << 53) as f64) as u64)
            }
            Rate::Percent(p) if p.is_nan() => Some(0),
            _ => None,
        };
        Sampler {
            keep_below,
            state: AtomicU64::new(seed()),
        }
    }

    fn keep(&self) -> bool {
        let Some(limit) = self.keep_below else {
            return true;
        };
        // fetch_update returns the previous state; the draw is its successor.
        let prev = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(xorshift(x)))
            .unwrap_or_else(|x| x);
        (xorshift(prev) >> 11) < limit
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A non-zero seed from the clock, mixed (splitmix64) so close seeds diverge at once.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
    let mut z = nanos.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// The limit of one target: `Rate::PerSecond`, or its own `Rate::Percent`.
enum Limiter {
    Unlimited,
    Never,
    Bucket(RateLimiter),
    /// A budget kept elsewhere (shared by a fleet).
    Gate(Arc<dyn RateGate>),
    /// The target's own share, drawn for it alone.
    Sample(Sampler),
}

impl Limiter {
    /// A rate of 0 drops everything with or without a gate: there is nothing to share.
    fn new(rate: Rate, gate: Option<Arc<dyn RateGate>>) -> Limiter {
        match (rate, gate) {
            (Rate::PerSecond(0), _) => Limiter::Never,
            (Rate::PerSecond(_), Some(g)) => Limiter::Gate(g),
            (Rate::PerSecond(n), None) => Limiter::Bucket(bucket(n)),
            _ => Limiter::Unlimited,
        }
    }

    fn allow(&self) -> bool {
        match self {
            Limiter::Unlimited => true,
            Limiter::Never => false,
            Limiter::Bucket(b) => b.try_acquire(1),
            Limiter::Gate(g) => g.try_take(),
            Limiter::Sample(s) => s.keep(),
        }
    }
}

/// A leaky bucket for `n` per second: `k` tokens every `1000 k / n` ms, with `k` chosen
/// so that the period is about 100 ms. The crate counts time in whole milliseconds and
/// loses the fraction at each refill (about half a millisecond): over a 10 ms period that
/// was 4-5% below the rate, over 100 ms it is under 1%. The burst is a tenth of a second's
/// worth, so a second never lets through much more than `n`.
fn bucket(n: u32) -> RateLimiter {
    let n = u64::from(n);
    let k = n.div_ceil(10);
    let interval_ms = (1000 * k / n).max(1);
    let burst = (n / 10).max(k);
    RateLimiter::builder()
        .interval(Duration::from_millis(interval_ms))
        .refill(k as usize)
        .initial(burst as usize)
        .max(burst as usize)
        .fair(false)
        .build()
}
