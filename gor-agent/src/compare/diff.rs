//! The rules of a comparison, the differences it finds and the verdict on one exchange.

use serde_json::{json, Value};

use super::body::{self, DecodedBody};
use super::headers::{self, IgnoreHeaders};
use super::json::{self as json_diff, JsonPaths};
use crate::http::{HttpMessage, Kind};

/// What is compared, and how much.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub ignore_headers: IgnoreHeaders,
    pub ignore_json: JsonPaths,
    /// Decoded bytes of each body compared; a body that decodes to more is not compared.
    pub max_body: usize,
    /// Differences kept per exchange (the verdict says when more were found).
    pub max_differences: usize,
}

/// The default [`Rules::max_body`]: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The default [`Rules::max_differences`].
pub const DEFAULT_MAX_DIFFERENCES: usize = 50;

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ignore_headers: IgnoreHeaders::default(),
            ignore_json: JsonPaths::default(),
            max_body: DEFAULT_MAX_BODY,
            max_differences: DEFAULT_MAX_DIFFERENCES,
        }
    }
}

/// What part of the response differed, in the precedence of [`Verdict::outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiffKind {
    Status,
    Body,
    Headers,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Status => "status",
            DiffKind::Headers => "headers",
            DiffKind::Body => "body",
        }
    }
}

/// How a JSON value differs: `Added` is present in staging's body only, `Removed` in
/// production's only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Changed,
    Added,
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Changed => "changed",
            Change::Added => "added",
            Change::Removed => "removed",
        }
    }
}

/// One difference between production's and staging's responses.
#[derive(Clone, Debug, PartialEq)]
pub enum Difference {
    Status {
        production: u16,
        staging: u16,
    },
    /// A header (lowercase name) present on one side only (`None` on the other) or with
    /// different values (trimmed, in order, duplicates kept). For `set-cookie` under the
    /// ignore rule, the values are the sorted cookie names.
    Header {
        name: String,
        production: Option<Vec<String>>,
        staging: Option<Vec<String>>,
    },
    /// A JSON body value at `path` (`$.items[2].price`); the side where it is absent is
    /// `None`.
    Json {
        path: String,
        change: Change,
        production: Option<Value>,
        staging: Option<Value>,
    },
    /// Bodies compared byte for byte (decoded). `first_difference` is the offset of the
    /// first byte that differs, `None` when one body is a prefix of the other (the lengths
    /// then tell the difference).
    Body {
        production_len: u64,
        staging_len: u64,
        first_difference: Option<u64>,
    },
}

impl Difference {
    pub fn kind(&self) -> DiffKind {
        match self {
            Difference::Status { .. } => DiffKind::Status,
            Difference::Header { .. } => DiffKind::Headers,
            Difference::Json { .. } | Difference::Body { .. } => DiffKind::Body,
        }
    }

    /// The entry of the diffs file's `differences` list.
    pub fn to_json(&self) -> Value {
        match self {
            Difference::Status {
                production,
                staging,
            } => json!({"kind": "status", "production": production, "staging": staging}),
            Difference::Header {
                name,
                production,
                staging,
            } => {
                json!({"kind": "header", "name": name, "production": production, "staging": staging})
            }
            Difference::Json {
                path,
                change,
                production,
                staging,
            } => json!({
                "kind": "json",
                "path": path,
                "change": change.as_str(),
                "production": production,
                "staging": staging,
            }),
            Difference::Body {
                production_len,
                staging_len,
                first_difference,
            } => json!({
                "kind": "body",
                "production_len": production_len,
                "staging_len": staging_len,
                "first_difference": first_difference,
            }),
        }
    }
}

/// The result of comparing one exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Every kind that differed, in the order status, headers, body, each once.
    pub kinds: Vec<DiffKind>,
    /// At most [`Rules::max_differences`], in the order status, headers (by name), body.
    pub differences: Vec<Difference>,
    /// More differences were found than kept.
    pub truncated: bool,
    pub production: DecodedBody,
    pub staging: DecodedBody,
    /// The side's body is JSON (by its Content-Type) and parsed; only looked at when the
    /// bodies were compared.
    pub production_json: bool,
    pub staging_json: bool,
    /// Both bodies were whole (not cut by the results' body limit or by
    /// [`Rules::max_body`]), so they were compared; otherwise only status and headers were.
    pub body_compared: bool,
}

