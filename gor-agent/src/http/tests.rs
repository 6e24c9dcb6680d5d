//! Tests of the HTTP framer: one per framing rule, plus property tests that split
//! invariance holds and that arbitrary bytes never break the memory bound or produce a
//! message that is not exactly a slice of the input.

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::stream::{Direction, EndReason, Flow, StreamEvent};

const C: Direction = Direction::ClientToServer;
const S: Direction = Direction::ServerToClient;

fn flow() -> Flow {
    Flow {
        client: SocketAddr::from(([10, 0, 0, 1], 40000)),
        server: SocketAddr::from(([10, 0, 0, 2], 80)),
    }
}

/// Drives one connection: keeps offsets per direction and a clock that advances by 1 ms
/// per event, and collects the messages.
struct Harness {
    f: HttpFramer,
    out: Vec<HttpMessage>,
    off: [u64; 2],
    ts: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(Limits::default(), false)
    }

    fn with(limits: Limits, midstream: bool) -> Self {
        let mut h = Harness {
            f: HttpFramer::new(limits),
            out: Vec::new(),
            off: [0; 2],
            ts: 0,
        };
        h.ev(StreamEvent::Open {
            conn: 1,
            flow: flow(),
            ts_ns: 0,
            midstream,
        });
        h
    }

    fn ev(&mut self, ev: StreamEvent) {
        self.f.on_event(&ev, &mut self.out);
    }

    fn data(&mut self, dir: Direction, bytes: &[u8]) -> &mut Self {
        self.ts += 1_000_000;
        let offset = self.off[dir.index()];
        self.off[dir.index()] += bytes.len() as u64;
        let bytes = Bytes::copy_from_slice(bytes);
        self.ev(StreamEvent::Data {
            conn: 1,
            dir,
            offset,
            ts_ns: self.ts,
            bytes,
        });
        self
    }

    fn c(&mut self, bytes: &[u8]) -> &mut Self {
        self.data(C, bytes)
    }

    fn s(&mut self, bytes: &[u8]) -> &mut Self {
        self.data(S, bytes)
    }

    fn gap(&mut self, dir: Direction, len: u64) -> &mut Self {
        self.ts += 1_000_000;
        let offset = self.off[dir.index()];
        self.off[dir.index()] += len;
        self.ev(StreamEvent::Gap {
            conn: 1,
            dir,
            offset,
            len,
            ts_ns: self.ts,
        });
        self
    }

    fn end(&mut self, dir: Direction, reason: EndReason) -> &mut Self {
        self.ev(StreamEvent::End {
            conn: 1,
            dir,
            ts_ns: self.ts,
            reason,
        });
        self
    }

    fn close(&mut self) -> &mut Self {
        self.ev(StreamEvent::Close {
            conn: 1,
            ts_ns: self.ts,
        });
        self
    }

    fn stats(&self) -> &HttpStats {
        self.f.stats()
    }

    fn dir(&self, dir: Direction) -> Vec<&HttpMessage> {
        self.out.iter().filter(|m| m.dir == dir).collect()
    }
}

fn method(m: &HttpMessage) -> &str {
    match &m.kind {
        Kind::Request { method, .. } => method,
        Kind::Response { .. } => "",
    }
}

fn target(m: &HttpMessage) -> &str {
    match &m.kind {
        Kind::Request { target, .. } => target,
        Kind::Response { .. } => "",
    }
}

