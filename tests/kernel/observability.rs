//! What the agent shows about itself: Prometheus metrics, scraped with curl while it
//! mirrors, agree with what production and staging saw; the log carries a one-line
//! summary every interval and at exit; a metrics address that is taken stops the agent
//! before anything is attached; JSON logs are JSON, line by line.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{run_replay, run_to_exit, temp_dir, Agent},
    gorformat::record,
    host::HostState,
    staging::Staging,
    traffic::{listen, Raw},
};

/// One scrape with curl: the response head and the exposition.
fn scrape(addr: SocketAddr) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 exposition");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    (head.to_string(), body.to_string())
}

/// Every sample of an exposition, by series (`name{labels}`), checking the text format on
/// the way: each family has HELP and TYPE before its samples, each sample a number.
fn samples(body: &str) -> HashMap<String, f64> {
    let mut documented: HashMap<String, (bool, bool)> = HashMap::new();
    let mut out = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            documented.entry(name.to_string()).or_default().0 = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or("");
            documented.entry(name.to_string()).or_default().1 = true;
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let name = series.split('{').next().unwrap_or("");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| documented.contains_key(*f)))
                .unwrap_or(name);
            assert_eq!(
                documented.get(family),
                Some(&(true, true)),
                "{line:?}: no HELP and TYPE before it"
            );
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{line:?}: not a number"));
            out.insert(series.to_string(), v);
        }
    }
    out
}

/// Scrapes until `done` holds for the samples (the agent publishes about once a second),
/// for at most 10 s; returns the last scrape.
fn scrape_until(
    addr: SocketAddr,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = samples(&scrape(addr).1);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(s: &HashMap<String, f64>, series: &str) -> f64 {
    *s.get(series).unwrap_or_else(|| {
        let mut names: Vec<&String> = s.keys().collect();
        names.sort();
        panic!("no series {series}; have {names:#?}")
    })
}

#[test]
fn metrics_agree_with_what_production_and_staging_saw() {
    let host = HostState::snapshot();
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "metrics",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_TARGET", &target),
            ("GOR_HTTP_DISALLOW_URL", "^/private"),
            ("GOR_STATS_INTERVAL", "1s"),
        ],
    );
    let addr = agent.metrics_addr();
    let (head, body) = scrape(addr);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    samples(&body);

    // 40 requests on 4 connections; the 12 to /private are filtered out.
    for c in 0..4 {
        let mut raw = Raw::connect(prod.addr);
        for i in 0..10 {
            let path = if i % 4 == 0 { "private" } else { "public" };
            raw.send(format!("GET /{path}/{c}/{i} HTTP/1.1\r\nHost: shop\r\n\r\n").as_bytes());
        }
    }
    let mirrored = 40 - 12;
    let got = staging.wait_for(mirrored, Duration::from_secs(10));
    assert_eq!(got.len(), mirrored);
    let t = format!("target=\"{target}\"");
    let s = scrape_until(addr, |s| {
        s.get(&format!("gor_mirror_responses_total{{{t},class=\"2xx\"}}"))
            == Some(&(mirrored as f64))
            && s.get("gor_connections_open") == Some(&0.0)
    });
    assert_eq!(get(&s, "gor_http_messages_total{kind=\"request\"}"), 40.0);
    assert_eq!(get(&s, "gor_http_messages_total{kind=\"response\"}"), 40.0);
    assert_eq!(
        get(&s, "gor_filter_dropped_total{rule=\"disallow_url\"}"),
        12.0
    );
    assert_eq!(get(&s, "gor_filter_passed_total"), 28.0);
    assert_eq!(
        get(&s, &format!("gor_mirror_sent_total{{{t}}}")),
        mirrored as f64
    );
    assert_eq!(
        get(
            &s,
            &format!("gor_mirror_responses_total{{{t},class=\"2xx\"}}")
        ),
        mirrored as f64
    );
    assert_eq!(
        get(
            &s,
            &format!("gor_mirror_responses_total{{{t},class=\"5xx\"}}")
        ),
        0.0
    );
    assert_eq!(
        get(
            &s,
            &format!("gor_mirror_dropped_total{{{t},reason=\"queue_full\"}}")
        ),
        0.0
    );
    assert_eq!(
        get(
            &s,
            &format!("gor_mirror_errors_total{{{t},kind=\"connect\"}}")
        ),
        0.0
    );
    assert_eq!(
        get(&s, &format!("gor_mirror_rate_limited_total{{{t}}}")),
        0.0
    );
    assert_eq!(get(&s, "gor_kernel_ringbuf_drops_total"), 0.0);
    assert_eq!(get(&s, "gor_reassembly_gaps_total"), 0.0);
    assert_eq!(get(&s, "gor_connections_total{event=\"opened\"}"), 4.0);
    assert_eq!(get(&s, "gor_connections_total{event=\"closed\"}"), 4.0);
    assert!(get(&s, "gor_kernel_packets_total") >= 80.0);
    // Every request and response went through dispatch, each measured once.
    assert_eq!(get(&s, "gor_capture_to_dispatch_seconds_count"), 80.0);
    assert_eq!(
        get(&s, "gor_capture_to_dispatch_seconds_bucket{le=\"+Inf\"}"),
        80.0
    );
    let within_1s = get(&s, "gor_capture_to_dispatch_seconds_bucket{le=\"1\"}");
    assert_eq!(within_1s, 80.0, "capture to dispatch within a second");
    assert_eq!(
        get(&s, &format!("gor_mirror_response_seconds_count{{{t}}}")),
        mirrored as f64
    );
    assert!(get(&s, "process_resident_memory_bytes") > 0.0);

    // Other paths answer, and do not break the endpoint.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{addr}/nothing"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    let cap = agent.stop();
    // The stats file and the metrics tell the same story.
    assert_eq!(cap.stats["mirror"]["status_2xx"], mirrored);
    assert_eq!(cap.stats["http"]["requests"], 40);
    host.assert_clean();
}

