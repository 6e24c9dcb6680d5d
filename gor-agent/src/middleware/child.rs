//! The supervisor of the middleware child: starts it, feeds it the queued lines, reads
//! back what it returns, logs its stderr, restarts it with backoff when it dies, and winds
//! it down at shutdown.
//!
//! The writer runs inside the supervisor task (so that, when the child dies, the line it
//! was writing is known and counted), the stdout and stderr readers are tasks of their
//! own: reading must go on while a write waits for the child, or a child that echoes
//! would block on its full stdout while we block on its full stdin.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::lines::{Line, LineSplitter};
use super::{hex, inc, MiddlewareConfig, Shared};
use crate::gorfile::{parse_message, Record};

/// First delay before restarting a child that died; doubled after each death.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest delay between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A child that ran this long was healthy: the next restart starts from `BACKOFF_MIN`.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);

/// The largest message the child may return: 64 MiB. Its hex line is twice as long, plus
/// a `\r`; longer lines are skipped and counted invalid. This bounds the reader's memory
/// (line plus decoded message, ~192 MiB at worst) below what a 256 MiB HTTP body would
/// need, as a child that never writes a newline must not exhaust memory.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const MAX_HEX_LINE: usize = 2 * MAX_MESSAGE + 1;

/// Stderr lines longer than this are logged cut (it is for humans).
const MAX_STDERR_LINE: usize = 16 * 1024;

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The grace given to the child when the `Middleware` is dropped without `shutdown`.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// Invalid lines are logged for the first few, then one in this many.
const INVALID_LOG_FIRST: u64 = 5;
const INVALID_LOG_EVERY: u64 = 1000;

pub(super) struct Supervisor {
    program: String,
    args: Vec<String>,
    shared: Arc<Shared>,
    /// The queue filled by `Middleware::send`; closed at shutdown.
    rx: mpsc::Receiver<Vec<u8>>,
    /// Toward the caller; each stdout reader holds a clone, so the caller's receiver ends
    /// when the supervisor and the last reader are done.
    out: mpsc::Sender<Record>,
    shutdown: watch::Receiver<Option<Instant>>,
    /// Set once shutdown is requested.
    deadline: Option<Instant>,
    /// Tells the pipe readers to stop reading (after the shutdown grace).
    stop_pipes: watch::Sender<bool>,
    /// Pipe reader tasks that may still run: stderr readers, and stdout readers of dead
    /// children that had not finished when the next child started.
    pipes: Vec<JoinHandle<()>>,
}

/// How serving one child ended.
enum Served {
    /// It died (or stopped working) while we were not shutting down; its stdout reader
    /// may still be forwarding its last lines.
    Died(Option<JoinHandle<()>>),
    ShutDown,
}

/// Why a child stopped being served.
enum End {
    Exited,
    WriteFailed(io::Error),
    StdoutClosed,
    /// Shutdown: the child exited and its output ended.
    Finished,
    /// Shutdown: the grace period is over.
    GraceOver,
}

impl Supervisor {
    pub fn new(
        cfg: MiddlewareConfig,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Vec<u8>>,
        out: mpsc::Sender<Record>,
        shutdown: watch::Receiver<Option<Instant>>,
    ) -> Supervisor {
        Supervisor {
            program: cfg.program,
            args: cfg.args,
            shared,
            rx,
            out,
            shutdown,
            deadline: None,
            stop_pipes: watch::channel(false).0,
            pipes: Vec::new(),
        }
    }

    pub async fn run(mut self) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            if !first {
                inc(&c.restarts);
            }
            let mut old_reader = None;
            match self.spawn() {
                Ok(child) => {
                    inc(&c.starts);
                    let pid = child.id().unwrap_or(0);
                    if first {
                        tracing::info!(middleware = %self.program, pid, "middleware started");
                    } else {
                        tracing::info!(middleware = %self.program, pid, "middleware restarted");
                    }
                    let started = Instant::now();
                    match self.serve(child).await {
                        Served::ShutDown => break,
                        Served::Died(reader) => old_reader = reader,
                    }
                    if started.elapsed() >= BACKOFF_RESET_AFTER {
                        backoff = BACKOFF_MIN;
                    }
                    tracing::info!(middleware = %self.program, delay = ?backoff, "restarting the middleware");
                }
                Err(e) => {
                    inc(&c.spawn_errors);
                    tracing::warn!(
                        middleware = %self.program,
                        error = %e,
                        retry_in = ?backoff,
                        "cannot start the middleware program (check the --middleware command); retrying"
                    );
                }
            }
            first = false;
            if !self.wait_backoff(backoff, old_reader).await {
                break;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.finish().await;
    }

    fn spawn(&mut self) -> io::Result<Child> {
        self.pipes.retain(|h| !h.is_finished());
        // No shell: the program and arguments are exactly what the operator gave.
        // kill_on_drop: a supervisor that panics must not leave the child behind.
        Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    }

