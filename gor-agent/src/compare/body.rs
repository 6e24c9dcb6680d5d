//! A response body as it is compared: chunked framing removed (trailers dropped), then
//! the content codings undone, within a bound on the decoded size.
//!
//! Decoding never holds more than `max` decoded bytes (plus one, to tell "exactly `max`"
//! from "more"): a small compressed body that inflates to gigabytes (a zip bomb) is cut
//! at `max` and marked incomplete. The decoders' own state is bounded too: 32 KiB of
//! window for gzip and deflate, at most 16 MiB for brotli (its largest standard window;
//! the large-window extension is not enabled).
//!
//! The codings decoded are those of `Content-Encoding` followed by any transfer codings
//! before `chunked` (RFC 9112 §6.1 lets a sender apply e.g. `gzip, chunked`), undone in
//! reverse order of application: `gzip`/`x-gzip` (concatenated members too), `deflate`
//! (zlib-wrapped as RFC 9110 §8.4.1.2 says, or raw, as browsers also accept), `br` and
//! `identity`. Any other coding (`compress`, `zstd`, ...) is reported as an error.

use std::io::{self, Cursor, Read};

use bytes::{Bytes, BytesMut};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use crate::http::{Headers, HttpMessage};

/// A decoded body.
///
/// * `complete`: `bytes` is the whole body: neither the wire body nor the decoded bytes
///   were cut (by the results' body limit or by `max`).
/// * `error`: a coding is unknown, the chunked framing or the compressed data is corrupt.
///   Then `bytes` is the body as it was before the step that failed (still compressed,
///   or still chunk-framed if the framing is what failed), cut at `max`, so two bodies
///   that fail alike still compare equal and a body that fails differs from one that
///   decodes. A compressed body whose wire bytes were cut ends early by nature: that is
///   not an error, the bytes decoded so far are kept and `complete` is false.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedBody {
    /// At most `max` bytes.
    pub bytes: Bytes,
    /// The decoded length. It exceeds `bytes.len()` when the body was cut: exact for a body
    /// without content coding (the framing gives it), a lower bound (`max + 1`) for a
    /// compressed one, whose decoding stops at the bound.
    pub len: u64,
    pub complete: bool,
    /// The codings undone (or attempted), lowercase, in order of application, joined
    /// with `", "` (`"gzip"`, `"deflate, br"`); `None` for none or only `identity`.
    pub encoding: Option<String>,
    pub error: Option<String>,
}

/// Decodes the body of `msg` ([`HttpMessage::body`], as on the wire); `wire_complete` is
/// false when the wire body was cut before its end.
pub fn decode(msg: &HttpMessage, wire_complete: bool, max: usize) -> DecodedBody {
    decode_parts(msg.headers(), &msg.body(), wire_complete, max)
}

/// [`decode`] from a message's headers and wire body.
pub fn decode_parts(
    headers: Headers<'_>,
    wire: &Bytes,
    wire_complete: bool,
    max: usize,
) -> DecodedBody {
    let mut codings = header_list(headers, "content-encoding");
    let mut transfer = header_list(headers, "transfer-encoding");
    let chunked = transfer.last().is_some_and(|c| c == "chunked");
    if chunked {
        transfer.pop();
    }
    codings.extend(transfer);
    codings.retain(|c| c != "identity");
    let encoding = (!codings.is_empty()).then(|| codings.join(", "));

    let (unframed, input_complete) = if chunked {
        match unchunk(wire, wire_complete) {
            Ok(u) => u,
            Err(e) => return undecoded(wire, wire_complete, max, encoding, e),
        }
    } else {
        (wire.clone(), wire_complete)
    };
    // A 304 or an answer to HEAD declares the codings of a body it does not carry.
    if codings.is_empty() || unframed.is_empty() {
        return undecoded(&unframed, input_complete, max, encoding, None);
    }
    if let Some(unknown) = codings
        .iter()
        .find(|c| !matches!(c.as_str(), "gzip" | "x-gzip" | "deflate" | "br"))
    {
        let e = format!("unknown content coding `{unknown}`");
        return undecoded(&unframed, input_complete, max, encoding, e);
    }

    let failed = match decoder(&unframed, &codings) {
        Ok(mut r) => {
            let (mut out, over, err) = read_bounded(&mut r, max);
            match err {
                // A cut input ends in the middle of the compressed stream.
                Some(e) if input_complete => e,
                _ => {
                    let len = out.len() as u64;
                    out.truncate(max);
                    return DecodedBody {
                        bytes: Bytes::from(out),
                        len,
                        complete: input_complete && !over,
                        encoding,
                        error: None,
                    };
                }
            }
        }
        Err(e) if input_complete => e,
        // A cut input that ends before an inner decoder's first bytes: nothing decoded.
        Err(_) => {
            return DecodedBody {
                encoding,
                ..DecodedBody::default()
            }
        }
    };
    let e = format!("cannot decode {}: {failed}", codings.join(", "));
    undecoded(&unframed, input_complete, max, encoding, e)
}

