//! Reads one HTTP/1.x response from staging, just far enough to know it is complete and
//! whether the connection can carry the next request. Heads are parsed and bodies framed
//! by the capture framer's own pieces ([`crate::http::head`] with its header limit, its
//! Content-Length and Transfer-Encoding rules, [`crate::http::chunked`]), so staging's
//! answer is read exactly as the same answer captured from production would be.
//!
//! Bodies are discarded as they arrive (only their framing is walked), so memory stays
//! within the head limit whatever staging sends, unless the caller asks to keep the
//! response ([`read_response_keeping`]): then its head and the first bytes of its body, up
//! to a bound, are kept as they were on the wire. Interim 1xx responses are skipped; 101
//! ends the exchange and the connection.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::head::{self, Declared, Head, HeadResult};
use crate::http::{HeaderLines, Kind, DEFAULT_MAX_HEAD};
use crate::stream::Direction;

/// Largest response head accepted, and largest trailer section: the framer's.
const MAX_HEAD: usize = DEFAULT_MAX_HEAD;

/// What the lane needs to know about a complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// The connection may carry another request.
    pub keep_alive: bool,
    /// The response itself, when it was asked for.
    pub kept: Option<Kept>,
    /// The first `Location` of a redirect (301, 302, 303, 307, 308), for following it.
    pub location: Option<Bytes>,
}

/// A final response as staging sent it: the head whole, the body up to a bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    /// The head, then the first bytes of the body as on the wire (chunk framing included).
    pub raw: Bytes,
    pub kind: Kind,
    /// As in [`crate::http::HttpMessage::headers`], ranges of `raw`.
    pub headers: HeaderLines,
    /// Where the body starts in `raw`.
    pub body_offset: usize,
    /// The length of the whole body on the wire; more than `raw` holds if it was cut.
    pub body_len: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// EOF before the response was complete; `any` tells whether any byte came at all
    /// (a reused keep-alive connection closed by staging shows none).
    #[error("connection closed before a full response")]
    Closed { any: bool },
    #[error("read failed: {source}")]
    Io { source: io::Error, any: bool },
    #[error("bad response: {0}")]
    Bad(&'static str),
}

impl ReadError {
    /// True when the connection died without a single response byte.
    pub fn nothing_received(&self) -> bool {
        matches!(
            self,
            ReadError::Closed { any: false } | ReadError::Io { any: false, .. }
        )
    }
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Where body bytes go: counted always, copied up to `limit` bytes into `bytes` (which
/// starts with the head when the response is kept; `limit` 0 copies nothing).
struct Sink {
    bytes: BytesMut,
    limit: usize,
    len: u64,
}

impl Sink {
    fn take(&mut self, b: &[u8]) {
        self.len += b.len() as u64;
        let room = self.limit.saturating_sub(self.bytes.len()).min(b.len());
        self.bytes.extend_from_slice(&b[..room]);
    }
}

/// A buffered reader over the staging connection that remembers whether any byte came.
struct Reader<'a, R> {
    io: &'a mut R,
    buf: &'a mut BytesMut,
    any: bool,
}

impl<R: AsyncRead + Unpin> Reader<'_, R> {
    /// Reads more bytes into the buffer; EOF is an error since a response is incomplete.
    async fn fill(&mut self) -> Result<(), ReadError> {
        self.buf.reserve(8 * 1024);
        match self.io.read_buf(self.buf).await {
            Ok(0) => Err(ReadError::Closed { any: self.any }),
            Ok(_) => {
                self.any = true;
                Ok(())
            }
            Err(source) => Err(ReadError::Io {
                source,
                any: self.any,
            }),
        }
    }

    /// Moves `n` buffered bytes into the body sink.
    fn consume(&mut self, n: usize, sink: &mut Sink) {
        sink.take(&self.buf[..n]);
        self.buf.advance(n);
    }

