//! Reads one HTTP/1.x response from staging, just far enough to know it is complete and
//! whether the connection can carry the next request. Bodies are discarded as they arrive
//! (only their framing is walked), so memory stays within the head limit whatever staging
//! sends. Interim 1xx responses are skipped; 101 ends the exchange and the connection.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest response head accepted, and largest chunk-size or trailer line.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// What the lane needs to know about a complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// The connection may carry another request.
    pub keep_alive: bool,
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

/// The parts of a head that matter for framing and reuse.
#[derive(Debug)]
struct Head {
    len: usize,
    status: u16,
    version: u8,
    content_length: Option<u64>,
    chunked: bool,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
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

    /// Reads until EOF, discarding; for bodies delimited by the connection close.
    async fn drain_to_eof(&mut self) -> Result<(), ReadError> {
        loop {
            self.buf.clear();
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
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    more: bool,
) -> Result<Response, ReadError> {
    let any = !buf.is_empty();
    let mut r = Reader { io, buf, any };
    loop {
        let head = read_head(&mut r).await?;
        r.buf.advance(head.len);
        if head.status == 101 {
            // The connection now speaks another protocol: never reuse it.
            return Ok(Response {
                status: 101,
                keep_alive: false,
            });
        }
        if head.status < 200 {
            continue; // 100 Continue, 103 Early Hints: the final response follows.
        }
        let kind = body_kind(&head, head_request);
        match kind {
            BodyKind::None => {}
            BodyKind::Length(n) => skip_length(&mut r, n).await?,
            BodyKind::Chunked => skip_chunked(&mut r).await?,
            BodyKind::UntilClose => r.drain_to_eof().await?,
        }
        let persistent = !head.close && (head.version >= 1 || head.keep_alive);
        return Ok(Response {
            status: head.status,
            // Leftover bytes nobody asked for would be an unsolicited response: do not
            // trust the connection.
            keep_alive: persistent && kind != BodyKind::UntilClose && (more || r.buf.is_empty()),
        });
    }
}

/// RFC 9112 §6.3, for responses.
fn body_kind(h: &Head, head_request: bool) -> BodyKind {
    if head_request || h.status == 204 || h.status == 304 {
        BodyKind::None
    } else if h.chunked {
        BodyKind::Chunked
    } else if h.other_coding {
        BodyKind::UntilClose
    } else if let Some(n) = h.content_length {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    }
}

async fn read_head<R: AsyncRead + Unpin>(r: &mut Reader<'_, R>) -> Result<Head, ReadError> {
    loop {
        if let Some(head) = parse_head(r.buf)? {
            return Ok(head);
        }
        if r.buf.len() > MAX_HEAD {
            return Err(ReadError::Bad("response head too large"));
        }
        r.fill().await?;
    }
}

/// Parses a complete head at the start of `buf`, or `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::Bad("too many headers")),
        Err(_) => return Err(ReadError::Bad("unparsable head")),
    };
    let mut head = Head {
        len,
        status: resp.code.unwrap_or(0),
        version: resp.version.unwrap_or(1),
        content_length: None,
        chunked: false,
        other_coding: false,
        close: false,
        keep_alive: false,
    };
    for h in resp.headers.iter() {
        apply_header(&mut head, h.name, h.value)?;
    }
    Ok(Some(head))
}

fn apply_header(head: &mut Head, name: &str, value: &[u8]) -> Result<(), ReadError> {
    if name.eq_ignore_ascii_case("content-length") {
        let n = parse_decimal(value).ok_or(ReadError::Bad("bad content-length"))?;
        if head.content_length.is_some_and(|old| old != n) {
            return Err(ReadError::Bad("conflicting content-length"));
        }
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        // Only the last coding decides whether the body is chunked.
        for coding in tokens(value) {
            head.chunked = coding.eq_ignore_ascii_case(b"chunked");
            head.other_coding = !head.chunked;
        }
    } else if name.eq_ignore_ascii_case("connection") {
        for t in tokens(value) {
            head.close |= t.eq_ignore_ascii_case(b"close");
            head.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    Ok(())
}

/// Comma-separated tokens, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

async fn skip_length<R: AsyncRead + Unpin>(
    r: &mut Reader<'_, R>,
    mut left: u64,
) -> Result<(), ReadError> {
    loop {
        let take = left.min(r.buf.len() as u64);
        r.buf.advance(take as usize);
        left -= take;
        if left == 0 {
            return Ok(());
        }
        r.fill().await?;
    }
}

/// Walks the chunked framing (sizes, data, CRLFs, trailers) and discards it.
async fn skip_chunked<R: AsyncRead + Unpin>(r: &mut Reader<'_, R>) -> Result<(), ReadError> {
    loop {
        let line = read_line(r).await?;
        let size = parse_chunk_size(&line).ok_or(ReadError::Bad("bad chunk size"))?;
        if size == 0 {
            break;
        }
        skip_length(r, size).await?;
        let crlf = read_line(r).await?;
        if !crlf.is_empty() {
            return Err(ReadError::Bad("chunk data not followed by CRLF"));
        }
    }
    // Trailer section: header lines up to an empty line.
    let mut trailer_bytes = 0;
    loop {
        let line = read_line(r).await?;
        if line.is_empty() {
            return Ok(());
        }
        trailer_bytes += line.len();
        if trailer_bytes > MAX_HEAD {
            return Err(ReadError::Bad("trailers too large"));
        }
    }
}

/// Takes one line from the buffer, without its `\r\n` / `\n`.
async fn read_line<R: AsyncRead + Unpin>(r: &mut Reader<'_, R>) -> Result<Vec<u8>, ReadError> {
    loop {
        if let Some(i) = r.buf.iter().position(|&b| b == b'\n') {
            let mut line = r.buf.split_to(i + 1).to_vec();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if r.buf.len() > MAX_HEAD {
            return Err(ReadError::Bad("line too long"));
        }
        r.fill().await?;
    }
}

/// `1a;ext=x` -> 26.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
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
        Response { status, keep_alive }
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
}
