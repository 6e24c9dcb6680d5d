//! Pipelining: requests already waiting in a lane are written together and their
//! responses read in order; a non-idempotent request goes alone; and requests staging did
//! not get to (it closed the connection) go again on a new one, exactly once.

use std::time::Duration;

use super::*;

fn get(i: usize) -> Vec<u8> {
    format!("GET /r{i} HTTP/1.1\r\nHost: prod\r\n\r\n").into_bytes()
}

fn path(g: &Got) -> String {
    let line = String::from_utf8_lossy(&g.raw).into_owned();
    line.split(' ').nth(1).unwrap_or_default().to_string()
}

/// Submits `reqs` on one client connection (all before any task runs: the tests use the
/// current-thread runtime) and returns what staging got, and the final stats.
async fn replay(
    mode: Mode,
    pipeline: usize,
    reqs: &[Vec<u8>],
) -> (Vec<Got>, super::super::TargetStats) {
    let mut staging = Staging::start(mode).await;
    let mut cfg = config(vec![target(staging.port)]);
    cfg.pipeline = pipeline;
    let r = Mirror::start(cfg);
    for raw in reqs {
        r.submit(&msg(7, raw));
    }
    let got = staging.take(reqs.len()).await;
    let stats = r.shutdown(Duration::from_secs(5)).await;
    staging.stop().await;
    (got, stats.total)
}

/// The longest run of requests that each had another behind it: a batch is one more.
fn longest_batch(got: &[Got]) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for g in got {
        run = if g.behind { run + 1 } else { 0 };
        longest = longest.max(run + 1);
    }
    longest
}

#[tokio::test]
async fn waiting_requests_are_pipelined_in_order() {
    let reqs: Vec<_> = (0..100).map(get).collect();
    let (got, t) = replay(Mode::Ok, 16, &reqs).await;
    let paths: Vec<String> = got.iter().map(path).collect();
    let want: Vec<String> = (0..100).map(|i| format!("/r{i}")).collect();
    assert_eq!(paths, want, "in order, each once");
    assert!(got.iter().all(|g| g.conn == 0), "on one staging connection");
    assert_eq!(longest_batch(&got), 16, "batches of GOR_PIPELINE requests");
    assert_eq!((t.sent, t.status_2xx, t.retries), (100, 100, 0), "{t:#?}");
    // All but the first of each batch, and the very first request went alone: a new
    // connection carries one request until it is known to be kept alive.
    let batches = 100usize.div_ceil(16) as u64;
    assert_eq!(t.pipelined, 100 - batches - 1, "{t:#?}");
}

#[tokio::test]
async fn pipeline_1_sends_one_at_a_time() {
    let reqs: Vec<_> = (0..50).map(get).collect();
    let (got, t) = replay(Mode::Ok, 1, &reqs).await;
    assert_eq!(longest_batch(&got), 1);
    assert_eq!((t.status_2xx, t.pipelined), (50, 0), "{t:#?}");
}

#[tokio::test]
async fn non_idempotent_requests_go_alone() {
    let post = b"POST /p HTTP/1.1\r\nHost: prod\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    let upgrade =
        b"GET /ws HTTP/1.1\r\nHost: prod\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n".to_vec();
    let reqs = vec![get(0), get(1), post, get(2), upgrade, get(3), get(4)];
    let (got, t) = replay(Mode::Ok, 16, &reqs).await;
    let seen: Vec<(String, bool)> = got.iter().map(|g| (path(g), g.behind)).collect();
    // The POST goes alone; the upgrade may end a batch but nothing follows it.
    let want = [
        ("/r0", false), // the first on a new connection
        ("/r1", false),
        ("/p", false),
        ("/r2", true),
        ("/ws", false),
        ("/r3", true),
        ("/r4", false),
    ]
    .map(|(p, b)| (p.to_string(), b));
    assert_eq!(seen, want);
    assert_eq!(t.status_2xx, 7, "{t:#?}");
}

/// Staging answers five requests per connection, then closes it: with `Connection: close`
/// on the fifth (nginx's `keepalive_requests`), or silently. The requests pipelined behind
/// the fifth were never processed, so they go again on a new connection: staging gets
/// each request exactly once, in order, five per connection, and nothing counts as failed.
#[tokio::test]
async fn requests_behind_a_close_go_again_on_a_new_connection() {
    for mode in [Mode::CloseAfter(5), Mode::DropAfter(5)] {
        let reqs: Vec<_> = (0..40).map(get).collect();
        let (got, t) = replay(mode, 16, &reqs).await;
        let paths: Vec<String> = got.iter().map(path).collect();
        let want: Vec<String> = (0..40).map(|i| format!("/r{i}")).collect();
        assert_eq!(paths, want, "{mode:?}: each exactly once, in order");
        let conns: Vec<usize> = got.iter().map(|g| g.conn).collect();
        let per_conn: Vec<usize> = (0..40).map(|i| i / 5).collect();
        assert_eq!(conns, per_conn, "{mode:?}: five per staging connection");
        assert_eq!(t.status_2xx, 40, "{mode:?}: {t:#?}");
        let failed = (t.resets, t.connect_errors, t.timeouts, t.dropped_backoff);
        assert_eq!(failed, (0, 0, 0, 0), "{mode:?}: {t:#?}");
        assert!(t.retries > 0, "{mode:?}: {t:#?}");
    }
}

/// A staging that closes every connection after one response (`Connection: close`, as an
/// HTTP/1.0 server does) never has a request pipelined behind one it will not answer.
#[tokio::test]
async fn nothing_is_pipelined_to_a_staging_that_closes_every_connection() {
    let reqs: Vec<_> = (0..30).map(get).collect();
    let (got, t) = replay(Mode::CloseAfter(1), 16, &reqs).await;
    let paths: Vec<String> = got.iter().map(path).collect();
    let want: Vec<String> = (0..30).map(|i| format!("/r{i}")).collect();
    assert_eq!(paths, want, "each exactly once, in order");
    assert!(got.iter().all(|g| !g.behind));
    assert_eq!((t.status_2xx, t.pipelined, t.retries), (30, 0, 0), "{t:#?}");
}
