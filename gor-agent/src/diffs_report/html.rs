//! The report as one self-contained HTML page: inline CSS, a few lines of inline script
//! (an endpoint filter), nothing fetched from anywhere. A Content-Security-Policy that
//! allows no source at all but this page's own script (by nonce) backs up the escaping:
//! the bodies shown are whatever production and staging sent.
//!
//! Tests (and people with devtools) find things by stable attributes:
//! `section.endpoint[data-endpoint][data-target][data-count]`, `li.kind[data-kind]
//! [data-count]`, `tr.json-path[data-path][data-count]`, `tr.header-name[data-header]
//! [data-count]`, `tr.latency[data-endpoint][data-target][data-source]`,
//! `tr.outcome[data-outcome][data-count]`, `details.example[data-id][data-kinds]`, and in
//! an example's side-by-side view `span.line.hl[data-header]` (a differing header line),
//! `span.line.hl.status` (a differing status line), `span.line.hl[data-path]` (a line of a
//! differing JSON value; `data-path` is the differing path, `title` the line's own).

use std::fmt::Write;

use super::aggregate::{self, EndpointDiffs, Example, LatencyRow, Report};
use super::body::{self, View};
use super::model::{Difference, Item, Side};

/// Writing to a `String` cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {
        let _ = write!($out, $($arg)*);
    };
}

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const TITLE: &str = "gor: production vs staging";

/// The page. `nonce` allows the page's own script and nothing else (see the module doc).
pub fn render(r: &Report, nonce: &str) -> String {
    let mut o = String::with_capacity(64 * 1024);
    put!(
        o,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; base-uri 'none'; \
         form-action 'none'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{TITLE}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    header(&mut o, r);
    totals(&mut o, r);
    index(&mut o, r);
    latency(&mut o, r);
    put!(o, "<div id=\"endpoints\">\n");
    for (i, e) in r.endpoints.iter().enumerate() {
        endpoint(&mut o, i + 1, e);
    }
    put!(
        o,
        "</div>\n<script nonce=\"{nonce}\">{JS}</script>\n</body>\n</html>\n"
    );
    o
}

fn header(o: &mut String, r: &Report) {
    put!(o, "<header>\n<h1>{TITLE}</h1>\n<p class=\"meta\">");
    let names: Vec<String> = r
        .files
        .iter()
        .map(|f| format!("<code class=\"file\">{}</code>", esc(&f.name)))
        .collect();
    put!(
        o,
        "{} from {}",
        plural(r.differences(), "difference"),
        names.join(", ")
    );
    if let (Some(start), Some(end)) = (r.started_ns, r.ended_ns) {
        put!(
            o,
            "; traffic from {} to {} ({})",
            wall(start),
            wall(end),
            duration(end.saturating_sub(start))
        );
    }
    put!(o, "</p>\n");
    if r.runs_without_summary > 0 {
        let what = if r.runs_with_summary == 0 {
            "No summary line was found (the agent was probably killed before it stopped)"
        } else {
            "Some runs have no summary line (the agent was probably killed)"
        };
        put!(
            o,
            "<p class=\"notice\" id=\"no-summary\" data-runs=\"{}\">{what}: their totals and \
             latency are computed from the difference lines only, so exchanges that matched \
             are not counted and latency is that of the differing exchanges.</p>\n",
            r.runs_without_summary
        );
    }
    let skipped = r.skipped_lines();
    if skipped > 0 {
        let detail: Vec<String> = r
            .files
            .iter()
            .filter(|f| f.invalid_lines + f.unknown_lines > 0)
            .map(|f| {
                format!(
                    "{}: {} not valid, {} of an unknown type",
                    esc(&f.name),
                    f.invalid_lines,
                    f.unknown_lines
                )
            })
            .collect();
        put!(
            o,
            "<p class=\"notice\" id=\"skipped-lines\" data-count=\"{skipped}\">{} skipped ({})</p>\n",
            plural(skipped, "line"),
            detail.join("; ")
        );
    }
    if let Some(dropped) = r.diffs_dropped.filter(|&d| d > 0) {
        put!(
            o,
            "<p class=\"notice\" id=\"diffs-dropped\" data-count=\"{dropped}\">The agent dropped \
             {} (its diffs output could not keep up): counts below include them, examples \
             cannot.</p>\n",
            plural(dropped, "difference line")
        );
    }
    put!(
        o,
        "<p class=\"tools\"><label>Filter endpoints <input id=\"filter\" type=\"search\" \
         placeholder=\"GET /users\"></label> <button id=\"expand\" type=\"button\">Expand \
         all examples</button> <span class=\"legend\"><span class=\"hl-p\">production</span> \
         <span class=\"hl-s\">staging</span></span></p>\n</header>\n"
    );
}

fn totals(o: &mut String, r: &Report) {
    let source = if r.totals_complete() {
        "summary"
    } else if r.runs_with_summary == 0 {
        "differences"
    } else {
        "mixed"
    };
    put!(
        o,
        "<section id=\"totals\" data-source=\"{source}\">\n<h2>Outcomes</h2>\n\
         <table class=\"outcomes\">\n<tr><th>outcome</th><th class=\"num\">exchanges</th>\
         <th class=\"num\">share</th><th></th></tr>\n"
    );
    let all: u64 = r.outcomes.iter().map(|(_, n)| n).sum();
    for (name, n) in &r.outcomes {
        let share = if all == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / all as f64
        };
        let class = if name == "match" { "ok" } else { "bad" };
        let bar = if *n == 0 {
            String::new()
        } else {
            format!("<span class=\"{class}\" style=\"width:{share:.1}%\"></span>")
        };
        put!(
            o,
            "<tr class=\"outcome{}\" data-outcome=\"{1}\" data-count=\"{n}\"><th>{1}</th>\
             <td class=\"num\">{n}</td><td class=\"num\">{share:.1}%</td><td class=\"bar\">\
             {bar}</td></tr>\n",
            if *n == 0 { " zero" } else { "" },
            esc(name)
        );
    }
    if r.outcomes.is_empty() {
        put!(o, "<tr><td colspan=\"4\">no exchanges recorded</td></tr>\n");
    }
    put!(o, "</table>\n");
    if let Some(w) = r.diffs_written {
        put!(o, "<p class=\"meta\">difference lines written: {w}</p>\n");
    }
    put!(o, "</section>\n");
}

