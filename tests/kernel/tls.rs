//! HTTPS capture from the OpenSSL probes (`GOR_TLS=openssl`): production terminates TLS
//! itself (nginx, a Python `ssl` server), clients are curl, Python requests, raw Python
//! `ssl` sockets and wrk; the agent mirrors the plaintext to a plain-HTTP recording
//! staging, with `GOR_ORIGINAL_HOST=1` so that staging must receive exactly the bytes the
//! clients wrote into their TLS connections.

use std::time::Duration;

use gor_tests::{
    agent::{run_check, temp_dir, Agent, Captured},
    clients::{curl, wrk, wrk_request},
    nginx::Nginx,
    staging::{Received, Staging},
    tls_apps::{held_request, py_raw, py_requests, self_signed, HeldConnection, PySslServer},
    traffic::{free_port, listen, pattern},
};

fn tls_env(target: &str) -> Vec<(&str, &str)> {
    vec![
        ("GOR_TLS", "openssl"),
        ("GOR_TARGET", target),
        ("GOR_ORIGINAL_HOST", "1"),
        ("GOR_STATS_INTERVAL", "1s"),
    ]
}

fn start_line(raw: &[u8]) -> String {
    let end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn show(got: &[Received]) -> Vec<String> {
    got.iter().map(|r| start_line(&r.raw)).collect()
}

/// wrk's connections in the nginx test.
const WRK_CONNS: u32 = 2;

/// Nothing lost between the probes and framing, and every request answered; each
/// direction of a connection joined midstream regained sync once.
fn assert_tls_clean(cap: &Captured) {
    let s = &cap.stats;
    for k in [
        "tls_ringbuf_drops",
        "tls_dropped_bytes",
        "tls_truncated_bytes",
    ] {
        assert_eq!(cap.kernel(k), 0, "kernel counter {k}: {s}");
    }
    for k in [
        "gaps",
        "gap_bytes",
        "decode_errors",
        "late_records",
        "connections_evicted",
    ] {
        assert_eq!(s["tls"][k], 0, "tls counter {k}: {s}");
    }
    for k in [
        "not_http_bytes",
        "unpaired_responses",
        "incomplete_requests",
    ] {
        assert_eq!(cap.http(k), 0, "http counter {k}: {s}");
    }
    assert_eq!(
        cap.http("resyncs"),
        2 * s["tls"]["connections_midstream"].as_u64().unwrap_or(0),
        "one resync per direction of a connection joined midstream: {s}"
    );
    // A request wrk wrote as its run ended may have no response: wrk closes its
    // connections then, and nginx's answer finds the connection gone. Every other
    // request has its response.
    let unanswered: Vec<&str> = cap
        .messages
        .iter()
        .filter(|m| m.is_request && cap.response_to(&m.id).is_none())
        .map(|m| m.start_line.as_str())
        .collect();
    assert!(
        unanswered.len() <= WRK_CONNS as usize
            && unanswered
                .iter()
                .all(|l| *l == "GET /index.html?wrk HTTP/1.1"),
        "requests without a response: {unanswered:?}: {s}"
    );
    assert_eq!(
        cap.http("requests"),
        cap.http("responses") + unanswered.len() as u64,
        "{s}"
    );
    // The TC programs were not attached: the port is a TLS port.
    assert_eq!(cap.kernel("packets_matched"), 0, "{s}");
}

#[test]
fn https_to_nginx_from_curl_python_and_wrk_reaches_staging_exactly() {
    let dir = temp_dir("tls-nginx");
    let (cert, key) = self_signed(&dir);
    let nginx = Nginx::with_tls(dir.join("nginx"), &cert, &key);
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "tls-nginx-agent",
        &[nginx.addr.port()],
        &["lo"],
        None,
        &tls_env(&target),
    );
    let base = format!("https://{}", nginx.addr);

    // curl: one request per connection, what it wrote from its trace.
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    let (_, get) = curl(
        &dir,
        "get",
        &["-k", "--http1.1", &format!("{base}/index.html?curl=get")],
    );
    sent.push(("curl=get".into(), get));
    for (name, len) in [("100", 100), ("40k", 40 << 10), ("300k", 300 << 10)] {
        let body = dir.join(format!("body-{name}"));
        std::fs::write(&body, pattern(len as u64, len)).unwrap();
        let (_, bytes) = curl(
            &dir,
            &format!("post-{name}"),
            &[
                "-k",
                "--http1.1",
                "-H",
                "Expect:",
                "--data-binary",
                &format!("@{}", body.display()),
                &format!("{base}/echo/curl/{name}"),
            ],
        );
        sent.push((format!("/echo/curl/{name}"), bytes));
    }
    // Python requests, one keep-alive session.
    let py = py_requests(&dir, &base);
    // wrk over TLS, briefly.
    let run = wrk(&format!("{base}/index.html?wrk"), WRK_CONNS, 1).expect("wrk");
    assert!(run.requests > 0, "{run:?}");
    let wrk_line = "GET /index.html?wrk HTTP/1.1";
    let served_wrk = nginx.served(wrk_line);

    let want = sent.len() + 4 + served_wrk;
    let got = staging.wait_for(want, Duration::from_secs(60));
    let cap = agent.stop();
    let m = &cap.stats["mirror"];
    let dropped = [
        "queue_full",
        "lane_queue_full",
        "lanes_full",
        "dropped_backoff",
    ]
    .iter()
    .map(|k| m[k].as_u64().unwrap_or(0))
    .sum::<u64>() as usize;

    for (marker, bytes) in &sent {
        let at: Vec<&Received> = got
            .iter()
            .filter(|r| start_line(&r.raw).contains(marker.as_str()))
            .collect();
        assert_eq!(at.len(), 1, "{marker}: staging got {:?}", show(&got));
        assert!(
            at[0].raw == *bytes,
            "{marker}: staging got {} bytes, curl sent {}:\n{}",
            at[0].raw.len(),
            bytes.len(),
            String::from_utf8_lossy(&at[0].raw[..at[0].raw.len().min(400)])
        );
    }
    let py_got: Vec<u8> = got
        .iter()
        .filter(|r| start_line(&r.raw).contains("py"))
        .flat_map(|r| r.raw.clone())
        .collect();
    assert!(
        py_got == py,
        "Python requests: staging got\n{}\nit sent\n{}",
        String::from_utf8_lossy(&py_got),
        String::from_utf8_lossy(&py)
    );
    let wrk_got: Vec<&Received> = got
        .iter()
        .filter(|r| start_line(&r.raw) == wrk_line)
        .collect();
    let wrk_bytes = wrk_request(nginx.addr, "/index.html?wrk");
    assert!(wrk_got.iter().all(|r| r.raw == wrk_bytes));
    // Every wrk request was framed; staging got each one the mirror did not count as dropped.
    let framed_wrk = cap
        .messages
        .iter()
        .filter(|m| m.is_request && m.start_line == wrk_line)
        .count();
    assert_eq!(
        framed_wrk, served_wrk,
        "framed vs nginx's log: {}",
        cap.stats
    );
    assert_eq!(wrk_got.len() + dropped, served_wrk, "{}", cap.stats);
    assert_eq!(
        got.len(),
        sent.len() + 4 + wrk_got.len(),
        "{:?}",
        show(&got)
    );
    assert_tls_clean(&cap);
    assert_eq!(
        cap.stats["tls"]["connections_midstream"], 0,
        "{}",
        cap.stats
    );
}

