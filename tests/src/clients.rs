//! Real HTTP clients for the end-to-end tests, each able to say exactly what it sent:
//! curl (its `--trace` hex dump), wrk (fixed request bytes), and a hyper client whose
//! socket records every byte written to it.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    process::Command,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Runs curl with `args` and returns (local ports per transfer, bytes sent per the trace).
pub fn curl(dir: &Path, name: &str, args: &[&str]) -> (Vec<u16>, Vec<u8>) {
    let trace = dir.join(format!("{name}.trace"));
    let out = Command::new("curl")
        .args(["-s", "--trace"])
        .arg(&trace)
        .args(["-w", "%{local_port}\n"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    (
        ports,
        sent_in_trace(&std::fs::read_to_string(&trace).expect("trace file")),
    )
}

/// The bytes of the "=> Send header" and "=> Send data" blocks of a curl `--trace` file.
pub fn sent_in_trace(trace: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sending = false;
    for line in trace.lines() {
        if line.starts_with("=> Send header") || line.starts_with("=> Send data") {
            sending = true;
        } else if line.starts_with("=>") || line.starts_with("<=") || line.starts_with("==") {
            sending = false;
        } else if sending && line.len() > 6 && line.as_bytes()[4] == b':' {
            // "0000: 47 45 54 20 ... " : 16 hex pairs in a 48-character column.
            let hex = &line[6..line.len().min(6 + 48)];
            out.extend(
                hex.split_whitespace()
                    .filter_map(|h| u8::from_str_radix(h, 16).ok()),
            );
        }
    }
    out
}

/// The bytes wrk sends for `GET path` to `addr` (it writes the same request every time).
pub fn wrk_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// Runs wrk against `url` for `secs` seconds with `conns` connections; returns its output.
pub fn wrk(url: &str, conns: u32, secs: u32) -> String {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), url])
        .output()
        .expect("run wrk");
    assert!(
        out.status.success(),
        "wrk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP stream that records every byte written to it.
struct Recording {
    inner: tokio::net::TcpStream,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.sent.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One request for the hyper client.
pub struct HyperRequest {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Sends `requests` in order on one keep-alive connection with hyper; returns the local
/// port, the bytes hyper wrote, and the response statuses.
pub fn hyper_client(addr: SocketAddr, requests: Vec<HyperRequest>) -> (u16, Vec<u8>, Vec<u16>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let port = tcp.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let io = TokioIo::new(Recording {
            inner: tcp,
            sent: sent.clone(),
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        let driver = tokio::spawn(conn);
        let mut statuses = Vec::new();
        for r in requests {
            let mut b = hyper::Request::builder()
                .method(r.method)
                .uri(&r.path)
                .header("host", addr.to_string());
            for (k, v) in &r.headers {
                b = b.header(*k, v);
            }
            let req = b.body(Full::new(Bytes::from(r.body))).expect("request");
            let resp = sender.send_request(req).await.expect("send");
            statuses.push(resp.status().as_u16());
            resp.into_body().collect().await.expect("body");
        }
        drop(sender);
        let _ = driver.await;
        let sent = sent.lock().expect("lock").clone();
        (port, sent, statuses)
    })
}
