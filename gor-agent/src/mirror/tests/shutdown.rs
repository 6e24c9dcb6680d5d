//! Shutdown: queued and in-flight requests finish within the grace, the rest is aborted.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_lets_in_flight_and_queued_finish() {
    let mut staging = Staging::start(Mode::Delay(Duration::from_millis(200))).await;
    let r = Mirror::start(config(vec![target(staging.port)]));
    for c in [1, 1, 1, 2, 2] {
        r.submit(&msg(c, b"GET /s HTTP/1.1\r\nHost: p\r\n\r\n"));
    }
    // Shut down while the first requests are in flight.
    let _first = staging.next().await;
    let s = r.shutdown(Duration::from_secs(10)).await;
    assert_eq!(s.total.status_2xx, 5, "{s:#?}");
    assert_eq!(s.total.aborted_at_shutdown, 0);
    assert_eq!(s.total.pending, 0);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_expiry_aborts_the_rest() {
    let mut staging = Staging::start(Mode::Delay(Duration::from_secs(30))).await;
    let mut cfg = config(vec![target(staging.port)]);
    cfg.timeout = Duration::from_secs(60);
    let r = Mirror::start(cfg);
    for _ in 0..3 {
        r.submit(&msg(1, b"GET /s HTTP/1.1\r\nHost: p\r\n\r\n"));
    }
    let _in_flight = staging.next().await;
    let start = Instant::now();
    let s = r.shutdown(Duration::from_millis(200)).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(s.total.aborted_at_shutdown, 3, "{s:#?}");
    assert_eq!((s.total.pending, s.total.pending_bytes), (0, 0));
    staging.stop().await;
}
