//! Logs: `tracing`, filtered by `GOR_LOG`, plain or JSON by `GOR_LOG_FORMAT`, on stderr.
//! Records from the `log` crate, among them the eBPF programs' own records forwarded by
//! aya-log, go through the same subscriber.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

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
