//! Following staging's redirects (`--redirects N`, GoReplay's `--output-http-redirects`):
//! given the request a lane sent and a 3xx response with a `Location`, builds the request
//! that follows it, as Go's HTTP client (GoReplay's) would send it. No IO here; the lane
//! sends the follow-up ([`super::lane`]).
//!
//! What follows what, as Go does: 301, 302 and 303 are followed with GET and no body (a
//! HEAD stays HEAD); 307 and 308 with the same method and body. Other statuses, and a
//! response without a `Location`, are final.
//!
//! Only Locations on the same target are followed: a relative one, resolved against the
//! request's target (RFC 3986 §5.2), or an absolute one with the target's scheme, host
//! and port. A mirror runs on production hosts, so a redirect that points elsewhere
//! (production itself, a third party) is never sent there: it is [`Follow::Elsewhere`],
//! final, and counted.
//!
//! The follow-up keeps the sent request's head byte for byte but for the method (when it
//! becomes GET), the target (the resolved path and query, in origin form), `Host` (the
//! Location's authority when it was absolute, as Go sets it; kept for a relative one) and,
//! when the body is dropped, `Content-Length` and `Transfer-Encoding`.

use crate::http::edit::HeadEdit;
use crate::http::head::{self, HeadResult};
use crate::stream::Direction;

/// Where a target lives, to tell a Location on it from one elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub tls: bool,
    /// Lowercase; IPv6 in brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of a target: `host` as given in its URL, `addr` its `host:port`.
    pub fn new(tls: bool, host: &str, addr: &str) -> Origin {
        let default = if tls { 443 } else { 80 };
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(default);
        Origin {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        }
    }
}

/// What to do with a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Send this request next: the redirect is followed.
    Request(FollowUp),
    /// A redirect to another host, scheme or port: not followed (the response is final).
    Elsewhere,
    /// Not a redirect to follow (status, no or unusable Location): the response is final.
    No,
}

/// The request that follows a redirect.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FollowUp {
    pub bytes: Vec<u8>,
    /// It is a HEAD (its response has no body).
    pub head: bool,
    /// Its method is idempotent (it may be pipelined behind another).
    pub idempotent: bool,
}

