//! TLS production servers and clients for the HTTPS capture tests: a certificate made
//! with OpenSSL's command line, a Python `ssl` HTTP server, and Python clients (requests,
//! raw `ssl` sockets) that each say exactly which bytes they sent.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

/// A self-signed certificate for `localhost`/127.0.0.1 in `dir`: (cert.pem, key.pem).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (installed by `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Debian's Python, with Debian's python3-requests (`cargo xtask setup`) and the system's
/// OpenSSL: not whatever `python3` comes first on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// The Python programs, one file, by mode (argv[1]).
const PY: &str = r#"
import http.server, socket, ssl, sys

def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

def read_response(s, piece):
    # Reads one response with a Content-Length, `piece` bytes at a time.
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(piece)
        if not d:
            raise SystemExit("closed in a head")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, v = line.split(b":", 1)
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(rest) < n:
        d = s.recv(piece)
        if not d:
            raise SystemExit("closed in a body")
        rest += d
    return rest[n:]

mode = sys.argv[1]
if mode == "server":
    cert, key = sys.argv[2], sys.argv[3]
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.answer()
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.answer()
        def answer(self):
            body = b"0123456789" * 500
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
elif mode == "requests":
    # requests (urllib3, http.client) on one keep-alive session; records what it wrote.
    import requests, urllib3
    urllib3.disable_warnings()
    url, out = sys.argv[2], sys.argv[3]
    sent = []
    orig = ssl.SSLSocket.sendall
    def sendall(self, data, flags=0):
        sent.append(bytes(data))
        return orig(self, data, flags)
    ssl.SSLSocket.sendall = sendall
    s = requests.Session()
    s.verify = False
    assert s.get(url + "/index.html?py=1", verify=False).status_code == 200
    assert s.post(url + "/echo/py/2", data=b"p" * 100, verify=False).status_code == 201
    assert s.post(url + "/echo/py/3", json={"k": "v" * 5000}, verify=False).status_code == 201
    assert s.get(url + "/data.json?py=4", headers={"X-Case": "MiXeD"}, verify=False).status_code == 200
    open(out, "wb").write(b"".join(sent))
elif mode == "raw":
    # Sends the requests in the file argv[4] (each after its length and a newline),
    # `pipelined` in one write or one by one; reads each response `piece` bytes at a time.
    host, port, path, how, piece = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
    data, reqs = open(path, "rb").read(), []
    while data:
        n, data = data.split(b"\n", 1)
        reqs.append(data[:int(n)])
        data = data[int(n):]
    with socket.create_connection((host, port)) as raw:
        with client_ctx().wrap_socket(raw, server_hostname="localhost") as s:
            if how == "pipelined":
                s.sendall(b"".join(reqs))
                for _ in reqs:
                    read_response(s, piece)
            else:
                for r in reqs:
                    s.sendall(r)
                    read_response(s, piece)
elif mode == "held":
    # One connection driven by stdin: each line is a path to GET; prints "ok" after each
    # response.
    host, port = sys.argv[2], int(sys.argv[3])
    with socket.create_connection((host, port)) as raw:
        with client_ctx().wrap_socket(raw, server_hostname="localhost") as s:
            for line in sys.stdin:
                path = line.strip()
                if not path:
                    break
                s.sendall(("GET %s HTTP/1.1\r\nHost: held.example\r\n\r\n" % path).encode())
                read_response(s, 4096)
                print("ok", flush=True)
"#;

fn script(dir: &Path) -> PathBuf {
    let p = dir.join("tls_apps.py");
    std::fs::write(&p, PY).expect("write the Python program");
    p
}

/// A Python `ssl` HTTP/1.1 server (`http.server`, one thread per connection) answering
/// every request with 5,000 bytes; stopped when dropped.
pub struct PySslServer {
    child: Child,
    pub addr: SocketAddr,
}

impl PySslServer {
    pub fn start(dir: &Path, cert: &Path, key: &Path) -> PySslServer {
        let mut child = Command::new(PYTHON)
            .arg(script(dir))
            .arg("server")
            .arg(cert)
            .arg(key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's port");
        let port: u16 = line.trim().parse().expect("a port");
        PySslServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for PySslServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Four requests with Python requests on one session against `base` (`https://host:port`
/// of the nginx of `Nginx::with_tls`: two files, two `/echo/py/...` POSTs); the bytes it
/// wrote to the TLS socket, in order. Every request's target has `py`.
pub fn py_requests(dir: &Path, base: &str) -> Vec<u8> {
    let out = dir.join("py_requests.sent");
    run(
        Command::new(PYTHON)
            .arg(script(dir))
            .arg("requests")
            .arg(base)
            .arg(&out),
        "python3 requests client",
    );
    std::fs::read(out).expect("what the requests client sent")
}

/// Sends `reqs` over one TLS connection to `addr`, in one write (`pipelined`) or one at a
/// time, reading each response `piece` bytes at a time.
pub fn py_raw(dir: &Path, addr: SocketAddr, reqs: &[Vec<u8>], pipelined: bool, piece: usize) {
    let path = dir.join(format!("raw-{}.reqs", addr.port()));
    let mut framed = Vec::new();
    for r in reqs {
        framed.extend_from_slice(format!("{}\n", r.len()).as_bytes());
        framed.extend_from_slice(r);
    }
    std::fs::write(&path, framed).expect("write the requests");
    run(
        Command::new(PYTHON)
            .arg(script(dir))
            .args(["raw", &addr.ip().to_string(), &addr.port().to_string()])
            .arg(&path)
            .arg(if pipelined { "pipelined" } else { "one-by-one" })
            .arg(piece.to_string()),
        "python3 ssl client",
    );
}

/// One TLS connection kept open, sending `GET path` when told.
pub struct HeldConnection {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What [`HeldConnection`] sends for `path`.
pub fn held_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: held.example\r\n\r\n").into_bytes()
}

impl HeldConnection {
    pub fn open(dir: &Path, addr: SocketAddr) -> HeldConnection {
        let mut child = Command::new(PYTHON)
            .arg(script(dir))
            .args(["held", &addr.ip().to_string(), &addr.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        HeldConnection {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends `GET path` and waits for its response.
    pub fn get(&mut self, path: &str) {
        writeln!(self.stdin, "{path}").expect("tell the client");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the client's answer");
        assert_eq!(line.trim(), "ok", "the held connection failed");
    }

    /// Closes the connection and waits for the client to exit.
    pub fn close(mut self) {
        writeln!(self.stdin).expect("tell the client");
        let status = self.child.wait().expect("wait for the client");
        assert!(status.success(), "the held connection's client failed");
    }
}
