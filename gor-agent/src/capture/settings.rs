//! The capture stage's settings: which TCP ports, on which interfaces, through how large
//! a ring buffer, or from which pcap file instead. [`SourceArgs::validate`] only reads
//! the values; whether the interfaces and the file exist is the resolve step's question
//! (`config::resolve`), asked of the host after every value is known to be well formed.

use std::{collections::BTreeSet, path::PathBuf};

use clap::Args;

use crate::settings::Problems;

/// What to capture.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// TCP ports to capture, comma-separated (required), e.g. `80,8080`.
    #[arg(long, env = "GOR_PORTS", value_name = "PORTS")]
    pub ports: Option<String>,
    /// Interfaces to watch, comma-separated. Default: every interface that is up, `lo` included.
    #[arg(long, env = "GOR_INTERFACES", value_name = "IFACES")]
    pub interfaces: Option<String>,
    /// Size of the kernel ring buffer (power of two, at least one page), e.g. `16MiB`.
    #[arg(long, env = "GOR_RING_BUFFER", default_value = "16MiB")]
    pub ring_buffer: String,
    /// HTTPS plaintext from this host's TLS library: `openssl` (probes on every libssl in
    /// use, for the TLS ports), or `off`.
    #[arg(long, env = "GOR_TLS", default_value = "off", value_name = "LIBRARY")]
    pub tls: String,
    /// Which of the ports carry TLS that this host's processes terminate with OpenSSL
    /// (captured as plaintext; the TC programs leave them alone). Default with
    /// `--tls openssl`: all of them.
    #[arg(long, env = "GOR_TLS_PORTS", value_name = "PORTS")]
    pub tls_ports: Option<String>,
    /// Size of the kernel ring buffer for TLS plaintext (power of two), e.g. `8MiB`.
    #[arg(long, env = "GOR_TLS_RING_BUFFER", default_value = "8MiB")]
    pub tls_ring_buffer: String,
    /// When nothing needs production's responses whole (no comparison, no tracked
    /// responses, no stream or message outputs), the kernel copies only this much of each
    /// packet a server sends: the response heads, which keep requests framed (upgrades,
    /// CONNECT). `0` copies every byte. At most 16KiB.
    #[arg(
        long,
        env = "GOR_RESPONSE_SNAP",
        default_value = "2KiB",
        value_name = "SIZE"
    )]
    pub response_snap: String,
}

/// A capture file instead of live capture. A group of its own only so that `--help`
/// keeps listing it after the reassembly limits, where it always was.
#[derive(Debug, Args)]
pub struct PcapArgs {
    /// Read packets from this pcap or pcapng file instead of capturing live (no root needed).
    #[arg(long, env = "GOR_INPUT_PCAP", value_name = "FILE")]
    pub input_pcap: Option<PathBuf>,
}

/// Where packets come from.
#[derive(Debug, Clone)]
pub struct CaptureSource {
    pub ports: Vec<u16>,
    /// Empty: every interface that is up.
    pub interfaces: Vec<String>,
    pub ring_bytes: u32,
    /// See [`SourceArgs::response_snap`]; 0: off.
    pub response_snap: u32,
    /// Read this capture file instead of attaching to interfaces.
    pub input_pcap: Option<PathBuf>,
    /// HTTPS plaintext from OpenSSL (`GOR_TLS=openssl`).
    pub tls: Option<TlsCapture>,
}

/// TLS capture: which ports, through how large a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCapture {
    /// A subset of the capture's ports; the others are captured by the TC programs.
    pub ports: Vec<u16>,
    pub ring_bytes: u32,
}

