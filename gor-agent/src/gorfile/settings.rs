//! The settings of `gor-agent replay`: which saved-traffic files to read, and how fast
//! to play them (speed, looping, longest wait), or only to count them (dry run). [`InputFileArgs::validate`] reads the
//! values only; whether the files can be opened is the resolve step's question
//! (`config::resolve`).
//!
//! They are declared beside the reader rather than in `replay`, which plays them: `replay`
//! is a driver source and builds on the pipeline, which reads the whole configuration,
//! so the configuration cannot import it without an import cycle; the reader's module
//! depends on nothing that reads the configuration.

use std::time::Duration;

use clap::Args;

use crate::settings::{parse_duration, Problems};

/// Reading saved traffic.
#[derive(Debug, Args)]
pub struct InputFileArgs {
    /// Files to replay: a path or a pattern with `*`/`?` in the file name, e.g.
    /// `/var/lib/gor/requests-*.gor.gz`; records of all files are merged in timestamp
    /// order. GoReplay's `FILE|200%` form sets this input's speed. Repeatable (the
    /// environment twin takes several separated by newlines): each input is replayed
    /// from the start, at its own speed, alongside the others.
    #[arg(
        long,
        env = "GOR_INPUT_FILE",
        value_name = "PATTERN",
        value_delimiter = '\n'
    )]
    pub input_file: Vec<String>,
    /// Replay speed relative to the recording: `100%` keeps the original pacing, `200%`
    /// halves every gap, `50%` doubles it. `max`: no pacing, as fast as staging takes
    /// the requests (the replay waits for staging instead of dropping).
    #[arg(long, env = "GOR_SPEED", default_value = "100%")]
    pub speed: String,
    /// Start again from the first record after the last one, until stopped.
    #[arg(long = "loop", alias = "input-file-loop", env = "GOR_INPUT_FILE_LOOP", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub looping: bool,
    /// Longest wait between two records (longer gaps in the recording are shortened to
    /// this), e.g. `1s`. Empty: gaps are kept as recorded (scaled by the speed).
    #[arg(
        long,
        alias = "input-file-max-wait",
        env = "GOR_INPUT_FILE_MAX_WAIT",
        default_value = ""
    )]
    pub max_wait: String,
    /// Send nothing: read the files, print how many records they hold and how long the
    /// replay would take at this speed, and exit.
    #[arg(long, alias = "input-file-dry-run", env = "GOR_DRY_RUN", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub dry_run: bool,
}

/// Replaying saved traffic.
#[derive(Debug, Clone)]
pub struct FileInputConfig {
    /// One or more inputs, replayed side by side.
    pub inputs: Vec<FileInput>,
    pub looping: bool,
    /// Gaps between records are cut to this.
    pub max_wait: Option<Duration>,
    /// Count, do not send.
    pub dry_run: bool,
}

/// One `--input-file`: its files and its speed.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInput {
    pub pattern: String,
    /// 2.0 replays twice as fast as recorded.
    pub speed: f64,
}

impl InputFileArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<FileInputConfig> {
        let mut c = p.of::<Self>();
        let given: Vec<&str> = self
            .input_file
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        if given.is_empty() {
            return c.field(
                "input_file",
                "",
                Err("a file or pattern of saved traffic; it is required".into()),
            );
        }
        let default_speed = c.parse("speed", &self.speed, parse_speed);
        let mut inputs = Some(Vec::new());
        for v in given {
            // GoReplay's `requests.gor|200%`.
            let (pattern, speed) = match v.rsplit_once('|') {
                Some((p, speed)) => (p.trim(), c.parse("input_file", speed.trim(), parse_speed)),
                None => (v, default_speed),
            };
            match (speed, inputs.as_mut()) {
                (Some(speed), Some(list)) => list.push(FileInput {
                    pattern: pattern.to_string(),
                    speed,
                }),
                _ => inputs = None,
            }
        }
        let max_wait = match self.max_wait.trim() {
            "" => Some(None),
            v => c.field("max_wait", v, parse_duration(v).map(Some)),
        };
        Some(FileInputConfig {
            inputs: inputs?,
            looping: self.looping,
            max_wait: max_wait?,
            dry_run: self.dry_run,
        })
    }
}

/// `200%` (twice as fast as recorded), `50%`, `2x`, or `max` (infinite: no pacing).
pub fn parse_speed(s: &str) -> Result<f64, String> {
    const EXPECTED: &str =
        "a speed such as `100%` (as recorded), `200%` (twice as fast), `2x` or `max`";
    let s = s.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(f64::INFINITY);
    }
    let factor = if let Some(p) = s.strip_suffix('%') {
        p.trim().parse::<f64>().ok().map(|p| p / 100.0)
    } else if let Some(x) = s.strip_suffix('x') {
        x.trim().parse::<f64>().ok()
    } else {
        None
    };
    match factor {
        Some(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(EXPECTED.into()),
    }
}
