//! HTTP filters and rewrites on real captured traffic: what reaches the outputs is exactly
//! the requests the rules keep, rewritten as asked, and the responses of dropped requests
//! are dropped too.

use std::collections::BTreeMap;

use gor_tests::{agent::Agent, staging::Staging, traffic::listen};

fn send(addr: std::net::SocketAddr, reqs: &[String]) {
    use std::io::Write;
    let s = std::net::TcpStream::connect(addr).expect("connect");
    let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    for req in reqs {
        w.write_all(req.as_bytes()).expect("send");
        gor_tests::traffic::read_message(&mut r).expect("answer");
    }
}

#[test]
fn filters_and_rewrites_apply_to_captured_requests() {
    let prod = Staging::start(listen("127.0.0.1"));
    let agent = Agent::start_with(
        "filters",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_HTTP_ALLOW_METHOD", "GET\nPOST"),
            ("GOR_HTTP_DISALLOW_URL", "^/admin"),
            ("GOR_HTTP_DISALLOW_HEADER", "X-Bot: ^yes$"),
            ("GOR_HTTP_REWRITE_URL", "^/v1/(.*):/v2/$1"),
            ("GOR_HTTP_SET_HEADER", "X-Env: staging"),
            (
                "GOR_HTTP_REWRITE_HEADER",
                "Authorization: Bearer (.*),Bearer redacted",
            ),
            ("GOR_HTTP_HEADER_LIMITER", "X-Session: 50%"),
        ],
    );
    let mut reqs = vec![
        "GET /v1/items?id=7 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer secret-token\r\n\r\n"
            .to_string(),
        "DELETE /v1/items/7 HTTP/1.1\r\nHost: p\r\n\r\n".to_string(),
        "GET /admin/users HTTP/1.1\r\nHost: p\r\n\r\n".to_string(),
        "GET /v1/crawl HTTP/1.1\r\nHost: p\r\nX-Bot: yes\r\n\r\n".to_string(),
        "POST /v1/orders HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n\r\nhello".to_string(),
    ];
    // 20 sessions x 3 requests: each session is kept or dropped as a whole.
    for s in 0..20 {
        for i in 0..3 {
            reqs.push(format!(
                "GET /s/{i} HTTP/1.1\r\nHost: p\r\nX-Session: user-{s}\r\n\r\n"
            ));
        }
    }
    send(prod.addr, &reqs);
    let cap = agent.stop();
    let requests: Vec<String> = cap
        .messages
        .iter()
        .filter(|m| m.is_request)
        .map(|m| String::from_utf8_lossy(&m.raw).into_owned())
        .collect();
    assert_eq!(
        requests[0],
        "GET /v2/items?id=7 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer redacted\r\nX-Env: staging\r\n\r\n",
        "URL and header rewritten, header set"
    );
    assert_eq!(
        requests[1],
        "POST /v2/orders HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nX-Env: staging\r\n\r\nhello"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("DELETE") || r.contains("/admin") || r.contains("X-Bot")),
        "{requests:?}"
    );
    let mut sessions: BTreeMap<String, usize> = BTreeMap::new();
    for r in &requests[2..] {
        let s = r
            .split("X-Session: ")
            .nth(1)
            .and_then(|v| v.split("\r\n").next())
            .expect("session header");
        *sessions.entry(s.to_string()).or_default() += 1;
    }
    assert!(
        sessions.values().all(|&n| n == 3),
        "sessions kept whole: {sessions:?}"
    );
    assert!(
        (4..=16).contains(&sessions.len()),
        "about half of 20 sessions kept: {}",
        sessions.len()
    );
    let ids: Vec<String> = cap
        .messages
        .iter()
        .filter(|m| m.is_request)
        .map(|m| m.id.clone())
        .collect();
    let responses = cap.messages.iter().filter(|m| !m.is_request).count();
    assert_eq!(
        responses,
        ids.len(),
        "only the kept requests' responses are output"
    );
    assert!(cap
        .messages
        .iter()
        .filter(|m| !m.is_request)
        .all(|m| ids.contains(&m.id)));
    // Production itself saw everything, untouched.
    assert_eq!(prod.received().len(), reqs.len());
}
