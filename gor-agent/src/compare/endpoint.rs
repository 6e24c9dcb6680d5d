//! Endpoint names for per-endpoint counts: the method and the path with the parts that
//! vary per resource (ids, UUIDs, hashes) replaced by placeholders, so that
//! `GET /users/7/orders` and `GET /users/42/orders` count as one endpoint.

use std::collections::HashSet;
use std::sync::Arc;

/// The endpoint name of a request: `method` + `" "` + the path of `target` without query
/// or fragment, each path segment that is all digits replaced by `{n}`, a UUID by
/// `{uuid}` and a hex string of at least 16 characters with a digit in it by `{hex}`.
/// Absolute-form targets (`http://host/p`) contribute their path, an empty path is `/`;
/// the asterisk and authority forms (`OPTIONS *`, `CONNECT host:443`) are kept as they are.
pub fn normalise(method: &str, target: &str) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let mut path = &target[..end];
    if let Some(scheme_end) = path.find("://") {
        let rest = &path[scheme_end + 3..];
        path = rest.find('/').map_or("", |slash| &rest[slash..]);
    } else if !path.starts_with('/') && !path.is_empty() {
        return format!("{method} {path}");
    }
    if path.is_empty() {
        return format!("{method} /");
    }
    let mut out = String::with_capacity(method.len() + 1 + path.len());
    out.push_str(method);
    out.push(' ');
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(placeholder(segment).unwrap_or(segment));
    }
    out
}

fn placeholder(segment: &str) -> Option<&'static str> {
    let b = segment.as_bytes();
    if b.is_empty() {
        None
    } else if b.iter().all(u8::is_ascii_digit) {
        Some("{n}")
    } else if is_uuid(b) {
        Some("{uuid}")
    } else if b.len() >= 16
        && b.iter().all(u8::is_ascii_hexdigit)
        && b.iter().any(u8::is_ascii_digit)
    {
        // The digit keeps long words made of the letters a-f (`acceptedfeedback`) as they are.
        Some("{hex}")
    } else {
        None
    }
}

/// 8-4-4-4-12 hex digits, any case.
fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The name every endpoint beyond the bound is counted under.
pub const OTHER: &str = "other";

/// A bounded set of endpoint names: traffic with unbounded distinct paths (a path segment
/// the placeholders do not catch) cannot grow the per-endpoint counts without end.
#[derive(Debug)]
pub struct Endpoints {
    known: HashSet<Arc<str>>,
    max: usize,
    other: Arc<str>,
}

impl Endpoints {
    /// At most `max` distinct names; the requests of any further endpoint are `"other"`.
    pub fn new(max: usize) -> Self {
        Endpoints {
            known: HashSet::new(),
            max,
            other: Arc::from(OTHER),
        }
    }

    /// The endpoint name of a request ([`normalise`]), or `"other"` when `max` names are
    /// already known and this is not one of them.
    pub fn name(&mut self, method: &str, target: &str) -> Arc<str> {
        let name = normalise(method, target);
        if let Some(known) = self.known.get(name.as_str()) {
            return known.clone();
        }
        if self.known.len() >= self.max {
            return self.other.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.known.insert(name.clone());
        name
    }

    /// How many distinct names are known (not counting `"other"`).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_replaces_ids_and_drops_the_query() {
        let cases = [
            ("GET", "/users/42/orders?x=1", "GET /users/{n}/orders"),
            ("GET", "/", "GET /"),
            ("GET", "", "GET /"),
            ("GET", "?a=1", "GET /"),
            ("POST", "/a/b#frag", "POST /a/b"),
            ("GET", "http://example.com/users/7?x", "GET /users/{n}"),
            ("GET", "http://example.com", "GET /"),
            ("GET", "https://example.com?x=1", "GET /"),
            (
                "DELETE",
                "/items/123E4567-e89b-12d3-A456-426614174000",
                "DELETE /items/{uuid}",
            ),
            // Not a UUID: one digit short.
            (
                "GET",
                "/items/123e4567-e89b-12d3-a456-42661417400",
                "GET /items/123e4567-e89b-12d3-a456-42661417400",
            ),
            ("GET", "/blob/0123456789abcdef0123", "GET /blob/{hex}"),
            ("GET", "/blob/0123456789ABCDEF", "GET /blob/{hex}"),
            // Too short for a hash, or no digit in it: a word.
            ("GET", "/blob/0123456789abcde", "GET /blob/0123456789abcde"),
            (
                "GET",
                "/w/acceptedfeedbackface",
                "GET /w/acceptedfeedbackface",
            ),
            ("GET", "/a//b/", "GET /a//b/"),
            ("GET", "/v1/12345678901234567890", "GET /v1/{n}"),
            ("OPTIONS", "*", "OPTIONS *"),
            ("CONNECT", "example.com:443", "CONNECT example.com:443"),
        ];
        for (method, target, want) in cases {
            assert_eq!(normalise(method, target), want, "{method} {target}");
        }
    }

    #[test]
    fn endpoints_are_bounded_and_known_names_stay_named() {
        let mut e = Endpoints::new(2);
        assert_eq!(&*e.name("GET", "/a/1"), "GET /a/{n}");
        assert_eq!(&*e.name("GET", "/b"), "GET /b");
        assert_eq!(&*e.name("GET", "/c"), "other");
        assert_eq!(&*e.name("POST", "/b"), "other");
        // A name known before the bound was reached keeps its name, and shares its Arc.
        let a = e.name("GET", "/a/2");
        assert_eq!(&*a, "GET /a/{n}");
        assert!(Arc::ptr_eq(&a, &e.name("GET", "/a/3?q")));
        assert!(Arc::ptr_eq(&e.name("GET", "/x"), &e.name("GET", "/y")));
        assert_eq!(e.len(), 2);
        assert_eq!(&*Endpoints::new(0).name("GET", "/"), "other");
    }
}
