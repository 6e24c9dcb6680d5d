//! Message heads: recognising a start line, parsing a complete head with `httparse`, and
//! reading the framing headers (Content-Length, Transfer-Encoding).
//!
//! Start-line recognition has two strengths. In sync (the previous message ended exactly
//! here) any token method is accepted and the check only rejects non-HTTP bytes early, so
//! a TLS handshake is dropped at its first byte instead of being buffered. In resync mode
//! (after a gap, garbage or a midstream start) only a line that is certainly a start line
//! is accepted: a known method or `HTTP/1.x DDD`, with CRLF.

use std::ops::Range;

use crate::stream::Direction;

use super::token::is_tchar;
use super::{Headers, Kind, Text};

/// Methods accepted as the start of a request when resynchronising.
const KNOWN_METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// Longest method token accepted in sync; real methods are short, garbage is not.
const MAX_METHOD: usize = 32;

/// `httparse` needs a fixed header array: start small, grow up to this bound. Every head
/// the agent parses (captured, saved, edited by a filter, answered by staging) is held to
/// it, so a message is never valid in one place and over a limit in another.
pub const MAX_HEADERS: usize = 1024;
const FIRST_HEADERS: usize = 32;

/// Whether some bytes can begin a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A complete, valid start line (through its line end).
    Yes,
    /// Valid so far, but the line is not complete yet.
    Maybe,
    /// Not a start line.
    No,
}

/// Checks whether `s` (bytes from a line boundary to the end of what is available) begins
/// with a valid start line of a message sent in `dir`. `strict` selects resync strength.
pub(crate) fn start_line(dir: Direction, s: &[u8], strict: bool) -> Verdict {
    let mut c = Cur { s, i: 0 };
    let res = match dir {
        Direction::ClientToServer => request_line(&mut c, strict),
        Direction::ServerToClient => status_line(&mut c, strict),
    };
    match res {
        Ok(()) => Verdict::Yes,
        Err(v) => v,
    }
}

fn request_line(c: &mut Cur<'_>, strict: bool) -> Result<(), Verdict> {
    let start = c.i;
    match c.run(is_tchar, 1, MAX_METHOD) {
        // In resync, a partial method must be the prefix of a known one, so random
        // letters are rejected without waiting for a space.
        Err(Verdict::Maybe) if strict => {
            let part = &c.s[start..];
            if KNOWN_METHODS.iter().any(|m| m.starts_with(part)) {
                return Err(Verdict::Maybe);
            }
            return Err(Verdict::No);
        }
        r => r?,
    };
    if strict && !KNOWN_METHODS.contains(&&c.s[start..c.i]) {
        return Err(Verdict::No);
    }
    c.lit(b" ")?;
    c.run(|b| is_target(b, strict), 1, usize::MAX)?;
    c.lit(b" ")?;
    version(c)?;
    c.eol(strict)
}

fn status_line(c: &mut Cur<'_>, strict: bool) -> Result<(), Verdict> {
    version(c)?;
    c.lit(b" ")?;
    for _ in 0..3 {
        c.byte(|b| b.is_ascii_digit())?;
    }
    // The reason phrase may be absent ("HTTP/1.1 200\r\n"), which servers do send.
    if c.peek() == Some(b' ') {
        c.i += 1;
        c.run(is_reason, 0, usize::MAX)?;
    }
    c.eol(strict)
}

fn version(c: &mut Cur<'_>) -> Result<(), Verdict> {
    c.lit(b"HTTP/1.")?;
    c.byte(|b| b == b'0' || b == b'1')?;
    Ok(())
}

fn is_target(b: u8, strict: bool) -> bool {
    matches!(b, 0x21..=0x7e) || (!strict && b >= 0x80)
}

fn is_reason(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

/// A cursor for the start-line matcher: `Err(Maybe)` means "ran out of bytes".
struct Cur<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn byte(&mut self, ok: impl Fn(u8) -> bool) -> Result<u8, Verdict> {
        match self.peek() {
            None => Err(Verdict::Maybe),
            Some(b) if ok(b) => {
                self.i += 1;
                Ok(b)
            }
            Some(_) => Err(Verdict::No),
        }
    }

    fn lit(&mut self, lit: &[u8]) -> Result<(), Verdict> {
        for &l in lit {
            self.byte(|b| b == l)?;
        }
        Ok(())
    }

    /// Consumes a run of bytes accepted by `ok`, between `min` and `max` long.
    fn run(&mut self, ok: impl Fn(u8) -> bool, min: usize, max: usize) -> Result<(), Verdict> {
        let start = self.i;
        while let Some(b) = self.peek() {
            if !ok(b) {
                break;
            }
            self.i += 1;
            if self.i - start > max {
                return Err(Verdict::No);
            }
        }
        if self.i == self.s.len() {
            return Err(Verdict::Maybe);
        }
        if self.i - start < min {
            return Err(Verdict::No);
        }
        Ok(())
    }

    fn eol(&mut self, strict: bool) -> Result<(), Verdict> {
        match self.peek() {
            None => Err(Verdict::Maybe),
            Some(b'\r') => {
                self.i += 1;
                self.byte(|b| b == b'\n').map(|_| ())
            }
            Some(b'\n') if !strict => Ok(()),
            Some(_) => Err(Verdict::No),
        }
    }
}

