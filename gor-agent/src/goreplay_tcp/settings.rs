//! The settings of GoReplay's TCP protocol: the listener's end (`--output-tcp`, on any
//! pipeline: capture, `replay`, `replay-server`) and the replay server's end
//! (`--input-tcp`, a source of its own, on the agent's top-level command line).

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;

use crate::settings::{parse_count, parse_size, Problems};

/// `--output-tcp`: every message after the filters, to a GoReplay (or gor) `--input-tcp`.
#[derive(Debug, Args)]
pub struct TcpOutputArgs {
    /// Send every message (requests; responses too with GOR_TRACK_RESPONSES) in
    /// GoReplay's TCP protocol to this `HOST:PORT`, where GoReplay's or gor's
    /// `--input-tcp` listens.
    #[arg(long, env = "GOR_OUTPUT_TCP", value_name = "HOST:PORT")]
    pub output_tcp: Option<String>,
    /// Connect with TLS (to an `--input-tcp-secure`), verifying the certificate against
    /// the system roots and GOR_TLS_CA.
    #[arg(long, env = "GOR_OUTPUT_TCP_SECURE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_tcp_secure: bool,
    /// With GOR_OUTPUT_TCP_SECURE: do not verify the certificate (nor the host name).
    #[arg(long, env = "GOR_OUTPUT_TCP_SKIP_VERIFY", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_tcp_skip_verify: bool,
    /// Keep each client connection's messages on one TCP connection (in order), rather
    /// than spreading messages over the connections in turn.
    #[arg(long, env = "GOR_OUTPUT_TCP_STICKY", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_tcp_sticky: bool,
    /// TCP connections to the address, each with its own queue.
    #[arg(long, env = "GOR_OUTPUT_TCP_WORKERS", default_value = "10")]
    pub output_tcp_workers: String,
    /// Log the TCP output's queue and counters every 5 seconds.
    #[arg(long, env = "GOR_OUTPUT_TCP_STATS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_tcp_stats: bool,
    /// Messages each connection's queue holds while the other end is slow or away; more
    /// are dropped and counted (capture never waits).
    #[arg(long, env = "GOR_OUTPUT_TCP_QUEUE", default_value = "1000")]
    pub output_tcp_queue: String,
    /// Bytes all the queues hold together at most.
    #[arg(long, env = "GOR_OUTPUT_TCP_QUEUE_BYTES", default_value = "64MiB")]
    pub output_tcp_queue_bytes: String,
}

/// The validated `--output-tcp` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOutputConfig {
    /// `HOST:PORT`, resolved at each connection.
    pub address: String,
    pub secure: bool,
    pub skip_verify: bool,
    pub sticky: bool,
    pub workers: usize,
    pub stats: bool,
    pub queue: usize,
    pub queue_bytes: usize,
}

impl TcpOutputArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<Option<TcpOutputConfig>> {
        let mut c = p.of::<Self>();
        let workers = c.parse("output_tcp_workers", &self.output_tcp_workers, parse_count);
        let queue = c.parse("output_tcp_queue", &self.output_tcp_queue, parse_count);
        let queue_bytes = c.parse(
            "output_tcp_queue_bytes",
            &self.output_tcp_queue_bytes,
            parse_size,
        );
        let address = match self.output_tcp.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) => Some(c.parse("output_tcp", a, parse_host_port)?),
        };
        let (workers, queue, queue_bytes) = (workers?, queue?, queue_bytes?);
        Some(address.map(|address| TcpOutputConfig {
            address,
            secure: self.output_tcp_secure,
            skip_verify: self.output_tcp_skip_verify,
            sticky: self.output_tcp_sticky,
            workers,
            stats: self.output_tcp_stats,
            queue,
            queue_bytes,
        }))
    }
}

/// `HOST:PORT` with a host (a name or an address) and a port other than 0.
pub fn parse_host_port(s: &str) -> Result<String, String> {
    const EXPECTED: &str = "`HOST:PORT` (`replay.local:28020`, `10.0.0.5:28020`)";
    let (host, port) = s.rsplit_once(':').ok_or(EXPECTED)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    if host.is_empty() || !port_ok {
        return Err(EXPECTED.into());
    }
    Ok(s.to_string())
}

