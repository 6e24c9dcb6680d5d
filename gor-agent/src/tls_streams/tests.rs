use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::capture::tls::record::{TlsConnKey, TlsEvent, TlsRecord};
use crate::stream::Flow;

fn flow() -> Flow {
    Flow {
        client: "10.0.0.2:40000".parse().unwrap(),
        server: "10.0.0.1:443".parse().unwrap(),
    }
}

fn key(generation: u64) -> TlsConnKey {
    TlsConnKey {
        tgid: 7,
        ssl: 0x55,
        generation,
    }
}

fn data(generation: u64, dir: Direction, pos: u64, bytes: &'static [u8], fresh: bool) -> TlsRecord {
    TlsRecord {
        key: key(generation),
        ts_ns: 100 + pos,
        flow: flow(),
        fresh,
        event: TlsEvent::Data {
            dir,
            pos,
            bytes: Bytes::from_static(bytes),
        },
    }
}

fn close(generation: u64, end: [u64; 2]) -> TlsRecord {
    TlsRecord {
        key: key(generation),
        ts_ns: 1_000,
        flow: flow(),
        fresh: true,
        event: TlsEvent::Close { end },
    }
}

struct Harness {
    streams: TlsStreams,
    next_id: Cell<u64>,
    out: Vec<StreamEvent>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            streams: TlsStreams::new(Duration::from_secs(60), 100),
            next_id: Cell::new(1),
            out: Vec::new(),
        }
    }

    fn push(&mut self, r: TlsRecord) {
        let ids = &self.next_id;
        let open = || {
            let id = ids.get();
            ids.set(id + 1);
            id
        };
        self.streams.push(r, &open, &mut self.out);
    }

    /// The events, as short strings.
    fn events(&mut self) -> Vec<String> {
        self.out
            .drain(..)
            .map(|e| match e {
                StreamEvent::Open {
                    conn, midstream, ..
                } => format!("open {conn} mid={midstream}"),
                StreamEvent::Data {
                    conn,
                    dir,
                    offset,
                    bytes,
                    ..
                } => format!(
                    "data {conn} {} {offset} {}",
                    dir.short(),
                    String::from_utf8_lossy(&bytes)
                ),
                StreamEvent::Gap {
                    conn,
                    dir,
                    offset,
                    len,
                    ..
                } => format!("gap {conn} {} {offset}+{len}", dir.short()),
                StreamEvent::Skipped { .. } => unreachable!("TLS records are never snapped"),
                StreamEvent::End {
                    conn, dir, reason, ..
                } => {
                    format!("end {conn} {} {}", dir.short(), reason.as_str())
                }
                StreamEvent::Close { conn, .. } => format!("close {conn}"),
            })
            .collect()
    }
}

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

#[test]
fn a_fresh_connection_streams_in_order_and_ends_with_its_socket() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"GET / ", true));
    h.push(data(1, C2S, 6, b"HTTP/1.1", true));
    h.push(data(1, S2C, 0, b"HTTP/1.1 200", true));
    h.push(close(1, [14, 12]));
    assert_eq!(
        h.events(),
        [
            "open 1 mid=false",
            "data 1 c2s 0 GET / ",
            "data 1 c2s 6 HTTP/1.1",
            "data 1 s2c 0 HTTP/1.1 200",
            "end 1 c2s fin",
            "end 1 s2c fin",
            "close 1"
        ]
    );
    assert_eq!(h.streams.stats().connections_closed, 1);
    assert_eq!(h.streams.connections(), 0);
}

#[test]
fn lost_records_are_gaps_also_at_the_end() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"abc", true));
    h.push(data(1, C2S, 10, b"xyz", true));
    h.push(close(1, [20, 0]));
    assert_eq!(
        h.events(),
        [
            "open 1 mid=false",
            "data 1 c2s 0 abc",
            "gap 1 c2s 3+7",
            "data 1 c2s 10 xyz",
            "gap 1 c2s 13+7",
            "end 1 c2s fin",
            "end 1 s2c fin",
            "close 1"
        ]
    );
    assert_eq!(h.streams.stats().gaps, 2);
    assert_eq!(h.streams.stats().gap_bytes, 14);
}

#[test]
fn a_connection_joined_late_is_midstream() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"dy\r\n", false));
    assert_eq!(h.events(), ["open 1 mid=true", "data 1 c2s 0 dy\r\n"]);
    assert_eq!(h.streams.stats().connections_midstream, 1);
}

#[test]
fn a_reused_ssl_starts_a_new_connection_and_ends_the_old() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"one", true));
    h.push(data(2, C2S, 0, b"two", true));
    // A record of the first generation after the second began: late, not a connection.
    h.push(data(1, S2C, 0, b"late", true));
    assert_eq!(
        h.events(),
        [
            "open 1 mid=false",
            "data 1 c2s 0 one",
            "end 1 c2s fin",
            "end 1 s2c fin",
            "close 1",
            "open 2 mid=false",
            "data 2 c2s 0 two",
        ]
    );
    assert_eq!(h.streams.stats().connections_replaced, 1);
    assert_eq!(h.streams.stats().late_records, 1);
}

#[test]
fn records_after_the_close_are_late() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"one", true));
    h.push(close(1, [3, 0]));
    h.push(data(1, S2C, 0, b"after", true));
    assert_eq!(h.events().len(), 5);
    assert_eq!(h.streams.stats().late_records, 1);
    assert_eq!(h.streams.connections(), 0);
}

#[test]
fn idle_connections_expire_and_the_rest_end_at_finish() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"a", true));
    h.streams.expire(100 + 59_000_000_000, &mut h.out);
    assert_eq!(h.events().len(), 2, "not idle yet");
    h.streams.expire(100 + 61_000_000_000, &mut h.out);
    assert_eq!(h.events(), ["end 1 c2s idle", "end 1 s2c idle", "close 1"]);
    h.push(data(5, C2S, 0, b"b", true));
    h.streams.finish(0, &mut h.out);
    assert_eq!(
        h.events()[2..],
        ["end 2 c2s source-end", "end 2 s2c source-end", "close 2"]
    );
}

#[test]
fn the_connection_limit_evicts_the_least_recent() {
    let mut h = Harness::new();
    h.streams = TlsStreams::new(Duration::from_secs(60), 1);
    h.push(data(1, C2S, 0, b"a", true));
    let mut r = data(1, C2S, 0, b"b", true);
    r.key.ssl = 0x66;
    h.push(r);
    let ev = h.events();
    assert_eq!(
        ev[2..5],
        ["end 1 c2s evicted", "end 1 s2c evicted", "close 1"]
    );
    assert_eq!(h.streams.stats().connections_evicted, 1);
}

#[test]
fn a_connection_that_expired_goes_on_midstream_with_its_next_record() {
    let mut h = Harness::new();
    h.push(data(1, C2S, 0, b"GET /1 HTTP/1.1\r\n\r\n", true));
    h.streams.expire(100 + 61_000_000_000, &mut h.out);
    h.push(data(1, C2S, 19, b"GET /2 HTTP/1.1\r\n\r\n", true));
    h.push(data(1, S2C, 40, b"HTTP/1.1 200", true));
    let ev = h.events();
    assert_eq!(
        ev[5..],
        [
            "open 2 mid=true",
            "data 2 c2s 19 GET /2 HTTP/1.1\r\n\r\n",
            "data 2 s2c 40 HTTP/1.1 200"
        ],
        "{ev:?}"
    );
    assert_eq!(h.streams.stats().late_records, 0);
    assert_eq!(h.streams.stats().gaps, 0);
}