#[test]
fn a_python_ssl_server_with_small_reads_and_pipelined_requests_is_mirrored_exactly() {
    let dir = temp_dir("tls-python");
    let (cert, key) = self_signed(&dir);
    let server = PySslServer::start(&dir, &cert, &key);
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "tls-python-agent",
        &[server.addr.port()],
        &["lo"],
        None,
        &tls_env(&target),
    );
    let body = pattern(11, 20_000);
    let mut post = format!(
        "POST /small/2 HTTP/1.1\r\nHost: py.example\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let one_by_one = vec![
        b"GET /small/1 HTTP/1.1\r\nHost: py.example\r\n\r\n".to_vec(),
        post,
        b"GET /small/3?last=1 HTTP/1.1\r\nHost: py.example\r\nX-A: b\r\n\r\n".to_vec(),
    ];
    // The client reads each 5,000-byte response 100 bytes at a time: many SSL_read calls
    // of the client's, none of which is the server's.
    py_raw(&dir, server.addr, &one_by_one, false, 100);
    let pipelined = vec![
        b"GET /pipe/1 HTTP/1.1\r\nHost: py.example\r\n\r\n".to_vec(),
        b"POST /pipe/2 HTTP/1.1\r\nHost: py.example\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ];
    py_raw(&dir, server.addr, &pipelined, true, 4096);

    let all: Vec<Vec<u8>> = one_by_one.iter().chain(&pipelined).cloned().collect();
    let got = staging.wait_for(all.len(), Duration::from_secs(30));
    let cap = agent.stop();
    assert_eq!(got.len(), all.len(), "{:?}: {}", show(&got), cap.stats);
    for group in [&one_by_one, &pipelined] {
        let marker = start_line(&group[0]).split('/').nth(1).unwrap().to_string();
        let in_order: Vec<Vec<u8>> = got
            .iter()
            .filter(|r| start_line(&r.raw).contains(&format!("/{marker}")))
            .map(|r| r.raw.clone())
            .collect();
        assert!(
            in_order == *group,
            "staging got {:?}",
            in_order.iter().map(|r| start_line(r)).collect::<Vec<_>>()
        );
    }
    assert_tls_clean(&cap);
    // Responses of 5,000 bytes each, paired with their requests.
    for m in cap.messages.iter().filter(|m| !m.is_request) {
        assert_eq!(m.status, 200);
        assert!(
            m.raw.ends_with(&b"0123456789".repeat(500)),
            "{}",
            m.start_line
        );
    }
}

