//! Rate limiting and sampling decisions, counted through the stats.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::mirror::RateGate;

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

/// Refuses everything, counting how often it was asked.
#[derive(Default)]
struct Refusing {
    asked: AtomicU64,
}

impl RateGate for Refusing {
    fn try_take(&self) -> bool {
        self.asked.fetch_add(1, Ordering::Relaxed);
        false
    }
}

#[tokio::test]
async fn a_gate_replaces_the_local_limit_and_its_refusals_are_rate_limited() {
    // Target 0 has a gate that refuses, target 1 none: its local bucket (a burst of 100
    // at this rate) takes all ten.
    let gate = Arc::new(Refusing::default());
    let mut cfg = config(vec![target(9), target(9)]);
    cfg.rate = Rate::PerSecond(1000);
    cfg.gates = vec![Some(gate.clone() as Arc<dyn RateGate>)];
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    for _ in 0..10 {
        r.submit(&m);
    }
    let s = r.shutdown(Duration::ZERO).await;
    assert_eq!(gate.asked.load(Ordering::Relaxed), 10);
    let (gated, free) = (&s.targets[0], &s.targets[1]);
    assert_eq!(
        (gated.accepted, gated.rate_limited, gated.queue_full),
        (0, 10, 0)
    );
    assert_eq!((free.accepted, free.rate_limited), (10, 0));
}

#[tokio::test]
async fn a_gate_is_not_asked_without_a_per_second_rate() {
    let gate = Arc::new(Refusing::default());
    let mut cfg = config(vec![target(9)]);
    cfg.gates = vec![Some(gate.clone() as Arc<dyn RateGate>)];
    let r = Mirror::start(cfg);
    r.submit(&msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"));
    let s = r.shutdown(Duration::ZERO).await;
    assert_eq!(gate.asked.load(Ordering::Relaxed), 0);
    assert_eq!((s.total.accepted, s.total.rate_limited), (1, 0));
}
