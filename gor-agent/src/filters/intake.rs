//! What happens to a request as it comes in, before the middleware sees it: the client's
//! address as a header (`--http-realip-header`, GoReplay's `--input-raw-realip-header`)
//! and bodies decoded (`--http-prettify`, GoReplay's `--prettify-http`), as GoReplay
//! does both before its middleware.
//!
//! Prettifying follows GoReplay: a chunked body is de-chunked (its trailers dropped) and
//! `Transfer-Encoding` removed; a body with a `Content-Encoding` is decompressed and the
//! header removed; `Content-Length` then gives the new length. gor also undoes `deflate`
//! and `br` (GoReplay only `gzip`), and keeps a request whose body does not decode (bad
//! chunks or compressed data, an unknown coding, over [`PRETTIFY_MAX`] decoded) as it came,
//! counting it, where GoReplay drops one that is not gzip after all. Responses are left
//! as captured: the comparison decodes production's and staging's alike.

use crate::compare::body::decode_parts;
use crate::http::edit::{EditError, HeadEdit};
use crate::http::HttpMessage;

/// The most a prettified body may hold, decoded; a larger one is kept as it came.
pub const PRETTIFY_MAX: usize = 16 * 1024 * 1024;

/// Why a request could not be prettified.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PrettifyError {
    /// The framing or the compressed data is corrupt, the coding unknown, or the body too
    /// large decoded.
    Decode(String),
    Edit(EditError),
}

/// The client's address (its IP, without the port) as header `name`; `Ok(None)` for a
/// message that came from no known client (saved traffic has no address).
pub(crate) fn realip(msg: &HttpMessage, name: &str) -> Result<Option<HttpMessage>, EditError> {
    let ip = msg.flow.client.ip().to_canonical();
    if ip.is_unspecified() {
        return Ok(None);
    }
    let mut head = HeadEdit::new(&msg.raw, msg.body_offset)?;
    head.set_header(name, ip.to_string().as_bytes());
    head.finish(msg)
}

/// The request with its body decoded, or `Ok(None)` when it has no coding to undo.
pub(crate) fn prettify(msg: &HttpMessage) -> Result<Option<HttpMessage>, PrettifyError> {
    let listed = |name: &str| {
        msg.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity")
            .count()
            > 0
    };
    let (chunked, coded) = (listed("transfer-encoding"), listed("content-encoding"));
    if !chunked && !coded {
        return Ok(None);
    }
    let decoded = decode_parts(msg.headers(), &msg.body(), true, PRETTIFY_MAX);
    if let Some(e) = decoded.error {
        return Err(PrettifyError::Decode(e));
    }
    if !decoded.complete {
        return Err(PrettifyError::Decode(format!(
            "more than {PRETTIFY_MAX} bytes decoded"
        )));
    }
    let mut head = HeadEdit::new(&msg.raw, msg.body_offset).map_err(PrettifyError::Edit)?;
    head.remove("Transfer-Encoding");
    head.remove("Content-Encoding");
    let len = decoded.bytes.len().to_string();
    let lengths = head.find("Content-Length");
    match lengths.split_first() {
        Some((&first, rest)) => {
            head.set_value(first, len.into_bytes());
            for &i in rest {
                head.remove_at(i);
            }
        }
        None => {
            head.append("Content-Length", len.as_bytes());
        }
    }
    head.set_body(decoded.bytes.to_vec());
    head.finish(msg).map_err(PrettifyError::Edit)
}
