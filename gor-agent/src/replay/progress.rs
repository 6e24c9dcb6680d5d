//! Progress of a replay: a bar redrawn in place when stderr is a terminal, a plain line
//! every stats interval otherwise (journald, CI logs, files). Progress is measured in bytes
//! of the input files read (compressed bytes for gzip), which needs no first pass over
//! the files; the rate is records per second and the ETA is extrapolated from the bytes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::dispatch::Dispatch;

const BAR_WIDTH: usize = 30;
pub(super) const BAR_REFRESH: Duration = Duration::from_millis(250);

pub struct Progress {
    total: u64,
    /// One counter per input.
    read: Vec<Arc<AtomicU64>>,
    tty: bool,
    interval: Duration,
    pass_started: Instant,
    pass: u64,
    last_shown: Instant,
    last_records: u64,
    drawn: bool,
}

impl Progress {
    /// `total` bytes to read per pass, the inputs' `read` counting them; `lines` is the
    /// interval of plain lines when stderr is not a terminal.
    pub fn new(total: u64, read: Vec<Arc<AtomicU64>>, lines: Duration) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            total,
            read,
            tty,
            interval: if tty { BAR_REFRESH } else { lines },
            pass_started: now,
            pass: 1,
            last_shown: now,
            last_records: 0,
            drawn: false,
        }
    }

    /// Whether it is time to show progress again.
    pub fn due(&self) -> bool {
        self.last_shown.elapsed() >= self.interval
    }

    pub fn new_pass(&mut self) {
        self.pass += 1;
        self.pass_started = Instant::now();
    }

    pub fn show(&mut self, records: u64, dispatch: &Dispatch) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_shown).as_secs_f64().max(1e-3);
        let rate = (records - self.last_records.min(records)) as f64 / secs;
        self.last_shown = now;
        self.last_records = records;
        let line = self.line(records, rate, dispatch);
        if self.tty {
            let mut err = std::io::stderr().lock();
            // `\r` and erase-line: the bar is redrawn in place.
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
            self.drawn = true;
        } else {
            info!("replay progress: {line}");
        }
    }

    /// The last state, and the end of the bar's line.
    pub fn finish(&mut self, records: u64, dispatch: &Dispatch) {
        self.show(records, dispatch);
        if self.drawn {
            eprintln!();
        }
    }

    fn line(&self, records: u64, rate: f64, dispatch: &Dispatch) -> String {
        let read: u64 = self.read.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        let read = read.min(self.total);
        let fraction = if self.total == 0 {
            1.0
        } else {
            read as f64 / self.total as f64
        };
        let elapsed = self.pass_started.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 && fraction < 1.0 {
            format_secs(elapsed * (1.0 - fraction) / fraction)
        } else {
            "-".into()
        };
        let pass = if self.pass > 1 {
            format!(" pass {}", self.pass)
        } else {
            String::new()
        };
        let mirror = match dispatch.mirror_stats() {
            Some(r) => {
                let t = &r.total;
                let dropped = r.sampled_out
                    + t.rate_limited
                    + t.queue_full
                    + t.lane_queue_full
                    + t.lanes_full
                    + t.dropped_backoff;
                let failed = t.connect_errors + t.timeouts + t.resets + t.bad_responses;
                format!(", sent {}, dropped {dropped}, failed {failed}", t.sent)
            }
            None => String::new(),
        };
        let percent = fraction * 100.0;
        if self.tty {
            let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
            format!(
                "[{}{}] {percent:3.0}%{pass}  {records} records  {rate:.0}/s  ETA {eta}{mirror}",
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH - filled),
            )
        } else {
            format!("{percent:.0}% read{pass}, {records} records, {rate:.0}/s, ETA {eta}{mirror}")
        }
    }
}

/// `42s`, `3m05s`, `1h02m`.
fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::format_secs;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_secs(42.4), "42s");
        assert_eq!(format_secs(185.0), "3m05s");
        assert_eq!(format_secs(3720.0), "1h02m");
    }
}
