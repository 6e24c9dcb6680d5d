//! Bodies as the page shows them: decoded from the file's base64, then JSON
//! pretty-printed one value a line with each line's JSON path (so the lines of a
//! differing path can be highlighted), text as text, anything else as a length and a
//! hex prefix. Every view is bounded: a body can be 64 KiB and a page has many.
//!
//! The JSON printer works on the body's own text rather than on a parsed
//! `serde_json::Value`, whose maps are sorted: a person compares the page with what the
//! service sends, in the service's member order and number spelling.

use base64::Engine;

/// Text shown of a text body; the rest is cut with a note.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Lines shown of a JSON body.
pub const MAX_JSON_LINES: usize = 1000;
/// Nesting beyond which a JSON body is shown as text (the printer recurses).
const MAX_JSON_DEPTH: usize = 128;
/// Bytes shown, in hex, of a binary body.
pub const HEX_PREFIX_BYTES: usize = 64;

/// One line of a pretty-printed JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLine {
    /// The path of the value the line belongs to (`$`, `$.items[2].price`, `$['odd key']`).
    pub path: String,
    /// The line, indentation included.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum View {
    Empty,
    Json {
        lines: Vec<JsonLine>,
        cut: bool,
    },
    /// `cut`: only the first [`MAX_TEXT_BYTES`] are in `text`.
    Text {
        text: String,
        cut: bool,
    },
    /// Not text: the first bytes in hex.
    Binary {
        hex: String,
    },
    /// The file's base64 did not decode.
    Undecodable,
}

/// Decodes a body field of the file (base64); `None` if it is not base64.
pub fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// How to show `bytes`; `json` is the writer's word that the body is JSON.
pub fn view(bytes: &[u8], json: bool) -> View {
    if bytes.is_empty() {
        return View::Empty;
    }
    let Some(text) = std::str::from_utf8(bytes).ok().filter(|t| is_text(t)) else {
        return View::Binary {
            hex: hex(&bytes[..bytes.len().min(HEX_PREFIX_BYTES)]),
        };
    };
    if json {
        if let Some((lines, cut)) = pretty_json(text, MAX_JSON_LINES) {
            return View::Json { lines, cut };
        }
    }
    let cut = text.len() > MAX_TEXT_BYTES;
    View::Text {
        text: text[..floor_char_boundary(text, MAX_TEXT_BYTES)].to_owned(),
        cut,
    }
}

