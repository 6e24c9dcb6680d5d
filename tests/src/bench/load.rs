//! The paced load: a client that sends at a fixed rate and remembers when it sent each
//! request (wrk flat out, the other load, is `crate::clients::wrk`).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::traffic::Raw;

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
/// most `PER_CONNECTION` requests/s each, each request after the previous one's
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
