//! JSON body comparison: two bodies compared as values (object key order and number
//! spelling do not matter), reporting the leaves that differ by path, less the paths the
//! operator ignores (timestamps, generated ids).
//!
//! Paths are written in a subset of JSONPath (RFC 9535), the same for the ignore list and
//! in reported differences:
//!
//! | syntax               | selects                                       |
//! |----------------------|-----------------------------------------------|
//! | `$`                  | the whole body (must start every path)        |
//! | `.name`              | member `name` of an object                    |
//! | `['name']`, `["name"]` | member `name`, any characters (`\'`, `\"`, `\\` escape) |
//! | `[3]`                | element 3 of an array                         |
//! | `[*]`, `.*`          | every member or element                       |
//! | `..name`, `..['name']` | member `name` at any depth below           |
//!
//! Reported paths use `.name` for identifiers (`[A-Za-z_][A-Za-z0-9_]*`) and `['name']`
//! for other keys: `$.items[2].price`, `$['a b']`. Filters, slices, unions and
//! functions are not supported. An ignored path skips the value there and all below it.

use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use super::{Change, Difference};

/// One step of a path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    /// `[*]` or `.*`.
    Any,
    /// `..name`: the member at any depth.
    Descend(String),
}

/// One step of a concrete path.
#[derive(Clone, Copy, Debug)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON paths left out of the comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonPaths {
    paths: Vec<Vec<Seg>>,
}

impl JsonPaths {
    /// Comma-separated paths in the subset of the module docs (commas inside quoted keys
    /// belong to the key); an empty list ignores nothing.
    pub fn parse(list: &str) -> Result<JsonPaths, String> {
        let mut p = Parser { s: list, i: 0 };
        let mut paths = Vec::new();
        loop {
            p.skip_spaces();
            if p.done() {
                break;
            }
            paths.push(p.path()?);
            p.skip_spaces();
            if !p.done() && !p.eat(",") {
                return Err(p.error("`,` between paths"));
            }
        }
        Ok(JsonPaths { paths })
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    fn matches(&self, path: &[Step]) -> bool {
        self.paths.iter().any(|pat| matches(pat, path))
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, t: &str) -> bool {
        let found = self.rest().starts_with(t);
        if found {
            self.i += t.len();
        }
        found
    }

    fn skip_spaces(&mut self) {
        self.i = self.s.len() - self.rest().trim_start().len();
    }

    fn error(&self, expected: &str) -> String {
        format!(
            "invalid JSON path list `{}`: expected {expected} at byte {} (paths start with `$` and go on with `.name`, `['name']`, `[3]`, `[*]`, `.*` or `..name`)",
            self.s, self.i
        )
    }

    fn path(&mut self) -> Result<Vec<Seg>, String> {
        if !self.eat("$") {
            return Err(self.error("`$`"));
        }
        let mut segs = Vec::new();
        loop {
            if self.eat("..") {
                let name = if self.rest().starts_with('[') {
                    self.eat("[");
                    let name = self.quoted()?;
                    self.close()?;
                    name
                } else {
                    self.name()?
                };
                segs.push(Seg::Descend(name));
            } else if self.eat(".") {
                if self.eat("*") {
                    segs.push(Seg::Any);
                } else {
                    segs.push(Seg::Key(self.name()?));
                }
            } else if self.eat("[") {
                if self.eat("*") {
                    segs.push(Seg::Any);
                } else if self.rest().starts_with(|c: char| c.is_ascii_digit()) {
                    let n = self.rest().bytes().take_while(u8::is_ascii_digit).count();
                    let index = self.rest()[..n]
                        .parse()
                        .map_err(|_| self.error("an index that fits"))?;
                    self.i += n;
                    segs.push(Seg::Index(index));
                } else {
                    segs.push(Seg::Key(self.quoted()?));
                }
                self.close()?;
            } else {
                return Ok(segs);
            }
        }
    }

    fn close(&mut self) -> Result<(), String> {
        if self.eat("]") {
            Ok(())
        } else {
            Err(self.error("`]`"))
        }
    }

    /// A member name after `.`: up to the next `.`, `[`, `,` or space.
    fn name(&mut self) -> Result<String, String> {
        let n = self
            .rest()
            .find(|c: char| {
                matches!(c, '.' | '[' | ']' | ',' | '\'' | '"' | '*') || c.is_whitespace()
            })
            .unwrap_or(self.rest().len());
        if n == 0 {
            return Err(self.error("a member name"));
        }
        let name = self.rest()[..n].to_string();
        self.i += n;
        Ok(name)
    }

    /// `'name'` or `"name"`, with `\` escaping the quote and itself.
    fn quoted(&mut self) -> Result<String, String> {
        let Some(quote) = self
            .rest()
            .chars()
            .next()
            .filter(|c| matches!(c, '\'' | '"'))
        else {
            return Err(self.error("an index, `*` or a quoted name"));
        };
        self.i += 1;
        let mut name = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) if e == quote || e == '\\' => name.push(e),
                    _ => {
                        self.i += at;
                        return Err(self.error("`\\'`, `\\\"` or `\\\\`"));
                    }
                },
                c if c == quote => {
                    self.i += at + 1;
                    return Ok(name);
                }
                c => name.push(c),
            }
        }
        self.i = self.s.len();
        Err(self.error("a closing quote"))
    }
}