fn status(m: &HttpMessage) -> u16 {
    match &m.kind {
        Kind::Response { status, .. } => *status,
        Kind::Request { .. } => 0,
    }
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const OK5: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn content_length_request_and_response() {
    let mut h = Harness::new();
    let req = b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    h.c(req).s(OK5);
    assert_eq!(h.out.len(), 2);
    assert_eq!(&h.out[0].raw[..], req);
    assert_eq!(&h.out[0].body()[..], b"abc");
    assert_eq!(method(&h.out[0]), "POST");
    assert_eq!(&h.out[1].raw[..], OK5);
    assert_eq!(&h.out[1].body()[..], b"hello");
    assert_eq!(h.stats().requests, 1);
    assert_eq!(h.stats().responses, 1);
}

#[test]
fn request_emitted_before_response_arrives() {
    let mut h = Harness::new();
    h.c(GET);
    assert_eq!(h.out.len(), 1);
    h.c(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab");
    assert_eq!(h.out.len(), 1);
    h.c(b"cd");
    assert_eq!(h.out.len(), 2);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let mut h = Harness::new();
    h.c(GET);
    let resp: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
        5;name=val;x=\"q\"\r\nhello\r\nA \r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n";
    h.s(resp).s(OK5);
    let resps = h.dir(S);
    assert_eq!(resps.len(), 2);
    assert_eq!(&resps[0].raw[..], resp);
    assert_eq!(&resps[1].raw[..], OK5);
}

#[test]
fn chunked_request_split_byte_by_byte() {
    let mut h = Harness::new();
    let req: &[u8] = b"PUT /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    for b in req.iter().chain(GET) {
        h.c(&[*b]);
    }
    assert_eq!(h.out.len(), 2);
    assert_eq!(&h.out[0].raw[..], req);
    assert_eq!(&h.out[1].raw[..], GET);
}

#[test]
fn chunked_not_last_request_is_incomplete() {
    let mut h = Harness::new();
    h.c(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxxxx");
    assert!(h.out.is_empty());
    assert_eq!(h.stats().incomplete_requests, 1);
}

#[test]
fn close_delimited_response_on_fin() {
    let mut h = Harness::new();
    h.c(GET).s(b"HTTP/1.0 200 OK\r\n\r\nsome ").s(b"body");
    assert_eq!(h.dir(S).len(), 0);
    h.end(S, EndReason::Fin);
    let r = h.dir(S);
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0].body()[..], b"some body");
    assert_eq!(r[0].id, h.out[0].id);
}

#[test]
fn close_delimited_response_on_reset_is_incomplete() {
    let mut h = Harness::new();
    h.c(GET)
        .s(b"HTTP/1.1 200 OK\r\n\r\nsome")
        .end(S, EndReason::Reset)
        .close();
    assert_eq!(h.dir(S).len(), 0);
    assert_eq!(h.stats().incomplete_responses, 1);
    assert_eq!(h.f.connections(), 0);
}

#[test]
fn te_without_chunked_response_is_close_delimited() {
    let mut h = Harness::new();
    h.c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz")
        .end(S, EndReason::Fin);
    assert_eq!(&h.dir(S)[0].body()[..], b"zzz");
}

