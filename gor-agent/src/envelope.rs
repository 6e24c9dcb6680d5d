//! A message's identity, unique across a fleet of hosts and stable through a file or a
//! message broker, so a process on another machine can pair a request with its responses
//! and keep each client connection's order.
//!
//! ```text
//! MessageId::Framed { conn: ConnKey { origin, conn }, seq }
//!                            │        │       └─ the connection, numbered by the pipeline (from 1)
//!                            │        └─ one run of one agent on one host (hash of host id, start, pid)
//!                            └─ the exchange's position on its connection: a response shares its request's
//! ```
//!
//! Written out (meta lines of saved traffic, the middleware protocol, message headers) it
//! is 32 hex digits, `OOOOOOOOOOOOOOOOCCCCCCCCSSSSSSSS`, which GoReplay and its middleware
//! treat as the opaque token they always did. An id in any other form (GoReplay's own 24
//! hex digits, a middleware's) is [`MessageId::Foreign`]: kept exactly as written, with no
//! connection, so its requests are mirrored in their recorded order on whichever staging
//! connection is idle.
//!
//! The rest of the envelope travels beside the id on each HTTP message: the
//! flow (client and server addresses), the capture time of the first byte and its
//! [`Clock`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::clock::Clock;
use crate::stream::ConnId;

/// The host's identity in message ids.
#[derive(Debug, clap::Args)]
pub struct IdentityArgs {
    /// This host's identity in the ids of the messages it frames (hashed with the start time
    /// and the pid into the run's origin). Default: `/etc/machine-id`, else the host name.
    /// Set it where those are not unique across the fleet (cloned images, containers).
    #[arg(long, env = "GOR_AGENT_ID", value_name = "NAME")]
    pub agent_id: Option<String>,
}

impl IdentityArgs {
    /// The identity, if one is set (an empty value means none); nothing to validate.
    pub fn agent_id(&self) -> Option<String> {
        self.agent_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// One run of one agent on one host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(pub u64);

impl Origin {
    /// The origin of this process: a hash of the host's identity (`host_id`, else
    /// `/etc/machine-id`, else the host name), the start time and the process id, so two
    /// hosts, or two runs on one host, never share one.
    pub fn of_this_run(host_id: Option<&str>) -> Origin {
        let host = match host_id {
            Some(h) => h.to_owned(),
            None => std::fs::read_to_string("/etc/machine-id")
                .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
                .unwrap_or_default(),
        };
        let mut h = Fnv::default();
        h.write(host.trim().as_bytes());
        h.write(&crate::clock::realtime_ns().to_le_bytes());
        h.write(&std::process::id().to_le_bytes());
        // 0 is reserved for messages built in tests and by tools that have no origin.
        Origin(h.0.max(1))
    }
}

/// The host's name for people and subjects: `host_id` (`GOR_AGENT_ID`) if set, else the
/// kernel's host name.
pub fn host_name(host_id: Option<&str>) -> String {
    match host_id {
        Some(h) => h.to_owned(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "host".into()),
    }
}

/// A connection, unique across the fleet: its agent run and its number there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub origin: Origin,
    pub conn: ConnId,
}

/// Which message this is; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageId {
    /// Framed by a gor agent from a connection it saw.
    Framed { conn: ConnKey, seq: u64 },
    /// Anyone else's id, exactly as written.
    Foreign(Arc<str>),
}

impl MessageId {
    /// The id of exchange `seq` on connection `conn` of `origin`.
    pub fn framed(origin: Origin, conn: ConnId, seq: u64) -> MessageId {
        MessageId::Framed {
            conn: ConnKey { origin, conn },
            seq,
        }
    }

    /// The client connection the message was framed from, when known.
    pub fn conn(&self) -> Option<ConnKey> {
        match self {
            MessageId::Framed { conn, .. } => Some(*conn),
            MessageId::Foreign(_) => None,
        }
    }

    /// Reads an id as written by [`fmt::Display`]; any other text is a foreign id.
    pub fn parse(s: &str) -> MessageId {
        let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&s[r], 16).ok();
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let (Some(origin), Some(conn), Some(seq)) = (hex(0..16), hex(16..24), hex(24..32)) {
                return MessageId::Framed {
                    conn: ConnKey {
                        origin: Origin(origin),
                        conn,
                    },
                    seq,
                };
            }
        }
        MessageId::Foreign(Arc::from(s))
    }
}

impl fmt::Display for MessageId {
    /// 32 hex digits for framed ids (the connection and sequence numbers modulo 2^32: a
    /// run would need four billion connections before two written ids could collide);
    /// foreign ids as they were written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Framed { conn, seq } => write!(
                f,
                "{:016x}{:08x}{:08x}",
                conn.origin.0,
                conn.conn & 0xffff_ffff,
                seq & 0xffff_ffff
            ),
            MessageId::Foreign(s) => f.write_str(s),
        }
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A message's envelope as one value, for outputs that carry it whole (JSON lines, a
/// message broker's headers).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Envelope {
    pub id: MessageId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Capture time of the message's first byte, in `clock`.
    pub ts_ns: u64,
    pub clock: Clock,
}

/// Hands out connection numbers, from 1, never reused within a run. The pipeline owns one
/// and shares it with every source that opens connections (the reassembler, and stream
/// sources such as TLS plaintext), so numbers mean the same whoever assigned them.
#[derive(Clone, Debug)]
pub struct ConnIds(Arc<AtomicU64>);

impl Default for ConnIds {
    fn default() -> Self {
        ConnIds(Arc::new(AtomicU64::new(1)))
    }
}

impl ConnIds {
    pub fn next(&self) -> ConnId {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// FNV-1a, 64-bit: stable and dependency-free, for the origin hash.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_ids_round_trip_through_their_text() {
        let id = MessageId::Framed {
            conn: ConnKey {
                origin: Origin(0x0123_4567_89ab_cdef),
                conn: 42,
            },
            seq: 7,
        };
        let text = id.to_string();
        assert_eq!(text, "0123456789abcdef0000002a00000007");
        assert_eq!(MessageId::parse(&text), id);
        assert_eq!(id.conn().map(|c| c.conn), Some(42));
    }

    #[test]
    fn other_ids_are_kept_as_written() {
        for s in [
            "8e4f0b2c4a5b6c7d8e9f0a1b",
            "a1",
            "00000000000000000000001f",
            "x".repeat(32).as_str(),
        ] {
            let id = MessageId::parse(s);
            assert_eq!(id, MessageId::Foreign(Arc::from(s)));
            assert_eq!(id.to_string(), s);
            assert_eq!(id.conn(), None);
        }
    }

    #[test]
    fn two_runs_on_one_host_have_different_origins() {
        let a = Origin::of_this_run(Some("host-a"));
        let b = Origin::of_this_run(Some("host-a"));
        assert_ne!(a, b, "the start time tells two runs apart");
        assert_ne!(Origin::of_this_run(Some("host-b")), a);
        assert_ne!(a, Origin(0));
    }

    #[test]
    fn connection_numbers_are_shared_by_clones() {
        let ids = ConnIds::default();
        let other = ids.clone();
        assert_eq!((ids.next(), other.next(), ids.next()), (1, 2, 3));
    }
}
