//! GoReplay's TCP protocol on the wire: each message is its meta line, the raw HTTP
//! message and the payload separator `"\n🐵🙈🙉\n"`, exactly as in a `.gor` file, one
//! after another on a long-lived connection, with nothing else (no handshake, no length,
//! no acknowledgement).
//!
//! GoReplay 1.3's reader (`input_tcp.go`) splits the stream into lines and ends a message
//! at the first line that is the three monkeys: a body that holds `"\n🐵🙈🙉\n"` is cut
//! there, and its rest is taken for a message of its own. [`Decoder`] reads the same
//! bytes at least as well: a separator right where the message's own framing
//! (`Content-Length`, or a chunked body's last chunk) ends it is the end, whatever the
//! body holds before; another separator ends the message only if the framing does not
//! say the body goes on, or if a meta line follows it (a body cut short; with a
//! Content-Length the decoder first waits up to 1 MiB for the framing's end). So bodies
//! holding the separator arrive whole (a chunked body whose separator is followed by a
//! meta line is the one case cut as GoReplay cuts it), and a message whose body really
//! is cut short still ends at the next message. Bytes that are not a message (no meta line) are skipped up to the
//! next separator and counted; nothing in the stream can make the decoder hold more than
//! [`MAX_MESSAGE`] bytes.

use bytes::{Buf, Bytes, BytesMut};

use crate::gorfile::{self, Record, RecordType, MAX_META_LINE, SEPARATOR};
use crate::http::{chunked, head};
use crate::stream::Direction;

/// Largest message accepted (as the saved-traffic reader's bound); more is taken as damage.
pub const MAX_MESSAGE: usize = gorfile::MAX_RECORD;

/// The bytes of one message on the wire: meta line, payload, separator.
pub fn encode(rec: &Record) -> Bytes {
    let mut out = Vec::new();
    gorfile::encode(rec, &mut out);
    Bytes::from(out)
}

/// Why bytes of the stream were skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not a meta line where a message starts: skipped up to the next separator.
    NoMeta,
    /// A message over [`MAX_MESSAGE`] without a separator.
    TooLarge,
    /// The connection ended inside a message.
    Truncated,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NoMeta => "no meta line",
            Malformed::TooLarge => "larger than the limit",
            Malformed::Truncated => "connection closed inside a message",
        }
    }
}

/// Splits one connection's bytes into messages; see the module documentation.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Where the search for the current message's separator goes on (candidates before
    /// it were found to be body content).
    scan_from: usize,
    eof: bool,
    max: Option<usize>,
    /// After bytes that were not a message: everything up to the next separator is
    /// dropped without being reported again.
    resync: bool,
}

/// What the search for the end of a message found.
enum End {
    /// The message ends at this offset (its separator follows).
    At(usize),
    /// More bytes are needed to tell.
    More,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with a smaller bound than [`MAX_MESSAGE`] (for tests).
    pub fn with_max(max: usize) -> Self {
        Decoder {
            max: Some(max),
            ..Self::default()
        }
    }

    fn max(&self) -> usize {
        self.max.unwrap_or(MAX_MESSAGE)
    }

