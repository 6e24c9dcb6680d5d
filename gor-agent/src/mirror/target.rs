//! Staging targets: parsing `http(s)://[user:pass@]host[:port][/base]` into what the
//! mirror needs to connect (`addr`, `tls`, `host`) and to rewrite requests (`host_header`,
//! `base_path` or `fixed_target`, `authorization`). The credentials of `user:pass@` are
//! kept as the `Authorization` value only, never in the target's name, its `Debug` or an
//! error message ([`redact`]).

use base64::Engine;

use super::Rate;

/// How the path (and query) of a target URL applies to the mirrored requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathMode {
    /// gor's: the path is a prefix of every request's path (`/base` + `/p?q`); a query
    /// is refused.
    #[default]
    Prefix,
    /// GoReplay's: a URL with a path or a query replaces every request's target with it
    /// (`http://staging/api?x=1` sends every request to `/api?x=1`); without either, the
    /// request's own target is kept.
    Replace,
}

/// An `Authorization` value, which `Debug` never shows.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where mirrored requests go.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `http(s)://host[:port]` plus the base path: the target's name in stats.
    pub scheme_host_port: String,
    /// Value for the `Host` header: the host, plus the port when it is not the default.
    pub host_header: String,
    /// `host:port` to connect to (IPv6 hosts in brackets); resolved at each connect.
    pub addr: String,
    /// Prefix for request targets, without a trailing slash; empty for none.
    pub base_path: String,
    /// `https://`: connect with TLS.
    pub tls: bool,
    /// The host as given (IPv6 in brackets): the TLS server name (SNI, verification).
    pub host: String,
    /// With [`PathMode::Replace`], the URL's path and query, which replaces every
    /// request's target; `None` keeps the request's.
    pub fixed_target: Option<String>,
    /// `Basic ...` from the URL's `user:pass@`: set on every request to this target,
    /// replacing the client's `Authorization`.
    pub authorization: Option<Secret>,
    /// This target's own limit (`URL|10`, `URL|10%`); `None`: the mirror's default rate.
    pub rate: Option<Rate>,
}

impl Target {
    /// Parses `http://host[:port][/base]` or `https://host[:port][/base]`, with an
    /// optional `user:pass@`; the path is a prefix ([`PathMode::Prefix`]).
    pub fn parse(url: &str) -> Result<Target, String> {
        Target::parse_as(url, PathMode::Prefix)
    }

    /// [`Target::parse`] with the path applied as `mode` says; errors never show the
    /// URL's credentials.
    pub fn parse_as(url: &str, mode: PathMode) -> Result<Target, String> {
        let shown = redact(url.trim());
        Target::parse_inner(url.trim(), mode).map_err(|e| e.replace("{url}", &format!("{shown:?}")))
    }

    /// The parse; `{url}` in an error stands for the (redacted) URL.
    fn parse_inner(url: &str, mode: PathMode) -> Result<Target, String> {
        let (tls, rest) = match split_scheme(url) {
            Some((s, rest)) if s == "http" => (false, rest),
            Some((s, rest)) if s == "https" => (true, rest),
            Some((scheme, _)) => return Err(format!("unsupported scheme {scheme:?} in {{url}}")),
            None => return Err("target {url} must start with http:// or https://".into()),
        };
        let scheme = if tls { "https" } else { "http" };
        let default_port = if tls { 443 } else { 80 };
        if rest.contains('#') || (mode == PathMode::Prefix && rest.contains('?')) {
            return Err("target {url} must not have a query or fragment".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (authorization, authority) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(basic_auth(userinfo)?), host),
            None => (None, authority),
        };
        let (host, port) = split_host_port(authority).map_err(|e| format!("{e} in {{url}}"))?;
        if tls {
            super::tls::server_name(host).map_err(|e| format!("{e} in {{url}}"))?;
        }
        let explicit_port = port.is_some();
        let port = port.unwrap_or(default_port);
        let host_header = if explicit_port && port != default_port {
            format!("{host}:{port}")
        } else {
            host.to_string()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("target {url} has spaces or controls in its path".into());
        }
        let (base_path, fixed_target) = match mode {
            PathMode::Prefix => (path.trim_end_matches('/').to_string(), None),
            // GoReplay's URL parser: `?q` alone is the path `` with a query, sent as `/?q`.
            PathMode::Replace if path.is_empty() => (String::new(), None),
            PathMode::Replace if path.starts_with('?') => (String::new(), Some(format!("/{path}"))),
            PathMode::Replace => (String::new(), Some(path.to_string())),
        };
        // The name in stats and logs: the path without its query, which may hold secrets.
        let shown_path = match &fixed_target {
            Some(t) => t.split('?').next().unwrap_or_default(),
            None => &base_path,
        };
        Ok(Target {
            scheme_host_port: format!("{scheme}://{host_header}{shown_path}"),
            host_header,
            addr: format!("{host}:{port}"),
            base_path,
            tls,
            host: host.to_string(),
            fixed_target,
            authorization,
            rate: None,
        })
    }
}

/// `user:pass` (percent-encoded, as in a URL) as a `Basic` `Authorization` value.
fn basic_auth(userinfo: &str) -> Result<Secret, String> {
    let Some((user, pass)) = userinfo.split_once(':') else {
        return Err("target {url}: user info must be `user:pass@`".into());
    };
    let decoded = [user, pass].map(percent_decode);
    let [Some(user), Some(pass)] = decoded else {
        return Err("target {url}: bad percent-encoding in `user:pass@`".into());
    };
    let mut plain = user;
    plain.push(b':');
    plain.extend_from_slice(&pass);
    Ok(Secret(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    )))
}

