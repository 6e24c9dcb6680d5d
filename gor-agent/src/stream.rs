//! Ordered byte streams: the interface between byte sources and framing.
//!
//! Every source of bytes (TC capture through the reassembler, pcap files, and later
//! TLS plaintext from uprobes) produces these events; the HTTP framer and the debug
//! outputs consume them. For each connection the order is: one `Open`, then `Data`/`Gap`
//! per direction with contiguous offsets, then `End` per direction, then one `Close`.

use std::net::SocketAddr;

use bytes::Bytes;

/// Identifies a connection for the lifetime of the agent (never reused).
pub type ConnId = u64;

/// Which way bytes travel on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Request bytes: from the client to the captured server port.
    ClientToServer,
    /// Response bytes: from the captured server port back to the client.
    ServerToClient,
}

impl Direction {
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }
}

/// The two ends of a connection; the server is the side whose port is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.client, self.server)
    }
}

/// Why a direction of a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The sender closed its side (FIN), and every byte before it was delivered.
    Fin,
    /// The connection was reset (RST).
    Reset,
    /// Nothing was seen on the connection for the idle timeout.
    Idle,
    /// The connection was evicted to stay within the connection or memory limits.
    Evicted,
    /// The source stopped (agent shutdown, end of a pcap file).
    SourceEnd,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Reset => "reset",
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::SourceEnd => "source-end",
        }
    }
}

/// One step of a connection's life, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A connection was first seen. `midstream` is true when its start (SYN) was not seen,
    /// e.g. when the agent started while it was open: offsets then count from the first
    /// byte seen, and the first bytes may be in the middle of a message.
    Open {
        conn: ConnId,
        flow: Flow,
        ts_ns: u64,
        midstream: bool,
    },
    /// Contiguous bytes of one direction; `offset` is the stream position of `bytes[0]`
    /// and always equals the end of the previous `Data` or `Gap` of that direction.
    Data {
        conn: ConnId,
        dir: Direction,
        offset: u64,
        ts_ns: u64,
        bytes: Bytes,
    },
    /// `len` bytes at `offset` were never seen (lost before the agent could read them);
    /// the next `Data` of that direction starts at `offset + len`.
    Gap {
        conn: ConnId,
        dir: Direction,
        offset: u64,
        len: u64,
        ts_ns: u64,
    },
    /// `len` bytes at `offset` were left out on purpose (a server's bytes beyond the
    /// kernel's response snap, when nothing needs whole responses): not lost, only not
    /// copied. The next `Data` of that direction starts at `offset + len`.
    Skipped {
        conn: ConnId,
        dir: Direction,
        offset: u64,
        len: u64,
        ts_ns: u64,
    },
    /// No more bytes will come in this direction.
    End {
        conn: ConnId,
        dir: Direction,
        ts_ns: u64,
        reason: EndReason,
    },
    /// The connection is gone; both directions have ended.
    Close { conn: ConnId, ts_ns: u64 },
}

impl StreamEvent {
    pub fn conn(&self) -> ConnId {
        match self {
            StreamEvent::Open { conn, .. }
            | StreamEvent::Data { conn, .. }
            | StreamEvent::Gap { conn, .. }
            | StreamEvent::Skipped { conn, .. }
            | StreamEvent::End { conn, .. }
            | StreamEvent::Close { conn, .. } => *conn,
        }
    }
}
