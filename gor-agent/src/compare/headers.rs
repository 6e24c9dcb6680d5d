//! Header comparison: the headers that differ between production's and staging's
//! responses, less the ones that differ on every exchange (dates, ids, framing).

use std::collections::{BTreeMap, BTreeSet};

use super::Difference;
use crate::http::token::is_token;
use crate::http::Headers;

/// The headers ignored by default: those that change per response (`Date`, `ETag`, ...),
/// per server (`Server`), per hop (`Connection`, `Keep-Alive`), and the framing and coding
/// headers, since bodies are compared decoded. `Set-Cookie` is special (see
/// [`IgnoreHeaders`]).
pub const DEFAULT_IGNORE: &str = "Date,Server,ETag,Last-Modified,Expires,Age,Set-Cookie,X-Request-Id,Content-Length,Transfer-Encoding,Content-Encoding,Connection,Keep-Alive";

/// The headers left out of the comparison. Every listed header is ignored entirely, but
/// `Set-Cookie`, of which only the values are: the cookie names (before the `=` of each
/// value) are still compared, as a sorted multiset, so a cookie staging forgets to set is
/// found while session ids are not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoreHeaders {
    /// Lowercase names.
    names: BTreeSet<String>,
}

impl IgnoreHeaders {
    /// Comma-separated header names, in any case; `default` stands for [`DEFAULT_IGNORE`]
    /// (`default,X-Trace` adds one). An empty list ignores nothing.
    pub fn parse(list: &str) -> Result<IgnoreHeaders, String> {
        let mut names = BTreeSet::new();
        let mut bad = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item.eq_ignore_ascii_case("default") {
                names.extend(DEFAULT_IGNORE.split(',').map(str::to_ascii_lowercase));
            } else if is_token(item.as_bytes()) {
                names.insert(item.to_ascii_lowercase());
            } else {
                bad.push(format!("`{item}`"));
            }
        }
        if bad.is_empty() {
            Ok(IgnoreHeaders { names })
        } else {
            Err(format!(
                "invalid header name {} (expected comma-separated header names, or `default` for {DEFAULT_IGNORE})",
                bad.join(", ")
            ))
        }
    }

    /// Ignores nothing.
    pub fn none() -> IgnoreHeaders {
        IgnoreHeaders {
            names: BTreeSet::new(),
        }
    }

    /// Whether `name` (any case) is listed.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }
}

impl Default for IgnoreHeaders {
    fn default() -> Self {
        IgnoreHeaders::parse(DEFAULT_IGNORE).expect("the default list parses")
    }
}

/// Appends one [`Difference::Header`] per header name (lowercase, sorted) whose values
/// (trimmed, lossy UTF-8, in order) differ, or which is present on one side only.
pub fn diff(
    production: Headers<'_>,
    staging: Headers<'_>,
    ignore: &IgnoreHeaders,
    out: &mut Vec<Difference>,
) {
    let p = values(production, ignore);
    let mut s = values(staging, ignore);
    let mut found = Vec::new();
    for (name, p_values) in p {
        let s_values = s.remove(&name);
        if s_values.as_ref() != Some(&p_values) {
            found.push((name, Some(p_values), s_values));
        }
    }
    found.extend(s.into_iter().map(|(name, v)| (name, None, Some(v))));
    found.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(
        found
            .into_iter()
            .map(|(name, production, staging)| Difference::Header {
                name,
                production,
                staging,
            }),
    );
}

