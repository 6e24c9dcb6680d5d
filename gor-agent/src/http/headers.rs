//! A message's header lines, read through the bytes they were parsed from.
//!
//! A message keeps each header's name ([`Text`]) and where its value is in the message's
//! own bytes: no copy of the value and no reference count per value (a `Bytes` per value
//! costs an atomic increment when the message is built and a decrement when it is
//! dropped). [`Headers`] pairs the list with those bytes to read it.

use std::ops::Range;

use super::Text;

/// Header names in original case and order, duplicates kept, each with the range of its
/// value in the bytes the head was parsed from (the message's `raw`, which starts with the
/// head).
pub type HeaderLines = Vec<(Text, Range<usize>)>;

/// [`HeaderLines`] read through the bytes they point into.
#[derive(Clone, Copy, Debug)]
pub struct Headers<'a> {
    lines: &'a [(Text, Range<usize>)],
    raw: &'a [u8],
}

impl<'a> Headers<'a> {
    pub fn new(lines: &'a [(Text, Range<usize>)], raw: &'a [u8]) -> Self {
        Headers { lines, raw }
    }

    /// Name and value of each line, in order. A range that is not in `raw` (never the
    /// case for a parsed message) reads as an empty value.
    pub fn iter(self) -> impl Iterator<Item = (&'a Text, &'a [u8])> + Clone + 'a {
        let raw = self.raw;
        self.lines
            .iter()
            .map(move |(n, r)| (n, raw.get(r.clone()).unwrap_or_default()))
    }

    /// The first value of a header, by case-insensitive name.
    pub fn get(self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether any header named `name` (any case) lists `token` (see
    /// [`super::head::lists`]).
    pub fn lists(self, name: &str, token: &str) -> bool {
        self.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| super::head::lists(v, token))
    }

    pub fn len(self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(self) -> bool {
        self.lines.is_empty()
    }
}

/// Header lines with bytes of their own, built from name-value pairs (for tests).
#[cfg(test)]
pub(crate) struct OwnedHeaders {
    lines: HeaderLines,
    raw: Vec<u8>,
}

#[cfg(test)]
impl OwnedHeaders {
    pub(crate) fn of(pairs: &[(&str, &str)]) -> Self {
        let mut raw = Vec::new();
        let mut lines = Vec::new();
        for (n, v) in pairs {
            let at = raw.len();
            raw.extend_from_slice(v.as_bytes());
            lines.push((Text::new(n), at..raw.len()));
        }
        OwnedHeaders { lines, raw }
    }

    pub(crate) fn view(&self) -> Headers<'_> {
        Headers::new(&self.lines, &self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_from_the_bytes_in_order_duplicates_kept() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-T: 1\r\nx-t: 2\r\n\r\n";
        let lines: HeaderLines = vec![
            (Text::new("Host"), 22..23),
            (Text::new("X-T"), 30..31),
            (Text::new("x-t"), 38..39),
        ];
        let h = Headers::new(&lines, raw);
        let got: Vec<(&str, &[u8])> = h.iter().map(|(n, v)| (n.as_str(), v)).collect();
        assert_eq!(
            got,
            [("Host", &b"a"[..]), ("X-T", b"1"), ("x-t", b"2")],
            "{h:?}"
        );
        assert_eq!(h.get("x-T"), Some(&b"1"[..]));
        assert_eq!(h.get("absent"), None);
        assert_eq!(h.len(), 3);
        // A range past the bytes reads as empty rather than failing.
        let short = Headers::new(&lines, &raw[..25]);
        assert_eq!(short.get("x-t"), Some(&b""[..]));
    }
}
