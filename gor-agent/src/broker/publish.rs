//! The listener's end: every message that reaches the outputs is published to JetStream,
//! through a bounded queue that capture never waits on.
//!
//! ```text
//! dispatch ──message()──> [queue: GOR_NATS_QUEUE messages, GOR_NATS_QUEUE_BYTES] ──> task ──> JetStream
//!            never waits      full: dropped_queue_full                    │  up to WINDOW acks awaited
//!                                                                         └─ no ack (NATS down, timeout):
//!                                                                            published again, same Nats-Msg-Id
//! ```
//!
//! A message counts as `published` once the server acknowledged it, which with file
//! storage means it survives a restart of nats-server. Until then it stays in the queue's
//! byte budget and is published again after a failure (the server stores a retried
//! message once, by its `Nats-Msg-Id`, within the duplicate window), so an outage of
//! NATS costs only what does not fit in the queue meanwhile, and that is counted.
//! Messages larger than the server's `max_payload` are counted (`too_large`); messages
//! the server refuses (a full stream with `discard: new`) are counted as `failed`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connect;
use super::settings::NatsConfig;
use super::wire::{self, Outgoing};
use crate::{
    clock::ToWall,
    http::{HttpMessage, Kind},
    output::messages::MessageOutput,
};

/// Acknowledgements awaited at once.
const WINDOW: usize = 256;

/// How long a message whose publish failed waits before it is published again.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The listener's publishing counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishStats {
    /// Taken into the queue.
    pub queued: u64,
    /// Acknowledged by the server (stored).
    pub published: u64,
    /// Acknowledged as a duplicate of one stored before (a retry whose first ack was lost).
    pub duplicates: u64,
    /// Published again after no or a failed acknowledgement.
    pub retries: u64,
    /// Not taken: the queue was full (NATS slow or down for longer than it holds).
    pub dropped_queue_full: u64,
    /// Larger than the server's `max_payload`.
    pub too_large: u64,
    /// Refused by the server (a full stream with `discard: new`, a permission).
    pub failed: u64,
    /// In the queue or waiting for an ack now (at exit: never published).
    pub pending: u64,
    /// The connection's state now: 1 connected.
    pub connected: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    published: AtomicU64,
    duplicates: AtomicU64,
    retries: AtomicU64,
    dropped_queue_full: AtomicU64,
    too_large: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
    connected: AtomicU64,
    /// Bytes in the queue or waiting for an ack.
    bytes: AtomicUsize,
}

impl Counters {
    fn snapshot(&self) -> PublishStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PublishStats {
            queued: g(&self.queued),
            published: g(&self.published),
            duplicates: g(&self.duplicates),
            retries: g(&self.retries),
            dropped_queue_full: g(&self.dropped_queue_full),
            too_large: g(&self.too_large),
            failed: g(&self.failed),
            pending: g(&self.pending),
            connected: g(&self.connected),
        }
    }

    /// A message's end, whatever it was.
    fn done(&self, m: &Outgoing) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(m.size(), Ordering::Relaxed);
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Publishes messages to JetStream; see the module documentation.
pub struct Publisher {
    tx: Option<mpsc::Sender<Outgoing>>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
    queue: usize,
    queue_bytes: usize,
    partitions: u32,
    responses: bool,
    to_wall: ToWall,
}

impl Publisher {
    /// Starts publishing (on the current tokio runtime) for the host `host`; `responses`:
    /// production's responses are published too. Returns at once: the connection and the
    /// stream are made in the background, again and again until NATS answers, while
    /// messages wait in the queue.
    pub fn start(cfg: &NatsConfig, host: &str, responses: bool, to_wall: ToWall) -> Publisher {
        let (tx, rx) = mpsc::channel(cfg.queue);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            cfg.clone(),
            wire::host_token(host),
            rx,
            counters.clone(),
        ));
        Publisher {
            tx: Some(tx),
            counters,
            task: Some(task),
            queue: cfg.queue,
            queue_bytes: cfg.queue_bytes,
            partitions: cfg.partitions,
            responses,
            to_wall,
        }
    }

    pub fn stats(&self) -> PublishStats {
        self.counters.snapshot()
    }

    /// Stops taking messages and gives those in the queue `grace` to be acknowledged; what
    /// is left then stays counted as `pending`.
    pub async fn close(&mut self, grace: Duration) -> PublishStats {
        drop(self.tx.take());
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        self.counters.snapshot()
    }
}

