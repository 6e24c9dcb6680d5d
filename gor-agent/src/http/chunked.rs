//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! It only finds where a chunked body ends: the framer keeps the raw bytes (chunk sizes,
//! extensions, data and trailers) as they were on the wire, so nothing is copied here.
//! The decoder is a byte-level state machine so that a body split at any point across
//! `Data` events decodes the same as one delivered whole.

/// What the decoder knows after a call to [`ChunkedDecoder::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The body continues past the bytes fed so far.
    More,
    /// The body ended: the count returned with it is the number of bytes that belong to it.
    Done,
    /// The bytes are not a valid chunked body: framing is lost.
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Hex digits of a chunk size.
    Size,
    /// Chunk extensions (or whitespace) after the size, up to the end of the line.
    Ext,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside chunk data; `size` bytes remain.
    Data,
    /// Expecting the CRLF that closes chunk data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    /// Expecting the LF of the final empty line.
    FinalLf,
    Done,
}

/// The longest size line (size + extensions) accepted, so a hostile stream cannot keep the
/// decoder in one line forever.
const MAX_SIZE_LINE: usize = 4096;

/// Tracks the position inside a chunked body.
#[derive(Clone, Debug)]
pub(crate) struct ChunkedDecoder {
    st: St,
    size: u64,
    digits: usize,
    line: usize,
    trailer: usize,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// `max_trailer` bounds the total size of the trailer section (it is part of the head
    /// budget in spirit: header-like lines of unbounded length are not accepted).
    pub(crate) fn new(max_trailer: usize) -> Self {
        ChunkedDecoder {
            st: St::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailer: 0,
            max_trailer,
        }
    }

    /// Consumes bytes of `data` up to the end of the body; returns how many were used.
    pub(crate) fn feed(&mut self, data: &[u8]) -> (usize, Progress) {
        let mut i = 0;
        while i < data.len() {
            if self.st == St::Done {
                return (i, Progress::Done);
            }
            if self.st == St::Data {
                // Chunk data is skipped in bulk: it can be large and needs no inspection.
                let n = self.size.min((data.len() - i) as u64);
                self.size -= n;
                i += n as usize;
                if self.size == 0 {
                    self.st = St::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            if self.byte(b).is_err() {
                return (i, Progress::Error);
            }
        }
        if self.st == St::Done {
            (i, Progress::Done)
        } else {
            (i, Progress::More)
        }
    }

    /// Accounts for `len` bytes that were lost (a capture gap), if they fall inside the
    /// data of the current chunk: then framing is intact and decoding can go on.
    pub(crate) fn skip(&mut self, len: u64) -> bool {
        if self.st != St::Data || len > self.size {
            return false;
        }
        self.size -= len;
        if self.size == 0 {
            self.st = St::DataCr;
        }
        true
    }

    fn byte(&mut self, b: u8) -> Result<(), ()> {
        self.st = match (self.st, b) {
            (St::Size, _) if hex(b).is_some() => self.size_digit(b)?,
            (St::Size, b';' | b' ' | b'\t') if self.digits > 0 => St::Ext,
            (St::Size, b'\r') if self.digits > 0 => St::SizeLf,
            (St::Size, b'\n') if self.digits > 0 => self.end_size_line(),
            (St::Ext, b'\r') => St::SizeLf,
            (St::Ext, b'\n') | (St::SizeLf, b'\n') => self.end_size_line(),
            (St::Ext, _) => self.ext_byte()?,
            // Bare LF is tolerated as a line end, as most servers do.
            (St::DataCr, b'\r') => St::DataLf,
            (St::DataCr, b'\n') | (St::DataLf, b'\n') => self.next_chunk(),
            (St::TrailerStart, b'\r') => St::FinalLf,
            (St::TrailerStart, b'\n') | (St::FinalLf, b'\n') => St::Done,
            (St::TrailerLine, b'\r') => St::TrailerLf,
            (St::TrailerLine, b'\n') | (St::TrailerLf, b'\n') => St::TrailerStart,
            (St::TrailerStart | St::TrailerLine, _) => self.trailer_byte()?,
            _ => return Err(()),
        };
        Ok(())
    }

    fn size_digit(&mut self, b: u8) -> Result<St, ()> {
        // 16 hex digits fill a u64; more would overflow.
        if self.digits >= 16 {
            return Err(());
        }
        self.size = (self.size << 4) | u64::from(hex(b).ok_or(())?);
        self.digits += 1;
        self.line += 1;
        Ok(St::Size)
    }

    fn ext_byte(&mut self) -> Result<St, ()> {
        self.line += 1;
        if self.line > MAX_SIZE_LINE {
            return Err(());
        }
        Ok(St::Ext)
    }

    fn trailer_byte(&mut self) -> Result<St, ()> {
        self.trailer += 1;
        if self.trailer > self.max_trailer {
            return Err(());
        }
        Ok(St::TrailerLine)
    }

    fn end_size_line(&mut self) -> St {
        // A zero-size chunk is the last chunk; the trailer section follows.
        if self.size == 0 {
            St::TrailerStart
        } else {
            St::Data
        }
    }

    fn next_chunk(&mut self) -> St {
        self.size = 0;
        self.digits = 0;
        self.line = 0;
        St::Size
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
