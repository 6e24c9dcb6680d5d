//! Decoding of the ring-buffer records written by `gor-ebpf` (a `ChunkHeader` followed by
//! `len` payload bytes). A record that does not decode is counted by the caller and skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use gor_common::{direction, ChunkHeader, CHUNK_HEADER_LEN, FAMILY_V4, FAMILY_V6};

use super::{flow_of, slab::Slab, Segment};
use crate::stream::Direction;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record announces {announced} payload bytes but carries {carried}")]
    Length { announced: usize, carried: usize },
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown direction {0}")]
    Direction(u8),
    #[error("unknown record kind {0}")]
    Kind(u8),
}

/// Decodes one record, copying its payload into `payloads`.
pub fn decode(record: &[u8], payloads: &mut Slab) -> Result<(ChunkHeader, Segment), RecordError> {
    if record.len() < CHUNK_HEADER_LEN {
        return Err(RecordError::Short(record.len()));
    }
    // SAFETY: the length was checked; `ChunkHeader` is plain data valid for any bit pattern
    // and `read_unaligned` makes no alignment assumption.
    let h: ChunkHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let payload = &record[CHUNK_HEADER_LEN..];
    if payload.len() < h.len as usize {
        return Err(RecordError::Length {
            announced: h.len as usize,
            carried: payload.len(),
        });
    }
    let ip = |a: [u8; 16]| -> Result<IpAddr, RecordError> {
        match h.family {
            FAMILY_V4 => Ok(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(a))),
            f => Err(RecordError::Family(f)),
        }
    };
    let src = SocketAddr::new(ip(h.saddr)?, h.sport);
    let dst = SocketAddr::new(ip(h.daddr)?, h.dport);
    let dir = match h.direction {
        direction::TO_SERVER => Direction::ClientToServer,
        direction::TO_CLIENT => Direction::ServerToClient,
        d => return Err(RecordError::Direction(d)),
    };
    let seg = Segment {
        ts_ns: h.ts_ns,
        flow: flow_of(src, dst, dir),
        dir,
        seq: h.seq,
        ack: h.ack,
        flags: h.flags,
        payload: payloads.copy(&payload[..h.len as usize]),
        elided: if h.snapped != 0 { h.truncated } else { 0 },
    };
    Ok((h, seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        ChunkHeader {
            ts_ns: 7,
            saddr,
            daddr,
            seq: 100,
            ack: 5,
            sport: 40000,
            dport: 80,
            len: 3,
            flags: gor_common::tcp_flags::ACK,
            family: FAMILY_V4,
            direction: direction::TO_SERVER,
            chunk_index: 0,
            snapped: 0,
            _pad: 0,
            ifindex: 1,
            payload_len: 3,
            truncated: 0,
        }
    }

    fn bytes_of(h: &ChunkHeader, payload: &[u8]) -> Vec<u8> {
        // SAFETY: ChunkHeader is repr(C) without padding.
        let hb = unsafe {
            std::slice::from_raw_parts((h as *const ChunkHeader).cast::<u8>(), CHUNK_HEADER_LEN)
        };
        [hb, payload].concat()
    }

    #[test]
    fn decodes_a_client_chunk() {
        let (_, seg) = decode(&bytes_of(&header(), b"GET"), &mut Slab::default()).unwrap();
        assert_eq!(seg.flow.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.flow.server, "10.0.0.2:80".parse().unwrap());
        assert_eq!(seg.dir, Direction::ClientToServer);
        assert_eq!(&seg.payload[..], b"GET");
    }

    #[test]
    fn server_chunk_swaps_ends() {
        let mut h = header();
        h.direction = direction::TO_CLIENT;
        std::mem::swap(&mut h.saddr, &mut h.daddr);
        std::mem::swap(&mut h.sport, &mut h.dport);
        let (_, seg) = decode(&bytes_of(&h, b"abc"), &mut Slab::default()).unwrap();
        assert_eq!(seg.flow.client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.dir, Direction::ServerToClient);
    }

    #[test]
    fn rejects_damaged_records() {
        assert_eq!(
            decode(&[0u8; 10], &mut Slab::default()),
            Err(RecordError::Short(10))
        );
        assert!(matches!(
            decode(&bytes_of(&header(), b"GE"), &mut Slab::default()),
            Err(RecordError::Length { .. })
        ));
        let mut h = header();
        h.family = 9;
        assert_eq!(
            decode(&bytes_of(&h, b"GET"), &mut Slab::default()),
            Err(RecordError::Family(9))
        );
    }
}