impl MessageOutput for Publisher {
    fn message(&mut self, msg: &HttpMessage) -> std::io::Result<()> {
        if matches!(msg.kind, Kind::Response { .. }) && !self.responses {
            return Ok(());
        }
        let Some(tx) = &self.tx else { return Ok(()) };
        let out = wire::encode(msg, &self.to_wall, self.partitions);
        let c = &self.counters;
        let size = out.size();
        // What waits for an ack counts as much as what waits to be sent.
        if c.bytes.load(Ordering::Relaxed) + size > self.queue_bytes
            || c.pending.load(Ordering::Relaxed) >= self.queue as u64
        {
            inc(&c.dropped_queue_full);
            return Ok(());
        }
        c.bytes.fetch_add(size, Ordering::Relaxed);
        c.pending.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(out) {
            Ok(()) => inc(&c.queued),
            Err(e) => {
                let out = match e {
                    mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o,
                };
                c.done(&out);
                inc(&c.dropped_queue_full);
            }
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

type AckResult = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>;

/// A message and its acknowledgement, awaited in the publishing task itself (no task per
/// message).
type Acking = std::pin::Pin<Box<dyn std::future::Future<Output = (Outgoing, AckResult)> + Send>>;

/// The publishing task: connects, makes sure of the stream, then publishes what comes,
/// with up to [`WINDOW`] acknowledgements awaited, until the queue is closed and empty.
async fn run(cfg: NatsConfig, host: String, mut rx: mpsc::Receiver<Outgoing>, c: Arc<Counters>) {
    let client = match connect::connect(&cfg, &format!("gor listener {host}")).await {
        Ok(client) => client,
        Err(e) => {
            // Only a credentials file that cannot be read gets here (checked at start).
            tracing::error!("NATS: {e:#}; nothing will be published");
            while let Some(m) = rx.recv().await {
                c.done(&m);
                inc(&c.failed);
            }
            return;
        }
    };
    let js = connect::jetstream(client.clone());
    // The queue fills meanwhile (and drops what does not fit).
    connect::await_stream(&js, &cfg.stream).await;
    let prefix = cfg.stream.subject.clone();
    let mut retry: VecDeque<(Outgoing, Instant)> = VecDeque::new();
    let mut acking: FuturesUnordered<Acking> = FuturesUnordered::new();
    let mut closed = false;
    // The server's limit, read again now and then (a copy of the server's info is not
    // cheap, and a reconnect may reach a server with another limit).
    let mut max_payload = client.server_info().max_payload;
    let mut turns = 0u32;
    loop {
        turns = turns.wrapping_add(1);
        if turns.is_multiple_of(1024) {
            max_payload = client.server_info().max_payload;
        }
        c.connected.store(
            u64::from(client.connection_state() == async_nats::connection::State::Connected),
            Ordering::Relaxed,
        );
        if closed && retry.is_empty() && acking.is_empty() {
            return;
        }
        let room = acking.len() < WINDOW;
        let due = retry.front().map(|(_, at)| *at);
        tokio::select! {
            biased;
            Some((m, result)) = acking.next(), if !acking.is_empty() => {
                match result {
                    Ok(ack) => {
                        inc(&c.published);
                        if ack.duplicate {
                            inc(&c.duplicates);
                        }
                        c.done(&m);
                    }
                    Err(e) => match e.kind() {
                        PublishErrorKind::MaxPayloadExceeded => {
                            inc(&c.too_large);
                            c.done(&m);
                        }
                        // Not stored, or not known to be: again, by the same id.
                        PublishErrorKind::TimedOut
                        | PublishErrorKind::BrokenPipe
                        | PublishErrorKind::StreamNotFound
                        | PublishErrorKind::MaxAckPending => {
                            retry.push_back((m, Instant::now() + RETRY_AFTER));
                        }
                        _ => {
                            tracing::debug!("NATS refused a message: {e}");
                            inc(&c.failed);
                            c.done(&m);
                        }
                    },
                }
            }
            _ = sleep_until(due), if room && due.is_some() => {
                if let Some((m, _)) = retry.pop_front() {
                    inc(&c.retries);
                    publish(&js, max_payload, &prefix, &host, m, &mut acking).await;
                }
            }
            m = rx.recv(), if room && !closed => match m {
                Some(m) => publish(&js, max_payload, &prefix, &host, m, &mut acking).await,
                None => closed = true,
            },
        }
    }
}

/// Hands one message to the client and its acknowledgement to `acking`. A message over
/// the server's `max_payload` ends there at once, as such.
async fn publish(
    js: &jetstream::Context,
    max: usize,
    prefix: &str,
    host: &str,
    m: Outgoing,
    acking: &mut FuturesUnordered<Acking>,
) {
    if max > 0 && m.size() > max {
        let e = jetstream::context::PublishError::new(PublishErrorKind::MaxPayloadExceeded);
        acking.push(Box::pin(async move { (m, Err(e)) }));
        return;
    }
    let subject = wire::subject(prefix, m.partition, host);
    match js
        .publish_with_headers(subject, m.headers.clone(), m.payload.clone())
        .await
    {
        Ok(ack) => acking.push(Box::pin(async move {
            let r = ack.await;
            (m, r)
        })),
        Err(e) => acking.push(Box::pin(async move { (m, Err(e)) })),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::NatsServer;
    use crate::envelope::{MessageId, Origin};
    use crate::gorfile::{Record, RecordType};

    fn request(conn: u64, seq: u64, body_len: usize) -> HttpMessage {
        let body = "x".repeat(body_len);
        let raw = format!(
            "POST /r/{conn}/{seq} HTTP/1.1\r\nHost: p\r\nContent-Length: {body_len}\r\n\r\n{body}"
        );
        Record {
            kind: RecordType::Request,
            id: MessageId::framed(Origin(7), conn, seq).to_string(),
            timestamp_ns: 1,
            latency_ns: 0,
            payload: bytes::Bytes::from(raw),
        }
        .to_message()
        .unwrap()
    }

    async fn stored(cfg: &NatsConfig) -> u64 {
        let js = connect::jetstream(connect::connect(cfg, "t").await.unwrap());
        let mut s = js.get_stream(&cfg.stream.name).await.unwrap();
        s.info().await.unwrap().state.messages
    }

    async fn wait_for(p: &Publisher, done: impl Fn(&PublishStats) -> bool) -> PublishStats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = p.stats();
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_is_stored_once_and_big_ones_are_counted() {
        let server = NatsServer::start();
        let cfg = server.config();
        let mut p = Publisher::start(&cfg, "web-1", false, ToWall::measure());
        for seq in 0..200 {
            p.message(&request(seq % 7, seq, 10)).unwrap();
        }
        // Over the server's default max_payload of 1 MiB.
        p.message(&request(1, 1000, 2 << 20)).unwrap();
        let s = wait_for(&p, |s| s.pending == 0).await;
        assert_eq!(s.queued, 201);
        assert_eq!(s.published, 200, "{s:?}");
        assert_eq!(s.too_large, 1, "{s:?}");
        assert_eq!(stored(&cfg).await, 200);
        // The same messages again (a listener's retry after a lost ack): stored once.
        for seq in 0..10 {
            p.message(&request(seq % 7, seq, 10)).unwrap();
        }
        let s = wait_for(&p, |s| s.pending == 0).await;
        assert_eq!(s.duplicates, 10, "{s:?}");
        assert_eq!(stored(&cfg).await, 200);
        let s = p.close(Duration::from_secs(5)).await;
        assert_eq!(s.pending, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_of_nats_costs_only_what_the_queue_cannot_hold() {
        let mut server = NatsServer::start();
        let mut cfg = server.config();
        cfg.queue = 100;
        let mut p = Publisher::start(&cfg, "web-1", false, ToWall::measure());
        p.message(&request(1, 0, 10)).unwrap();
        let s = wait_for(&p, |s| s.published == 1).await;
        assert_eq!(s.published, 1);
        server.kill();
        // While NATS is down: 300 offered, the queue holds 100, the rest is counted.
        for seq in 1..=300 {
            p.message(&request(1, seq, 10)).unwrap();
        }
        let s = p.stats();
        assert_eq!(s.queued, 101, "{s:?}");
        assert_eq!(s.dropped_queue_full, 200, "{s:?}");
        server.restart();
        let s = wait_for(&p, |s| s.pending == 0).await;
        assert_eq!(s.pending, 0, "{s:?}");
        // Everything taken in was stored, once; file storage kept the first one.
        assert_eq!(stored(&cfg).await, s.queued, "{s:?}");
        assert_eq!(s.published - s.duplicates, s.queued, "{s:?}");
        p.close(Duration::from_secs(5)).await;
    }
}
