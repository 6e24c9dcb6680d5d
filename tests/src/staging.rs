//! A recording staging server: it frames each request it receives (Content-Length or
//! chunked), records its exact bytes, its connection and its arrival time, and answers
//! according to its mode (ok, slow, reset). Used by the mirror tests and the demo.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

/// One request as staging received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Staging-side connection number (in accept order).
    pub conn: usize,
    pub raw: Vec<u8>,
    pub at: Instant,
}

/// How staging answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    /// Answers after 10 s.
    Slow = 1,
    /// Resets the connection after reading a request.
    Reset = 2,
}

/// What a recording server has received so far, and a way to wait for more.
pub struct Recorder<T> {
    received: Mutex<Vec<T>>,
    changed: Condvar,
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Recorder {
            received: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }
    }
}

impl<T: Clone> Recorder<T> {
    pub fn push(&self, item: T) {
        self.received.lock().expect("lock").push(item);
        self.changed.notify_all();
    }

    pub fn all(&self) -> Vec<T> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` items were received (or `timeout` passed); returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<T> {
        let deadline = Instant::now() + timeout;
        let mut got = self.received.lock().expect("lock");
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            got = self.changed.wait_timeout(got, left).expect("wait").0;
        }
        got.clone()
    }
}

type Shared = Recorder<Received>;

pub struct Staging {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    mode: Arc<AtomicU8>,
    conns: Arc<AtomicUsize>,
    /// A handle on the listening socket and on every accepted connection, for `close`.
    sockets: Arc<Mutex<Sockets>>,
}

#[derive(Default)]
struct Sockets {
    listener: Option<TcpListener>,
    /// Open connections by number, each removed when it ends (a handle kept longer would
    /// hold the socket open: no FIN when the connection is done with).
    accepted: std::collections::HashMap<usize, TcpStream>,
}

impl Staging {
    pub fn start(listener: TcpListener) -> Staging {
        let addr = listener.local_addr().expect("addr");
        let staging = Staging {
            addr,
            shared: Arc::new(Shared::default()),
            mode: Arc::new(AtomicU8::new(Mode::Ok as u8)),
            conns: Arc::new(AtomicUsize::new(0)),
            sockets: Arc::default(),
        };
        staging.accept_on(listener);
        staging
    }

    fn accept_on(&self, listener: TcpListener) {
        let (s, m, c) = (self.shared.clone(), self.mode.clone(), self.conns.clone());
        let sockets = self.sockets.clone();
        sockets.lock().expect("lock").listener =
            Some(listener.try_clone().expect("clone the listener"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let n = c.fetch_add(1, Ordering::SeqCst);
                if let Ok(handle) = stream.try_clone() {
                    sockets.lock().expect("lock").accepted.insert(n, handle);
                }
                let (s, m, sockets) = (s.clone(), m.clone(), sockets.clone());
                std::thread::spawn(move || {
                    serve(stream, n, s, m);
                    sockets.lock().expect("lock").accepted.remove(&n);
                });
            }
        });
    }

    /// Staging goes away: its listening socket is closed (connections are refused) and
    /// its open connections are shut down. What was received stays recorded.
    pub fn close(&self) {
        let mut sockets = self.sockets.lock().expect("lock");
        if let Some(l) = sockets.listener.take() {
            // shutdown(2) on a listening socket wakes the accept(2) blocked on it (with
            // EINVAL), so the accept thread ends and drops its handle: the port closes.
            // SAFETY: shutdown on a socket we own.
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for (_, s) in sockets.accepted.drain() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Staging comes back on the same address, recording into the same list.
    pub fn reopen(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            // The accept thread may still hold the old socket for a moment.
            match TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("bind staging again on {}: {e}", self.addr),
            }
        };
        self.accept_on(listener);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.all()
    }

    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were received (or `timeout` passed); returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.shared.wait_for(n, timeout)
    }
}

fn serve(stream: TcpStream, conn: usize, shared: Arc<Shared>, mode: Arc<AtomicU8>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    while let Some(raw) = read_request(&mut reader) {
        shared.push(Received {
            conn,
            raw,
            at: Instant::now(),
        });
        match mode.load(Ordering::SeqCst) {
            1 => std::thread::sleep(Duration::from_secs(10)),
            2 => {
                reset(&writer);
                return;
            }
            _ => {}
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// Closes with RST (SO_LINGER 0).
fn reset(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the struct for its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// `req` with its Host header's value replaced by `host` (the header's name as the client
/// spelled it): what staging receives of a request mirrored without `GOR_ORIGINAL_HOST`.
pub fn with_host(req: &[u8], host: &str) -> Vec<u8> {
    let head_end = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 2;
    let (head, body) = req.split_at(head_end);
    let mut out = Vec::new();
    for line in head.split_inclusive(|&b| b == b'\n') {
        if String::from_utf8_lossy(line)
            .to_ascii_lowercase()
            .starts_with("host:")
        {
            let name = &line[..line.iter().position(|&b| b == b':').unwrap_or(0)];
            out.extend_from_slice(&[name, format!(": {host}\r\n").as_bytes()].concat());
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

/// Reads one request (head, then a Content-Length or chunked body); its exact bytes.
pub fn read_request(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let (mut raw, headers) = crate::traffic::read_head(r)?;
    let len: usize = match headers.get("content-length") {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut size_line = Vec::new();
            r.read_until(b'\n', &mut size_line).ok()?;
            raw.extend_from_slice(&size_line);
            let text = String::from_utf8_lossy(&size_line);
            let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = Vec::new();
                    r.read_until(b'\n', &mut t).ok()?;
                    raw.extend_from_slice(&t);
                    if t == b"\r\n" || t.is_empty() {
                        return Some(raw);
                    }
                }
            }
            let start = raw.len();
            raw.resize(start + size + 2, 0);
            r.read_exact(&mut raw[start..]).ok()?;
        }
    }
    let start = raw.len();
    raw.resize(start + len, 0);
    r.read_exact(&mut raw[start..]).ok()?;
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(addr: SocketAddr, path: &str) {
        let mut s = TcpStream::connect(addr).expect("staging accepts");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: s\r\n\r\n").as_bytes())
            .expect("send");
        let mut r = BufReader::new(s);
        crate::traffic::read_message(&mut r).expect("an answer");
    }

    #[test]
    fn closed_staging_refuses_then_comes_back_on_its_port() {
        let staging = Staging::start(crate::traffic::listen("127.0.0.1"));
        let mut kept = TcpStream::connect(staging.addr).expect("connect");
        send(staging.addr, "/before");
        staging.wait_for(1, Duration::from_secs(5));
        staging.close();
        // The listener is gone, and so are the connections it had accepted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(staging.addr).is_ok() {
            assert!(Instant::now() < deadline, "staging still accepts");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kept.write_all(b"GET /lost HTTP/1.1\r\nHost: s\r\n\r\n");
        let mut buf = [0u8; 16];
        assert!(matches!(
            std::io::Read::read(&mut kept, &mut buf),
            Ok(0) | Err(_)
        ));
        staging.reopen();
        send(staging.addr, "/after");
        let got = staging.wait_for(2, Duration::from_secs(5));
        assert_eq!(got.len(), 2);
        assert!(got[1].raw.starts_with(b"GET /after "));
    }
}
