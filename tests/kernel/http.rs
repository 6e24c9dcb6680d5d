//! HTTP framing end to end: nginx (from Debian) as the server; curl, wrk and a hyper
//! client as clients. Each test asserts that the requests the agent framed are, byte for
//! byte, the requests the clients sent, and that every response is paired with its
//! request, checked against nginx's own access log (request line, request length, status,
//! bytes sent, per client port). A pcap test checks that tcpdump's capture of the same
//! traffic, fed to the agent, frames the same messages as the live capture.

use std::{collections::BTreeMap, path::Path};

use gor_tests::{
    agent::{run_pcap, temp_dir, Agent, Captured, Message},
    clients::{curl, hyper_client, wrk, wrk_request, HyperRequest},
    host::HostState,
    nginx::{Logged, Nginx},
    tcpdump::Tcpdump,
    traffic::pattern,
};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Requests the agent framed from `port`, concatenated in order.
fn framed_bytes(cap: &Captured, ports: &[u16]) -> Vec<u8> {
    let mut ports = ports.to_vec();
    ports.dedup();
    let mut out = Vec::new();
    for p in ports {
        for m in cap.requests_from(&format!("127.0.0.1:{p}")) {
            out.extend_from_slice(&m.raw);
        }
    }
    out
}

/// Checks every access-log line against the agent's messages, per client in order.
fn assert_matches_access_log(cap: &Captured, log: &[Logged]) {
    let mut by_client: BTreeMap<&str, Vec<&Logged>> = BTreeMap::new();
    for l in log {
        by_client.entry(&l.client).or_default().push(l);
    }
    let mut total = 0;
    for (client, lines) in &by_client {
        let reqs = cap.requests_from(client);
        assert_eq!(
            reqs.len(),
            lines.len(),
            "requests from {client}: framed {} vs logged {}",
            reqs.len(),
            lines.len()
        );
        for (req, l) in reqs.iter().zip(lines) {
            assert_eq!(req.start_line, l.request_line, "request line from {client}");
            assert_eq!(
                req.raw.len(),
                l.request_length,
                "request length of {} from {client}",
                l.request_line
            );
            let resp = cap.response_to(&req.id).unwrap_or_else(|| {
                panic!("no response paired with {} from {client}", l.request_line)
            });
            assert_eq!(resp.status, l.status, "status of {}", l.request_line);
            // nginx counts an interim `100 Continue` in $bytes_sent; the agent skips it.
            let expect_continue = String::from_utf8_lossy(&req.raw)
                .to_ascii_lowercase()
                .contains("expect: 100-continue");
            let want = if expect_continue {
                l.bytes_sent - CONTINUE.len()
            } else {
                l.bytes_sent
            };
            assert_eq!(
                resp.raw.len(),
                want,
                "response length of {} from {client}",
                l.request_line
            );
            assert!(resp.latency_ns.is_some(), "latency recorded");
            total += 1;
        }
    }
    let framed = cap.messages.iter().filter(|m| m.is_request).count();
    assert_eq!(framed, total, "every framed request is in the access log");
}

/// curl transfers of every kind the framer must handle; returns (ports, bytes sent) each.
fn curl_mix(dir: &Path, base: &str) -> Vec<(Vec<u16>, Vec<u8>)> {
    let json = dir.join("body.json");
    std::fs::write(
        &json,
        br#"{"order":{"id":42,"items":["a","b"]}}"#.repeat(50),
    )
    .expect("json body");
    let big = dir.join("big.body");
    std::fs::write(&big, pattern(11, 2 << 20)).expect("big body");
    let u = |p: &str| format!("{base}{p}");
    let runs: Vec<(&str, Vec<String>)> = vec![
        // Keep-alive: three transfers on one connection (static, JSON, 3 MiB binary).
        (
            "keepalive",
            vec![
                u("/index.html"),
                "-o".into(),
                "/dev/null".into(),
                u("/data.json"),
                "-o".into(),
                "/dev/null".into(),
                u("/big.bin"),
                "-o".into(),
                "/dev/null".into(),
            ],
        ),
        (
            "post-json",
            vec![
                "-o".into(),
                "/dev/null".into(),
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data-binary".into(),
                format!("@{}", json.display()),
                u("/echo"),
            ],
        ),
        (
            "chunked-upload",
            vec![
                "-o".into(),
                "/dev/null".into(),
                "-H".into(),
                "Transfer-Encoding: chunked".into(),
                "--data-binary".into(),
                format!("@{}", json.display()),
                u("/echo"),
            ],
        ),
        (
            "expect-100",
            vec![
                "-o".into(),
                "/dev/null".into(),
                "-H".into(),
                "Expect: 100-continue".into(),
                "--data-binary".into(),
                format!("@{}", big.display()),
                u("/echo"),
            ],
        ),
        (
            "head",
            vec![
                "-o".into(),
                "/dev/null".into(),
                "-I".into(),
                u("/index.html"),
            ],
        ),
        (
            "gzip-chunked",
            vec![
                "-o".into(),
                "/dev/null".into(),
                "--compressed".into(),
                u("/data.json"),
            ],
        ),
        (
            "not-found",
            vec!["-o".into(), "/dev/null".into(), u("/missing")],
        ),
    ];
    runs.into_iter()
        .map(|(name, args)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(dir, name, &args)
        })
        .collect()
}

