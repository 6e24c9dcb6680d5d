//! GoReplay's output options, per target: each target's own rate, splitting the requests
//! across the targets by client connection, basic auth from the URL, a fixed path.

use std::time::Duration;

use super::*;
use crate::mirror::{Accepted, PathMode};

fn with_rate(port: u16, rate: Rate) -> Target {
    let mut t = target(port);
    t.rate = Some(rate);
    t
}

#[tokio::test(start_paused = true)]
async fn each_target_has_its_own_rate_and_the_default_applies_to_the_others() {
    // Target 0: 50/s of its own; 1: 20% of its own; 2: the default (all).
    let mut cfg = config(vec![
        with_rate(9, Rate::PerSecond(50)),
        with_rate(9, Rate::Percent(20.0)),
        target(9),
    ]);
    cfg.rate = Rate::All;
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    let start = tokio::time::Instant::now();
    for i in 0..1000u32 {
        tokio::time::sleep_until(start + Duration::from_secs(1) * i / 1000).await;
        r.submit(&m);
    }
    let s = r.stats();
    let taken = |i: usize| s.targets[i].accepted + s.targets[i].queue_full;
    assert!((45..=60).contains(&taken(0)), "{s:#?}");
    assert_eq!(taken(0) + s.targets[0].rate_limited, 1000);
    // 20% of 1000: 200, within a generous band; its drops are its own rate_limited.
    assert!((140..=260).contains(&taken(1)), "{s:#?}");
    assert_eq!(taken(1) + s.targets[1].rate_limited, 1000);
    assert_eq!((taken(2), s.targets[2].rate_limited), (1000, 0));
    assert_eq!(s.sampled_out, 0);
    r.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn the_default_percent_is_one_draw_for_the_targets_without_their_own() {
    // Targets 0 and 1 share the default 30%: they take exactly the same requests; target
    // 2 has its own rate (all) and takes every one.
    let mut cfg = config(vec![target(9), target(9), with_rate(9, Rate::All)]);
    cfg.rate = Rate::Percent(30.0);
    cfg.queue = 10_000;
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    let mut both = 0;
    for _ in 0..2000 {
        let a = r.submit(&m);
        assert_eq!(a.contains(0), a.contains(1));
        assert!(a.contains(2));
        both += u64::from(a.contains(0));
    }
    let s = r.shutdown(Duration::ZERO).await;
    assert!((450..=750).contains(&both), "{both}");
    assert_eq!(s.sampled_out, 2000 - both);
}

#[tokio::test]
async fn split_keeps_a_connection_on_one_target_and_turns_connections() {
    let mut cfg = config(vec![target(9), target(9), target(9)]);
    cfg.split = true;
    let r = Mirror::start(cfg);
    let mut per_target = [0u32; 3];
    for conn in 1..=30u64 {
        let m = msg(conn, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
        let first = r.submit(&m);
        assert_eq!(first.count(), 1, "connection {conn}: {first:?}");
        for _ in 0..4 {
            assert_eq!(r.submit(&m), first, "connection {conn} moved");
        }
        let i = (0..3).find(|&i| first.contains(i)).unwrap();
        per_target[i] += 1;
    }
    // Consecutive connections take the targets in turn.
    assert_eq!(per_target, [10, 10, 10]);
    // Requests of no known connection take them in turn one by one.
    let m = msg(ANY_CONNECTION, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    let turns: Vec<Accepted> = (0..6).map(|_| r.submit(&m)).collect();
    for t in 0..3 {
        assert_eq!(
            turns.iter().filter(|a| a.contains(t)).count(),
            2,
            "{turns:?}"
        );
    }
    let s = r.shutdown(Duration::ZERO).await;
    assert_eq!(s.total.accepted, 30 * 5 + 6);
}

#[tokio::test]
async fn basic_auth_from_the_url_replaces_the_clients_and_a_fixed_path_replaces_the_target() {
    let mut staging = Staging::start(Mode::Ok).await;
    let url = format!(
        "http://us%40er:p%3Ass@127.0.0.1:{}/api/v1?k=v",
        staging.port
    );
    let t = Target::parse_as(&url, PathMode::Replace).unwrap();
    assert_eq!(
        t.scheme_host_port,
        format!("http://127.0.0.1:{}/api/v1", staging.port),
        "the name has neither credentials nor query"
    );
    let mut cfg = config(vec![t]);
    cfg.set_headers = vec![("Authorization".into(), "Bearer set".into())];
    let r = Mirror::start(cfg);
    r.submit(&msg(
        1,
        b"GET /orig?a=1 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer client\r\nX: 1\r\n\r\n",
    ));
    r.submit(&msg(1, b"GET /two HTTP/1.1\r\nHost: p\r\n\r\n"));
    let got = staging.take(2).await;
    // base64("us@er:p:ss")
    let auth = "Basic dXNAZXI6cDpzcw==";
    assert_eq!(
        String::from_utf8_lossy(&got[0].raw),
        format!(
            "GET /api/v1?k=v HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {auth}\r\nX: 1\r\n\r\n",
            staging.port
        )
    );
    assert_eq!(
        String::from_utf8_lossy(&got[1].raw),
        format!(
            "GET /api/v1?k=v HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {auth}\r\n\r\n",
            staging.port
        )
    );
    let s = r.shutdown(Duration::from_secs(5)).await;
    assert!(!format!("{s:?}").contains("p%3Ass"), "{s:?}");
    assert!(!format!("{s:?}").contains("dXNAZXI6cDpzcw"), "{s:?}");
}