fn matches(pat: &[Seg], path: &[Step]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((Seg::Descend(name), rest)) => (0..path.len())
            .any(|i| matches!(path[i], Step::Key(k) if k == name) && matches(rest, &path[i + 1..])),
        Some((seg, rest)) => {
            let here = match (seg, path.first()) {
                (Seg::Any, Some(_)) => true,
                (Seg::Key(k), Some(Step::Key(p))) => k == p,
                (Seg::Index(i), Some(Step::Index(p))) => i == p,
                _ => false,
            };
            here && matches(rest, &path[1..])
        }
    }
}

/// A concrete path as reported.
fn render(path: &[Step]) -> String {
    let mut out = String::from("$");
    for step in path {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => push_key(&mut out, k),
        }
    }
    out
}

/// Appends member `key` to a path in the reported syntax: `.key` for an identifier,
/// `['key']` (with `'` and `\` escaped) for anything else. The report reads paths back
/// in this syntax, so it builds them with this too.
pub fn push_key(out: &mut String, key: &str) {
    if is_identifier(key) {
        out.push('.');
        out.push_str(key);
        return;
    }
    out.push_str("['");
    for c in key.chars() {
        if matches!(c, '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("']");
}

fn is_identifier(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Appends the differences between two JSON values to `out`, at most `max` of them;
/// returns whether there were more (the walk stops at the first one beyond `max`).
///
/// Objects are compared member by member (in key order, for a stable output), arrays
/// element by element (extra elements are added or removed), numbers by value (`1` equals
/// `1.0`). A member or element present on one side only is one difference holding its
/// whole value, and so is a value whose type differs between the sides.
pub fn diff(
    production: &Value,
    staging: &Value,
    ignore: &JsonPaths,
    out: &mut Vec<Difference>,
    max: usize,
) -> bool {
    let mut w = Walk {
        ignore,
        out,
        room: max,
        cut: false,
        path: Vec::new(),
    };
    w.node(Some(production), Some(staging));
    w.cut
}

struct Walk<'v, 'o> {
    ignore: &'o JsonPaths,
    out: &'o mut Vec<Difference>,
    room: usize,
    cut: bool,
    path: Vec<Step<'v>>,
}

impl<'v> Walk<'v, '_> {
    fn node(&mut self, p: Option<&'v Value>, s: Option<&'v Value>) {
        if self.cut || (!self.ignore.is_empty() && self.ignore.matches(&self.path)) {
            return;
        }
        match (p, s) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => self.object(a, b),
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                for i in 0..a.len().max(b.len()) {
                    self.path.push(Step::Index(i));
                    self.node(a.get(i), b.get(i));
                    self.path.pop();
                }
            }
            (Some(a), Some(b)) if scalar_eq(a, b) => {}
            (Some(a), Some(b)) => self.push(Change::Changed, Some(a), Some(b)),
            (Some(a), None) => self.push(Change::Removed, Some(a), None),
            (None, Some(b)) => self.push(Change::Added, None, Some(b)),
            (None, None) => {}
        }
    }

    fn object(&mut self, a: &'v Map<String, Value>, b: &'v Map<String, Value>) {
        let keys: BTreeSet<&'v String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            self.path.push(Step::Key(k));
            self.node(a.get(k), b.get(k));
            self.path.pop();
        }
    }

    fn push(&mut self, change: Change, p: Option<&Value>, s: Option<&Value>) {
        if self.room == 0 {
            self.cut = true;
            return;
        }
        self.room -= 1;
        self.out.push(Difference::Json {
            path: render(&self.path),
            change,
            production: p.cloned(),
            staging: s.cloned(),
        });
    }
}