/// `bytes` kept as they are, cut at `max`.
fn undecoded(
    bytes: &Bytes,
    complete: bool,
    max: usize,
    encoding: Option<String>,
    error: impl Into<Option<String>>,
) -> DecodedBody {
    DecodedBody {
        bytes: bytes.slice(..bytes.len().min(max)),
        len: bytes.len() as u64,
        complete: complete && bytes.len() <= max,
        encoding,
        error: error.into(),
    }
}

/// The comma-separated items of every `name` header, trimmed, lowercase, in order.
fn header_list(headers: Headers<'_>, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        let items = String::from_utf8_lossy(v);
        out.extend(
            items
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty()),
        );
    }
    out
}

/// The decoders of `codings` stacked on `input`, the last coding applied undone first.
fn decoder<'a>(input: &'a [u8], codings: &[String]) -> io::Result<Box<dyn Read + 'a>> {
    let mut r: Box<dyn Read + 'a> = Box::new(Cursor::new(input));
    for coding in codings.iter().rev() {
        r = match coding.as_str() {
            "gzip" | "x-gzip" => Box::new(MultiGzDecoder::new(r)),
            "deflate" => deflate(r)?,
            "br" => Box::new(brotli_decompressor::Decompressor::new(r, 4096)),
            _ => r,
        };
    }
    Ok(r)
}

/// A zlib stream if the first two bytes are a zlib header (RFC 1950 §2.2: method 8, a
/// window of at most 32 KiB, a check that makes the pair a multiple of 31), else raw
/// deflate: some servers send raw deflate under `deflate`, and browsers accept both.
fn deflate<'a>(mut r: Box<dyn Read + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let zlib =
        n == 2 && head[0] & 0x0f == 8 && head[0] >> 4 <= 7 && u16::from_be_bytes(head) % 31 == 0;
    let r = Cursor::new(head).take(n as u64).chain(r);
    Ok(if zlib {
        Box::new(ZlibDecoder::new(r))
    } else {
        Box::new(DeflateDecoder::new(r))
    })
}

/// Reads `r` to its end or until it gave more than `max` bytes (then `true`), keeping at
/// most `max + 1` of them and never allocating more; an error ends the reading, with the
/// bytes read before it.
fn read_bounded(r: &mut dyn Read, max: usize) -> (Vec<u8>, bool, Option<io::Error>) {
    let limit = max.saturating_add(1);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if out.len() >= limit {
            return (out, true, None);
        }
        let want = (limit - out.len()).min(buf.len());
        match r.read(&mut buf[..want]) {
            Ok(0) => return (out, false, None),
            Ok(n) => {
                if out.capacity() - out.len() < n {
                    // Doubling as Vec does, but never past the limit.
                    let target = (out.capacity() * 2).max(out.len() + n).max(4096).min(limit);
                    out.reserve_exact(target - out.len());
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, false, Some(e)),
        }
    }
}