    /// Reads until EOF; for bodies delimited by the connection close.
    async fn drain_to_eof(&mut self, sink: &mut Sink) -> Result<(), ReadError> {
        loop {
            self.consume(self.buf.len(), sink);
            match self.fill().await {
                Ok(()) => {}
                Err(ReadError::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads the final response to a request (`head_request`: the request was HEAD, so the
/// response has no body whatever its headers say). `buf` holds what was read past the
/// previous response (empty unless requests were pipelined), and keeps what is read past
/// this one. `more`: responses to further requests are expected on the connection; if
/// not, bytes past this response are unsolicited and the connection is not reused.
#[cfg(test)]
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    more: bool,
) -> Result<Response, ReadError> {
    read_response_keeping(io, buf, head_request, more, None).await
}

/// Reads the final response to a request as `read_response` does (its documentation
/// tells what `buf` and `more` mean), keeping the final response with at most `keep_body` bytes of its
/// body when `keep_body` is given.
pub(crate) async fn read_response_keeping<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    more: bool,
    keep_body: Option<usize>,
) -> Result<Response, ReadError> {
    let any = !buf.is_empty();
    let mut r = Reader { io, buf, any };
    loop {
        let head = read_head(&mut r).await?;
        let status = head.status();
        let declared = head::declared(&head, r.buf);
        let close = head.lists(r.buf, "connection", "close");
        let keep_alive = head.lists(r.buf, "connection", "keep-alive");
        let location = matches!(status, 301..=303 | 307 | 308)
            .then(|| {
                head.values(r.buf)
                    .get("location")
                    .map(Bytes::copy_from_slice)
            })
            .flatten();
        let mut sink = Sink {
            bytes: BytesMut::new(),
            limit: 0,
            len: 0,
        };
        if let Some(bound) = keep_body.filter(|_| status >= 200 || status == 101) {
            sink.limit = head.len.saturating_add(bound);
            sink.bytes.extend_from_slice(&r.buf[..head.len]);
        }
        r.buf.advance(head.len);
        if status == 101 {
            // The connection now speaks another protocol: never reuse it.
            return Ok(Response {
                status: 101,
                keep_alive: false,
                kept: keep_body.map(|_| kept(head, sink)),
                location: None,
            });
        }
        if status < 200 {
            continue; // 100 Continue, 103 Early Hints: the final response follows.
        }
        let kind = body_kind(status, declared, head_request)?;
        match kind {
            BodyKind::None => {}
            BodyKind::Length(n) => copy_length(&mut r, n, &mut sink).await?,
            BodyKind::Chunked => copy_chunked(&mut r, &mut sink).await?,
            BodyKind::UntilClose => r.drain_to_eof(&mut sink).await?,
        }
        let version = match head.kind {
            Kind::Response { version, .. } => version,
            Kind::Request { version, .. } => version,
        };
        let persistent = !close && (version >= 1 || keep_alive);
        return Ok(Response {
            status,
            // Leftover bytes nobody asked for would be an unsolicited response: do not
            // trust the connection.
            keep_alive: persistent && kind != BodyKind::UntilClose && (more || r.buf.is_empty()),
            kept: keep_body.map(|_| kept(head, sink)),
            location,
        });
    }
}

fn kept(head: Head, sink: Sink) -> Kept {
    let raw = sink.bytes.freeze();
    Kept {
        headers: head.headers,
        kind: head.kind,
        body_offset: head.len,
        body_len: sink.len,
        raw,
    }
}

/// RFC 9112 §6.3, for responses, as the framer applies it.
fn body_kind(status: u16, declared: Declared, head_request: bool) -> Result<BodyKind, ReadError> {
    if head_request || status == 204 || status == 304 {
        return Ok(BodyKind::None);
    }
    Ok(match declared {
        Declared::Chunked => BodyKind::Chunked,
        Declared::Length(n) => BodyKind::Length(n),
        Declared::TeNotChunked | Declared::Nothing => BodyKind::UntilClose,
        Declared::BadLength => return Err(ReadError::Bad("bad or conflicting content-length")),
    })
}

async fn read_head<R: AsyncRead + Unpin>(r: &mut Reader<'_, R>) -> Result<Head, ReadError> {
    loop {
        match head::parse(Direction::ServerToClient, r.buf) {
            HeadResult::Complete(head) => return Ok(head),
            HeadResult::Partial => {}
            HeadResult::Invalid => return Err(ReadError::Bad("unparsable head")),
            HeadResult::TooManyHeaders => return Err(ReadError::Bad("too many headers")),
        }
        if r.buf.len() > MAX_HEAD {
            return Err(ReadError::Bad("response head too large"));
        }
        r.fill().await?;
    }
}

async fn copy_length<R: AsyncRead + Unpin>(
    r: &mut Reader<'_, R>,
    mut left: u64,
    sink: &mut Sink,
) -> Result<(), ReadError> {
    loop {
        let take = left.min(r.buf.len() as u64);
        r.consume(take as usize, sink);
        left -= take;
        if left == 0 {
            return Ok(());
        }
        r.fill().await?;
    }
}

/// Walks the chunked framing (sizes, data, CRLFs, trailers) with the framer's decoder.
async fn copy_chunked<R: AsyncRead + Unpin>(
    r: &mut Reader<'_, R>,
    sink: &mut Sink,
) -> Result<(), ReadError> {
    let mut decoder = ChunkedDecoder::new(MAX_HEAD);
    loop {
        let (used, progress) = decoder.feed(r.buf);
        r.consume(used, sink);
        match progress {
            Progress::Done => return Ok(()),
            Progress::Error => return Err(ReadError::Bad("bad chunked body")),
            Progress::More => r.fill().await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(wire: &[u8], head_request: bool) -> (Result<Response, ReadError>, usize) {
        let mut io = wire;
        let mut buf = BytesMut::new();
        let r = read_response(&mut io, &mut buf, head_request, false).await;
        (r, buf.len() + io.len())
    }

    fn ok(status: u16, keep_alive: bool) -> Response {
        Response {
            status,
            keep_alive,
            kept: None,
            location: None,
        }
    }

    #[tokio::test]
    async fn content_length_and_keep_alive() {
        let (r, left) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false).await;
        assert_eq!((r.unwrap(), left), (ok(200, true), 0));
        let (r, _) = read(
            b"HTTP/1.1 404 NF\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(r.unwrap(), ok(404, false));
        let (r, _) = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).await;
        assert_eq!(r.unwrap(), ok(200, false));
        let (r, _) = read(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(r.unwrap(), ok(200, true));
    }

    #[tokio::test]
    async fn chunked_with_extensions_and_trailers() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                     3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n";
        let (r, left) = read(wire, false).await;
        assert_eq!((r.unwrap(), left), (ok(200, true), 0));
        let (r, _) = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false,
        )
        .await;
        assert!(matches!(r, Err(ReadError::Bad(_))));
    }

    #[tokio::test]
    async fn no_body_cases_and_interim() {
        let (r, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true).await;
        assert_eq!(r.unwrap(), ok(200, true));
        let (r, _) = read(b"HTTP/1.1 304 NM\r\nContent-Length: 10\r\n\r\n", false).await;
        assert_eq!(r.unwrap(), ok(304, true));
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 EH\r\nLink: x\r\n\r\nHTTP/1.1 201 C\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(read(wire, false).await.0.unwrap(), ok(201, true));
        let (r, _) = read(b"HTTP/1.1 101 Switching\r\nUpgrade: ws\r\n\r\nxx", false).await;
        assert_eq!(r.unwrap(), ok(101, false));
    }

    #[tokio::test]
    async fn until_close_and_truncation() {
        let (r, _) = read(b"HTTP/1.1 200 OK\r\n\r\nall of it", false).await;
        assert_eq!(r.unwrap(), ok(200, false));
        let (r, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false).await;
        assert!(matches!(r, Err(ReadError::Closed { any: true })));
        let (r, _) = read(b"", false).await;
        assert!(r.unwrap_err().nothing_received());
        let (r, _) = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false,
        )
        .await;
        assert!(matches!(r, Err(ReadError::Bad(_))));
        let (r, _) = read(b"garbage\r\n\r\n", false).await;
        assert!(matches!(r, Err(ReadError::Bad(_))));
        // Extra bytes after the response make the connection untrustworthy.
        let (r, _) = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1",
            false,
        )
        .await;
        assert_eq!(r.unwrap(), ok(200, false));
    }

    #[tokio::test]
    async fn pipelined_responses_read_one_after_another() {
        let wire: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 C\r\n\
                            Transfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n\
                            HTTP/1.1 204 NC\r\n\r\n";
        let mut io = wire;
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for more in [true, true, false] {
            got.push(read_response(&mut io, &mut buf, false, more).await.unwrap());
        }
        assert_eq!(got, [ok(200, true), ok(201, true), ok(204, true)]);
        assert!(buf.is_empty() && io.is_empty());
        // What was read past a response counts as received for the next one.
        let mut io: &[u8] = b"";
        let mut buf = BytesMut::from(&b"HTTP/1.1 2"[..]);
        let e = read_response(&mut io, &mut buf, false, false)
            .await
            .unwrap_err();
        assert!(!e.nothing_received());
    }

    #[tokio::test]
    async fn many_headers_are_a_normal_response() {
        // The framer's header limit holds here too: 200 headers are not a bad response
        // (staging's answers used to be held to 128, which backed the target off).
        let mut wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
        for i in 0..200 {
            wire.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\nok");
        let (r, left) = read(&wire, false).await;
        assert_eq!((r.unwrap(), left), (ok(200, true), 0));
        let mut too_many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=crate::http::head::MAX_HEADERS {
            too_many.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
        }
        too_many.extend_from_slice(b"\r\n");
        assert!(matches!(
            read(&too_many, false).await.0,
            Err(ReadError::Bad(_))
        ));
    }

    async fn keep(wire: &[u8], bound: usize) -> Kept {
        let mut io = wire;
        let mut buf = BytesMut::new();
        let r = read_response_keeping(&mut io, &mut buf, false, false, Some(bound)).await;
        r.unwrap().kept.expect("kept")
    }

    #[tokio::test]
    async fn kept_responses_hold_the_head_and_a_bounded_body() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\n\
                     Content-Length: 10\r\n\r\n0123456789";
        let k = keep(wire, 4).await;
        let head = b"HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 10\r\n\r\n";
        assert_eq!(&k.raw[..k.body_offset], &head[..]);
        assert_eq!(&k.raw[k.body_offset..], b"0123");
        assert_eq!(k.body_len, 10);
        let headers = crate::http::Headers::new(&k.headers, &k.raw);
        assert_eq!(
            headers.iter().next(),
            Some((&crate::http::Text::new("X-A"), &b"1"[..]))
        );
        assert!(matches!(k.kind, Kind::Response { status: 201, .. }));
        // Chunked bodies are kept with their framing, as on the wire.
        let body = b"3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n";
        let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        wire.extend_from_slice(body);
        let k = keep(&wire, 1024).await;
        assert_eq!(&k.raw[k.body_offset..], &body[..]);
        assert_eq!(k.body_len, body.len() as u64);
        // Until close, and nothing kept of the body with a bound of 0.
        let k = keep(b"HTTP/1.1 200 OK\r\n\r\nall of it", 0).await;
        assert_eq!((k.raw.len(), k.body_len), (k.body_offset, 9));
    }
}
