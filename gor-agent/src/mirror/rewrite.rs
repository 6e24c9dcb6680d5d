//! Builds the bytes sent to staging from a captured request, changing as little as
//! possible: the request line and every header line are copied byte for byte (order, case,
//! duplicates, line endings), except the `Host` header value (unless the original host is
//! kept), headers overridden by `set_headers`, and the base path prefixed to the request
//! target (or the target replaced by the target URL's fixed path, GoReplay's way). The body is copied untouched, so Content-Length and chunked framing stay valid.
//! The editing itself is the filters' ([`crate::http::edit::HeadEdit`]); this module only
//! decides what changes.

use crate::http::edit::HeadEdit;

/// How one target changes requests.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    /// New `Host` value; `None` keeps the client's.
    pub host: Option<String>,
    /// Prefix for the request target, without a trailing slash; empty for none.
    pub base_path: String,
    /// Replaces the request target (origin and absolute forms) when set.
    pub fixed_target: Option<String>,
    /// Each replaces the first header of that name (keeping its position and name
    /// spelling), or is appended after the last header.
    pub set_headers: Vec<(String, String)>,
}

/// The request bytes for staging, or `None` when the head is not a well-formed request
/// head (the framer only emits well-formed ones, so this is a defensive check).
pub(crate) fn build_request(raw: &[u8], body_offset: usize, rw: &Rewrite) -> Option<Vec<u8>> {
    let mut edit = HeadEdit::new(raw, body_offset).ok()?;
    let mut target = Vec::with_capacity(edit.target().len() + rw.base_path.len());
    write_target(&mut target, edit.target().as_bytes(), rw);
    // The original target passed the head parser, so it is ASCII, and so are the base
    // path and the host (checked when the target was parsed).
    edit.set_target(String::from_utf8(target).ok()?);
    // Each set header takes the first header of its name that no earlier one took, so
    // two entries of one name replace its first two headers; `Host` is rewritten in the
    // first `Host` header left.
    let mut taken = Vec::new();
    for (name, value) in &rw.set_headers {
        match first_free(&edit, &taken, name) {
            Some(i) => {
                edit.set_value(i, value.as_bytes().to_vec());
                taken.push(i);
            }
            None => taken.push(edit.append(name, value.as_bytes())),
        }
    }
    if let Some(host) = &rw.host {
        if let Some(i) = first_free(&edit, &taken, "host") {
            edit.set_value(i, host.as_bytes().to_vec());
        }
    }
    Some(edit.into_bytes().0)
}

/// The first header named `name` not in `taken`.
fn first_free(edit: &HeadEdit<'_>, taken: &[usize], name: &str) -> Option<usize> {
    edit.find(name).into_iter().find(|i| !taken.contains(i))
}

/// Origin form (`/p?q`) gets the base path prefixed. Absolute form (`http://a/p`, sent to
/// proxies) gets the base path after the authority, and the authority replaced by the
/// target host when `Host` is rewritten, since servers then ignore `Host` (RFC 9112 §3.2.2).
/// Asterisk and authority forms are copied as they are.
fn write_target(out: &mut Vec<u8>, target: &[u8], rw: &Rewrite) {
    if let Some(fixed) = &rw.fixed_target {
        if target.starts_with(b"/") || absolute_scheme_len(target).is_some() {
            out.extend_from_slice(fixed.as_bytes());
            return;
        }
    }
    let base = rw.base_path.as_bytes();
    if target.starts_with(b"/") {
        out.extend_from_slice(base);
        out.extend_from_slice(target);
        return;
    }
    let Some(scheme_end) = absolute_scheme_len(target) else {
        out.extend_from_slice(target);
        return;
    };
    let after = &target[scheme_end..];
    let auth_len = after
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after.len());
    out.extend_from_slice(&target[..scheme_end]);
    match &rw.host {
        Some(h) => out.extend_from_slice(h.as_bytes()),
        None => out.extend_from_slice(&after[..auth_len]),
    }
    out.extend_from_slice(base);
    out.extend_from_slice(&after[auth_len..]);
}