    /// Feeds one child until it dies or shutdown ends it, and reaps it.
    async fn serve(&mut self, mut child: Child) -> Served {
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Cannot happen with piped stdio; treated as a dead child all the same.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Served::Died(None);
        };
        let stop = self.stop_pipes.subscribe();
        let mut reader = tokio::spawn(read_stdout(
            stdout,
            self.out.clone(),
            self.shared.clone(),
            stop.clone(),
        ));
        self.pipes
            .push(tokio::spawn(read_stderr(stderr, self.shared.clone(), stop)));

        // Set while a line taken from the queue is being written: if the writer is
        // dropped then, that line is lost.
        let in_flight = AtomicBool::new(false);
        let mut exit: Option<io::Result<ExitStatus>> = None;
        let mut reader_done = false;
        let end = {
            let Supervisor {
                rx,
                shared,
                shutdown,
                deadline,
                ..
            } = &mut *self;
            let writer = write_lines(rx, stdin, shared, &in_flight);
            tokio::pin!(writer);
            let mut writer_done = false;
            loop {
                if deadline.is_some() && exit.is_some() && reader_done {
                    break End::Finished;
                }
                let grace_end = *deadline;
                let grace = async move {
                    match grace_end {
                        Some(d) => sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                // Outside shutdown any sign of death ends the child; during shutdown we
                // wait for both its exit and the end of its output (or the deadline).
                tokio::select! {
                    r = &mut writer, if !writer_done => {
                        writer_done = true;
                        match r {
                            // The queue is closed only by shutdown (or by dropping the
                            // `Middleware`): stdin is closed now, the child finishes.
                            Ok(()) => {
                                let requested = *shutdown.borrow();
                                deadline.get_or_insert(requested.unwrap_or_else(|| Instant::now() + DROP_GRACE));
                            }
                            Err(e) if deadline.is_none() => break End::WriteFailed(e),
                            // Shutting down: the rest of the queue is dropped at the end.
                            Err(_) => {}
                        }
                    }
                    status = child.wait(), if exit.is_none() => {
                        exit = Some(status);
                        if deadline.is_none() {
                            break End::Exited;
                        }
                    }
                    _ = &mut reader, if !reader_done => {
                        reader_done = true;
                        if deadline.is_none() {
                            break End::StdoutClosed;
                        }
                    }
                    d = shutdown_requested(shutdown), if deadline.is_none() => *deadline = Some(d),
                    () = grace => break End::GraceOver,
                }
            }
        };
        let shutting_down = self.deadline.is_some();
        let c = &self.shared.counters;
        if in_flight.load(Ordering::Relaxed) {
            inc(if shutting_down {
                &c.dropped_at_shutdown
            } else {
                &c.lost_in_restart
            });
        }
        let status = match exit {
            Some(status) => status,
            None => {
                // SIGKILL: a child that stopped working, or outlived the grace period.
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let status = status.map_or_else(|e| format!("unknown ({e})"), |s| s.to_string());
        let program = &self.program;
        match end {
            End::Finished => {
                tracing::info!(middleware = %program, pid, %status, "middleware exited")
            }
            End::GraceOver => tracing::warn!(
                middleware = %program,
                pid,
                %status,
                "middleware did not finish within the shutdown grace period; killed"
            ),
            End::Exited => {
                tracing::warn!(middleware = %program, pid, %status, "middleware exited")
            }
            End::WriteFailed(e) => tracing::warn!(
                middleware = %program,
                pid,
                error = %e,
                %status,
                "writing to the middleware failed; killed it"
            ),
            End::StdoutClosed => tracing::warn!(
                middleware = %program,
                pid,
                %status,
                "middleware closed its stdout; killed it"
            ),
        }
        let reader = (!reader_done).then_some(reader);
        if shutting_down {
            self.pipes.extend(reader);
            Served::ShutDown
        } else {
            Served::Died(reader)
        }
    }

    /// Waits `backoff` before the next start, and meanwhile lets the dead child's stdout
    /// reader forward its last lines, so that they come before the next child's. `false`
    /// if shutdown was requested meanwhile.
    async fn wait_backoff(&mut self, backoff: Duration, reader: Option<JoinHandle<()>>) -> bool {
        let until = Instant::now() + backoff;
        if let Some(mut reader) = reader {
            tokio::select! {
                _ = &mut reader => {}
                () = sleep_until(until) => self.pipes.push(reader),
                d = shutdown_requested(&mut self.shutdown) => {
                    self.deadline = Some(d);
                    self.pipes.push(reader);
                    return false;
                }
            }
        }
        tokio::select! {
            () = sleep_until(until) => true,
            d = shutdown_requested(&mut self.shutdown) => {
                self.deadline = Some(d);
                false
            }
        }
    }

    /// After the last child: drops what no child will take, gives the pipe readers until
    /// the deadline to finish, then tells them to stop.
    async fn finish(mut self) {
        self.rx.close();
        while let Ok(line) = self.rx.try_recv() {
            self.shared.dequeued(line.len());
            inc(&self.shared.counters.dropped_at_shutdown);
        }
        let deadline = self.deadline.unwrap_or_else(Instant::now);
        for h in &mut self.pipes {
            let _ = timeout_at(deadline, h).await;
        }
        // Readers still running are stopped at their next read (a stdout reader still
        // hands over the records it has decoded, once the caller takes them). One whose
        // child is gone would end at end of file anyway; this covers a pipe held open by
        // a grandchild.
        let _ = self.stop_pipes.send(true);
    }
}

/// Resolves with the shutdown deadline once shutdown is requested.
async fn shutdown_requested(rx: &mut watch::Receiver<Option<Instant>>) -> Instant {
    loop {
        let requested = *rx.borrow_and_update();
        if let Some(d) = requested {
            return d;
        }
        if rx.changed().await.is_err() {
            // The `Middleware` was dropped without `shutdown`.
            return Instant::now() + DROP_GRACE;
        }
    }
}

/// Writes queued lines to the child until the queue is closed, then closes its stdin.
/// An error (EPIPE when the child is gone: SIGPIPE is ignored in Rust programs) leaves
/// `in_flight` set, for the caller to count the line.
async fn write_lines(
    rx: &mut mpsc::Receiver<Vec<u8>>,
    mut stdin: ChildStdin,
    shared: &Shared,
    in_flight: &AtomicBool,
) -> io::Result<()> {
    while let Some(line) = rx.recv().await {
        shared.dequeued(line.len());
        in_flight.store(true, Ordering::Relaxed);
        stdin.write_all(&line).await?;
        in_flight.store(false, Ordering::Relaxed);
        inc(&shared.counters.sent);
    }
    // Closing stdin is the child's cue (end of file) to finish and exit.
    drop(stdin);
    Ok(())
}

/// Resolves when the pipe readers are told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the supervisor is gone: stop too.
    let _ = stop.wait_for(|s| *s).await;
}

/// Reads the child's stdout: one hex line per returned message, forwarded in order.
async fn read_stdout(
    mut stdout: ChildStdout,
    out: mpsc::Sender<Record>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lines = LineSplitter::new(MAX_HEX_LINE);
    let mut ready = Vec::new();
    loop {
        let n = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            r = stdout.read(&mut buf) => r.unwrap_or_else(|e| {
                tracing::warn!(middleware = %shared.program, error = %e, "reading the middleware's stdout failed");
                0
            }),
        };
        let mut take = |line: Line<'_>| match line {
            Line::Complete(l) => ready.extend(decode_line(&shared, l)),
            Line::TooLong(l) => shared.invalid("longer than the 64 MiB message limit", l),
        };
        if n == 0 {
            lines.finish(&mut take);
        } else {
            lines.feed(&buf[..n], &mut take);
        }
        for rec in ready.drain(..) {
            // Awaiting here is the backpressure: a slow caller slows our reading.
            if out.send(rec).await.is_ok() {
                inc(&shared.counters.returned);
            }
            // If the caller dropped the receiver, keep draining so the child never blocks.
        }
        if n == 0 {
            return;
        }
    }
}