fn index(o: &mut String, r: &Report) {
    put!(
        o,
        "<section id=\"index\">\n<h2>Endpoints with differences</h2>\n"
    );
    if r.endpoints.is_empty() {
        put!(o, "<p class=\"ok-note\">No differences.</p>\n</section>\n");
        return;
    }
    put!(
        o,
        "<table class=\"endpoint-index\">\n<tr><th class=\"num\">differences</th>\
         <th>endpoint</th><th>target</th><th>kinds</th></tr>\n"
    );
    for (i, e) in r.endpoints.iter().enumerate() {
        let kinds: Vec<String> = aggregate::kinds_in_order(&e.kinds)
            .iter()
            .map(|(k, n)| format!("<span class=\"tag kind-{0}\">{0} {n}</span>", esc(k)))
            .collect();
        put!(
            o,
            "<tr class=\"endpoint-row\" data-endpoint=\"{0}\" data-target=\"{1}\" \
             data-count=\"{2}\"><td class=\"num\">{2}</td><td><a href=\"#ep-{3}\"><code>{0}\
             </code></a></td><td><code>{1}</code></td><td>{4}</td></tr>\n",
            esc(&e.endpoint),
            esc(&e.target),
            e.count,
            i + 1,
            kinds.join(" ")
        );
    }
    put!(o, "</table>\n</section>\n");
}

