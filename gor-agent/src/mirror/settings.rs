//! Mirroring's settings: the staging targets, the rate limit, the time limits, the
//! workers and queues per target, the header rewrites and the extra CA certificates for
//! https targets. [`MirrorArgs::validate`] reads the values only; the CA file is read
//! and parsed by the resolve step (`config::resolve`), into [`MirrorConfig::tls_ca`].

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{CaCert, MirrorOptions, PortExclusion, Rate, Target};
use crate::settings::{parse_count, parse_duration, parse_size, Problems};

/// Mirroring to staging.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Staging base URLs, comma-separated (`http://host:port[/base]` or `https://...`);
    /// every mirrored request goes to each. Empty: nothing is mirrored.
    #[arg(long, env = "GOR_TARGET", value_name = "URLS")]
    pub target: Option<String>,
    /// `100`: at most 100 requests/s per target (excess dropped and counted); `10%`: a
    /// random 10% of requests; empty: all.
    #[arg(long, env = "GOR_RATE", default_value = "")]
    pub rate: String,
    /// Time limit for each step with staging: connecting, sending, each response.
    #[arg(long, env = "GOR_TIMEOUT", default_value = "5s")]
    pub timeout: String,
    /// Staging connections per target at most (client connections mirrored concurrently).
    #[arg(long, env = "GOR_WORKERS", default_value = "64")]
    pub workers: String,
    /// Requests a staging connection may carry before their responses are read (HTTP/1.1
    /// pipelining of requests already waiting, idempotent ones only); 1: one at a time.
    #[arg(long, env = "GOR_PIPELINE", default_value = "16")]
    pub pipeline: String,
    /// Requests waiting per target at most; beyond that they are dropped and counted.
    #[arg(long, env = "GOR_QUEUE", default_value = "10000")]
    pub queue: String,
    /// Keep the client's Host header (by default Host becomes the target's host).
    #[arg(long, env = "GOR_ORIGINAL_HOST", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub original_host: bool,
    /// Headers to add or replace on mirrored requests, `Name: value`, separated by `;`.
    #[arg(long, env = "GOR_SET_HEADER", value_name = "HEADERS")]
    pub set_header: Option<String>,
    /// PEM file of CA certificates trusted for https targets, besides the system roots.
    #[arg(long, env = "GOR_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Most body bytes of each staging response kept for the comparison (`GOR_COMPARE`)
    /// and for type 3 records (`GOR_TRACK_STAGING_RESPONSES`); a longer body is cut there
    /// (the comparison then compares status and headers only, and counts it `skipped`).
    #[arg(long, env = "GOR_STAGING_RESPONSE_MAX_BODY", default_value = "1MiB")]
    pub staging_response_max_body: String,
    /// On SIGINT/SIGTERM, how long in-flight mirrored requests may take to finish.
    #[arg(long, env = "GOR_SHUTDOWN_GRACE", default_value = "5s")]
    pub shutdown_grace: String,
}

#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Empty: nothing is mirrored.
    pub targets: Vec<Target>,
    pub rate: Rate,
    pub timeout: Duration,
    pub workers: usize,
    pub pipeline: usize,
    pub queue: usize,
    pub original_host: bool,
    pub set_headers: Vec<(String, String)>,
    /// The PEM file of extra CA certificates (`GOR_TLS_CA`), read by the resolve step.
    pub tls_ca_file: Option<PathBuf>,
    /// Its certificates: empty until resolved, and without a file.
    pub tls_ca: Vec<CaCert>,
    pub shutdown_grace: Duration,
    /// [`MirrorOptions::result_body_limit`].
    pub result_body_limit: usize,
}

impl MirrorConfig {
    /// What the [`Mirror`](super::Mirror) is started with; `exclusion` is told the
    /// local port of each staging connection (live capture only).
    pub fn options(&self, exclusion: Option<std::sync::Arc<dyn PortExclusion>>) -> MirrorOptions {
        MirrorOptions {
            targets: self.targets.clone(),
            rate: self.rate,
            timeout: self.timeout,
            workers: self.workers,
            pipeline: self.pipeline,
            queue: self.queue,
            original_host: self.original_host,
            set_headers: self.set_headers.clone(),
            exclusion,
            tls_ca: self.tls_ca.clone(),
            result_body_limit: self.result_body_limit,
            gates: Vec::new(),
        }
    }
}

impl MirrorArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<MirrorConfig> {
        let mut c = p.of::<Self>();
        let targets = match self.target.as_deref().map(str::trim) {
            None | Some("") => Some(Vec::new()),
            Some(v) => c.parse("target", v, parse_targets),
        };
        let rate = c.parse("rate", &self.rate, parse_rate);
        let timeout = c.parse("timeout", &self.timeout, parse_duration);
        let workers = c.parse("workers", &self.workers, parse_count);
        let pipeline = c.parse("pipeline", &self.pipeline, parse_count);
        let queue = c.parse("queue", &self.queue, parse_count);
        let set_headers = match &self.set_header {
            None => Some(Vec::new()),
            Some(v) => c.parse("set_header", v, parse_set_headers),
        };
        let grace = c.parse("shutdown_grace", &self.shutdown_grace, parse_duration);
        let body_limit = c.parse(
            "staging_response_max_body",
            &self.staging_response_max_body,
            parse_size,
        );
        Some(MirrorConfig {
            targets: targets?,
            rate: rate?,
            timeout: timeout?,
            workers: workers?,
            pipeline: pipeline?,
            queue: queue?,
            original_host: self.original_host,
            set_headers: set_headers?,
            tls_ca_file: self.tls_ca.clone(),
            tls_ca: Vec::new(),
            shutdown_grace: grace?,
            result_body_limit: body_limit?,
        })
    }
}

/// `http://staging:8080,http://staging2/base`.
pub fn parse_targets(s: &str) -> Result<Vec<Target>, String> {
    let targets = s
        .split(',')
        .map(str::trim)
        .map(|u| {
            Target::parse(u).map_err(|e| {
                format!("comma-separated `http(s)://host[:port][/base]` URLs (`{u}`: {e})")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if targets.len() > super::MAX_TARGETS {
        return Err(format!(
            "at most {} targets ({} given)",
            super::MAX_TARGETS,
            targets.len()
        ));
    }
    Ok(targets)
}

/// `100` (requests/s per target), `10%` (a random share), or empty (all).
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    const EXPECTED: &str =
        "`100` (at most 100 requests/s per target), `10%` (a random 10%), or empty (all)";
    let s = s.trim();
    if s.is_empty() {
        return Ok(Rate::All);
    }
    if let Some(p) = s.strip_suffix('%') {
        return match p.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(Rate::Percent(p)),
            _ => Err(EXPECTED.into()),
        };
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Rate::PerSecond(n)),
        _ => Err(EXPECTED.into()),
    }
}

/// `X-Mirrored: 1; X-Env: staging`.
pub fn parse_set_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    const EXPECTED: &str =
        "`Name: value` pairs separated by `;`, e.g. `X-Mirrored: 1; X-Env: staging`";
    let mut out = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once(':').ok_or_else(|| EXPECTED.to_string())?;
        let (name, value) = (name.trim(), value.trim());
        // The same check as the mirror's, so a header accepted here is always sent.
        if crate::http::validate::set_header(name, value).is_err() {
            return Err(EXPECTED.into());
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}