/// One line from the child as a record, or `None` (empty lines are ignored, anything
/// else invalid is counted).
fn decode_line(shared: &Shared, line: &[u8]) -> Option<Record> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return None;
    }
    let mut msg = Vec::new();
    if !hex::decode(line, &mut msg) {
        let why = if line.len().is_multiple_of(2) {
            "not hex"
        } else {
            "odd length"
        };
        shared.invalid(why, line);
        return None;
    }
    let rec = parse_message(Bytes::from(msg));
    if rec.is_none() {
        shared.invalid("no valid meta line", line);
    }
    rec
}

impl Shared {
    /// Counts an invalid line; logs the first few, then one in `INVALID_LOG_EVERY`.
    fn invalid(&self, why: &str, line: &[u8]) {
        let n = self.counters.invalid_lines.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= INVALID_LOG_FIRST || n.is_multiple_of(INVALID_LOG_EVERY) {
            let start = String::from_utf8_lossy(&line[..line.len().min(64)]);
            tracing::warn!(
                middleware = %self.program,
                why,
                line_start = %start,
                invalid_lines = n,
                "skipping a line from the middleware: each must be the hex of a meta line and \
                 a message (logged for the first {INVALID_LOG_FIRST}, then every {INVALID_LOG_EVERY}th)"
            );
        }
    }
}

/// Forwards the child's stderr lines to our log.
async fn read_stderr(
    mut stderr: ChildStderr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut lines = LineSplitter::new(MAX_STDERR_LINE);
    loop {
        let n = tokio::select! {
            biased;
            () = stopped(&mut stop) => return,
            r = stderr.read(&mut buf) => r.unwrap_or(0),
        };
        let mut log = |line: Line<'_>| {
            let (text, cut) = match line {
                Line::Complete(l) => (l, false),
                Line::TooLong(l) => (l, true),
            };
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            inc(&shared.counters.stderr_lines);
            let text = String::from_utf8_lossy(text);
            if cut {
                tracing::info!(middleware = %shared.program, "{text}… (cut at {MAX_STDERR_LINE} bytes)");
            } else {
                tracing::info!(middleware = %shared.program, "{text}");
            }
        };
        if n == 0 {
            lines.finish(&mut log);
            return;
        }
        lines.feed(&buf[..n], &mut log);
    }
}
