//! Tests of every rule on realistic request bytes, of the head editor's byte-exactness,
//! of consistent sampling, and of dropping the responses of dropped requests.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::envelope::{Clock, MessageId, Origin};
use crate::http::head::HeadResult;
use crate::http::{HttpMessage, Kind};
use crate::stream::{Direction, Flow};

/// Frames `raw` as the framer would (its head parser, values sharing `raw`).
fn msg(id: u64, raw: &[u8]) -> HttpMessage {
    let raw = Bytes::copy_from_slice(raw);
    let dir = if raw.starts_with(b"HTTP/") {
        Direction::ServerToClient
    } else {
        Direction::ClientToServer
    };
    let HeadResult::Complete(head) = crate::http::head::parse(dir, &raw) else {
        panic!("test message does not parse: {raw:?}");
    };
    let (kind, len, headers) = (head.kind, head.len, head.headers);
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    HttpMessage {
        id: MessageId::framed(Origin::default(), 7, id),
        clock: Clock::Monotonic,
        flow: Flow {
            client: a,
            server: a,
        },
        dir,
        offset: 0,
        first_ts_ns: 1,
        last_ts_ns: 2,
        raw: raw.clone(),
        kind,
        headers,
        body_offset: len,
        latency_ns: None,
    }
}

fn rules(flags: &[(&str, &str)]) -> Filters {
    Filters::new(
        flags
            .iter()
            .map(|(f, v)| parse_rule(f, v).expect("valid test rule"))
            .collect(),
    )
}

/// The kept message's raw bytes, or `None` when dropped.
fn run(f: &mut Filters, raw: &[u8]) -> Option<HttpMessage> {
    match f.apply(msg(1, raw)) {
        Verdict::Keep(m) => Some(m),
        Verdict::Drop => None,
    }
}

fn raw_of(m: &Option<HttpMessage>) -> &[u8] {
    m.as_ref().map(|m| &m.raw[..]).unwrap_or(b"<dropped>")
}

const GET: &[u8] = b"GET /api/users?id=42&sort=asc HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.5\r\nX-Session: abc123\r\nAccept: */*\r\n\r\n";

const CHUNKED: &[u8] = b"POST /v1/orders HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n7\r\n{\"a\":1}\r\n0\r\nX-Trailer: t\r\n\r\n";