fn latency(o: &mut String, r: &Report) {
    put!(
        o,
        "<section id=\"latency\">\n<h2>Latency, production vs staging</h2>\n"
    );
    if r.latency.is_empty() {
        put!(o, "<p>No latency recorded.</p>\n</section>\n");
        return;
    }
    put!(
        o,
        "<table class=\"latency-table\">\n<tr><th rowspan=\"2\">endpoint</th>\
         <th rowspan=\"2\">target</th><th colspan=\"3\">production</th>\
         <th colspan=\"3\">staging</th><th rowspan=\"2\" class=\"num\">p50 staging\
         &minus;production</th></tr>\n<tr><th class=\"num\">n</th><th class=\"num\">p50 ms</th>\
         <th class=\"num\">p99 ms</th><th class=\"num\">n</th><th class=\"num\">p50 ms</th>\
         <th class=\"num\">p99 ms</th></tr>\n"
    );
    for row in &r.latency {
        latency_row(o, row);
    }
    put!(o, "</table>\n");
    if r.latency.iter().any(|l| l.approximate) {
        put!(
            o,
            "<p class=\"meta\">&asymp; combined from several runs: p50 is the runs' \
             count-weighted mean, p99 their maximum.</p>\n"
        );
    }
    if r.latency
        .iter()
        .any(|l| l.source != aggregate::LatencySource::Summary)
    {
        put!(
            o,
            "<p class=\"meta\">&dagger; from difference lines only (no summary): the \
             exchanges that differed.</p>\n"
        );
    }
    put!(o, "</section>\n");
}

fn latency_row(o: &mut String, row: &LatencyRow) {
    let mut mark = String::new();
    if row.approximate {
        mark.push_str(" &asymp;");
    }
    if row.source != aggregate::LatencySource::Summary {
        mark.push_str(" &dagger;");
    }
    put!(
        o,
        "<tr class=\"latency\" data-endpoint=\"{}\" data-target=\"{}\" data-source=\"{}\" \
         data-approximate=\"{}\"",
        esc(&row.endpoint),
        esc(&row.target),
        row.source.name(),
        row.approximate
    );
    for (side, l) in [("production", row.production), ("staging", row.staging)] {
        if let Some(l) = l {
            put!(
                o,
                " data-{side}-p50=\"{}\" data-{side}-p99=\"{}\"",
                ms(l.p50_ms),
                ms(l.p99_ms)
            );
        }
    }
    put!(
        o,
        "><td><code>{}</code>{mark}</td><td><code>{}</code></td>",
        esc(&row.endpoint),
        esc(&row.target)
    );
    for l in [row.production, row.staging] {
        match l {
            Some(l) => {
                put!(
                    o,
                    "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
                    l.count,
                    ms(l.p50_ms),
                    ms(l.p99_ms)
                );
            }
            None => {
                put!(o, "<td class=\"num\" colspan=\"3\">&ndash;</td>");
            }
        }
    }
    match (row.production, row.staging) {
        (Some(p), Some(s)) => {
            let d = s.p50_ms - p.p50_ms;
            let class = if d > 0.0 { "slower" } else { "faster" };
            put!(o, "<td class=\"num {class}\">{d:+.2}</td>");
        }
        _ => {
            put!(o, "<td class=\"num\">&ndash;</td>");
        }
    }
    put!(o, "</tr>\n");
}

fn endpoint(o: &mut String, n: usize, e: &EndpointDiffs) {
    put!(
        o,
        "<section class=\"endpoint\" id=\"ep-{n}\" data-endpoint=\"{0}\" data-target=\"{1}\" \
         data-count=\"{2}\">\n<h2><code>{0}</code> <span class=\"target\">{1}</span> \
         <span class=\"badge\">{3}</span></h2>\n<ul class=\"kinds\">",
        esc(&e.endpoint),
        esc(&e.target),
        e.count,
        plural(e.count, "difference")
    );
    for (k, c) in aggregate::kinds_in_order(&e.kinds) {
        put!(
            o,
            "<li class=\"kind kind-{0}\" data-kind=\"{0}\" data-count=\"{c}\">{0} \
             <b>{c}</b></li>",
            esc(k)
        );
    }
    put!(o, "</ul>\n<div class=\"breakdown\">\n");
    breakdown(
        o,
        "json-paths",
        "JSON paths",
        "json-path",
        "path",
        &e.json_paths,
    );
    breakdown(
        o,
        "header-names",
        "headers",
        "header-name",
        "header",
        &e.headers,
    );
    breakdown(
        o,
        "staging-errors",
        "staging errors",
        "staging-error",
        "error",
        &e.staging_errors,
    );
    put!(o, "</div>\n");
    if e.truncated > 0 {
        put!(
            o,
            "<p class=\"meta\">{} had more differences than the file keeps (50); the counts \
             above are of those kept.</p>\n",
            plural(e.truncated, "exchange")
        );
    }
    put!(
        o,
        "<h3>Examples <span class=\"meta\">(up to {} per kind)</span></h3>\n",
        aggregate::EXAMPLES_PER_KIND
    );
    for (i, x) in e.examples.iter().enumerate() {
        example(o, x, i == 0);
    }
    put!(o, "</section>\n");
}