/// The data of a chunked body (RFC 9112 §7.1), and whether its last chunk was reached.
/// Extensions and trailers are dropped; a bare LF is accepted as a line end, as the
/// framer does. The framer has already checked the framing of every message it emitted,
/// so errors here are for bodies from elsewhere. `complete` says whether `wire` is the
/// whole body: if it is not, it may end anywhere.
fn unchunk(wire: &Bytes, complete: bool) -> Result<(Bytes, bool), String> {
    let mut pos = 0;
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let ended = loop {
        let Some(nl) = wire[pos..].iter().position(|&b| b == b'\n') else {
            break false;
        };
        let line = &wire[pos..pos + nl];
        let digits = line
            .iter()
            .position(|b| !b.is_ascii_hexdigit())
            .unwrap_or(line.len());
        let rest = &line[digits..];
        if digits == 0
            || digits > 16
            || !matches!(rest.first(), None | Some(b';' | b' ' | b'\t' | b'\r'))
        {
            return Err("bad chunk size line in the chunked body".into());
        }
        let size = line[..digits]
            .iter()
            .fold(0u64, |s, b| (s << 4) | u64::from(hex(*b)));
        pos += nl + 1;
        if size == 0 {
            break true;
        }
        let take = size.min((wire.len() - pos) as u64) as usize;
        parts.push((pos, pos + take));
        pos += take;
        if (take as u64) < size {
            break false;
        }
        match &wire[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            [] | [b'\r'] => break false,
            _ => return Err("chunk data not followed by CRLF in the chunked body".into()),
        }
    };
    if !ended && complete {
        return Err("the chunked body ends before its last chunk".into());
    }
    let data = match parts.as_slice() {
        [] => Bytes::new(),
        [(a, b)] => wire.slice(*a..*b),
        _ => {
            let mut out = BytesMut::with_capacity(parts.iter().map(|(a, b)| b - a).sum());
            for (a, b) in parts {
                out.extend_from_slice(&wire[a..b]);
            }
            out.freeze()
        }
    };
    Ok((data, ended))
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;
    use crate::http::OwnedHeaders;

    const TEXT: &[u8] = b"hello hello hello hello brotli";
    /// `TEXT` compressed by Python's `brotli.compress` (brotli 1.2.1).
    const TEXT_BR: &[u8] = &[
        0x1b, 0x1d, 0x00, 0xf8, 0x8d, 0x94, 0x6e, 0xde, 0x44, 0x55, 0x86, 0xd6, 0x6c, 0x20, 0x69,
        0x6f, 0xd3, 0x10, 0x49, 0xe6, 0xa9, 0x03, 0x52, 0x1a, 0xf1, 0x78, 0xd1, 0x0c,
    ];

    fn decode_with(list: &[(&str, &str)], wire: &[u8], complete: bool, max: usize) -> DecodedBody {
        let headers = OwnedHeaders::of(list);
        decode_parts(headers.view(), &Bytes::copy_from_slice(wire), complete, max)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn chunk(data: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = data;
        for &s in sizes {
            let (c, r) = rest.split_at(s.min(rest.len()));
            out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
            rest = r;
        }
        out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        out
    }

    fn whole(bytes: &[u8], encoding: Option<&str>) -> DecodedBody {
        DecodedBody {
            bytes: Bytes::copy_from_slice(bytes),
            len: bytes.len() as u64,
            complete: true,
            encoding: encoding.map(String::from),
            error: None,
        }
    }

    #[test]
    fn codings_round_trip() {
        let cases: [(&str, Vec<u8>); 5] = [
            ("gzip", gzip(TEXT)),
            ("x-gzip", gzip(TEXT)),
            ("deflate", zlib(TEXT)),
            ("deflate", raw_deflate(TEXT)),
            ("br", TEXT_BR.to_vec()),
        ];
        for (coding, wire) in cases {
            let got = decode_with(&[("Content-Encoding", coding)], &wire, true, 1024);
            assert_eq!(got, whole(TEXT, Some(coding)), "{coding}");
        }
        // Identity, and codings named in any case with spaces around them.
        let got = decode_with(&[("Content-Encoding", " identity ")], TEXT, true, 1024);
        assert_eq!(got, whole(TEXT, None));
        let got = decode_with(&[("content-encoding", " GZip ")], &gzip(TEXT), true, 1024);
        assert_eq!(got, whole(TEXT, Some("gzip")));
    }

    #[test]
    fn a_list_of_codings_is_undone_in_reverse() {
        // Applied: deflate first, then gzip (two headers count as one list).
        let wire = gzip(&raw_deflate(TEXT));
        let got = decode_with(
            &[
                ("Content-Encoding", "deflate"),
                ("Content-Encoding", "gzip"),
            ],
            &wire,
            true,
            1024,
        );
        assert_eq!(got, whole(TEXT, Some("deflate, gzip")));
        // A transfer coding before chunked is undone too, after the framing.
        let wire = chunk(&gzip(TEXT), &[5, 7, 1000]);
        let got = decode_with(&[("Transfer-Encoding", "gzip, chunked")], &wire, true, 1024);
        assert_eq!(got, whole(TEXT, Some("gzip")));
        // Concatenated gzip members are one body.
        let mut wire = gzip(b"abc");
        wire.extend(gzip(b"def"));
        let got = decode_with(&[("Content-Encoding", "gzip")], &wire, true, 1024);
        assert_eq!(got, whole(b"abcdef", Some("gzip")));
    }

    #[test]
    fn chunked_framing_and_trailers_are_removed() {
        let wire = chunk(TEXT, &[1, 2, 3, 100]);
        let got = decode_with(&[("Transfer-Encoding", "chunked")], &wire, true, 1024);
        assert_eq!(got, whole(TEXT, None));
        let gz = gzip(TEXT);
        let wire = chunk(&gz, &[4, 4, 1000]);
        let got = decode_with(
            &[
                ("Transfer-Encoding", "chunked"),
                ("Content-Encoding", "gzip"),
            ],
            &wire,
            true,
            1024,
        );
        assert_eq!(got, whole(TEXT, Some("gzip")));
        // Bare LFs as line ends.
        let got = decode_with(
            &[("Transfer-Encoding", "Chunked")],
            b"3\nabc\n0\n\n",
            true,
            1024,
        );
        assert_eq!(got, whole(b"abc", None));
        let got = decode_with(
            &[("Transfer-Encoding", "chunked")],
            b"0\r\n\r\n",
            true,
            1024,
        );
        assert_eq!(got, whole(b"", None));
    }

    #[test]
    fn bad_chunked_framing_keeps_the_wire_bytes() {
        for wire in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nabc\r\n",
        ] {
            let got = decode_with(&[("Transfer-Encoding", "chunked")], wire, true, 1024);
            assert_eq!(got.bytes, wire, "{wire:?}");
            assert!(got.error.is_some() && got.complete, "{got:?}");
        }
    }

    #[test]
    fn a_cut_wire_body_decodes_what_is_there() {
        // Cut 4 bytes into the second chunk (size lines are 9 bytes): the data so far.
        let wire = chunk(TEXT, &[10, 10, 100]);
        let got = decode_with(
            &[("Transfer-Encoding", "chunked")],
            &wire[..34],
            false,
            1024,
        );
        assert_eq!(
            (&got.bytes[..], got.complete, &got.error),
            (&TEXT[..14], false, &None)
        );
        // Cut inside compressed data: what decodes, no error.
        let big: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let gz = gzip(&big);
        let got = decode_with(
            &[("Content-Encoding", "gzip")],
            &gz[..gz.len() / 2],
            false,
            1 << 20,
        );
        assert!(!got.complete && got.error.is_none(), "{got:?}");
        assert!(big.starts_with(&got.bytes));
        let got = decode_with(&[("Content-Encoding", "br")], &TEXT_BR[..20], false, 1024);
        assert!(!got.complete && got.error.is_none(), "{got:?}");
        assert!(TEXT.starts_with(&got.bytes));
        // The same bytes claimed whole: corrupt.
        let got = decode_with(
            &[("Content-Encoding", "gzip")],
            &gz[..gz.len() / 2],
            true,
            1 << 20,
        );
        assert!(got.error.is_some(), "{got:?}");
    }

    #[test]
    fn bodies_beyond_max_are_cut() {
        let got = decode_with(&[], TEXT, true, 5);
        assert_eq!(
            (&got.bytes[..], got.len, got.complete),
            (&TEXT[..5], TEXT.len() as u64, false)
        );
        let got = decode_with(&[], TEXT, true, TEXT.len());
        assert_eq!(got, whole(TEXT, None));
        let got = decode_with(
            &[("Content-Encoding", "gzip")],
            &gzip(TEXT),
            true,
            TEXT.len(),
        );
        assert_eq!(got, whole(TEXT, Some("gzip")));
        let got = decode_with(&[("Content-Encoding", "br")], TEXT_BR, true, 5);
        assert_eq!(
            (&got.bytes[..], got.len, got.complete),
            (&TEXT[..5], 6, false)
        );
    }

    #[test]
    fn a_zip_bomb_is_cut_at_max_without_allocating_more() {
        let zeros = vec![0u8; 8 << 20];
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&zeros).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 100_000);
        let max = 100_000;
        let got = decode_with(&[("Content-Encoding", "gzip")], &bomb, true, max);
        assert_eq!(
            (got.bytes.len(), got.len, got.complete),
            (max, max as u64 + 1, false)
        );
        assert!(got.error.is_none() && got.bytes.iter().all(|&b| b == 0));

        let mut r = MultiGzDecoder::new(&bomb[..]);
        let (out, over, err) = read_bounded(&mut r, max);
        assert!(over && err.is_none());
        assert!(out.capacity() <= max + 1, "{}", out.capacity());
    }

    #[test]
    fn unknown_codings_and_corrupt_data_keep_the_bytes() {
        let got = decode_with(&[("Content-Encoding", "zstd")], b"\x28\xb5junk", true, 1024);
        assert_eq!(got.bytes, &b"\x28\xb5junk"[..]);
        assert_eq!(got.error.as_deref(), Some("unknown content coding `zstd`"));
        assert_eq!(
            (got.complete, got.encoding.as_deref()),
            (true, Some("zstd"))
        );
        for coding in ["gzip", "deflate", "br"] {
            let junk = b"\xff\xfe this is not compressed \x00\x01";
            let got = decode_with(&[("Content-Encoding", coding)], junk, true, 1024);
            assert_eq!(got.bytes, &junk[..], "{coding}");
            assert!(got.error.is_some(), "{coding}");
        }
        // An empty body with a coding (a 304, an answer to HEAD) is empty, not corrupt.
        let got = decode_with(&[("Content-Encoding", "gzip")], b"", true, 1024);
        assert_eq!(got, whole(b"", Some("gzip")));
    }
}