#[test]
fn allow_url_keeps_matching_targets_and_ors_repeats() {
    let mut f = rules(&[
        ("http-allow-url", "^/api/"),
        ("http-allow-url", "^/health$"),
    ]);
    assert!(run(&mut f, GET).is_some());
    assert!(run(&mut f, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n").is_some());
    assert!(run(&mut f, b"GET /static/x.css HTTP/1.1\r\nHost: a\r\n\r\n").is_none());
    assert_eq!(f.stats().dropped_by_rule.allow_url, 1);
    assert_eq!(f.stats().passed, 2);
}

#[test]
fn disallow_url_matches_the_query_too() {
    let mut f = rules(&[("http-disallow-url", "sort=asc")]);
    assert!(run(&mut f, GET).is_none());
    assert!(run(&mut f, b"GET /api/users?sort=desc HTTP/1.1\r\n\r\n").is_some());
    assert_eq!(f.stats().dropped_by_rule.disallow_url, 1);
}

#[test]
fn allow_method_is_case_insensitive_and_repeatable() {
    let mut f = rules(&[("http-allow-method", "get"), ("http-allow-method", "PUT")]);
    assert!(run(&mut f, GET).is_some());
    assert!(run(&mut f, CHUNKED).is_none());
    assert!(run(&mut f, b"PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").is_some());
    assert_eq!(f.stats().dropped_by_rule.allow_method, 1);
}

#[test]
fn allow_header_needs_a_matching_header_of_that_name() {
    let mut f = rules(&[("http-allow-header", "user-agent: ^curl/")]);
    assert!(run(&mut f, GET).is_some());
    assert!(run(&mut f, b"GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\n\r\n").is_none());
    // Absent header: dropped (a documented difference from GoReplay).
    assert!(run(&mut f, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_none());
    // Duplicates: any of them may match.
    assert!(run(
        &mut f,
        b"GET / HTTP/1.1\r\nUser-Agent: bot\r\nuser-agent: curl/7\r\n\r\n"
    )
    .is_some());
    assert_eq!(f.stats().dropped_by_rule.allow_header, 2);
}

#[test]
fn disallow_header_drops_on_any_matching_duplicate() {
    let mut f = rules(&[("http-disallow-header", "X-Debug: ^1$")]);
    assert!(run(&mut f, GET).is_some());
    assert!(run(
        &mut f,
        b"GET / HTTP/1.1\r\nx-debug: 0\r\nX-DEBUG: 1\r\n\r\n"
    )
    .is_none());
    assert_eq!(f.stats().dropped_by_rule.disallow_header, 1);
}

#[test]
fn set_header_replaces_in_place_keeping_name_case_and_position() {
    let mut f = rules(&[("http-set-header", "user-agent: gor-mirror")]);
    let m = run(&mut f, GET);
    assert_eq!(
        raw_of(&m),
        &b"GET /api/users?id=42&sort=asc HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: gor-mirror\r\nX-Session: abc123\r\nAccept: */*\r\n\r\n"[..]
    );
    let m = m.expect("kept");
    assert_eq!(m.headers[1].0, "User-Agent");
    assert_eq!(m.header("user-agent"), Some(&b"gor-mirror"[..]));
    assert_eq!(m.body_offset, m.raw.len());
    assert_eq!(f.stats().rewritten, 1);
}

#[test]
fn set_header_replaces_only_the_first_duplicate() {
    let mut f = rules(&[("http-set-header", "Cookie: a=1")]);
    let m = run(
        &mut f,
        b"GET / HTTP/1.1\r\ncookie: x=1\r\nCookie: y=2\r\n\r\n",
    );
    assert_eq!(
        raw_of(&m),
        &b"GET / HTTP/1.1\r\ncookie: a=1\r\nCookie: y=2\r\n\r\n"[..]
    );
}

#[test]
fn set_header_appends_when_absent_before_the_body() {
    let mut f = rules(&[("http-set-header", "X-Mirrored: gor")]);
    let m = run(&mut f, CHUNKED).expect("kept");
    let expected: &[u8] = b"POST /v1/orders HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\nX-Mirrored: gor\r\n\r\n7\r\n{\"a\":1}\r\n0\r\nX-Trailer: t\r\n\r\n";
    assert_eq!(&m.raw[..], expected);
    assert_eq!(m.headers.len(), 4);
    assert_eq!(m.headers[3].0, "X-Mirrored");
    assert_eq!(&m.body()[..], &CHUNKED[msg(1, CHUNKED).body_offset..]);
}

#[test]
fn bare_lf_heads_get_bare_lf_appended_lines() {
    let mut f = rules(&[("http-set-header", "X-A: 1")]);
    let m = run(&mut f, b"GET / HTTP/1.0\nHost: a\n\n");
    assert_eq!(raw_of(&m), &b"GET / HTTP/1.0\nHost: a\nX-A: 1\n\n"[..]);
}

#[test]
fn rewrite_url_with_capture_groups_leaves_chunked_body_untouched() {
    let mut f = rules(&[("http-rewrite-url", "^/v1/(\\w+)$:/v2/$1/new")]);
    let m = run(&mut f, CHUNKED).expect("kept");
    let body = &CHUNKED[msg(1, CHUNKED).body_offset..];
    assert!(m
        .raw
        .starts_with(b"POST /v2/orders/new HTTP/1.1\r\nHost: shop.example\r\n"));
    assert_eq!(&m.body()[..], body);
    assert!(matches!(&m.kind, Kind::Request { target, .. } if target == "/v2/orders/new"));
    assert_eq!(m.raw.len(), CHUNKED.len() + 4);
}

#[test]
fn only_the_first_matching_url_rewrite_applies() {
    let mut f = rules(&[
        ("http-rewrite-url", "/nomatch:/x"),
        ("http-rewrite-url", "/api/(.*):/v2/$1"),
        ("http-rewrite-url", "/v2/(.*):/v3/$1"),
    ]);
    let m = run(&mut f, GET).expect("kept");
    assert!(m
        .raw
        .starts_with(b"GET /v2/users?id=42&sort=asc HTTP/1.1\r\n"));
}

#[test]
fn rewrite_header_with_groups_on_every_duplicate() {
    let mut f = rules(&[(
        "http-rewrite-header",
        "host: ^(\\w+)\\.example$,$1.staging.internal",
    )]);
    let m = run(
        &mut f,
        b"GET / HTTP/1.1\r\nHOST: shop.example \r\nhost: cart.example\r\n\r\n",
    );
    // Trailing whitespace of the original line is kept: only the value changes.
    assert_eq!(
        raw_of(&m),
        &b"GET / HTTP/1.1\r\nHOST: shop.staging.internal \r\nhost: cart.staging.internal\r\n\r\n"[..]
    );
}

#[test]
fn rewrites_chain_in_order() {
    let mut f = rules(&[
        ("http-set-header", "X-Env: prod"),
        ("http-rewrite-header", "X-Env: prod,staging"),
    ]);
    let m = run(&mut f, GET).expect("kept");
    assert_eq!(m.header("x-env"), Some(&b"staging"[..]));
}

#[test]
fn unchanged_rewrite_keeps_the_same_bytes_and_is_not_counted() {
    let mut f = rules(&[("http-rewrite-url", "^/nothing:/x")]);
    let m = run(&mut f, GET).expect("kept");
    assert_eq!(&m.raw[..], GET);
    assert_eq!(f.stats().rewritten, 0);
}

#[test]
fn a_rewrite_that_breaks_the_head_keeps_the_original() {
    // `$2` of a one-group regex expands to nothing: the target becomes empty.
    let mut f = rules(&[("http-rewrite-url", ".*:$2")]);
    let m = run(&mut f, GET).expect("kept");
    assert_eq!(&m.raw[..], GET);
    assert_eq!(f.stats().rewrite_errors, 1);
}

#[test]
fn filters_run_before_rewrites() {
    let mut f = rules(&[
        ("http-set-header", "X-Session: zzz"),
        ("http-allow-header", "X-Session: ^abc"),
    ]);
    assert!(run(&mut f, GET).is_some());
}

#[test]
fn fnv1a32_matches_the_reference_vectors() {
    assert_eq!(sample::fnv1a32(b""), 0x811c_9dc5);
    assert_eq!(sample::fnv1a32(b"a"), 0xe40c_292c);
    assert_eq!(sample::fnv1a32(b"foobar"), 0xbf9c_f968);
}

#[test]
fn header_limiter_is_consistent_and_keeps_about_its_share() {
    let mut f = rules(&[("http-header-limiter", "X-Session: 10%")]);
    let mut kept = 0;
    for i in 0..10_000 {
        let raw = format!("GET / HTTP/1.1\r\nx-session: user-{i}\r\n\r\n");
        let first = run(&mut f, raw.as_bytes()).is_some();
        // Same value, same decision, regardless of header name case or repetition.
        let again = format!("GET /other HTTP/1.1\r\nX-SESSION: user-{i}\r\n\r\n");
        assert_eq!(first, run(&mut f, again.as_bytes()).is_some());
        kept += usize::from(first);
    }
    assert!((700..=1300).contains(&kept), "kept {kept} of 10000");
}

#[test]
fn limiters_let_requests_without_the_value_through() {
    let mut f = rules(&[
        ("http-header-limiter", "X-Session: 0%"),
        ("http-param-limiter", "uid: 0%"),
    ]);
    assert!(run(&mut f, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_some());
    assert!(run(&mut f, b"GET /?uid=1 HTTP/1.1\r\nHost: a\r\n\r\n").is_none());
    assert_eq!(f.stats().limiter_missing, 1);
    assert_eq!(f.stats().dropped_by_rule.param_limiter, 1);
    let mut all = rules(&[("http-header-limiter", "X-Session: 100%")]);
    assert!(run(&mut all, GET).is_some());
}

#[test]
fn param_limiter_decodes_values() {
    assert_eq!(
        sample::query_param("/p?a=1&user%5Bid%5D=j%2Bdoe%40x.io&b", "user[id]"),
        Some(b"j+doe@x.io".to_vec())
    );
    assert_eq!(
        sample::query_param("/p?q=a+b%20c", "q"),
        Some(b"a b c".to_vec())
    );
    assert_eq!(sample::query_param("/p?flag&x=1", "flag"), Some(Vec::new()));
    assert_eq!(sample::query_param("/p?x=1#uid=2", "uid"), None);
    assert_eq!(sample::query_param("/p", "uid"), None);
    assert_eq!(sample::decode(b"100%-%zz%4"), b"100%-%zz%4".to_vec());

    let mut f = rules(&[("http-param-limiter", "email: 50%")]);
    let mut kept = 0;
    for i in 0..200 {
        let plain = format!("GET /s?email=u{i}@x.io HTTP/1.1\r\n\r\n");
        let encoded = format!("GET /s?x=1&email=u{i}%40x.io HTTP/1.1\r\n\r\n");
        let lower = format!("GET /s?email=u{i}%40x%2eio HTTP/1.1\r\n\r\n");
        let a = run(&mut f, plain.as_bytes()).is_some();
        assert_eq!(a, run(&mut f, encoded.as_bytes()).is_some());
        assert_eq!(a, run(&mut f, lower.as_bytes()).is_some());
        kept += usize::from(a);
    }
    assert!(kept > 0 && kept < 200);
}

#[test]
fn responses_of_dropped_requests_are_dropped() {
    let mut f = rules(&[("http-allow-method", "GET")]);
    assert!(matches!(f.apply(msg(1, CHUNKED)), Verdict::Drop));
    assert!(matches!(f.apply(msg(2, GET)), Verdict::Keep(_)));
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert!(matches!(f.apply(msg(1, resp)), Verdict::Drop));
    assert!(matches!(f.apply(msg(2, resp)), Verdict::Keep(_)));
    // A response answers once; the id is forgotten.
    assert!(matches!(f.apply(msg(1, resp)), Verdict::Keep(_)));
    assert_eq!(f.stats().dropped_responses, 1);
}

#[test]
fn dropped_ids_are_bounded() {
    let mut f = rules(&[("http-allow-method", "GET")]);
    for id in 0..(DROPPED_IDS as u64 + 10) {
        assert!(matches!(f.apply(msg(id, CHUNKED)), Verdict::Drop));
    }
    assert_eq!(f.dropped.len(), DROPPED_IDS);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert!(matches!(f.apply(msg(0, resp)), Verdict::Keep(_)));
    assert!(matches!(
        f.apply(msg(DROPPED_IDS as u64, resp)),
        Verdict::Drop
    ));
}

#[test]
fn empty_filters_pass_everything() {
    let mut f = Filters::new(Vec::new());
    assert!(f.is_empty());
    assert!(run(&mut f, GET).is_some_and(|m| &m.raw[..] == GET));
}

#[test]
fn parse_rule_errors_name_the_problem() {
    let e = parse_rule("http-allow-url", "^/api/(").expect_err("bad regex");
    assert!(e.contains("^/api/(") && e.contains("regex"), "{e}");
    let e = parse_rule("http-allow-header", "X-A: [z-a]").expect_err("bad regex");
    assert!(e.contains("[z-a]"), "{e}");
    let e = parse_rule("http-rewrite-header", "Host: a").expect_err("no comma");
    assert!(e.contains("replacement"), "{e}");
    assert!(parse_rule("http-rewrite-url", "no-colon").is_err());
    assert!(parse_rule("http-rewrite-url", "^/a:/b c").is_err());
    assert!(parse_rule("http-set-header", "X-A: 1\r\nX-B: 2").is_err());
    assert!(parse_rule("http-set-header", "Content-Length: 5").is_err());
    assert!(parse_rule("http-rewrite-header", "transfer-encoding: a,b").is_err());
    assert!(parse_rule("http-set-header", "Bad Name: 1").is_err());
    assert!(parse_rule("http-header-limiter", "X-A: 101%").is_err());
    assert!(parse_rule("http-header-limiter", "X-A: ten").is_err());
    assert!(parse_rule("http-allow-method", "").is_err());
    assert!(parse_rule("http-nope", "x")
        .expect_err("unknown")
        .contains("http-nope"));
    assert!(matches!(
        parse_rule("http-param-limiter", "user[id]: 25"),
        Ok(Rule::HashParam(n, 25)) if n == "user[id]"
    ));
    assert!(matches!(
        parse_rule("http-rewrite-header", " Host :  (.*),x$1"),
        Ok(Rule::RewriteHeader(n, re, to)) if n == "Host" && re.as_str() == "(.*)" && to == "x$1"
    ));
}

/// GoReplay's own test: `customer3:welcome` matches `^customer[0-9].*`.
#[test]
fn basic_auth_filter_matches_the_decoded_credentials() {
    let mut f = rules(&[("http-basic-auth-filter", "^customer[0-9].*")]);
    let req = |auth: &str| {
        format!("POST /post HTTP/1.1\r\nContent-Length: 7\r\nAuthorization: {auth}\r\n\r\na=1&b=2")
    };
    assert!(run(&mut f, req("Basic Y3VzdG9tZXIzOndlbGNvbWU=").as_bytes()).is_some());
    // Scheme in any case, padding left out.
    assert!(run(&mut f, req("basic Y3VzdG9tZXIzOndlbGNvbWU").as_bytes()).is_some());
    // homer:simpson
    assert!(run(&mut f, req("Basic aG9tZXI6c2ltcHNvbg==").as_bytes()).is_none());
    // Not Basic, not base64, absent: dropped (GoReplay lets the first and last through).
    assert!(run(&mut f, req("Bearer Y3VzdG9tZXIzOndlbGNvbWU=").as_bytes()).is_none());
    assert!(run(&mut f, req("Basic !!!").as_bytes()).is_none());
    assert!(run(&mut f, GET).is_none());
    assert_eq!(f.stats().dropped_by_rule.basic_auth, 4);
    assert_eq!(f.stats().passed, 2);
}

#[test]
fn set_param_overwrites_every_occurrence_or_appends() {
    let set = |target: &str| query::set_param(target, "api_key", "1");
    assert_eq!(set("/p"), "/p?api_key=1");
    assert_eq!(set("/p?"), "/p?api_key=1");
    assert_eq!(set("/p?a=2"), "/p?a=2&api_key=1");
    assert_eq!(set("/p?a=2&"), "/p?a=2&api_key=1");
    assert_eq!(set("/p?api_key=9&a=2"), "/p?api_key=1&a=2");
    assert_eq!(set("/p?api_key&x_api_key=3"), "/p?api_key=1&x_api_key=3");
    assert_eq!(set("/p?api_key=9&api%5Fkey=8"), "/p?api_key=1&api%5Fkey=1");
    assert_eq!(set("/p?a=1#frag"), "/p?a=1&api_key=1#frag");
    assert_eq!(set("http://h/p?api_key=0"), "http://h/p?api_key=1");
}

#[test]
fn set_param_rewrites_the_request_line_only() {
    let mut f = rules(&[("http-set-param", " api_key = 1 ")]);
    let m = run(&mut f, GET);
    assert_eq!(
        raw_of(&m),
        &b"GET /api/users?id=42&sort=asc&api_key=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.5\r\nX-Session: abc123\r\nAccept: */*\r\n\r\n"[..]
    );
    assert!(
        matches!(&m.expect("kept").kind, Kind::Request { target, .. } if target.ends_with("&api_key=1"))
    );
    for bad in ["noequals", "=1", "a&b=1", "a=1&b=2", "a=x y", "a=1#x"] {
        assert!(parse_rule("http-set-param", bad).is_err(), "{bad}");
    }
}

#[test]
fn realip_header_is_set_before_the_middleware_from_the_client_address() {
    let mut f = rules(&[("http-realip-header", "X-Real-IP")]);
    let m = f.intake(msg(
        1,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 6.6.6.6\r\n\r\n",
    ));
    assert_eq!(
        &m.raw[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 127.0.0.1\r\n\r\n"
    );
    let m = f.intake(msg(2, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_eq!(
        &m.raw[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 127.0.0.1\r\n\r\n"
    );
    // Not a filter or rewrite: apply() leaves it alone.
    assert!(run(&mut f, GET).is_some_and(|m| &m.raw[..] == GET));
    // A message with no client address (saved traffic) is left as it is.
    let mut saved = msg(3, GET);
    saved.flow = crate::http::unknown_flow();
    assert_eq!(&f.intake(saved).raw[..], GET);
    // Responses are not touched.
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(&f.intake(msg(4, resp)).raw[..], resp);
    assert!(parse_rule("http-realip-header", "Bad Name").is_err());
    assert!(parse_rule("http-realip-header", "Content-Length").is_err());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn prettify_dechunks_and_gunzips_request_bodies() {
    let mut f = Filters::new(vec![Rule::Prettify]);
    let m = f.intake(msg(1, CHUNKED));
    assert_eq!(
        &m.raw[..],
        &b"POST /v1/orders HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"[..]
    );
    assert_eq!(m.body_offset, m.raw.len() - 7);
    let body = gzip(b"hello, prettified world");
    let mut raw = format!(
        "POST /u HTTP/1.1\r\nHost: a\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let m = f.intake(msg(2, &raw));
    assert_eq!(
        &m.raw[..],
        &b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 23\r\n\r\nhello, prettified world"[..]
    );
    // Both: gzip inside chunks.
    let mut raw = b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n".to_vec();
    raw.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let m = f.intake(msg(3, &raw));
    assert_eq!(
        &m.raw[..],
        &b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 23\r\n\r\nhello, prettified world"[..]
    );
    // Nothing to decode: the same bytes.
    assert_eq!(&f.intake(msg(4, GET)).raw[..], GET);
    assert_eq!(f.stats().prettified, 3);
    // Not gzip after all: kept as it came, counted.
    let bad = b"POST /u HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(&f.intake(msg(5, bad)).raw[..], &bad[..]);
    assert_eq!(f.stats().prettify_errors, 1);
    // Responses are left as captured.
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
    assert_eq!(&f.intake(msg(6, resp)).raw[..], &resp[..]);
}

#[test]
fn stats_serialize() {
    fn is_serialize<T: serde::Serialize>(_: &T) {}
    is_serialize(Filters::new(Vec::new()).stats());
}

proptest! {
    /// Whatever the rewrites do to the head, the body bytes are never touched and the
    /// re-parsed fields describe the new bytes.
    #[test]
    fn rewrites_never_touch_the_body(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        path in "/[a-z0-9/]{0,20}",
        value in "[ -~&&[^\r\n]]{0,20}",
    ) {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nX-V: {}\r\nContent-Length: {}\r\n\r\n",
            value.trim(), body.len()
        ).into_bytes();
        raw.extend_from_slice(&body);
        let mut f = rules(&[
            ("http-set-header", "X-New: 1"),
            ("http-rewrite-url", "^/(.*)$:/mirror/$1"),
            ("http-rewrite-header", "X-V: (.+),<$1>"),
        ]);
        let orig = msg(1, &raw);
        let Verdict::Keep(m) = f.apply(orig.clone()) else { panic!("dropped") };
        prop_assert_eq!(&m.body()[..], &body[..]);
        let Kind::Request { target, .. } = &m.kind else { panic!("not a request") };
        prop_assert_eq!(target.clone(), format!("/mirror{path}"));
        prop_assert_eq!(&m.raw[m.body_offset..], &body[..]);
        prop_assert_eq!(m.header("x-new").map(|v| v.to_vec()), Some(b"1".to_vec()));
    }
}