/// A table of names and counts, most first; nothing when empty.
fn breakdown(
    o: &mut String,
    id: &str,
    caption: &str,
    class: &str,
    attr: &str,
    c: &aggregate::Counts,
) {
    if c.is_empty() {
        return;
    }
    put!(o, "<table class=\"{id}\">\n<caption>{caption}</caption>\n");
    for (name, n) in aggregate::by_count(c) {
        put!(
            o,
            "<tr class=\"{class}\" data-{attr}=\"{0}\" data-count=\"{n}\"><td><code>{0}</code>\
             </td><td class=\"num\">{n}</td></tr>\n",
            esc(name)
        );
    }
    put!(o, "</table>\n");
}

fn example(o: &mut String, x: &Example, open: bool) {
    let d = &x.line;
    put!(
        o,
        "<details class=\"example\" data-id=\"{}\" data-kinds=\"{}\"{}>\n<summary>example of \
         <b>{}</b>: <code>{} {}</code> <span class=\"meta\">{} &middot; id {}</span></summary>\n",
        esc(&d.id),
        esc(&x.for_kinds.join(" ")),
        if open { " open" } else { "" },
        esc(&x.for_kinds.join(", ")),
        esc(&d.request.method),
        esc(&d.request.target),
        if d.ts_ns > 0 {
            wall(d.ts_ns)
        } else {
            String::new()
        },
        esc(&d.id)
    );
    differences(o, d);
    put!(o, "<div class=\"sides\">\n");
    side(o, d, &d.production, "production");
    side(o, d, &d.staging, "staging");
    put!(o, "</div>\n");
    request(o, d);
    put!(o, "</details>\n");
}

fn differences(o: &mut String, d: &Difference) {
    put!(
        o,
        "<table class=\"differences\">\n<tr><th>kind</th><th>what</th><th>production</th>\
         <th>staging</th></tr>\n"
    );
    for item in &d.differences {
        match item {
            Item::Status {
                production,
                staging,
            } => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"status\"><td>status</td><td></td>\
                     <td class=\"p\">{}</td><td class=\"s\">{}</td></tr>\n",
                    opt(production),
                    opt(staging)
                );
            }
            Item::Header {
                name,
                production,
                staging,
            } => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"header\" data-header=\"{0}\"><td>header\
                     </td><td><code>{0}</code></td><td class=\"p\">{1}</td><td class=\"s\">{2}\
                     </td></tr>\n",
                    esc(&name.to_ascii_lowercase()),
                    values(production),
                    values(staging)
                );
            }
            Item::Json {
                path,
                change,
                production,
                staging,
            } => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"json\" data-path=\"{0}\" \
                     data-change=\"{1}\"><td>json</td><td><code>{0}</code> {1}</td>\
                     <td class=\"p\"><code>{2}</code></td><td class=\"s\"><code>{3}</code>\
                     </td></tr>\n",
                    esc(path),
                    esc(change),
                    json_value(production),
                    json_value(staging)
                );
            }
            Item::Body {
                production_len,
                staging_len,
                first_difference,
            } => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"body\"><td>body</td><td>first \
                     difference at byte {}</td><td class=\"p\">{} bytes</td><td class=\"s\">{} \
                     bytes</td></tr>\n",
                    opt(first_difference),
                    opt(production_len),
                    opt(staging_len)
                );
            }
            Item::StagingError { error } => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"staging_error\" data-error=\"{0}\">\
                     <td>staging error</td><td><code>{0}</code></td><td class=\"p\"></td>\
                     <td class=\"err\">no response</td></tr>\n",
                    esc(error)
                );
            }
            Item::Unknown => {
                put!(
                    o,
                    "<tr class=\"difference\" data-kind=\"unknown\"><td colspan=\"4\">a kind \
                     of difference this report does not know</td></tr>\n"
                );
            }
        }
    }
    if d.differences_truncated {
        put!(
            o,
            "<tr class=\"truncated\"><td colspan=\"4\">&hellip; more differences were cut by \
             the writer</td></tr>\n"
        );
    }
    put!(o, "</table>\n");
}