/// Text a person can read: no control characters but whitespace.
fn is_text(t: &str) -> bool {
    !t.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The largest char boundary of `s` at or below `at`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The path of member `key` of the value at `parent`, in the comparison's syntax
/// ([`crate::compare::json::push_key`]).
pub fn member_path(parent: &str, key: &str) -> String {
    let mut out = parent.to_string();
    crate::compare::json::push_key(&mut out, key);
    out
}

/// Whether the line of the value at `line` lies within the differing path `diff` (the
/// value itself or one inside it).
pub fn covers(diff: &str, line: &str) -> bool {
    line.strip_prefix(diff)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `text` pretty-printed, at most `max_lines` lines (`true` when cut); `None` if it is
/// not one JSON value.
pub fn pretty_json(text: &str, max_lines: usize) -> Option<(Vec<JsonLine>, bool)> {
    let mut p = Printer {
        s: text.as_bytes(),
        text,
        pos: 0,
        lines: Vec::new(),
        max_lines,
        cut: false,
    };
    p.value("$", 0, String::new())?;
    if p.cut {
        return Some((p.lines, true));
    }
    p.ws();
    (p.pos == p.s.len()).then_some((p.lines, false))
}

struct Printer<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    lines: Vec<JsonLine>,
    max_lines: usize,
    cut: bool,
}

impl<'a> Printer<'a> {
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Emits a line; `false` once the line budget is spent.
    fn emit(&mut self, path: &str, text: String) -> bool {
        if self.lines.len() >= self.max_lines {
            self.cut = true;
            return false;
        }
        self.lines.push(JsonLine {
            path: path.to_owned(),
            text,
        });
        true
    }

    /// A `,` after a member or element goes at the end of its last line.
    fn comma(&mut self) {
        if let Some(l) = self.lines.last_mut() {
            l.text.push(',');
        }
    }

    /// One value at `path`, its first line starting with `prefix` (indentation and, in
    /// an object, the member's key). `None`: not JSON. Stops early once cut.
    fn value(&mut self, path: &str, depth: usize, prefix: String) -> Option<()> {
        if depth > MAX_JSON_DEPTH {
            return None;
        }
        self.ws();
        let indent = "  ".repeat(depth);
        match self.peek()? {
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.pos += 1;
                    let pair = if open == b'{' { "{}" } else { "[]" };
                    self.emit(path, format!("{prefix}{pair}"));
                    return Some(());
                }
                if !self.emit(path, format!("{prefix}{}", open as char)) {
                    return Some(());
                }
                let inner = "  ".repeat(depth + 1);
                let mut index = 0usize;
                loop {
                    self.ws();
                    let (child, child_prefix) = if open == b'{' {
                        let raw = self.string()?;
                        let key: String = serde_json::from_str(raw).ok()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.pos += 1;
                        (member_path(path, &key), format!("{inner}{raw}: "))
                    } else {
                        (format!("{path}[{index}]"), inner.clone())
                    };
                    self.value(&child, depth + 1, child_prefix)?;
                    if self.cut {
                        return Some(());
                    }
                    index += 1;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.pos += 1;
                            self.comma();
                        }
                        c if c == close => {
                            self.pos += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
                self.emit(path, format!("{indent}{}", close as char));
                Some(())
            }
            b'"' => {
                let raw = self.string()?;
                self.emit(path, format!("{prefix}{raw}"));
                Some(())
            }
            _ => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b',' | b']' | b'}'))
                {
                    self.pos += 1;
                }
                let token = self.text.get(start..self.pos)?;
                // A number or a literal, checked by the JSON parser.
                serde_json::from_str::<serde_json::Value>(token).ok()?;
                self.emit(path, format!("{prefix}{token}"));
                Some(())
            }
        }
    }

    /// A string token as written, quotes included.
    fn string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return self.text.get(start..self.pos);
                }
                _ => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(text: &str) -> Vec<(String, String)> {
        pretty_json(text, 100)
            .unwrap()
            .0
            .into_iter()
            .map(|l| (l.path, l.text))
            .collect()
    }

    #[test]
    fn json_lines_carry_their_paths_in_the_writers_syntax() {
        let lines =
            printed(r#"{"user":{"name":"ann"},"items":[{"price":1.50}],"odd key":[],"it's":true}"#);
        let want = [
            ("$", "{"),
            ("$.user", r#"  "user": {"#),
            ("$.user.name", r#"    "name": "ann""#),
            ("$.user", "  },"),
            ("$.items", r#"  "items": ["#),
            ("$.items[0]", "    {"),
            ("$.items[0].price", r#"      "price": 1.50"#),
            ("$.items[0]", "    }"),
            ("$.items", "  ],"),
            ("$['odd key']", r#"  "odd key": [],"#),
            (r"$['it\'s']", r#"  "it's": true"#),
            ("$", "}"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        assert_eq!(lines, want);
    }

    #[test]
    fn not_json_is_none_and_long_json_is_cut() {
        assert!(pretty_json("{\"a\":1", 100).is_none());
        assert!(pretty_json("{\"a\":1} x", 100).is_none());
        assert!(pretty_json("nope", 100).is_none());
        let (lines, cut) = pretty_json("[1,2,3,4,5]", 3).unwrap();
        assert!(cut);
        assert_eq!(lines.len(), 3);
        // A view of non-JSON "json" falls back to text.
        assert!(matches!(view(b"{oops", true), View::Text { .. }));
    }

    #[test]
    fn covers_only_whole_path_steps() {
        assert!(covers("$.a", "$.a"));
        assert!(covers("$.a", "$.a.b"));
        assert!(covers("$.a", "$.a[3]"));
        assert!(covers("$.a", "$.a['x y']"));
        assert!(!covers("$.a", "$.ab"));
        assert!(!covers("$.a.b", "$.a"));
    }

    #[test]
    fn text_binary_and_long_bodies() {
        assert_eq!(view(b"", false), View::Empty);
        assert!(
            matches!(view(&[0, 1, 2, 0xff], false), View::Binary { hex } if hex == "00 01 02 ff")
        );
        let long = "é".repeat(MAX_TEXT_BYTES);
        let View::Text { text, cut } = view(long.as_bytes(), false) else {
            panic!("text expected");
        };
        assert!(cut);
        assert!(text.len() <= MAX_TEXT_BYTES);
        assert_eq!(decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode("%%%"), None);
    }
}