/// Length of `http://` or `https://` (any case) at the start of `target`.
fn absolute_scheme_len(target: &[u8]) -> Option<usize> {
    [&b"http://"[..], &b"https://"[..]]
        .into_iter()
        .find(|p| target.len() >= p.len() && target[..p.len()].eq_ignore_ascii_case(p))
        .map(<[u8]>::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(host: Option<&str>, base: &str, set: &[(&str, &str)]) -> Rewrite {
        Rewrite {
            host: host.map(str::to_string),
            base_path: base.to_string(),
            fixed_target: None,
            set_headers: set
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn build(raw: &[u8], rw: &Rewrite) -> String {
        let body_offset = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or_else(
            || raw.windows(2).position(|w| w == b"\n\n").unwrap() + 2,
            |i| i + 4,
        );
        String::from_utf8(build_request(raw, body_offset, rw).unwrap()).unwrap()
    }

    #[test]
    fn replaces_host_only() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nhOsT: prod\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        assert_eq!(
            build(raw, &rw(Some("stg:1"), "", &[])),
            "GET /a?b=1 HTTP/1.1\r\nhOsT: stg:1\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        );
        assert_eq!(build(raw, &rw(None, "", &[])), String::from_utf8_lossy(raw));
    }

    #[test]
    fn set_headers_replace_first_in_place_or_append() {
        let raw = b"POST / HTTP/1.1\r\nHost: p\r\nx-a: 1\r\nX-A: 2\r\nContent-Length: 3\r\n\r\nabc";
        let out = build(raw, &rw(Some("s"), "", &[("X-A", "9"), ("X-New", "v")]));
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: s\r\nx-a: 9\r\nX-A: 2\r\nContent-Length: 3\r\nX-New: v\r\n\r\nabc"
        );
        // A set Host wins over the target host.
        let out = build(raw, &rw(Some("s"), "", &[("host", "h2")]));
        assert!(
            out.starts_with("POST / HTTP/1.1\r\nHost: h2\r\nx-a: 1"),
            "{out}"
        );
    }

    #[test]
    fn base_path_and_absolute_form() {
        let raw = b"GET /p?q HTTP/1.1\r\nHost: p\r\n\r\n";
        assert!(build(raw, &rw(None, "/base", &[])).starts_with("GET /base/p?q HTTP/1.1\r\n"));
        let raw = b"GET http://prod:81/p HTTP/1.1\r\nHost: prod:81\r\n\r\n";
        assert!(build(raw, &rw(Some("s:2"), "/b", &[]))
            .starts_with("GET http://s:2/b/p HTTP/1.1\r\nHost: s:2\r\n"));
        assert!(build(raw, &rw(None, "", &[])).starts_with("GET http://prod:81/p HTTP/1.1\r\n"));
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: p\r\n\r\n";
        assert!(build(raw, &rw(None, "/b", &[])).starts_with("OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn a_fixed_target_replaces_origin_and_absolute_forms() {
        let mut r = rw(Some("s"), "", &[]);
        r.fixed_target = Some("/api?x=1".into());
        let raw = b"GET /p?q HTTP/1.1\r\nHost: p\r\n\r\n";
        assert!(build(raw, &r).starts_with("GET /api?x=1 HTTP/1.1\r\nHost: s\r\n"));
        let raw = b"POST http://prod:81/p HTTP/1.1\r\nHost: prod:81\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(
            build(raw, &r),
            "POST /api?x=1 HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n\r\nx"
        );
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: p\r\n\r\n";
        assert!(build(raw, &r).starts_with("OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn bare_lf_and_folded_lines() {
        let raw = b"GET / HTTP/1.0\nHost: p\n  folded\nA: b\n\n";
        assert_eq!(
            build(raw, &rw(Some("s"), "", &[("Z", "1")])),
            "GET / HTTP/1.0\nHost: s\nA: b\nZ: 1\n\n"
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        let r = rw(None, "", &[]);
        assert!(build_request(b"GET / HTTP/1.1\r\nHost: p\r\n", 100, &r).is_none());
        assert!(build_request(b"GET / HTTP/1.1\r\nHost: p\r\n", 25, &r).is_none());
        assert!(build_request(b"GET\r\n\r\n", 7, &r).is_none());
        assert!(build_request(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n", 27, &r).is_none());
    }

    #[test]
    fn repeated_set_headers_take_one_header_each() {
        let raw = b"GET / HTTP/1.1\r\nX-A: 1\r\nHost: p\r\n\r\n";
        let set = [("x-a", "8"), ("X-A", "9"), ("X-B", "1"), ("X-B", "2")];
        assert_eq!(
            build(raw, &rw(Some("s"), "", &set)),
            "GET / HTTP/1.1\r\nX-A: 8\r\nHost: s\r\nX-A: 9\r\nX-B: 1\r\nX-B: 2\r\n\r\n"
        );
    }

    #[test]
    fn replaced_values_keep_the_whitespace_around_them() {
        // The one head editor changes the value only, as the filters always did.
        let raw = b"GET / HTTP/1.1\r\nHost:prod  \r\n\r\n";
        assert_eq!(
            build(raw, &rw(Some("s"), "", &[])),
            "GET / HTTP/1.1\r\nHost:s  \r\n\r\n"
        );
    }
}
