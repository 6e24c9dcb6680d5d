//! Mirroring's settings: the staging targets (each with its own rate limit if given),
//! the default rate limit, copying to every target or splitting across them, the time
//! limits, the workers and queues per target, the redirects followed, the header
//! rewrites and the extra CA certificates for https targets. [`MirrorArgs::validate`]
//! reads the values only; the CA file is read and parsed by the resolve step
//! (`config::resolve`), into [`MirrorConfig::tls_ca`].

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{target::redact, CaCert, MirrorOptions, PathMode, PortExclusion, Rate, Target};
use crate::settings::{parse_count, parse_duration, parse_size, parse_whole, Problems};

/// Mirroring to staging.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Staging base URLs, comma-separated (`http://host:port[/base]` or `https://...`);
    /// every mirrored request goes to each. `user:pass@` in a URL: basic auth on every
    /// request to it. `URL|100` or `URL|10%`: that target's own rate limit, in place of
    /// GOR_RATE. Empty: nothing is mirrored.
    #[arg(long, env = "GOR_TARGET", value_name = "URLS")]
    pub target: Option<String>,
    /// `100`: at most 100 requests/s per target (excess dropped and counted); `10%`: a
    /// random 10% of requests; empty: all. The default of targets without their own `|N`.
    #[arg(long, env = "GOR_RATE", default_value = "")]
    pub rate: String,
    /// Send each client connection's requests to one target only, the targets taking
    /// connections in turn, instead of every request to every target.
    #[arg(long, env = "GOR_SPLIT_OUTPUT", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub split_output: bool,
    /// What a target URL's path does: `prefix` (prepended to each request's path) or
    /// `replace` (GoReplay's: a URL with a path or query is every request's target).
    #[arg(
        long,
        env = "GOR_TARGET_PATH",
        default_value = "prefix",
        value_name = "MODE"
    )]
    pub target_path: String,
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
    /// Redirects of staging (301, 302, 303, 307, 308) followed per request, each only to
    /// a Location on the same target; 0: never followed, a redirect is the answer.
    #[arg(long, env = "GOR_REDIRECTS", default_value = "0", value_name = "N")]
    pub redirects: String,
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
    /// Accept any certificate from https targets, unverified (a staging with a
    /// self-signed or expired certificate); prefer GOR_TLS_CA.
    #[arg(long, env = "GOR_TLS_SKIP_VERIFY", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub tls_skip_verify: bool,
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
    /// The rate of targets without their own ([`Target::rate`]).
    pub rate: Rate,
    /// [`MirrorOptions::split`].
    pub split: bool,
    pub timeout: Duration,
    pub workers: usize,
    pub pipeline: usize,
    /// [`MirrorOptions::redirects`].
    pub redirects: usize,
    pub queue: usize,
    pub original_host: bool,
    pub set_headers: Vec<(String, String)>,
    /// The PEM file of extra CA certificates (`GOR_TLS_CA`), read by the resolve step.
    pub tls_ca_file: Option<PathBuf>,
    /// Its certificates: empty until resolved, and without a file.
    pub tls_ca: Vec<CaCert>,
    /// [`MirrorOptions::tls_skip_verify`].
    pub tls_skip_verify: bool,
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
            split: self.split,
            timeout: self.timeout,
            workers: self.workers,
            pipeline: self.pipeline,
            redirects: self.redirects,
            queue: self.queue,
            original_host: self.original_host,
            set_headers: self.set_headers.clone(),
            exclusion,
            tls_ca: self.tls_ca.clone(),
            tls_skip_verify: self.tls_skip_verify,
            result_body_limit: self.result_body_limit,
            gates: Vec::new(),
        }
    }

    /// Each target's rate: its own, or the default.
    pub fn rates(&self) -> Vec<Rate> {
        self.targets
            .iter()
            .map(|t| t.rate.unwrap_or(self.rate))
            .collect()
    }
}

