use proptest::prelude::*;

use super::*;

const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5000;

fn flow() -> Flow {
    Flow {
        client: "10.0.0.1:40000".parse().unwrap(),
        server: "10.0.0.2:80".parse().unwrap(),
    }
}

fn seg(dir: Direction, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Segment {
    Segment {
        ts_ns: 1,
        flow: flow(),
        dir,
        seq,
        ack,
        flags,
        payload: Bytes::copy_from_slice(payload),
        elided: 0,
    }
}

fn c2s(seq: u32, flags: u8, payload: &[u8]) -> Segment {
    seg(
        Direction::ClientToServer,
        seq,
        SERVER_ISN.wrapping_add(1),
        flags | ACK,
        payload,
    )
}

/// The bytes and gaps one direction delivered, checking that offsets are contiguous.
#[derive(Debug, Default, PartialEq)]
struct Delivered {
    bytes: Vec<u8>,
    gaps: Vec<(u64, u64)>,
    ends: Vec<EndReason>,
}

fn collect(events: &[StreamEvent], want: Direction) -> Delivered {
    let mut d = Delivered::default();
    let mut next = 0u64;
    for ev in events {
        match ev {
            StreamEvent::Data {
                dir, offset, bytes, ..
            } if *dir == want => {
                assert_eq!(*offset, next, "data offsets are contiguous");
                next += bytes.len() as u64;
                d.bytes.extend_from_slice(bytes);
            }
            StreamEvent::Gap {
                dir, offset, len, ..
            } if *dir == want => {
                assert_eq!(*offset, next, "gap offsets are contiguous");
                next += len;
                d.gaps.push((*offset, *len));
                d.bytes.extend(std::iter::repeat_n(0, *len as usize));
            }
            StreamEvent::End { dir, reason, .. } if *dir == want => d.ends.push(*reason),
            _ => {}
        }
    }
    d
}

fn run(segments: Vec<Segment>) -> (Vec<StreamEvent>, Reassembler) {
    let mut r = Reassembler::new(Limits::default());
    let mut out = Vec::new();
    for s in segments {
        r.push(s, &mut out);
    }
    (out, r)
}

/// Cuts `len` bytes into pieces at the given (sorted, deduplicated) cut points.
fn pieces(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| (w[0], w[1])).collect()
}

