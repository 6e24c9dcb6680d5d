//! Decoding of the TLS ring-buffer records written by `gor-ebpf/src/tls.rs`: a
//! `TlsHeader` followed by `len` plaintext bytes (the reservation may be larger). A record
//! that does not decode is counted by the caller and skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use gor_common::{direction, tls_kind, TlsHeader, FAMILY_V4, FAMILY_V6, TLS_HEADER_LEN};

use crate::capture::{record::RecordError, slab::Slab};
use crate::stream::{Direction, Flow};

/// A connection as the kernel names it: the process, its `SSL*`, and the generation of
/// the `SSL*`'s tie to a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsConnKey {
    pub tgid: u32,
    pub ssl: u64,
    pub generation: u64,
}

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    pub key: TlsConnKey,
    pub ts_ns: u64,
    pub flow: Flow,
    /// The kernel saw the connection being established: its streams start at byte 0.
    pub fresh: bool,
    pub event: TlsEvent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsEvent {
    /// Plaintext at stream position `pos` of `dir`.
    Data {
        dir: Direction,
        pos: u64,
        bytes: Bytes,
    },
    /// The socket closed; the final positions of both directions (c2s, s2c).
    Close { end: [u64; 2] },
}

/// Decodes one record, copying its plaintext into `payloads`.
pub fn decode(record: &[u8], payloads: &mut Slab) -> Result<TlsRecord, RecordError> {
    if record.len() < TLS_HEADER_LEN {
        return Err(RecordError::Short(record.len()));
    }
    // SAFETY: the length was checked; `TlsHeader` is plain data valid for any bit pattern
    // and `read_unaligned` makes no alignment assumption.
    let h: TlsHeader = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let ip = |a: [u8; 16]| -> Result<IpAddr, RecordError> {
        match h.family {
            FAMILY_V4 => Ok(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(a))),
            f => Err(RecordError::Family(f)),
        }
    };
    let flow = Flow {
        client: SocketAddr::new(ip(h.client_addr)?, h.client_port),
        server: SocketAddr::new(ip(h.server_addr)?, h.server_port),
    };
    let event = match h.kind {
        tls_kind::DATA => {
            let payload = &record[TLS_HEADER_LEN..];
            if payload.len() < h.len as usize {
                return Err(RecordError::Length {
                    announced: h.len as usize,
                    carried: payload.len(),
                });
            }
            let dir = match h.direction {
                direction::TO_SERVER => Direction::ClientToServer,
                direction::TO_CLIENT => Direction::ServerToClient,
                d => return Err(RecordError::Direction(d)),
            };
            TlsEvent::Data {
                dir,
                pos: h.pos,
                bytes: payloads.copy(&payload[..h.len as usize]),
            }
        }
        tls_kind::CLOSE => TlsEvent::Close {
            end: [h.pos, h.aux],
        },
        k => return Err(RecordError::Kind(k)),
    };
    Ok(TlsRecord {
        key: TlsConnKey {
            tgid: h.tgid,
            ssl: h.ssl,
            generation: h.generation,
        },
        ts_ns: h.ts_ns,
        flow,
        fresh: h.fresh != 0,
        event,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record as the kernel writes it, with `room` bytes reserved for `data`.
    pub(crate) fn record(kind: u8, dir: u8, pos: u64, data: &[u8], room: usize) -> Vec<u8> {
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut server = [0u8; 16];
        server[..4].copy_from_slice(&[10, 0, 0, 1]);
        let h = TlsHeader {
            ts_ns: 5,
            ssl: 0x7f00,
            generation: 9,
            pos,
            aux: 0,
            client_addr: client,
            server_addr: server,
            tgid: 42,
            len: data.len() as u32,
            client_port: 40000,
            server_port: 443,
            kind,
            direction: dir,
            family: FAMILY_V4,
            fresh: 1,
        };
        let mut out = vec![0u8; TLS_HEADER_LEN + room];
        // SAFETY: writes the plain header into a buffer of at least its size.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast(), h) };
        out[TLS_HEADER_LEN..TLS_HEADER_LEN + data.len()].copy_from_slice(data);
        out
    }

    #[test]
    fn decodes_data_from_a_larger_reservation() {
        let r = decode(
            &record(tls_kind::DATA, direction::TO_SERVER, 7, b"GET /", 1024),
            &mut Slab::default(),
        )
        .unwrap();
        assert_eq!(r.key.tgid, 42);
        assert_eq!(r.flow.server, "10.0.0.1:443".parse().unwrap());
        assert_eq!(r.flow.client, "10.0.0.2:40000".parse().unwrap());
        assert!(r.fresh);
        assert_eq!(
            r.event,
            TlsEvent::Data {
                dir: Direction::ClientToServer,
                pos: 7,
                bytes: Bytes::from_static(b"GET /"),
            }
        );
    }

    #[test]
    fn bad_records_are_errors() {
        assert_eq!(
            decode(&[0; 8], &mut Slab::default()),
            Err(RecordError::Short(8))
        );
        let mut r = record(tls_kind::DATA, direction::TO_SERVER, 0, b"abc", 3);
        r.truncate(TLS_HEADER_LEN + 2);
        assert!(matches!(
            decode(&r, &mut Slab::default()),
            Err(RecordError::Length { .. })
        ));
        assert_eq!(
            decode(&record(9, 0, 0, b"", 0), &mut Slab::default()),
            Err(RecordError::Kind(9))
        );
        assert_eq!(
            decode(&record(tls_kind::DATA, 7, 0, b"x", 1), &mut Slab::default()),
            Err(RecordError::Direction(7))
        );
    }
}