impl SourceArgs {
    /// `ports_required`: false for `gor-agent replay`, which captures nothing.
    pub fn validate(
        &self,
        pcap: &PcapArgs,
        p: &mut Problems,
        ports_required: bool,
    ) -> Option<CaptureSource> {
        let mut c = p.of::<Self>();
        let ports = match &self.ports {
            None if !ports_required => Some(Vec::new()),
            None => c.field(
                "ports",
                "",
                Err::<Vec<u16>, _>(
                    "a comma-separated list of TCP ports (1-65535); it is required".into(),
                ),
            ),
            Some(v) => c.parse("ports", v, parse_ports),
        };
        let interfaces = match &self.interfaces {
            None => Some(Vec::new()),
            Some(v) => c.parse("interfaces", v, parse_interface_names),
        };
        let ring_bytes = c.parse("ring_buffer", &self.ring_buffer, parse_ring_size);
        let tls_ring = c.parse("tls_ring_buffer", &self.tls_ring_buffer, parse_ring_size);
        let response_snap = c.parse("response_snap", &self.response_snap, parse_response_snap);
        let tls_on = c.parse("tls", &self.tls, |v| match v {
            "off" => Ok(false),
            "openssl" => Ok(true),
            _ => Err("`openssl` (probes on OpenSSL's libssl) or `off`".to_string()),
        });
        let tls_ports = match &self.tls_ports {
            None => Some(None),
            Some(v) => c.parse("tls_ports", v, parse_ports).map(Some),
        };
        let ports = ports?;
        let tls = match (tls_on?, tls_ports?) {
            (false, None) => None,
            (false, Some(_)) => c.field(
                "tls_ports",
                self.tls_ports.as_deref().unwrap_or_default(),
                Err::<Option<TlsCapture>, _>(
                    "TLS ports are captured with `GOR_TLS=openssl`; set it too".into(),
                ),
            )?,
            (true, _) if pcap.input_pcap.is_some() => c.field(
                "tls",
                &self.tls,
                Err::<Option<TlsCapture>, _>(
                    "`off` with a pcap file: TLS plaintext is only captured live".into(),
                ),
            )?,
            (true, None) => Some(TlsCapture {
                ports: ports.clone(),
                ring_bytes: tls_ring?,
            }),
            (true, Some(t)) => {
                if let Some(p) = t.iter().find(|p| !ports.contains(p)) {
                    c.field(
                        "tls_ports",
                        self.tls_ports.as_deref().unwrap_or_default(),
                        Err::<(), _>(format!(
                            "a subset of the captured ports (GOR_PORTS); {p} is not one of them"
                        )),
                    )?;
                }
                Some(TlsCapture {
                    ports: t,
                    ring_bytes: tls_ring?,
                })
            }
        };
        Some(CaptureSource {
            ports,
            interfaces: interfaces?,
            ring_bytes: ring_bytes?,
            response_snap: response_snap?,
            input_pcap: pcap.input_pcap.clone(),
            tls,
        })
    }
}

/// `80,8080`: a non-empty list of distinct ports 1-65535.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    const EXPECTED: &str = "a comma-separated list of TCP ports 1-65535, e.g. `80,8080`";
    let mut ports = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        match part.parse::<u16>() {
            Ok(p) if p != 0 => {
                ports.insert(p);
            }
            _ => return Err(format!("{EXPECTED} (`{part}` is not a port)")),
        }
    }
    Ok(ports.into_iter().collect())
}

/// `lo,eth0`: names that could be interfaces, whether they exist now or not.
pub fn parse_interface_names(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .map(|name| {
            if name.is_empty() || name.contains('/') {
                Err(format!(
                    "a comma-separated list of network interface names (`{name}` is not one)"
                ))
            } else {
                Ok(name.to_string())
            }
        })
        .collect()
}

/// `0` (off), or 128 bytes to 16 KiB (one ring-buffer record).
pub fn parse_response_snap(s: &str) -> Result<u32, String> {
    let expected = format!(
        "0 (copy whole responses) or a size from 128 to {}, e.g. `2KiB`",
        gor_common::CHUNK_DATA_LEN
    );
    if s.trim() == "0" {
        return Ok(0);
    }
    let n = crate::settings::parse_size(s).map_err(|_| expected.clone())?;
    if n != 0 && !(128..=gor_common::CHUNK_DATA_LEN).contains(&n) {
        return Err(expected);
    }
    Ok(n as u32)
}

/// A power of two between 64 KiB and 1 GiB: the kernel wants a power-of-two multiple of
/// the page size for a ring buffer.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let expected = "a power of two between 64KiB and 1GiB, e.g. `32MiB`";
    let n = crate::settings::parse_size(s).map_err(|_| expected.to_string())?;
    if !n.is_power_of_two() || !(64 << 10..=1 << 30).contains(&n) {
        return Err(expected.into());
    }
    Ok(n as u32)
}