/// A parsed head; header values are ranges into the message's raw bytes, so the emitted
/// message can share them without copying.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub kind: Kind,
    pub headers: Vec<(Text, Range<usize>)>,
    /// Length of the head, through the empty line.
    pub len: usize,
}

impl Head {
    pub(crate) fn method(&self) -> &str {
        match &self.kind {
            Kind::Request { method, .. } => method,
            Kind::Response { .. } => "",
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match &self.kind {
            Kind::Response { status, .. } => *status,
            Kind::Request { .. } => 0,
        }
    }

    /// The header lines with their values, read from `raw` (the bytes the head was
    /// parsed from).
    pub(crate) fn values<'a>(&'a self, raw: &'a [u8]) -> Headers<'a> {
        Headers::new(&self.headers, raw)
    }

    /// Whether any header named `name` lists `token` (see [`lists`]).
    pub(crate) fn lists(&self, raw: &[u8], name: &str, token: &str) -> bool {
        self.values(raw).lists(name, token)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

pub(crate) enum HeadResult<H = Head> {
    Complete(H),
    Partial,
    Invalid,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
}

/// Parses the head at the start of `buf`.
pub(crate) fn parse(dir: Direction, buf: &[u8]) -> HeadResult {
    // The first try uses slots on the stack: nearly every head fits, and it is parsed
    // once per message.
    let mut small = [httparse::EMPTY_HEADER; FIRST_HEADERS];
    match parse_into(dir, buf, &mut small) {
        Err(httparse::Error::TooManyHeaders) => {}
        res => return result(res),
    }
    let mut cap = FIRST_HEADERS * 2;
    loop {
        let mut slots = vec![httparse::EMPTY_HEADER; cap];
        match parse_into(dir, buf, &mut slots) {
            Err(httparse::Error::TooManyHeaders) if cap < MAX_HEADERS => cap *= 2,
            res => return result(res),
        }
    }
}

fn parse_into<'b>(
    dir: Direction,
    buf: &'b [u8],
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<Head>, httparse::Error> {
    match dir {
        Direction::ClientToServer => parse_request(buf, slots),
        Direction::ServerToClient => parse_response(buf, slots),
    }
}

fn result<H>(res: Result<Option<H>, httparse::Error>) -> HeadResult<H> {
    match res {
        Err(httparse::Error::TooManyHeaders) => HeadResult::TooManyHeaders,
        Err(_) => HeadResult::Invalid,
        Ok(None) => HeadResult::Partial,
        Ok(Some(head)) => HeadResult::Complete(head),
    }
}

fn parse_request<'b>(
    buf: &'b [u8],
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<Head>, httparse::Error> {
    let mut req = httparse::Request::new(slots);
    let httparse::Status::Complete(len) = req.parse(buf)? else {
        return Ok(None);
    };
    let kind = Kind::Request {
        method: Text::new(req.method.unwrap_or_default()),
        target: Text::new(req.path.unwrap_or_default()),
        version: req.version.unwrap_or(1),
    };
    Ok(Some(Head {
        kind,
        headers: ranges(buf, req.headers),
        len,
    }))
}

fn parse_response<'b>(
    buf: &'b [u8],
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<Head>, httparse::Error> {
    let mut resp = httparse::Response::new(slots);
    let httparse::Status::Complete(len) = resp.parse(buf)? else {
        return Ok(None);
    };
    let kind = Kind::Response {
        status: resp.code.unwrap_or_default(),
        reason: Text::new(resp.reason.unwrap_or_default()),
        version: resp.version.unwrap_or(1),
    };
    Ok(Some(Head {
        kind,
        headers: ranges(buf, resp.headers),
        len,
    }))
}

/// A response head read for its framing only, when the response itself is not needed:
/// its status and length, and how it declares its body; no header is kept, nothing is
/// allocated unless the head has more than 32 header lines.
pub(crate) fn parse_response_framing(buf: &[u8]) -> HeadResult<(Head, Declared)> {
    let mut small = [httparse::EMPTY_HEADER; FIRST_HEADERS];
    match framing_into(buf, &mut small) {
        Err(httparse::Error::TooManyHeaders) => {}
        res => return result(res),
    }
    let mut cap = FIRST_HEADERS * 2;
    loop {
        let mut slots = vec![httparse::EMPTY_HEADER; cap];
        match framing_into(buf, &mut slots) {
            Err(httparse::Error::TooManyHeaders) if cap < MAX_HEADERS => cap *= 2,
            res => return result(res),
        }
    }
}

fn framing_into<'b>(
    buf: &'b [u8],
    slots: &mut [httparse::Header<'b>],
) -> Result<Option<(Head, Declared)>, httparse::Error> {
    let mut resp = httparse::Response::new(slots);
    let httparse::Status::Complete(len) = resp.parse(buf)? else {
        return Ok(None);
    };
    let head = Head {
        kind: Kind::Response {
            status: resp.code.unwrap_or_default(),
            reason: Text::default(),
            version: resp.version.unwrap_or(1),
        },
        headers: Vec::new(),
        len,
    };
    let declared = declared_of(resp.headers.iter().map(|h| (h.name, h.value)));
    Ok(Some((head, declared)))
}

/// Header names in original case and order, values as ranges of `buf`.
fn ranges(buf: &[u8], headers: &[httparse::Header<'_>]) -> Vec<(Text, Range<usize>)> {
    let base = buf.as_ptr() as usize;
    headers
        .iter()
        .map(|h| {
            // httparse hands out subslices of `buf`; an empty value may not point into it,
            // so the offset is checked rather than trusted.
            let len = h.value.len();
            let start = (h.value.as_ptr() as usize)
                .checked_sub(base)
                .filter(|s| s + len <= buf.len())
                .unwrap_or(0);
            let range = if len == 0 { 0..0 } else { start..start + len };
            (Text::new(h.name), range)
        })
        .collect()
}

/// How the head declares its body (RFC 9112 §6.3), before the per-direction rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    /// Transfer-Encoding whose final coding is chunked.
    Chunked,
    /// Transfer-Encoding present, chunked not last.
    TeNotChunked,
    Length(u64),
    /// Invalid or conflicting Content-Length values.
    BadLength,
    Nothing,
}

/// Reads the framing headers. Transfer-Encoding overrides Content-Length (§6.3 item 3).
pub(crate) fn declared(head: &Head, raw: &[u8]) -> Declared {
    declared_of(head.values(raw).iter().map(|(name, v)| (name.as_str(), v)))
}

/// [`declared`] of headers as (name, value).
fn declared_of<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> Declared {
    let mut te_seen = false;
    let mut chunked_last = false;
    let mut cl: Option<u64> = None;
    let mut bad = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            for coding in value
                .split(|&b| b == b',')
                .map(trim)
                .filter(|c| !c.is_empty())
            {
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            // "Content-Length: 5, 5" and repeated equal headers are accepted (§6.3 item 5).
            for part in value.split(|&b| b == b',').map(trim) {
                match (parse_len(part), cl) {
                    (Some(n), Some(prev)) if n != prev => bad = true,
                    (Some(n), _) => cl = Some(n),
                    (None, _) => bad = true,
                }
            }
        }
    }
    match (te_seen, chunked_last, bad, cl) {
        (true, true, _, _) => Declared::Chunked,
        (true, false, _, _) => Declared::TeNotChunked,
        (false, _, true, _) => Declared::BadLength,
        (false, _, false, Some(n)) => Declared::Length(n),
        (false, _, false, None) => Declared::Nothing,
    }
}

/// Whether a comma-separated header value (`Connection: keep-alive, Upgrade`) lists
/// `token`, compared case-insensitively (RFC 9110 §5.6.1, §7.6.1).
pub(crate) fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

fn parse_len(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Finds the end of a head whose first bytes are `buf` (no head end among them) and which
/// continues with `input`: returns how many bytes of `input` complete it, through the LF of
/// the empty line. Bare-LF line ends are accepted as httparse does.
pub(crate) fn head_end(buf: &[u8], input: &[u8]) -> Option<usize> {
    let at = |k: usize| -> u8 {
        if k < buf.len() {
            buf[k]
        } else {
            input.get(k - buf.len()).copied().unwrap_or(0)
        }
    };
    let base = buf.len();
    memchr::memchr_iter(b'\n', input).find_map(|j| {
        let k = base + j;
        let end =
            (k >= 1 && at(k - 1) == b'\n') || (k >= 2 && at(k - 1) == b'\r' && at(k - 2) == b'\n');
        end.then_some(j + 1)
    })
}

/// Length of the first line of `s` through its LF, if complete.
pub(crate) fn line_len(s: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', s).map(|p| p + 1)
}
