//! Tests of the mirror against real staging servers on 127.0.0.1: a recording server
//! that frames requests (Content-Length and chunked, with the capture framer's head parser
//! and chunked decoder) and keeps their raw bytes per connection, with modes for slow,
//! resetting and closing staging and for answering with given bytes.

mod faults;
mod fidelity;
mod ordering;
mod outputs;
mod pipelining;
mod rate;
mod redirects;
mod results;
mod shutdown;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Mirror, MirrorOptions, MirrorStats, PortExclusion, Rate, Target};
use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::head::{self, Declared, HeadResult};
use crate::http::{HttpMessage, Kind};
use crate::stream::{ConnId, Direction, Flow};

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(15);

/// The connection of test requests that name none: their id is foreign, as saved
/// traffic's from another tool.
pub(super) const ANY_CONNECTION: ConnId = u64::MAX;

/// A captured request as the framer would emit it (`conn` ANY_CONNECTION: of no known
/// connection).
pub(super) fn msg(conn: ConnId, raw: &[u8]) -> HttpMessage {
    let raw = Bytes::copy_from_slice(raw);
    let head = match crate::http::parse_whole(Direction::ClientToServer, &raw) {
        Ok(head) => head,
        Err(e) => panic!("test request does not parse: {e}"),
    };
    let addr = |p| SocketAddr::from(([10, 0, 0, 1], p));
    HttpMessage {
        id: if conn == ANY_CONNECTION {
            crate::envelope::MessageId::Foreign("no-connection".into())
        } else {
            crate::envelope::MessageId::framed(Default::default(), conn, 0)
        },
        clock: crate::envelope::Clock::Monotonic,
        flow: Flow {
            client: addr(40000),
            server: addr(80),
        },
        dir: Direction::ClientToServer,
        offset: 0,
        first_ts_ns: 0,
        last_ts_ns: 0,
        kind: head.kind,
        headers: head.headers,
        body_offset: head.body_offset,
        raw,
        latency_ns: None,
    }
}

pub(super) fn config(targets: Vec<Target>) -> MirrorOptions {
    MirrorOptions {
        targets,
        rate: Rate::All,
        split: false,
        timeout: Duration::from_secs(5),
        workers: 4,
        pipeline: 16,
        redirects: 0,
        queue: 1024,
        original_host: false,
        set_headers: Vec::new(),
        exclusion: None,
        tls_ca: Vec::new(),
        tls_skip_verify: false,
        result_body_limit: super::DEFAULT_RESULT_BODY_LIMIT,
        gates: Vec::new(),
    }
}

pub(super) fn target(port: u16) -> Target {
    Target::parse(&format!("http://127.0.0.1:{port}")).expect("valid target")
}

/// The only target's counters.
pub(super) fn t0(s: &MirrorStats) -> &super::TargetStats {
    &s.targets[0]
}

/// Submits `m` every 20 ms until `done` holds for the stats (pacing, not synchronisation:
/// the mirror has no event to wait for), failing after [`WAIT`].
pub(super) async fn submit_until(r: &Mirror, m: &HttpMessage, done: impl Fn(&MirrorStats) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = r.stats();
        if done(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached: {s:#?}"
        );
        r.submit(m);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records the ports the mirror excludes.
#[derive(Default)]
pub(super) struct RecordingExclusion {
    pub events: Mutex<Vec<(bool, u16)>>,
}

impl PortExclusion for RecordingExclusion {
    fn add(&self, local_port: u16, _remote: std::net::SocketAddr) {
        self.events.lock().unwrap().push((true, local_port));
    }
    fn remove(&self, local_port: u16, _remote: std::net::SocketAddr) {
        self.events.lock().unwrap().push((false, local_port));
    }
}

/// How the staging server answers.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mode {
    /// `200` with a 2-byte body at once.
    Ok,
    /// `200` after a delay.
    Delay(Duration),
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Answers this many requests per connection, the last with `Connection: close`, then
    /// closes it; requests read past that one are never processed (nor recorded).
    CloseAfter(usize),
    /// Answers this many requests per connection, then closes it without a word (but
    /// not abruptly: see [`linger_close`]).
    DropAfter(usize),
    /// Answers every request with these bytes (a whole keep-alive response).
    Answer(&'static [u8]),
    /// Answers a request for one of these targets with its bytes (closing the connection
    /// after one that says `Connection: close`), any other as [`Mode::Ok`].
    Routes(&'static [(&'static str, &'static [u8])]),
}

/// One request as staging received it.
#[derive(Debug)]
pub(super) struct Got {
    /// Index of the staging connection (in accept order).
    pub conn: usize,
    pub peer_port: u16,
    pub raw: Vec<u8>,
    /// Bytes of a later request had already come when this one was read: it was
    /// pipelined.
    pub behind: bool,
}

pub(super) struct Staging {
    pub port: u16,
    rx: mpsc::UnboundedReceiver<Got>,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Staging {
    pub async fn start(mode: Mode) -> Staging {
        Self::on_port(0, mode).await
    }

    pub async fn on_port(port: u16, mode: Mode) -> Staging {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let (tx, rx) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, mode, tx, accepted.clone()));
        Staging {
            port,
            rx,
            accepted,
            task,
        }
    }

    pub async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("staging got no request in time")
            .expect("staging stopped")
    }

    pub async fn take(&mut self, n: usize) -> Vec<Got> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    mode: Mode,
    tx: mpsc::UnboundedSender<Got>,
    accepted: Arc<AtomicUsize>,
) {
    // Connection tasks live in this set so that stopping the server closes them too.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            return;
        };
        let idx = accepted.fetch_add(1, Ordering::SeqCst);
        conns.spawn(serve(stream, idx, peer.port(), mode, tx.clone()));
    }
}