fn hyper_mix(addr: std::net::SocketAddr) -> (u16, Vec<u8>, Vec<u16>) {
    let reqs = vec![
        HyperRequest {
            method: "GET",
            path: "/index.html".into(),
            headers: vec![("X-Trace", "1".into()), ("x-trace", "2".into())],
            body: vec![],
        },
        HyperRequest {
            method: "POST",
            path: "/echo".into(),
            headers: vec![("content-type", "application/json".into())],
            body: br#"{"a":1}"#.to_vec(),
        },
        HyperRequest {
            method: "GET",
            path: "/data.json?x=%20y".into(),
            headers: vec![("accept-encoding", "gzip".into())],
            body: vec![],
        },
        HyperRequest {
            method: "PUT",
            path: "/echo".into(),
            headers: vec![],
            body: pattern(5, 100_000),
        },
        HyperRequest {
            method: "DELETE",
            path: "/missing".into(),
            headers: vec![],
            body: vec![],
        },
    ];
    hyper_client(addr, reqs)
}

#[test]
fn nginx_with_curl_wrk_and_hyper() {
    let host = HostState::snapshot();
    let dir = temp_dir("http-nginx");
    let nginx = Nginx::start(dir.join("nginx"));
    // wrk is an unthrottled burst on a 2-core machine shared with nginx and the clients:
    // a ring buffer that holds the whole burst keeps the test about framing, not speed.
    let agent = Agent::start_with(
        "http-nginx-agent",
        &[nginx.addr.port()],
        &["lo"],
        None,
        &[("GOR_RING_BUFFER", "256MiB")],
    );
    let base = format!("http://{}", nginx.addr);

    let curls = curl_mix(&dir, &base);
    let (hyper_port, hyper_sent, statuses) = hyper_mix(nginx.addr);
    assert_eq!(
        statuses,
        vec![200, 201, 200, 201, 405],
        "nginx refuses DELETE on static files"
    );
    let wrk_run = wrk(&format!("{base}/index.html"), 4, 2).expect("wrk");

    let cap = agent.stop();
    let log = nginx.access_log();
    for (ports, sent) in &curls {
        let framed = framed_bytes(&cap, ports);
        assert!(
            framed == *sent,
            "curl from {ports:?}: framed {} bytes, curl sent {}",
            framed.len(),
            sent.len()
        );
    }
    assert!(
        framed_bytes(&cap, &[hyper_port]) == hyper_sent,
        "hyper's requests framed exactly"
    );
    let wrk_req = wrk_request(nginx.addr, "/index.html");
    let known: Vec<u16> = curls
        .iter()
        .flat_map(|(p, _)| p.clone())
        .chain([hyper_port])
        .collect();
    let wrk_msgs: Vec<&Message> = cap
        .messages
        .iter()
        .filter(|m| m.is_request && !known.iter().any(|p| m.client.ends_with(&format!(":{p}"))))
        .collect();
    assert!(
        wrk_msgs.len() > 100,
        "wrk sent many requests: {} framed; wrk: {wrk_run:?}",
        wrk_msgs.len()
    );
    assert!(
        wrk_msgs.iter().all(|m| m.raw == wrk_req),
        "every wrk request framed exactly"
    );
    assert_matches_access_log(&cap, &log);
    assert_eq!(cap.http("incomplete_requests"), 0, "{}", cap.stats);
    assert_eq!(cap.http("incomplete_responses"), 0, "{}", cap.stats);
    assert_eq!(
        cap.http("interim_responses"),
        1,
        "the 100 Continue was recognised: {}",
        cap.stats
    );
    cap.assert_nothing_lost();
    host.assert_clean();
}

#[test]
fn pcap_of_curl_and_wrk_traffic_frames_like_the_live_capture() {
    let host = HostState::snapshot();
    let dir = temp_dir("http-pcap");
    let nginx = Nginx::start(dir.join("nginx"));
    let file = dir.join("traffic.pcap");
    let dump = Tcpdump::start(&file, nginx.addr.port());
    // As above: the burst (and tcpdump beside the agent) must not outrun the ring buffer.
    let agent = Agent::start_with(
        "http-pcap-live",
        &[nginx.addr.port()],
        &["lo"],
        None,
        &[("GOR_RING_BUFFER", "256MiB")],
    );
    let base = format!("http://{}", nginx.addr);
    curl_mix(&dir, &base);
    wrk(&format!("{base}/data.json"), 2, 1).expect("wrk");
    let live = agent.stop();
    let dumped = dump.stop();
    assert_eq!(
        dumped.dropped_by_kernel, 0,
        "tcpdump (the file's writer) fell behind, so the pcap cannot match: {dumped:?}"
    );
    live.assert_nothing_lost();
    let replayed = run_pcap("http-pcap-file", &file, &[nginx.addr.port()]);

    let key = |m: &Message| (m.client.clone(), m.is_request, m.raw.clone());
    let mut a: Vec<_> = live.messages.iter().map(key).collect();
    let mut b: Vec<_> = replayed.messages.iter().map(key).collect();
    a.sort();
    b.sort();
    assert!(a.len() > 20, "live capture framed {} messages", a.len());
    assert_eq!(
        a.len(),
        b.len(),
        "same number of messages live and from the pcap"
    );
    assert!(
        a == b,
        "the pcap gives the same messages as the live capture"
    );
    assert_matches_access_log(&replayed, &nginx.access_log());
    host.assert_clean();
}