/// The values of each header not ignored, by lowercase name.
fn values(headers: Headers<'_>, ignore: &IgnoreHeaders) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let cookie_names = ignore.contains("set-cookie");
    for (name, value) in headers.iter() {
        let name = name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        let value = if name == "set-cookie" && cookie_names {
            value.split_once('=').map_or(value, |(n, _)| n).trim()
        } else if ignore.names.contains(&name) {
            continue;
        } else {
            value
        };
        map.entry(name).or_default().push(value.to_string());
    }
    if cookie_names {
        if let Some(names) = map.get_mut("set-cookie") {
            names.sort();
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::OwnedHeaders;

    fn run(p: &[(&str, &str)], s: &[(&str, &str)], ignore: &IgnoreHeaders) -> Vec<Difference> {
        let mut out = Vec::new();
        let (p, s) = (OwnedHeaders::of(p), OwnedHeaders::of(s));
        diff(p.view(), s.view(), ignore, &mut out);
        out
    }

    fn header(name: &str, p: Option<&[&str]>, s: Option<&[&str]>) -> Difference {
        let list = |v: Option<&[&str]>| v.map(|v| v.iter().map(|s| s.to_string()).collect());
        Difference::Header {
            name: name.into(),
            production: list(p),
            staging: list(s),
        }
    }

    #[test]
    fn default_noise_is_ignored_and_an_extra_header_is_found() {
        let p = [
            ("Date", "Mon, 01 Dec 2025 10:00:00 GMT"),
            ("Server", "nginx"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "10"),
            ("ETag", "\"a\""),
            ("Connection", "keep-alive"),
        ];
        let s = [
            ("date", "Mon, 01 Dec 2025 10:00:01 GMT"),
            ("server", "staging"),
            ("content-type", " text/plain "),
            ("Transfer-Encoding", "chunked"),
            ("Content-Encoding", "gzip"),
            ("X-Extra", "1"),
            ("X-Request-Id", "abc"),
        ];
        let d = IgnoreHeaders::default();
        assert_eq!(run(&p, &s, &d), [header("x-extra", None, Some(&["1"]))]);
        // With nothing ignored, every difference shows, sorted by name.
        let names: Vec<String> = run(&p, &s, &IgnoreHeaders::parse("").unwrap())
            .into_iter()
            .map(|d| match d {
                Difference::Header { name, .. } => name,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "connection",
                "content-encoding",
                "content-length",
                "date",
                "etag",
                "server",
                "transfer-encoding",
                "x-extra",
                "x-request-id"
            ]
        );
    }

    #[test]
    fn names_are_case_insensitive_and_value_lists_keep_order() {
        let d = IgnoreHeaders::default();
        assert!(run(
            &[("X-A", "1"), ("x-a", "2")],
            &[("x-A", "1"), ("X-a", "2")],
            &d
        )
        .is_empty());
        assert_eq!(
            run(
                &[("X-A", "1"), ("X-A", "2")],
                &[("x-a", "2"), ("x-a", "1")],
                &d
            ),
            [header("x-a", Some(&["1", "2"]), Some(&["2", "1"]))]
        );
        assert_eq!(
            run(&[("Vary", "Accept")], &[], &d),
            [header("vary", Some(&["Accept"]), None)]
        );
    }

    #[test]
    fn set_cookie_values_are_ignored_but_names_compared() {
        let d = IgnoreHeaders::default();
        let p = [
            ("Set-Cookie", "sid=abc; Path=/"),
            ("Set-Cookie", "theme=dark"),
        ];
        let same_names = [
            ("set-cookie", "theme=light"),
            ("set-cookie", "sid=xyz; HttpOnly"),
        ];
        assert!(run(&p, &same_names, &d).is_empty());
        let missing = [("set-cookie", "sid=xyz")];
        assert_eq!(
            run(&p, &missing, &d),
            [header(
                "set-cookie",
                Some(&["sid", "theme"]),
                Some(&["sid"])
            )]
        );
        assert_eq!(
            run(&p, &[], &d),
            [header("set-cookie", Some(&["sid", "theme"]), None)]
        );
        // Not ignored: the values count.
        let none = IgnoreHeaders::none();
        assert_eq!(run(&p, &same_names, &none).len(), 1);
    }

    #[test]
    fn parse_lists() {
        let l = IgnoreHeaders::parse(" x-trace , DEFAULT ,").unwrap();
        assert!(l.contains("X-Trace") && l.contains("date") && l.contains("KEEP-ALIVE"));
        let l = IgnoreHeaders::parse("Date").unwrap();
        assert!(l.contains("date") && !l.contains("server"));
        assert_eq!(IgnoreHeaders::parse("  ").unwrap(), IgnoreHeaders::none());
        let e = IgnoreHeaders::parse("Date,bad name,x:y").unwrap_err();
        assert!(
            e.starts_with("invalid header name `bad name`, `x:y` (expected"),
            "{e}"
        );
    }
}