impl MirrorArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<MirrorConfig> {
        let mut c = p.of::<Self>();
        let mode = c.parse("target_path", &self.target_path, parse_path_mode);
        let targets = match (self.target.as_deref().map(str::trim), mode) {
            (None | Some(""), _) => Some(Vec::new()),
            (Some(v), Some(mode)) => {
                // The value is shown without its passwords.
                let shown = v.split(',').map(redact).collect::<Vec<_>>().join(",");
                c.field("target", &shown, parse_targets_as(v, mode))
            }
            (Some(_), None) => None,
        };
        let rate = c.parse("rate", &self.rate, parse_rate);
        let timeout = c.parse("timeout", &self.timeout, parse_duration);
        let workers = c.parse("workers", &self.workers, parse_count);
        let pipeline = c.parse("pipeline", &self.pipeline, parse_count);
        let redirects = c.parse("redirects", &self.redirects, parse_whole);
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
            split: self.split_output,
            timeout: timeout?,
            workers: workers?,
            pipeline: pipeline?,
            redirects: redirects?,
            queue: queue?,
            original_host: self.original_host,
            set_headers: set_headers?,
            tls_ca_file: self.tls_ca.clone(),
            tls_ca: Vec::new(),
            tls_skip_verify: self.tls_skip_verify,
            shutdown_grace: grace?,
            result_body_limit: body_limit?,
        })
    }
}

/// `http://staging:8080,http://staging2/base`.
pub fn parse_targets(s: &str) -> Result<Vec<Target>, String> {
    parse_targets_as(s, PathMode::Prefix)
}

/// `http://staging:8080|100,http://user:pass@staging2/base|10%`: each URL, with its own
/// rate after `|`, its path applied as `mode` says.
pub fn parse_targets_as(s: &str, mode: PathMode) -> Result<Vec<Target>, String> {
    let targets = s
        .split(',')
        .map(str::trim)
        .map(|entry| {
            let (url, rate) = match entry.rsplit_once('|') {
                Some((u, r)) => (u.trim(), Some(r)),
                None => (entry, None),
            };
            let bad = |e: String| {
                format!(
                    "comma-separated `http(s)://[user:pass@]host[:port][/base][|N or |N%]` \
                     URLs (`{}`: {e})",
                    redact(entry)
                )
            };
            let mut t = Target::parse_as(url, mode).map_err(bad)?;
            t.rate = match rate.map(str::trim) {
                None => None,
                Some("") => return Err(bad("an empty limit after `|`".into())),
                Some(r) => Some(parse_rate(r).map_err(bad)?),
            };
            Ok(t)
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

/// `prefix` or `replace`.
pub fn parse_path_mode(s: &str) -> Result<PathMode, String> {
    match s.trim() {
        "prefix" => Ok(PathMode::Prefix),
        "replace" => Ok(PathMode::Replace),
        _ => Err("`prefix` or `replace`".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_their_own_rates_after_a_bar() {
        let t = parse_targets("http://a:1|10, http://u:p@b:2/x|50%,http://c:3").unwrap();
        assert_eq!(
            t.iter().map(|t| t.rate).collect::<Vec<_>>(),
            [Some(Rate::PerSecond(10)), Some(Rate::Percent(50.0)), None]
        );
        assert!(t[1].authorization.is_some() && t[1].base_path == "/x");
        for bad in ["http://a|", "http://a|0", "http://a|x%", "http://a|101%"] {
            assert!(parse_targets(bad).is_err(), "{bad}");
        }
        let e = parse_targets("http://u:hunter2@a|nope").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let t = parse_targets_as("http://a/p?q=1|5", PathMode::Replace).unwrap();
        assert_eq!(t[0].fixed_target.as_deref(), Some("/p?q=1"));
        assert_eq!(parse_path_mode("replace"), Ok(PathMode::Replace));
        assert!(parse_path_mode("other").is_err());
    }

    #[test]
    fn each_target_rate_falls_back_to_the_default() {
        let mut p = Problems::default();
        let args = MirrorArgs {
            target: Some("http://a|10,http://b".into()),
            rate: "5%".into(),
            split_output: true,
            target_path: "prefix".into(),
            timeout: "5s".into(),
            workers: "1".into(),
            pipeline: "1".into(),
            redirects: "2".into(),
            queue: "1".into(),
            original_host: false,
            set_header: None,
            tls_ca: None,
            tls_skip_verify: false,
            staging_response_max_body: "1MiB".into(),
            shutdown_grace: "1s".into(),
        };
        let c = args.validate(&mut p).unwrap();
        assert_eq!(c.rates(), [Rate::PerSecond(10), Rate::Percent(5.0)]);
        assert!(c.split && c.options(None).split);
        assert_eq!(c.options(None).redirects, 2);
    }
}
