//! HTTP/1.x framing: turns the ordered per-connection byte streams of [`crate::stream`]
//! into complete request and response messages, without any IO.
//!
//! One [`HttpFramer`] serves every connection. Each direction of a connection is parsed
//! incrementally (heads with `httparse`, bodies by Content-Length, chunked coding or
//! connection close), so a message split at any byte across events frames the same as one
//! delivered whole. Responses are paired with requests through a per-connection FIFO
//! (HTTP/1.1 answers in order, RFC 9112 §9.3.2) and share their request's `id`. Damaged
//! input (capture gaps, midstream starts, non-HTTP bytes, over-limit messages) is never
//! emitted: it is counted in [`HttpStats`] and the parser resynchronises on the next start
//! line it can recognise with certainty. Memory per direction stays within
//! `max_head + max_body` (plus `max_head` of request bytes held while an upgrade is
//! decided).
//!
//! The pieces of the framer are the agent's one HTTP toolkit, used wherever it reads or
//! writes HTTP: [`token`] (RFC 9110 tokens), `head` (start lines, head parsing with one
//! header limit, framing headers), `chunked` (the chunked-coding decoder), `edit` (the
//! byte-exact head editor of the filters and the mirror), [`validate`] (headers the
//! operator asks to set) and [`parse_whole`] (saved records, middleware output). The
//! staging client reads staging's responses with `head` and `chunked` too, so a response
//! is read the same whether it was captured or mirrored.

pub(crate) mod chunked;
mod conn;
pub(crate) mod edit;
pub(crate) mod head;
mod headers;
mod msgbuf;
pub mod settings;
#[cfg(test)]
mod tests;
mod text;
pub mod token;
pub mod validate;

#[cfg(test)]
pub(crate) use headers::OwnedHeaders;
pub use headers::{HeaderLines, Headers};
pub use text::Text;

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::envelope::{Clock, ConnKey, Envelope, MessageId, Origin};
use crate::fasthash::FastMap;
use crate::stream::{ConnId, Direction, Flow, StreamEvent};

use conn::{Conn, Cx, Input};

/// Bounds on what one message may hold in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head (start line + headers + empty line), in bytes.
    pub max_head: usize,
    /// Largest body as it is on the wire (including chunked framing), in bytes.
    pub max_body: u64,
}

/// The default [`Limits::max_head`], also the bound of every other head the agent reads
/// (staging's responses, trailers).
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: DEFAULT_MAX_HEAD,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// The start line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Request {
        method: Text,
        target: Text,
        /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
        version: u8,
    },
    Response {
        status: u16,
        reason: Text,
        /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
        version: u8,
    },
}

/// One complete HTTP message, with its exact wire bytes and a parsed view of its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMessage {
    /// Unique across the fleet; a response carries the id of the request it answers. With
    /// `flow`, `first_ts_ns` and `clock` it is the message's envelope
    /// ([`crate::envelope`]).
    pub id: MessageId,
    pub flow: Flow,
    /// The clock of the timestamps.
    pub clock: Clock,
    pub dir: Direction,
    /// Stream offset (in its direction) of the first byte of `raw`.
    pub offset: u64,
    /// Timestamp of the `Data` event holding the first byte.
    pub first_ts_ns: u64,
    /// Timestamp of the `Data` event holding the last byte.
    pub last_ts_ns: u64,
    /// Exactly the wire bytes: head and body, with chunked framing and trailers.
    pub raw: Bytes,
    pub kind: Kind,
    /// Header names in original case and order, duplicates kept; values are ranges of
    /// `raw` (read them with [`HttpMessage::headers`]).
    pub headers: HeaderLines,
    /// Where the body starts in `raw` (the head length).
    pub body_offset: usize,
    /// For a response: its last byte's time minus its request's last byte's time.
    pub latency_ns: Option<u64>,
}

impl HttpMessage {
    /// The envelope as one value (for outputs that carry it whole).
    pub fn envelope(&self) -> Envelope {
        Envelope {
            id: self.id.clone(),
            client: self.flow.client,
            server: self.flow.server,
            ts_ns: self.first_ts_ns,
            clock: self.clock,
        }
    }

    /// The body as on the wire (still chunk-framed if chunked).
    pub fn body(&self) -> Bytes {
        self.raw.slice(self.body_offset.min(self.raw.len())..)
    }

    /// The header lines with their values.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new(&self.headers, &self.raw)
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().get(name)
    }
}

/// Counters of what the framer saw and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpStats {
    pub requests: u64,
    /// Responses framed (emitted too, unless the framer runs without responses).
    pub responses: u64,
    /// Requests damaged by a gap, cut by the end of the stream, or with unusable framing.
    pub incomplete_requests: u64,
    pub incomplete_responses: u64,
    /// Messages whose head or body exceeded [`Limits`] (or with more than 1024 headers).
    pub oversize_messages: u64,
    /// Bytes skipped while looking for a start line (garbage, TLS, remains after a gap).
    pub not_http_bytes: u64,
    /// 1xx responses other than 101, skipped.
    pub interim_responses: u64,
    /// Connections switched to another protocol (101) or tunnelled (CONNECT 2xx).
    pub upgraded_connections: u64,
    /// Bytes of upgraded/tunnelled connections, not parsed.
    pub tunneled_bytes: u64,
    /// Responses emitted without an emitted request to pair with.
    pub unpaired_responses: u64,
    /// Emitted requests never answered: pending at Close, or dropped from the FIFO when the
    /// response side resynchronised past their responses.
    pub unanswered_requests: u64,
    /// Times a direction regained sync after damage, garbage or a midstream start.
    pub resyncs: u64,
    /// Response heads the kernel's response snap left out (responses coalesced into one
    /// packet past the snap, or a head longer than it): not framed; requests are not
    /// affected.
    pub snapped_heads: u64,
}

