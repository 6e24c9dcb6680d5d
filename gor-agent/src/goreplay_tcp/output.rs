//! `--output-tcp`: every message that reaches the outputs, in GoReplay's TCP protocol,
//! over `GOR_OUTPUT_TCP_WORKERS` connections, each with a bounded queue that capture
//! never waits on.
//!
//! ```text
//! dispatch ──message()──> pick a connection ──> [queue i: GOR_OUTPUT_TCP_QUEUE, shared byte budget] ──> worker i ──> HOST:PORT
//!            never waits   sticky: by client     full: dropped_queue_full                            connects, reconnects
//!                          connection, else       (counted)                                           every second; what a
//!                          in turn                                                                     failed write held is sent again
//! ```
//!
//! As GoReplay's, only requests and original responses are sent (type 1 and 2, the
//! latter with GOR_TRACK_RESPONSES), never staging's responses. Unlike GoReplay's, whose
//! `Write` blocks the capture when a queue is full, a full queue drops and counts.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::settings::TcpOutputConfig;
use super::stats::TcpOutputStats;
use super::{frame, tls};
use crate::{
    clock::ToWall,
    gorfile::Record,
    http::{HttpMessage, Kind},
    mirror::tls::CaCert,
    output::messages::MessageOutput,
};

/// How long a worker waits before connecting again, as GoReplay does.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Bytes gathered from a queue into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// How often `--output-tcp-stats` logs, as GoReplay's queue stats.
const STATS_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    reconnects: AtomicU64,
    connect_errors: AtomicU64,
    pending: AtomicU64,
    connected: AtomicU64,
    /// Bytes in the queues.
    bytes: AtomicUsize,
}

impl Counters {
    fn snapshot(&self) -> TcpOutputStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TcpOutputStats {
            queued: g(&self.queued),
            sent: g(&self.sent),
            bytes_sent: g(&self.bytes_sent),
            dropped_queue_full: g(&self.dropped_queue_full),
            reconnects: g(&self.reconnects),
            connect_errors: g(&self.connect_errors),
            pending: g(&self.pending),
            connected: g(&self.connected),
        }
    }

    /// A message left the queues, sent or not.
    fn done(&self, len: usize) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len, Ordering::Relaxed);
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// See the module documentation.
pub struct TcpOutput {
    queues: Vec<mpsc::Sender<Bytes>>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
    cfg: TcpOutputConfig,
    responses: bool,
    to_wall: ToWall,
    /// The connection the next message goes to, when not sticky.
    turn: usize,
    logged_at: Instant,
}

