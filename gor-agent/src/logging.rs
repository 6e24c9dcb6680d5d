//! Logs: `tracing`, filtered by `GOR_LOG`, plain or JSON by `GOR_LOG_FORMAT`, on stderr.
//! Records from the `log` crate, among them the eBPF programs' own records forwarded by
//! aya-log, go through the same subscriber.
//!
//! The settings of logs and of the agent's own reporting (the metrics endpoint, the
//! runtime's threads) are declared here too: [`LogArgs`], validated into [`LogConfig`].

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use clap::Args;

use crate::settings::Problems;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `gor_agent=debug`.
    #[arg(long, env = "GOR_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `plain` or `json`.
    #[arg(long, env = "GOR_LOG_FORMAT", default_value = "plain")]
    pub log_format: String,
    /// Where to serve Prometheus metrics (`GET /metrics`), e.g. `127.0.0.1:9091` or
    /// `[::1]:9091`; port 0 picks a free port (logged). Empty: no metrics endpoint.
    #[arg(long, env = "GOR_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    pub metrics_addr: String,
    /// Threads that run the agent's work (draining, framing, mirroring): at most this
    /// many cores. One keeps the agent off all but one of production's cores.
    #[arg(long, env = "GOR_THREADS", default_value = "1")]
    pub threads: String,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub json: bool,
    /// The metrics endpoint's address, if any.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Worker threads of the runtime.
    pub threads: usize,
}

impl LogArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<LogConfig> {
        let mut c = p.of::<Self>();
        let metrics_addr = c.parse("metrics_addr", &self.metrics_addr, parse_metrics_addr);
        let threads = c.parse("threads", &self.threads, |v| match v.trim().parse() {
            Ok(n @ 1..=256) => Ok(n),
            _ => Err("a number of threads from 1 to 256".to_string()),
        });
        let json = c.parse("log_format", &self.log_format, |v| match v {
            "plain" => Ok(false),
            "json" => Ok(true),
            _ => Err("`plain` or `json`".to_string()),
        });
        let filter = c.parse("log", &self.log, |v| {
            EnvFilter::try_new(v)
                .map(|_| v.to_string())
                .map_err(|e| format!("a tracing filter such as `info` or `gor_agent=debug` ({e})"))
        });
        Some(LogConfig {
            filter: filter?,
            json: json?,
            metrics_addr: metrics_addr?,
            threads: threads?,
        })
    }
}

/// `host:port` (an IP address: the endpoint must not depend on DNS), or empty for none.
fn parse_metrics_addr(s: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match s.trim() {
        "" => Ok(None),
        v => v.parse().map(Some).map_err(|_| {
            "an IP address and port such as `127.0.0.1:9091` or `[::1]:9091`, or empty for \
             no metrics"
                .to_string()
        }),
    }
}

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_new(&cfg.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in journald or log files.
        .with_ansi(std::io::stderr().is_terminal());
    let res = if cfg.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = res {
        eprintln!("gor-agent: logging already set up: {e}");
    }
}