/// `%XX` decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `url` with the password of its `user:pass@` (if any) replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    format!("{scheme}{user}:***@{host}{tail}")
}

/// Splits `scheme://rest`, with the scheme lowercased (schemes are case-insensitive).
fn split_scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

/// Splits `host[:port]` / `[v6][:port]`; the host keeps its brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("unclosed '[' in host")?;
        let (host, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if rest.is_empty() => (host, None),
            None => return Err("junk after IPv6 host".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("empty host".into());
    }
    if !host.starts_with('[') && host.contains(':') {
        return Err("IPv6 hosts must be in brackets".into());
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("bad port {p:?}"))?,
        ),
        None => None,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_base() {
        let t = Target::parse("http://staging:8080/base/").unwrap();
        assert_eq!(t.host_header, "staging:8080");
        assert_eq!(t.addr, "staging:8080");
        assert_eq!(t.base_path, "/base");
        assert_eq!(t.scheme_host_port, "http://staging:8080/base");

        let t = Target::parse("HTTP://staging").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.addr.as_str()),
            ("staging", "staging:80")
        );
        assert_eq!(t.base_path, "");

        let t = Target::parse("http://[::1]:9000/").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.addr.as_str()),
            ("[::1]:9000", "[::1]:9000")
        );
        assert_eq!(t.base_path, "");

        let t = Target::parse("http://127.0.0.1:80/a/b").unwrap();
        assert_eq!(t.host_header, "127.0.0.1");
        assert_eq!(t.base_path, "/a/b");
        assert!(!t.tls);
    }

    #[test]
    fn parses_https_targets() {
        let t = Target::parse("https://staging.example/base/").unwrap();
        assert!(t.tls);
        assert_eq!(t.host_header, "staging.example");
        assert_eq!(t.addr, "staging.example:443");
        assert_eq!(t.host, "staging.example");
        assert_eq!(t.base_path, "/base");
        assert_eq!(t.scheme_host_port, "https://staging.example/base");

        // The default port is 443: left out of Host, even when written.
        let t = Target::parse("HTTPS://staging:443").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.addr.as_str()),
            ("staging", "staging:443")
        );
        assert_eq!(t.scheme_host_port, "https://staging");

        let t = Target::parse("https://localhost:8443").unwrap();
        assert_eq!(t.host_header, "localhost:8443");
        assert_eq!(t.addr, "localhost:8443");
        assert_eq!(t.host, "localhost");

        // Port 80 is not the default for https.
        let t = Target::parse("https://staging:80").unwrap();
        assert_eq!(t.host_header, "staging:80");

        let t = Target::parse("https://[::1]").unwrap();
        assert_eq!(
            (t.host_header.as_str(), t.addr.as_str(), t.host.as_str()),
            ("[::1]", "[::1]:443", "[::1]")
        );
        assert!(super::super::tls::server_name(&t.host).is_ok());
        let t = Target::parse("https://127.0.0.1:9443/").unwrap();
        assert_eq!(t.host_header, "127.0.0.1:9443");
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "staging:80",
            "ftp://x",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "http://u@h",
            "http://h/?q",
            "http://::1/",
            "http://[::1",
            "http://h/a b",
            "https://",
            "https://h:0",
            "https://u@h",
            "https://a..b/",
            "https:/h",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_and_password_become_basic_auth_never_shown() {
        let t = Target::parse("http://al%3Ace:s%20cret@staging:81/b").unwrap();
        // base64("al:ce:s cret")
        assert_eq!(
            t.authorization,
            Some(Secret("Basic YWw6Y2U6cyBjcmV0".into()))
        );
        assert_eq!(t.scheme_host_port, "http://staging:81/b");
        assert_eq!(
            (t.addr.as_str(), t.base_path.as_str()),
            ("staging:81", "/b")
        );
        assert!(!format!("{t:?}").contains("YWw6"), "{t:?}");
        let e = Target::parse("http://al:s3cret@:80").unwrap_err();
        assert!(!e.contains("s3cret") && e.contains("al:***@"), "{e}");
        let e = Target::parse("http://al:%zz@h").unwrap_err();
        assert!(!e.contains("%zz"), "{e}");
        assert_eq!(redact("https://u:p@h/x?y"), "https://u:***@h/x?y");
        assert_eq!(redact("http://h/x@y"), "http://h/x@y");
    }

    #[test]
    fn replace_mode_takes_the_path_and_query_as_the_target() {
        let t = Target::parse_as("http://s:81/api?k=v", PathMode::Replace).unwrap();
        assert_eq!(t.fixed_target.as_deref(), Some("/api?k=v"));
        assert_eq!(
            (t.base_path.as_str(), t.scheme_host_port.as_str()),
            ("", "http://s:81/api")
        );
        let t = Target::parse_as("http://s?k=v", PathMode::Replace).unwrap();
        assert_eq!(t.fixed_target.as_deref(), Some("/?k=v"));
        // `/` is a path, as in GoReplay (Go's URL parser): every request goes to `/`.
        let t = Target::parse_as("http://s/", PathMode::Replace).unwrap();
        assert_eq!(t.fixed_target.as_deref(), Some("/"));
        let t = Target::parse_as("http://s", PathMode::Replace).unwrap();
        assert_eq!(t.fixed_target, None);
        assert!(Target::parse_as("http://s/#f", PathMode::Replace).is_err());
        assert!(Target::parse("http://s/a?k").is_err());
    }
}
