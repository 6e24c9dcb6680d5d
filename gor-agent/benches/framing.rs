//! Reassembly + HTTP framing throughput on a realistic mix (small GETs, JSON POSTs,
//! chunked responses), on one core, against a baseline measured in the same run: copying
//! the same payload bytes once (the least any capture path must do).
//!
//! `cargo xtask bench` (or `cargo bench -p gor-agent --bench framing`). Criterion prints
//! time per iteration and throughput; the ratio framing/baseline is the figure to track.

use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gor_agent::{
    capture::Segment,
    http::{HttpFramer, Limits},
    reassembly::{self, Reassembler},
    stream::{Direction, Flow},
};
use gor_common::tcp_flags::{ACK, FIN, SYN};

const CONNECTIONS: usize = 200;
const EXCHANGES_PER_CONN: usize = 20;
/// Bytes per segment: loopback and GRO deliver large segments; 16 KiB is one kernel chunk.
const SEGMENT: usize = 16 * 1024;

fn exchange(i: usize) -> (Vec<u8>, Vec<u8>) {
    match i % 3 {
        0 => (
            format!("GET /api/items/{i}?page=2&sort=desc HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\nCookie: session=abcdef0123456789\r\n\r\n").into_bytes(),
            {
                let body = "x".repeat(600);
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
            },
        ),
        1 => {
            let body = format!("{{\"user\":{i},\"items\":[{}],\"note\":\"{}\"}}", "1,2,3,4,5,6,7,8,9,10,".repeat(20).trim_end_matches(','), "y".repeat(400));
            (
                format!("POST /api/orders HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(),
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"id\":12345678}\n".to_vec(),
            )
        }
        _ => {
            let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..8 {
                resp.extend_from_slice(format!("400\r\n{}\r\n", "z".repeat(1024)).as_bytes());
            }
            resp.extend_from_slice(b"0\r\n\r\n");
            (format!("GET /api/feed/{i} HTTP/1.1\r\nHost: shop.example\r\nAccept: application/json\r\n\r\n").into_bytes(), resp)
        }
    }
}

/// Segments of every connection, interleaved across connections, and the payload bytes.
fn workload() -> (Vec<Segment>, usize, usize) {
    let mut per_conn: Vec<Vec<Segment>> = Vec::new();
    let mut bytes = 0;
    let mut messages = 0;
    for c in 0..CONNECTIONS {
        let flow = Flow {
            client: SocketAddr::from((
                [10, 0, (c / 250) as u8, (c % 250) as u8 + 1],
                40000 + c as u16,
            )),
            server: SocketAddr::from(([10, 1, 0, 1], 80)),
        };
        let (mut cseq, mut sseq) = (1000u32, 9000u32);
        let seg = |dir, seq, ack, flags, payload: &[u8]| Segment {
            ts_ns: 0,
            flow,
            dir,
            seq,
            ack,
            flags,
            payload: Bytes::copy_from_slice(payload),
        };
        let mut segs = vec![
            seg(Direction::ClientToServer, cseq, 0, SYN, b""),
            seg(Direction::ServerToClient, sseq, cseq + 1, SYN | ACK, b""),
        ];
        cseq += 1;
        sseq += 1;
        for e in 0..EXCHANGES_PER_CONN {
            let (req, resp) = exchange(c * EXCHANGES_PER_CONN + e);
            for part in req.chunks(SEGMENT) {
                segs.push(seg(Direction::ClientToServer, cseq, sseq, ACK, part));
                cseq = cseq.wrapping_add(part.len() as u32);
            }
            for part in resp.chunks(SEGMENT) {
                segs.push(seg(Direction::ServerToClient, sseq, cseq, ACK, part));
                sseq = sseq.wrapping_add(part.len() as u32);
            }
            bytes += req.len() + resp.len();
            messages += 2;
        }
        segs.push(seg(Direction::ClientToServer, cseq, sseq, FIN | ACK, b""));
        segs.push(seg(
            Direction::ServerToClient,
            sseq,
            cseq + 1,
            FIN | ACK,
            b"",
        ));
        per_conn.push(segs);
    }
    // Round-robin across connections, as concurrent traffic arrives.
    let mut all = Vec::new();
    let longest = per_conn.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for c in &per_conn {
            if let Some(s) = c.get(i) {
                all.push(s.clone());
            }
        }
    }
    (all, bytes, messages)
}

fn bench(c: &mut Criterion) {
    let (segments, bytes, messages) = workload();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("baseline_copy_payload", |b| {
        b.iter_batched(
            || segments.clone(),
            |segs| {
                let mut out = Vec::with_capacity(bytes);
                for s in segs {
                    out.extend_from_slice(&s.payload);
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("reassembly_and_framing", |b| {
        b.iter_batched(
            || segments.clone(),
            |segs| {
                let mut r = Reassembler::new(reassembly::Limits::default());
                let mut f = HttpFramer::new(Limits::default());
                let (mut events, mut msgs) = (Vec::new(), Vec::new());
                let mut n = 0;
                for s in segs {
                    r.push(s, &mut events);
                    for ev in events.drain(..) {
                        f.on_event(&ev, &mut msgs);
                    }
                    n += msgs.len();
                    msgs.clear();
                }
                assert_eq!(n, messages);
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    println!(
        "workload: {} segments, {bytes} payload bytes, {messages} messages per iteration",
        segments.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
