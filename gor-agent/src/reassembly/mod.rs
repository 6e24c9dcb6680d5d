//! TCP reassembly: segments in any order in, one ordered byte stream per connection and
//! direction out ([`StreamEvent`]s). Plain logic with no IO and no clock of its own, so
//! it is tested without a kernel and fed the same way by live capture and pcap files.
//!
//! Rules, in the words of the capture issue:
//! - bytes are ordered by sequence number (wrap-around handled by working with 64-bit
//!   stream offsets relative to the last delivered byte); duplicates and overlapping
//!   retransmissions are removed;
//! - a missing range is reported as an explicit [`StreamEvent::Gap`], never joined
//!   silently. A range is known to be missing when the peer acknowledges bytes we never
//!   saw (the kernel records a segment before the stack can acknowledge it, so an ACK
//!   beyond what we have means the bytes were lost to us), when a hole outlives the hole
//!   timeout, when the connection ends, or when buffering it would exceed a memory limit;
//! - a connection ends on FIN (once every byte before it is delivered) or RST; idle
//!   connections expire; a connection first seen without its SYN is marked `midstream`.

pub mod settings;

use std::collections::BTreeMap;

use bytes::Bytes;
use gor_common::tcp_flags::{ACK, FIN, RST, SYN};

use crate::{
    capture::Segment,
    envelope::ConnIds,
    fasthash::FastMap,
    stream::{ConnId, Direction, EndReason, Flow, StreamEvent},
};

/// Memory and time bounds of the reassembler.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Out-of-order bytes held per connection direction before a hole is given up.
    pub max_conn_buffer: usize,
    /// Out-of-order bytes held in total.
    pub max_total_buffer: usize,
    /// Connections tracked at once; the least recently active is evicted beyond that.
    pub max_connections: usize,
    /// A connection with no segment for this long is ended.
    pub idle_timeout_ns: u64,
    /// A hole with later bytes waiting behind it for this long is reported as a gap.
    pub hole_timeout_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conn_buffer: 4 << 20,
            max_total_buffer: 256 << 20,
            max_connections: 100_000,
            idle_timeout_ns: 120_000_000_000,
            hole_timeout_ns: 2_000_000_000,
        }
    }
}

/// Counters, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub segments: u64,
    /// Bytes delivered in order.
    pub bytes: u64,
    /// Bytes seen more than once (retransmissions, overlaps), delivered once.
    pub duplicate_bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub connections_opened: u64,
    pub connections_midstream: u64,
    pub connections_closed: u64,
    pub connections_idle: u64,
    pub connections_evicted: u64,
    /// Holes given up because a buffer limit was reached.
    pub buffer_overflows: u64,
    /// Segments of a connection that had already closed (late retransmissions).
    pub late_segments: u64,
    /// Segments that start nothing (pure FIN/RST of an unknown connection).
    pub ignored_segments: u64,
    /// Bytes the kernel left out on purpose (the response snap), passed on as
    /// [`StreamEvent::Skipped`].
    pub snapped_bytes: u64,
}

/// How long a closed connection's addresses are remembered, so that late
/// retransmissions do not open it again as a mid-stream connection (TCP's TIME_WAIT).
const CLOSED_MEMORY_NS: u64 = 60_000_000_000;
/// Closed connections remembered at most.
const CLOSED_MEMORY_LEN: usize = 65_536;

/// Reassembles every connection of one byte source.
pub struct Reassembler {
    limits: Limits,
    /// Keys chosen by the network: a seeded hasher (see [`crate::fasthash`]).
    conns: FastMap<Flow, Conn>,
    closed: FastMap<Flow, u64>,
    ids: ConnIds,
    buffered: usize,
    stats: Stats,
}

struct Conn {
    id: ConnId,
    last_ns: u64,
    halves: [Half; 2],
}

/// One direction of a connection.
#[derive(Default)]
struct Half {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// Offset of the next byte to deliver.
    offset: u64,
    /// Bytes ahead of `offset`, by offset.
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
    ended: bool,
}

struct Pending {
    ts_ns: u64,
    bytes: Bytes,
    /// Bytes left out on purpose right after `bytes`.
    elided: u32,
}

impl Pending {
    /// Stream length covered: the bytes and what was left out after them.
    fn span(&self) -> u64 {
        self.bytes.len() as u64 + u64::from(self.elided)
    }

    /// Drops the first `n` (< span) stream bytes, already delivered: counted as
    /// duplicates where they were bytes.
    fn trim_front(&mut self, n: u64, s: &mut Sink) {
        let from_bytes = n.min(self.bytes.len() as u64);
        s.stats.duplicate_bytes += from_bytes;
        self.bytes = self.bytes.slice(from_bytes as usize..);
        self.elided -= (n - from_bytes) as u32;
    }
}