impl TcpOutput {
    /// Starts the workers on the current tokio runtime; they connect in the background,
    /// again and again until the other end answers, while messages wait in the queues.
    /// `responses`: original responses are sent too.
    pub fn start(
        cfg: &TcpOutputConfig,
        extra_ca: &[CaCert],
        responses: bool,
        to_wall: ToWall,
    ) -> TcpOutput {
        let counters = Arc::new(Counters::default());
        let secure = cfg.secure.then(|| {
            (
                TlsConnector::from(tls::client_config(extra_ca, cfg.skip_verify)),
                tls::server_name_of(&cfg.address),
            )
        });
        let mut queues = Vec::with_capacity(cfg.workers);
        let mut tasks = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let (tx, rx) = mpsc::channel(cfg.queue);
            queues.push(tx);
            tasks.push(tokio::spawn(worker(Worker {
                index: i,
                address: cfg.address.clone(),
                secure: secure.clone(),
                rx,
                c: counters.clone(),
            })));
        }
        tracing::info!(address = %cfg.address, workers = cfg.workers, secure = cfg.secure, "TCP output (GoReplay's protocol)");
        TcpOutput {
            queues,
            tasks,
            counters,
            cfg: cfg.clone(),
            responses,
            to_wall,
            turn: 0,
            logged_at: Instant::now(),
        }
    }

    pub fn stats(&self) -> TcpOutputStats {
        self.counters.snapshot()
    }

    /// Stops taking messages and gives the queues `grace` to be written out; what is left
    /// then stays counted as `pending`.
    pub async fn close(&mut self, grace: Duration) -> TcpOutputStats {
        self.queues.clear();
        let deadline = Instant::now() + grace;
        for mut t in self.tasks.drain(..) {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
        self.counters.snapshot()
    }

    /// The queue a message goes to: sticky, by its client connection (by its id when it
    /// names none, as GoReplay's sticky does); otherwise in turn.
    fn pick(&mut self, msg: &HttpMessage) -> usize {
        let n = self.queues.len();
        if !self.cfg.sticky {
            self.turn = (self.turn + 1) % n;
            return self.turn;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match msg.id.conn() {
            Some(conn) => conn.hash(&mut h),
            None => msg.id.to_string().hash(&mut h),
        }
        (h.finish() % n as u64) as usize
    }
}

impl MessageOutput for TcpOutput {
    fn message(&mut self, msg: &HttpMessage) -> std::io::Result<()> {
        if matches!(msg.kind, Kind::Response { .. }) && !self.responses {
            return Ok(());
        }
        if self.queues.is_empty() {
            return Ok(());
        }
        let bytes = frame::encode(&Record::from_message(
            msg,
            self.to_wall.offset_ns(msg.clock),
        ));
        let i = self.pick(msg);
        let c = &self.counters;
        let len = bytes.len();
        if c.bytes.load(Ordering::Relaxed) + len > self.cfg.queue_bytes {
            inc(&c.dropped_queue_full);
            return Ok(());
        }
        c.bytes.fetch_add(len, Ordering::Relaxed);
        c.pending.fetch_add(1, Ordering::Relaxed);
        match self.queues[i].try_send(bytes) {
            Ok(()) => inc(&c.queued),
            Err(_) => {
                c.done(len);
                inc(&c.dropped_queue_full);
            }
        }
        Ok(())
    }

    /// `--output-tcp-stats`: the queues and counters every 5 seconds.
    fn tick(&mut self) {
        if self.cfg.stats && self.logged_at.elapsed() >= STATS_EVERY {
            self.logged_at = Instant::now();
            let s = self.stats();
            tracing::info!(
                queued = s.queued,
                sent = s.sent,
                pending = s.pending,
                dropped_queue_full = s.dropped_queue_full,
                connected = s.connected,
                reconnects = s.reconnects,
                "output_tcp"
            );
        }
    }
}

impl Drop for TcpOutput {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What one worker needs.
struct Worker {
    index: usize,
    address: String,
    secure: Option<(
        TlsConnector,
        Result<rustls::pki_types::ServerName<'static>, String>,
    )>,
    rx: mpsc::Receiver<Bytes>,
    c: Arc<Counters>,
}

type Conn = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

impl Worker {
    async fn connect(&self) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(&self.address).await?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncWrite + Send + Unpin> = match &self.secure {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let name = name
                    .clone()
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        Ok(BufWriter::with_capacity(WRITE_BATCH, stream))
    }
}

/// One connection's worker: connects (again after a failure), then writes what its
/// queue holds until the queue is closed and empty.
async fn worker(mut w: Worker) {
    // Taken from the queue, not yet written whole.
    let mut held: Vec<Bytes> = Vec::new();
    let mut connected_before = false;
    let mut failing = false;
    loop {
        let mut conn = match w.connect().await {
            Ok(conn) => conn,
            Err(e) => {
                inc(&w.c.connect_errors);
                if !failing {
                    tracing::warn!(address = %w.address, worker = w.index, "TCP output: cannot connect ({e}); trying again every second");
                    failing = true;
                }
                // Closed and empty while away: nothing is left to send.
                if held.is_empty() && w.rx.is_closed() && w.rx.is_empty() {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        if connected_before {
            inc(&w.c.reconnects);
        }
        if failing {
            tracing::info!(address = %w.address, worker = w.index, "TCP output: connected");
            failing = false;
        }
        connected_before = true;
        w.c.connected.fetch_add(1, Ordering::Relaxed);
        let end = write_queue(&mut w, &mut conn, &mut held).await;
        w.c.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            Ok(()) => {
                let _ = conn.shutdown().await;
                return;
            }
            Err(e) => {
                tracing::info!(address = %w.address, worker = w.index, "TCP output: connection lost ({e}); reconnecting");
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        }
    }
}

/// Writes the queue's messages in batches until it is closed (`Ok`) or a write fails
/// (`Err`, with the batch still in `held`).
async fn write_queue(
    w: &mut Worker,
    conn: &mut Conn,
    held: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    loop {
        if held.is_empty() {
            match w.rx.recv().await {
                Some(b) => held.push(b),
                None => return conn.flush().await,
            }
            let mut size = held[0].len();
            while size < WRITE_BATCH {
                match w.rx.try_recv() {
                    Ok(b) => {
                        size += b.len();
                        held.push(b);
                    }
                    Err(_) => break,
                }
            }
        }
        for b in held.iter() {
            conn.write_all(b).await?;
        }
        conn.flush().await?;
        for b in held.drain(..) {
            inc(&w.c.sent);
            w.c.bytes_sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            w.c.done(b.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{MessageId, Origin};
    use crate::goreplay_tcp::frame::Decoder;
    use crate::gorfile::RecordType;
    use tokio::io::AsyncReadExt;

    fn request(conn: u64, seq: u64) -> HttpMessage {
        Record {
            kind: RecordType::Request,
            id: MessageId::framed(Origin(7), conn, seq).to_string(),
            timestamp_ns: 1,
            latency_ns: 0,
            payload: Bytes::from(format!("GET /{conn}/{seq} HTTP/1.1\r\nHost: p\r\n\r\n")),
        }
        .to_message()
        .unwrap()
    }

    fn config(address: String, workers: usize, sticky: bool) -> TcpOutputConfig {
        TcpOutputConfig {
            address,
            secure: false,
            skip_verify: false,
            sticky,
            workers,
            stats: false,
            queue: 100,
            queue_bytes: 1 << 20,
        }
    }

    /// Accepts connections and returns, per connection, the targets of the requests it read.
    async fn receive(listener: tokio::net::TcpListener, conns: usize) -> Vec<Vec<String>> {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut d = Decoder::new();
                let mut out = Vec::new();
                let mut buf = vec![0; 4096];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        d.finish();
                    }
                    d.push(&buf[..n]);
                    while let Some(r) = d.next_message() {
                        let p = r.unwrap().payload;
                        let line = String::from_utf8_lossy(&p)
                            .split(' ')
                            .nth(1)
                            .unwrap()
                            .to_string();
                        out.push(line);
                    }
                    if n == 0 {
                        return out;
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sticky_keeps_each_client_connection_on_one_tcp_connection_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut o = TcpOutput::start(&config(addr, 3, true), &[], false, ToWall::measure());
        let got = tokio::spawn(receive(listener, 3));
        for seq in 0..30 {
            for conn in 0..5 {
                o.message(&request(conn, seq)).unwrap();
            }
        }
        let s = o.close(Duration::from_secs(10)).await;
        assert_eq!((s.queued, s.sent, s.pending), (150, 150, 0), "{s:?}");
        let got = got.await.unwrap();
        for conn in 0..5 {
            let holding: Vec<&Vec<String>> = got
                .iter()
                .filter(|c| c.iter().any(|t| t.starts_with(&format!("/{conn}/"))))
                .collect();
            assert_eq!(
                holding.len(),
                1,
                "client connection {conn} on one TCP connection"
            );
            let mine: Vec<&String> = holding[0]
                .iter()
                .filter(|t| t.starts_with(&format!("/{conn}/")))
                .collect();
            let expected: Vec<String> = (0..30).map(|s| format!("/{conn}/{s}")).collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_and_counts_and_the_rest_arrives_once_the_other_end_is_up() {
        // Nothing listens yet: the queue (100) fills and the rest is counted.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut o = TcpOutput::start(
            &config(addr.to_string(), 1, false),
            &[],
            false,
            ToWall::measure(),
        );
        for seq in 0..150 {
            o.message(&request(1, seq)).unwrap();
        }
        let s = o.stats();
        assert_eq!(s.queued + s.dropped_queue_full, 150, "{s:?}");
        assert!(s.dropped_queue_full >= 49, "{s:?}");
        // The other end comes up once the worker found it away.
        let deadline = Instant::now() + Duration::from_secs(10);
        while o.stats().connect_errors == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let got = tokio::spawn(receive(listener, 1));
        let s = o.close(Duration::from_secs(10)).await;
        assert_eq!(s.pending, 0, "{s:?}");
        assert!(s.connect_errors >= 1, "{s:?}");
        let got = got.await.unwrap();
        assert_eq!(got[0].len() as u64, s.queued);
        assert_eq!(got[0][0], "/1/0");
    }
}
