//! The settings of `gor-agent replay`: which saved-traffic files to read, and how fast
//! to play them (speed, looping, longest wait). [`InputFileArgs::validate`] reads the
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
    /// order. GoReplay's `FILE|200%` form sets the speed too.
    #[arg(long, env = "GOR_INPUT_FILE", value_name = "PATTERN")]
    pub input_file: Option<String>,
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
}

/// Replaying saved traffic.
#[derive(Debug, Clone)]
pub struct FileInputConfig {
    pub pattern: String,
    /// 2.0 replays twice as fast as recorded.
    pub speed: f64,
    pub looping: bool,
    /// Gaps between records are cut to this.
    pub max_wait: Option<Duration>,
}

impl InputFileArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<FileInputConfig> {
        let mut c = p.of::<Self>();
        let (pattern, speed_suffix) = match self.input_file.as_deref().map(str::trim) {
            None | Some("") => {
                return c.field(
                    "input_file",
                    "",
                    Err("a file or pattern of saved traffic; it is required".into()),
                );
            }
            // GoReplay's `requests.gor|200%`.
            Some(v) => match v.rsplit_once('|') {
                Some((p, speed)) => (p.trim(), Some(speed.trim())),
                None => (v, None),
            },
        };
        let speed_text = speed_suffix.unwrap_or(&self.speed);
        let speed = c.parse("speed", speed_text, parse_speed);
        let max_wait = match self.max_wait.trim() {
            "" => Some(None),
            v => c.field("max_wait", v, parse_duration(v).map(Some)),
        };
        Some(FileInputConfig {
            pattern: pattern.to_string(),
            speed: speed?,
            looping: self.looping,
            max_wait: max_wait?,
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