/// Where a half's events go: the connection, the direction, the output and the counters.
struct Sink<'a> {
    conn: ConnId,
    dir: Direction,
    out: &'a mut Vec<StreamEvent>,
    stats: &'a mut Stats,
    buffered: &'a mut usize,
}

impl Half {
    fn next_seq(&self) -> Option<u32> {
        self.base.map(|b| b.wrapping_add(self.offset as u32))
    }

    /// Stream offset of `seq`, within 2 GiB either side of the next byte.
    fn offset_of(&self, seq: u32) -> Option<i64> {
        let next = self.next_seq()?;
        Some(self.offset as i64 + i64::from(seq.wrapping_sub(next) as i32))
    }

    fn insert(&mut self, at: i64, ts_ns: u64, bytes: Bytes, elided: u32, s: &mut Sink) {
        let mut p = Pending {
            ts_ns,
            bytes,
            elided,
        };
        let end = at + p.span() as i64;
        let offset = self.offset as i64;
        if end <= offset {
            s.stats.duplicate_bytes += p.bytes.len() as u64;
            return;
        }
        let mut at = at;
        if at < offset {
            p.trim_front((offset - at) as u64, s);
            at = offset;
        }
        let at = at as u64;
        if at == self.offset {
            self.deliver(p, s);
            self.drain(s);
            return;
        }
        let len = p.bytes.len();
        match self.pending.get(&at) {
            Some(old) if old.span() >= p.span() => s.stats.duplicate_bytes += len as u64,
            old => {
                let old_len = old.map_or(0, |o| o.bytes.len());
                s.stats.duplicate_bytes += old_len as u64;
                self.pending_bytes = self.pending_bytes + len - old_len;
                *s.buffered = *s.buffered + len - old_len;
                self.pending.insert(at, p);
            }
        }
    }

    fn deliver(&mut self, p: Pending, s: &mut Sink) {
        let len = p.bytes.len() as u64;
        if len > 0 {
            s.out.push(StreamEvent::Data {
                conn: s.conn,
                dir: s.dir,
                offset: self.offset,
                ts_ns: p.ts_ns,
                bytes: p.bytes,
            });
            s.stats.bytes += len;
            self.offset += len;
        }
        if p.elided > 0 {
            let len = u64::from(p.elided);
            s.out.push(StreamEvent::Skipped {
                conn: s.conn,
                dir: s.dir,
                offset: self.offset,
                len,
                ts_ns: p.ts_ns,
            });
            s.stats.snapped_bytes += len;
            self.offset += len;
        }
    }

    /// Delivers what became contiguous.
    fn drain(&mut self, s: &mut Sink) {
        while let Some(entry) = self.pending.first_entry() {
            let at = *entry.key();
            if at > self.offset {
                break;
            }
            let mut p = entry.remove();
            self.pending_bytes -= p.bytes.len();
            *s.buffered -= p.bytes.len();
            if at + p.span() <= self.offset {
                s.stats.duplicate_bytes += p.bytes.len() as u64;
                continue;
            }
            p.trim_front(self.offset - at, s);
            self.deliver(p, s);
        }
    }

    fn gap(&mut self, len: u64, ts_ns: u64, s: &mut Sink) {
        s.out.push(StreamEvent::Gap {
            conn: s.conn,
            dir: s.dir,
            offset: self.offset,
            len,
            ts_ns,
        });
        s.stats.gaps += 1;
        s.stats.gap_bytes += len;
        self.offset += len;
    }

    /// Declares everything before `upto` that is not buffered as lost, delivering what is.
    fn give_up_before(&mut self, upto: u64, ts_ns: u64, s: &mut Sink) {
        while self.offset < upto {
            let next = self
                .pending
                .keys()
                .next()
                .copied()
                .unwrap_or(upto)
                .min(upto);
            if next > self.offset {
                self.gap(next - self.offset, ts_ns, s);
            }
            self.drain(s);
        }
    }

    /// Declares the first hole lost, delivering what follows it.
    fn give_up_first_hole(&mut self, ts_ns: u64, s: &mut Sink) {
        if let Some(&at) = self.pending.keys().next() {
            self.give_up_before(at, ts_ns, s);
        }
    }

    /// Delivers everything known, holes reported as gaps, up to the FIN if it was seen.
    fn flush(&mut self, ts_ns: u64, s: &mut Sink) {
        let last = self.pending.iter().next_back().map(|(at, p)| at + p.span());
        let upto = last.unwrap_or(0).max(self.fin_at.unwrap_or(0));
        self.give_up_before(upto, ts_ns, s);
    }