async fn serve(
    mut s: TcpStream,
    conn: usize,
    peer_port: u16,
    mode: Mode,
    tx: mpsc::UnboundedSender<Got>,
) {
    let mut buf = BytesMut::new();
    let mut answered = 0;
    while let Some(raw) = next_request(&mut s, &mut buf).await {
        answered += 1;
        if matches!(mode, Mode::DropAfter(n) if answered > n) {
            return linger_close(s).await;
        }
        let mut close = is_close(&raw);
        let target = raw
            .split(|&b| b == b' ')
            .nth(1)
            .unwrap_or_default()
            .to_vec();
        let _ = tx.send(Got {
            conn,
            peer_port,
            raw,
            behind: !buf.is_empty(),
        });
        match mode {
            Mode::Ok => {}
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Reset => {
                let _ = s.set_zero_linger();
                return;
            }
            Mode::CloseAfter(n) => close |= answered == n,
            Mode::DropAfter(_) => {}
            Mode::Answer(resp) if !close => {
                if s.write_all(resp).await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Answer(_) => {}
            Mode::Routes(routes) => {
                if let Some((_, resp)) = routes.iter().find(|(t, _)| t.as_bytes() == target) {
                    if s.write_all(resp).await.is_err() {
                        return;
                    }
                    if resp
                        .windows(17)
                        .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
                    {
                        return linger_close(s).await;
                    }
                    continue;
                }
            }
        }
        let resp: &[u8] = if close {
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        if s.write_all(resp).await.is_err() {
            return;
        }
        if close {
            return linger_close(s).await;
        }
    }
}

/// Closes as HTTP servers do (RFC 9112, section 9.6): the write side first, then reading
/// and discarding until the client closes, so requests it had pipelined behind the last
/// answered one do not turn the close into a reset that would destroy the responses
/// still on their way to it.
async fn linger_close(mut s: TcpStream) {
    let _ = s.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// The next whole request on `s` (what was read past it stays in `buf`); `None` at the
/// end of the stream or on an error.
pub(super) async fn next_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Option<Vec<u8>> {
    loop {
        if let Some(n) = request_len(buf) {
            return Some(buf.split_to(n).to_vec());
        }
        match s.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn is_close(raw: &[u8]) -> bool {
    match head::parse(Direction::ClientToServer, raw) {
        HeadResult::Complete(h) => h.lists(raw, "connection", "close"),
        _ => false,
    }
}

/// Length of the complete request at the start of `buf`, if there is one, framed by the
/// capture framer's rules (a request without a valid length has no body).
fn request_len(buf: &[u8]) -> Option<usize> {
    let HeadResult::Complete(h) = head::parse(Direction::ClientToServer, buf) else {
        return None;
    };
    match head::declared(&h, buf) {
        Declared::Chunked => match ChunkedDecoder::new(64 * 1024).feed(&buf[h.len..]) {
            (n, Progress::Done) => Some(h.len + n),
            _ => None,
        },
        Declared::Length(n) => {
            let end = h.len.checked_add(usize::try_from(n).ok()?)?;
            (buf.len() >= end).then_some(end)
        }
        _ => Some(h.len),
    }
}

#[test]
fn replayer_can_be_shared_with_the_capture_path() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Mirror>();
}