/// `--input-tcp`: the replay server's end.
#[derive(Debug, Args)]
pub struct TcpInputArgs {
    /// Listen on this address (`:28020` for every address, `127.0.0.1:28020`) for
    /// GoReplay's TCP protocol, as GoReplay's or gor's `--output-tcp` send it, instead
    /// of capturing: the messages go through the same middleware, filters, mirroring
    /// and outputs as captured ones.
    #[arg(long, env = "GOR_INPUT_TCP", value_name = "[HOST]:PORT")]
    pub input_tcp: Option<String>,
    /// Accept TLS only, with GOR_INPUT_TCP_CERTIFICATE and GOR_INPUT_TCP_CERTIFICATE_KEY.
    #[arg(long, env = "GOR_INPUT_TCP_SECURE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub input_tcp_secure: bool,
    /// The certificate chain (PEM) of GOR_INPUT_TCP_SECURE.
    #[arg(long, env = "GOR_INPUT_TCP_CERTIFICATE", value_name = "FILE")]
    pub input_tcp_certificate: Option<PathBuf>,
    /// The private key (PEM) of GOR_INPUT_TCP_SECURE.
    #[arg(long, env = "GOR_INPUT_TCP_CERTIFICATE_KEY", value_name = "FILE")]
    pub input_tcp_certificate_key: Option<PathBuf>,
}

/// The validated `--input-tcp` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpInputConfig {
    /// `ADDRESS:PORT` or `NAME:PORT`, bound when the input starts.
    pub listen: String,
    /// Certificate chain and key files, for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl TcpInputArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<Option<TcpInputConfig>> {
        let mut c = p.of::<Self>();
        let listen = match self.input_tcp.as_deref().map(str::trim) {
            None | Some("") => return Some(None),
            Some(a) => c.parse("input_tcp", a, parse_listen),
        };
        let tls = if self.input_tcp_secure {
            let cert = c.field(
                "input_tcp_certificate",
                "",
                self.input_tcp_certificate
                    .clone()
                    .ok_or_else(|| "the certificate (PEM) of GOR_INPUT_TCP_SECURE".to_string()),
            );
            let key = c.field(
                "input_tcp_certificate_key",
                "",
                self.input_tcp_certificate_key
                    .clone()
                    .ok_or_else(|| "the private key (PEM) of GOR_INPUT_TCP_SECURE".to_string()),
            );
            Some((cert?, key?))
        } else {
            None
        };
        Some(Some(TcpInputConfig {
            listen: listen?,
            tls,
        }))
    }
}

/// `:PORT` (every IPv4 address, as Go's `net.Listen(":PORT")` listens on every
/// address), `ADDRESS:PORT`, `[::1]:PORT`, or `NAME:PORT` (the name is resolved when the
/// input starts, as GoReplay does, and it listens on the name's address).
pub fn parse_listen(s: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "`[ADDRESS]:PORT` (`:28020`, `127.0.0.1:28020`, `[::]:28020`, `replay.local:28020`)";
    let (host, port) = s.rsplit_once(':').ok_or(EXPECTED)?;
    port.parse::<u16>().map_err(|_| EXPECTED.to_string())?;
    if host.is_empty() {
        return Ok(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
            .to_string()
            .replace(":0", &format!(":{port}")));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_err()
        && !bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(EXPECTED.into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_goreplay_writes_them() {
        assert_eq!(parse_listen(":28020").unwrap(), "0.0.0.0:28020");
        assert_eq!(parse_listen("127.0.0.2:1").unwrap(), "127.0.0.2:1");
        assert_eq!(parse_listen("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(
            parse_listen("replay.local:28020").unwrap(),
            "replay.local:28020"
        );
        assert!(parse_listen("28020").is_err());
        assert!(parse_listen("a b:1").is_err());
        assert!(parse_host_port("replay.local:28020").is_ok());
        assert!(parse_host_port(":28020").is_err());
        assert!(parse_host_port("h:0").is_err());
    }
}
