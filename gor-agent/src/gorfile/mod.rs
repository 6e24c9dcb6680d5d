//! GoReplay's saved-traffic file format (`.gor`): one record per HTTP message, so traffic
//! captured by gor can be replayed by GoReplay and GoReplay's recordings by gor.
//!
//! A record is a meta line `"<type> <id> <timestamp_ns> <latency_ns>\n"`, the raw HTTP
//! bytes, then the separator `"\n🐵🙈🙉\n"`. Type `1` is a request, `2` the original
//! response, `3` a replayed response; a request and its response share the id. The format
//! has no escaping, so a body may contain the separator: a reader ends a record at a
//! separator only when what follows is the end of the file or a meta line (see
//! `reader.rs` for the exact rule). [`FileOutput`] writes files (plain or gzip, rotated by
//! size and by time placeholders); [`GorReader`] reads a set of files back, merged by
//! timestamp, skipping and reporting damaged records.

mod reader;
mod writer;

#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::envelope::{Clock, MessageId};
use crate::http::{parse_whole, unknown_flow, HttpMessage, Kind, WholeError};
use crate::stream::Direction;

pub mod settings;

pub use reader::{GorReader, InputStats, ReadError, MAX_RECORD};
pub use writer::{FileOutput, FileOutputConfig, FileStats};

/// What ends every record: a newline, the three monkeys (U+1F435 U+1F648 U+1F649), a newline.
pub const SEPARATOR: &[u8] = "\n\u{1F435}\u{1F648}\u{1F649}\n".as_bytes();

/// The separator without its leading newline: as a reader splits the stream into lines,
/// this is the line that follows the payload's last line.
const SEPARATOR_LINE: &[u8] = "\u{1F435}\u{1F648}\u{1F649}\n".as_bytes();

/// Meta lines are short (GoReplay writes ~60 bytes); anything longer is not one, and the
/// bound keeps a reader from buffering a huge line of garbage while looking for one.
pub(crate) const MAX_META_LINE: usize = 512;

/// The kind of a record, as the first field of its meta line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    Request = 1,
    Response = 2,
    ReplayedResponse = 3,
}

impl RecordType {
    /// The ASCII digit that stands for this type in a meta line.
    pub fn code(self) -> u8 {
        b'0' + self as u8
    }

    pub fn from_code(c: u8) -> Option<RecordType> {
        match c {
            b'1' => Some(RecordType::Request),
            b'2' => Some(RecordType::Response),
            b'3' => Some(RecordType::ReplayedResponse),
            _ => None,
        }
    }

    pub fn is_response(self) -> bool {
        !matches!(self, RecordType::Request)
    }
}

/// One message in a `.gor` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: RecordType,
    /// Pairs a request with its responses; GoReplay writes 24 hex digits.
    pub id: String,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// 0 for requests; for responses, how long the response took.
    pub latency_ns: u64,
    /// The raw HTTP message, exactly as on the wire.
    pub payload: Bytes,
}

impl Record {
    /// The record for a framed message. Capture timestamps are monotonic; the caller passes
    /// `wall_clock_offset_ns` (wall clock minus monotonic clock) to turn them into the
    /// epoch-based times GoReplay expects.
    pub fn from_message(msg: &HttpMessage, wall_clock_offset_ns: i128) -> Record {
        let kind = match msg.kind {
            Kind::Request { .. } => RecordType::Request,
            Kind::Response { .. } => RecordType::Response,
        };
        let ts =
            (i128::from(msg.first_ts_ns) + wall_clock_offset_ns).clamp(0, i128::from(u64::MAX));
        Record {
            kind,
            id: msg.id.to_string(),
            timestamp_ns: ts as u64,
            latency_ns: if kind.is_response() {
                msg.latency_ns.unwrap_or(0)
            } else {
                0
            },
            payload: msg.raw.clone(),
        }
    }
}

impl Record {
    /// The message id: ours (32 hex digits, see [`crate::envelope`]) with the connection
    /// and position it was framed at; anyone else's (GoReplay's 24 hex digits) kept as
    /// written, so a request and its responses still share one and it is written back
    /// unchanged.
    pub fn message_id(&self) -> MessageId {
        MessageId::parse(&self.id)
    }