/// Equality of two values that are not both objects or both arrays (those are walked).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        _ => a == b,
    }
}

/// Integers exactly, and by their float value when either is a float (`1 == 1.0`).
fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    if x.is_f64() || y.is_f64() {
        return x.as_f64() == y.as_f64();
    }
    // One negative, the other above i64::MAX.
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(p: Value, s: Value, ignore: &str, max: usize) -> (Vec<Value>, bool) {
        let ignore = JsonPaths::parse(ignore).unwrap();
        let mut out = Vec::new();
        let cut = diff(&p, &s, &ignore, &mut out, max);
        (out.iter().map(Difference::to_json).collect(), cut)
    }

    fn d(path: &str, change: &str, p: Value, s: Value) -> Value {
        json!({"kind": "json", "path": path, "change": change, "production": p, "staging": s})
    }

    #[test]
    fn leaves_that_differ_are_reported_by_path() {
        let p = json!({"user": {"name": "ann", "tags": ["a", "b"]}, "gone": 1, "same": [1, {"x": null}]});
        let s = json!({"same": [1, {"x": null}], "user": {"tags": ["a", "c", "d"], "name": "bob"}, "new": {"k": true}});
        let (got, cut) = run(p, s, "", 50);
        assert!(!cut);
        assert_eq!(
            got,
            [
                d("$.gone", "removed", json!(1), Value::Null),
                d("$.new", "added", Value::Null, json!({"k": true})),
                d("$.user.name", "changed", json!("ann"), json!("bob")),
                d("$.user.tags[1]", "changed", json!("b"), json!("c")),
                d("$.user.tags[2]", "added", Value::Null, json!("d")),
            ]
        );
    }

    #[test]
    fn numbers_compare_by_value_and_types_change_at_the_node() {
        let (got, _) = run(
            json!({"a": 1, "b": 2.5, "c": -0.0, "d": 1e2}),
            json!({"a": 1.0, "b": 2.5, "c": 0, "d": 100}),
            "",
            50,
        );
        assert!(got.is_empty(), "{got:?}");
        let (got, _) = run(
            json!({"a": 1, "b": u64::MAX}),
            json!({"a": 2, "b": -1}),
            "",
            50,
        );
        assert_eq!(got.len(), 2);
        let (got, _) = run(json!({"a": {"x": 1}}), json!({"a": [1]}), "", 50);
        assert_eq!(got, [d("$.a", "changed", json!({"x": 1}), json!([1]))]);
        let (got, _) = run(json!({"a": "1"}), json!({"a": 1}), "", 50);
        assert_eq!(got, [d("$.a", "changed", json!("1"), json!(1))]);
        let (got, _) = run(json!([1]), json!({"0": 1}), "", 50);
        assert_eq!(got, [d("$", "changed", json!([1]), json!({"0": 1}))]);
    }

    #[test]
    fn ignored_paths_are_skipped() {
        let p = json!({"timestamp": 1, "items": [{"id": 1, "price": 5}, {"id": 2, "price": 6}], "meta": {"deep": {"id": "a"}}});
        let s = json!({"timestamp": 2, "items": [{"id": 8, "price": 5}, {"id": 9, "price": 7}], "meta": {"deep": {"id": "b"}}});
        let (got, _) = run(p.clone(), s.clone(), "$.timestamp, $.items[*].id", 50);
        assert_eq!(
            got,
            [
                d("$.items[1].price", "changed", json!(6), json!(7)),
                d("$.meta.deep.id", "changed", json!("a"), json!("b")),
            ]
        );
        let (got, _) = run(
            p.clone(),
            s.clone(),
            "$..id,$['timestamp'],$.items[1].price",
            50,
        );
        assert!(got.is_empty(), "{got:?}");
        let (got, _) = run(p.clone(), s.clone(), "$.*", 50);
        assert!(got.is_empty(), "{got:?}");
        let (got, _) = run(p.clone(), s.clone(), "$", 50);
        assert!(got.is_empty(), "{got:?}");
        // `..name` matches members only, not the root, and at any depth.
        let (got, _) = run(p, s, "$.meta..id", 50);
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn odd_keys_are_quoted_in_paths_and_in_patterns() {
        let p = json!({"a b": 1, "it's": 1, "1st": 1, "ok_2": 1, "": 1, "x.y": 1});
        let s = json!({"a b": 2, "it's": 2, "1st": 2, "ok_2": 2, "": 2, "x.y": 2});
        let (got, _) = run(p.clone(), s.clone(), "", 50);
        let paths: Vec<&str> = got.iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "$['']",
                "$['1st']",
                "$['a b']",
                "$['it\\'s']",
                "$.ok_2",
                "$['x.y']"
            ]
        );
        // The reported paths parse back and select what they name.
        let (got, _) = run(p, s, &paths.join(","), 50);
        assert!(got.is_empty(), "{got:?}");
        let l = JsonPaths::parse(r#"$["a,b"], $..['c d']"#).unwrap();
        assert_eq!(
            l.paths,
            [
                vec![Seg::Key("a,b".into())],
                vec![Seg::Descend("c d".into())]
            ]
        );
    }

    #[test]
    fn the_walk_stops_after_max_differences() {
        let p = json!([1, 2, 3, 4, 5]);
        let s = json!([0, 0, 0, 0, 0]);
        let (got, cut) = run(p.clone(), s.clone(), "", 3);
        assert_eq!((got.len(), cut), (3, true));
        assert_eq!(got[2]["path"], "$[2]");
        let (got, cut) = run(p.clone(), s, "", 5);
        assert_eq!((got.len(), cut), (5, false));
        let (got, cut) = run(p.clone(), p, "", 0);
        assert_eq!((got.len(), cut), (0, false));
    }

    #[test]
    fn bad_paths_are_refused_with_the_place() {
        for (list, at) in [
            ("timestamp", "expected `$` at byte 0"),
            ("$.a,b", "expected `$` at byte 4"),
            ("$.a[?(@.x)]", "an index, `*` or a quoted name at byte 4"),
            ("$.a[1:2]", "expected `]` at byte 5"),
            ("$['a]", "a closing quote"),
            ("$.", "a member name at byte 2"),
            ("$.a b", "`,` between paths at byte 4"),
            ("$..*", "a member name at byte 3"),
        ] {
            let e = JsonPaths::parse(list).unwrap_err();
            assert!(e.contains(at), "{list}: {e}");
        }
        assert!(JsonPaths::parse(" ").unwrap().is_empty());
    }
}
