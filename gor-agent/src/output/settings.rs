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
    /// Print every message on stdout as a GoReplay record (meta line, raw bytes,
    /// separator): what GoReplay's `--output-stdout` prints. Responses as for the file.
    #[arg(long, env = "GOR_OUTPUT_STDOUT_RECORDS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_stdout_records: bool,
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
    /// Start a new file after this many records (GoReplay's queue limit); 0: no limit.
    #[arg(long, env = "GOR_OUTPUT_FILE_QUEUE_LIMIT", default_value = "0")]
    pub output_file_queue_limit: u64,
    /// Stop saving once all files together hold this much (uncompressed records, e.g.
    /// `10GiB`); later records are dropped and counted. Empty: no cap.
    #[arg(long, env = "GOR_OUTPUT_FILE_MAX_SIZE_LIMIT", default_value = "")]
    pub output_file_max_size_limit: String,
    /// Append to the file the pattern names (existing or not) instead of starting new
    /// files: no size or record rotation, time placeholders still name new files.
    #[arg(long, env = "GOR_OUTPUT_FILE_APPEND", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub output_file_append: bool,
    /// Write batched records once the oldest is this old (checked at each record and
    /// every second).
    #[arg(long, env = "GOR_OUTPUT_FILE_FLUSH_INTERVAL", default_value = "1s")]
    pub output_file_flush_interval: String,
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
    /// Stop after this long, as on SIGTERM (in-flight work finishes, final report, exit
    /// 0), e.g. `30s`. Empty: run until stopped (or the end of the input).
    #[arg(long, env = "GOR_EXIT_AFTER", default_value = "")]
    pub exit_after: String,
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub stdout: bool,
    /// GoReplay's records on stdout.
    pub stdout_records: bool,
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
    /// Stop after this long.
    pub exit_after: Option<Duration>,
}

/// Where and how to write saved traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOutputConfig {
    /// The file path. May contain GoReplay's placeholders: `%Y %m %d %H %M %S` (UTC, from
    /// each record's timestamp), `%NS` (the nanoseconds of that second), `%r` (the
    /// record's id), `%t` (its type, 1 2 3), `%i` (an id of this writer), `%%` (a `%`); a
    /// name ending in `.gz` is gzip-compressed.
    pub pattern: String,
    /// Rotate to `name_1.ext`, `name_2.ext`... before a record would make the file exceed
    /// this many bytes (on disk, compressed for gzip). A record larger than this is written
    /// alone in its own file.
    pub max_size: Option<u64>,
    /// Rotate after this many records.
    pub max_records: Option<u64>,
    /// Drop records once all files together hold this many (uncompressed) bytes.
    pub max_total: Option<u64>,
    /// Append to the named file instead of creating new ones; no rotation.
    pub append: bool,
    /// A batch is written once its first record is this old.
    pub flush_interval: Duration,
    /// Write responses too (type 2); otherwise only requests.
    pub track_responses: bool,
}

impl FileOutputConfig {
    /// Writing to `pattern`, rotated at `max_size`, with the defaults for the rest.
    pub fn new(pattern: &str, max_size: Option<u64>, track_responses: bool) -> Self {
        FileOutputConfig {
            pattern: pattern.to_string(),
            max_size,
            max_records: None,
            max_total: None,
            append: false,
            flush_interval: Duration::from_secs(1),
            track_responses,
        }
    }
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
        let max_total = match self.output_file_max_size_limit.trim() {
            "" => Some(None),
            v => c
                .parse("output_file_max_size_limit", v, parse_size)
                .map(|n| Some(n as u64)),
        };
        let flush_interval = c.parse(
            "output_file_flush_interval",
            &self.output_file_flush_interval,
            parse_duration,
        );
        let exit_after = match self.exit_after.trim() {
            "" => Some(None),
            v => c.parse("exit_after", v, parse_duration).map(Some),
        };
        let gor_file = match &self.output_file {
            None => None,
            Some(pattern) => Some(FileOutputConfig {
                pattern: pattern.clone(),
                max_size: Some(file_limit? as u64),
                max_records: Some(self.output_file_queue_limit).filter(|n| *n > 0),
                max_total: max_total?,
                append: self.output_file_append,
                flush_interval: flush_interval?,
                track_responses: self.track_responses,
            }),
        };
        Some(OutputConfig {
            stdout: self.output_stdout,
            stdout_records: self.output_stdout_records,
            streams_dir: self.output_streams.clone(),
            messages_file: self.output_messages.clone(),
            gor_file,
            track_responses: self.track_responses,
            track_staging_responses: self.track_staging_responses,
            stats_file: self.stats_file.clone(),
            stats_interval: stats_interval?,
            exit_after: exit_after?,
        })
    }
}
