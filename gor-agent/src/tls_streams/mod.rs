//! TLS plaintext records into ordered streams: the TLS counterpart of reassembly.
//!
//! ```text
//! TlsRecord (process, SSL*, generation; direction, position, bytes)
//!     ─> per connection: Open ─> Data/Gap at contiguous offsets ─> End, End ─> Close
//! ```
//!
//! The kernel numbers each direction's bytes from the moment it tied the `SSL*` to its
//! socket, and advances the position even for bytes it could not keep (a full ring, a
//! truncated call), so a missing record is a [`StreamEvent::Gap`] here, never bytes
//! joined across a hole. A connection the kernel did not see being established starts
//! `midstream`, and the framer resynchronises on the next request. A connection ends
//! with its socket's close record, when its `SSL*` moves on to another socket (a new
//! generation), after the idle timeout, or when the connection limit evicts it; one that
//! expired or was evicted while its socket lived is taken up again, midstream, by its
//! next record.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::capture::tls::record::{TlsConnKey, TlsEvent, TlsRecord};
use crate::stream::{ConnId, Direction, EndReason, StreamEvent};

/// Ended connections remembered, to tell a late record from a new connection (and an
/// expired connection that goes on from a new one).
const RECENTLY_CLOSED: usize = 4096;

/// Counters of the TLS streams (the report's `tls` section, with the source's own).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TlsStreamStats {
    pub connections_opened: u64,
    /// Opened without their start: the agent joined while they were open.
    pub connections_midstream: u64,
    /// Ended by their socket's close.
    pub connections_closed: u64,
    /// Ended because their `SSL*` was tied to another socket.
    pub connections_replaced: u64,
    pub connections_idle: u64,
    pub connections_evicted: u64,
    /// Holes in a stream (bytes the kernel could not keep), and their bytes.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Records of a connection that had already ended, not delivered.
    pub late_records: u64,
}

struct Conn {
    id: ConnId,
    next: [u64; 2],
    /// Whether `next` is known; a connection taken up again after it expired starts
    /// each direction at the first position it sees, with no gap before it.
    started: [bool; 2],
    last_ns: u64,
}

/// See the module documentation.
pub struct TlsStreams {
    conns: HashMap<TlsConnKey, Conn>,
    /// The live generation of each `SSL*` of each process.
    current: HashMap<(u32, u64), u64>,
    closed: VecDeque<TlsConnKey>,
    /// Connections ended by the idle timeout or the connection limit while their socket
    /// lived: a later record takes them up again, midstream.
    expired: VecDeque<TlsConnKey>,
    idle_ns: u64,
    max_connections: usize,
    stats: TlsStreamStats,
}

impl TlsStreams {
    pub fn new(idle: std::time::Duration, max_connections: usize) -> Self {
        TlsStreams {
            conns: HashMap::new(),
            current: HashMap::new(),
            closed: VecDeque::new(),
            expired: VecDeque::new(),
            idle_ns: idle.as_nanos() as u64,
            max_connections: max_connections.max(1),
            stats: TlsStreamStats::default(),
        }
    }

