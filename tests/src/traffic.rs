//! A small HTTP/1.1 server and client over real sockets that record every byte they send
//! and receive, so a test can compare the agent's streams with the truth.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Deterministic pseudo-random bytes (reordering or corruption shows in a comparison).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes a server exchanged with one client: (received, sent).
pub type Exchanges = Arc<Mutex<HashMap<SocketAddr, (Vec<u8>, Vec<u8>)>>>;

/// A server that answers each request with a response whose body length the request asks
/// for in `X-Response-Length`.
pub struct Server {
    pub addr: SocketAddr,
    pub exchanges: Exchanges,
}

impl Server {
    pub fn start(listener: TcpListener) -> Server {
        let addr = listener.local_addr().expect("local addr");
        let exchanges: Exchanges = Arc::default();
        let ex = exchanges.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let ex = ex.clone();
                std::thread::spawn(move || serve(stream, ex));
            }
        });
        Server { addr, exchanges }
    }

    /// (received, sent) for the client at `peer`.
    pub fn exchange(&self, peer: SocketAddr) -> (Vec<u8>, Vec<u8>) {
        self.exchanges
            .lock()
            .expect("lock")
            .get(&peer)
            .cloned()
            .unwrap_or_default()
    }
}

fn serve(stream: TcpStream, ex: Exchanges) {
    let peer = stream.peer_addr().expect("peer");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut n = 0u64;
    loop {
        let Some((raw, headers)) = read_message(&mut reader) else {
            return;
        };
        let want: usize = headers
            .get("x-response-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = pattern(n ^ 0xABCD, want);
        n += 1;
        let mut resp =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {want}\r\nX-Seq: {n}\r\n\r\n").into_bytes();
        resp.extend_from_slice(&body);
        {
            let mut ex = ex.lock().expect("lock");
            let e = ex.entry(peer).or_default();
            e.0.extend_from_slice(&raw);
            e.1.extend_from_slice(&resp);
        }
        if writer.write_all(&resp).is_err() {
            return;
        }
    }
}

/// Reads one message framed by Content-Length; returns its raw bytes and lower-case headers.
pub fn read_message(r: &mut impl BufRead) -> Option<(Vec<u8>, HashMap<String, String>)> {
    let (mut raw, headers) = read_head(r)?;
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = raw.len();
    raw.resize(start + len, 0);
    r.read_exact(&mut raw[start..]).ok()?;
    Some((raw, headers))
}

/// Reads a message head up to and including its empty line; returns its raw bytes and
/// its headers by lower-case name.
pub fn read_head(r: &mut impl BufRead) -> Option<(Vec<u8>, HashMap<String, String>)> {
    let mut raw = Vec::new();
    let mut headers = HashMap::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" {
            return Some((raw, headers));
        }
        let text = String::from_utf8_lossy(&line);
        if let Some((k, v)) = text.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
}

/// A keep-alive client that records what it sent and received.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub local: SocketAddr,
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
}

impl Client {
    pub fn new(stream: TcpStream) -> Client {
        let local = stream.local_addr().expect("local addr");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client {
            stream,
            reader,
            local,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    pub fn connect(addr: SocketAddr) -> Client {
        Client::new(TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}")))
    }

    /// Sends one request with a `body_len`-byte body, asking for `resp_len` bytes back,
    /// and reads the response.
    pub fn request(&mut self, seq: u64, body_len: usize, resp_len: usize) {
        let mut req = format!(
            "POST /items/{seq}?q=gor HTTP/1.1\r\nHost: staging.test\r\nContent-Length: {body_len}\r\nX-Response-Length: {resp_len}\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(&pattern(seq, body_len));
        self.stream.write_all(&req).expect("send the request");
        self.sent.extend_from_slice(&req);
        let (resp, _) = read_message(&mut self.reader).expect("read the response");
        self.received.extend_from_slice(&resp);
    }

    /// The underlying socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Binds a listener on `ip` with a free port.
pub fn listen(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"))
}

/// A client connection to production that sends raw requests and reads the answers.
pub struct Raw {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(addr: std::net::SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect to production");
        let r = BufReader::new(s.try_clone().expect("clone"));
        Raw { s, r }
    }

    /// Sends one request and waits for production's answer; returns the time it took.
    pub fn send(&mut self, req: &[u8]) -> Duration {
        let t = Instant::now();
        self.s.write_all(req).expect("send to production");
        read_message(&mut self.r).expect("production answered");
        t.elapsed()
    }
}
