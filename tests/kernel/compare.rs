//! Production against staging: a hyper application as production and a staging build of it
//! with planted differences (`gor_tests::apps`). The comparison must report exactly the
//! planted differences, with the right endpoint, kind and count, and nothing else, for
//! live capture, for a pcap file of the same traffic, and for a `.gor` file of it with the
//! original responses; staging's responses are saved as GoReplay's type 3 records; and
//! GoReplay's token-mapping middleware sees both responses of a login in time.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    process::Command,
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{counter, run_pcap_with, run_replay, temp_dir, Agent},
    apps::{App, Side},
    browser::report_dom,
    gorformat::records,
    report::report_page,
    tcpdump::Tcpdump,
};
use serde_json::Value;

/// The requests, in order; 22 in all.
fn plan() -> Vec<String> {
    gor_tests::apps::planted_requests()
}

/// What the comparison must find: (endpoint, outcome) -> count.
fn expected() -> BTreeMap<(String, String), u64> {
    [
        ("GET /users/{n}", "match", 6),
        ("GET /orders/{n}", "body", 4),
        ("GET /fail", "status", 3),
        ("GET /extra", "headers", 2),
        ("GET /gzip", "match", 3),
        ("GET /slow", "match", 2),
        ("GET /static/page.html", "match", 2),
    ]
    .into_iter()
    .map(|(e, o, n)| ((e.to_string(), o.to_string()), n))
    .collect()
}

/// The settings of every comparing run.
fn compare_env<'a>(target: &'a str, diffs: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("GOR_TARGET", target),
        ("GOR_COMPARE", "1"),
        ("GOR_COMPARE_IGNORE_JSON", "$.timestamp"),
        ("GOR_OUTPUT_DIFFS", diffs),
    ]
}

/// The outcomes by endpoint in a stats report, zero counts left out.
fn by_endpoint(stats: &Value) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for e in stats["compare"]["endpoints"].as_array().expect("endpoints") {
        let name = e["endpoint"].as_str().expect("name").to_string();
        for (o, n) in e["outcomes"].as_object().expect("outcomes") {
            let n = n.as_u64().expect("count");
            if n > 0 {
                *out.entry((name.clone(), o.clone())).or_default() += n;
            }
        }
    }
    out
}

fn total_outcomes(stats: &Value) -> u64 {
    stats["compare"]["outcomes"]
        .as_object()
        .map_or(0, |o| o.values().filter_map(Value::as_u64).sum())
}

/// Checks a run's comparison: exactly the planted differences, nothing given up.
fn assert_planted(stats: &Value, run: &str) {
    assert_eq!(
        by_endpoint(stats),
        expected(),
        "{run}: {}",
        stats["compare"]
    );
    let o = &stats["compare"]["outcomes"];
    assert_eq!(o["match"], 13, "{run}: {o}");
    assert_eq!(
        (o["status"].clone(), o["body"].clone(), o["headers"].clone()),
        (3.into(), 4.into(), 2.into()),
        "{run}: {o}"
    );
    for k in [
        "staging_error",
        "no_production_response",
        "expired",
        "evicted",
        "skipped",
    ] {
        assert_eq!(o[k], 0, "{run}: {k} in {o}");
    }
}

