//! [`Text`]: a piece of a message head (method, target, reason phrase, header name) that
//! costs no allocation in the common case. Short text (every method, nearly every header
//! name, most reason phrases and short targets) is stored inline; longer text is copied
//! once into a shared buffer, so clones cost no allocation either.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Bytes kept inline: with the length byte and the variant tag, a `Text` is as big as a
/// `Bytes` plus one word.
const INLINE: usize = 38;

/// UTF-8 text, inline or sharing a buffer; it reads as a `&str`.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    /// Invariant: valid UTF-8.
    Shared(Bytes),
}

impl Text {
    /// `s`, inline when it is short, else copied.
    pub fn new(s: &str) -> Text {
        match inline(s) {
            Some(t) => t,
            None => Text(Repr::Shared(Bytes::copy_from_slice(s.as_bytes()))),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, buf } => {
                // SAFETY: only `inline` writes this variant, copying a whole `&str` of
                // `len` bytes.
                unsafe { std::str::from_utf8_unchecked(&buf[..*len as usize]) }
            }
            // SAFETY: the `Shared` variant holds UTF-8 only (see its constructors).
            Repr::Shared(b) => unsafe { std::str::from_utf8_unchecked(b) },
        }
    }
}

fn inline(s: &str) -> Option<Text> {
    if s.len() > INLINE {
        return None;
    }
    let mut buf = [0u8; INLINE];
    buf[..s.len()].copy_from_slice(s.as_bytes());
    Some(Text(Repr::Inline {
        len: s.len() as u8,
        buf,
    }))
}

impl Default for Text {
    fn default() -> Text {
        Text::new("")
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        match inline(&s) {
            Some(t) => t,
            None => Text(Repr::Shared(Bytes::from(s.into_bytes()))),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_and_long_text_is_copied_once() {
        let get = Text::new("GET");
        assert!(matches!(get.0, Repr::Inline { len: 3, .. }));
        assert_eq!(get, "GET");
        let long = "/a/rather/long/target/that/does/not/fit/inline?x=1";
        let t = Text::from(String::from(long));
        assert!(matches!(&t.0, Repr::Shared(_)));
        assert_eq!(t, Text::new(long));
        assert_eq!(&*t, long);
        assert_eq!(Text::from(String::from("Host")), Text::new("Host"));
        assert_eq!(Text::default(), "");
        assert_eq!(
            format!("{:?} {}", Text::new("a\"b"), Text::new("x")),
            "\"a\\\"b\" x"
        );
    }
}