/// Frames HTTP/1.x messages for many connections.
pub struct HttpFramer {
    limits: Limits,
    conns: FastMap<ConnId, Conn>,
    stats: HttpStats,
    /// Makes the connections' numbers unique across the fleet in message ids.
    origin: Origin,
    clock: Clock,
    /// Emit responses (the default), or only frame them.
    responses: bool,
}

impl HttpFramer {
    /// A framer for tests and tools: origin 0, monotonic timestamps.
    pub fn new(limits: Limits) -> Self {
        HttpFramer::with_origin(limits, Origin::default(), Clock::Monotonic)
    }

    /// A framer whose messages carry `origin` in their ids and `clock` in their envelope.
    pub fn with_origin(limits: Limits, origin: Origin, clock: Clock) -> Self {
        HttpFramer {
            limits,
            conns: FastMap::default(),
            stats: HttpStats::default(),
            origin,
            clock,
            responses: true,
        }
    }

    /// Responses are framed (they answer their requests, and may switch a connection
    /// away from HTTP) but not emitted, and their bodies are neither buffered nor needed:
    /// for a pipeline where nothing takes responses, which lets the kernel leave response
    /// bodies out (the response snap).
    pub fn without_responses(mut self) -> Self {
        self.responses = false;
        self
    }

    /// Consumes one stream event, appending any messages it completes to `out`.
    pub fn on_event(&mut self, ev: &StreamEvent, out: &mut Vec<HttpMessage>) {
        let HttpFramer {
            limits,
            conns,
            stats,
            origin,
            clock,
            responses,
        } = self;
        let mut cx = Cx {
            limits,
            stats,
            out,
            conn: ConnKey {
                origin: *origin,
                conn: ev.conn(),
            },
            clock: *clock,
            responses: *responses,
        };
        match ev {
            StreamEvent::Open {
                conn,
                flow,
                midstream,
                ..
            } => {
                conns.insert(*conn, Conn::new(*flow, *midstream));
            }
            StreamEvent::Data {
                conn,
                dir,
                offset,
                ts_ns,
                bytes,
            } => {
                let c = conns.entry(*conn).or_insert_with(Conn::unknown);
                let mut input = Input::new(bytes.clone(), *offset);
                c.on_data(dir.index(), *ts_ns, &mut input, &mut cx);
            }
            StreamEvent::Gap {
                conn,
                dir,
                len,
                ts_ns,
                ..
            } => {
                let c = conns.entry(*conn).or_insert_with(Conn::unknown);
                c.on_gap(dir.index(), *len, *ts_ns, true, &mut cx);
            }
            StreamEvent::Skipped {
                conn,
                dir,
                len,
                ts_ns,
                ..
            } => {
                let c = conns.entry(*conn).or_insert_with(Conn::unknown);
                c.on_gap(dir.index(), *len, *ts_ns, false, &mut cx);
            }
            StreamEvent::End {
                conn,
                dir,
                ts_ns,
                reason,
            } => {
                if let Some(c) = conns.get_mut(conn) {
                    c.on_end(dir.index(), *ts_ns, *reason, &mut cx);
                }
            }
            StreamEvent::Close { conn, .. } => {
                if let Some(c) = conns.remove(conn) {
                    c.close(&mut cx);
                }
            }
        }
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// Connections with state held.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Bytes of message data held across all connections (heads, bodies, resync tails and
    /// request bytes held while an upgrade is decided).
    pub fn buffered_bytes(&self) -> usize {
        self.conns.values().map(Conn::buffered_bytes).sum()
    }
}

/// Why a whole message from outside capture (a saved file, a middleware) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WholeError {
    #[error("the head does not parse as HTTP/1.x")]
    BadHead,
    #[error("the body's length disagrees with its framing headers")]
    BadFraming,
}

/// The parsed view of a message whose bytes arrive whole, not from a stream: a record of
/// a saved file or a line back from a middleware. The head must parse completely; for a
/// request, the bytes after it must be exactly the body its Content-Length declares (a
/// request without Content-Length or chunked coding has none), since a request replayed
/// with wrong framing would desynchronise the staging connection. Chunked bodies and
/// responses are taken as they are.
pub fn parse_whole(dir: Direction, raw: &Bytes) -> Result<WholeHead, WholeError> {
    let head = match head::parse(dir, raw) {
        head::HeadResult::Complete(h) => h,
        _ => return Err(WholeError::BadHead),
    };
    let body = (raw.len() - head.len.min(raw.len())) as u64;
    if dir == Direction::ClientToServer {
        match head::declared(&head, raw) {
            head::Declared::Chunked => {}
            head::Declared::Length(n) if n == body => {}
            head::Declared::Nothing if body == 0 => {}
            _ => return Err(WholeError::BadFraming),
        }
    }
    Ok(WholeHead {
        headers: head.headers,
        kind: head.kind,
        body_offset: head.len,
    })
}

/// The parsed view of a whole message (see [`parse_whole`]).
#[derive(Clone, Debug)]
pub struct WholeHead {
    pub kind: Kind,
    /// As in [`HttpMessage::headers`].
    pub headers: HeaderLines,
    pub body_offset: usize,
}

/// The flow used for connections whose `Open` was never seen, and for messages that did
/// not come from a captured connection.
pub fn unknown_flow() -> Flow {
    let none = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    Flow {
        client: none,
        server: none,
    }
}