fn side(o: &mut String, d: &Difference, s: &Side, name: &str) {
    let class = if name == "production" { "p" } else { "s" };
    put!(
        o,
        "<div class=\"side {name}\">\n<h4>{}{}{}</h4>\n",
        if name == "production" {
            "Production"
        } else {
            "Staging"
        },
        s.status
            .map(|c| format!(" &middot; {c}"))
            .unwrap_or_default(),
        s.latency_ns
            .map(|ns| format!(" &middot; {} ms", ms(ns as f64 / 1e6)))
            .unwrap_or_default()
    );
    if let Some(error) = &s.error {
        put!(
            o,
            "<p class=\"staging-error\" data-error=\"{0}\">no response: <b>{0}</b></p>\n</div>\n",
            esc(error)
        );
        return;
    }
    let Some(head) = &s.head else {
        put!(o, "<p class=\"meta\">no response recorded</p>\n</div>\n");
        return;
    };
    head_lines(o, d, head, class);
    let bytes = match &s.body {
        Some(b64) => body::decode(b64),
        None => Some(Vec::new()),
    };
    let view = match &bytes {
        Some(b) => body::view(b, s.json),
        None => View::Undecodable,
    };
    let mut note = vec![format!("{} bytes", s.body_len.unwrap_or(0))];
    if let Some(enc) = &s.content_encoding {
        note.push(format!("decoded from {}", esc(enc)));
    }
    if s.json {
        note.push("compared as JSON".into());
    }
    if s.body_truncated {
        note.push("the file holds only the first 64 KiB".into());
    }
    let first = if d.json_paths().is_empty() {
        d.first_body_difference()
    } else {
        None
    };
    body_view(o, &view, &d.json_paths(), first, class, &mut note);
    put!(o, "</div>\n");
}

