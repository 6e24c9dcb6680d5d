//! Byte fidelity: staging receives exactly what the client sent, except the rewrites.

use std::sync::Arc;
use std::time::Duration;

use super::*;

fn corpus() -> Vec<Vec<u8>> {
    let mut binary = b"PUT /bin HTTP/1.1\r\nHost: prod.example\r\nContent-Type: application/octet-stream\r\nContent-Length: 256\r\n\r\n".to_vec();
    binary.extend(0..=255u8);
    let long_url = format!(
        "GET /search?q={}&x=%00%ff HTTP/1.1\r\nHost: prod.example\r\n\r\n",
        "x".repeat(8000)
    );
    vec![
        b"GET /a HTTP/1.1\r\nHost: prod.example\r\nx-lower: a\r\nX-UPPER: B\r\nAccept: */*\r\naccept: text/html\r\nCookie: a=1\r\nCookie: b=2\r\nx-mirror: original\r\n\r\n".to_vec(),
        b"POST /upload?x=1 HTTP/1.1\r\nhost: prod.example\r\nTransfer-Encoding: chunked\r\nX-Trace: t1\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec(),
        binary,
        long_url.into_bytes(),
        b"HEAD /h HTTP/1.1\r\nHOST: prod.example\r\nUser-Agent:   spaced   \r\n\r\n".to_vec(),
    ]
}

/// What staging should receive: Host value replaced in place, `x-mirror` replaced in
/// place, `X-Added` appended after the last header.
fn expected(raw: &[u8], host: Option<&str>) -> Vec<u8> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    if let Some(host) = host {
        for name in ["Host", "host", "HOST"] {
            head = head.replace(
                &format!("\r\n{name}: prod.example\r\n"),
                &format!("\r\n{name}: {host}\r\n"),
            );
        }
    }
    if head.contains("\r\nx-mirror: original\r\n") {
        head = head.replace("\r\nx-mirror: original\r\n", "\r\nx-mirror: yes\r\n");
    } else {
        head.push_str("X-Mirror: yes\r\n");
    }
    head.push_str("X-Added: 1\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&raw[head_end..]);
    out
}

async fn replay_corpus(original_host: bool) {
    let mut staging = Staging::start(Mode::Ok).await;
    let exclusion = Arc::new(RecordingExclusion::default());
    let mut cfg = config(vec![target(staging.port)]);
    cfg.original_host = original_host;
    cfg.set_headers = vec![
        ("X-Mirror".into(), "yes".into()),
        ("X-Added".into(), "1".into()),
    ];
    cfg.exclusion = Some(exclusion.clone());
    let r = Mirror::start(cfg);
    let corpus = corpus();
    for raw in &corpus {
        r.submit(&msg(7, raw));
    }
    let got = staging.take(corpus.len()).await;
    let host = format!("127.0.0.1:{}", staging.port);
    let host = (!original_host).then_some(host.as_str());
    for (g, raw) in got.iter().zip(&corpus) {
        assert_eq!(
            String::from_utf8_lossy(&g.raw),
            String::from_utf8_lossy(&expected(raw, host))
        );
        assert_eq!(g.raw, expected(raw, host));
    }
    // One client connection: one keep-alive staging connection for all its requests.
    assert!(got.iter().all(|g| g.conn == 0), "{got:?}");
    let stats = r.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.total.sent, corpus.len() as u64);
    assert_eq!(stats.total.status_2xx, corpus.len() as u64, "{stats:#?}");
    assert_eq!(stats.total.latency.count, corpus.len() as u64);

    // The staging connection's local port was excluded before connecting, and withdrawn
    // once the connection was closed (at shutdown, from the pool).
    let events = exclusion.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![(true, got[0].peer_port), (false, got[0].peer_port)]
    );
    staging.stop().await;
}

#[tokio::test]
async fn rewrites_only_host_and_set_headers() {
    replay_corpus(false).await;
}

#[tokio::test]
async fn original_host_keeps_host() {
    replay_corpus(true).await;
}

#[tokio::test]
async fn base_path_is_prefixed() {
    let mut staging = Staging::start(Mode::Ok).await;
    let t = Target::parse(&format!("http://127.0.0.1:{}/mirror/", staging.port)).unwrap();
    let r = Mirror::start(config(vec![t]));
    r.submit(&msg(1, b"GET /p?q=1 HTTP/1.1\r\nHost: prod\r\n\r\n"));
    let g = staging.next().await;
    let want = format!(
        "GET /mirror/p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        staging.port
    );
    assert_eq!(String::from_utf8_lossy(&g.raw), want);
    r.shutdown(Duration::from_secs(5)).await;
    staging.stop().await;
}

#[tokio::test]
async fn connection_close_reopens_per_request() {
    let mut staging = Staging::start(Mode::Ok).await;
    let r = Mirror::start(config(vec![target(staging.port)]));
    let req = b"GET /c HTTP/1.1\r\nHost: prod\r\nConnection: close\r\n\r\n";
    for _ in 0..3 {
        r.submit(&msg(1, req));
    }
    let got = staging.take(3).await;
    let conns: Vec<usize> = got.iter().map(|g| g.conn).collect();
    assert_eq!(conns, vec![0, 1, 2]);
    let stats = r.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.total.status_2xx, 3, "{stats:#?}");
    assert_eq!(stats.total.resets, 0);
    staging.stop().await;
}

#[tokio::test]
async fn responses_and_other_messages_are_ignored() {
    let r = Mirror::start(config(vec![]));
    let mut m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    m.dir = crate::stream::Direction::ServerToClient;
    r.submit(&m);
    r.submit(&msg(1, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"));
    let s = r.shutdown(Duration::from_secs(1)).await;
    assert_eq!((s.submitted, s.ignored), (2, 2));
}
