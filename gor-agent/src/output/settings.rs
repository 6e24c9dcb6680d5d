//! The outputs' settings: printing, per-connection stream files, JSON lines of messages,
//! GoReplay's saved-traffic file, and the counters' file and interval. Where the saved
//! traffic file is written is decided by its writer (`gorfile`) from
//! [`FileOutputConfig`], declared here so that the outputs' settings are in one place.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::settings::{parse_duration, parse_size, Problems};

/// Where captured traffic goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print each connection's bytes as they become ordered (for watching what is captured).
    #[arg(long, env = "GOR_OUTPUT_STDOUT", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_stdout: bool,
    /// Write each connection's two byte streams to files in this directory
    /// (`<id>.c2s`, `<id>.s2c`, and `connections.jsonl` with one line per closed connection).
    #[arg(long, env = "GOR_OUTPUT_STREAMS", value_name = "DIR")]
    pub output_streams: Option<PathBuf>,
    /// Write every framed HTTP message as a JSON line (with its raw bytes in base64) to this file.
    #[arg(long, env = "GOR_OUTPUT_MESSAGES", value_name = "FILE")]
    pub output_messages: Option<PathBuf>,
    /// Save traffic to this file in GoReplay's format (`.gz`: compressed; `%Y-%m-%d-%H`
    /// and the like: one file per period, UTC). Files are created with mode 0600.
    #[arg(long, env = "GOR_OUTPUT_FILE", value_name = "PATTERN")]
    pub output_file: Option<String>,
    /// Start a new file (`name_1.gor`, ...) before one would grow past this size.
    #[arg(long, env = "GOR_OUTPUT_FILE_SIZE_LIMIT", default_value = "256MiB")]
    pub output_file_size_limit: String,
    /// Also save the original responses (type 2) in the output file, and send them to
    /// the middleware.
    #[arg(long, env = "GOR_TRACK_RESPONSES", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub track_responses: bool,
    /// Staging's responses become GoReplay's type 3 records (the request's id, when it was
    /// sent, the latency): sent to the middleware, saved in the output file and the
    /// messages file. Needs GOR_TARGET.
    #[arg(long, alias = "output-http-track-response", env = "GOR_TRACK_STAGING_RESPONSES", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub track_staging_responses: bool,
    /// Write the counters as JSON to this file every stats interval and at exit.
    #[arg(long, env = "GOR_STATS_FILE", value_name = "FILE")]
    pub stats_file: Option<PathBuf>,
    /// How often counters are logged (and written to the stats file).
    #[arg(long, env = "GOR_STATS_INTERVAL", default_value = "10s")]
    pub stats_interval: String,
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub stdout: bool,
    pub streams_dir: Option<PathBuf>,
    pub messages_file: Option<PathBuf>,
    /// GoReplay-format traffic file.
    pub gor_file: Option<FileOutputConfig>,
    /// Original responses go to the saved-traffic file and to the middleware.
    pub track_responses: bool,
    /// Staging's responses go there as type 3 records.
    pub track_staging_responses: bool,
    pub stats_file: Option<PathBuf>,
    pub stats_interval: Duration,
}

/// Where and how to write saved traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOutputConfig {
    /// The file path. May contain `%Y %m %d %H %M %S` (UTC, from each record's timestamp;
    /// `%%` is a `%`); a name ending in `.gz` is gzip-compressed.
    pub pattern: String,
    /// Rotate to `name_1.ext`, `name_2.ext`... before a record would make the file exceed
    /// this many bytes (on disk, compressed for gzip). A record larger than this is written
    /// alone in its own file.
    pub max_size: Option<u64>,
    /// Write responses too (type 2); otherwise only requests.
    pub track_responses: bool,
}

impl OutputArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<OutputConfig> {
        let mut c = p.of::<Self>();
        let file_limit = c.parse(
            "output_file_size_limit",
            &self.output_file_size_limit,
            parse_size,
        );
        let stats_interval = c.parse("stats_interval", &self.stats_interval, parse_duration);
        let gor_file = match &self.output_file {
            None => None,
            Some(pattern) => Some(FileOutputConfig {
                pattern: pattern.clone(),
                max_size: Some(file_limit? as u64),
                track_responses: self.track_responses,
            }),
        };
        Some(OutputConfig {
            stdout: self.output_stdout,
            streams_dir: self.output_streams.clone(),
            messages_file: self.output_messages.clone(),
            gor_file,
            track_responses: self.track_responses,
            track_staging_responses: self.track_staging_responses,
            stats_file: self.stats_file.clone(),
            stats_interval: stats_interval?,
        })
    }
}