/// Status line and headers, the differing ones highlighted; a header one side lacks is
/// shown there as an "absent" line so the two columns line up in meaning.
fn head_lines(o: &mut String, d: &Difference, head: &str, class: &str) {
    let differing = d.header_names();
    let mut seen = Vec::new();
    put!(o, "<pre class=\"head\">");
    for (i, line) in head.lines().filter(|l| !l.is_empty()).enumerate() {
        if i == 0 {
            let hl = if d.status_differs() { " hl" } else { "" };
            put!(
                o,
                "<span class=\"line status{hl} {class}\">{}</span>",
                esc(line)
            );
            continue;
        }
        let name = line
            .split_once(':')
            .map(|(n, _)| n.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if differing.contains(&name) {
            seen.push(name.clone());
            put!(
                o,
                "<span class=\"line hl {class}\" data-header=\"{}\">{}</span>",
                esc(&name),
                esc(line)
            );
        } else {
            put!(o, "<span class=\"line\">{}</span>", esc(line));
        }
    }
    for name in differing.iter().filter(|n| !seen.contains(n)) {
        put!(
            o,
            "<span class=\"line hl absent {class}\" data-header=\"{0}\">({0}: absent)</span>",
            esc(name)
        );
    }
    put!(o, "</pre>\n");
}

fn body_view(
    o: &mut String,
    view: &View,
    paths: &[&str],
    first_difference: Option<u64>,
    class: &str,
    note: &mut Vec<String>,
) {
    match view {
        View::Empty => {
            note.push("empty".into());
            put!(o, "<p class=\"body-note\">{}</p>\n", note.join(", "));
        }
        View::Undecodable => {
            put!(
                o,
                "<p class=\"body-note\">{}; the file's base64 did not decode</p>\n",
                note.join(", ")
            );
        }
        View::Binary { hex } => {
            note.push("binary".into());
            put!(
                o,
                "<p class=\"body-note\">{}</p>\n<pre class=\"body binary\">{}{}</pre>\n",
                note.join(", "),
                hex,
                " &hellip;"
            );
        }
        View::Text { text, cut } => {
            if *cut {
                note.push(format!(
                    "showing the first {} KiB",
                    body::MAX_TEXT_BYTES / 1024
                ));
            }
            put!(
                o,
                "<p class=\"body-note\">{}</p>\n<pre class=\"body text\">",
                note.join(", ")
            );
            text_with_mark(o, text, first_difference, class);
            put!(o, "</pre>\n");
        }
        View::Json { lines, cut } => {
            if *cut {
                note.push(format!("showing the first {} lines", body::MAX_JSON_LINES));
            }
            put!(
                o,
                "<p class=\"body-note\">{}</p>\n<pre class=\"body json\">",
                note.join(", ")
            );
            for l in lines {
                match paths.iter().find(|p| body::covers(p, &l.path)) {
                    Some(p) => {
                        put!(
                            o,
                            "<span class=\"line hl {class}\" data-path=\"{}\" title=\"{}\">{}\
                             </span>",
                            esc(p),
                            esc(&l.path),
                            esc(&l.text)
                        );
                    }
                    None => {
                        put!(
                            o,
                            "<span class=\"line\" title=\"{}\">{}</span>",
                            esc(&l.path),
                            esc(&l.text)
                        );
                    }
                }
            }
            put!(o, "</pre>\n");
        }
    }
}

/// A text body with its first differing byte marked, when the offset falls in it.
fn text_with_mark(o: &mut String, text: &str, at: Option<u64>, class: &str) {
    let at = at
        .and_then(|a| usize::try_from(a).ok())
        .filter(|&a| a < text.len() && text.is_char_boundary(a));
    match at {
        Some(a) => {
            let end = body::floor_char_boundary(text, a + 16).max(a);
            let end = if end == a {
                text[a..].chars().next().map_or(a, |c| a + c.len_utf8())
            } else {
                end
            };
            put!(
                o,
                "{}<mark class=\"first-diff {class}\" title=\"first differing byte: {a}\">{}\
                 </mark>{}",
                esc(&text[..a]),
                esc(&text[a..end]),
                esc(&text[end..])
            );
        }
        None => {
            put!(o, "{}", esc(text));
        }
    }
}

fn request(o: &mut String, d: &Difference) {
    let r = &d.request;
    put!(
        o,
        "<div class=\"request\">\n<h4>Request <code>{} {}</code></h4>\n<pre class=\"head\">{}\
         </pre>\n",
        esc(&r.method),
        esc(&r.target),
        esc(r.head.trim_end())
    );
    if r.body_len > 0 || !r.body.is_empty() {
        let mut note = vec![format!("{} bytes", r.body_len)];
        if r.body_truncated {
            note.push("the file holds only the first 64 KiB".into());
        }
        let view = match body::decode(&r.body) {
            Some(b) => body::view(&b, serde_json::from_slice::<serde_json::Value>(&b).is_ok()),
            None => View::Undecodable,
        };
        body_view(o, &view, &[], None, "", &mut note);
    }
    put!(o, "</div>\n");
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "&ndash;".into(), |v| v.to_string())
}

fn values(v: &Option<Vec<String>>) -> String {
    match v {
        None => "<i>absent</i>".into(),
        Some(vs) => vs
            .iter()
            .map(|v| format!("<code>{}</code>", esc(v)))
            .collect::<Vec<_>>()
            .join("<br>"),
    }
}

