//! Staging results: a subscriber gets one result per mirrored request, with the
//! request's id and staging's response as framed by the capture framer (head, body up to
//! the bound, cut and flagged past it), or the kind of failure; a subscriber that never
//! reads does not hold mirroring up.

use std::collections::HashMap;

use super::*;
use crate::envelope::{MessageId, Origin};
use crate::mirror::{FailureKind, Outcome, StagingResult};

/// A request with the given message id.
fn with_id(conn: ConnId, id: u64, raw: &[u8]) -> HttpMessage {
    let mut m = msg(conn, raw);
    m.id = MessageId::framed(Origin::default(), conn, id);
    m
}

/// The position a test id was made with.
fn seq(id: &MessageId) -> u64 {
    match id {
        MessageId::Framed { seq, .. } => *seq,
        MessageId::Foreign(s) => panic!("a foreign id {s} where a framed one was sent"),
    }
}

async fn next_result(rx: &mut mpsc::Receiver<StagingResult>) -> StagingResult {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no result in time")
        .expect("results channel closed")
}

const CHUNKED_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nX-Staging: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nX-Staging: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
                         5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_result_per_request_with_id_status_head_and_chunked_body() {
    let mut staging = Staging::start(Mode::Answer(CHUNKED)).await;
    let mut r = Mirror::start(config(vec![target(staging.port)]));
    let mut rx = r.subscribe(64);
    let ids = [11, 12, 13, 14, 15];
    for (i, id) in ids.into_iter().enumerate() {
        r.submit(&with_id(
            i as u64 % 2,
            id,
            b"GET /r HTTP/1.1\r\nHost: p\r\n\r\n",
        ));
    }
    assert_eq!(staging.take(ids.len()).await.len(), ids.len());
    let mut got = HashMap::new();
    for _ in ids {
        let res = next_result(&mut rx).await;
        assert_eq!(
            (res.target, res.target_name.as_str()),
            (0, &*format!("http://127.0.0.1:{}", staging.port))
        );
        assert!(res.latency > Duration::ZERO);
        let Outcome::Response(resp) = &res.outcome else {
            panic!("not a response: {res:?}");
        };
        assert_eq!(resp.status, 200);
        assert_eq!(&resp.head()[..], CHUNKED_HEAD);
        assert_eq!(&resp.body()[..], &CHUNKED[CHUNKED_HEAD.len()..]);
        assert_eq!(resp.body_len, (CHUNKED.len() - CHUNKED_HEAD.len()) as u64);
        assert!(!resp.body_truncated());
        let m = &resp.message;
        assert_eq!(
            (&m.id, m.dir, m.raw.as_ref()),
            (&res.id, Direction::ServerToClient, CHUNKED)
        );
        assert!(matches!(m.kind, Kind::Response { status: 200, .. }));
        assert_eq!(m.header("x-staging"), Some(&b"1"[..]));
        assert!(
            got.insert(res.id.clone(), res).is_none(),
            "two results for one request"
        );
    }
    let mut seen: Vec<u64> = got.keys().map(seq).collect();
    seen.sort_unstable();
    assert_eq!(seen, ids);
    assert_eq!(t0(&r.stats()).results_dropped, 0);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_bound_is_cut_and_flagged() {
    const BIG: &[u8] =
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz";
    let mut staging = Staging::start(Mode::Answer(BIG)).await;
    let mut cfg = config(vec![target(staging.port)]);
    cfg.result_body_limit = 10;
    let mut r = Mirror::start(cfg);
    let mut rx = r.subscribe(4);
    r.submit(&with_id(1, 7, b"GET /big HTTP/1.1\r\nHost: p\r\n\r\n"));
    staging.next().await;
    let res = next_result(&mut rx).await;
    assert_eq!((seq(&res.id), res.status()), (7, Some(404)));
    let Outcome::Response(resp) = &res.outcome else {
        panic!("not a response: {res:?}");
    };
    assert_eq!(&resp.body()[..], b"abcdefghij");
    assert_eq!(resp.body_len, 26);
    assert!(resp.body_truncated());
    // The connection stayed in sync past the cut body: the next request is answered too.
    r.submit(&with_id(1, 8, b"GET /big HTTP/1.1\r\nHost: p\r\n\r\n"));
    staging.next().await;
    assert_eq!(next_result(&mut rx).await.status(), Some(404));
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_200_headers_is_a_response() {
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..200 {
        resp.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    resp.extend_from_slice(b"\r\nok");
    let resp: &'static [u8] = Box::leak(resp.into_boxed_slice());
    let mut staging = Staging::start(Mode::Answer(resp)).await;
    let mut r = Mirror::start(config(vec![target(staging.port)]));
    let mut rx = r.subscribe(4);
    r.submit(&with_id(1, 9, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"));
    staging.next().await;
    let res = next_result(&mut rx).await;
    let Outcome::Response(got) = &res.outcome else {
        panic!("not a response: {res:?}");
    };
    assert_eq!(got.message.headers.len(), 201);
    assert_eq!(&got.body()[..], b"ok");
    let s = r.stats();
    assert_eq!((t0(&s).status_2xx, t0(&s).bad_responses), (1, 0), "{s:#?}");
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_gives_a_connect_failure() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let mut r = Mirror::start(config(vec![target(port)]));
    let mut rx = r.subscribe(4);
    r.submit(&with_id(1, 21, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"));
    let res = next_result(&mut rx).await;
    assert_eq!(seq(&res.id), 21);
    assert_eq!(res.outcome, Outcome::Failure(FailureKind::Connect));
    assert!(res.latency > Duration::ZERO);
    assert_eq!(t0(&r.stats()).connect_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_does_not_stop_mirroring() {
    let mut staging = Staging::start(Mode::Ok).await;
    let mut r = Mirror::start(config(vec![target(staging.port)]));
    let _rx = r.subscribe(1);
    let n = 20;
    for i in 0..n {
        r.submit(&with_id(i % 4, i, b"GET /n HTTP/1.1\r\nHost: p\r\n\r\n"));
    }
    assert_eq!(staging.take(n as usize).await.len(), n as usize);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = r.stats();
        // A response is counted before its result is handed over, and the request stops
        // pending after: once none is pending, every result was handed over (or dropped).
        if t0(&s).status_2xx == n && t0(&s).pending == 0 {
            assert_eq!(t0(&s).results_dropped, n - 1, "{s:#?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_subscriber_nothing_is_kept_or_dropped() {
    let mut staging = Staging::start(Mode::Answer(CHUNKED)).await;
    let mut r = Mirror::start(config(vec![target(staging.port)]));
    // A subscriber that went away is no subscriber.
    drop(r.subscribe(1));
    for i in 0..3 {
        r.submit(&with_id(1, i, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"));
    }
    staging.take(3).await;
    let s = r.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (s.total.status_2xx, s.total.results_dropped),
        (3, 0),
        "{s:#?}"
    );
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_yields_one_result() {
    // Staging answers one request per connection, then closes the next without a word:
    // every later request is written on a reused connection, lost, and sent again.
    let mut staging = Staging::start(Mode::DropAfter(1)).await;
    let mut r = Mirror::start(config(vec![target(staging.port)]));
    let mut rx = r.subscribe(64);
    let n = 4;
    for id in 0..n {
        r.submit(&with_id(1, id, b"GET /again HTTP/1.1\r\nHost: p\r\n\r\n"));
        staging.next().await;
        let res = next_result(&mut rx).await;
        assert_eq!((seq(&res.id), res.status()), (id, Some(200)));
    }
    let s = r.shutdown(Duration::from_secs(5)).await;
    assert!(t0(&s).retries >= 1, "{s:#?}");
    assert!(rx.try_recv().is_err(), "more results than requests");
    staging.stop().await;
}
