//! Byte-exact editing of a request head: the one editor behind the filters' rewrite rules
//! and the mirror's per-target rewrite (`Host`, base path, set headers).
//!
//! Edits change only the lines they touch: the request line (target replaced between
//! its two spaces), a header line (value replaced after the name, colon and the original
//! whitespace, trailing whitespace and line ending kept; continuation lines of an
//! obsolete folded value dropped with the old value), a new header line appended after
//! the last one, or a header line removed. Every other byte, including the body with its
//! chunked framing and trailers, is copied unchanged, unless the caller replaces the body
//! whole (`--http-prettify`, which also sets the framing headers that go with it).
//! [`HeadEdit::finish`] re-parses the result with the framer's own head parser
//! ([`crate::http::head`], with its header limit) so `kind`, `headers` and `body_offset`
//! describe the new bytes; a result that does not parse is refused and the caller keeps
//! the original. [`HeadEdit::into_bytes`] gives the bytes alone, for a caller that only
//! sends them.

use std::ops::Range;

use bytes::Bytes;

use crate::http::head::{self, HeadResult};
use crate::http::HttpMessage;
use crate::stream::Direction;

struct HeaderLine {
    /// The original line (content through its line ending, and through the continuation
    /// lines of a folded value); `None` for an appended header.
    line: Option<Range<usize>>,
    /// The end of the first line, through its line ending.
    first_line_end: usize,
    /// Where the original value starts and ends (leading/trailing OWS excluded).
    value_at: Range<usize>,
    name: String,
    value: Vec<u8>,
    changed: bool,
    /// Dropped from the head (with its continuation lines).
    removed: bool,
}

/// A request head being edited; reads see earlier edits, so rewrite rules chain.
pub(crate) struct HeadEdit<'m> {
    /// The whole message: the head, then the body, which is copied as it is.
    raw: &'m [u8],
    body_offset: usize,
    /// The original target's place in `raw`.
    target_at: Range<usize>,
    target: Option<String>,
    headers: Vec<HeaderLine>,
    /// Start of the empty line ending the head.
    head_tail: usize,
    /// The line ending used for appended headers: that of the request line.
    eol: &'static [u8],
    /// A new body in place of the original one (which is copied otherwise).
    body: Option<Vec<u8>>,
}

/// Why a head could not be edited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EditError;

impl<'m> HeadEdit<'m> {
    /// Splits the head of `raw` (the first `body_offset` bytes) into its lines.
    pub(crate) fn new(raw: &'m [u8], body_offset: usize) -> Result<Self, EditError> {
        let whole = raw;
        let raw = raw.get(..body_offset).ok_or(EditError)?;
        let mut pos = 0;
        // httparse accepts empty lines before the request line; keep them verbatim.
        while raw[pos..].starts_with(b"\r\n") || raw[pos..].starts_with(b"\n") {
            pos += if raw[pos] == b'\r' { 2 } else { 1 };
        }
        let (content, next) = line_at(raw, pos).ok_or(EditError)?;
        let eol: &'static [u8] = if raw.get(content.end) == Some(&b'\r') {
            b"\r\n"
        } else {
            b"\n"
        };
        let line = &raw[content.clone()];
        let first = line.iter().position(|&b| b == b' ').ok_or(EditError)?;
        let last = line.iter().rposition(|&b| b == b' ').ok_or(EditError)?;
        if last <= first {
            return Err(EditError);
        }
        let target_at = content.start + first + 1..content.start + last;
        pos = next;
        let mut headers: Vec<HeaderLine> = Vec::new();
        loop {
            let (content, next) = line_at(raw, pos).ok_or(EditError)?;
            if content.is_empty() {
                break;
            }
            let line = &raw[content.clone()];
            // An obsolete line folding (RFC 9112 §5.2) continues the previous value.
            if matches!(line[0], b' ' | b'\t') {
                let prev = headers.last_mut().ok_or(EditError)?;
                if let Some(l) = &mut prev.line {
                    l.end = next;
                }
                pos = next;
                continue;
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(EditError)?;
            let name = std::str::from_utf8(&line[..colon]).map_err(|_| EditError)?;
            let mut v0 = colon + 1;
            while line.get(v0).is_some_and(|&b| b == b' ' || b == b'\t') {
                v0 += 1;
            }
            let mut v1 = line.len();
            while v1 > v0 && (line[v1 - 1] == b' ' || line[v1 - 1] == b'\t') {
                v1 -= 1;
            }
            headers.push(HeaderLine {
                line: Some(content.start..next),
                first_line_end: next,
                value_at: content.start + v0..content.start + v1,
                name: name.to_owned(),
                value: line[v0..v1].to_vec(),
                changed: false,
                removed: false,
            });
            pos = next;
        }
        let target = None;
        Ok(HeadEdit {
            raw: whole,
            body_offset,
            target_at,
            target,
            headers,
            head_tail: pos,
            eol,
            body: None,
        })
    }

    /// The current request target.
    pub(crate) fn target(&self) -> &str {
        match &self.target {
            Some(t) => t,
            // The target's bytes passed httparse, which only accepts visible ASCII there.
            None => std::str::from_utf8(&self.raw[self.target_at.clone()]).unwrap_or(""),
        }
    }

