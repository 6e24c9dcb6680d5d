//! `gor-agent replay-server`: what the listeners of a fleet published to NATS JetStream,
//! as a driver source of whole messages, mirrored to staging with everything local
//! mirroring has (filters, rewrites, middleware, per-connection order, pipelining, HTTPS
//! targets, comparison) and one rate for the whole fleet.
//!
//! ```text
//!  claims (KV) ─ owned partitions ─> one pull task per partition ─┐  bounded channel,
//!                                     durable consumer NAME-p<n>   ├─> ready()/deliver() ─> Pipeline::message
//!                                     fetch 64 at a time            ┘  GOR_NATS_MAX_INFLIGHT    │
//!                                                                                              ▼
//!  JetStream <── ack / nak (one task, in order) <── Ledger <── receipts ── dispatch (mirror, staging's answers)
//! ```
//!
//! Each partition is consumed by one replay server at a time ([`Partitions`]), so one
//! client connection's requests reach staging in order, through one server. A partition
//! given up (another server joined) is first drained: its pull task stops, and the
//! claim is released once nothing of it is in flight. The rate (`GOR_RATE=N`) is one
//! budget per target and second in a key-value bucket ([`SharedRate`]), shared by every
//! replay server.

mod ledger;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{
    broker::{
        connect,
        partitions::{self, Partitions},
        rate::{self, SharedRate},
        stats::ConsumeStats,
        wire::{self, DecodeError},
        NatsConfig,
    },
    clock::Clock,
    config::Config,
    dispatch::Hooks,
    driver::{Level, Ready, Source, Waits},
    http::Kind,
    metrics::Report,
    mirror::{Rate, RateGate},
    pipeline::Pipeline,
};
use ledger::{lock, Delivered, Ledger};

/// Messages fetched from a partition's consumer per request.
const BATCH: usize = 64;

/// How long a fetch waits for messages before it is asked again.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// How often partitions and expiry are looked at.
const MANAGE_EVERY: Duration = Duration::from_millis(200);

/// One delivery from a pull task.
struct Delivery {
    partition: u32,
    message: async_nats::Message,
    acker: jetstream::message::Acker,
    redelivered: bool,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// A running pull task.
struct Pull {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Its deliveries in the channel, not yet taken.
    queued: Arc<AtomicUsize>,
}

/// The replay server as a driver source; see the module documentation.
pub struct ReplayServer {
    cfg: NatsConfig,
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    partitions: Option<Partitions>,
    owned: watch::Receiver<BTreeSet<u32>>,
    to_release: watch::Receiver<BTreeSet<u32>>,
    pulls: HashMap<u32, Pull>,
    /// Partitions whose pull task was stopped, until nothing of them is in flight.
    stopping: HashMap<u32, Pull>,
    tx: mpsc::Sender<Delivery>,
    rx: mpsc::Receiver<Delivery>,
    next: Option<Delivery>,
    window: Arc<Semaphore>,
    ledger: Arc<Mutex<Ledger>>,
    acks: Option<JoinHandle<()>>,
    ack_errors: Arc<AtomicU64>,
    fetch_errors: Arc<AtomicU64>,
    manage: tokio::time::Interval,
    rates: Vec<Arc<SharedRate>>,
}

impl ReplayServer {
    /// Connects (waiting for NATS as long as it takes, logging), makes sure of the
    /// stream, joins the partition claims, and returns the source with the hooks its
    /// pipeline needs (receipts to the ledger, the fleet-wide rate per target).
    pub async fn start(cfg: &Config) -> Result<(ReplayServer, Hooks)> {
        let nats = cfg
            .nats
            .clone()
            .context("the replay server needs GOR_NATS_URL")?;
        let server_id = partitions::server_id(cfg.agent_id.as_deref());
        let client = connect::connect(&nats, &format!("gor replay server {server_id}")).await?;
        let js = connect::jetstream(client.clone());
        connect::await_stream(&js, &nats.stream).await;
        let stream = js.get_stream(&nats.stream.name).await?;
        let claims = connect::bucket(&js, &nats.stream.name, "claims", nats.lease).await?;
        let partitions = Partitions::start(claims, server_id.clone(), nats.partitions, nats.lease);
        let mut gates: Vec<Option<Arc<dyn RateGate>>> = Vec::new();
        let mut rates = Vec::new();
        // A target's rate is its own or the default; each `Rate::PerSecond(n)` is shared
        // by the fleet, the other targets keep no gate.
        let per_target = cfg.mirror.rates();
        if per_target.iter().any(|r| matches!(r, Rate::PerSecond(_))) {
            let bucket = rate::bucket(&js, &nats.stream.name).await?;
            for (t, r) in cfg.mirror.targets.iter().zip(per_target) {
                let Rate::PerSecond(n) = r else {
                    gates.push(None);
                    continue;
                };
                let r =
                    SharedRate::start(bucket.clone(), &rate::target_key(&t.scheme_host_port), n);
                rates.push(r.clone());
                gates.push(Some(r as Arc<dyn RateGate>));
            }
        }
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let ack_errors = Arc::new(AtomicU64::new(0));
        let acks = tokio::spawn(ledger::send_acks(ack_rx, ack_errors.clone()));
        // Past half the ack wait without an answer, a message is given back before the
        // server would deliver it again on its own.
        let settle = (nats.ack_wait / 2).max(Duration::from_secs(1));
        let ledger = Arc::new(Mutex::new(Ledger::new(
            ack_tx,
            settle,
            cfg.middleware.is_some(),
        )));
        let (tx, rx) = mpsc::channel(BATCH * 4);
        let mut manage = tokio::time::interval(MANAGE_EVERY);
        manage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(server = %server_id, stream = %nats.stream.name, partitions = nats.partitions, "replay server joining");
        let hooks = Hooks {
            receipts: Some(Box::new(ledger::Shared(ledger.clone()))),
            gates,
        };
        Ok((
            ReplayServer {
                owned: partitions.owned(),
                to_release: partitions.to_release(),
                partitions: Some(partitions),
                window: Arc::new(Semaphore::new(nats.max_inflight)),
                cfg: nats,
                client,
                stream,
                pulls: HashMap::new(),
                stopping: HashMap::new(),
                tx,
                rx,
                next: None,
                ledger,
                acks: Some(acks),
                ack_errors,
                fetch_errors: Arc::new(AtomicU64::new(0)),
                manage,
                rates,
            },
            hooks,
        ))
    }

