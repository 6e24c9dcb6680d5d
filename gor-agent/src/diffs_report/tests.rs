//! A diffs file with the spec's shapes, read, aggregated and rendered.
use base64::Engine;
use serde_json::{json, Value};

use super::*;

const TARGET: &str = "http://127.0.0.1:8081";
const SCRIPT: &str = "<script>document.title='pwned'</script>";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn side(status: u16, head: &str, body: &str, json: bool, latency_ms: u64) -> Value {
    json!({"status": status, "latency_ns": latency_ms * 1_000_000, "head": head,
           "body": b64(body), "body_len": body.len(), "body_truncated": false,
           "content_encoding": null, "json": json})
}

fn line(
    n: u32,
    endpoint: &str,
    outcome: &str,
    kinds: &[&str],
    diffs: Value,
    prod: Value,
    stag: Value,
) -> String {
    let (method, path) = endpoint.split_once(' ').unwrap();
    json!({
        "type": "difference", "id": format!("{n:032x}"), "ts_ns": 1_764_626_400_000_000_000u64 + u64::from(n),
        "target": TARGET, "endpoint": endpoint, "outcome": outcome, "kinds": kinds,
        "differences": diffs, "differences_truncated": false,
        "request": {"method": method, "target": path.replace("{n}", &n.to_string()),
                    "head": format!("{method} {path} HTTP/1.1\r\nHost: shop\r\n\r\n"),
                    "body": "", "body_len": 0, "body_truncated": false},
        "production": prod, "staging": stag,
    })
    .to_string()
}