    /// The next bytes of the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Space to read into, for callers that read straight into the decoder.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The connection ended: what is left is decided now (see [`Decoder::next_message`]).
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Whether [`Decoder::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.eof
    }

    /// Bytes held, for the caller's accounting.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// The next message, or what was skipped; `None` when more bytes are needed (or,
    /// after [`Decoder::finish`], when nothing is left).
    pub fn next_message(&mut self) -> Option<Result<Record, Malformed>> {
        if self.resync && !self.resynchronise() {
            return None;
        }
        if self.buf.is_empty() {
            return None;
        }
        let max = self.max();
        let Some(nl) = self
            .buf
            .iter()
            .take(MAX_META_LINE + 1)
            .position(|&b| b == b'\n')
        else {
            if self.buf.len() > MAX_META_LINE || self.eof {
                return Some(Err(self.skip(Malformed::NoMeta)));
            }
            return None;
        };
        let Some(meta) = meta_line(&self.buf[..=nl]) else {
            return Some(Err(self.skip(Malformed::NoMeta)));
        };
        let dir = if meta.is_response() {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        match self.find_end(nl + 1, dir) {
            End::At(end) => {
                let whole = self.buf.split_to(end).freeze();
                self.buf.advance(SEPARATOR.len());
                self.scan_from = 0;
                // The meta line was checked above.
                gorfile::parse_message(whole).map(Ok)
            }
            End::More if self.eof => {
                self.buf.clear();
                self.scan_from = 0;
                Some(Err(Malformed::Truncated))
            }
            End::More if self.buf.len() > max + SEPARATOR.len() + MAX_META_LINE => {
                Some(Err(self.skip(Malformed::TooLarge)))
            }
            End::More => None,
        }
    }

    /// Where the message whose payload starts at `start` ends.
    fn find_end(&mut self, start: usize, dir: Direction) -> End {
        // Where the message's own framing ends it, when its bytes say so already: a
        // separator right there is the end, whatever the body holds.
        let exact = framed_len(dir, &self.buf[start..]).map(|n| start + n);
        if let Some(e) = exact {
            if self.buf.len() >= e + SEPARATOR.len() && self.buf[e..].starts_with(SEPARATOR) {
                return End::At(e);
            }
        }
        let mut from = self.scan_from.max(start);
        loop {
            let Some(at) = find(&self.buf[from..], SEPARATOR).map(|i| from + i) else {
                // A separator may be arriving: look again from where it could start.
                self.scan_from = self
                    .buf
                    .len()
                    .saturating_sub(SEPARATOR.len() - 1)
                    .max(start);
                return End::More;
            };
            if !body_goes_on(dir, &self.buf[start..at]) {
                return End::At(at);
            }
            // The framing says the body goes on: the separator is body content, unless
            // a message starts right after it (the body was cut short).
            let after = &self.buf[at + SEPARATOR.len()..];
            match after
                .iter()
                .take(MAX_META_LINE + 1)
                .position(|&b| b == b'\n')
            {
                Some(nl) if meta_line(&after[..=nl]).is_some() => {
                    // Unless the framing's end is near: then its bytes decide.
                    let wait = exact.is_some_and(|e| {
                        let need = e + SEPARATOR.len();
                        !self.eof && need > self.buf.len() && need - self.buf.len() <= PATIENCE
                    });
                    if wait {
                        self.scan_from = at;
                        return End::More;
                    }
                    return End::At(at);
                }
                Some(_) => {}
                None if after.len() > MAX_META_LINE => {}
                // The stream ended: nothing follows that could continue the body.
                None if self.eof => return End::At(at),
                None => {
                    self.scan_from = at;
                    return End::More;
                }
            }
            from = at + 1;
        }
    }

    /// Starts dropping bytes up to and through the next separator.
    fn skip(&mut self, why: Malformed) -> Malformed {
        self.scan_from = 0;
        self.resync = true;
        self.resynchronise();
        why
    }

    /// Drops bytes up to and through the next separator; true once it was found (all
    /// bytes but the few that may start one are dropped meanwhile).
    fn resynchronise(&mut self) -> bool {
        match find(&self.buf, SEPARATOR) {
            Some(i) => {
                self.buf.advance(i + SEPARATOR.len());
                self.resync = false;
                true
            }
            None if self.eof => {
                self.buf.clear();
                false
            }
            None => {
                let keep = SEPARATOR.len() - 1;
                let drop = self.buf.len().saturating_sub(keep);
                self.buf.advance(drop);
                false
            }
        }
    }
}

/// How many bytes past a separator followed by a meta line the decoder waits for, when
/// the message's framing says it ends that near: then the framing decides.
const PATIENCE: usize = 1 << 20;

/// The record type of a valid meta line (with its `\n`).
fn meta_line(line: &[u8]) -> Option<RecordType> {
    gorfile::parse_message(Bytes::copy_from_slice(line)).map(|r| r.kind)
}

/// Whether an HTTP message's own framing says its body is longer than `payload` holds:
/// a Content-Length not reached, or a chunked body without its last chunk.
fn body_goes_on(dir: Direction, payload: &[u8]) -> bool {
    let head::HeadResult::Complete(h) = head::parse(dir, payload) else {
        return false;
    };
    let body = &payload[h.len.min(payload.len())..];
    match head::declared(&h, payload) {
        head::Declared::Length(n) => (body.len() as u64) < n,
        head::Declared::Chunked => {
            let (_, progress) = chunked::ChunkedDecoder::new(64 * 1024).feed(body);
            progress == chunked::Progress::More
        }
        _ => false,
    }
}

/// The length of an HTTP message as its framing says, once its bytes tell: the head
/// and Content-Length, or the head and a chunked body through its last chunk.
fn framed_len(dir: Direction, payload: &[u8]) -> Option<usize> {
    let head::HeadResult::Complete(h) = head::parse(dir, payload) else {
        return None;
    };
    match head::declared(&h, payload) {
        head::Declared::Length(n) => h.len.checked_add(usize::try_from(n).ok()?),
        head::Declared::Chunked => {
            let body = payload.get(h.len..)?;
            match chunked::ChunkedDecoder::new(64 * 1024).feed(body) {
                (used, chunked::Progress::Done) => Some(h.len + used),
                _ => None,
            }
        }
        head::Declared::Nothing if dir == Direction::ClientToServer => Some(h.len),
        _ => None,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: RecordType, id: &str, payload: &str) -> Record {
        Record {
            kind,
            id: id.into(),
            timestamp_ns: 1_700_000_000_000_000_000,
            latency_ns: if kind.is_response() { 1234 } else { 0 },
            payload: Bytes::from(payload.to_string()),
        }
    }

    fn decode_all(bytes: &[u8], chunk: usize) -> (Vec<Record>, Vec<Malformed>) {
        let mut d = Decoder::new();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        let mut take = |d: &mut Decoder| {
            while let Some(r) = d.next_message() {
                match r {
                    Ok(r) => out.push(r),
                    Err(e) => bad.push(e),
                }
            }
        };
        for c in bytes.chunks(chunk.max(1)) {
            d.push(c);
            take(&mut d);
        }
        d.finish();
        take(&mut d);
        (out, bad)
    }

    const GET: &str = "GET /a HTTP/1.1\r\nHost: p\r\n\r\n";

    #[test]
    fn a_message_is_meta_line_payload_and_separator_exactly() {
        let r = rec(RecordType::Request, "0123456789abcdef01234567", GET);
        let wire = encode(&r);
        let expected = format!(
            "1 0123456789abcdef01234567 1700000000000000000 0\n{GET}\n\u{1F435}\u{1F648}\u{1F649}\n"
        );
        assert_eq!(&wire[..], expected.as_bytes());
        let resp = rec(
            RecordType::Response,
            "0123456789abcdef01234567",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(encode(&resp).starts_with(b"2 0123456789abcdef01234567 1700000000000000000 1234\n"));
    }

    #[test]
    fn messages_split_at_any_byte_decode_the_same() {
        let post = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let rs = [
            rec(RecordType::Request, "a1", GET),
            rec(RecordType::Request, "a2", post),
            rec(
                RecordType::Response,
                "a2",
                "HTTP/1.1 204 No Content\r\n\r\n",
            ),
            rec(RecordType::Request, "a3", ""),
        ];
        let wire: Vec<u8> = rs.iter().flat_map(|r| encode(r).to_vec()).collect();
        for chunk in [1, 2, 3, 7, 64, wire.len()] {
            let (out, bad) = decode_all(&wire, chunk);
            assert_eq!(out, rs, "chunk {chunk}");
            assert!(bad.is_empty(), "chunk {chunk}: {bad:?}");
        }
    }

    #[test]
    fn a_separator_inside_a_body_with_a_length_stays_in_the_body() {
        // GoReplay 1.3 would cut this body at the monkeys; its framing says more. Even
        // a meta line after them (a message's start, as far as the bytes go) stays body.
        let body = "before\n\u{1F435}\u{1F648}\u{1F649}\n1 ab 1 0\nafter\n\u{1F435}\u{1F648}\u{1F649}\ntext";
        let post = format!(
            "POST /p HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        // A chunked body's end is known only once its last chunk is there: a separator
        // inside it followed by a meta line, arriving before that, would end the
        // message (as in GoReplay); followed by anything else it stays body.
        let text = "before\n\u{1F435}\u{1F648}\u{1F649}\nafter";
        let chunked = format!(
            "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
            text.len()
        );
        let rs = [
            rec(RecordType::Request, "b1", &post),
            rec(RecordType::Request, "b2", &chunked),
            rec(RecordType::Request, "b3", GET),
        ];
        let wire: Vec<u8> = rs.iter().flat_map(|r| encode(r).to_vec()).collect();
        for chunk in [1, 5, wire.len()] {
            let (out, bad) = decode_all(&wire, chunk);
            assert_eq!(out, rs, "chunk {chunk}");
            assert!(bad.is_empty());
        }
    }

    #[test]
    fn a_body_cut_short_ends_at_the_next_message() {
        // Content-Length says 100, 5 came: the next meta line ends it (as GoReplay would).
        let cut = "POST /p HTTP/1.1\r\nContent-Length: 100\r\n\r\nhello";
        let rs = [
            rec(RecordType::Request, "c1", cut),
            rec(RecordType::Request, "c2", GET),
        ];
        let wire: Vec<u8> = rs.iter().flat_map(|r| encode(r).to_vec()).collect();
        let (out, bad) = decode_all(&wire, 3);
        assert_eq!(out, rs);
        assert!(bad.is_empty());
        // Last on the connection: the end of the stream ends it.
        let (out, _) = decode_all(&encode(&rs[0]), 4);
        assert_eq!(out, rs[..1]);
    }

    #[test]
    fn garbage_is_skipped_and_counted_and_the_stream_goes_on() {
        let good = encode(&rec(RecordType::Request, "d1", GET));
        let mut wire =
            b"not a meta line\r\njunk\n\xF0\x9F\x90\xB5\xF0\x9F\x99\x88\xF0\x9F\x99\x89\n".to_vec();
        wire.extend_from_slice(&good);
        wire.extend_from_slice(&[0xff; 2000]);
        wire.extend_from_slice("\n\u{1F435}\u{1F648}\u{1F649}\n".as_bytes());
        wire.extend_from_slice(&good);
        wire.extend_from_slice(b"1 d2 5 0\nGET / HTTP/1.1\r\n");
        for chunk in [1, 13, wire.len()] {
            let (out, bad) = decode_all(&wire, chunk);
            assert_eq!(out.len(), 2, "chunk {chunk}");
            assert_eq!(bad.first(), Some(&Malformed::NoMeta));
            assert_eq!(
                bad.last(),
                Some(&Malformed::Truncated),
                "chunk {chunk}: {bad:?}"
            );
        }
    }

    #[test]
    fn memory_stays_bounded_on_endless_input() {
        let mut d = Decoder::with_max(1000);
        d.push(b"1 e1 1 0\nPOST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
        let mut bad = Vec::new();
        for _ in 0..100 {
            d.push(&[b'x'; 100]);
            while let Some(r) = d.next_message() {
                bad.push(r.unwrap_err());
            }
            assert!(d.held() < 2000, "{}", d.held());
        }
        assert!(bad.contains(&Malformed::TooLarge));
        let mut d = Decoder::new();
        for _ in 0..100 {
            d.push(&[b'y'; 100]);
            while d.next_message().is_some() {}
            assert!(d.held() <= MAX_META_LINE + 100);
        }
    }
}