/// The difference lines of a diffs file, and its summary line.
fn read_diffs(path: &std::path::Path) -> (Vec<Value>, Option<Value>) {
    let text = std::fs::read_to_string(path).expect("the diffs file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let summary = lines.iter().find(|l| l["type"] == "summary").cloned();
    let diffs = lines
        .into_iter()
        .filter(|l| l["type"] == "difference")
        .collect();
    (diffs, summary)
}

/// Checks the difference lines: one per planted difference, saying what differed.
fn assert_diff_lines(diffs: &[Value], run: &str) {
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    for d in diffs {
        let key = (
            d["endpoint"].as_str().unwrap_or("").to_string(),
            d["outcome"].as_str().unwrap_or("").to_string(),
        );
        *groups.entry(key).or_default() += 1;
        let what: Vec<Value> = d["differences"].as_array().expect("differences").clone();
        match d["endpoint"].as_str().unwrap_or("") {
            "GET /orders/{n}" => assert_eq!(
                what,
                vec![
                    serde_json::json!({"kind": "json", "path": "$.status", "change": "changed", "production": "pending", "staging": "shipped"})
                ],
                "{run}: {d}"
            ),
            "GET /fail" => {
                assert_eq!(
                    what[0],
                    serde_json::json!({"kind": "status", "production": 200, "staging": 500}),
                    "{run}: {d}"
                );
                assert_eq!(d["production"]["status"], 200);
                assert_eq!(d["staging"]["status"], 500);
            }
            "GET /extra" => assert_eq!(
                what,
                vec![
                    serde_json::json!({"kind": "header", "name": "x-debug", "production": null, "staging": ["1"]})
                ],
                "{run}: {d}"
            ),
            other => panic!("{run}: a difference on {other}: {d}"),
        }
        assert!(
            d["request"]["head"]
                .as_str()
                .unwrap_or("")
                .starts_with("GET /"),
            "{d}"
        );
    }
    let planted: BTreeMap<(String, String), u64> = expected()
        .into_iter()
        .filter(|((_, o), _)| o != "match")
        .collect();
    assert_eq!(groups, planted, "{run}: difference lines");
}

/// Polls the agent's stats file until `n` exchanges have an outcome (at most 60 s).
fn wait_compared(agent: &Agent, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = agent.stats_now();
        if total_outcomes(&s) >= n || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn comparison_finds_exactly_the_planted_differences_live_from_pcap_and_from_a_file() {
    let prod = App::start(Side::Production);
    let staging = App::start(Side::Staging);
    let dir = temp_dir("compare");
    let target = format!("http://{}", staging.addr);
    let diffs = dir.join("diffs.jsonl");
    let saved = dir.join("traffic.gor");
    let pcap = dir.join("traffic.pcap");
    let dump = Tcpdump::start(&pcap, prod.addr.port());
    let mut env = compare_env(&target, diffs.to_str().expect("utf-8"));
    env.extend([
        ("GOR_OUTPUT_FILE", saved.to_str().expect("utf-8")),
        ("GOR_TRACK_RESPONSES", "1"),
        ("GOR_TRACK_STAGING_RESPONSES", "1"),
        ("GOR_STATS_INTERVAL", "1s"),
    ]);
    let agent = Agent::start_with("compare-agent", &[prod.addr.port()], &["lo"], None, &env);
    let urls: Vec<String> = plan()
        .iter()
        .map(|p| format!("http://{}{p}", prod.addr))
        .collect();
    let out = Command::new("curl")
        .args(["-sS", "--compressed"])
        .args(&urls)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = plan().len() as u64;
    assert_eq!(prod.served(), n);
    let live = wait_compared(&agent, n);
    assert_eq!(
        total_outcomes(&live),
        n,
        "every exchange compared: {}",
        live["compare"]
    );
    let metrics = agent.metrics_addr();
    let scrape = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://{metrics}/metrics"))
        .output()
        .expect("curl");
    let exposition = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let cap = agent.stop();
    let dumped = dump.stop();
    assert_eq!(dumped.dropped_by_kernel, 0);

    // Live capture.
    assert_planted(&cap.stats, "live");
    let (lines, summary) = read_diffs(&diffs);
    assert_diff_lines(&lines, "live");
    let summary = summary.expect("a summary line at exit");
    assert_eq!(summary["outcomes"], cap.stats["compare"]["outcomes"]);
    let slow = summary["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["endpoint"] == "GET /slow")
        .expect("GET /slow in the summary");
    assert!(
        slow["staging_latency"]["p50_ms"].as_f64().unwrap_or(0.0) >= 150.0,
        "staging's planted delay shows: {slow}"
    );
    let status_series = format!(
        "gor_compare_endpoint_results_total{{endpoint=\"GET /fail\",target=\"{target}\",outcome=\"status\"}} 3"
    );
    assert!(
        exposition.contains(&status_series),
        "{status_series} in:\n{exposition}"
    );
    assert!(
        exposition.contains("gor_compare_results_total{outcome=\"match\"} 13"),
        "{exposition}"
    );
    assert!(
        exposition.contains("gor_compare_latency_seconds_bucket"),
        "{exposition}"
    );

    // The HTML report of this run, in a real browser: each planted difference, where it
    // was planted, and nothing else.
    let dom = report_dom(&report_page(&[&diffs], &dir)).expect("the report in Chromium");
    let section = |endpoint: &str, count: u64| {
        let attrs =
            format!(r#" data-endpoint="{endpoint}" data-target="{target}" data-count="{count}">"#);
        let start = dom
            .match_indices(r#"<section class="endpoint" id="ep-"#)
            .map(|(i, _)| i)
            .find(|&i| {
                dom[i..]
                    .split_once('>')
                    .is_some_and(|(tag, _)| format!("{tag}>").ends_with(&attrs))
            })
            .unwrap_or_else(|| panic!("a section for {endpoint} with {count} in the report"));
        let rest = &dom[start..];
        let end = rest[1..].find("<section").map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let orders = section("GET /orders/{n}", 4);
    assert!(
        orders.contains(r#"data-kind="body" data-count="4""#),
        "{orders}"
    );
    assert!(
        orders.contains(r#"<tr class="json-path" data-path="$.status" data-count="4">"#),
        "{orders}"
    );
    assert!(
        orders.contains(r#"data-path="$.status" title="$.status">  "status": "shipped","#),
        "{orders}"
    );
    let fail = section("GET /fail", 3);
    assert!(
        fail.contains(r#"data-kind="status" data-count="3""#),
        "{fail}"
    );
    assert!(
        fail.contains(
            r#"<span class="line status hl s">HTTP/1.1 500 Internal Server Error</span>"#
        ),
        "{fail}"
    );
    let extra = section("GET /extra", 2);
    assert!(
        extra.contains(r#"data-kind="headers" data-count="2""#),
        "{extra}"
    );
    assert!(
        extra.contains(r#"<tr class="header-name" data-header="x-debug" data-count="2">"#),
        "{extra}"
    );
    assert_eq!(
        dom.matches(r#"<section class="endpoint""#).count(),
        3,
        "only the planted endpoints differ"
    );
    assert!(dom.contains(r#"<tr class="outcome" data-outcome="match" data-count="13">"#));
    assert!(
        dom.contains(r#"<tr class="latency" data-endpoint="GET /slow""#),
        "latency of a matching endpoint too"
    );

    // Staging's responses as type 3 records, paired with their requests by id.
    let recs = records(&std::fs::read(&saved).expect("the saved file"));
    let of = |k: u8| recs.iter().filter(move |r| r.kind == k);
    assert_eq!((of(1).count(), of(2).count(), of(3).count()), (22, 22, 22));
    for req in of(1) {
        let replayed: Vec<_> = of(3).filter(|r| r.id == req.id).collect();
        assert_eq!(replayed.len(), 1, "one type 3 record for {}", req.id);
        let r = replayed[0];
        assert!(r.ts_ns >= req.ts_ns, "sent after it was captured");
        let path = String::from_utf8_lossy(&req.payload)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        let head = String::from_utf8_lossy(&r.payload);
        let expected_status = if path == "/fail" {
            "HTTP/1.1 500"
        } else {
            "HTTP/1.1 200"
        };
        assert!(head.starts_with(expected_status), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("x-request-id: stage-"),
            "staging's: {head}"
        );
    }
    let staged = cap
        .messages
        .iter()
        .filter(|m| m.kind == "staging_response")
        .count();
    assert_eq!(staged, 22, "staging responses in the messages file");

    // The same traffic from the pcap file.
    let pcap_diffs = dir.join("pcap-diffs.jsonl");
    let from_pcap = run_pcap_with(
        "compare-pcap",
        &pcap,
        &[prod.addr.port()],
        &compare_env(&target, pcap_diffs.to_str().expect("utf-8")),
    );
    assert_planted(&from_pcap.stats, "pcap");
    assert_diff_lines(&read_diffs(&pcap_diffs).0, "pcap");

    // And from the saved file, which holds the original responses.
    let file_diffs = dir.join("file-diffs.jsonl");
    let replayed = run_replay(
        "compare-replay",
        &[
            "--input-file",
            saved.to_str().expect("utf-8"),
            "--speed",
            "max",
        ],
        &compare_env(&target, file_diffs.to_str().expect("utf-8")),
    );
    assert_eq!(replayed.status, 0, "{}", replayed.stderr);
    assert_planted(&replayed.stats, "file");
    assert_diff_lines(&read_diffs(&file_diffs).0, "file");
    assert_eq!(counter(&replayed.stats, &["compare", "not_mirrored"]), 0);
}

/// GoReplay's token-mapping middleware, as its documentation describes it: it remembers
/// the token in production's response (type 2) and in staging's (type 3) to the same
/// login, and rewrites later requests that carry production's token.
const PY_TOKEN_MAP: &str = r#"import binascii, json, sys
prod, stage, mapping = {}, {}, {}
log = open(sys.argv[1], "a")
def token(payload):
    try:
        return json.loads(payload.split(b"\r\n\r\n", 1)[1]).get("token")
    except Exception:
        return None
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    meta, _, payload = data.partition(b"\n")
    kind, mid = meta.split(b" ")[:2]
    if kind in (b"2", b"3"):
        t = token(payload)
        if t:
            (prod if kind == b"2" else stage)[mid] = t
            if mid in prod and mid in stage:
                mapping[prod[mid]] = stage[mid]
                log.write("%s %s\n" % (prod[mid], stage[mid]))
                log.flush()
        continue
    for p, s in mapping.items():
        payload = payload.replace(b"Bearer " + p.encode(), b"Bearer " + s.encode())
    sys.stdout.write(binascii.hexlify(meta + b"\n" + payload).decode() + "\n")
    sys.stdout.flush()
"#;

#[test]
fn token_mapping_middleware_sees_production_and_staging_responses_in_time() {
    let prod = App::start(Side::Production);
    let staging = App::start(Side::Staging);
    let dir = temp_dir("token-map");
    let script = dir.join("token_map.py");
    std::fs::write(&script, PY_TOKEN_MAP).expect("write the middleware");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mapped = dir.join("mapped.txt");
    let middleware = format!("python3 {} {}", script.display(), mapped.display());
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "token-agent",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_TARGET", &target),
            ("GOR_MIDDLEWARE", &middleware),
            ("GOR_TRACK_RESPONSES", "1"),
            ("GOR_TRACK_STAGING_RESPONSES", "1"),
        ],
    );
    let login = Command::new("curl")
        .args(["-sS", "-X", "POST", "--data", "user=ann"])
        .arg(format!("http://{}/login", prod.addr))
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&login.stdout).expect("a JSON login answer");
    let prod_token = body["token"].as_str().expect("a token").to_string();
    assert!(prod_token.starts_with("prod-"));
    // The middleware's own account is the readiness signal: it has both tokens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let pair = loop {
        let text = std::fs::read_to_string(&mapped).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the middleware never saw both tokens; agent log:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (p, s) = pair.split_once(' ').expect("`prod stage`");
    assert_eq!(p, prod_token);
    assert!(s.starts_with("stage-"), "{pair}");
    let me = Command::new("curl")
        .args(["-sS", "-H"])
        .arg(format!("Authorization: Bearer {prod_token}"))
        .arg(format!("http://{}/me", prod.addr))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&me.stdout),
        "you\n",
        "production knows its token"
    );
    assert_eq!(staging.wait_served(2, Duration::from_secs(30)), 2);
    let cap = agent.stop();
    assert_eq!(
        staging.me_authorizations(),
        vec![format!("Bearer {s}")],
        "staging received its own token; agent log:\n{}",
        cap.stderr
    );
}