/// The request that follows `status` with `location` after `sent` (the bytes a lane
/// wrote), if it is to be followed.
pub(crate) fn follow(sent: &[u8], status: u16, location: &[u8], origin: &Origin) -> Follow {
    let keep_method = match status {
        301..=303 => false,
        307 | 308 => true,
        _ => return Follow::No,
    };
    let HeadResult::Complete(h) = head::parse(Direction::ClientToServer, sent) else {
        return Follow::No;
    };
    let method = h.method().to_string();
    let Ok(location) = std::str::from_utf8(location) else {
        return Follow::No;
    };
    let Ok(edit) = HeadEdit::new(sent, h.len) else {
        return Follow::No;
    };
    let (target, authority) = match resolve(edit.target(), location.trim(), origin) {
        Resolved::Same { target, authority } => (target, authority),
        Resolved::Elsewhere => return Follow::Elsewhere,
        Resolved::Unusable => return Follow::No,
    };
    let new_method = if keep_method || method == "GET" || method == "HEAD" {
        method.clone()
    } else {
        "GET".to_string()
    };
    let keep_body = keep_method;
    // Without the body, the head alone is edited (the body is not copied).
    let mut edit = match HeadEdit::new(if keep_body { sent } else { &sent[..h.len] }, h.len) {
        Ok(e) => e,
        Err(_) => return Follow::No,
    };
    edit.set_target(target);
    if let Some(authority) = authority {
        edit.set_header("host", authority.as_bytes());
    }
    if !keep_body {
        edit.remove("content-length");
        edit.remove("transfer-encoding");
    }
    let (mut bytes, _) = edit.into_bytes();
    if new_method != method {
        // The method is the first token after any empty lines the request line follows.
        let at = bytes
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(0);
        bytes.splice(at..at + method.len(), new_method.bytes());
    }
    Follow::Request(FollowUp {
        head: new_method == "HEAD",
        idempotent: matches!(
            new_method.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        bytes,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// On the target: the origin-form target, and the authority for `Host` when the
    /// Location was absolute.
    Same {
        target: String,
        authority: Option<String>,
    },
    Elsewhere,
    Unusable,
}

/// Resolves `location` against the request target `base` (origin or absolute form).
fn resolve(base: &str, location: &str, origin: &Origin) -> Resolved {
    // The fragment is the client's business, never sent.
    let location = location.split('#').next().unwrap_or("");
    if location.is_empty() {
        // Go's client does not follow an empty Location either.
        return Resolved::Unusable;
    }
    let base_path = match base_path_and_query(base) {
        Some(p) => p,
        None => return Resolved::Unusable,
    };
    let (rest, authority) = match scheme_of(location) {
        Some((scheme, rest)) => {
            let tls = match scheme.to_ascii_lowercase().as_str() {
                "http" => false,
                "https" => true,
                _ => return Resolved::Elsewhere,
            };
            if tls != origin.tls {
                return Resolved::Elsewhere;
            }
            match rest.strip_prefix("//") {
                Some(r) => split_authority(r),
                None => return Resolved::Unusable,
            }
        }
        None => match location.strip_prefix("//") {
            Some(r) => split_authority(r),
            None => (location, None),
        },
    };
    if let Some(a) = authority {
        if !on_origin(a, origin) {
            return Resolved::Elsewhere;
        }
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let (base_p, base_q) = match base_path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base_path, None),
    };
    let (merged, query) = if authority.is_some() {
        (path.to_string(), query)
    } else if path.is_empty() {
        (base_p.to_string(), query.or(base_q))
    } else if path.starts_with('/') {
        (path.to_string(), query)
    } else {
        let dir = &base_p[..base_p.rfind('/').map_or(0, |i| i + 1)];
        (
            format!("{}{}", if dir.is_empty() { "/" } else { dir }, path),
            query,
        )
    };
    let mut target = remove_dot_segments(&merged);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Resolved::Same {
        target: escape(&target),
        authority: authority.map(str::to_string),
    }
}

/// The path and query of a request target; `None` for `*` and authority forms.
fn base_path_and_query(base: &str) -> Option<&str> {
    if base.starts_with('/') {
        return Some(base);
    }
    let (_, rest) = scheme_of(base)?;
    let (rest, _) = split_authority(rest.strip_prefix("//")?);
    Some(if rest.is_empty() { "/" } else { rest })
}

/// `scheme:rest` when `s` starts with a URI scheme (RFC 3986 §3.1).
fn scheme_of(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

/// Splits `authority/path?query` after `//` into the rest and the authority.
fn split_authority(s: &str) -> (&str, Option<&str>) {
    let end = s.find(['/', '?']).unwrap_or(s.len());
    (&s[end..], Some(&s[..end]))
}

/// Whether `authority` (`host[:port]`) is the target's; userinfo never is.
fn on_origin(authority: &str, origin: &Origin) -> bool {
    if authority.contains('@') {
        return false;
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    let default = if origin.tls { 443 } else { 80 };
    let port = if port.is_empty() {
        Some(default)
    } else {
        port.parse::<u16>().ok()
    };
    host.eq_ignore_ascii_case(&origin.host) && port == Some(origin.port)
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in out {
        s.push('/');
        s.push_str(seg);
    }
    s
}

/// Percent-encodes what a request target may not hold (spaces, controls, non-ASCII), as
/// Go's client does when it writes a URL from a Location.
fn escape(target: &str) -> String {
    let mut out = String::with_capacity(target.len());
    for b in target.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new(false, "Staging", "staging:8080")
    }

    fn followed(sent: &str, status: u16, loc: &str) -> Follow {
        follow(sent.as_bytes(), status, loc.as_bytes(), &origin())
    }

    fn text(f: Follow) -> String {
        match f {
            Follow::Request(r) => String::from_utf8(r.bytes).unwrap(),
            other => panic!("not followed: {other:?}"),
        }
    }

    #[test]
    fn relative_locations_keep_the_head() {
        let sent = "GET /a/old?x=1 HTTP/1.1\r\nHost: s\r\nX-A: 1\r\n\r\n";
        assert_eq!(
            text(followed(sent, 302, "/new")),
            "GET /new HTTP/1.1\r\nHost: s\r\nX-A: 1\r\n\r\n"
        );
        assert!(text(followed(sent, 301, "new?y")).starts_with("GET /a/new?y HTTP/1.1\r\n"));
        assert!(text(followed(sent, 302, "../b/./c")).starts_with("GET /b/c HTTP/1.1\r\n"));
        assert!(text(followed(sent, 302, "?z")).starts_with("GET /a/old?z HTTP/1.1\r\n"));
        assert!(text(followed(sent, 302, "/n#frag")).starts_with("GET /n HTTP/1.1\r\n"));
        assert!(text(followed(sent, 302, "/a b")).starts_with("GET /a%20b HTTP/1.1\r\n"));
    }

    #[test]
    fn absolute_locations_on_the_target_set_host() {
        let sent = "GET /old HTTP/1.1\r\nHost: s\r\n\r\n";
        assert_eq!(
            text(followed(sent, 302, "http://staging:8080/new")),
            "GET /new HTTP/1.1\r\nHost: staging:8080\r\n\r\n"
        );
        assert!(text(followed(sent, 302, "//STAGING:8080")).starts_with("GET / HTTP/1.1\r\n"));
        let sent = "GET http://staging:8080/old HTTP/1.1\r\nHost: s\r\n\r\n";
        assert!(text(followed(sent, 302, "new")).starts_with("GET /new HTTP/1.1\r\n"));
    }

    #[test]
    fn locations_elsewhere_are_not_followed() {
        let sent = "GET /old HTTP/1.1\r\nHost: s\r\n\r\n";
        for loc in [
            "http://prod:8080/new",
            "http://staging:8081/new",
            "http://staging/new",
            "https://staging:8080/new",
            "//other/new",
            "http://u@staging:8080/new",
            "ftp://staging:8080/",
        ] {
            assert_eq!(followed(sent, 302, loc), Follow::Elsewhere, "{loc}");
        }
        let https = Origin::new(true, "s", "s:443");
        assert!(matches!(
            follow(sent.as_bytes(), 302, b"https://s/new", &https),
            Follow::Request(_)
        ));
    }

    #[test]
    fn methods_and_bodies_follow_go() {
        let post = "POST /old HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
        for status in [301, 302, 303] {
            let f = followed(post, status, "/new");
            let Follow::Request(r) = f else { panic!() };
            assert_eq!(
                String::from_utf8(r.bytes).unwrap(),
                "GET /new HTTP/1.1\r\nHost: s\r\nX: y\r\n\r\n"
            );
            assert!(r.idempotent && !r.head);
        }
        for status in [307, 308] {
            let Follow::Request(r) = followed(post, status, "/new") else {
                panic!()
            };
            assert_eq!(
                String::from_utf8(r.bytes).unwrap(),
                "POST /new HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\nX: y\r\n\r\nabc"
            );
            assert!(!r.idempotent);
        }
        let head = "HEAD /old HTTP/1.1\r\nHost: s\r\n\r\n";
        let Follow::Request(r) = followed(head, 303, "/new") else {
            panic!()
        };
        assert!(r.head && r.bytes.starts_with(b"HEAD /new "));
    }

    #[test]
    fn other_statuses_and_empty_locations_are_final() {
        let sent = "GET /old HTTP/1.1\r\nHost: s\r\n\r\n";
        for status in [200, 300, 304, 305, 404] {
            assert_eq!(followed(sent, status, "/new"), Follow::No);
        }
        assert_eq!(followed(sent, 302, ""), Follow::No);
        assert_eq!(followed(sent, 302, "http:/x"), Follow::No);
        assert_eq!(
            followed("OPTIONS * HTTP/1.1\r\n\r\n", 302, "/x"),
            Follow::No
        );
    }
}