#[test]
fn the_log_has_a_summary_line_every_interval_and_at_exit() {
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "summary",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[("GOR_TARGET", &target), ("GOR_STATS_INTERVAL", "1s")],
    );
    let mut raw = Raw::connect(prod.addr);
    for i in 0..20 {
        raw.send(format!("GET /s/{i} HTTP/1.1\r\nHost: shop\r\n\r\n").as_bytes());
    }
    drop(raw);
    staging.wait_for(20, Duration::from_secs(10));
    // Wait for a periodic summary that has seen all 20 (one per second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.stderr().contains("stats: requests 20 ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = agent.stderr();
    agent.stop();
    let periodic: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" stats: requests "))
        .collect();
    assert!(!periodic.is_empty(), "no summary line in:\n{log}");
    let last = periodic.last().expect("a line");
    assert!(last.contains("stats: requests 20 "), "{last}");
    assert!(
        last.contains("mirrored 20 ") && last.contains("2xx 20"),
        "{last}"
    );
    assert!(last.contains("lost 0"), "{last}");
    // Not the JSON counters: those are at debug level between intervals.
    assert!(!last.contains('{'), "{last}");
}

#[test]
fn the_summary_at_exit_counts_every_loss_by_where_it_happened() {
    // Replay (no kernel needed for the loss itself): a file with a damaged record and a
    // target nobody listens on.
    let dir = temp_dir("summary-loss");
    let path = dir.join("t.gor");
    let mut file = Vec::new();
    for i in 0..5u64 {
        let req = format!("GET /l/{i} HTTP/1.1\r\nHost: p\r\n\r\n");
        file.extend(record(
            1,
            &format!("{i:024x}"),
            1_764_000_000_000_000_000 + i,
            0,
            req.as_bytes(),
        ));
    }
    file.extend(
        b"1 nonsense\nGET / HTTP/1.1\r\n\r\n\n\xf0\x9f\x90\xb5\xf0\x9f\x99\x88\xf0\x9f\x99\x89\n",
    );
    std::fs::write(&path, file).expect("write");
    let closed = listen("127.0.0.1");
    let target = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let run = run_replay(
        "summary-loss-run",
        &["--input-file", path.to_str().expect("utf-8")],
        &[("GOR_TARGET", &target), ("GOR_TIMEOUT", "1s")],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let last = run
        .stderr
        .lines()
        .find(|l| l.contains("final stats: "))
        .unwrap_or_else(|| panic!("no final summary in:\n{}", run.stderr));
    assert!(last.contains("requests 5 "), "{last}");
    assert!(last.contains("damaged input 1"), "{last}");
    assert!(
        last.contains("errors 5") || last.contains("mirror queue"),
        "{last}"
    );
}

#[test]
fn a_taken_metrics_address_stops_the_agent_before_anything_is_attached() {
    let host = HostState::snapshot();
    let taken = listen("127.0.0.1");
    let addr = taken.local_addr().expect("addr").to_string();
    let started = Instant::now();
    let (code, stderr) = run_to_exit(&[
        ("GOR_PORTS", "18080"),
        ("GOR_INTERFACES", "lo"),
        ("GOR_METRICS_ADDR", &addr),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("GOR_METRICS_ADDR {addr}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("empty value to turn metrics off"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    host.assert_clean();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let prod = Staging::start(listen("127.0.0.1"));
    let agent = Agent::start_with(
        "json-logs",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[("GOR_LOG_FORMAT", "json"), ("GOR_STATS_INTERVAL", "1s")],
    );
    Raw::connect(prod.addr).send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    let log = agent.stderr();
    agent.stop();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("metrics on http://"))),
        "{log}"
    );
    assert!(lines
        .iter()
        .all(|v| v["level"].is_string() && v["timestamp"].is_string()));
}

/// The ring buffer's peak fill: while the agent is stopped (SIGSTOP) nothing drains the
/// ring, so the last record of a burst finds every earlier one still waiting; the gauge
/// shows at least their payload, production answered throughout, and nothing was lost.
#[test]
fn ring_buffer_peak_shows_how_full_it_came() {
    const REQUESTS: usize = 200;
    const BODY: usize = 4000;
    let host = HostState::snapshot();
    let prod = Staging::start(listen("127.0.0.1"));
    let agent = Agent::start_with(
        "ring-peak",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[("GOR_STATS_INTERVAL", "1s")],
    );
    let addr = agent.metrics_addr();
    let pid = agent.pid() as i32;
    // SAFETY: kill(2) on the agent, our child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut raw = Raw::connect(prod.addr);
    let body = "x".repeat(BODY);
    let mut worst = Duration::ZERO;
    for i in 0..REQUESTS {
        let req =
            format!("POST /r/{i} HTTP/1.1\r\nHost: p\r\nContent-Length: {BODY}\r\n\r\n{body}");
        worst = worst.max(raw.send(req.as_bytes()));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let s = scrape_until(addr, |s| {
        s.get("gor_http_messages_total{kind=\"request\"}") == Some(&(REQUESTS as f64))
    });
    let peak = get(&s, "gor_kernel_ringbuf_peak_bytes");
    let earlier_payload = ((REQUESTS - 1) * BODY) as f64;
    assert!(
        peak >= earlier_payload && peak < (32 << 20) as f64,
        "peak {peak} bytes, at least {earlier_payload} expected"
    );
    assert_eq!(get(&s, "gor_kernel_ringbuf_drops_total"), 0.0);
    assert!(
        worst < Duration::from_millis(500),
        "a production request took {worst:?} while the agent was stopped"
    );
    let cap = agent.stop();
    assert_eq!(cap.kernel("ring_peak_bytes") as f64, peak, "{}", cap.stats);
    cap.assert_nothing_lost();
    host.assert_clean();
}