impl Verdict {
    /// Equal after the rules. A response whose body was not compared can still match: the
    /// caller tells that case apart with [`Verdict::body_compared`].
    pub fn is_match(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The primary kind, by precedence status > body > headers; `None` for a match.
    pub fn outcome(&self) -> Option<DiffKind> {
        [DiffKind::Status, DiffKind::Body, DiffKind::Headers]
            .into_iter()
            .find(|k| self.kinds.contains(k))
    }
}

/// Compares production's response with staging's (both of kind `Response`; another kind
/// counts as status 0). `staging_complete` is false when staging's wire body was cut at
/// the results' body limit; production's is always whole.
pub fn compare(
    production: &HttpMessage,
    staging: &HttpMessage,
    staging_complete: bool,
    rules: &Rules,
) -> Verdict {
    let max = rules.max_differences;
    let mut differences = Vec::new();
    let (p_status, s_status) = (status(production), status(staging));
    if p_status != s_status {
        differences.push(Difference::Status {
            production: p_status,
            staging: s_status,
        });
    }
    headers::diff(
        production.headers(),
        staging.headers(),
        &rules.ignore_headers,
        &mut differences,
    );
    // Kinds are taken before the list is cut: a kind cut from the list still differed.
    let mut kinds: Vec<DiffKind> = differences.iter().map(Difference::kind).collect();
    let mut truncated = differences.len() > max;
    differences.truncate(max);

    let p_body = body::decode(production, true, rules.max_body);
    let s_body = body::decode(staging, staging_complete, rules.max_body);
    let body_compared = p_body.complete && s_body.complete;
    let (mut production_json, mut staging_json) = (false, false);
    if body_compared && p_body.bytes == s_body.bytes && p_body.error == s_body.error {
        // Equal bytes are equal values: no JSON to parse (most exchanges, on a good day).
        let json = |m: &HttpMessage, b: &DecodedBody| {
            b.error.is_none()
                && !b.bytes.is_empty()
                && m.header("content-type").is_some_and(is_json_type)
        };
        (production_json, staging_json) = (json(production, &p_body), json(staging, &s_body));
    } else if body_compared {
        let room = max - differences.len();
        let p_value = parse_json(production, &p_body);
        let s_value = parse_json(staging, &s_body);
        (production_json, staging_json) = (p_value.is_some(), s_value.is_some());
        let mut found = Vec::new();
        match (p_value, s_value) {
            (Some(p), Some(s)) => {
                // With the list full, one difference still tells whether the body differs.
                let cut = json_diff::diff(&p, &s, &rules.ignore_json, &mut found, room.max(1));
                truncated |= cut || found.len() > room;
            }
            _ => {
                found.extend(byte_diff(&p_body, &s_body));
                truncated |= found.len() > room;
            }
        }
        if !found.is_empty() {
            kinds.push(DiffKind::Body);
        }
        found.truncate(room);
        differences.extend(found);
    }
    let kinds = [DiffKind::Status, DiffKind::Headers, DiffKind::Body]
        .into_iter()
        .filter(|k| kinds.contains(k))
        .collect();
    Verdict {
        kinds,
        differences,
        truncated,
        production: p_body,
        staging: s_body,
        production_json,
        staging_json,
        body_compared,
    }
}

fn status(msg: &HttpMessage) -> u16 {
    match msg.kind {
        Kind::Response { status, .. } => status,
        Kind::Request { .. } => 0,
    }
}

/// The body as a JSON value, if the message says it is JSON and it parses. An empty body
/// is not JSON: two empty bodies compare equal byte for byte.
fn parse_json(msg: &HttpMessage, body: &DecodedBody) -> Option<Value> {
    let content_type = msg.header("content-type")?;
    if !is_json_type(content_type) || body.error.is_some() {
        return None;
    }
    serde_json::from_slice(&body.bytes).ok()
}

/// `application/json` or `application/<x>+json`, parameters ignored, any case.
fn is_json_type(value: &[u8]) -> bool {
    let value = String::from_utf8_lossy(value);
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.strip_prefix("application/") {
        Some("json") => true,
        Some(sub) => sub.len() > "+json".len() && sub.ends_with("+json"),
        None => false,
    }
}

fn byte_diff(production: &DecodedBody, staging: &DecodedBody) -> Option<Difference> {
    let (p, s) = (&production.bytes[..], &staging.bytes[..]);
    if p == s {
        return None;
    }
    let first = p.iter().zip(s).position(|(a, b)| a != b);
    Some(Difference::Body {
        production_len: production.len,
        staging_len: staging.len,
        first_difference: first.map(|i| i as u64),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;
    use crate::envelope::{Clock, MessageId};
    use crate::http::{parse_whole, unknown_flow};
    use crate::stream::Direction;

    fn response(raw: Vec<u8>) -> HttpMessage {
        let raw = Bytes::from(raw);
        let head = parse_whole(Direction::ServerToClient, &raw).expect("a response head");
        HttpMessage {
            id: MessageId::parse("test"),
            flow: unknown_flow(),
            clock: Clock::Realtime,
            dir: Direction::ServerToClient,
            offset: 0,
            first_ts_ns: 0,
            last_ts_ns: 0,
            raw,
            kind: head.kind,
            headers: head.headers,
            body_offset: head.body_offset,
            latency_ns: Some(1),
        }
    }

    fn with_body(head: &str, body: &[u8]) -> HttpMessage {
        let mut raw = head.replace('\n', "\r\n").into_bytes();
        raw.extend_from_slice(body);
        response(raw)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const JSON: &[u8] = br#"{"user":{"name":"ann"},"items":[{"id":1,"price":5}],"timestamp":1}"#;

    fn production() -> HttpMessage {
        with_body(
            &format!(
                "HTTP/1.1 200 OK\nDate: Mon, 01 Dec 2025 10:00:00 GMT\nContent-Type: application/json\nContent-Length: {}\n\n",
                JSON.len()
            ),
            JSON,
        )
    }

    #[test]
    fn a_gzip_chunked_staging_body_equal_to_production_matches() {
        let gz = gzip(JSON);
        let mut body = format!("{:x}\r\n", 10).into_bytes();
        body.extend_from_slice(&gz[..10]);
        body.extend_from_slice(format!("\r\n{:x}\r\n", gz.len() - 10).as_bytes());
        body.extend_from_slice(&gz[10..]);
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        let staging = with_body(
            "HTTP/1.1 200 OK\nDate: Mon, 01 Dec 2025 10:00:09 GMT\nServer: staging\ncontent-type:  application/json \nTransfer-Encoding: chunked\nContent-Encoding: gzip\nConnection: keep-alive\n\n",
            &body,
        );
        let v = compare(&production(), &staging, true, &Rules::default());
        assert!(v.is_match(), "{:?}", v.differences);
        assert_eq!(v.outcome(), None);
        assert!(v.body_compared && v.production_json && v.staging_json);
        assert_eq!(v.staging.bytes, JSON);
        assert_eq!(v.staging.encoding.as_deref(), Some("gzip"));
        assert_eq!(v.production.encoding, None);
    }

    #[test]
    fn status_headers_and_json_differences_in_order() {
        let body = br#"{"user":{"name":"bob"},"items":[{"id":2,"price":5}],"timestamp":2}"#;
        let staging = with_body(
            &format!(
                "HTTP/1.1 500 Internal Server Error\nContent-Type: application/problem+json\nX-Extra: 1\nContent-Length: {}\n\n",
                body.len()
            ),
            body,
        );
        let rules = Rules {
            ignore_json: JsonPaths::parse("$.timestamp,$.items[*].id").unwrap(),
            ..Rules::default()
        };
        let v = compare(&production(), &staging, true, &rules);
        let got: Vec<Value> = v.differences.iter().map(Difference::to_json).collect();
        assert_eq!(
            got,
            [
                json!({"kind": "status", "production": 200, "staging": 500}),
                json!({"kind": "header", "name": "content-type", "production": ["application/json"], "staging": ["application/problem+json"]}),
                json!({"kind": "header", "name": "x-extra", "production": null, "staging": ["1"]}),
                json!({"kind": "json", "path": "$.user.name", "change": "changed", "production": "ann", "staging": "bob"}),
            ]
        );
        assert_eq!(
            v.kinds,
            [DiffKind::Status, DiffKind::Headers, DiffKind::Body]
        );
        assert_eq!(v.outcome(), Some(DiffKind::Status));
        assert!(!v.truncated);

        // With room for two differences, the body still counts as differing.
        let rules = Rules {
            max_differences: 2,
            ..rules
        };
        let v = compare(&production(), &staging, true, &rules);
        assert_eq!((v.differences.len(), v.truncated), (2, true));
        assert_eq!(
            v.kinds,
            [DiffKind::Status, DiffKind::Headers, DiffKind::Body]
        );
        let rules = Rules {
            max_differences: 0,
            ..rules
        };
        let v = compare(&production(), &staging, true, &rules);
        assert!(v.differences.is_empty() && v.truncated);
        assert_eq!(v.outcome(), Some(DiffKind::Status));
    }

    #[test]
    fn non_json_bodies_compare_byte_for_byte() {
        let p = with_body(
            "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\n",
            b"hello",
        );
        let s = with_body(
            "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\n",
            b"help!",
        );
        let v = compare(&p, &s, true, &Rules::default());
        assert_eq!(
            v.differences,
            [Difference::Body {
                production_len: 5,
                staging_len: 5,
                first_difference: Some(3)
            }]
        );
        assert_eq!(v.outcome(), Some(DiffKind::Body));
        assert_eq!(
            v.differences[0].to_json(),
            json!({"kind": "body", "production_len": 5, "staging_len": 5, "first_difference": 3})
        );
        // A prefix: no differing byte, the lengths differ.
        let s = with_body(
            "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 3\n\n",
            b"hel",
        );
        let v = compare(&p, &s, true, &Rules::default());
        assert_eq!(
            v.differences,
            [Difference::Body {
                production_len: 5,
                staging_len: 3,
                first_difference: None
            }]
        );
        // JSON that parses on one side only: bytes.
        let json = |body: &[u8]| {
            let head = format!(
                "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {}\n\n",
                body.len()
            );
            with_body(&head, body)
        };
        let v = compare(
            &json(b"{\"a\": 1}"),
            &json(b"{\"a\": 1"),
            true,
            &Rules::default(),
        );
        assert!(v.production_json && !v.staging_json);
        assert_eq!(
            v.differences,
            [Difference::Body {
                production_len: 8,
                staging_len: 7,
                first_difference: None
            }]
        );
        let v = compare(
            &json(b"{\"a\": 1}"),
            &json(b"{\"a\": 2}"),
            true,
            &Rules::default(),
        );
        assert_eq!(v.differences.len(), 1);
        assert!(matches!(&v.differences[0], Difference::Json { path, .. } if path == "$.a"));
        // Neither parses: equal bytes match.
        assert!(compare(&json(b"hello"), &json(b"hello"), true, &Rules::default()).is_match());
        // Pretty-printed and compact JSON are equal.
        assert!(compare(
            &json(b"{\"a\":[1,2]}"),
            &json(b"{ \"a\" : [ 1, 2.0 ] }\n"),
            true,
            &Rules::default()
        )
        .is_match());
        // Empty bodies on both sides are equal, whatever the codings claim.
        let p = with_body("HTTP/1.1 304 Not Modified\nContent-Encoding: gzip\n\n", b"");
        let s = with_body("HTTP/1.1 304 Not Modified\nContent-Length: 0\n\n", b"");
        assert!(compare(&p, &s, true, &Rules::default()).is_match());
    }

    #[test]
    fn a_cut_body_is_not_compared_but_status_and_headers_are() {
        let s = with_body(
            "HTTP/1.1 200 OK\nContent-Type: application/json\nX-Extra: 1\nContent-Length: 1000\n\n",
            &JSON[..10],
        );
        let v = compare(&production(), &s, false, &Rules::default());
        assert!(!v.body_compared && !v.staging.complete);
        assert_eq!(v.kinds, [DiffKind::Headers]);
        // A production body beyond max_body is not compared either.
        let rules = Rules {
            max_body: 10,
            ..Rules::default()
        };
        let s = with_body(
            &format!(
                "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: {}\n\n",
                JSON.len()
            ),
            b"{\"different\": \"body of the same length...........................\"}",
        );
        let v = compare(&production(), &s, true, &rules);
        assert!(!v.body_compared && v.is_match());
        assert!(!compare(&production(), &s, true, &Rules::default()).is_match());
    }

    #[test]
    fn json_content_types() {
        for (t, want) in [
            (&b"application/json"[..], true),
            (b"Application/JSON; charset=utf-8", true),
            (b"application/vnd.api+json", true),
            (b"application/+json", false),
            (b"text/json", false),
            (b"application/jsonp", false),
        ] {
            assert_eq!(is_json_type(t), want, "{}", String::from_utf8_lossy(t));
        }
    }
}