/// A JSON value of a difference, compact and bounded; an absent side is `null` in the
/// file and shown as absent.
fn json_value(v: &serde_json::Value) -> String {
    if v.is_null() {
        return "<i>null/absent</i>".into();
    }
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}&hellip;", esc(&s[..body::floor_char_boundary(&s, 200)]))
    } else {
        esc(&s)
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Milliseconds, with as many decimals as small values need.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=119 => format!("{:.1} s", ns as f64 / 1e9),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// A wall-clock time in ns since the epoch, as UTC.
pub fn wall(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

const CSS: &str = r#"
:root { --fg:#1f2328; --muted:#656d76; --line:#d0d7de; --bg2:#f6f8fa; --p:#ffebe9; --pb:#cf222e; --s:#dafbe1; --sb:#1a7f37; --hl:#fff8c5; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg); margin: 0 auto; padding: 16px 24px 48px; max-width: 1400px; }
code, pre { font: 12px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
h1 { font-size: 22px; margin: 8px 0; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
h4 { font-size: 13px; margin: 6px 0; }
section.endpoint > h2 code { font-size: 15px; }
tr.zero { color: var(--muted); }
.meta { color: var(--muted); font-weight: normal; }
.notice { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; }
.tools { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.legend span { padding: 1px 6px; border-radius: 3px; }
.hl-p { background: var(--p); border-left: 3px solid var(--pb); }
.hl-s { background: var(--s); border-left: 3px solid var(--sb); }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
caption { text-align: left; font-weight: 600; padding: 2px 0; white-space: nowrap; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bar { width: 240px; }
td.bar span { display: block; height: 10px; border-radius: 2px; min-width: 1px; }
td.bar .ok { background: #2da44e; } td.bar .bad { background: #cf222e; }
.slower { color: #cf222e; } .faster { color: #1a7f37; }
.tag { display: inline-block; padding: 0 6px; margin: 1px; border-radius: 10px; background: var(--bg2); border: 1px solid var(--line); font-size: 12px; }
section.endpoint { border: 1px solid var(--line); border-radius: 8px; padding: 0 16px 12px; margin: 20px 0; }
section.endpoint > h2 { border: 0; }
.target { color: var(--muted); font-size: 13px; font-weight: normal; }
.badge { background: #cf222e; color: #fff; border-radius: 10px; padding: 1px 8px; font-size: 12px; }
ul.kinds { list-style: none; padding: 0; margin: 0 0 8px; display: flex; gap: 8px; flex-wrap: wrap; }
li.kind { border: 1px solid var(--line); border-radius: 12px; padding: 1px 10px; background: var(--bg2); }
.kind-status { border-color: #cf222e !important; } .kind-body { border-color: #8250df !important; }
.kind-headers { border-color: #bf8700 !important; } .kind-staging_error { border-color: #000 !important; }
.breakdown { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
details.example { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; padding: 6px 10px; background: #fff; }
details.example > summary { cursor: pointer; }
table.differences { width: 100%; }
table.differences td.p { background: var(--p); } table.differences td.s { background: var(--s); }
table.differences td.err { background: var(--p); color: var(--pb); font-weight: 600; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side { min-width: 0; }
pre { background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; padding: 6px 0; margin: 4px 0; overflow: auto; max-height: 480px; }
pre .line { display: block; padding: 0 8px; white-space: pre; min-height: 1.4em; }
pre.text, pre.binary { padding: 6px 8px; white-space: pre-wrap; word-break: break-all; }
.line.hl.p { background: var(--p); box-shadow: inset 3px 0 var(--pb); }
.line.hl.s { background: var(--s); box-shadow: inset 3px 0 var(--sb); }
.line.absent { color: var(--muted); font-style: italic; }
mark.first-diff.p { background: #ffc1bc; } mark.first-diff.s { background: #aceebb; }
.body-note { color: var(--muted); margin: 6px 0 0; font-size: 12px; }
.staging-error { background: var(--p); border-radius: 6px; padding: 6px 10px; }
.request pre { max-height: 200px; }
"#;

/// The filter box and the expand button; marks the document once it ran.
const JS: &str = r#"
(function () {
  var q = document.getElementById('filter');
  var sections = document.querySelectorAll('section.endpoint, tr.endpoint-row, tr.latency');
  q.addEventListener('input', function () {
    var v = q.value.toLowerCase();
    sections.forEach(function (e) {
      var text = (e.dataset.endpoint + ' ' + e.dataset.target).toLowerCase();
      e.hidden = v !== '' && text.indexOf(v) < 0;
    });
  });
  document.getElementById('expand').addEventListener('click', function () {
    document.querySelectorAll('details.example').forEach(function (d) { d.open = true; });
  });
  document.documentElement.dataset.js = 'ready';
})();
"#;
