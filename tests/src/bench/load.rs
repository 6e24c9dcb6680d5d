//! The load: wrk flat out (its own account of requests, throughput and latency
//! percentiles), and a paced client that sends at a fixed rate and remembers when it sent
//! each request.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::traffic::Raw;

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
pub fn wrk(url: &str, conns: u32, secs: u32) -> Result<WrkRun> {
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

/// Requests per second one paced connection carries at most (one request, then its
/// answer, then the next: well under a millisecond each on loopback).
const PER_CONNECTION: u32 = 500;

/// What a paced client sent.
pub struct Paced {
    /// Each request's line (`GET /x HTTP/1.1`) and when it was written.
    pub sent: Vec<(String, Instant)>,
    pub started: Instant,
    pub elapsed: Duration,
}

impl Paced {
    /// The rate actually achieved.
    pub fn rps(&self) -> f64 {
        self.sent.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `rate` requests/s to `addr` for `duration`, over keep-alive connections of at
/// most [`PER_CONNECTION`] requests/s each, each request after the previous one's
/// answer. Request `i` of connection `c` is `GET target(c, i) HTTP/1.1`. A request whose
/// time has passed (the client fell behind) goes at once; the run stops at twice
/// `duration` whatever was sent, so a slow server cannot stretch it without bound.
pub fn paced<F>(addr: SocketAddr, rate: u32, duration: Duration, target: F) -> Paced
where
    F: Fn(usize, usize) -> String + Send + Sync + 'static,
{
    let rate = rate.max(1);
    let conns = rate.div_ceil(PER_CONNECTION) as usize;
    let per_conn = (u128::from(rate) * duration.as_millis() / 1000) as usize / conns;
    let interval = Duration::from_secs(1) * conns as u32 / rate;
    let target = std::sync::Arc::new(target);
    let started = Instant::now() + Duration::from_millis(50);
    let stop = started + duration * 2;
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let target = target.clone();
            std::thread::spawn(move || {
                let mut conn = Raw::connect(addr);
                let offset = Duration::from_secs(1) * c as u32 / rate;
                let mut sent = Vec::with_capacity(per_conn);
                for i in 0..per_conn {
                    let due = started + offset + interval * i as u32;
                    let now = Instant::now();
                    if now > stop {
                        break;
                    }
                    // Pacing, not synchronisation: the request is due at this time.
                    std::thread::sleep(due.saturating_duration_since(now));
                    let line = format!("GET {} HTTP/1.1", target(c, i));
                    let at = Instant::now();
                    conn.send(format!("{line}\r\nHost: bench\r\n\r\n").as_bytes());
                    sent.push((line, at));
                }
                sent
            })
        })
        .collect();
    let sent: Vec<(String, Instant)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a paced client connection failed"))
        .collect();
    Paced {
        sent,
        started,
        elapsed: started.elapsed(),
    }
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
