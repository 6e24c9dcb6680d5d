//! Rate limiting and sampling decisions, counted through the stats.

use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn per_second_limits_each_target() {
    // Nothing needs to answer: only the accept decisions are counted. Port 9 (discard)
    // on loopback is closed in test environments; failures do not affect the counts.
    let mut cfg = config(vec![target(9), target(9)]);
    cfg.rate = Rate::PerSecond(50);
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    // 300 requests spread evenly over one second (deadlines, so that the timer's
    // millisecond rounding does not stretch the second).
    let start = tokio::time::Instant::now();
    for i in 0..300u32 {
        tokio::time::sleep_until(start + Duration::from_secs(1) * i / 300).await;
        r.submit(&m);
    }
    let s = r.stats();
    for t in &s.targets {
        assert_eq!(t.accepted + t.rate_limited + t.queue_full, 300);
        assert_eq!(t.queue_full, 0);
        // 50 refilled over the second plus a burst of 5.
        assert!((45..=60).contains(&t.accepted), "{t:#?}");
    }
    r.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn per_second_zero_drops_everything() {
    let mut cfg = config(vec![target(9)]);
    cfg.rate = Rate::PerSecond(0);
    let r = Mirror::start(cfg);
    r.submit(&msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"));
    let s = r.shutdown(Duration::ZERO).await;
    assert_eq!((s.total.accepted, s.total.rate_limited), (0, 1));
}

fn kept(percent: f64, n: u64) -> u64 {
    let mut cfg = config(vec![]);
    cfg.rate = Rate::Percent(percent);
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    for _ in 0..n {
        r.submit(&m);
    }
    let s = r.stats();
    assert_eq!(s.submitted, n);
    n - s.sampled_out
}

#[tokio::test]
async fn percent_keeps_about_that_share() {
    let k = kept(10.0, 5000);
    assert!((350..=650).contains(&k), "kept {k} of 5000");
    assert_eq!(kept(0.0, 1000), 0);
    assert_eq!(kept(100.0, 1000), 1000);
    let k = kept(50.0, 5000);
    assert!((2350..=2650).contains(&k), "kept {k} of 5000");
}
