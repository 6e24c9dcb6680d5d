//! The one-line summary logged every `GOR_STATS_INTERVAL` and at exit: what came in, what
//! reached staging, and everything lost on the way, by where it was lost. Built from the
//! same report as the stats file and the metrics, so the three never disagree.

use serde_json::Value;

use super::catalog;

fn get(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

fn sum(v: &Value, paths: &[&str]) -> u64 {
    paths.iter().map(|p| get(v, p)).sum()
}

/// The sum over all targets (`/mirror`) of a per-target family of the catalog, e.g. every
/// drop reason of `gor_mirror_dropped`: a reason added there counts here too.
fn mirror_sum(v: &Value, family: &str) -> u64 {
    catalog::FAMILIES
        .iter()
        .filter(|f| f.name == family)
        .flat_map(|f| f.samples)
        .map(|s| get(v, &format!("/mirror{}", s.path)))
        .sum()
}

/// Drops of each stage, as pointers into the report.
const KERNEL_LOST: &[&str] = &["/kernel/ringbuf_drops", "/kernel/truncated_packets"];
const MIDDLEWARE_LOST: &[&str] = &[
    "/middleware/dropped_queue_full",
    "/middleware/lost_in_restart",
    "/middleware/dropped_at_shutdown",
];
const FILE_LOST: &[&str] = &["/outputs/file/records_dropped"];

/// The summary of `now`, a report in its JSON form (the stats file's, which the reporter
/// has anyway; read through the same pointers as the catalog's, so the two name a figure
/// alike); rates are over the `secs` since `before` (the previous report), or since the
/// start when there is none.
pub fn line(now: &Value, before: Option<&Value>, secs: f64, rss_bytes: Option<u64>) -> String {
    let replaying = now.get("input").is_some_and(|i| !i.is_null());
    let requests = if replaying {
        "/input/requests"
    } else {
        "/http/requests"
    };
    let rate = |path: &str| {
        let prev = before.map_or(0, |b| get(b, path));
        get(now, path).saturating_sub(prev) as f64 / secs.max(1e-3)
    };
    let mut parts = vec![format!(
        "requests {} ({:.0}/s)",
        get(now, requests),
        rate(requests)
    )];
    if !replaying {
        parts.push(format!("connections {}", get(now, "/open_connections")));
    }
    if now["mirror"].is_object() {
        let classes: Vec<String> = ["2xx", "3xx", "4xx", "5xx"]
            .iter()
            .filter_map(|c| {
                let n = get(now, &format!("/mirror/status_{c}"));
                (n > 0).then(|| format!("{c} {n}"))
            })
            .collect();
        let mut mirrored = format!(
            "mirrored {} ({:.0}/s",
            get(now, "/mirror/sent"),
            rate("/mirror/sent")
        );
        for c in classes {
            mirrored += &format!(", {c}");
        }
        let errors = mirror_sum(now, "gor_mirror_errors");
        if errors > 0 {
            mirrored += &format!(", errors {errors}");
        }
        let p99 = get(now, "/mirror/latency/p99_us");
        if p99 > 0 {
            mirrored += &format!(", p99 {:.1} ms", p99 as f64 / 1000.0);
        }
        parts.push(mirrored + ")");
        parts.push(format!("rate-limited {}", get(now, "/mirror/rate_limited")));
    }
    if let Some(o) = now.pointer("/compare/outcomes").and_then(Value::as_object) {
        // "compared 120 (match 110, status 4, body 6)": the outcomes that occurred.
        let counts: Vec<String> = o
            .iter()
            .filter_map(|(k, v)| Some((k, v.as_u64()?)))
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let total: u64 = o.values().filter_map(Value::as_u64).sum();
        parts.push(if counts.is_empty() {
            "compared 0".to_string()
        } else {
            format!("compared {total} ({})", counts.join(", "))
        });
    }
    let filtered: u64 = now
        .pointer("/filters/dropped_by_rule")
        .and_then(Value::as_object)
        .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
    if filtered > 0 {
        parts.push(format!("filtered {filtered}"));
    }
    // Every loss, by where it happened; "lost 0" when there is none, so a reader sees
    // that it was counted.
    let losses = [
        ("kernel", sum(now, KERNEL_LOST)),
        ("gaps", get(now, "/reassembly/gaps")),
        ("incomplete", get(now, "/http/incomplete_requests")),
        (
            "damaged input",
            sum(now, &["/input/damaged", "/input/invalid"]),
        ),
        ("middleware", sum(now, MIDDLEWARE_LOST)),
        ("mirror queue", mirror_sum(now, "gor_mirror_dropped")),
        ("file", sum(now, FILE_LOST)),
    ];
    let total: u64 = losses.iter().map(|(_, n)| n).sum();
    let detail: Vec<String> = losses
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    parts.push(if detail.is_empty() {
        "lost 0".to_string()
    } else {
        format!("lost {total} ({})", detail.join(", "))
    });
    if let Some(rss) = rss_bytes {
        parts.push(format!("rss {} MiB", rss / (1024 * 1024)));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::super::report::{MirrorReport, Report};
    use super::*;
    use crate::{
        capture::tc::KernelCounters, filters::DroppedByRule, gorfile::InputStats, http::HttpStats,
        mirror::TargetStats,
    };
    use gor_common::counter;

    /// The line of typed reports, as the reporter makes it.
    fn line_of(now: &Report, before: Option<&Report>, secs: f64, rss: Option<u64>) -> String {
        line(
            &now.to_json(),
            before.map(Report::to_json).as_ref(),
            secs,
            rss,
        )
    }

    #[test]
    fn live_capture_with_mirroring() {
        let before = Report {
            http: HttpStats {
                requests: 1000,
                ..Default::default()
            },
            mirror: Some(MirrorReport {
                total: TargetStats {
                    sent: 900,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut kernel = KernelCounters::default();
        kernel.0[counter::RINGBUF_DROPS as usize] = 2;
        let mut now = Report {
            kernel: Some(super::super::report::KernelReport::Counters(kernel)),
            http: HttpStats {
                requests: 3000,
                incomplete_requests: 1,
                ..Default::default()
            },
            open_connections: 12,
            mirror: Some(MirrorReport {
                total: TargetStats {
                    sent: 2900,
                    status_2xx: 2890,
                    status_5xx: 10,
                    timeouts: 3,
                    rate_limited: 7,
                    queue_full: 4,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        now.filters.dropped_by_rule = DroppedByRule {
            allow_url: 5,
            disallow_url: 1,
            ..Default::default()
        };
        if let Some(r) = now.mirror.as_mut() {
            r.total.latency.p99_us = 4321;
        }
        assert_eq!(
            line_of(&now, Some(&before), 10.0, Some(21 * 1024 * 1024 + 5)),
            "requests 3000 (200/s) · connections 12 · mirrored 2900 (200/s, 2xx 2890, 5xx 10, \
             errors 3, p99 4.3 ms) · rate-limited 7 · filtered 6 · lost 7 (kernel 2, \
             incomplete 1, mirror queue 4) · rss 21 MiB"
        );
    }

    #[test]
    fn comparison_outcomes_that_occurred() {
        let mut now = Report {
            compare: Some(crate::compare::CompareReport {
                outcomes: crate::compare::Outcomes {
                    matched: 110,
                    status: 4,
                    body: 6,
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let l = line_of(&now, None, 1.0, None);
        assert!(
            l.contains(" · compared 120 (body 6, match 110, status 4) · "),
            "{l}"
        );
        now.compare = Some(Default::default());
        assert!(line_of(&now, None, 1.0, None).contains(" · compared 0 · "));
    }

    #[test]
    fn replay_without_mirroring_and_nothing_lost() {
        let now = Report {
            input: Some(InputStats {
                requests: 50,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            line_of(&now, None, 5.0, None),
            "requests 50 (10/s) · lost 0"
        );
    }
}