    /// The record as a message for the pipeline after framing. Its connection is the one
    /// its id names (ids gor wrote), or none (anyone else's); the flow is unknown.
    pub fn to_message(&self) -> Result<HttpMessage, WholeError> {
        let dir = if self.kind.is_response() {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        let head = parse_whole(dir, &self.payload)?;
        Ok(HttpMessage {
            id: self.message_id(),
            clock: Clock::Realtime,
            flow: unknown_flow(),
            dir,
            offset: 0,
            first_ts_ns: self.timestamp_ns,
            last_ts_ns: self.timestamp_ns,
            raw: self.payload.clone(),
            kind: head.kind,
            headers: head.headers,
            body_offset: head.body_offset,
            latency_ns: self.kind.is_response().then_some(self.latency_ns),
        })
    }
}

/// A number as a GoReplay-shaped id: 24 lowercase hex digits, zero-padded (for tools and
/// tests that make records by hand; the agent writes [`MessageId`]s).
pub fn format_id(id: u64) -> String {
    format!("{id:024x}")
}

/// Appends the record's bytes, exactly as GoReplay lays them out, to `out`.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    out.reserve(rec.payload.len() + rec.id.len() + 64 + SEPARATOR.len());
    encode_message(rec, out);
    out.extend_from_slice(SEPARATOR);
}

/// Appends the record as one message (meta line, then payload, no separator): what
/// GoReplay hands to middleware (hex-encoded) and what [`parse_message`] reads back.
pub fn encode_message(rec: &Record, out: &mut Vec<u8>) {
    out.reserve(rec.payload.len() + rec.id.len() + 64);
    encode_meta(rec, out);
    out.extend_from_slice(&rec.payload);
}

/// Appends the record's meta line, with its `\n`. Separate from [`encode_message`] so
/// the middleware can hex-encode the payload straight from the record, without a copy.
pub(crate) fn encode_meta(rec: &Record, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.push(rec.kind.code());
    out.push(b' ');
    out.extend_from_slice(rec.id.as_bytes());
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, " {} {}", rec.timestamp_ns, rec.latency_ns);
}

/// Reads one message as [`encode_message`] lays it out (what middleware writes back): the
/// meta line up to the first `\n`, the rest is the payload (sharing `buf`). `None` if
/// there is no valid meta line.
pub fn parse_message(buf: Bytes) -> Option<Record> {
    // The meta line is short, so a buffer without a newline early on is not a message.
    let nl = buf
        .iter()
        .take(MAX_META_LINE + 1)
        .position(|&b| b == b'\n')?;
    let meta = parse_meta(&buf[..=nl])?;
    Some(meta.into_record(buf.slice(nl + 1..)))
}

/// The fields of a valid meta line.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    kind: RecordType,
    id: String,
    timestamp_ns: u64,
    latency_ns: u64,
}

/// Parses a meta line (with its `\n`): `[123] <token> <digits> <digits>\n`. Older GoReplay
/// versions wrote no latency field, so three fields are accepted too (latency 0).
fn parse_meta(line: &[u8]) -> Option<Meta> {
    let line = line.strip_suffix(b"\n")?;
    if line.len() > MAX_META_LINE {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    // Split on single spaces: GoReplay writes exactly one between fields, and being strict
    // makes body text less likely to pass for a meta line.
    let mut fields = text.split(' ');
    let kind = match fields.next()?.as_bytes() {
        [c] => RecordType::from_code(*c)?,
        _ => return None,
    };
    let id = fields.next()?;
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let timestamp_ns = parse_digits(fields.next()?)?;
    let latency_ns = match fields.next() {
        Some(f) => parse_digits(f)?,
        None => 0,
    };
    if fields.next().is_some() {
        return None;
    }
    Some(Meta {
        kind,
        id: id.to_owned(),
        timestamp_ns,
        latency_ns,
    })
}

impl Meta {
    fn into_record(self, payload: Bytes) -> Record {
        Record {
            kind: self.kind,
            id: self.id,
            timestamp_ns: self.timestamp_ns,
            latency_ns: self.latency_ns,
            payload,
        }
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A line that is not a valid meta line but looks like a damaged one: short printable
/// ASCII starting with digits and a space. Seen right after a separator it is taken as the
/// start of a (damaged) record rather than as more body, so one corrupted meta line costs
/// only its own record instead of being glued onto the previous one.
fn looks_like_meta(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    line.len() <= MAX_META_LINE
        && digits > 0
        && line.get(digits) == Some(&b' ')
        && line
            .iter()
            .all(|b| (0x20..0x7f).contains(b) || *b == b'\r' || *b == b'\t')
}

/// Whether a line is the separator line (the final newline may be missing at end of file).
fn is_separator_line(line: &[u8]) -> bool {
    line == SEPARATOR_LINE || line == &SEPARATOR_LINE[..SEPARATOR_LINE.len() - 1]
}