    pub(crate) fn set_target(&mut self, target: String) {
        self.target = Some(target);
    }

    /// Indexes of the headers named `name` (case-insensitive), in order; removed ones
    /// are not found.
    pub(crate) fn find(&self, name: &str) -> Vec<usize> {
        (0..self.headers.len())
            .filter(|&i| {
                !self.headers[i].removed && self.headers[i].name.eq_ignore_ascii_case(name)
            })
            .collect()
    }

    /// Drops every header named `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        for i in self.find(name) {
            self.remove_at(i);
        }
    }

    /// Drops the header at index `i` (from [`HeadEdit::find`]).
    pub(crate) fn remove_at(&mut self, i: usize) {
        self.headers[i].removed = true;
    }

    /// Replaces the body (the caller sets the framing headers that go with it).
    pub(crate) fn set_body(&mut self, body: Vec<u8>) {
        self.body = Some(body);
    }

    pub(crate) fn value(&self, i: usize) -> &[u8] {
        &self.headers[i].value
    }

    pub(crate) fn set_value(&mut self, i: usize, value: Vec<u8>) {
        let h = &mut self.headers[i];
        if h.value != value {
            h.value = value;
            h.changed = true;
        }
    }

    /// Replaces the first header named `name` in place, or appends one.
    pub(crate) fn set_header(&mut self, name: &str, value: &[u8]) {
        match self.find(name).first() {
            Some(&i) => self.set_value(i, value.to_vec()),
            None => {
                self.append(name, value);
            }
        }
    }

    /// Adds a header line after the last one; returns its index.
    pub(crate) fn append(&mut self, name: &str, value: &[u8]) -> usize {
        self.headers.push(HeaderLine {
            line: None,
            first_line_end: 0,
            value_at: 0..0,
            name: name.to_owned(),
            value: value.to_vec(),
            changed: true,
            removed: false,
        });
        self.headers.len() - 1
    }

    fn changed(&self) -> bool {
        self.target
            .as_deref()
            .is_some_and(|t| t.as_bytes() != &self.raw[self.target_at.clone()])
            || self.headers.iter().any(|h| h.changed || h.removed)
            || self.body.is_some()
    }

    /// The edited message, or `Ok(None)` when nothing changed; `orig` is the message the
    /// edited bytes came from (its other fields are kept).
    pub(crate) fn finish(self, orig: &HttpMessage) -> Result<Option<HttpMessage>, EditError> {
        if !self.changed() {
            return Ok(None);
        }
        let (raw, head_len) = self.into_bytes();
        reparse(orig, Bytes::from(raw), head_len).map(Some)
    }

    /// The edited bytes (the original ones if nothing changed) and the new head length.
    pub(crate) fn into_bytes(self) -> (Vec<u8>, usize) {
        let raw = self.raw;
        let mut out = Vec::with_capacity(raw.len() + 128);
        out.extend_from_slice(&raw[..self.target_at.start]);
        out.extend_from_slice(self.target().as_bytes());
        let first_header = self
            .headers
            .first()
            .and_then(|h| h.line.as_ref().map(|l| l.start))
            .unwrap_or(self.head_tail);
        out.extend_from_slice(&raw[self.target_at.end..first_header]);
        for h in self.headers.iter().filter(|h| !h.removed) {
            match &h.line {
                Some(line) if !h.changed => out.extend_from_slice(&raw[line.clone()]),
                Some(line) => {
                    out.extend_from_slice(&raw[line.start..h.value_at.start]);
                    out.extend_from_slice(&h.value);
                    out.extend_from_slice(&raw[h.value_at.end..h.first_line_end]);
                }
                None => {
                    out.extend_from_slice(h.name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(&h.value);
                    out.extend_from_slice(self.eol);
                }
            }
        }
        let new_head_len = out.len() + (self.body_offset - self.head_tail);
        match &self.body {
            Some(body) => {
                out.extend_from_slice(&raw[self.head_tail..self.body_offset]);
                out.extend_from_slice(body);
            }
            None => out.extend_from_slice(&raw[self.head_tail..]),
        }
        (out, new_head_len)
    }
}

/// The line starting at `pos`: its content range and where the next line starts.
fn line_at(raw: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let nl = pos + raw.get(pos..)?.iter().position(|&b| b == b'\n')?;
    let end = if nl > pos && raw[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((pos..end, nl + 1))
}

/// Builds the edited message from new bytes, refusing anything whose head does not parse
/// to exactly `head_len` bytes (a value that smuggled a line break, a target with a space).
fn reparse(orig: &HttpMessage, raw: Bytes, head_len: usize) -> Result<HttpMessage, EditError> {
    let head = match head::parse(Direction::ClientToServer, &raw) {
        HeadResult::Complete(h) if h.len == head_len => h,
        _ => return Err(EditError),
    };
    Ok(HttpMessage {
        headers: head.headers,
        kind: head.kind,
        body_offset: head.len,
        raw,
        ..orig.clone()
    })
}
