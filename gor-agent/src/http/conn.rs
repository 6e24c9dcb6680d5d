//! Per-connection framing state: one parser per direction plus the FIFO of requests
//! awaiting their responses.
//!
//! Each direction is a small state machine ([`Mode`]): looking for a start line (resync),
//! accumulating a head, reading a body, holding request bytes while an upgrade is decided,
//! or tunnelled. Input is consumed step by step; every step either consumes bytes or moves
//! to a mode that will, so arbitrary event splits give the same result.

use std::collections::VecDeque;
use std::mem;

use bytes::{Buf, Bytes};

use super::chunked::{ChunkedDecoder, Progress};
use super::head::{self, Declared, Head, HeadResult, Verdict};
use super::msgbuf::MsgBuf;
use super::{unknown_flow, HttpMessage, HttpStats, Limits};
use crate::envelope::{Clock, ConnKey, MessageId};
use crate::stream::{Direction, EndReason, Flow};

const C2S: usize = 0;
const S2C: usize = 1;
const DIRS: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

/// What a step needs from the framer besides the connection itself.
pub(super) struct Cx<'a> {
    pub limits: &'a Limits,
    pub stats: &'a mut HttpStats,
    pub out: &'a mut Vec<HttpMessage>,
    pub conn: ConnKey,
    pub clock: Clock,
    /// Responses are emitted; otherwise only framed (see `Fate::Unneeded`).
    pub responses: bool,
}

impl Cx<'_> {
    fn incomplete(&mut self, d: usize) {
        if d == C2S {
            self.stats.incomplete_requests += 1;
        } else {
            self.stats.incomplete_responses += 1;
        }
    }
}

/// Bytes still to be parsed in one direction, with their stream offset. It is a stack so
/// that bytes of a head that turned out invalid can be pushed back in front and rescanned
/// without copying the rest of the event.
pub(super) struct Input {
    /// The bytes parsed next; empty only when `below` is empty too. Kept out of `below`
    /// so that an event's input costs no allocation.
    top: Bytes,
    /// Bytes after `top`, the next on top.
    below: Vec<Bytes>,
    pos: u64,
}

impl Input {
    pub(super) fn new(bytes: Bytes, pos: u64) -> Self {
        Input {
            top: bytes,
            below: Vec::new(),
            pos,
        }
    }

    fn is_empty(&self) -> bool {
        self.top.is_empty()
    }

    fn cur(&self) -> &[u8] {
        &self.top
    }

    /// The current chunk, for buffers that share it.
    fn top(&self) -> Option<&Bytes> {
        (!self.top.is_empty()).then_some(&self.top)
    }

    fn refill(&mut self) {
        if self.top.is_empty() {
            self.top = self.below.pop().unwrap_or_default();
        }
    }

    fn advance(&mut self, n: usize) {
        let n = n.min(self.top.len());
        self.top.advance(n);
        self.pos += n as u64;
        self.refill();
    }

    /// Takes the whole current chunk, with its offset.
    fn take_chunk(&mut self) -> Option<(u64, Bytes)> {
        if self.top.is_empty() {
            return None;
        }
        let b = std::mem::take(&mut self.top);
        self.refill();
        let pos = self.pos;
        self.pos += b.len() as u64;
        Some((pos, b))
    }

    /// Puts back bytes that end exactly where the current input starts.
    fn push_front(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.pos = self.pos.saturating_sub(b.len() as u64);
            let old = std::mem::replace(&mut self.top, b);
            if !old.is_empty() {
                self.below.push(old);
            }
        }
    }
}

/// A request waiting for its response.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    is_head: bool,
    is_connect: bool,
    /// CONNECT or an `Upgrade` header: its response may switch the connection away from HTTP.
    upgrade: bool,
    last_ts: u64,
    /// Fully received and emitted.
    complete: bool,
    /// Damaged or over the limits: never emitted, but still owed a response, so it keeps
    /// its place in the FIFO to keep later pairing right.
    lost: bool,
}

