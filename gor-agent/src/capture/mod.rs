//! Byte sources: where captured TCP segments come from.
//!
//! [`tc`] loads the kernel programs, attaches them and hands out their ring buffer;
//! [`record`] decodes a ring-buffer record into a [`Segment`]; [`pcap`] parses capture
//! files into the same segments. The driver's sources (`source/`) run them; the
//! reassembler knows nothing of where segments came from. [`tls`] attaches the OpenSSL
//! probes (from the same object) and decodes their plaintext records, which
//! the `tls_streams` module turns into ordered streams.
pub mod packet;
pub mod pcap;
pub mod record;
pub mod settings;
pub mod slab;
pub mod tc;
pub mod tls;

use std::net::SocketAddr;

use bytes::Bytes;

use crate::stream::{Direction, Flow};

/// One TCP segment (or a chunk of one), as seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// CLOCK_MONOTONIC nanoseconds (kernel) or capture time (pcap).
    pub ts_ns: u64,
    pub flow: Flow,
    pub dir: Direction,
    /// Sequence number of `payload[0]` (or of the SYN/FIN when there is no payload).
    pub seq: u32,
    /// Acknowledgement number, meaningful when `flags` has ACK.
    pub ack: u32,
    pub flags: u8,
    pub payload: Bytes,
    /// Bytes that follow `payload` in the packet and were left out on purpose (a server's
    /// bytes beyond the kernel's response snap): the stream goes on after them.
    pub elided: u32,
}

impl Segment {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The flow of a segment from its addresses and direction.
pub fn flow_of(src: SocketAddr, dst: SocketAddr, dir: Direction) -> Flow {
    match dir {
        Direction::ClientToServer => Flow {
            client: src,
            server: dst,
        },
        Direction::ServerToClient => Flow {
            client: dst,
            server: src,
        },
    }
}