#[test]
fn a_connection_open_before_the_agent_started_is_mirrored_from_its_next_request() {
    let dir = temp_dir("tls-midstream");
    let (cert, key) = self_signed(&dir);
    let nginx = Nginx::with_tls(dir.join("nginx"), &cert, &key);
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let mut held = HeldConnection::open(&dir, nginx.addr);
    held.get("/index.html?held=1");
    let agent = Agent::start_with(
        "tls-midstream-agent",
        &[nginx.addr.port()],
        &["lo"],
        None,
        &tls_env(&target),
    );
    held.get("/index.html?held=2");
    held.get("/data.json?held=3");
    held.close();
    let got = staging.wait_for(2, Duration::from_secs(30));
    let cap = agent.stop();
    assert_eq!(got.len(), 2, "{:?}", show(&got));
    assert_eq!(got[0].raw, held_request("/index.html?held=2"));
    assert_eq!(got[1].raw, held_request("/data.json?held=3"));
    assert_eq!(
        cap.stats["tls"]["connections_midstream"], 1,
        "{}",
        cap.stats
    );
    assert_eq!(cap.http("requests"), 2, "{}", cap.stats);
    assert_tls_clean(&cap);
}

#[test]
fn a_server_started_after_the_agent_is_captured_and_check_names_its_library() {
    let dir = temp_dir("tls-later");
    let (cert, key) = self_signed(&dir);
    let port = free_port();
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    // The agent first: nginx's libssl is probed from the system's library directory.
    let agent = Agent::start_with("tls-later-agent", &[port], &["lo"], None, &tls_env(&target));
    let nginx = Nginx::with_tls_on(dir.join("nginx"), &cert, &key, port);
    let (_, sent) = curl(
        &dir,
        "later",
        &[
            "-k",
            "--http1.1",
            &format!("https://{}/index.html?later=1", nginx.addr),
        ],
    );
    let got = staging.wait_for(1, Duration::from_secs(30));
    let cap = agent.stop();
    assert_eq!(got.len(), 1, "{}", cap.stats);
    assert_eq!(got[0].raw, sent);
    assert_tls_clean(&cap);

    let port = port.to_string();
    let checked = run_check(&[], &[("GOR_PORTS", port.as_str()), ("GOR_TLS", "openssl")]);
    let line = checked.line("tls: OpenSSL");
    assert!(line.starts_with("ok"), "{line}");
    assert!(line.contains("libssl.so.3"), "{line}");
    assert!(line.contains(&format!("nginx ({})", nginx.pid())), "{line}");
    assert!(
        checked.line("tls: ports").contains(&port),
        "{}",
        checked.stdout
    );
}