    fn end(&mut self, ts_ns: u64, reason: EndReason, s: &mut Sink) {
        if !self.ended {
            self.ended = true;
            s.out.push(StreamEvent::End {
                conn: s.conn,
                dir: s.dir,
                ts_ns,
                reason,
            });
        }
    }

    /// Ends the half if every byte up to its FIN has been delivered.
    fn end_if_fin_reached(&mut self, ts_ns: u64, s: &mut Sink) {
        if self.fin_at.is_some_and(|f| self.offset >= f) {
            self.end(ts_ns, EndReason::Fin, s);
        }
    }
}

impl Reassembler {
    /// A reassembler numbering its connections from 1 by itself (tests, tools).
    pub fn new(limits: Limits) -> Self {
        Reassembler::with_conn_ids(limits, ConnIds::default())
    }

    /// A reassembler that takes its connection numbers from `ids`, shared with the rest of
    /// the pipeline.
    pub fn with_conn_ids(limits: Limits, ids: ConnIds) -> Self {
        Reassembler {
            limits,
            conns: FastMap::default(),
            closed: FastMap::default(),
            ids,
            buffered: 0,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Out-of-order bytes held right now.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Takes one segment; appends what it completes to `out`.
    pub fn push(&mut self, seg: Segment, out: &mut Vec<StreamEvent>) {
        self.stats.segments += 1;
        let flow = seg.flow;
        let syn = seg.has(SYN) && !seg.has(RST);
        if !self.conns.contains_key(&flow) {
            if syn {
                self.closed.remove(&flow);
            } else if seg.payload.is_empty() || seg.has(RST) {
                self.stats.ignored_segments += 1;
                return;
            } else if self.closed.contains_key(&flow) {
                self.stats.late_segments += 1;
                return;
            }
            self.open(flow, seg.ts_ns, !syn, out);
        }

        // A SYN with another initial sequence number: the addresses were reused by a new
        // connection before the old one was seen to close.
        if syn {
            let conn = &self.conns[&flow];
            let half = &conn.halves[seg.dir.index()];
            if half.base.is_some_and(|b| b != seg.seq.wrapping_add(1)) {
                self.close(flow, seg.ts_ns, EndReason::Evicted, out);
                self.open(flow, seg.ts_ns, false, out);
            }
        }

        let Some(conn) = self.conns.get_mut(&flow) else {
            return;
        };
        conn.last_ns = conn.last_ns.max(seg.ts_ns);
        let id = conn.id;
        let (mine, peer) = match seg.dir {
            Direction::ClientToServer => {
                let [a, b] = &mut conn.halves;
                (a, b)
            }
            Direction::ServerToClient => {
                let [a, b] = &mut conn.halves;
                (b, a)
            }
        };

        if syn && mine.base.is_none() {
            mine.base = Some(seg.seq.wrapping_add(1));
        }
        if !seg.payload.is_empty() && mine.base.is_none() {
            mine.base = Some(seg.seq);
        }
        // The peer's stream position is known from our acknowledgement when its first
        // segment was not seen (mid-stream start, or a lost SYN-ACK).
        if seg.has(ACK) && !seg.has(RST) && peer.base.is_none() {
            peer.base = Some(seg.ack);
        }

        let (flags, ts_ns, dir, ack) = (seg.flags, seg.ts_ns, seg.dir, seg.ack);
        let mut s = Sink {
            conn: id,
            dir,
            out: &mut *out,
            stats: &mut self.stats,
            buffered: &mut self.buffered,
        };
        let at = mine.offset_of(seg.seq);
        if let Some(at) = at {
            let len = seg.payload.len() as i64;
            let span = len + i64::from(seg.elided);
            if seg.has(FIN) && at + span >= mine.offset as i64 {
                mine.fin_at = Some((at + span) as u64);
            }
            if len > 0 && !mine.ended {
                mine.insert(at, seg.ts_ns, seg.payload, seg.elided, &mut s);
            }
        }
        let over_total = self.limits.max_total_buffer;
        while mine.pending_bytes > self.limits.max_conn_buffer || *s.buffered > over_total {
            s.stats.buffer_overflows += 1;
            mine.give_up_first_hole(ts_ns, &mut s);
            if mine.pending.is_empty() {
                break;
            }
        }
        mine.end_if_fin_reached(ts_ns, &mut s);

        // What the peer has not sent us but we acknowledge was lost on the way to us.
        if flags & ACK != 0 && !flags & RST != 0 {
            if let Some(acked) = peer.offset_of(ack) {
                let mut acked = acked.max(0) as u64;
                if let Some(fin) = peer.fin_at {
                    acked = acked.min(fin);
                }
                if acked > peer.offset && !peer.ended {
                    let mut ps = Sink {
                        dir: other(dir),
                        ..s
                    };
                    peer.give_up_before(acked, ts_ns, &mut ps);
                    peer.end_if_fin_reached(ts_ns, &mut ps);
                }
            }
        }

        let done = mine.ended && peer.ended;
        if flags & RST != 0 {
            self.close(flow, ts_ns, EndReason::Reset, out);
        } else if done {
            self.close(flow, ts_ns, EndReason::Fin, out);
        }
    }

    /// Ends idle connections and gives up holes that waited too long. `now_ns` is on the
    /// clock of the segments' timestamps.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<StreamEvent>) {
        let idle: Vec<Flow> = self
            .conns
            .iter()
            .filter(|(_, c)| now_ns.saturating_sub(c.last_ns) > self.limits.idle_timeout_ns)
            .map(|(f, _)| *f)
            .collect();
        for flow in idle {
            self.stats.connections_idle += 1;
            self.close(flow, now_ns, EndReason::Idle, out);
        }
        let hole_timeout = self.limits.hole_timeout_ns;
        for conn in self.conns.values_mut() {
            for (i, half) in conn.halves.iter_mut().enumerate() {
                let stale = half
                    .pending
                    .values()
                    .next()
                    .is_some_and(|p| now_ns.saturating_sub(p.ts_ns) > hole_timeout);
                if stale {
                    let mut s = Sink {
                        conn: conn.id,
                        dir: if i == 0 {
                            Direction::ClientToServer
                        } else {
                            Direction::ServerToClient
                        },
                        out: &mut *out,
                        stats: &mut self.stats,
                        buffered: &mut self.buffered,
                    };
                    half.give_up_first_hole(now_ns, &mut s);
                    half.end_if_fin_reached(now_ns, &mut s);
                }
            }
        }
        self.closed
            .retain(|_, at| now_ns.saturating_sub(*at) < CLOSED_MEMORY_NS);
    }

    /// Ends every connection (the source has stopped).
    pub fn finish(&mut self, ts_ns: u64, out: &mut Vec<StreamEvent>) {
        let flows: Vec<Flow> = self.conns.keys().copied().collect();
        for flow in flows {
            self.close(flow, ts_ns, EndReason::SourceEnd, out);
        }
    }

    fn open(&mut self, flow: Flow, ts_ns: u64, midstream: bool, out: &mut Vec<StreamEvent>) {
        if self.conns.len() >= self.limits.max_connections {
            let oldest = self
                .conns
                .iter()
                .min_by_key(|(_, c)| c.last_ns)
                .map(|(f, _)| *f);
            if let Some(oldest) = oldest {
                self.stats.connections_evicted += 1;
                self.close(oldest, ts_ns, EndReason::Evicted, out);
            }
        }
        let id = self.ids.next();
        self.stats.connections_opened += 1;
        self.stats.connections_midstream += u64::from(midstream);
        out.push(StreamEvent::Open {
            conn: id,
            flow,
            ts_ns,
            midstream,
        });
        self.conns.insert(
            flow,
            Conn {
                id,
                last_ns: ts_ns,
                halves: Default::default(),
            },
        );
    }

    /// Delivers what each half holds (holes as gaps), ends both halves and forgets the
    /// connection.
    fn close(&mut self, flow: Flow, ts_ns: u64, reason: EndReason, out: &mut Vec<StreamEvent>) {
        let Some(mut conn) = self.conns.remove(&flow) else {
            return;
        };
        for (half, dir) in conn
            .halves
            .iter_mut()
            .zip([Direction::ClientToServer, Direction::ServerToClient])
        {
            let mut s = Sink {
                conn: conn.id,
                dir,
                out: &mut *out,
                stats: &mut self.stats,
                buffered: &mut self.buffered,
            };
            if !half.ended {
                half.flush(ts_ns, &mut s);
                let reason = if half.fin_at.is_some_and(|f| half.offset >= f) {
                    EndReason::Fin
                } else {
                    reason
                };
                half.end(ts_ns, reason, &mut s);
            }
        }
        out.push(StreamEvent::Close {
            conn: conn.id,
            ts_ns,
        });
        self.stats.connections_closed += 1;
        if self.closed.len() >= CLOSED_MEMORY_LEN {
            self.closed.clear();
        }
        self.closed.insert(flow, ts_ns);
    }
}

fn other(dir: Direction) -> Direction {
    match dir {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    }
}

#[cfg(test)]
mod tests;
