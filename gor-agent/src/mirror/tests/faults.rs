//! Faults: staging down, slow, resetting; `submit` never blocks, memory stays bounded,
//! and mirroring resumes by itself once staging works again.

use std::time::{Duration, Instant};

use super::super::lane::LANE_QUEUE;
use super::*;

/// A loopback port with nothing listening (bound once, then released).
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_down_reset_slow_staging_then_resumes() {
    let port = free_port().await;
    let mut cfg = config(vec![target(port)]);
    cfg.timeout = Duration::from_millis(300);
    cfg.workers = 2;
    cfg.queue = 8;
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET /f HTTP/1.1\r\nHost: p\r\n\r\n");

    // Down: a burst never blocks and only a bounded number of requests is held.
    let start = Instant::now();
    for i in 0..10_000 {
        r.submit(&msg(
            i % 3,
            b"POST /x HTTP/1.1\r\nHost: p\r\nContent-Length: 1\r\n\r\nx",
        ));
    }
    assert!(start.elapsed() < Duration::from_secs(2), "submit blocked");
    let s = r.stats();
    assert!(t0(&s).pending <= 8 + 3 * LANE_QUEUE as u64 + 3, "{s:#?}");
    assert!(t0(&s).queue_full > 0, "{s:#?}");
    submit_until(&r, &m, |s| t0(s).connect_errors >= 1).await;

    // Resetting staging.
    let reset = Staging::on_port(port, Mode::Reset).await;
    submit_until(&r, &m, |s| t0(s).resets >= 1).await;
    reset.stop().await;

    // Slow staging: answers after the timeout.
    let slow = Staging::on_port(port, Mode::Delay(Duration::from_secs(3))).await;
    submit_until(&r, &m, |s| t0(s).timeouts >= 1).await;
    slow.stop().await;

    // Working again: mirroring resumes without any intervention.
    let good = Staging::on_port(port, Mode::Ok).await;
    submit_until(&r, &m, |s| t0(s).status_2xx >= 3).await;
    let s = r.shutdown(Duration::from_secs(5)).await;
    let t = t0(&s);
    assert!(t.dropped_backoff > 0, "{s:#?}");
    assert_eq!(t.pending, 0);
    assert_eq!(t.pending_bytes, 0);
    good.stop().await;
}

#[tokio::test]
async fn garbage_response_is_counted() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        // Keep the connection open until the mirror gives up on it.
        let _ = s.read(&mut buf).await;
    });
    let r = Mirror::start(config(vec![target(port)]));
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    submit_until(&r, &m, |s| t0(s).bad_responses >= 1).await;
    r.shutdown(Duration::from_secs(1)).await;
    server.abort();
}
