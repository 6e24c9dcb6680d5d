//! `gor-agent report`, run as a user runs it: the real binary on a diffs file, its page
//! opened in a real browser ([`crate::browser`]). The kernel test that compares a real
//! staging with a real production reuses [`run_report`] and
//! [`crate::browser::report_dom`] on the diffs file its agent wrote.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::agent::agent_bin;

/// What `gor-agent report` printed, and its exit code.
#[derive(Debug)]
pub struct Reported {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `gor-agent report FILES [--html HTML]` to its exit.
pub fn run_report(files: &[&Path], html: Option<&Path>) -> std::io::Result<Reported> {
    let mut cmd = Command::new(agent_bin());
    cmd.env_clear().arg("report").args(files);
    if let Some(h) = html {
        cmd.arg("--html").arg(h);
    }
    let out = cmd.output()?;
    Ok(Reported {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Writes the page of `diffs` to `dir/report.html`, panicking with the agent's output if
/// it fails; returns the page's path.
pub fn report_page(diffs: &[&Path], dir: &Path) -> PathBuf {
    let html = dir.join("report.html");
    let r = run_report(diffs, Some(&html)).unwrap_or_else(|e| {
        panic!(
            "running {}: {e}; build it with `cargo build --release -p gor-agent` (cargo xtask \
             test does) or point GOR_AGENT_BIN at one",
            agent_bin().display()
        )
    });
    assert_eq!(r.code, 0, "gor-agent report failed: {r:?}");
    html
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::{json, Value};

    use super::*;
    use crate::{agent::temp_dir, browser};

    const TARGET: &str = "http://127.0.0.1:8081";
    /// In a production body: shown as text, never run (the page's title stays).
    const SCRIPT: &str = "<script>document.title='pwned'</script>";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn side(status: u16, head: &str, body: &str, json: bool, ms: u64) -> Value {
        json!({"status": status, "latency_ns": ms * 1_000_000, "head": head, "body": b64(body),
               "body_len": body.len(), "body_truncated": false, "content_encoding": null,
               "json": json})
    }

    fn difference(
        n: u64,
        endpoint: &str,
        kinds: &[&str],
        diffs: Value,
        production: Value,
        staging: Value,
    ) -> String {
        let (method, path) = endpoint.split_once(' ').expect("METHOD PATH");
        let target_path = path.replace("{n}", &n.to_string());
        json!({
            "type": "difference", "id": format!("{n:032x}"),
            "ts_ns": 1_764_626_400_000_000_000u64 + n * 1_000_000, "target": TARGET,
            "endpoint": endpoint, "outcome": kinds[0], "kinds": kinds, "differences": diffs,
            "differences_truncated": false,
            "request": {"method": method, "target": &target_path,
                        "head": format!("{method} {target_path} HTTP/1.1\r\nhost: shop.example\r\nuser-agent: curl/8\r\n\r\n"),
                        "body": "", "body_len": 0, "body_truncated": false},
            "production": production, "staging": staging,
        })
        .to_string()
    }

    /// Planted: GET /users/{n} with 3 status differences (one also a header staging
    /// added), GET /orders/{n} with 2 JSON ones (a production body holding a script),
    /// POST /login with a staging timeout; a summary; a garbage line.
    fn fixture(summary: bool) -> String {
        let text_ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n";
        let json_head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n";
        let mut lines = Vec::new();
        for n in 1..=3 {
            let mut diffs = vec![json!({"kind": "status", "production": 200, "staging": 503})];
            let mut head = String::from(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 11\r\n",
            );
            let kinds: &[&str] = if n == 1 {
                diffs.push(json!({"kind": "header", "name": "x-cache", "production": null, "staging": ["MISS"]}));
                head.push_str("x-cache: MISS\r\n");
                &["status", "headers"]
            } else {
                &["status"]
            };
            head.push_str("\r\n");
            lines.push(difference(
                n,
                "GET /users/{n}",
                kinds,
                json!(diffs),
                side(200, text_ok, "ok", false, 2),
                side(503, &head, "unavailable", false, 12),
            ));
        }
        for n in 4..=5 {
            let prod = format!(
                r#"{{"order":{{"id":{n},"status":"paid","note":"{SCRIPT}"}},"items":[{{"sku":"a","price":10}},{{"sku":"b","price":20}}]}}"#
            );
            let stag = format!(
                r#"{{"order":{{"id":{n},"status":"pending","note":"{SCRIPT}"}},"items":[{{"sku":"a","price":10}},{{"sku":"b","price":20}}]}}"#
            );
            lines.push(difference(
                n,
                "GET /orders/{n}",
                &["body"],
                json!([{"kind": "json", "path": "$.order.status", "change": "changed",
                        "production": "paid", "staging": "pending"}]),
                side(200, json_head, &prod, true, 3),
                side(200, json_head, &stag, true, 5),
            ));
        }
        lines.push(difference(
            6,
            "POST /login",
            &["staging_error"],
            json!([{"kind": "staging_error", "error": "timeout"}]),
            side(204, "HTTP/1.1 204 No Content\r\n\r\n", "", false, 1),
            json!({"error": "timeout", "latency_ns": 5_000_000_000u64}),
        ));
        lines.push("{\"type\":\"difference\", cut short by a kill".into());
        if summary {
            let lat = |p50: f64, p99: f64| json!({"count": 100, "p50_ms": p50, "p99_ms": p99});
            lines.push(
                json!({"type": "summary", "started_ns": 1_764_626_400_000_000_000u64,
                       "ended_ns": 1_764_626_460_000_000_000u64,
                       "outcomes": {"match": 294, "status": 3, "body": 2, "headers": 0,
                                    "staging_error": 1, "no_production_response": 0,
                                    "expired": 0, "evicted": 0, "skipped": 0},
                       "endpoints": [
                         {"endpoint": "GET /users/{n}", "target": TARGET,
                          "outcomes": {"match": 97, "status": 3},
                          "production_latency": lat(1.5, 4.0), "staging_latency": lat(2.5, 12.0)},
                         {"endpoint": "GET /orders/{n}", "target": TARGET,
                          "outcomes": {"match": 98, "body": 2},
                          "production_latency": lat(3.0, 6.0), "staging_latency": lat(4.0, 9.5)},
                         {"endpoint": "POST /login", "target": TARGET,
                          "outcomes": {"match": 99, "staging_error": 1},
                          "production_latency": lat(1.0, 2.0), "staging_latency": lat(1.1, 2.2)}],
                       "diffs_written": 6, "diffs_dropped": 0})
                .to_string(),
            );
        }
        lines.join("\n") + "\n"
    }

    #[track_caller]
    fn has(dom: &str, needle: &str) {
        assert!(
            dom.contains(needle),
            "the DOM lacks {needle}\n--- DOM (start)\n{}",
            &dom[..dom.len().min(6000)]
        );
    }

    #[test]
    fn the_report_page_shows_each_planted_difference_in_a_browser() {
        let dir = temp_dir("report-page");
        let diffs = dir.join("diffs.jsonl");
        std::fs::write(&diffs, fixture(true)).unwrap();
        let html = report_page(&[&diffs], &dir);
        let dom = browser::report_dom(&html).unwrap();

        // The body's script did not run, and shows as text.
        has(&dom, "<title>gor: production vs staging</title>");
        has(&dom, "&lt;script&gt;document.title='pwned'&lt;/script&gt;");
        assert_eq!(
            dom.matches("<script").count(),
            1,
            "only the page's own script"
        );

        // Totals from the summary; the garbage line counted.
        has(
            &dom,
            r#"<tr class="outcome" data-outcome="match" data-count="294">"#,
        );
        has(
            &dom,
            r#"<tr class="outcome" data-outcome="staging_error" data-count="1">"#,
        );
        has(
            &dom,
            r#"<p class="notice" id="skipped-lines" data-count="1">"#,
        );
        assert!(!dom.contains("id=\"no-summary\""));

        // Each endpoint, most differences first, with its kinds and counts.
        let users = dom
            .find(r#"<section class="endpoint" id="ep-1" data-endpoint="GET /users/{n}" data-target="http://127.0.0.1:8081" data-count="3">"#)
            .expect("GET /users/{n} first");
        let orders = dom
            .find(r#"<section class="endpoint" id="ep-2" data-endpoint="GET /orders/{n}" data-target="http://127.0.0.1:8081" data-count="2">"#)
            .expect("GET /orders/{n} second");
        let login = dom
            .find(r#"<section class="endpoint" id="ep-3" data-endpoint="POST /login" data-target="http://127.0.0.1:8081" data-count="1">"#)
            .expect("POST /login third");
        assert!(users < orders && orders < login);
        let users_part = &dom[users..orders];
        has(
            users_part,
            r#"<li class="kind kind-status" data-kind="status" data-count="3">"#,
        );
        has(
            users_part,
            r#"<li class="kind kind-headers" data-kind="headers" data-count="1">"#,
        );
        has(
            users_part,
            r#"<tr class="header-name" data-header="x-cache" data-count="1">"#,
        );
        // The header line staging added is highlighted, and so is its status line.
        has(
            users_part,
            r#"<span class="line hl s" data-header="x-cache">x-cache: MISS</span>"#,
        );
        has(
            users_part,
            r#"<span class="line status hl s">HTTP/1.1 503 Service Unavailable</span>"#,
        );
        assert_eq!(users_part.matches("<details class=\"example\"").count(), 3);

        let orders_part = &dom[orders..login];
        has(
            orders_part,
            r#"<li class="kind kind-body" data-kind="body" data-count="2">"#,
        );
        has(
            orders_part,
            r#"<tr class="json-path" data-path="$.order.status" data-count="2">"#,
        );
        // The differing JSON member highlighted on both sides, its neighbours not.
        has(
            orders_part,
            r#"<span class="line hl p" data-path="$.order.status" title="$.order.status">    "status": "paid",</span>"#,
        );
        has(
            orders_part,
            r#"<span class="line hl s" data-path="$.order.status" title="$.order.status">    "status": "pending",</span>"#,
        );
        has(
            orders_part,
            r#"<span class="line" title="$.order.id">    "id": 4,</span>"#,
        );

        let login_part = &dom[login..];
        has(
            login_part,
            r#"<li class="kind kind-staging_error" data-kind="staging_error" data-count="1">"#,
        );
        has(
            login_part,
            r#"<p class="staging-error" data-error="timeout">"#,
        );

        // Latency per endpoint, from the summary.
        for ep in ["GET /users/{n}", "GET /orders/{n}", "POST /login"] {
            has(
                &dom,
                &format!(
                    r#"<tr class="latency" data-endpoint="{ep}" data-target="{TARGET}" data-source="summary""#
                ),
            );
        }
        has(
            &dom,
            r#"data-production-p50="1.50" data-production-p99="4.00" data-staging-p50="2.50" data-staging-p99="12.0""#,
        );

        // A look for people: the same page as a PNG (left in the test's directory).
        let png = dir.join("report.png");
        browser::screenshot(&html, &png, 1280, 2400).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "not a PNG: {}",
            png.display()
        );
    }

    #[test]
    fn a_file_without_summary_is_reported_from_its_differences() {
        let dir = temp_dir("report-no-summary");
        let diffs = dir.join("diffs.jsonl");
        std::fs::write(&diffs, fixture(false)).unwrap();
        let dom = browser::report_dom(&report_page(&[&diffs], &dir)).unwrap();
        has(&dom, r#"<p class="notice" id="no-summary" data-runs="1">"#);
        has(&dom, r#"<section id="totals" data-source="differences">"#);
        has(
            &dom,
            r#"<tr class="outcome" data-outcome="status" data-count="3">"#,
        );
        assert!(
            !dom.contains(r#"data-outcome="match""#),
            "matches are unknown"
        );
        has(
            &dom,
            r#"<tr class="latency" data-endpoint="GET /users/{n}" data-target="http://127.0.0.1:8081" data-source="differences""#,
        );

        // The text summary, and the usage error for a missing file.
        let text = run_report(&[&diffs], None).unwrap();
        assert_eq!(text.code, 0, "{text:?}");
        assert!(
            text.stdout
                .contains("      3  GET /users/{n}  http://127.0.0.1:8081  (status 3, headers 1)"),
            "{text:?}"
        );
        let missing = run_report(&[&dir.join("nope.jsonl")], None).unwrap();
        assert_eq!(missing.code, 64, "{missing:?}");
        assert!(missing.stderr.contains("nope.jsonl"), "{missing:?}");
    }
}