/// Three endpoints with differences (status + a header, JSON paths, a staging error,
/// a text body) and a summary, plus a garbage line and a line of an unknown type.
fn fixture(with_summary: bool) -> String {
    let json_head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";
    let mut lines = Vec::new();
    for n in 1..=3 {
        let kinds: &[&str] = if n == 1 {
            &["status", "headers"]
        } else {
            &["status"]
        };
        let mut diffs = vec![json!({"kind": "status", "production": 200, "staging": 500})];
        let mut stag_head =
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n".to_string();
        if n == 1 {
            diffs.push(
                json!({"kind": "header", "name": "X-Extra", "production": null, "staging": ["1"]}),
            );
            stag_head.push_str("x-extra: 1\r\n");
        }
        lines.push(line(
            n,
            "GET /users/{n}",
            "status",
            kinds,
            json!(diffs),
            side(
                200,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n",
                "ok",
                false,
                2,
            ),
            side(500, &format!("{stag_head}\r\n"), "boom", false, 9),
        ));
    }
    for n in 4..=5 {
        let prod = format!(
            r#"{{"user":{{"name":"ann","note":"{SCRIPT}"}},"items":[{{"price":1}},{{"price":2}}]}}"#
        );
        let stag =
            r#"{"user":{"name":"bob","note":""},"items":[{"price":1},{"price":3}],"odd key":1}"#;
        let mut diffs = vec![
            json!({"kind": "json", "path": "$.user.name", "change": "changed", "production": "ann", "staging": "bob"}),
            json!({"kind": "json", "path": "$['odd key']", "change": "added", "production": null, "staging": 1}),
        ];
        if n == 5 {
            diffs.push(json!({"kind": "json", "path": "$.items[1].price", "change": "changed", "production": 2, "staging": 3}));
        }
        lines.push(line(
            n,
            "GET /orders/{n}",
            "body",
            &["body"],
            json!(diffs),
            side(200, json_head, &prod, true, 3),
            side(200, json_head, stag, true, 4),
        ));
    }
    lines.push(line(
        6,
        "POST /login",
        "staging_error",
        &["staging_error"],
        json!([{"kind": "staging_error", "error": "timeout"}]),
        side(200, "HTTP/1.1 200 OK\r\n\r\n", "", false, 1),
        json!({"error": "timeout", "latency_ns": 5_000_000_000u64}),
    ));
    let page = format!("<html><body>{SCRIPT}hello</body></html>");
    lines.push(line(
        7,
        "GET /page",
        "body",
        &["body"],
        json!([{"kind": "body", "production_len": page.len(), "staging_len": 5, "first_difference": 0}]),
        side(200, "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n", &page, false, 1),
        side(200, "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n", "hello", false, 1),
    ));
    lines.push("this is not { json".into());
    lines.push(r#"{"type":"from_the_future","x":1}"#.into());
    if with_summary {
        lines.push(
            json!({"type": "summary", "started_ns": 1_764_626_400_000_000_000u64, "ended_ns": 1_764_626_460_000_000_000u64,
                "outcomes": {"match": 100, "status": 3, "body": 3, "headers": 0, "staging_error": 1,
                             "no_production_response": 0, "expired": 0, "evicted": 0, "skipped": 0},
                "endpoints": [
                    {"endpoint": "GET /users/{n}", "target": TARGET, "outcomes": {"match": 50, "status": 3},
                     "production_latency": {"count": 53, "p50_ms": 1.5, "p99_ms": 4.0},
                     "staging_latency": {"count": 53, "p50_ms": 2.5, "p99_ms": 9.0}},
                    {"endpoint": "GET /health", "target": TARGET, "outcomes": {"match": 50},
                     "production_latency": {"count": 50, "p50_ms": 0.2, "p99_ms": 0.5},
                     "staging_latency": {"count": 50, "p50_ms": 0.3, "p99_ms": 0.6}}],
                "diffs_written": 7, "diffs_dropped": 0})
            .to_string(),
        );
    }
    lines.join("\n") + "\n"
}

fn report_of(files: &[&str]) -> Report {
    let mut agg = Aggregator::default();
    for (i, f) in files.iter().enumerate() {
        agg.file(&format!("file{i}.jsonl"));
        read_lines(f.as_bytes(), &mut agg).unwrap();
    }
    agg.finish()
}

fn count(counts: &aggregate::Counts, k: &str) -> u64 {
    counts.get(k).copied().unwrap_or(0)
}

#[test]
fn a_fixture_is_aggregated_by_endpoint_and_kind() {
    let r = report_of(&[&fixture(true)]);
    assert_eq!(r.differences(), 7);
    assert_eq!(r.files[0].invalid_lines, 1);
    assert_eq!(r.files[0].unknown_lines, 1);
    assert_eq!(r.files[0].summaries, 1);
    assert!(r.totals_complete());
    let outcome = |k: &str| r.outcomes.iter().find(|(o, _)| o == k).map(|(_, n)| *n);
    assert_eq!(outcome("match"), Some(100));
    assert_eq!(outcome("staging_error"), Some(1));
    assert_eq!(r.outcomes[0].0, "match", "in the spec's order");

    let names: Vec<&str> = r.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /users/{n}",
            "GET /orders/{n}",
            "GET /page",
            "POST /login"
        ]
    );
    let users = &r.endpoints[0];
    assert_eq!((users.count, users.target.as_str()), (3, TARGET));
    assert_eq!(count(&users.kinds, "status"), 3);
    assert_eq!(count(&users.kinds, "headers"), 1);
    assert_eq!(count(&users.headers, "x-extra"), 1, "names lowercased");
    assert_eq!(users.examples.len(), 3);
    let orders = &r.endpoints[1];
    assert_eq!(count(&orders.json_paths, "$.user.name"), 2);
    assert_eq!(count(&orders.json_paths, "$.items[1].price"), 1);
    assert_eq!(count(&orders.json_paths, "$['odd key']"), 2);
    assert_eq!(count(&r.endpoints[3].staging_errors, "timeout"), 1);

    // Latency from the summary, including an endpoint without differences.
    let health = r
        .latency
        .iter()
        .find(|l| l.endpoint == "GET /health")
        .unwrap();
    assert_eq!(health.source, aggregate::LatencySource::Summary);
    assert_eq!(health.staging.unwrap().p99_ms, 0.6);
    assert!(!health.approximate);
}

