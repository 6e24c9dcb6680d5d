//! The stage: the three sides of an exchange pair in any order, each exchange gets one
//! outcome per target, and whatever is given up (timeout, full table, not mirrored) is
//! counted, never held without bound.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::envelope::{MessageId, Origin};
use crate::gorfile::{Record, RecordType};
use crate::mirror::{Accepted, FailureKind, Outcome as Answer, StagingResponse, StagingResult};

fn id(n: u64) -> MessageId {
    MessageId::framed(Origin::default(), 1, n)
}

fn message(kind: RecordType, n: u64, raw: &str) -> HttpMessage {
    let mut m = Record {
        kind,
        id: String::new(),
        timestamp_ns: 1,
        latency_ns: 1_000_000,
        payload: Bytes::copy_from_slice(raw.as_bytes()),
    }
    .to_message()
    .expect("valid HTTP");
    m.id = id(n);
    m
}

fn request(n: u64, path: &str) -> HttpMessage {
    message(
        RecordType::Request,
        n,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
}

fn response(n: u64, status: u16, body: &str) -> HttpMessage {
    message(
        RecordType::Response,
        n,
        &format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nDate: {n}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn answer(n: u64, target: usize, status: u16, body: &str) -> StagingResult {
    let message = response(n, status, body);
    StagingResult {
        id: id(n),
        target,
        target_name: format!("t{target}"),
        sent_at: SystemTime::now(),
        latency: Duration::from_millis(2),
        outcome: Answer::Response(Box::new(StagingResponse {
            status,
            body_len: body.len() as u64,
            message,
        })),
    }
}

fn failure(n: u64, target: usize) -> StagingResult {
    StagingResult {
        outcome: Answer::Failure(FailureKind::Timeout),
        ..answer(n, target, 200, "")
    }
}

fn config() -> CompareConfig {
    CompareConfig {
        rules: Rules::default(),
        timeout: Duration::from_secs(30),
        max_pending: 100,
        max_pending_bytes: 1 << 20,
        max_endpoints: 10,
        diffs_file: None,
        diffs_examples: 100,
    }
}

fn stage(cfg: CompareConfig, targets: usize, responses_first: bool) -> Comparison {
    let names = (0..targets).map(|t| format!("t{t}")).collect();
    Comparison::new(cfg, names, responses_first, ToWall::measure()).expect("no file")
}

const ONE: Accepted = Accepted(1);

#[test]
fn the_three_sides_pair_in_any_order() {
    let mut c = stage(config(), 1, true);
    // request, production, staging
    c.request(&request(1, "/users/1"), ONE);
    c.production(&response(1, 200, r#"{"a":1}"#));
    c.staging(answer(1, 0, 200, r#"{"a":1}"#));
    // staging before production
    c.request(&request(2, "/users/2"), ONE);
    c.staging(answer(2, 0, 200, r#"{"a":2}"#));
    c.production(&response(2, 200, r#"{"a":1}"#));
    // production before its request (it skipped the middleware)
    c.production(&response(3, 200, "{}"));
    c.request(&request(3, "/users/3"), ONE);
    c.staging(answer(3, 0, 500, "{}"));
    let r = c.report();
    assert_eq!(
        (r.outcomes.matched, r.outcomes.body, r.outcomes.status),
        (1, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.pending, 0, "nothing left waiting");
    assert_eq!(r.pending_bytes, 0);
    assert_eq!(r.endpoints.len(), 1);
    assert_eq!(r.endpoints[0].endpoint, "GET /users/{n}");
    assert_eq!(r.endpoints[0].production_latency.count, 3);
}

#[test]
fn each_target_gets_its_own_outcome() {
    let mut c = stage(config(), 2, false);
    c.request(&request(1, "/a"), Accepted(0b11));
    c.production(&response(1, 200, "{}"));
    c.staging(answer(1, 1, 200, "{}"));
    assert_eq!(c.report().pending, 1, "target 0 still to answer");
    c.staging(failure(1, 0));
    let r = c.report();
    assert_eq!((r.outcomes.matched, r.outcomes.staging_error), (1, 1));
    assert_eq!(r.pending, 0);
    let by_target: Vec<_> = r
        .endpoints
        .iter()
        .map(|e| {
            (
                e.target.as_str(),
                e.outcomes.matched,
                e.outcomes.staging_error,
            )
        })
        .collect();
    assert!(by_target.contains(&("t0", 0, 1)), "{by_target:?}");
    assert!(by_target.contains(&("t1", 1, 0)), "{by_target:?}");
}

#[test]
fn a_request_that_was_not_mirrored_holds_nothing() {
    let mut c = stage(config(), 1, false);
    c.request(&request(1, "/a"), Accepted::NONE);
    c.production(&response(1, 200, "{}"));
    let r = c.report();
    assert_eq!((r.pending, r.not_mirrored), (0, 1));
    assert_eq!(
        r.outcomes,
        Outcomes::default(),
        "no outcome: nothing was compared"
    );
}

#[test]
fn what_waits_beyond_the_timeout_is_given_up_and_counted() {
    let mut c = stage(
        CompareConfig {
            timeout: Duration::ZERO,
            ..config()
        },
        1,
        true,
    );
    // Production's response, staging never answers: expired.
    c.request(&request(1, "/a"), ONE);
    c.production(&response(1, 200, "{}"));
    // Staging answers, production's response never comes.
    c.request(&request(2, "/a"), ONE);
    c.staging(answer(2, 0, 200, "{}"));
    // A response whose request never comes back from the middleware.
    c.production(&response(3, 200, "{}"));
    assert_eq!(c.report().pending, 3);
    c.tick();
    let r = c.report();
    assert_eq!(r.pending, 0);
    assert_eq!(r.pending_bytes, 0);
    assert_eq!(
        (
            r.outcomes.expired,
            r.outcomes.no_production_response,
            r.not_mirrored
        ),
        (1, 1, 1),
        "{r:?}"
    );
    // An answer after its exchange was given up.
    c.staging(answer(1, 0, 200, "{}"));
    assert_eq!(c.report().late, 1);
}

#[test]
fn the_table_is_bounded_by_count_and_bytes_oldest_first() {
    let mut c = stage(
        CompareConfig {
            max_pending: 3,
            ..config()
        },
        1,
        false,
    );
    for n in 0..10 {
        c.request(&request(n, "/a"), ONE);
        c.production(&response(n, 200, "{}"));
    }
    let r = c.report();
    assert_eq!((r.pending, r.outcomes.evicted), (3, 7));
    // The newest are kept: their answers still compare.
    c.staging(answer(9, 0, 200, "{}"));
    c.staging(answer(0, 0, 200, "{}"));
    let r = c.report();
    assert_eq!((r.outcomes.matched, r.late), (1, 1));

    let body = "x".repeat(10_000);
    let mut c = stage(
        CompareConfig {
            max_pending_bytes: 50_000,
            ..config()
        },
        1,
        false,
    );
    for n in 0..20 {
        c.request(&request(n, "/a"), ONE);
        c.production(&response(n, 200, &body));
    }
    let r = c.report();
    assert!(r.pending_bytes <= 50_000, "{}", r.pending_bytes);
    assert_eq!(r.pending as u64 + r.outcomes.evicted, 20);
    assert!(r.outcomes.evicted >= 16, "{r:?}");
}

#[test]
fn at_the_end_what_still_waits_is_counted_and_the_summary_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("diffs.jsonl");
    let mut c = stage(
        CompareConfig {
            diffs_file: Some(path.clone()),
            diffs_examples: 2,
            ..config()
        },
        1,
        false,
    );
    for n in 0..5 {
        c.request(&request(n, "/orders/7"), ONE);
        c.production(&response(n, 200, r#"{"s":"a"}"#));
        c.staging(answer(n, 0, 200, r#"{"s":"b"}"#));
    }
    c.request(&request(9, "/orders/8"), ONE);
    c.production(&response(9, 200, "{}"));
    c.finish();
    let r = c.report();
    assert_eq!((r.outcomes.body, r.outcomes.expired), (5, 1));
    let diffs = r.diffs.expect("diffs stats");
    assert_eq!((diffs.written, diffs.not_written), (2, 3));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "it holds bodies: owner only");
    let text = std::fs::read_to_string(&path).expect("file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["endpoint"], "GET /orders/{n}");
    assert_eq!(lines[0]["outcome"], "body");
    assert_eq!(lines[0]["differences"][0]["path"], "$.s");
    assert_eq!(lines[0]["request"]["target"], "/orders/7");
    assert_eq!(lines[2]["type"], "summary");
    assert_eq!(lines[2]["outcomes"]["body"], 5);
    assert_eq!(lines[2]["outcomes"]["expired"], 1);
    assert_eq!(lines[2]["diffs_dropped"], 3);
    assert_eq!(lines[2]["endpoints"][0]["outcomes"]["body"], 5);
}