#[test]
fn no_body_for_head_204_304() {
    let mut h = Harness::new();
    h.c(b"HEAD /h HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /m HTTP/1.1\r\n\r\n");
    // Content-Length on a HEAD response describes the GET body, which is not sent.
    h.s(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    h.s(b"HTTP/1.1 204 No Content\r\n\r\n");
    h.s(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
    let reqs = h.dir(C);
    let resps = h.dir(S);
    assert_eq!(resps.len(), 3);
    for (q, r) in reqs.iter().zip(&resps) {
        assert_eq!(q.id, r.id);
        assert_eq!(r.body_offset, r.raw.len());
    }
    assert_eq!(status(resps[2]), 304);
}

#[test]
fn expect_100_continue_with_odd_reason() {
    let mut h = Harness::new();
    h.c(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    h.s(b"HTTP/1.1 100 Go Ahead\r\n\r\n");
    h.c(b"data");
    h.s(OK5);
    assert_eq!(h.stats().interim_responses, 1);
    let (reqs, resps) = (h.dir(C), h.dir(S));
    assert_eq!(reqs.len(), 1);
    assert_eq!(&reqs[0].body()[..], b"data");
    assert_eq!(resps.len(), 1);
    assert_eq!(status(resps[0]), 200);
    assert_eq!(resps[0].id, reqs[0].id);
    assert_eq!(h.stats().unpaired_responses, 0);
}

#[test]
fn early_hints_103_skipped() {
    let mut h = Harness::new();
    h.c(GET).s(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.dir(S).len(), 1);
    assert_eq!(status(h.dir(S)[0]), 200);
    assert_eq!(h.stats().interim_responses, 1);
}

#[test]
fn pipelining_in_one_event() {
    let mut h = Harness::new();
    let mut reqs = Vec::new();
    for i in 0..4 {
        reqs.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    h.c(&reqs);
    let mut resps = Vec::new();
    for i in 0..4 {
        resps.extend_from_slice(
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").as_bytes(),
        );
    }
    h.s(&resps);
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!((q.len(), r.len()), (4, 4));
    for i in 0..4 {
        assert_eq!(target(q[i]), format!("/{i}"));
        assert_eq!(&r[i].body()[..], i.to_string().as_bytes());
        assert_eq!(q[i].id, r[i].id);
    }
    let ids: std::collections::HashSet<crate::envelope::MessageId> =
        q.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn http10_messages() {
    let mut h = Harness::new();
    h.c(b"GET / HTTP/1.0\r\n\r\n")
        .s(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    let (q, r) = (h.dir(C), h.dir(S));
    assert!(matches!(q[0].kind, Kind::Request { version: 0, .. }));
    assert!(matches!(
        r[0].kind,
        Kind::Response {
            version: 0,
            status: 200,
            ..
        }
    ));
}

#[test]
fn header_case_order_and_duplicates() {
    let mut h = Harness::new();
    h.c(b"GET / HTTP/1.1\r\nX-B: 1\r\nhost: h\r\nX-B: 2\r\nCoOkIe: a=b\r\n\r\n");
    let m = &h.out[0];
    let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-B", "host", "X-B", "CoOkIe"]);
    let values: Vec<&[u8]> = m.headers().iter().map(|(_, v)| v).collect();
    assert_eq!(values, [&b"1"[..], b"h", b"2", b"a=b"]);
    assert_eq!(m.header("cookie"), Some(&b"a=b"[..]));
}

#[test]
fn websocket_upgrade_tunnels_both_directions() {
    let mut h = Harness::new();
    let req: &[u8] = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    h.c(req);
    // A frame sent before the 101 is seen is held, then counted as tunnelled.
    h.c(b"\x81\x05hello");
    h.s(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi");
    h.c(b"GET / HTTP/1.1\r\n\r\n").s(OK5);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(h.dir(S).len(), 1);
    assert_eq!(status(h.dir(S)[0]), 101);
    assert_eq!(h.dir(S)[0].id, h.dir(C)[0].id);
    assert_eq!(h.stats().upgraded_connections, 1);
    assert_eq!(h.stats().tunneled_bytes, 7 + 4 + 18 + OK5.len() as u64);
    assert_eq!(h.f.buffered_bytes(), 0);
}

#[test]
fn refused_upgrade_continues_parsing() {
    let mut h = Harness::new();
    h.c(b"GET /ws HTTP/1.1\r\nUpgrade: h2c\r\n\r\n");
    h.c(GET);
    assert_eq!(h.dir(C).len(), 1, "held until the upgrade is decided");
    h.s(OK5);
    assert_eq!(h.dir(C).len(), 2);
    h.s(OK5);
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!(r.len(), 2);
    assert_eq!((&q[0].id, &q[1].id), (&r[0].id, &r[1].id));
    assert_eq!(h.stats().upgraded_connections, 0);
}

#[test]
fn connect_tunnel() {
    let mut h = Harness::new();
    h.c(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    h.s(b"HTTP/1.1 200 Connection Established\r\n\r\n");
    h.c(b"\x16\x03\x01\x02\x00\x01").s(b"\x16\x03\x03");
    assert_eq!(h.out.len(), 2);
    assert_eq!(h.out[1].raw.len(), h.out[1].body_offset);
    assert_eq!(h.stats().upgraded_connections, 1);
    assert_eq!(h.stats().tunneled_bytes, 9);
    assert_eq!(h.stats().not_http_bytes, 0);
}

#[test]
fn refused_connect_continues() {
    let mut h = Harness::new();
    h.c(b"CONNECT x:443 HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 0\r\n\r\n")
        .c(GET)
        .s(OK5);
    assert_eq!(h.out.len(), 4);
    assert_eq!(h.stats().upgraded_connections, 0);
}

#[test]
fn gap_in_body_loses_only_that_message() {
    let mut h = Harness::new();
    h.c(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab")
        .gap(C, 5)
        .c(b"cde")
        .c(GET);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(&h.dir(C)[0].raw[..], GET);
    assert_eq!(h.stats().incomplete_requests, 1);
    // The lost request still owes a response: the next response pairs with GET's.
    h.s(OK5).s(OK5);
    let r = h.dir(S);
    assert_eq!(r[1].id, h.dir(C)[0].id);
    assert_eq!(h.stats().unpaired_responses, 1);
}

#[test]
fn gap_in_chunked_body_response() {
    let mut h = Harness::new();
    h.c(GET).c(GET);
    h.s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nab")
        .gap(S, 3)
        .s(b"xyz\r\n0\r\n\r\n");
    h.s(OK5);
    assert_eq!(h.dir(S).len(), 1);
    assert_eq!(h.dir(S)[0].id, h.dir(C)[1].id);
    assert_eq!(h.stats().incomplete_responses, 1);
}

#[test]
fn gap_across_message_end_resyncs() {
    let mut h = Harness::new();
    h.c(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
        .gap(C, 40)
        .c(b"ignored tail\r\n");
    h.c(b"GET /next HTTP/1.1\r\n\r\n");
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(target(h.dir(C)[0]), "/next");
    assert_eq!(h.stats().resyncs, 1);
}

#[test]
fn response_gap_drops_stale_pending_requests() {
    let mut h = Harness::new();
    h.c(b"GET /1 HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe");
    h.c(b"GET /2 HTTP/1.1\r\n\r\n");
    // Loses the rest of response 1 and all of response 2's start.
    h.gap(S, 40).s(b"ing\r\n");
    h.c(b"GET /3 HTTP/1.1\r\n\r\n").s(OK5);
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, q[2].id);
    assert_eq!(h.stats().unanswered_requests, 1);
    assert_eq!(h.stats().incomplete_responses, 1);
}

#[test]
fn midstream_start_skips_half_message() {
    let mut h = Harness::with(Limits::default(), true);
    h.c(b"ength: 3\r\n\r\nabc").c(GET);
    h.s(b"lo world").s(OK5);
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!(q.len(), 1);
    assert_eq!(&q[0].raw[..], GET);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, q[0].id);
    assert_eq!(h.stats().resyncs, 2);
}

#[test]
fn midstream_start_at_message_boundary() {
    let mut h = Harness::with(Limits::default(), true);
    h.c(GET).s(OK5);
    assert_eq!(h.out.len(), 2);
    assert_eq!(h.out[0].id, h.out[1].id);
}

#[test]
fn midstream_response_to_unseen_request_is_unpaired() {
    let mut h = Harness::with(Limits::default(), true);
    h.c(b"x: y\r\n\r\n").s(OK5).c(GET).s(OK5);
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!(r.len(), 2);
    assert_ne!(r[0].id, q[0].id);
    assert_eq!(r[1].id, q[0].id);
    assert_eq!(h.stats().unpaired_responses, 1);
}

fn small() -> Limits {
    Limits {
        max_head: 256,
        max_body: 64,
    }
}

#[test]
fn oversize_body_skipped_next_fine() {
    let mut h = Harness::with(small(), false);
    h.c(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    for _ in 0..10 {
        h.c(&[b'z'; 100]);
        assert!(h.f.buffered_bytes() <= 256);
    }
    h.c(GET);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(&h.dir(C)[0].raw[..], GET);
    assert_eq!(h.stats().oversize_messages, 1);
}

#[test]
fn oversize_chunked_body_skipped() {
    let mut h = Harness::with(small(), false);
    h.c(GET).c(GET);
    h.s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        h.s(b"20\r\n0123456789abcdef0123456789abcdef\r\n");
    }
    h.s(b"0\r\n\r\n").s(OK5);
    assert_eq!(h.dir(S).len(), 1);
    assert_eq!(h.dir(S)[0].id, h.dir(C)[1].id);
    assert_eq!(h.stats().oversize_messages, 1);
}

#[test]
fn oversize_head_resyncs() {
    let mut h = Harness::with(small(), false);
    h.c(b"GET / HTTP/1.1\r\n");
    for _ in 0..10 {
        h.c(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        assert!(h.f.buffered_bytes() <= 257);
    }
    h.c(b"\r\n").c(GET);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(&h.dir(C)[0].raw[..], GET);
    assert_eq!(h.stats().oversize_messages, 1);
}

#[test]
fn too_many_headers_is_oversize() {
    let mut h = Harness::new();
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..1100 {
        req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    h.c(&req).c(GET);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(h.stats().oversize_messages, 1);
}

#[test]
fn many_headers_below_limit_parse() {
    let mut h = Harness::new();
    let mut req = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..500 {
        req.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    h.c(&req);
    assert_eq!(h.out[0].headers.len(), 500);
}

#[test]
fn tls_client_hello_is_dropped_with_bounded_memory() {
    let mut h = Harness::with(small(), false);
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0..2000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    for chunk in hello.chunks(97) {
        h.c(chunk);
        h.s(chunk);
        assert!(h.f.buffered_bytes() <= 2 * 256);
    }
    assert!(h.out.is_empty());
    assert!(h.stats().not_http_bytes > 0);
}

#[test]
fn garbage_then_request_resyncs() {
    let mut h = Harness::new();
    h.c(b"\x16\x03\x01garbage\r\nmore junk\r\n").c(GET);
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(&h.dir(C)[0].raw[..], GET);
}

#[test]
fn latency_and_id_sharing() {
    let mut h = Harness::new();
    h.c(GET); // ts 1 ms
    h.s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"); // 2 ms
    h.s(b"hello"); // 3 ms
    let (q, r) = (h.dir(C), h.dir(S));
    assert_eq!(r[0].id, q[0].id);
    assert_eq!(r[0].first_ts_ns, 2_000_000);
    assert_eq!(r[0].last_ts_ns, 3_000_000);
    assert_eq!(r[0].latency_ns, Some(2_000_000));
    assert_eq!(q[0].latency_ns, None);
}

#[test]
fn unpaired_response_gets_fresh_id() {
    let mut h = Harness::new();
    h.s(OK5).c(GET).s(OK5);
    assert_eq!(h.stats().unpaired_responses, 1);
    let ids: std::collections::HashSet<crate::envelope::MessageId> =
        h.out.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 2);
}

#[test]
fn unanswered_requests_counted_at_close() {
    let mut h = Harness::new();
    h.c(GET).c(GET).s(OK5);
    h.c(b"GET /partial HTTP/1.1\r\n")
        .end(C, EndReason::Fin)
        .end(S, EndReason::Fin)
        .close();
    assert_eq!(h.stats().unanswered_requests, 1);
    assert_eq!(h.stats().incomplete_requests, 1);
    assert_eq!(h.f.connections(), 0);
    assert_eq!(h.f.buffered_bytes(), 0);
}

#[test]
fn invalid_content_length_is_incomplete() {
    let mut h = Harness::new();
    h.c(GET)
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    assert_eq!(h.dir(S).len(), 0);
    assert_eq!(h.stats().incomplete_responses, 1);
}

#[test]
fn leading_empty_lines_ignored() {
    let mut h = Harness::new();
    h.c(b"\r\n").c(GET);
    assert_eq!(&h.out[0].raw[..], GET);
}

// ---- property tests ---------------------------------------------------------------

#[derive(Clone, Debug)]
enum BodyKind {
    None,
    Length(Vec<u8>),
    Chunked(Vec<Vec<u8>>, bool),
}

fn body_kind() -> impl Strategy<Value = BodyKind> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        Just(BodyKind::None),
        bytes.clone().prop_map(BodyKind::Length),
        (
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..4),
            any::<bool>()
        )
            .prop_map(|(c, t)| BodyKind::Chunked(c, t)),
    ]
}

fn write_body(out: &mut Vec<u8>, head: &str, body: &BodyKind) {
    out.extend_from_slice(head.as_bytes());
    match body {
        BodyKind::None => out.extend_from_slice(b"\r\n"),
        BodyKind::Length(b) => {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
        }
        BodyKind::Chunked(chunks, trailer) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for c in chunks {
                out.extend_from_slice(format!("{:x};e=1\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n");
            if *trailer {
                out.extend_from_slice(b"X-T: 1\r\n");
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// One exchange: request method and body, response status and body.
fn exchange() -> impl Strategy<Value = (u8, BodyKind, u16, BodyKind)> {
    (
        0u8..3,
        body_kind(),
        prop_oneof![Just(200u16), Just(204), Just(404), Just(100)],
        body_kind(),
    )
}

/// Builds the request and response streams, and the response stream without its interim
/// responses (which are not part of any emitted message).
fn streams(ex: &[(u8, BodyKind, u16, BodyKind)]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (mut c, mut s, mut finals) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (m, qb, status, rb)) in ex.iter().enumerate() {
        let method = ["GET", "POST", "HEAD"][*m as usize];
        write_body(
            &mut c,
            &format!("{method} /{i} HTTP/1.1\r\nHost: h\r\n"),
            qb,
        );
        if *status == 100 {
            s.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let status = (*status).max(200);
        let mut r = Vec::new();
        match (status, method, rb) {
            (204, _, _) | (_, "HEAD", _) => r.extend_from_slice(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\n").as_bytes(),
            ),
            // Without a length a response runs to the close: only the last one can.
            (_, _, BodyKind::None) if i + 1 < ex.len() => write_body(
                &mut r,
                &format!("HTTP/1.1 {status} X\r\n"),
                &BodyKind::Length(Vec::new()),
            ),
            _ => write_body(&mut r, &format!("HTTP/1.1 {status} X\r\n"), rb),
        }
        s.extend_from_slice(&r);
        finals.extend_from_slice(&r);
    }
    (c, s, finals)
}

/// Feeds both streams, cut at the given points, requests first.
fn run(
    c: &[u8],
    s: &[u8],
    cuts_c: &[usize],
    cuts_s: &[usize],
    limits: Limits,
) -> (Vec<HttpMessage>, HttpStats) {
    let mut h = Harness::with(limits, false);
    for (dir, bytes, cuts) in [(C, c, cuts_c), (S, s, cuts_s)] {
        let mut points: Vec<usize> = cuts.iter().map(|&x| x % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        points.dedup();
        for w in points.windows(2) {
            h.data(dir, &bytes[w[0]..w[1]]);
        }
    }
    h.end(C, EndReason::Fin).end(S, EndReason::Fin).close();
    let stats = h.stats().clone();
    (h.out, stats)
}

/// Messages without timestamps (which depend on how the input was split).
fn strip(msgs: &[HttpMessage]) -> Vec<(Direction, crate::envelope::MessageId, Bytes, u64)> {
    msgs.iter()
        .map(|m| (m.dir, m.id.clone(), m.raw.clone(), m.offset))
        .collect()
}

fn concat(msgs: &[HttpMessage], dir: Direction) -> Vec<u8> {
    msgs.iter()
        .filter(|m| m.dir == dir)
        .flat_map(|m| m.raw.to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn splits_do_not_change_messages(
        ex in proptest::collection::vec(exchange(), 1..6),
        cuts_c in proptest::collection::vec(any::<usize>(), 0..12),
        cuts_s in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let (c, s, finals) = streams(&ex);
        let (whole, stats) = run(&c, &s, &[], &[], Limits::default());
        prop_assert_eq!(stats.requests as usize, ex.len());
        prop_assert_eq!(stats.responses as usize, ex.len());
        prop_assert_eq!(concat(&whole, C), c.clone());
        prop_assert_eq!(concat(&whole, S), finals);
        let q: Vec<crate::envelope::MessageId> = whole.iter().filter(|m| m.dir == C).map(|m| m.id.clone()).collect();
        let r: Vec<crate::envelope::MessageId> = whole.iter().filter(|m| m.dir == S).map(|m| m.id.clone()).collect();
        prop_assert_eq!(q, r);
        let (split, _) = run(&c, &s, &cuts_c, &cuts_s, Limits::default());
        prop_assert_eq!(strip(&split), strip(&whole));
    }

    #[test]
    fn every_split_point_and_byte_by_byte(ex in proptest::collection::vec(exchange(), 1..3)) {
        let (c, s, _) = streams(&ex);
        let (whole, _) = run(&c, &s, &[], &[], Limits::default());
        for k in 0..=c.len().max(s.len()) {
            let (split, _) = run(&c, &s, &[k], &[k], Limits::default());
            prop_assert_eq!(strip(&split), strip(&whole));
        }
        let all_c: Vec<usize> = (0..c.len()).collect();
        let all_s: Vec<usize> = (0..s.len()).collect();
        let (bytewise, _) = run(&c, &s, &all_c, &all_s, Limits::default());
        prop_assert_eq!(strip(&bytewise), strip(&whole));
    }
}

#[derive(Clone, Debug)]
enum Piece {
    Garbage(Vec<u8>),
    /// A valid message, possibly cut short.
    Message(usize, BodyKind, usize),
    Gap(u64),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..60).prop_map(Piece::Garbage),
        proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'G')],
            0..10
        )
        .prop_map(Piece::Garbage),
        (0usize..6, body_kind(), any::<usize>()).prop_map(|(k, b, cut)| Piece::Message(k, b, cut)),
        (0usize..6, body_kind(), Just(usize::MAX))
            .prop_map(|(k, b, cut)| Piece::Message(k, b, cut)),
        (1u64..30).prop_map(Piece::Gap),
    ]
}

/// Builds a direction's event list (bytes, or gaps) from pieces.
fn build(dir: Direction, pieces: &[Piece]) -> Vec<Result<Vec<u8>, u64>> {
    let heads = match dir {
        Direction::ClientToServer => [
            "GET / HTTP/1.1\r\n",
            "POST /x HTTP/1.0\r\nA: b\r\n",
            "PUT /y HTTP/1.1\r\n",
            "HEAD / HTTP/1.1\r\n",
            "GET /w HTTP/1.1\r\nUpgrade: websocket\r\n",
            "CONNECT h:443 HTTP/1.1\r\n",
        ],
        Direction::ServerToClient => [
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 404 N\r\n",
            "HTTP/1.0 500 E\r\n",
            "HTTP/1.1 100 C\r\n",
            "HTTP/1.1 101 S\r\n",
            "HTTP/1.1 204 N\r\n",
        ],
    };
    pieces
        .iter()
        .map(|p| match p {
            Piece::Garbage(g) => Ok(g.clone()),
            Piece::Message(k, body, cut) => {
                let mut m = Vec::new();
                write_body(&mut m, heads[*k], body);
                if *cut != usize::MAX {
                    m.truncate(cut % (m.len() + 1));
                }
                Ok(m)
            }
            Piece::Gap(n) => Err(*n),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_is_safe(
        pc in proptest::collection::vec(piece(), 0..12),
        ps in proptest::collection::vec(piece(), 0..12),
        split in 1usize..50,
        midstream in any::<bool>(),
    ) {
        let limits = Limits { max_head: 128, max_body: 48 };
        let mut h = Harness::with(limits, midstream);
        let mut full: [Vec<Option<u8>>; 2] = [Vec::new(), Vec::new()];
        let events = [build(C, &pc), build(S, &ps)];
        let longest = events[0].len().max(events[1].len());
        for i in 0..longest {
            for dir in [C, S] {
                match events[dir.index()].get(i) {
                    Some(Ok(bytes)) => {
                        for chunk in bytes.chunks(split) {
                            h.data(dir, chunk);
                        }
                        full[dir.index()].extend(bytes.iter().map(|&b| Some(b)));
                    }
                    Some(Err(len)) => {
                        h.gap(dir, *len);
                        full[dir.index()].extend(std::iter::repeat_n(None, *len as usize));
                    }
                    None => {}
                }
                // Per direction: head + body, plus held request bytes and a resync tail.
                let bound = 2 * (2 * (limits.max_head + 1) + limits.max_body as usize);
                prop_assert!(h.f.buffered_bytes() <= bound);
            }
        }
        h.end(C, EndReason::Fin).end(S, EndReason::Fin).close();
        prop_assert_eq!(h.f.buffered_bytes(), 0);
        let mut last_end = [0u64; 2];
        for m in &h.out {
            let d = m.dir.index();
            let start = m.offset as usize;
            let end = start + m.raw.len();
            prop_assert!(m.offset >= last_end[d], "messages overlap");
            last_end[d] = end as u64;
            let expect: Vec<Option<u8>> = m.raw.iter().map(|&b| Some(b)).collect();
            prop_assert_eq!(&full[d][start..end], &expect[..]);
        }
    }
}

// ---- without responses (the kernel's response snap) ---------------------------------

impl Harness {
    fn without_responses() -> Self {
        let mut h = Harness::new();
        h.f = HttpFramer::new(Limits::default()).without_responses();
        h.ev(StreamEvent::Open {
            conn: 1,
            flow: flow(),
            ts_ns: 0,
            midstream: false,
        });
        h
    }

    fn snapped(&mut self, dir: Direction, len: u64) -> &mut Self {
        let offset = self.off[dir.index()];
        self.off[dir.index()] += len;
        self.ev(StreamEvent::Skipped {
            conn: 1,
            dir,
            offset,
            len,
            ts_ns: self.ts,
        });
        self
    }
}

#[test]
fn without_responses_requests_are_exact_and_responses_only_framed() {
    let mut h = Harness::without_responses();
    h.c(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    // The head and the first bytes of the body, the rest left out by the snap.
    h.s(b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\nabc");
    h.snapped(S, 8189);
    h.c(b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
    h.s(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(h.dir(S).len(), 0, "no response is emitted");
    let reqs = h.dir(C);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        &reqs[1].raw[..],
        b"POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
    );
    let s = h.stats();
    assert_eq!((s.requests, s.responses), (2, 2), "both responses framed");
    assert_eq!((s.incomplete_responses, s.snapped_heads), (0, 0));
    assert_eq!(h.f.buffered_bytes(), 0, "response bodies are not buffered");
}

#[test]
fn a_snap_over_the_next_response_head_resyncs_the_response_side_only() {
    let mut h = Harness::without_responses();
    h.c(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n");
    // Responses 1 and 2 coalesced in one packet: the snap cut into response 2's head.
    h.s(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 2");
    h.snapped(S, 40);
    h.s(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(h.dir(C).len(), 3, "requests are not affected");
    let s = h.stats();
    assert_eq!(s.snapped_heads, 1);
    assert_eq!(s.responses, 2, "responses 1 and 3 framed");
    assert_eq!(s.incomplete_responses, 0);
}

#[test]
fn without_responses_a_snapped_101_still_tunnels() {
    let mut h = Harness::without_responses();
    h.c(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    h.s(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02");
    h.snapped(S, 4000);
    h.c(b"\x81\x02hi");
    assert_eq!(h.dir(C).len(), 1);
    assert_eq!(h.stats().upgraded_connections, 1);
    assert_eq!(
        h.stats().not_http_bytes,
        0,
        "websocket frames are not taken for HTTP"
    );
}
