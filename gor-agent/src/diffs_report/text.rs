//! The report as a few lines of plain text, for a terminal: totals, then the endpoints
//! with the most differences and what differed there. The page has the rest.

use std::fmt::Write;

use super::aggregate::{self, Report};

/// Endpoints listed; the rest are counted in one line.
const TOP_ENDPOINTS: usize = 20;
/// JSON paths and header names listed per endpoint.
const TOP_NAMES: usize = 5;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let files: Vec<&str> = r.files.iter().map(|f| f.name.as_str()).collect();
    let _ = writeln!(
        o,
        "{} differences in {} endpoints, from {}",
        r.differences(),
        r.endpoints.len(),
        files.join(", ")
    );
    let outcomes: Vec<String> = r
        .outcomes
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let source = if r.totals_complete() {
        "from the summary"
    } else if r.runs_with_summary == 0 {
        "no summary line: counted from the difference lines, matches unknown"
    } else {
        "some runs lack a summary line: those counted from their difference lines"
    };
    let _ = writeln!(o, "outcomes ({source}): {}", outcomes.join(", "));
    if r.skipped_lines() > 0 {
        let _ = writeln!(
            o,
            "skipped {} lines that are not valid diffs lines",
            r.skipped_lines()
        );
    }
    for e in r.endpoints.iter().take(TOP_ENDPOINTS) {
        let kinds: Vec<String> = aggregate::kinds_in_order(&e.kinds)
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "{:>7}  {}  {}  ({})",
            e.count,
            e.endpoint,
            e.target,
            kinds.join(", ")
        );
        for (label, counts) in [("json", &e.json_paths), ("headers", &e.headers)] {
            if counts.is_empty() {
                continue;
            }
            let top: Vec<String> = aggregate::by_count(counts)
                .iter()
                .take(TOP_NAMES)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let more = counts.len().saturating_sub(TOP_NAMES);
            let more = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(o, "           {label}: {}{more}", top.join(", "));
        }
    }
    if r.endpoints.len() > TOP_ENDPOINTS {
        let _ = writeln!(
            o,
            "         ... and {} more endpoints (see --html)",
            r.endpoints.len() - TOP_ENDPOINTS
        );
    }
    o
}
