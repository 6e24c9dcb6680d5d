//! Validation of header fields that the operator configures and the agent then writes
//! into mirrored requests (`--set-header`, the filters' set and rewrite rules).
//!
//! There is one rule for a header to set, checked by [`set_header`] both when the
//! configuration is read and again when the mirror starts (a `MirrorOptions` can be
//! built without the configuration parser): the name is a token and the value holds no
//! CR, LF or NUL. RFC 9110 §5.5 calls exactly those three "invalid and dangerous" in a
//! field value: CR and LF would let a value inject header lines or end the head, and NUL
//! is cut or refused by many servers. Other control bytes are merely not `field-vchar`:
//! [`is_field_text`] tells them apart for the filters, whose edited heads are re-parsed by
//! the framer's parser, which refuses them.

use super::token::is_token;

/// Why a header to set is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    #[error("the header name is not an RFC 9110 token")]
    Name,
    #[error("the header value contains CR, LF or NUL")]
    Value,
}

/// Checks a header the agent is asked to add or replace; see the module documentation.
pub fn set_header(name: &str, value: &str) -> Result<(), InvalidHeader> {
    if !is_token(name.as_bytes()) {
        return Err(InvalidHeader::Name);
    }
    if !is_safe_value(value.as_bytes()) {
        return Err(InvalidHeader::Value);
    }
    Ok(())
}

/// A field value without CR, LF or NUL (RFC 9110 §5.5).
pub fn is_safe_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// A field value made only of the bytes the framer's parser accepts in one: HTAB, SP,
/// visible ASCII and obs-text (RFC 9110 §5.5 `field-vchar`), so no control byte and no DEL.
pub fn is_field_text(v: &[u8]) -> bool {
    !v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_header_refuses_bad_names_and_cr_lf_nul() {
        assert_eq!(set_header("X-Mirrored", "1; a=b\tc é"), Ok(()));
        assert_eq!(set_header("X-Empty", ""), Ok(()));
        assert_eq!(set_header("", "v"), Err(InvalidHeader::Name));
        assert_eq!(set_header("X Y", "v"), Err(InvalidHeader::Name));
        assert_eq!(set_header("X:Y", "v"), Err(InvalidHeader::Name));
        for bad in ["a\rb", "a\nb", "a\0b", "\r\nX-Injected: 1"] {
            assert_eq!(set_header("X", bad), Err(InvalidHeader::Value), "{bad:?}");
        }
        // Other control bytes are not dangerous, only outside field-vchar.
        assert_eq!(set_header("X", "a\u{1}b"), Ok(()));
    }

    #[test]
    fn field_text_is_what_the_parser_accepts() {
        assert!(is_field_text(b"a b\tc \x80\xff"));
        for bad in [&b"a\x01"[..], b"\x7f", b"a\rb", b"\0"] {
            assert!(!is_field_text(bad), "{bad:?}");
        }
    }

    #[test]
    fn field_text_agrees_with_the_head_parser() {
        use crate::http::head::{parse, HeadResult};
        use crate::stream::Direction;
        for b in 0..=255u8 {
            let value = [b'a', b, b'b'];
            let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\n\r\n");
            let parsed = matches!(parse(Direction::ClientToServer, &raw), HeadResult::Complete(h) if h.len == raw.len());
            if b != b'\r' && b != b'\n' {
                assert_eq!(is_field_text(&value), parsed, "byte {b:#x}");
            }
        }
    }
}