proptest! {
    /// Any segmentation, reordering, duplication and overlap reassembles to the original,
    /// wherever the sequence space starts (wrap-around included).
    #[test]
    fn any_delivery_order_gives_the_original(
        data in proptest::collection::vec(any::<u8>(), 1..4000),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        overlaps in proptest::collection::vec((any::<usize>(), 1usize..600), 0..10),
        dups in proptest::collection::vec(any::<usize>(), 0..10),
        order in any::<u64>(),
        isn in prop_oneof![any::<u32>(), (u32::MAX - 3000)..=u32::MAX],
    ) {
        let mut parts = pieces(data.len(), &cuts);
        for (start, len) in &overlaps {
            let s = start % data.len();
            parts.push((s, (s + len).min(data.len())));
        }
        let n = parts.len();
        for d in &dups {
            parts.push(parts[d % n]);
        }
        // A deterministic shuffle from the `order` seed.
        let mut rng = order | 1;
        for i in (1..parts.len()).rev() {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            parts.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let mut segs = vec![seg(Direction::ClientToServer, isn, 0, SYN, b"")];
        for (a, b) in parts {
            segs.push(c2s(isn.wrapping_add(1).wrapping_add(a as u32), 0, &data[a..b]));
        }
        segs.push(c2s(isn.wrapping_add(1).wrapping_add(data.len() as u32), FIN, b""));
        let (mut out, mut r) = run(segs);
        r.finish(2, &mut out);
        let d = collect(&out, Direction::ClientToServer);
        prop_assert!(d.gaps.is_empty());
        prop_assert_eq!(d.bytes, data);
        prop_assert_eq!(d.ends, vec![EndReason::Fin]);
        prop_assert_eq!(r.buffered_bytes(), 0);
    }

    /// Lost pieces are reported as gaps exactly where they were, and nothing else is lost.
    #[test]
    fn lost_pieces_are_gaps_at_their_offsets(
        data in proptest::collection::vec(any::<u8>(), 2..3000),
        cuts in proptest::collection::vec(any::<usize>(), 1..30),
        lost in proptest::collection::vec(any::<bool>(), 30),
        reverse in any::<bool>(),
        isn in any::<u32>(),
    ) {
        let parts = pieces(data.len(), &cuts);
        let mut kept = Vec::new();
        let mut want_gaps: Vec<(u64, u64)> = Vec::new();
        for (i, &(a, b)) in parts.iter().enumerate() {
            if lost[i % lost.len()] {
                match want_gaps.last_mut() {
                    Some((o, l)) if *o + *l == a as u64 => *l += (b - a) as u64,
                    _ => want_gaps.push((a as u64, (b - a) as u64)),
                }
            } else {
                kept.push((a, b));
            }
        }
        if reverse {
            kept.reverse();
        }
        let mut segs = vec![seg(Direction::ClientToServer, isn, 0, SYN, b"")];
        for (a, b) in kept {
            segs.push(c2s(isn.wrapping_add(1).wrapping_add(a as u32), 0, &data[a..b]));
        }
        segs.push(c2s(isn.wrapping_add(1).wrapping_add(data.len() as u32), FIN, b""));
        let (mut out, mut r) = run(segs);
        r.finish(2, &mut out);
        let d = collect(&out, Direction::ClientToServer);
        prop_assert_eq!(&d.gaps, &want_gaps);
        let mut expect = data.clone();
        for (o, l) in &want_gaps {
            expect[*o as usize..(*o + *l) as usize].fill(0);
        }
        prop_assert_eq!(d.bytes, expect);
    }
}

fn handshake() -> Vec<Segment> {
    vec![
        seg(Direction::ClientToServer, CLIENT_ISN, 0, SYN, b""),
        seg(
            Direction::ServerToClient,
            SERVER_ISN,
            CLIENT_ISN + 1,
            SYN | ACK,
            b"",
        ),
    ]
}

fn s2c(seq_off: u32, ack_off: u32, flags: u8, payload: &[u8]) -> Segment {
    seg(
        Direction::ServerToClient,
        SERVER_ISN + 1 + seq_off,
        CLIENT_ISN + 1 + ack_off,
        flags | ACK,
        payload,
    )
}

fn c2s_at(seq_off: u32, ack_off: u32, flags: u8, payload: &[u8]) -> Segment {
    seg(
        Direction::ClientToServer,
        CLIENT_ISN + 1 + seq_off,
        SERVER_ISN + 1 + ack_off,
        flags | ACK,
        payload,
    )
}

#[test]
fn a_request_and_response_with_fin_close_cleanly() {
    let mut segs = handshake();
    segs.push(c2s_at(0, 0, 0, b"GET / HTTP/1.1\r\n\r\n"));
    segs.push(s2c(0, 18, 0, b"HTTP/1.1 200 OK\r\n\r\n"));
    segs.push(c2s_at(18, 19, FIN, b""));
    segs.push(s2c(19, 19, FIN, b""));
    let (out, r) = run(segs);
    assert!(matches!(
        out[0],
        StreamEvent::Open {
            midstream: false,
            ..
        }
    ));
    assert_eq!(
        collect(&out, Direction::ClientToServer).bytes,
        b"GET / HTTP/1.1\r\n\r\n"
    );
    assert_eq!(
        collect(&out, Direction::ServerToClient).bytes,
        b"HTTP/1.1 200 OK\r\n\r\n"
    );
    assert!(matches!(out.last(), Some(StreamEvent::Close { .. })));
    assert_eq!(r.connections(), 0);
    assert_eq!(r.stats().connections_closed, 1);
}

#[test]
fn an_ack_beyond_what_was_seen_reports_the_gap_at_once() {
    let mut segs = handshake();
    segs.push(c2s_at(0, 0, 0, b"0123456789"));
    // bytes 10..20 never arrive
    segs.push(c2s_at(20, 0, 0, b"abcdefghij"));
    segs.push(s2c(0, 30, 0, b"ok"));
    let (out, r) = run(segs);
    let d = collect(&out, Direction::ClientToServer);
    assert_eq!(d.gaps, vec![(10, 10)]);
    assert_eq!(&d.bytes[20..], b"abcdefghij");
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn midstream_start_is_marked_and_counts_from_the_first_byte_seen() {
    let segs = vec![
        c2s_at(500, 700, 0, b"GET /b HTTP/1.1\r\n\r\n"),
        s2c(700, 519, 0, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ];
    let (out, r) = run(segs);
    assert!(matches!(
        out[0],
        StreamEvent::Open {
            midstream: true,
            ..
        }
    ));
    assert_eq!(
        collect(&out, Direction::ClientToServer).bytes,
        b"GET /b HTTP/1.1\r\n\r\n"
    );
    let s = collect(&out, Direction::ServerToClient);
    assert!(s.gaps.is_empty());
    assert_eq!(s.bytes, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(r.stats().connections_midstream, 1);
}

#[test]
fn rst_in_the_middle_ends_both_directions() {
    let mut segs = handshake();
    segs.push(c2s_at(
        0,
        0,
        0,
        b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
    ));
    segs.push(seg(
        Direction::ClientToServer,
        CLIENT_ISN + 1 + 44,
        0,
        RST,
        b"",
    ));
    let (out, r) = run(segs);
    assert_eq!(
        collect(&out, Direction::ClientToServer).ends,
        vec![EndReason::Reset]
    );
    assert_eq!(
        collect(&out, Direction::ServerToClient).ends,
        vec![EndReason::Reset]
    );
    assert_eq!(r.connections(), 0);
    // A late retransmission does not reopen it as a mid-stream connection.
    let mut r = r;
    let mut out = Vec::new();
    r.push(c2s_at(0, 0, 0, b"POST"), &mut out);
    assert!(out.is_empty());
    assert_eq!(r.stats().late_segments, 1);
}

#[test]
fn zero_window_probes_and_keepalives_add_nothing() {
    let mut segs = handshake();
    segs.push(c2s_at(0, 0, 0, b"hello"));
    // Linux probes a zero window with an already-acknowledged byte (snd_una - 1);
    // keepalives do the same with zero or one byte.
    segs.push(c2s_at(4, 0, 0, b"o"));
    segs.push(c2s_at(4, 0, 0, b""));
    segs.push(c2s_at(5, 0, 0, b" world"));
    let (out, r) = run(segs);
    assert_eq!(
        collect(&out, Direction::ClientToServer).bytes,
        b"hello world"
    );
    assert_eq!(r.stats().duplicate_bytes, 1);
}

#[test]
fn idle_connections_expire_and_holes_time_out() {
    let mut r = Reassembler::new(Limits {
        idle_timeout_ns: 10_000,
        hole_timeout_ns: 1_000,
        ..Limits::default()
    });
    let mut out = Vec::new();
    for s in handshake() {
        r.push(s, &mut out);
    }
    r.push(c2s_at(0, 0, 0, b"ab"), &mut out);
    r.push(c2s_at(4, 0, 0, b"ef"), &mut out);
    r.tick(500, &mut out);
    assert!(collect(&out, Direction::ClientToServer).gaps.is_empty());
    r.tick(1_500, &mut out);
    assert_eq!(collect(&out, Direction::ClientToServer).gaps, vec![(2, 2)]);
    r.tick(20_000, &mut out);
    assert_eq!(
        collect(&out, Direction::ClientToServer).ends,
        vec![EndReason::Idle]
    );
    assert_eq!(r.connections(), 0);
    assert_eq!(r.stats().connections_idle, 1);
}

#[test]
fn memory_is_bounded_per_connection() {
    let mut r = Reassembler::new(Limits {
        max_conn_buffer: 100,
        ..Limits::default()
    });
    let mut out = Vec::new();
    for s in handshake() {
        r.push(s, &mut out);
    }
    // A hole at 0..10, then 200 bytes behind it: the hole is given up, not held.
    for i in 0..20u32 {
        r.push(c2s_at(10 + i * 10, 0, 0, &[b'x'; 10]), &mut out);
        assert!(r.buffered_bytes() <= 100);
    }
    let d = collect(&out, Direction::ClientToServer);
    assert_eq!(d.gaps, vec![(0, 10)]);
    assert_eq!(d.bytes.len(), 210);
    assert!(r.stats().buffer_overflows >= 1);
}

#[test]
fn connections_beyond_the_limit_evict_the_least_recent() {
    let mut r = Reassembler::new(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let mut out = Vec::new();
    for port in 1..=3u16 {
        let mut s = c2s_at(0, 0, 0, b"x");
        s.flow.client.set_port(port);
        s.ts_ns = port as u64;
        r.push(s, &mut out);
    }
    assert_eq!(r.connections(), 2);
    assert_eq!(r.stats().connections_evicted, 1);
}

#[test]
fn a_new_syn_on_the_same_addresses_starts_a_new_connection() {
    let mut segs = handshake();
    segs.push(c2s_at(0, 0, 0, b"one"));
    segs.push(seg(Direction::ClientToServer, 90_000, 0, SYN, b""));
    segs.push(seg(Direction::ClientToServer, 90_001, 0, ACK, b"two"));
    let (out, r) = run(segs);
    let opens = out
        .iter()
        .filter(|e| matches!(e, StreamEvent::Open { .. }))
        .count();
    assert_eq!(opens, 2);
    assert_eq!(r.connections(), 1);
    let last = out.iter().rev().find_map(|e| match e {
        StreamEvent::Data { bytes, .. } => Some(bytes.clone()),
        _ => None,
    });
    assert_eq!(last.as_deref(), Some(&b"two"[..]));
}

fn snapped(mut s: Segment, elided: u32) -> Segment {
    s.elided = elided;
    s
}

#[test]
fn bytes_left_out_by_the_snap_are_skipped_in_order_not_lost() {
    let mut segs = handshake();
    segs.push(c2s_at(0, 0, 0, b"GET / HTTP/1.1\r\n\r\n"));
    // 10 bytes copied of a 100-byte packet, then the next packet: in order at once.
    segs.push(snapped(s2c(0, 18, 0, b"HTTP/1.1 2"), 90));
    // Out of order: the packet after the next arrives first.
    segs.push(snapped(s2c(200, 18, 0, b"CC"), 8));
    segs.push(snapped(s2c(100, 18, 0, b"BB"), 98));
    // A retransmission of the first packet, copied the same way: a duplicate.
    segs.push(snapped(s2c(0, 18, 0, b"HTTP/1.1 2"), 90));
    segs.push(s2c(210, 18, FIN, b""));
    let (out, r) = run(segs);
    let server: Vec<(u64, u64, bool)> = out
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Data {
                dir: Direction::ServerToClient,
                offset,
                bytes,
                ..
            } => Some((*offset, bytes.len() as u64, true)),
            StreamEvent::Skipped { offset, len, .. } => Some((*offset, *len, false)),
            _ => None,
        })
        .collect();
    assert_eq!(
        server,
        vec![
            (0, 10, true),
            (10, 90, false),
            (100, 2, true),
            (102, 98, false),
            (200, 2, true),
            (202, 8, false),
        ]
    );
    let s = r.stats();
    assert_eq!((s.gaps, s.snapped_bytes), (0, 196));
    assert_eq!(s.duplicate_bytes, 10);
    assert!(
        out.iter().any(|e| matches!(
            e,
            StreamEvent::End {
                dir: Direction::ServerToClient,
                reason: EndReason::Fin,
                ..
            }
        )),
        "the FIN after the snapped bytes ends the stream"
    );
}
