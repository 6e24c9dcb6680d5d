//! Middleware output: hands every message to an operator's program, GoReplay-style, and
//! takes back what it returns (possibly modified), so existing GoReplay middleware work
//! unchanged.
//!
//! The program (`--middleware "CMD ARGS"`, split by [`parse_command`], no shell) runs as a
//! child process. Each message goes to its stdin as one line: the lowercase hex of the
//! meta line `"<type> <id> <timestamp_ns> <latency_ns>\n"` followed by the raw HTTP bytes
//! (see [`crate::gorfile::encode_message`]), then `\n`. The child writes one such line to
//! stdout for each message that should go on; a message it does not write back is
//! dropped. Its stderr lines go to our log at info level with a `middleware` field.
//!
//! [`Middleware::send`] is called on the capture path and never blocks: lines wait in a
//! bounded queue (messages and bytes) and whatever does not fit is dropped and counted.
//! Behind the queue a supervisor task (`child.rs`) runs the child, writes to it and reads
//! from it in separate tasks (a child that echoes needs us to read while we write), and
//! restarts it with exponential backoff when it dies. The records it returns arrive on a
//! bounded channel; a slow consumer of that channel backs up into the child and then
//! into our queue, which drops: the capture path is never held up.

#![forbid(unsafe_code)]

mod child;
mod command;
mod hex;
mod lines;
pub mod settings;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::gorfile::{encode_meta, Record};

pub use command::{check_program, parse_command};

/// Default [`MiddlewareConfig::queue`]: messages waiting for the child.
pub const DEFAULT_QUEUE: usize = 1000;

/// Default [`MiddlewareConfig::max_queue_bytes`]: 64 MiB of hex lines waiting for the child.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

/// Records returned by the child wait at most this many in the channel to the caller;
/// beyond that the reader stops reading the child's stdout (backpressure, not loss).
const RETURNED_QUEUE: usize = 1024;

/// How to run the middleware.
#[derive(Clone, Debug)]
pub struct MiddlewareConfig {
    /// The program, found through `PATH` unless it contains a `/`.
    pub program: String,
    pub args: Vec<String>,
    /// At most this many messages wait for the child ([`DEFAULT_QUEUE`]).
    pub queue: usize,
    /// At most this many bytes of hex lines (twice the message size) wait for the child
    /// ([`DEFAULT_MAX_QUEUE_BYTES`]); a message whose line is larger is always dropped.
    pub max_queue_bytes: u64,
    /// The command line as the operator gave it (`GOR_MIDDLEWARE`), to name it in errors.
    pub command: String,
}

impl MiddlewareConfig {
    /// A configuration with the default queue bounds.
    pub fn new(program: impl Into<String>, args: Vec<String>) -> MiddlewareConfig {
        let program = program.into();
        let command = std::iter::once(&program)
            .chain(&args)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        MiddlewareConfig {
            program,
            args,
            queue: DEFAULT_QUEUE,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            command,
        }
    }

    /// A configuration from a command line as given to `--middleware` ([`parse_command`]).
    pub fn from_command(command: &str) -> Result<MiddlewareConfig, String> {
        let (program, args) = parse_command(command)?;
        Ok(MiddlewareConfig {
            command: command.to_string(),
            ..MiddlewareConfig::new(program, args)
        })
    }
}

/// A snapshot of the middleware counters. Every offered message ends up counted exactly
/// once in `sent`, `dropped_queue_full`, `lost_in_restart`, `dropped_at_shutdown` or the
/// `queued` gauge (a snapshot taken while lines move may be off by one or two).
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MiddlewareStats {
    /// Calls to [`Middleware::send`].
    pub offered: u64,
    /// Lines written to the child's stdin.
    pub sent: u64,
    /// Messages dropped because the queue (messages or bytes) was full.
    pub dropped_queue_full: u64,
    /// Gauge: messages waiting for the child.
    pub queued: u64,
    /// Gauge: bytes of their hex lines.
    pub queued_bytes: u64,
    /// Valid lines the child wrote back (delivered to the receiver).
    pub returned: u64,
    /// Lines from the child that were skipped: not hex, odd length, too long, or no valid
    /// meta line.
    pub invalid_lines: u64,
    /// Children started.
    pub starts: u64,
    /// Attempts to start a new child after one died or could not be started.
    pub restarts: u64,
    /// Attempts to start the program that failed (not found, not executable, ...).
    pub spawn_errors: u64,
    /// Lines being written when the child died. Lines already written but not yet read
    /// by a dying child are lost too, but cannot be known; they count as `sent`.
    pub lost_in_restart: u64,
    /// Lines still queued (or being written) when shutdown ended the last child.
    pub dropped_at_shutdown: u64,
    /// Lines the child wrote to stderr (logged).
    pub stderr_lines: u64,
}

/// Runs the middleware program; see the module documentation.
pub struct Middleware {
    tx: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// The shutdown deadline, once shutdown is requested.
    shutdown: watch::Sender<Option<Instant>>,
}