    /// Starts and stops pull tasks as the claims say, releases drained partitions, and
    /// gives back what waited too long.
    fn manage(&mut self) {
        let owned = self.owned.borrow().clone();
        let release = self.to_release.borrow().clone();
        let stop: Vec<u32> = self
            .pulls
            .keys()
            .copied()
            .filter(|p| !owned.contains(p) || release.contains(p))
            .collect();
        for p in stop {
            if let Some(pull) = self.pulls.remove(&p) {
                let _ = pull.stop.send(true);
                self.stopping.insert(p, pull);
            }
        }
        for &p in owned.difference(&release) {
            if !self.pulls.contains_key(&p) && !self.stopping.contains_key(&p) {
                self.pulls.insert(p, self.start_pull(p));
            }
        }
        let ledger = lock(&self.ledger);
        let drained: Vec<u32> = self
            .stopping
            .iter()
            .filter(|(p, pull)| {
                pull.task.is_finished()
                    && pull.queued.load(Ordering::Relaxed) == 0
                    && ledger.inflight(**p) == 0
            })
            .map(|(p, _)| *p)
            .collect();
        drop(ledger);
        for p in drained {
            self.stopping.remove(&p);
            if release.contains(&p) {
                if let Some(parts) = &self.partitions {
                    parts.drained(p);
                }
            }
        }
        lock(&self.ledger).expire(Instant::now());
    }

    fn start_pull(&self, partition: u32) -> Pull {
        let (stop, stop_rx) = watch::channel(false);
        let queued = Arc::new(AtomicUsize::new(0));
        let name = format!("{}-p{partition}", self.cfg.consumer);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: wire::partition_filter(&self.cfg.stream.subject, partition),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.cfg.ack_wait,
            max_deliver: -1,
            max_ack_pending: i64::try_from(self.cfg.max_inflight).unwrap_or(i64::MAX),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let task = tokio::spawn(pull_partition(PullTask {
            stream: self.stream.clone(),
            name,
            config,
            partition,
            tx: self.tx.clone(),
            window: self.window.clone(),
            stop: stop_rx,
            queued: queued.clone(),
            errors: self.fetch_errors.clone(),
        }));
        Pull { stop, task, queued }
    }

    fn stats(&self) -> ConsumeStats {
        let l = lock(&self.ledger);
        let mut s = l.stats.clone();
        s.inflight = l.pending() as u64;
        s.partitions_owned = self.owned.borrow().len() as u64;
        s.ack_errors = self.ack_errors.load(Ordering::Relaxed);
        s.fetch_errors = self.fetch_errors.load(Ordering::Relaxed);
        s
    }

