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
    /// Size of the kernel ring buffer (power of two, at least one page), e.g. `32MiB`.
    #[arg(long, env = "GOR_RING_BUFFER", default_value = "32MiB")]
    pub ring_buffer: String,
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
    /// Read this capture file instead of attaching to interfaces.
    pub input_pcap: Option<PathBuf>,
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
        Some(CaptureSource {
            ports: ports?,
            interfaces: interfaces?,
            ring_bytes: ring_bytes?,
            input_pcap: pcap.input_pcap.clone(),
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