#[test]
fn examples_are_kept_up_to_three_per_kind() {
    let many: String = (0..10)
        .map(|n| {
            line(
                n,
                "GET /a",
                "status",
                &["status"],
                json!([]),
                json!({}),
                json!({}),
            ) + "\n"
        })
        .collect();
    let r = report_of(&[&many]);
    assert_eq!(r.endpoints[0].count, 10);
    assert_eq!(r.endpoints[0].examples.len(), aggregate::EXAMPLES_PER_KIND);
}

#[test]
fn without_a_summary_totals_and_latency_come_from_the_differences() {
    let r = report_of(&[&fixture(false)]);
    assert!(!r.totals_complete());
    assert_eq!(r.runs_without_summary, 1);
    let outcomes: Vec<(&str, u64)> = r.outcomes.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(outcomes, [("status", 3), ("body", 3), ("staging_error", 1)]);
    let users = r
        .latency
        .iter()
        .find(|l| l.endpoint == "GET /users/{n}")
        .unwrap();
    assert_eq!(users.source, aggregate::LatencySource::Differences);
    assert_eq!(users.production.unwrap().count, 3);
    assert_eq!(users.staging.unwrap().p50_ms, 9.0);
    // A staging error's time to fail is not a staging latency.
    let login = r
        .latency
        .iter()
        .find(|l| l.endpoint == "POST /login")
        .unwrap();
    assert!(login.staging.is_none());

    let page = html::render(&r, "n");
    assert!(page.contains("id=\"no-summary\" data-runs=\"1\""));
    assert!(page.contains("data-source=\"differences\""));
    assert!(text::render(&r).contains("no summary line"));
}

#[test]
fn summaries_of_several_files_add_up() {
    let r = report_of(&[&fixture(true), &fixture(true)]);
    assert_eq!(r.differences(), 14);
    let matched = r.outcomes.iter().find(|(k, _)| k == "match").unwrap().1;
    assert_eq!(matched, 200);
    assert_eq!(r.diffs_written, Some(14));
    let users = r
        .latency
        .iter()
        .find(|l| l.endpoint == "GET /users/{n}")
        .unwrap();
    assert!(users.approximate);
    assert_eq!(users.production.unwrap().count, 106);
    // Lines after a file's last summary are a run of their own, without a summary.
    let r = report_of(&[&(fixture(true) + &fixture(false))]);
    assert_eq!((r.runs_with_summary, r.runs_without_summary), (1, 1));
    let status = r.outcomes.iter().find(|(k, _)| k == "status").unwrap().1;
    assert_eq!(status, 6);
}