    pub fn stats(&self) -> &TlsStreamStats {
        &self.stats
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Takes one record; `open` numbers a new connection.
    pub fn push(&mut self, rec: TlsRecord, open: &dyn Fn() -> ConnId, out: &mut Vec<StreamEvent>) {
        let key = rec.key;
        match rec.event {
            TlsEvent::Close { end } => {
                if let Some(mut c) = self.conns.remove(&key) {
                    for (d, dir) in [Direction::ClientToServer, Direction::ServerToClient]
                        .into_iter()
                        .enumerate()
                    {
                        self.gap_to(&mut c, dir, end[d], rec.ts_ns, out);
                    }
                    self.stats.connections_closed += 1;
                    self.end(key, &c, EndReason::Fin, rec.ts_ns, out);
                }
            }
            TlsEvent::Data { dir, pos, bytes } => {
                if !self.conns.contains_key(&key) {
                    if self.closed.contains(&key)
                        || self
                            .current
                            .get(&(key.tgid, key.ssl))
                            .is_some_and(|&g| g > key.generation)
                    {
                        self.stats.late_records += 1;
                        return;
                    }
                    let resumed = match self.expired.iter().position(|k| *k == key) {
                        Some(i) => {
                            self.expired.remove(i);
                            true
                        }
                        None => false,
                    };
                    self.open(&rec.flow, key, rec.fresh && !resumed, rec.ts_ns, open, out);
                    if resumed {
                        if let Some(c) = self.conns.get_mut(&key) {
                            c.started = [false; 2];
                        }
                    }
                }
                let Some(mut c) = self.conns.remove(&key) else {
                    return;
                };
                c.last_ns = rec.ts_ns;
                self.gap_to(&mut c, dir, pos, rec.ts_ns, out);
                let d = dir.index();
                let end = pos + bytes.len() as u64;
                if end > c.next[d] {
                    // Bytes before `next` were delivered already (cannot happen with the
                    // kernel's positions; kept safe).
                    let skip = (c.next[d] - pos) as usize;
                    out.push(StreamEvent::Data {
                        conn: c.id,
                        dir,
                        offset: c.next[d],
                        ts_ns: rec.ts_ns,
                        bytes: bytes.slice(skip..),
                    });
                    c.next[d] = end;
                }
                self.conns.insert(key, c);
            }
        }
    }

    fn open(
        &mut self,
        flow: &crate::stream::Flow,
        key: TlsConnKey,
        fresh: bool,
        ts_ns: u64,
        open: &dyn Fn() -> ConnId,
        out: &mut Vec<StreamEvent>,
    ) {
        // The SSL* moved on: its earlier connection is over.
        if let Some(old) = self.current.insert((key.tgid, key.ssl), key.generation) {
            let old_key = TlsConnKey {
                generation: old,
                ..key
            };
            if let Some(c) = self.conns.remove(&old_key) {
                self.stats.connections_replaced += 1;
                self.end(old_key, &c, EndReason::Fin, ts_ns, out);
            }
        }
        if self.conns.len() >= self.max_connections {
            if let Some((&k, _)) = self.conns.iter().min_by_key(|(_, c)| c.last_ns) {
                let c = self.conns.remove(&k).expect("just found");
                self.stats.connections_evicted += 1;
                self.end(k, &c, EndReason::Evicted, ts_ns, out);
            }
        }
        let id = open();
        self.stats.connections_opened += 1;
        if !fresh {
            self.stats.connections_midstream += 1;
        }
        out.push(StreamEvent::Open {
            conn: id,
            flow: *flow,
            ts_ns,
            midstream: !fresh,
        });
        self.conns.insert(
            key,
            Conn {
                id,
                next: [0; 2],
                started: [true; 2],
                last_ns: ts_ns,
            },
        );
    }

    fn gap_to(
        &mut self,
        c: &mut Conn,
        dir: Direction,
        pos: u64,
        ts_ns: u64,
        out: &mut Vec<StreamEvent>,
    ) {
        let d = dir.index();
        if !c.started[d] {
            c.started[d] = true;
            c.next[d] = pos;
            return;
        }
        if pos > c.next[d] {
            let len = pos - c.next[d];
            self.stats.gaps += 1;
            self.stats.gap_bytes += len;
            out.push(StreamEvent::Gap {
                conn: c.id,
                dir,
                offset: c.next[d],
                len,
                ts_ns,
            });
            c.next[d] = pos;
        }
    }

    fn end(
        &mut self,
        key: TlsConnKey,
        c: &Conn,
        reason: EndReason,
        ts_ns: u64,
        out: &mut Vec<StreamEvent>,
    ) {
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            out.push(StreamEvent::End {
                conn: c.id,
                dir,
                ts_ns,
                reason,
            });
        }
        out.push(StreamEvent::Close { conn: c.id, ts_ns });
        if self.current.get(&(key.tgid, key.ssl)) == Some(&key.generation) {
            self.current.remove(&(key.tgid, key.ssl));
        }
        let list = match reason {
            EndReason::Idle | EndReason::Evicted => &mut self.expired,
            _ => &mut self.closed,
        };
        if list.len() >= RECENTLY_CLOSED {
            list.pop_front();
        }
        list.push_back(key);
    }

    /// Ends the connections idle since before `now_ns - idle timeout`.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<StreamEvent>) {
        let idle: Vec<TlsConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_ns) >= self.idle_ns)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            let c = self.conns.remove(&k).expect("listed");
            self.stats.connections_idle += 1;
            self.end(k, &c, EndReason::Idle, now_ns, out);
        }
    }

    /// Ends every connection (the source stopped).
    pub fn finish(&mut self, now_ns: u64, out: &mut Vec<StreamEvent>) {
        let all: Vec<TlsConnKey> = self.conns.keys().copied().collect();
        for k in all {
            let c = self.conns.remove(&k).expect("listed");
            self.end(k, &c, EndReason::SourceEnd, now_ns, out);
        }
    }
}

#[cfg(test)]
mod tests;
