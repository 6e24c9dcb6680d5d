//! RFC 9110 tokens: the one definition of which bytes may make up a method or a field
//! name, shared by the framer's start-line check, the filter rules and the validation of
//! configured headers, so that what the agent accepts in one place it accepts everywhere.

/// RFC 9110 §5.6.2 `tchar`: the characters of a token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is a token (RFC 9110 §5.6.2: one or more `tchar`), as a method or a field
/// name must be.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(is_tchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_rfc_9110_tchars() {
        for ok in ["GET", "X-Mirrored", "a!#$%&'*+-.^_`|~9"] {
            assert!(is_token(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "X Y", "X:Y", "X\0", "(a)", "é", "a\"b", "a/b", "a@b"] {
            assert!(!is_token(bad.as_bytes()), "{bad:?}");
        }
    }
}