#[test]
fn bodies_are_escaped_never_markup() {
    let page = html::render(&report_of(&[&fixture(true)]), "n");
    assert!(
        !page.contains(SCRIPT),
        "a body's <script> reached the page as markup"
    );
    assert!(page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
    // The page's own script is the only one, and the policy allows only it.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains("<script nonce=\"n\">"));
    assert!(page.contains("script-src 'nonce-n'"));
    assert!(!page.contains("src=\"http"), "nothing is fetched");
    // Escaping of attribute values too.
    assert_eq!(
        html::esc(r#"<a href="x">'&"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
    );
}

#[test]
fn the_page_has_the_attributes_tests_find_it_by() {
    let page = html::render(&report_of(&[&fixture(true)]), "n");
    for want in [
        r#"<section class="endpoint" id="ep-1" data-endpoint="GET /users/{n}" data-target="http://127.0.0.1:8081" data-count="3">"#,
        r#"<li class="kind kind-status" data-kind="status" data-count="3">"#,
        r#"<li class="kind kind-headers" data-kind="headers" data-count="1">"#,
        r#"<li class="kind kind-staging_error" data-kind="staging_error" data-count="1">"#,
        r#"<tr class="json-path" data-path="$.user.name" data-count="2">"#,
        r#"<tr class="json-path" data-path="$[&#39;odd key&#39;]" data-count="2">"#,
        r#"<tr class="header-name" data-header="x-extra" data-count="1">"#,
        r#"<tr class="outcome" data-outcome="match" data-count="100">"#,
        r#"<tr class="latency" data-endpoint="GET /health" data-target="http://127.0.0.1:8081" data-source="summary""#,
        r#"<p class="notice" id="skipped-lines" data-count="2">"#,
    ] {
        assert!(page.contains(want), "missing {want}");
    }
    assert!(!page.contains("id=\"no-summary\""));
}

#[test]
fn differing_lines_are_highlighted_on_each_side() {
    let page = html::render(&report_of(&[&fixture(true)]), "n");
    // The JSON member that changed, on both sides; the one added, on staging only.
    assert!(page.contains(
        r#"<span class="line hl p" data-path="$.user.name" title="$.user.name">    &quot;name&quot;: &quot;ann&quot;,</span>"#
    ));
    assert!(page.contains(
        r#"<span class="line hl s" data-path="$.user.name" title="$.user.name">    &quot;name&quot;: &quot;bob&quot;,</span>"#
    ));
    assert!(page.contains(
        r#"<span class="line hl s" data-path="$.items[1].price" title="$.items[1].price">      &quot;price&quot;: 3</span>"#
    ));
    assert!(page.contains(
        r#"data-path="$[&#39;odd key&#39;]" title="$[&#39;odd key&#39;]">  &quot;odd key&quot;: 1</span>"#
    ));
    // A line of a path that did not differ is not highlighted.
    assert!(page.contains(r#"<span class="line" title="$.items[0].price">"#));
    // The header staging added, and its absence on production's side; the status line.
    assert!(page.contains(r#"<span class="line hl s" data-header="x-extra">x-extra: 1</span>"#));
    assert!(page.contains(r#"<span class="line hl absent p" data-header="x-extra">"#));
    assert!(page
        .contains(r#"<span class="line status hl s">HTTP/1.1 500 Internal Server Error</span>"#));
    // A text body's first differing byte.
    assert!(
        page.contains(r#"<mark class="first-diff p" title="first differing byte: 0">&lt;html&gt;"#)
    );
}

#[test]
fn the_text_summary_lists_endpoints_and_kinds() {
    let t = text::render(&report_of(&[&fixture(true)]));
    assert!(t.starts_with("7 differences in 4 endpoints"), "{t}");
    assert!(
        t.contains("outcomes (from the summary): match 100, status 3, body 3"),
        "{t}"
    );
    assert!(
        t.contains("      3  GET /users/{n}  http://127.0.0.1:8081  (status 3, headers 1)"),
        "{t}"
    );
    assert!(
        t.contains("json: $.user.name 2, $['odd key'] 2, $.items[1].price 1"),
        "{t}"
    );
    assert!(t.contains("skipped 2 lines"), "{t}");
}

#[test]
fn overlong_and_unterminated_lines() {
    let mut agg = Aggregator::default();
    agg.file("f");
    let huge = vec![b'x'; MAX_LINE_BYTES + 10];
    let mut input = huge.clone();
    input.push(b'\n');
    input.extend_from_slice(
        line(
            1,
            "GET /a",
            "status",
            &["status"],
            json!([]),
            json!({}),
            json!({}),
        )
        .as_bytes(),
    );
    // No newline at the end: the last line of a killed agent's file still counts.
    read_lines(&input[..], &mut agg).unwrap();
    let r = agg.finish();
    assert_eq!(r.files[0].invalid_lines, 1);
    assert_eq!(r.differences(), 1);
}

#[test]
fn run_reports_usage_errors_and_writes_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    assert_eq!(run(&[missing], None), EXIT_USAGE);
    assert_eq!(run(&[dir.path().to_path_buf()], None), EXIT_USAGE);
    let diffs = dir.path().join("diffs.jsonl");
    std::fs::write(&diffs, fixture(true)).unwrap();
    let no_dir = dir.path().join("no/such/dir/r.html");
    assert_eq!(run(std::slice::from_ref(&diffs), Some(&no_dir)), EXIT_USAGE);
    let out = dir.path().join("r.html");
    assert_eq!(run(std::slice::from_ref(&diffs), Some(&out)), 0);
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.starts_with("<!doctype html>"));
    assert!(page.contains("data-endpoint=\"POST /login\""));
}