/// What becomes of a message whose head was parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    /// Over a limit: its bytes are skipped, not buffered.
    Oversize,
    /// Part of it was lost in a gap, but its framing is still known.
    Lost,
    /// A response when nothing takes responses: framed (it answers its request, and may
    /// switch the connection away from HTTP) but neither buffered nor emitted. Its body
    /// may be missing on purpose (the kernel's response snap).
    Unneeded,
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Response body delimited by the server closing the connection.
    Close,
}

struct Body {
    head: Head,
    framing: Framing,
    fate: Fate,
    body_len: u64,
    id: u64,
    /// For a response: last byte time of its (complete) request, for latency.
    req_last_ts: Option<u64>,
}

enum Mode {
    /// Looking for a start line; `Half::buf` holds at most a partial candidate line.
    Resync,
    Head {
        line_checked: bool,
        from_resync: bool,
    },
    Body(Body),
    /// Request side after a request that may switch protocols: bytes are held until its
    /// response says whether they are HTTP (refused) or not (101 / CONNECT 2xx).
    Held {
        id: u64,
    },
    Tunnel,
}

/// Events of the request side kept while [`Mode::Held`].
enum Held {
    Data { ts: u64, pos: u64, bytes: Bytes },
    Gap { ts: u64, len: u64 },
    End { ts: u64, reason: EndReason },
}

/// One direction's parser.
struct Half {
    mode: Mode,
    /// Bytes of the current message (head, then body unless skipped), or the resync tail.
    buf: MsgBuf,
    msg_off: u64,
    first_ts: u64,
    last_ts: u64,
    /// Response side: responses may have been lost, the FIFO front cannot be trusted.
    lost_sync: bool,
    ended: bool,
    held: Vec<Held>,
    held_bytes: usize,
}

