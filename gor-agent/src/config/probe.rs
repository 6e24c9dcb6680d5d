//! The resolve step: what only the host can tell about settings that are well formed.
//! Validation (each stage's `validate`) reads values and nothing else; this step runs
//! right after it, in `main` for the agent and for `gor-agent check` alike, and reports
//! every failure at once, named like a validation error (`main` exits 64 on either).
//!
//! What it asks: that the interfaces to watch exist (not for `check`, which reports a
//! missing interface as a finding), that the pcap file is a file, that the CA file can
//! be read and holds certificates (which it returns, into [`MirrorConfig::tls_ca`]),
//! that the middleware program exists and may be run, and that the saved-traffic files
//! of `gor-agent replay` can be opened.

use std::path::Path;

use super::{Config, InputFileArgs, MiddlewareArgs, MirrorArgs};
use crate::capture::settings::{parse_interface_names, PcapArgs, SourceArgs};
use crate::settings::{ConfigError, Problems};

/// Whether the interfaces to watch must exist now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interfaces {
    /// The agent attaches to them: a missing one is an invalid setting.
    MustExist,
    /// `gor-agent check` reports on each one itself.
    Named,
}

/// Completes a validated configuration with what the host says, or reports every
/// setting the host rejects.
pub fn resolve(mut cfg: Config, interfaces: Interfaces) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();
    if interfaces == Interfaces::MustExist {
        let names = &cfg.capture.interfaces;
        p.of::<SourceArgs>()
            .field("interfaces", &names.join(","), all_exist(names));
    }
    if let Some(file) = &cfg.capture.input_pcap {
        if !file.is_file() {
            p.of::<PcapArgs>().field(
                "input_pcap",
                &file.display().to_string(),
                Err::<(), _>("a readable pcap or pcapng file".into()),
            );
        }
    }
    if let Some(file) = &cfg.mirror.tls_ca_file {
        let certs = crate::mirror::load_ca_file(file);
        if let Some(certs) =
            p.of::<MirrorArgs>()
                .field("tls_ca", &file.display().to_string(), certs)
        {
            cfg.mirror.tls_ca = certs;
        }
    }
    if let Some(m) = &cfg.middleware {
        let runnable = crate::middleware::check_program(&m.program);
        p.of::<MiddlewareArgs>()
            .field("middleware", &m.command, runnable);
    }
    for input in cfg.input_file.iter().flat_map(|i| &i.inputs) {
        let readable = crate::gorfile::GorReader::open(&input.pattern)
            .map(drop)
            .map_err(|e| format!("readable saved-traffic files ({e})"));
        p.of::<InputFileArgs>()
            .field("input_file", &input.pattern, readable);
    }
    p.finish().map(|()| cfg)
}

/// `lo,eth0`: names of interfaces that exist now.
pub fn parse_interfaces(s: &str) -> Result<Vec<String>, String> {
    let names = parse_interface_names(s)?;
    all_exist(&names).map(|()| names)
}

fn all_exist(names: &[String]) -> Result<(), String> {
    match names
        .iter()
        .find(|n| !Path::new("/sys/class/net").join(n).exists())
    {
        Some(name) => Err(format!(
            "a comma-separated list of existing network interfaces (`{name}` does not exist)"
        )),
        None => Ok(()),
    }
}
