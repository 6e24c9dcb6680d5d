//! Real HTTP clients for the end-to-end tests and the benchmarks, each able to say
//! exactly what it sent: curl (its `--trace` hex dump), wrk (fixed request bytes, and
//! its own account of requests, throughput and latency percentiles), and a hyper client
//! whose socket records every byte written to it.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    process::Command,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use anyhow::{bail, Context as _};
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

/// wrk's threads: one, so that on two cores the other is left to the server.
pub const WRK_THREADS: u32 = 1;

/// The wrk command line for `url`, as run and as printed in BENCHMARKS.md.
pub fn wrk_command(url: &str, conns: u32, secs: u32) -> Vec<String> {
    vec![
        "wrk".into(),
        format!("-t{WRK_THREADS}"),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".into(),
        url.into(),
    ]
}

/// What wrk reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WrkRun {
    /// Responses wrk read.
    pub requests: u64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Socket errors and non-2xx/3xx responses.
    pub errors: u64,
}

/// Runs wrk (see [`wrk_command`]) and reads its report.
pub fn wrk(url: &str, conns: u32, secs: u32) -> anyhow::Result<WrkRun> {
    let cmd = wrk_command(url, conns, secs);
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .context("running wrk (installed by `cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{text}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("reading the report of {}:\n{text}", cmd.join(" ")))
}

/// Reads wrk's `--latency` report.
pub fn parse_wrk(out: &str) -> Option<WrkRun> {
    let mut r = WrkRun::default();
    let mut seen = (false, false);
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50_us = micros(v)?,
            ["99%", v] => r.p99_us = micros(v)?,
            [n, "requests", "in", ..] => {
                r.requests = n.parse().ok()?;
                seen.0 = true;
            }
            ["Requests/sec:", v] => {
                r.rps = v.parse().ok()?;
                seen.1 = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                for pair in rest.chunks(2) {
                    if let [_, n] = pair {
                        r.errors += n.trim_end_matches(',').parse::<u64>().ok()?;
                    }
                }
            }
            _ => {}
        }
    }
    (seen.0 && seen.1).then_some(r)
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`.
fn micros(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
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

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:8080/index.html
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   540.12us  301.00us  12.00ms   90.00%
    Req/Sec    29.50k     1.20k   31.00k    70.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%  800.00us
     99%    1.52ms
  147000 requests in 5.00s, 40.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  29400.12
Transfer/sec:      8.02MB
";

    #[test]
    fn reads_wrk_latency_report() {
        let r = parse_wrk(REPORT).expect("parsed");
        assert_eq!(r.requests, 147_000);
        assert_eq!(r.rps, 29400.12);
        assert_eq!(r.p50_us, 480.0);
        assert_eq!(r.p99_us, 1520.0);
        assert_eq!(r.errors, 7);
    }

    #[test]
    fn a_report_without_totals_is_not_read() {
        assert_eq!(parse_wrk("unable to connect to 127.0.0.1:1"), None);
    }

    #[test]
    fn wrk_durations_in_micros() {
        assert_eq!(micros("812.00us"), Some(812.0));
        assert_eq!(micros("2.00s"), Some(2e6));
        assert_eq!(micros("fast"), None);
    }
}
