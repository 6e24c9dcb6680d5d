//! Following staging's redirects (`redirects` > 0): the Location on the same target is
//! requested next, up to the limit, and the last response is the request's result; a
//! Location elsewhere is never requested.

use super::*;
use crate::mirror::{Outcome, StagingResult};

const OLD_TO_NEW: &[(&str, &[u8])] = &[
    (
        "/old",
        b"HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 5\r\n\r\nmoved",
    ),
    ("/new", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew"),
];

fn with_redirects(port: u16, n: usize) -> MirrorOptions {
    let mut cfg = config(vec![target(port)]);
    cfg.redirects = n;
    cfg
}

async fn next_result(rx: &mut mpsc::Receiver<StagingResult>) -> StagingResult {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no result in time")
        .expect("results channel closed")
}

/// The status and body of a result's response.
fn answer(res: &StagingResult) -> (u16, Bytes) {
    match &res.outcome {
        Outcome::Response(r) => (r.status, r.body()),
        other => panic!("not a response: {other:?}"),
    }
}

/// The request line of what staging got.
fn line(g: &Got) -> String {
    let end = g
        .raw
        .iter()
        .position(|&b| b == b'\r')
        .unwrap_or(g.raw.len());
    String::from_utf8_lossy(&g.raw[..end]).into_owned()
}

/// Sends `GET /done` on connection 1 and waits until staging has it: everything the
/// lane was to send before it has been sent.
async fn fence(r: &Mirror, staging: &mut Staging, before: &mut Vec<String>) {
    r.submit(&msg(1, b"GET /done HTTP/1.1\r\nHost: p\r\n\r\n"));
    loop {
        let got = line(&staging.next().await);
        if got == "GET /done HTTP/1.1" {
            return;
        }
        before.push(got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_on_the_target_is_followed_and_its_answer_is_the_result() {
    let mut staging = Staging::start(Mode::Routes(OLD_TO_NEW)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 2));
    let mut rx = r.subscribe(8);
    r.submit(&msg(
        1,
        b"GET /old HTTP/1.1\r\nHost: p\r\nX-Keep: 1\r\n\r\n",
    ));
    let got = staging.take(2).await;
    let host = format!("Host: 127.0.0.1:{}", staging.port);
    assert_eq!(
        String::from_utf8_lossy(&got[0].raw),
        format!("GET /old HTTP/1.1\r\n{host}\r\nX-Keep: 1\r\n\r\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&got[1].raw),
        format!("GET /new HTTP/1.1\r\n{host}\r\nX-Keep: 1\r\n\r\n")
    );
    // On the same keep-alive connection.
    assert_eq!(got[0].conn, got[1].conn);
    let res = next_result(&mut rx).await;
    assert_eq!(answer(&res), (200, Bytes::from_static(b"new")));
    let s = r.shutdown(WAIT).await;
    let t = t0(&s);
    assert_eq!(
        (t.sent, t.redirects_followed, t.redirects_elsewhere),
        (2, 1, 0)
    );
    assert_eq!(
        (t.status_2xx, t.status_3xx),
        (1, 0),
        "the final response only"
    );
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_longer_than_the_limit_stops_at_the_limit() {
    const CHAIN: &[(&str, &[u8])] = &[
        (
            "/r1",
            b"HTTP/1.1 301 Moved\r\nLocation: /r2\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "/r2",
            b"HTTP/1.1 307 Moved\r\nLocation: r3\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "/r3",
            b"HTTP/1.1 308 Moved\r\nLocation: /r4\r\nContent-Length: 0\r\n\r\n",
        ),
        ("/r4", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ];
    let mut staging = Staging::start(Mode::Routes(CHAIN)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 2));
    let mut rx = r.subscribe(8);
    r.submit(&msg(1, b"GET /r1 HTTP/1.1\r\nHost: p\r\n\r\n"));
    let res = next_result(&mut rx).await;
    // Go's client returns the last response once the limit is reached.
    assert_eq!(answer(&res).0, 308);
    let mut before = Vec::new();
    fence(&r, &mut staging, &mut before).await;
    assert_eq!(
        before,
        ["GET /r1 HTTP/1.1", "GET /r2 HTTP/1.1", "GET /r3 HTTP/1.1"]
    );
    let s = r.shutdown(WAIT).await;
    assert_eq!(t0(&s).redirects_followed, 2);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_elsewhere_is_never_requested() {
    const ELSEWHERE: &[(&str, &[u8])] = &[
        (
            "/a",
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:9/new\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "/b",
            b"HTTP/1.1 302 Found\r\nLocation: https://localhost/new\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let mut staging = Staging::start(Mode::Routes(ELSEWHERE)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 2));
    let mut rx = r.subscribe(8);
    r.submit(&msg(1, b"GET /a HTTP/1.1\r\nHost: p\r\n\r\n"));
    r.submit(&msg(1, b"GET /b HTTP/1.1\r\nHost: p\r\n\r\n"));
    for _ in 0..2 {
        assert_eq!(answer(&next_result(&mut rx).await).0, 302);
    }
    let mut before = Vec::new();
    fence(&r, &mut staging, &mut before).await;
    assert_eq!(before, ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]);
    let s = r.shutdown(WAIT).await;
    let t = t0(&s);
    assert_eq!((t.redirects_followed, t.redirects_elsewhere), (0, 2));
    assert_eq!(staging.accepted.load(Ordering::SeqCst), 1);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redirects_a_redirect_is_the_answer() {
    let mut staging = Staging::start(Mode::Routes(OLD_TO_NEW)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 0));
    let mut rx = r.subscribe(8);
    r.submit(&msg(1, b"GET /old HTTP/1.1\r\nHost: p\r\n\r\n"));
    assert_eq!(
        answer(&next_result(&mut rx).await),
        (302, Bytes::from_static(b"moved"))
    );
    let mut before = Vec::new();
    fence(&r, &mut staging, &mut before).await;
    assert_eq!(before, ["GET /old HTTP/1.1"]);
    let s = r.shutdown(WAIT).await;
    assert_eq!((t0(&s).redirects_followed, t0(&s).status_3xx), (0, 1));
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_303_of_a_post_is_a_get_and_a_307_sends_the_body_again() {
    const POSTS: &[(&str, &[u8])] = &[
        (
            "/see",
            b"HTTP/1.1 303 See Other\r\nLocation: /got\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "/tmp",
            b"HTTP/1.1 307 Temporary\r\nLocation: /put\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    let mut staging = Staging::start(Mode::Routes(POSTS)).await;
    let r = Mirror::start(with_redirects(staging.port, 1));
    let host = format!("Host: 127.0.0.1:{}", staging.port);
    r.submit(&msg(
        1,
        b"POST /see HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc",
    ));
    r.submit(&msg(
        1,
        b"POST /tmp HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nxyz",
    ));
    let got: Vec<String> = staging
        .take(4)
        .await
        .iter()
        .map(|g| String::from_utf8_lossy(&g.raw).into_owned())
        .collect();
    assert_eq!(
        got,
        [
            format!("POST /see HTTP/1.1\r\n{host}\r\nContent-Length: 3\r\n\r\nabc"),
            format!("GET /got HTTP/1.1\r\n{host}\r\n\r\n"),
            format!("POST /tmp HTTP/1.1\r\n{host}\r\nContent-Length: 3\r\n\r\nxyz"),
            format!("POST /put HTTP/1.1\r\n{host}\r\nContent-Length: 3\r\n\r\nxyz"),
        ]
    );
    let s = r.shutdown(WAIT).await;
    assert_eq!(t0(&s).redirects_followed, 2);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_that_closes_the_connection_is_followed_on_a_new_one() {
    const CLOSING: &[(&str, &[u8])] = &[
        (
            "/old",
            b"HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n",
        ),
        ("/new", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew"),
    ];
    let mut staging = Staging::start(Mode::Routes(CLOSING)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 2));
    let mut rx = r.subscribe(8);
    r.submit(&msg(1, b"GET /old HTTP/1.1\r\nHost: p\r\n\r\n"));
    let got = staging.take(2).await;
    assert_eq!(
        (line(&got[0]), line(&got[1])),
        ("GET /old HTTP/1.1".into(), "GET /new HTTP/1.1".into())
    );
    assert_ne!(got[0].conn, got[1].conn);
    assert_eq!(
        answer(&next_result(&mut rx).await),
        (200, Bytes::from_static(b"new"))
    );
    r.shutdown(WAIT).await;
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_a_redirect_keep_their_answers() {
    let mut staging = Staging::start(Mode::Routes(OLD_TO_NEW)).await;
    let mut r = Mirror::start(with_redirects(staging.port, 2));
    let mut rx = r.subscribe(16);
    // Queued at once on one client connection: whatever the lane batches (pipelined),
    // each request gets its own answer and /old's is /new's.
    let paths = ["/a", "/old", "/b", "/c"];
    for p in paths {
        r.submit(&msg(
            1,
            format!("GET {p} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes(),
        ));
    }
    let got = staging.take(5).await;
    let lines: Vec<String> = got.iter().map(line).collect();
    let at = |l: &str| lines.iter().position(|x| x == l).expect(l);
    assert!(
        at("GET /old HTTP/1.1") < at("GET /new HTTP/1.1"),
        "{lines:?}"
    );
    let others: Vec<&String> = lines.iter().filter(|l| !l.contains("/new")).collect();
    assert_eq!(
        others,
        [
            "GET /a HTTP/1.1",
            "GET /old HTTP/1.1",
            "GET /b HTTP/1.1",
            "GET /c HTTP/1.1"
        ],
        "in order"
    );
    assert!(
        got.iter().all(|g| g.conn == got[0].conn),
        "one keep-alive connection"
    );
    let mut answers = Vec::new();
    for _ in paths {
        answers.push(answer(&next_result(&mut rx).await));
    }
    answers.sort();
    let ok = || (200, Bytes::from_static(b"ok"));
    assert_eq!(
        answers,
        [(200, Bytes::from_static(b"new")), ok(), ok(), ok()]
    );
    let s = r.shutdown(WAIT).await;
    assert_eq!(
        (t0(&s).sent, t0(&s).redirects_followed, t0(&s).status_2xx),
        (5, 1, 4)
    );
    staging.stop().await;
}
