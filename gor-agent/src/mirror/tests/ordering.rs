//! Ordering: each client connection's requests reach staging in order, on one staging
//! connection at a time, with at most `workers` staging connections.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

const CONNS: u64 = 20;
const PER_CONN: usize = 30;

/// Submits interleaved requests and returns, per client connection, the (staging
/// connection, sequence number) of its requests in arrival order.
async fn run(workers: usize) -> (HashMap<u64, Vec<(usize, usize)>>, usize) {
    let mut staging = Staging::start(Mode::Ok).await;
    let mut cfg = config(vec![target(staging.port)]);
    cfg.workers = workers;
    let r = Mirror::start(cfg);
    for seq in 0..PER_CONN {
        for c in 0..CONNS {
            let raw = format!("GET /c{c}/r{seq} HTTP/1.1\r\nHost: prod\r\n\r\n");
            r.submit(&msg(c, raw.as_bytes()));
        }
    }
    let mut per_conn: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for g in staging.take(CONNS as usize * PER_CONN).await {
        let line = String::from_utf8_lossy(&g.raw).into_owned();
        let path = line.split(' ').nth(1).unwrap();
        let mut parts = path.trim_start_matches("/c").split("/r");
        let c: u64 = parts.next().unwrap().parse().unwrap();
        let seq: usize = parts.next().unwrap().parse().unwrap();
        per_conn.entry(c).or_default().push((g.conn, seq));
    }
    let stats = r.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        stats.total.status_2xx,
        CONNS * PER_CONN as u64,
        "{stats:#?}"
    );
    let accepted = staging.accepted.load(std::sync::atomic::Ordering::SeqCst);
    staging.stop().await;
    (per_conn, accepted)
}

fn assert_in_order(per_conn: &HashMap<u64, Vec<(usize, usize)>>) {
    assert_eq!(per_conn.len(), CONNS as usize);
    for (c, reqs) in per_conn {
        let seqs: Vec<usize> = reqs.iter().map(|r| r.1).collect();
        assert_eq!(seqs, (0..PER_CONN).collect::<Vec<_>>(), "client conn {c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_staging_connection_per_client_connection() {
    let (per_conn, accepted) = run(CONNS as usize).await;
    assert_in_order(&per_conn);
    for (c, reqs) in &per_conn {
        assert!(
            reqs.iter().all(|r| r.0 == reqs[0].0),
            "client conn {c}: {reqs:?}"
        );
    }
    assert_eq!(accepted, CONNS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_holds_when_lanes_share_few_workers() {
    let (per_conn, accepted) = run(3).await;
    assert_in_order(&per_conn);
    // Connections are handed over through the pool, never more than `workers` opened.
    assert!(accepted <= 3, "{accepted} staging connections");
}

/// Waits until `n` responses from staging were counted.
async fn answered(r: &Mirror, n: u64) {
    tokio::time::timeout(WAIT, async {
        while t0(&r.stats()).status_2xx < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("staging answered in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_of_no_connection_share_one_lane_while_staging_keeps_up() {
    let mut staging = Staging::start(Mode::Ok).await;
    let r = Mirror::start(config(vec![target(staging.port)]));
    for i in 0..20u64 {
        let raw = format!("GET /saved/{i} HTTP/1.1\r\nHost: prod\r\n\r\n");
        r.submit(&msg(super::ANY_CONNECTION, raw.as_bytes()));
        answered(&r, i + 1).await;
    }
    let got = staging.take(20).await;
    let paths: Vec<String> = got
        .iter()
        .map(|g| {
            String::from_utf8_lossy(&g.raw)
                .split(' ')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        paths,
        (0..20).map(|i| format!("/saved/{i}")).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|g| g.conn == 0), "one staging connection");
    r.shutdown(Duration::from_secs(5)).await;
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_requests_of_no_connection_spread_over_the_workers() {
    let mut staging = Staging::start(Mode::Delay(Duration::from_millis(300))).await;
    let mut cfg = config(vec![target(staging.port)]);
    cfg.workers = 4;
    let r = Mirror::start(cfg);
    for i in 0..8u64 {
        let raw = format!("GET /burst/{i} HTTP/1.1\r\nHost: prod\r\n\r\n");
        r.submit(&msg(super::ANY_CONNECTION, raw.as_bytes()));
    }
    let got = staging.take(8).await;
    let stats = r.shutdown(Duration::from_secs(5)).await;
    assert_eq!(t0(&stats).status_2xx, 8, "{stats:#?}");
    let conns: std::collections::HashSet<usize> = got.iter().map(|g| g.conn).collect();
    assert_eq!(conns.len(), 4, "as many staging connections as workers");
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_connection_number_on_two_hosts_is_two_client_connections() {
    // Files merged from a fleet: connection 5 of one agent run and connection 5 of
    // another are different clients, each in its own order, concurrently.
    let mut staging = Staging::start(Mode::Delay(Duration::from_millis(100))).await;
    let r = Mirror::start(config(vec![target(staging.port)]));
    for seq in 0..3u64 {
        for origin in [1u64, 2] {
            let raw = format!("GET /o{origin}/r{seq} HTTP/1.1\r\nHost: prod\r\n\r\n");
            let mut m = msg(5, raw.as_bytes());
            m.id = crate::envelope::MessageId::framed(crate::envelope::Origin(origin), 5, seq + 1);
            r.submit(&m);
        }
    }
    let mut by_origin: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for g in staging.take(6).await {
        let line = String::from_utf8_lossy(&g.raw).into_owned();
        let path = line.split(' ').nth(1).unwrap().to_string();
        let origin = path.split('/').nth(1).unwrap().to_string();
        by_origin.entry(origin).or_default().push((g.conn, path));
    }
    assert_eq!(by_origin.len(), 2, "{by_origin:?}");
    let mut conns = Vec::new();
    for (origin, reqs) in &by_origin {
        let paths: Vec<&str> = reqs.iter().map(|r| r.1.as_str()).collect();
        let want: Vec<String> = (0..3).map(|s| format!("/{origin}/r{s}")).collect();
        assert_eq!(paths, want, "{origin} in its order");
        assert!(
            reqs.iter().all(|r| r.0 == reqs[0].0),
            "{origin}: one staging connection: {reqs:?}"
        );
        conns.push(reqs[0].0);
    }
    assert_ne!(
        conns[0], conns[1],
        "two client connections, two staging connections"
    );
    r.shutdown(Duration::from_secs(5)).await;
    staging.stop().await;
}
