//! GoReplay's `--output-http` family, run as GoReplay's documentation writes it (changed
//! only in addresses and ports) against recording staging servers on loopback: each output
//! with its own rate limit, `--split-output` across outputs by client connection, basic
//! auth from `user:pass@` in the URL, and a URL path as every request's target.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use gor_tests::{
    agent::{counter, run_args, temp_dir, Agent},
    gorformat::write_gets,
    staging::{Received, Staging},
    traffic::{listen, Raw},
};

/// A recording "production" server on loopback and its `--input-raw` address.
fn production() -> (Staging, String) {
    let prod = Staging::start(listen("127.0.0.1"));
    let input = format!("127.0.0.1:{}", prod.addr.port());
    (prod, input)
}

fn staging() -> Staging {
    Staging::start(listen("127.0.0.1"))
}

fn url(staging: &Staging) -> String {
    format!("http://{}", staging.addr)
}

/// The request target of a recorded request (`/c3/r1`).
fn target_of(r: &Received) -> String {
    let line = r.raw.split(|&b| b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The value of header `name` of a recorded request, if it has one.
fn header(r: &Received, name: &str) -> Option<String> {
    String::from_utf8_lossy(&r.raw)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// GET /metrics on the agent's endpoint.
fn metrics(agent: &Agent) -> String {
    let mut s = std::net::TcpStream::connect(agent.metrics_addr()).expect("connect to /metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .expect("ask for /metrics");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read /metrics");
    out
}

/// The stats of the target named `name` (`http://127.0.0.1:PORT`).
fn target_stats<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["mirror"]["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["target"] == name))
        .unwrap_or_else(|| panic!("no stats for target {name}: {stats}"))
}

// GoReplay's docs/Rate-limiting.md: "You can specify your desired limit using the "|"
// operator after the server address":
//   ./goreplay --input-tcp :28020 --output-http "http://staging.com|10"
//   ./goreplay --input-raw :80 --output-tcp "replay.local:28020|10%"
// Here the limits are on three HTTP outputs of one command line, fed by a file (the TCP
// input and output are another part of the work): `|10` at most ten requests per second,
// `|50%` a random half, and the third without a limit gets everything.
#[test]
fn each_output_http_has_its_own_rate_limit() {
    let (a, b, c) = (staging(), staging(), staging());
    let dir = temp_dir("goreplay-rates");
    let file = dir.join("requests.gor");
    const N: usize = 400;
    // 400 requests 10 ms apart: a window of 4 s.
    write_gets(&file, (0..N).map(|i| format!("/r{i}")), 10);
    let (ua, ub, uc) = (
        format!("{}|10", url(&a)),
        format!("{}|50%", url(&b)),
        url(&c),
    );
    let started = Instant::now();
    let run = run_args(
        "goreplay-rates-run",
        &[
            "--input-file",
            file.to_str().expect("utf-8"),
            "--output-http",
            &ua,
            "--output-http",
            &ub,
            "--output-http",
            &uc,
        ],
        &[],
    );
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let all = c.wait_for(N, Duration::from_secs(10));
    assert_eq!(
        all.len(),
        N,
        "the output without a limit gets everything: {}",
        run.stats
    );
    let (got_a, got_b) = (a.received().len(), b.received().len());
    // `|10` over a window of at least 4 s (longer on a loaded machine): about 40.
    let most_a = (10.0 * elapsed).ceil() as usize + 5;
    assert!(
        (20..=most_a).contains(&got_a),
        "`|10` over {elapsed:.1} s: {got_a} requests (20..={most_a}): {}",
        run.stats
    );
    // `|50%` of 400: 200, within a generous band (the binomial's deviation is 10).
    assert!(
        (140..=260).contains(&got_b),
        "`|50%` of {N}: {got_b}: {}",
        run.stats
    );
    // What an output's limit dropped is counted as its own rate_limited, and only there.
    for (staging, got) in [(&a, got_a), (&b, got_b), (&c, N)] {
        let t = target_stats(&run.stats, &url(staging));
        assert_eq!(
            counter(t, &["rate_limited"]) as usize,
            N - got,
            "{}: {t}",
            url(staging)
        );
    }
    assert_eq!(counter(&run.stats, &["mirror", "sampled_out"]), 0);
}

// GoReplay's docs/Distributed-configuration.md: "If you have multiple replay machines you
// can split traffic among them using `--split-output` option: it will equally split all
// incoming traffic to all outputs using round robin algorithm."
//   gor --input-raw :80 --split-output --output-tcp replay1.local:28020 --output-tcp replay2.local:28020
// With HTTP outputs (the TCP output is another part of the work). gor takes turns by
// client connection, so that a connection's requests stay together on one output (what
// GoReplay PRO's --recognize-tcp-sessions does).
#[test]
fn split_output_sends_each_connection_to_one_output_in_turn() {
    let (prod, input) = production();
    let (one, two) = (staging(), staging());
    let (u1, u2) = (url(&one), url(&two));
    let agent = Agent::start_args(
        "goreplay-split",
        &[
            "--input-raw",
            &input,
            "--split-output",
            "--output-http",
            &u1,
            "--output-http",
            &u2,
        ],
        &[],
    );
    const CONNS: usize = 6;
    const PER: usize = 5;
    for c in 0..CONNS {
        let mut raw = Raw::connect(prod.addr);
        for r in 0..PER {
            raw.send(format!("GET /c{c}/r{r} HTTP/1.1\r\nHost: shop.example\r\n\r\n").as_bytes());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while one.received().len() + two.received().len() < CONNS * PER && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cap = agent.stop();
    let mut output_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for (i, staging) in [&one, &two].into_iter().enumerate() {
        for r in staging.received() {
            let conn = target_of(&r)
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            output_of.entry(conn).or_default().insert(i);
        }
    }
    let (n1, n2) = (one.received().len(), two.received().len());
    assert_eq!(
        n1 + n2,
        CONNS * PER,
        "every request mirrored once: {}",
        cap.stats
    );
    assert_eq!(output_of.len(), CONNS, "{output_of:?}");
    for (conn, outputs) in &output_of {
        assert_eq!(outputs.len(), 1, "connection {conn} went to {outputs:?}");
    }
    // Connections take the outputs in turn: three each.
    assert_eq!((n1, n2), (3 * PER, 3 * PER), "{output_of:?}");
}

// GoReplay's docs/Replaying-HTTP-traffic.md, "Basic Auth": "If your development or staging
// environment is protected by Basic Authentication then those credentials can be injected
// in during the replay: ./goreplay --input-raw :80 --output-http "http://user:pass@staging.com"
// Note: This will overwrite any Authorization headers in the original request."
#[test]
fn user_and_password_in_the_output_url_become_basic_auth() {
    let (prod, input) = production();
    let staging = staging();
    let output = format!("http://user:pass@{}", staging.addr);
    let agent = Agent::start_args(
        "goreplay-basic-auth",
        &["--input-raw", &input, "--output-http", &output],
        &[],
    );
    let mut raw = Raw::connect(prod.addr);
    raw.send(
        b"GET /a HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer client-token\r\n\r\n",
    );
    raw.send(b"GET /b HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    let got = staging.wait_for(2, Duration::from_secs(10));
    let metrics = metrics(&agent);
    let cap = agent.stop();
    assert_eq!(got.len(), 2, "{}", cap.stats);
    // base64("user:pass")
    for r in &got {
        assert_eq!(
            header(r, "authorization").as_deref(),
            Some("Basic dXNlcjpwYXNz"),
            "{}",
            String::from_utf8_lossy(&r.raw)
        );
        let auths = String::from_utf8_lossy(&r.raw)
            .to_ascii_lowercase()
            .matches("\r\nauthorization:")
            .count();
        assert_eq!(auths, 1, "one Authorization header");
    }
    // The credentials are in no name: not in the log, the stats or the metrics' labels.
    let name = url(&staging);
    assert!(metrics.contains(&format!("target=\"{name}\"")), "{metrics}");
    for (what, text) in [
        ("stderr", cap.stderr.as_str()),
        ("stats", &cap.stats.to_string()),
        ("metrics", &metrics),
    ] {
        assert!(
            !text.contains("pass@"),
            "{what} shows the credentials:\n{text}"
        );
        assert!(
            !text.contains("dXNlcjpwYXNz"),
            "{what} shows the header:\n{text}"
        );
    }
}

// GoReplay's docs/Replaying-HTTP-traffic.md, "GoReplay can replay HTTP traffic using
// `--output-http` option: sudo ./goreplay --input-raw :8000 --output-http="http://staging.env"",
// here with a path and a query in the URL, which the documentation does not describe:
// GoReplay 1.3's HTTP client (output_http.go, "fix #862") then sends every request to
// that URL, replacing the request's own path and query.
#[test]
fn a_path_in_the_output_url_is_every_requests_target() {
    let (prod, input) = production();
    let staging = staging();
    let output = format!("--output-http=http://{}/api/v2?from=gor", staging.addr);
    let agent = Agent::start_args("goreplay-path", &["--input-raw", &input, &output], &[]);
    let mut raw = Raw::connect(prod.addr);
    raw.send(b"GET /items?id=7 HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    raw.send(b"POST /orders HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\n\r\nok");
    let got = staging.wait_for(2, Duration::from_secs(10));
    let cap = agent.stop();
    assert_eq!(got.len(), 2, "{}", cap.stats);
    let host = staging.addr.to_string();
    assert_eq!(
        String::from_utf8_lossy(&got[0].raw),
        format!("GET /api/v2?from=gor HTTP/1.1\r\nHost: {host}\r\n\r\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&got[1].raw),
        format!("POST /api/v2?from=gor HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\nok")
    );
}
