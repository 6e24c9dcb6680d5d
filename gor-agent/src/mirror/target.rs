//! Staging targets: parsing `http(s)://host[:port][/base]` into what the mirror needs
//! to connect (`addr`, `tls`, `host`) and to rewrite requests (`host_header`, `base_path`).

/// Where mirrored requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl Target {
    /// Parses `http://host[:port][/base]` or `https://host[:port][/base]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim();
        let (tls, rest) = match split_scheme(url) {
            Some((s, rest)) if s == "http" => (false, rest),
            Some((s, rest)) if s == "https" => (true, rest),
            Some((scheme, _)) => return Err(format!("unsupported scheme {scheme:?} in {url:?}")),
            None => {
                return Err(format!(
                    "target {url:?} must start with http:// or https://"
                ))
            }
        };
        let scheme = if tls { "https" } else { "http" };
        let default_port = if tls { 443 } else { 80 };
        if rest.contains(['?', '#']) {
            return Err(format!("target {url:?} must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("target {url:?} must not have user info"));
        }
        let (host, port) = split_host_port(authority).map_err(|e| format!("{e} in {url:?}"))?;
        if tls {
            super::tls::server_name(host).map_err(|e| format!("{e} in {url:?}"))?;
        }
        let explicit_port = port.is_some();
        let port = port.unwrap_or(default_port);
        let host_header = if explicit_port && port != default_port {
            format!("{host}:{port}")
        } else {
            host.to_string()
        };
        let base_path = path.trim_end_matches('/').to_string();
        if base_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("target {url:?} has spaces or controls in its path"));
        }
        Ok(Target {
            scheme_host_port: format!("{scheme}://{host_header}{base_path}"),
            host_header,
            addr: format!("{host}:{port}"),
            base_path,
            tls,
            host: host.to_string(),
        })
    }
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
}