    /// Takes a delivery out of the channel: its partition's count goes down.
    fn taken(&self, d: &Delivery) {
        let pull = self
            .pulls
            .get(&d.partition)
            .or_else(|| self.stopping.get(&d.partition));
        if let Some(pull) = pull {
            pull.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn deliver_one(&mut self, d: Delivery, pipeline: &mut Pipeline) {
        self.taken(&d);
        let Delivery {
            partition,
            message,
            acker,
            redelivered,
            permit,
        } = d;
        let msg = match wire::decode(message.headers.as_ref(), message.payload) {
            Ok(m) => m,
            Err(e) => {
                if e != DecodeError::Replayed {
                    tracing::debug!(subject = %message.subject, "skipping a message: {e}");
                }
                lock(&self.ledger).other(acker, redelivered, e != DecodeError::Replayed);
                return;
            }
        };
        if matches!(msg.kind, Kind::Response { .. }) {
            lock(&self.ledger).other(acker, redelivered, false);
            pipeline.message(msg);
            return;
        }
        let go_on = lock(&self.ledger).request(Delivered {
            id: msg.id.clone(),
            acker,
            partition,
            redelivered,
            permit,
        });
        if go_on {
            pipeline.message(msg);
        }
    }
}

impl Source for ReplayServer {
    fn name(&self) -> &'static str {
        "replay server"
    }

    fn level(&self) -> Level {
        Level::Messages
    }

    /// The listeners' messages carry wall-clock times.
    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    /// Staging's pace, not the listeners': what waits, waits in the stream.
    fn waits(&self) -> Waits {
        Waits::ForMiddlewareAndStaging
    }

    async fn ready(&mut self) -> Result<Ready> {
        loop {
            if self.next.is_some() {
                return Ok(Ready::Input);
            }
            tokio::select! {
                d = self.rx.recv() => self.next = d,
                Ok(()) = self.owned.changed() => self.manage(),
                Ok(()) = self.to_release.changed() => self.manage(),
                _ = self.manage.tick() => self.manage(),
            }
        }
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        if let Some(d) = self.next.take() {
            self.deliver_one(d, pipeline);
        }
    }

    fn stop(&mut self, _pipeline: &mut Pipeline) {
        for (p, pull) in self.pulls.drain() {
            let _ = pull.stop.send(true);
            self.stopping.insert(p, pull);
        }
        // Taken from the stream and not delivered: back to it. Closed, the channel
        // refuses the pull tasks' next sends, and they give those back themselves.
        self.rx.close();
        let mut ledger = lock(&self.ledger);
        if let Some(d) = self.next.take() {
            ledger.give_back(d.acker);
        }
        while let Ok(d) = self.rx.try_recv() {
            ledger.give_back(d.acker);
        }
    }

    async fn after_close(&mut self) {
        lock(&self.ledger).abandon_all();
        // Whatever the pull tasks still held went back to the stream as they stopped (the
        // channel was closed and emptied in `stop`, so nothing more comes through it).
        for (_, pull) in self.stopping.drain() {
            let _ = tokio::time::timeout(Duration::from_secs(3), pull.task).await;
        }
        // Without the ledger's sender, the ack task ends once it has sent everything.
        lock(&self.ledger).close();
        if let Some(acks) = self.acks.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), acks).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
        if let Some(p) = self.partitions.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.stop()).await;
        }
        // Dropped, the shared rates stop leasing.
        self.rates.clear();
    }

    fn report(&self, report: &mut Report) {
        report.nats_consume = Some(self.stats());
    }
}

/// What one pull task needs.
struct PullTask {
    stream: jetstream::stream::Stream,
    name: String,
    config: pull::Config,
    partition: u32,
    tx: mpsc::Sender<Delivery>,
    window: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    queued: Arc<AtomicUsize>,
    errors: Arc<AtomicU64>,
}

/// Fetches one partition's messages in order, one place in the in-flight window each,
/// until told to stop; what it holds then goes back to the stream.
async fn pull_partition(mut t: PullTask) {
    let mut backoff = Duration::from_millis(100);
    let consumer = loop {
        let made = tokio::select! {
            c = t.stream.get_or_create_consumer(&t.name, t.config.clone()) => c,
            _ = t.stop.wait_for(|s| *s) => return,
        };
        match made {
            Ok(c) => break c,
            Err(e) => {
                t.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(consumer = %t.name, "creating the consumer: {e}");
                if sleep_or_stop(&mut t.stop, &mut backoff).await {
                    return;
                }
            }
        }
    };
    let consumer: jetstream::consumer::PullConsumer = consumer;
    loop {
        if *t.stop.borrow() {
            return;
        }
        let fetched = tokio::select! {
            b = consumer.fetch().max_messages(BATCH).expires(FETCH_WAIT).messages() => b,
            _ = t.stop.wait_for(|s| *s) => return,
        };
        let mut batch = match fetched {
            Ok(b) => {
                backoff = Duration::from_millis(100);
                b
            }
            Err(e) => {
                t.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(consumer = %t.name, "fetch: {e}");
                if sleep_or_stop(&mut t.stop, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    t.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(consumer = %t.name, "fetch: {e}");
                    break;
                }
            };
            let redelivered = m.info().map(|i| i.delivered > 1).unwrap_or(false);
            let permit = if *t.stop.borrow() {
                None
            } else {
                tokio::select! {
                    p = t.window.clone().acquire_owned() => p.ok(),
                    _ = t.stop.wait_for(|s| *s) => None,
                }
            };
            let (message, acker) = m.split();
            let Some(permit) = permit else {
                // Stopping: back to the stream at once, for the next owner.
                let _ = acker.ack_with(AckKind::Nak(None)).await;
                continue;
            };
            t.queued.fetch_add(1, Ordering::Relaxed);
            let d = Delivery {
                partition: t.partition,
                message,
                acker,
                redelivered,
                permit,
            };
            if let Err(mpsc::error::SendError(d)) = t.tx.send(d).await {
                // The server is stopping.
                t.queued.fetch_sub(1, Ordering::Relaxed);
                let _ = d.acker.ack_with(AckKind::Nak(None)).await;
                return;
            }
        }
    }
}

/// Waits `backoff` (then doubles it, up to 2 s); true if told to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}
