//! Builds the bytes sent to staging from a captured request, changing as little as
//! possible: the request line and every header line are copied byte for byte (order, case,
//! duplicates, line endings), except the `Host` header value (unless the original host is
//! kept), headers overridden by `set_headers`, and the base path prefixed to the request
//! target. The body is copied untouched, so Content-Length and chunked framing stay valid.

/// How one target changes requests.
#[derive(Clone, Debug)]
pub(crate) struct Rewrite {
    /// New `Host` value; `None` keeps the client's.
    pub host: Option<String>,
    /// Prefix for the request target, without a trailing slash; empty for none.
    pub base_path: String,
    /// Each replaces the first header of that name (keeping its position and name
    /// spelling), or is appended after the last header.
    pub set_headers: Vec<(String, String)>,
}

/// The request bytes for staging, or `None` when the head is not a well-formed request
/// head (the framer only emits well-formed ones, so this is a defensive check).
pub(crate) fn build_request(raw: &[u8], body_offset: usize, rw: &Rewrite) -> Option<Vec<u8>> {
    let head = raw.get(..body_offset)?;
    let body = &raw[body_offset..];
    let mut lines = split_lines(head);
    let request_line = lines.next()?;
    let mut out = Vec::with_capacity(raw.len() + rw.base_path.len() + 64);
    write_request_line(&mut out, request_line, rw)?;
    let mut applied = vec![false; rw.set_headers.len()];
    let mut host_done = rw.host.is_none();
    // True while the lines being read continue a header we replaced (obs-fold).
    let mut skipping_fold = false;
    let mut end_line = None;
    for line in lines {
        let content = trim_eol(line);
        if content.is_empty() {
            end_line = Some(line);
            break;
        }
        if matches!(content[0], b' ' | b'\t') {
            if !skipping_fold {
                out.extend_from_slice(line);
            }
            continue;
        }
        let name = &content[..content.iter().position(|&b| b == b':')?];
        let eol = &line[content.len()..];
        skipping_fold = false;
        if let Some(i) = first_unapplied(&rw.set_headers, &applied, name) {
            applied[i] = true;
            push_header(&mut out, name, rw.set_headers[i].1.as_bytes(), eol);
            skipping_fold = true;
        } else if !host_done && name.eq_ignore_ascii_case(b"host") {
            host_done = true;
            let host = rw.host.as_deref().unwrap_or_default();
            push_header(&mut out, name, host.as_bytes(), eol);
            skipping_fold = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    let end_line = end_line?;
    let eol = if end_line.starts_with(b"\r") {
        &b"\r\n"[..]
    } else {
        &b"\n"[..]
    };
    for ((name, value), done) in rw.set_headers.iter().zip(&applied) {
        if !done {
            push_header(&mut out, name.as_bytes(), value.as_bytes(), eol);
        }
    }
    out.extend_from_slice(end_line);
    out.extend_from_slice(body);
    Some(out)
}

/// Lines including their `\n` (a final line without one is yielded as is).
fn split_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split_inclusive(|&b| b == b'\n')
}

/// A line without its `\r\n` or `\n`.
fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn first_unapplied(set: &[(String, String)], applied: &[bool], name: &[u8]) -> Option<usize> {
    set.iter()
        .zip(applied)
        .position(|((n, _), done)| !done && n.as_bytes().eq_ignore_ascii_case(name))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8], eol: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(eol);
}

/// Copies `METHOD SP target SP version EOL`, rewriting only the target.
fn write_request_line(out: &mut Vec<u8>, line: &[u8], rw: &Rewrite) -> Option<()> {
    let content = trim_eol(line);
    let sp1 = content.iter().position(|&b| b == b' ')?;
    let sp2 = content.iter().rposition(|&b| b == b' ')?;
    if sp2 <= sp1 {
        return None;
    }
    out.extend_from_slice(&line[..=sp1]);
    write_target(out, &content[sp1 + 1..sp2], rw);
    out.extend_from_slice(&line[sp2..]);
    Some(())
}

/// Origin form (`/p?q`) gets the base path prefixed. Absolute form (`http://a/p`, sent to
/// proxies) gets the base path after the authority, and the authority replaced by the
/// target host when `Host` is rewritten, since servers then ignore `Host` (RFC 9112 §3.2.2).
/// Asterisk and authority forms are copied as they are.
fn write_target(out: &mut Vec<u8>, target: &[u8], rw: &Rewrite) {
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
}
