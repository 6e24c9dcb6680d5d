//! The traffic mix of the framing benchmark and of the allocation test, one definition for
//! both: small GETs with a 600-byte response, JSON POSTs, and GETs with an 8 KiB chunked
//! response, over many connections, as segments the way capture builds them from ring
//! records, interleaved across connections. Included by `benches/framing.rs` and
//! `tests/allocations.rs` with `#[path]`.

use std::net::SocketAddr;

use bytes::Bytes;
use gor_agent::{
    capture::Segment,
    stream::{Direction, Flow},
};
use gor_common::tcp_flags::{ACK, FIN, SYN};

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
pub fn workload(connections: usize, exchanges_per_conn: usize) -> (Vec<Segment>, usize, usize) {
    let mut per_conn: Vec<Vec<Segment>> = Vec::new();
    let mut bytes = 0;
    let mut messages = 0;
    for c in 0..connections {
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
            elided: 0,
        };
        let mut segs = vec![
            seg(Direction::ClientToServer, cseq, 0, SYN, b""),
            seg(Direction::ServerToClient, sseq, cseq + 1, SYN | ACK, b""),
        ];
        cseq += 1;
        sseq += 1;
        for e in 0..exchanges_per_conn {
            let (req, resp) = exchange(c * exchanges_per_conn + e);
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
    let mut iters: Vec<_> = per_conn.into_iter().map(Vec::into_iter).collect();
    loop {
        let before = all.len();
        all.extend(iters.iter_mut().filter_map(Iterator::next));
        if all.len() == before {
            return (all, bytes, messages);
        }
    }
}