/// What `send`, the supervisor and the pipe tasks share.
struct Shared {
    /// The program name, for logs.
    program: String,
    max_queue_bytes: u64,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    queued: AtomicU64,
    queued_bytes: AtomicU64,
    returned: AtomicU64,
    invalid_lines: AtomicU64,
    starts: AtomicU64,
    restarts: AtomicU64,
    spawn_errors: AtomicU64,
    lost_in_restart: AtomicU64,
    dropped_at_shutdown: AtomicU64,
    stderr_lines: AtomicU64,
}

/// Adds one to a counter.
fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Middleware {
    /// Starts the supervisor, which starts the child, on the current tokio runtime
    /// (panics outside one, like `tokio::spawn`). The receiver yields the records the
    /// child returns, in the order it wrote them; it ends once [`Middleware::shutdown`]
    /// has returned and the last of them has been received.
    pub fn start(cfg: MiddlewareConfig) -> (Middleware, mpsc::Receiver<Record>) {
        let shared = Arc::new(Shared {
            program: cfg.program.clone(),
            max_queue_bytes: cfg.max_queue_bytes,
            counters: Counters::default(),
        });
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (out_tx, out_rx) = mpsc::channel(RETURNED_QUEUE);
        let (shutdown, shutdown_rx) = watch::channel(None);
        let supervisor = child::Supervisor::new(cfg, shared.clone(), rx, out_tx, shutdown_rx);
        let task = tokio::spawn(supervisor.run());
        let mw = Middleware {
            tx,
            shared,
            task,
            shutdown,
        };
        (mw, out_rx)
    }

    /// Offers a message to the middleware. Never blocks or awaits: if the queue has no
    /// room (messages or bytes) the message is dropped and counted.
    pub fn send(&self, rec: &Record) {
        let c = &self.shared.counters;
        inc(&c.offered);
        let mut meta = Vec::with_capacity(64 + rec.id.len());
        encode_meta(rec, &mut meta);
        let len = 2 * (meta.len() + rec.payload.len()) + 1;
        // Room first, encoding after: a full queue costs no hex work.
        if !self.shared.reserve(len) {
            return inc(&c.dropped_queue_full);
        }
        let Ok(permit) = self.tx.try_reserve() else {
            // Full, or the supervisor is gone (it only stops at shutdown or on a panic).
            self.shared.dequeued(len);
            return inc(&c.dropped_queue_full);
        };
        let mut line = Vec::with_capacity(len);
        hex::encode(&meta, &mut line);
        hex::encode(&rec.payload, &mut line);
        line.push(b'\n');
        permit.send(line);
    }

    /// Whether a message would find room in the queue now. Sources that can wait (saved
    /// traffic) ask before sending instead of losing messages to a full queue.
    pub fn has_room(&self) -> bool {
        let bytes = self.shared.counters.queued_bytes.load(Ordering::Relaxed);
        self.tx.capacity() > 0 && bytes < self.shared.max_queue_bytes
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MiddlewareStats {
        self.shared.snapshot()
    }

    /// Stops accepting messages, writes the queued ones to the child, closes its stdin
    /// (its cue to finish) and keeps forwarding what it writes back until it exits; when
    /// `grace` is over first, kills it. Returns the final counters.
    ///
    /// The receiver ends once its last record has been taken. Records arriving while the
    /// caller awaits this instead of draining the receiver wait in the channel; once it
    /// is full the child's remaining output is read only until `grace` is over.
    pub async fn shutdown(self, grace: Duration) -> MiddlewareStats {
        let Middleware {
            tx,
            shared,
            task,
            shutdown,
        } = self;
        // The deadline first: when the writer sees the queue closed, it is already set.
        shutdown.send_replace(Some(Instant::now() + grace));
        drop(tx);
        if let Err(e) = task.await {
            tracing::warn!(middleware = %shared.program, error = %e, "middleware supervisor failed");
        }
        shared.snapshot()
    }
}

impl Shared {
    /// Takes room for a line of `len` bytes in the queue's byte budget.
    fn reserve(&self, len: usize) -> bool {
        let c = &self.counters;
        let len = len as u64;
        let before = c.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max_queue_bytes {
            c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        // Counted before the line is queued, so the writer never takes it below zero.
        inc(&c.queued);
        true
    }

    /// Gives back the room of a line that left the queue.
    fn dequeued(&self, len: usize) {
        let c = &self.counters;
        c.queued.fetch_sub(1, Ordering::Relaxed);
        c.queued_bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MiddlewareStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MiddlewareStats {
            offered: get(&c.offered),
            sent: get(&c.sent),
            dropped_queue_full: get(&c.dropped_queue_full),
            queued: get(&c.queued),
            queued_bytes: get(&c.queued_bytes),
            returned: get(&c.returned),
            invalid_lines: get(&c.invalid_lines),
            starts: get(&c.starts),
            restarts: get(&c.restarts),
            spawn_errors: get(&c.spawn_errors),
            lost_in_restart: get(&c.lost_in_restart),
            dropped_at_shutdown: get(&c.dropped_at_shutdown),
            stderr_lines: get(&c.stderr_lines),
        }
    }
}