impl Half {
    fn new(midstream: bool) -> Self {
        let mode = if midstream { Mode::Resync } else { idle() };
        Half {
            mode,
            buf: MsgBuf::default(),
            msg_off: 0,
            first_ts: 0,
            last_ts: 0,
            lost_sync: midstream,
            ended: false,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Moves `n` bytes of input into the message (or drops them when `keep` is false).
    fn absorb(&mut self, input: &mut Input, n: usize, keep: bool, ts: u64) {
        if n == 0 {
            return;
        }
        if keep {
            if self.buf.is_empty() {
                self.msg_off = input.pos;
                self.first_ts = ts;
            }
            if let Some(top) = input.top() {
                self.buf.push(top, n);
            }
        }
        self.last_ts = ts;
        input.advance(n);
    }

    fn resync(&mut self, d: usize) {
        self.buf.clear();
        self.mode = Mode::Resync;
        if d == S2C {
            self.lost_sync = true;
        }
    }
}

fn idle() -> Mode {
    Mode::Head {
        line_checked: false,
        from_resync: false,
    }
}

/// Both directions of one connection.
pub(super) struct Conn {
    flow: Flow,
    halves: [Half; 2],
    pending: VecDeque<Pending>,
    /// The next exchange's position on this connection (its messages' `seq`).
    next_seq: u64,
}

impl Conn {
    pub(super) fn new(flow: Flow, midstream: bool) -> Self {
        Conn {
            flow,
            halves: [Half::new(midstream), Half::new(midstream)],
            pending: VecDeque::new(),
            next_seq: 1,
        }
    }

    fn new_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// State for a connection whose `Open` was missed: treated as joined midstream.
    pub(super) fn unknown() -> Self {
        Conn::new(unknown_flow(), true)
    }

    pub(super) fn buffered_bytes(&self) -> usize {
        self.halves.iter().map(|h| h.buf.len() + h.held_bytes).sum()
    }

    pub(super) fn on_data(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        while !input.is_empty() {
            match self.halves[d].mode {
                Mode::Resync => self.resync_step(d, ts, input, cx),
                Mode::Head { .. } => self.head_step(d, ts, input, cx),
                Mode::Body(_) => self.body_step(d, ts, input, cx),
                Mode::Held { .. } => self.held_step(d, ts, input, cx),
                Mode::Tunnel => {
                    let n = input.cur().len();
                    cx.stats.tunneled_bytes += n as u64;
                    input.advance(n);
                }
            }
        }
    }

    /// `len` bytes of direction `d` are missing: `lost` in capture, or left out on
    /// purpose by the kernel's response snap (a response's bytes that were not needed).
    pub(super) fn on_gap(&mut self, d: usize, len: u64, ts: u64, lost: bool, cx: &mut Cx<'_>) {
        let h = &mut self.halves[d];
        match &mut h.mode {
            Mode::Tunnel => {}
            Mode::Held { .. } => h.held.push(Held::Gap { ts, len }),
            Mode::Resync if !lost => h.resync(d),
            Mode::Resync => {
                cx.stats.not_http_bytes += h.buf.len() as u64;
                h.resync(d);
            }
            Mode::Head { .. } => {
                // Even at a message boundary, a gap swallows at least one message start.
                if lost {
                    cx.incomplete(d);
                } else {
                    cx.stats.snapped_heads += 1;
                }
                h.resync(d);
            }
            Mode::Body(b) => {
                // A gap inside a body of known extent loses that message only: skip the
                // missing bytes and stay in sync for the next message.
                let unneeded = b.fate == Fate::Unneeded;
                let skipped = match &mut b.framing {
                    Framing::Length(rem) if len <= *rem => {
                        *rem -= len;
                        true
                    }
                    Framing::Length(_) => false,
                    Framing::Chunked(dec) => dec.skip(len),
                    Framing::Close => true,
                };
                if !skipped && unneeded {
                    // The bytes left out run past this response's end, over the start
                    // of the next one: this one is framed, the next head is unknown.
                    if let Framing::Length(rem) = &mut b.framing {
                        *rem = 0;
                        self.finish(d, ts, cx);
                    }
                    let h = &mut self.halves[d];
                    if lost {
                        cx.incomplete(d);
                    } else {
                        cx.stats.snapped_heads += 1;
                    }
                    h.resync(d);
                    return;
                }
                if !skipped {
                    self.body_failed(d, cx);
                    return;
                }
                if !unneeded {
                    b.fate = Fate::Lost;
                }
                let done = matches!(b.framing, Framing::Length(0));
                h.buf.release();
                if done {
                    self.finish(d, ts, cx);
                }
            }
        }
    }

    pub(super) fn on_end(&mut self, d: usize, ts: u64, reason: EndReason, cx: &mut Cx<'_>) {
        let h = &mut self.halves[d];
        h.ended = true;
        match &h.mode {
            Mode::Held { .. } => {
                h.held.push(Held::End { ts, reason });
                return;
            }
            Mode::Tunnel => return,
            Mode::Resync => cx.stats.not_http_bytes += h.buf.len() as u64,
            Mode::Head { .. } if h.buf.is_empty() => {}
            Mode::Head { .. } => cx.incomplete(d),
            // A close-delimited body is complete only if every byte up to the FIN was seen.
            Mode::Body(b) if matches!(b.framing, Framing::Close) && reason == EndReason::Fin => {
                self.finish(d, ts, cx);
            }
            Mode::Body(b) => {
                let id = b.id;
                cx.incomplete(d);
                self.request_lost(d, id);
            }
        }
        let h = &mut self.halves[d];
        h.buf.release();
        h.mode = idle();
    }

    pub(super) fn close(mut self, cx: &mut Cx<'_>) {
        for d in [C2S, S2C] {
            if !self.halves[d].ended {
                self.on_end(d, 0, EndReason::SourceEnd, cx);
            }
        }
        let unanswered = self
            .pending
            .iter()
            .filter(|p| p.complete && !p.lost)
            .count();
        cx.stats.unanswered_requests += unanswered as u64;
    }

    // ---- resync -------------------------------------------------------------------

    fn resync_step(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        if self.halves[d].buf.is_empty() {
            self.resync_scan(d, ts, input, cx);
        } else {
            self.resync_tail(d, ts, input, cx);
        }
    }

    /// Continues a candidate start line kept from earlier input. If it is rejected, the
    /// bytes after its first one are rescanned: another candidate may begin inside it.
    fn resync_tail(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        let max_head = cx.limits.max_head;
        let h = &mut self.halves[d];
        let take = head::line_len(input.cur()).unwrap_or(input.cur().len());
        h.absorb(input, take, true, ts);
        match head::start_line(DIRS[d], &h.buf, true) {
            Verdict::Yes if h.buf.len() <= max_head => {
                h.mode = Mode::Head {
                    line_checked: true,
                    from_resync: true,
                };
            }
            Verdict::Maybe if h.buf.len() <= max_head => {}
            _ => {
                cx.stats.not_http_bytes += 1;
                let old = h.buf.take();
                input.push_front(old.slice(1..));
            }
        }
    }

    /// Scans input for a line that certainly starts a message, dropping what precedes it.
    ///
    /// Candidates are looked for at every position, not only after a line end: a message
    /// usually follows a body that does not end with a newline (JSON, binary), and after
    /// a gap or a midstream start the first byte may well be a message start. Certainty
    /// comes from the strict start-line check and then a full parse of the head.
    fn resync_scan(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        let max_head = cx.limits.max_head;
        let cur = input.cur();
        for i in 0..cur.len() {
            let rest = &cur[i..];
            let found = match head::start_line(DIRS[d], rest, true) {
                Verdict::Yes => head::line_len(rest).is_some_and(|l| l <= max_head),
                Verdict::Maybe => rest.len() <= max_head,
                Verdict::No => false,
            };
            if found {
                let n = rest.len();
                cx.stats.not_http_bytes += i as u64;
                input.advance(i);
                // A complete line goes to head parsing; a partial one waits in the tail.
                let h = &mut self.halves[d];
                match head::line_len(input.cur()) {
                    Some(_) => {
                        h.mode = Mode::Head {
                            line_checked: false,
                            from_resync: true,
                        }
                    }
                    None => h.absorb(input, n, true, ts),
                }
                return;
            }
        }
        let n = cur.len();
        cx.stats.not_http_bytes += n as u64;
        input.advance(n);
    }

    // ---- heads ----------------------------------------------------------------------

    fn head_step(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        let max_head = cx.limits.max_head;
        let h = &mut self.halves[d];
        let Mode::Head {
            line_checked,
            from_resync,
        } = h.mode
        else {
            return;
        };
        if h.buf.is_empty() && !from_resync {
            // RFC 9112 §2.2: empty lines before a start line are ignored.
            let n = input
                .cur()
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if n > 0 {
                input.advance(n);
                return;
            }
        }
        // One byte over the limit is enough to know the head is too big.
        let limit = (max_head + 1).saturating_sub(h.buf.len()).max(1);
        let cur = input.cur();
        let end = if line_checked {
            head::head_end(&h.buf, cur)
        } else {
            None
        };
        let want = match (line_checked, end) {
            (true, Some(e)) => e,
            (true, None) => cur.len(),
            (false, _) => head::line_len(cur).unwrap_or(cur.len()),
        };
        h.absorb(input, want.min(limit), true, ts);
        if !line_checked {
            // The first line is checked alone, so non-HTTP bytes are dropped at once
            // instead of being buffered up to max_head.
            match head::start_line(DIRS[d], &h.buf, false) {
                Verdict::No => return self.head_failed(d, input, cx),
                Verdict::Maybe => {}
                Verdict::Yes => {
                    h.mode = Mode::Head {
                        line_checked: true,
                        from_resync,
                    }
                }
            }
        }
        if h.buf.len() > max_head {
            return self.oversize_head(d, cx);
        }
        if end.is_some_and(|e| e <= limit) {
            self.head_complete(d, ts, from_resync, input, cx);
        }
    }

    fn head_complete(
        &mut self,
        d: usize,
        ts: u64,
        from_resync: bool,
        input: &mut Input,
        cx: &mut Cx<'_>,
    ) {
        let h = &self.halves[d];
        if d == S2C && !cx.responses {
            // Framing only: the status and the body's extent, nothing owned.
            return match head::parse_response_framing(&h.buf) {
                HeadResult::Complete((head, declared)) if head.len == h.buf.len() => {
                    if from_resync {
                        cx.stats.resyncs += 1;
                    }
                    self.on_response_head(head, declared, ts, cx)
                }
                HeadResult::TooManyHeaders => self.oversize_head(d, cx),
                _ => self.head_failed(d, input, cx),
            };
        }
        match head::parse(DIRS[d], &h.buf) {
            HeadResult::Complete(head) if head.len == h.buf.len() => {
                if from_resync {
                    cx.stats.resyncs += 1;
                }
                if d == C2S {
                    self.on_request_head(head, ts, cx);
                } else {
                    let declared = head::declared(&head, &self.halves[S2C].buf);
                    self.on_response_head(head, declared, ts, cx);
                }
            }
            HeadResult::TooManyHeaders => self.oversize_head(d, cx),
            _ => self.head_failed(d, input, cx),
        }
    }

    /// Not HTTP after all: drop one byte and rescan the rest (a real start line may be
    /// inside what was taken for a head).
    fn head_failed(&mut self, d: usize, input: &mut Input, cx: &mut Cx<'_>) {
        cx.stats.not_http_bytes += 1;
        let h = &mut self.halves[d];
        let old = h.buf.take();
        if old.len() > 1 {
            input.push_front(old.slice(1..));
        }
        h.resync(d);
    }

    fn oversize_head(&mut self, d: usize, cx: &mut Cx<'_>) {
        cx.stats.oversize_messages += 1;
        // Without the whole head the body's extent is unknown: only resync can recover.
        self.halves[d].resync(d);
        self.halves[d].buf.release();
    }

    fn on_request_head(&mut self, head: Head, ts: u64, cx: &mut Cx<'_>) {
        let framing = match head::declared(&head, &self.halves[C2S].buf) {
            Declared::Chunked => Framing::Chunked(ChunkedDecoder::new(cx.limits.max_head)),
            Declared::Length(n) => Framing::Length(n),
            // RFC 9112 §6.3 item 7: a request without either has no body.
            Declared::Nothing => Framing::Length(0),
            // §6.3 items 4-5: a server answers 400 and closes; the extent is unknowable.
            Declared::TeNotChunked | Declared::BadLength => return self.bad_framing(C2S, cx),
        };
        let id = self.new_seq();
        let method = head.method();
        self.pending.push_back(Pending {
            id,
            is_head: method == "HEAD",
            is_connect: method == "CONNECT",
            upgrade: method == "CONNECT" || head.has("upgrade"),
            last_ts: ts,
            complete: false,
            lost: false,
        });
        let body = Body {
            head,
            framing,
            fate: Fate::Keep,
            body_len: 0,
            id,
            req_last_ts: None,
        };
        self.start_body(C2S, body, ts, cx);
    }

    /// `declared`: the head's framing headers (see [`head::declared`]).
    fn on_response_head(&mut self, head: Head, declared: Declared, ts: u64, cx: &mut Cx<'_>) {
        let status = head.status();
        if (100..200).contains(&status) && status != 101 {
            // RFC 9110 §15.2: interim responses have no body and the final response follows
            // (this is how `Expect: 100-continue` works, whatever the reason phrase).
            cx.stats.interim_responses += 1;
            let h = &mut self.halves[S2C];
            h.buf.clear();
            h.mode = idle();
            return;
        }
        let h = &mut self.halves[S2C];
        let lost_sync = mem::take(&mut h.lost_sync);
        let first_ts = h.first_ts;
        let pair = self.pop_pending(first_ts, lost_sync, cx);
        let id = match &pair {
            Some(p) if !p.lost => p.id,
            Some(p) => {
                cx.stats.unpaired_responses += 1;
                p.id
            }
            None => {
                cx.stats.unpaired_responses += 1;
                self.new_seq()
            }
        };
        let req_last_ts = pair
            .as_ref()
            .filter(|p| p.complete && !p.lost)
            .map(|p| p.last_ts);
        let (is_head, is_connect, upgrade) = pair.as_ref().map_or((false, false, false), |p| {
            (p.is_head, p.is_connect, p.upgrade)
        });
        // RFC 9110 §15.2.2 / §9.3.6: after 101, or 2xx to CONNECT, the bytes are not HTTP.
        let tunnel = status == 101 || (is_connect && (200..300).contains(&status));
        // RFC 9112 §6.3 items 1-2: no body after HEAD, 1xx, 204, 304 or a tunnel start.
        let framing = if tunnel || is_head || status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            match declared {
                Declared::Chunked => Framing::Chunked(ChunkedDecoder::new(cx.limits.max_head)),
                Declared::Length(n) => Framing::Length(n),
                // §6.3 items 4 and 8: read until the server closes.
                Declared::TeNotChunked | Declared::Nothing => Framing::Close,
                Declared::BadLength => return self.bad_framing(S2C, cx),
            }
        };
        let body = Body {
            head,
            framing,
            fate: Fate::Keep,
            body_len: 0,
            id,
            req_last_ts,
        };
        self.start_body(S2C, body, ts, cx);
        if tunnel {
            self.tunnel(cx);
        } else if upgrade {
            self.release_held(id, cx);
        }
    }

    /// Takes the request a response answers. In sync it is the FIFO front. After the
    /// response side lost sync, responses of some queued requests were lost: the response
    /// found by resync answers a request sent before it started, taken to be the latest
    /// queued one whose last byte came no later than the response's first byte; older
    /// ones are dropped (counted unanswered). If none qualifies the response is unpaired
    /// (e.g. midstream: it answers a request that was never seen).
    fn pop_pending(&mut self, first_ts: u64, lost_sync: bool, cx: &mut Cx<'_>) -> Option<Pending> {
        if !lost_sync {
            return self.pending.pop_front();
        }
        let idx = self.pending.iter().rposition(|p| p.last_ts <= first_ts)?;
        for p in self.pending.drain(..idx) {
            if p.complete && !p.lost {
                cx.stats.unanswered_requests += 1;
            }
        }
        self.pending.pop_front()
    }

    fn bad_framing(&mut self, d: usize, cx: &mut Cx<'_>) {
        cx.incomplete(d);
        self.halves[d].resync(d);
    }

    // ---- bodies ---------------------------------------------------------------------

    fn start_body(&mut self, d: usize, mut body: Body, ts: u64, cx: &mut Cx<'_>) {
        let h = &mut self.halves[d];
        if d == S2C && !cx.responses {
            body.fate = Fate::Unneeded;
            h.buf.release();
        } else if matches!(body.framing, Framing::Length(n) if n > cx.limits.max_body) {
            // Known to be too big: skip it without buffering, framing stays in sync.
            body.fate = Fate::Oversize;
            h.buf.release();
        }
        let done = matches!(body.framing, Framing::Length(0));
        h.mode = Mode::Body(body);
        if done {
            self.finish(d, ts, cx);
        }
    }

    fn body_step(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        let max_body = cx.limits.max_body;
        let h = &mut self.halves[d];
        let Mode::Body(b) = &mut h.mode else {
            return;
        };
        let cur = input.cur();
        let (n, progress) = match &mut b.framing {
            Framing::Length(rem) => {
                let n = (*rem).min(cur.len() as u64);
                *rem -= n;
                (
                    n as usize,
                    if *rem == 0 {
                        Progress::Done
                    } else {
                        Progress::More
                    },
                )
            }
            Framing::Chunked(dec) => dec.feed(cur),
            Framing::Close => (cur.len(), Progress::More),
        };
        b.body_len += n as u64;
        if b.fate == Fate::Keep && b.body_len > max_body {
            b.fate = Fate::Oversize;
            h.buf.release();
        }
        let keep = b.fate == Fate::Keep;
        h.absorb(input, n, keep, ts);
        match progress {
            Progress::Done => self.finish(d, ts, cx),
            Progress::Error => self.body_failed(d, cx),
            Progress::More => {}
        }
    }

    /// The body's framing broke (bad chunk syntax, or a gap across its end).
    fn body_failed(&mut self, d: usize, cx: &mut Cx<'_>) {
        if let Mode::Body(b) = &self.halves[d].mode {
            let id = b.id;
            self.request_lost(d, id);
        }
        cx.incomplete(d);
        self.halves[d].resync(d);
        self.halves[d].buf.release();
    }

    /// The current message ended: emit it or count why not.
    fn finish(&mut self, d: usize, _ts: u64, cx: &mut Cx<'_>) {
        let h = &mut self.halves[d];
        let Mode::Body(b) = mem::replace(&mut h.mode, idle()) else {
            return;
        };
        let raw = h.buf.take();
        let (first_ts, last_ts, offset) = (h.first_ts, h.last_ts, h.msg_off);
        match b.fate {
            Fate::Keep => {
                let id = b.id;
                let msg = self.message(d, b, raw, offset, first_ts, last_ts, cx.conn, cx.clock);
                if d == C2S {
                    cx.stats.requests += 1;
                    self.request_done(id, last_ts);
                } else {
                    cx.stats.responses += 1;
                }
                cx.out.push(msg);
            }
            Fate::Oversize => {
                cx.stats.oversize_messages += 1;
                self.request_lost(d, b.id);
            }
            Fate::Lost => {
                cx.incomplete(d);
                self.request_lost(d, b.id);
            }
            Fate::Unneeded => cx.stats.responses += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        d: usize,
        b: Body,
        raw: Bytes,
        offset: u64,
        first_ts: u64,
        last_ts: u64,
        conn: ConnKey,
        clock: Clock,
    ) -> HttpMessage {
        HttpMessage {
            id: MessageId::Framed { conn, seq: b.id },
            clock,
            flow: self.flow,
            dir: DIRS[d],
            offset,
            first_ts_ns: first_ts,
            last_ts_ns: last_ts,
            raw,
            kind: b.head.kind,
            headers: b.head.headers,
            body_offset: b.head.len,
            latency_ns: b.req_last_ts.map(|t| last_ts.saturating_sub(t)),
        }
    }

    fn request_done(&mut self, id: u64, last_ts: u64) {
        let Some(p) = self.pending.iter_mut().rev().find(|p| p.id == id) else {
            return; // already answered (early response): nothing to update
        };
        p.complete = true;
        p.last_ts = last_ts;
        if p.upgrade {
            self.halves[C2S].mode = Mode::Held { id };
        }
    }

    fn request_lost(&mut self, d: usize, id: u64) {
        if d != C2S {
            return;
        }
        if let Some(p) = self.pending.iter_mut().rev().find(|p| p.id == id) {
            p.lost = true;
            p.upgrade = false;
        }
    }

    // ---- upgrades -------------------------------------------------------------------

    fn held_step(&mut self, d: usize, ts: u64, input: &mut Input, cx: &mut Cx<'_>) {
        let h = &mut self.halves[d];
        let Mode::Held { id } = h.mode else {
            return;
        };
        let Some((pos, bytes)) = input.take_chunk() else {
            return;
        };
        h.held_bytes += bytes.len();
        h.held.push(Held::Data { ts, pos, bytes });
        if h.held_bytes > cx.limits.max_head {
            // The answer is taking too long: stop holding and parse what came as HTTP;
            // if it is not, it is dropped as such.
            self.release_held(id, cx);
        }
    }

    /// The request `id` did not switch protocols: parse the bytes held after it.
    fn release_held(&mut self, id: u64, cx: &mut Cx<'_>) {
        let h = &mut self.halves[C2S];
        if !matches!(h.mode, Mode::Held { id: held } if held == id) {
            return;
        }
        h.mode = idle();
        h.held_bytes = 0;
        for ev in mem::take(&mut h.held) {
            match ev {
                Held::Data { ts, pos, bytes } => {
                    self.on_data(C2S, ts, &mut Input::new(bytes, pos), cx);
                }
                Held::Gap { ts, len } => self.on_gap(C2S, len, ts, true, cx),
                Held::End { ts, reason } => self.on_end(C2S, ts, reason, cx),
            }
        }
    }

    /// The connection left HTTP: nothing more is parsed in either direction.
    fn tunnel(&mut self, cx: &mut Cx<'_>) {
        cx.stats.upgraded_connections += 1;
        for h in &mut self.halves {
            cx.stats.tunneled_bytes += (h.buf.len() + h.held_bytes) as u64;
            h.buf.release();
            h.held.clear();
            h.held_bytes = 0;
            h.mode = Mode::Tunnel;
        }
    }
}
