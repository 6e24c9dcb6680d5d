//! Staging targets: each resolves with the system's resolver (as the mirror's connects
//! do) and accepts a TCP connection within [`CONNECT_TIMEOUT`]. The TLS handshake of an
//! `https://` target is not tried.

use std::{
    io,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

use super::Line;
use crate::mirror::Target;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves and connects to `t` (each address in turn, until one accepts).
pub fn check(t: &Target) -> Line {
    let resolved = t.addr.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
    let mut attempts = Vec::new();
    if let Ok(addrs) = &resolved {
        for &addr in addrs {
            let result = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map(drop);
            let connected = result.is_ok();
            attempts.push((addr, result));
            if connected {
                break;
            }
        }
    }
    target_line(t, resolved.map(|_| ()), &attempts)
}

/// The line for one target from what resolving and connecting gave.
pub fn target_line(
    t: &Target,
    resolved: io::Result<()>,
    attempts: &[(SocketAddr, io::Result<()>)],
) -> Line {
    let url = &t.scheme_host_port;
    let tls = if t.tls {
        " (the TLS handshake is not tried)"
    } else {
        ""
    };
    let unresolved = match resolved {
        Err(e) => Some(format!("does not resolve ({e})")),
        Ok(()) if attempts.is_empty() => Some("resolves to no address".to_string()),
        Ok(()) => None,
    };
    if let Some(why) = unresolved {
        return Line::fail(
            format!("target {url}: {} {why}", t.host),
            format!(
                "correct the host in GOR_TARGET, or make it resolvable here (`getent hosts {}`)",
                t.host
            ),
        );
    }
    if let Some((addr, _)) = attempts.iter().find(|(_, r)| r.is_ok()) {
        return Line::ok(format!("target {url}: {addr} accepts TCP connections{tls}"));
    }
    let errors: Vec<String> = attempts
        .iter()
        .filter_map(|(addr, r)| {
            r.as_ref().err().map(|e| match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    format!("{addr}: no answer within {} s", CONNECT_TIMEOUT.as_secs())
                }
                _ => format!("{addr}: {e}"),
            })
        })
        .collect();
    Line::fail(
        format!("target {url}: staging is unreachable ({})", errors.join("; ")),
        format!(
            "start staging at {}, or correct GOR_TARGET; a firewall between this host and staging must let the connection through",
            t.addr
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn a_target_that_accepts_is_ok() {
        let t = target("http://127.0.0.1:9000/base");
        let addr: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let line = target_line(&t, Ok(()), &[(addr, Ok(()))]);
        assert_eq!(line.status, Status::Ok);
        assert_eq!(
            line.text,
            "target http://127.0.0.1:9000/base: 127.0.0.1:9000 accepts TCP connections"
        );
        let tls = target_line(&target("https://[::1]:8443"), Ok(()), &[(addr, Ok(()))]);
        assert!(tls.text.ends_with("(the TLS handshake is not tried)"));
    }

    #[test]
    fn a_later_address_that_accepts_is_enough() {
        let t = target("http://staging:80");
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let refused = || Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        let line = target_line(&t, Ok(()), &[(v6, refused()), (v4, Ok(()))]);
        assert_eq!(line.status, Status::Ok);
        let line = target_line(&t, Ok(()), &[(v6, refused())]);
        assert_eq!(line.status, Status::Fail);
        assert!(line.text.contains("[::1]:80: "), "{}", line.text);
        assert!(line.fix.unwrap().contains("staging:80"));
    }

    #[test]
    fn timeouts_and_names_that_do_not_resolve_fail() {
        let t = target("http://staging.invalid:8080");
        let addr: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        let line = target_line(&t, Ok(()), &[(addr, Err(io::ErrorKind::TimedOut.into()))]);
        assert!(line.text.contains("no answer within 2 s"), "{}", line.text);
        let line = target_line(&t, Err(io::Error::other("Name or service not known")), &[]);
        assert_eq!(line.status, Status::Fail);
        assert!(line.text.contains("staging.invalid does not resolve"));
        assert!(line.fix.unwrap().contains("getent hosts staging.invalid"));
        assert_eq!(target_line(&t, Ok(()), &[]).status, Status::Fail);
    }
}
