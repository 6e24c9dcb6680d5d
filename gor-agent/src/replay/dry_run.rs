//! `--dry-run` (GoReplay's `--input-file-dry-run`): every input read once through the
//! schedule a replay would use, counting instead of sending. What it prints tells how
//! many records the files hold and how long replaying them would take at the given
//! speed and longest wait, before anything reaches staging.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Schedule;
use crate::gorfile::settings::FileInputConfig;
use crate::gorfile::{GorReader, RecordType};

/// What one input holds and how long its replay would take.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DryRun {
    pub pattern: String,
    pub speed: f64,
    pub files: usize,
    /// Every record, of every type.
    pub records: u64,
    /// Of them, requests (what would be sent).
    pub requests: u64,
    /// The records' payload bytes.
    pub bytes: u64,
    /// From the first record to the last, at the input's speed, gaps cut to the longest
    /// wait.
    pub duration: Duration,
    /// Records stamped before the one read ahead of them (due at once in a replay).
    pub out_of_order: u64,
    /// Damaged records that a replay would skip.
    pub damaged: u64,
}

/// Reads every input of `input` once, sending nothing.
pub fn dry_run(input: &FileInputConfig) -> Result<Vec<DryRun>> {
    input
        .inputs
        .iter()
        .map(|one| {
            let mut reader = GorReader::open(&one.pattern)
                .with_context(|| format!("opening saved traffic {}", one.pattern))?;
            let mut schedule = Schedule::new(one.speed, input.max_wait);
            let mut run = DryRun {
                pattern: one.pattern.clone(),
                speed: one.speed,
                files: reader.files().len(),
                ..DryRun::default()
            };
            let mut latest = None;
            for rec in reader.by_ref() {
                run.records += 1;
                run.requests += u64::from(rec.kind == RecordType::Request);
                run.bytes += rec.payload.len() as u64;
                if latest.is_some_and(|t| rec.timestamp_ns < t) {
                    run.out_of_order += 1;
                }
                latest = latest.max(Some(rec.timestamp_ns));
                run.duration = schedule.due(rec.timestamp_ns);
            }
            run.damaged = reader.damaged().len() as u64;
            Ok(run)
        })
        .collect()
}

impl fmt::Display for DryRun {
    /// GoReplay's lines, in words a person reads without its source at hand.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Input: {}", self.pattern)?;
        writeln!(f, "Files processed: {}", self.files)?;
        writeln!(
            f,
            "Records found: {} ({} requests)",
            self.records, self.requests
        )?;
        writeln!(f, "Bytes processed: {}", self.bytes)?;
        let speed = if self.speed.is_infinite() {
            "max".to_string()
        } else {
            format!("{}%", (self.speed * 100.0).round())
        };
        writeln!(
            f,
            "It will take `{:.3}s` to replay at {speed} speed.",
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "Found {} records with out of order timestamp",
            self.out_of_order
        )?;
        writeln!(f, "Damaged records skipped: {}", self.damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gorfile::settings::FileInput;
    use crate::gorfile::{encode, Record};

    fn record(kind: RecordType, id: &str, ts_ms: u64) -> Record {
        Record {
            kind,
            id: id.into(),
            timestamp_ns: 1_700_000_000_000_000_000 + ts_ms * 1_000_000,
            latency_ns: 0,
            payload: bytes::Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        }
    }

    #[test]
    fn counts_records_and_the_scaled_span() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.gor");
        let mut out = Vec::new();
        for r in [
            record(RecordType::Request, "a", 0),
            record(RecordType::Response, "a", 5),
            record(RecordType::Request, "b", 1000),
            record(RecordType::Request, "c", 900),
            record(RecordType::Request, "d", 2000),
        ] {
            encode(&r, &mut out);
        }
        std::fs::write(&path, out).expect("write");
        let cfg = FileInputConfig {
            inputs: vec![FileInput {
                pattern: path.to_str().expect("utf8").into(),
                speed: 2.0,
            }],
            looping: true,
            max_wait: None,
            dry_run: true,
        };
        let runs = dry_run(&cfg).expect("dry run");
        let run = &runs[0];
        assert_eq!((run.files, run.records, run.requests), (1, 5, 4));
        assert_eq!(run.out_of_order, 1);
        // 2 s recorded, at 200%.
        assert_eq!(run.duration, Duration::from_secs(1));
        let text = run.to_string();
        assert!(text.contains("Records found: 5 (4 requests)"), "{text}");
        assert!(
            text.contains("It will take `1.000s` to replay at 200% speed."),
            "{text}"
        );
        let capped = FileInputConfig {
            max_wait: Some(Duration::from_millis(100)),
            ..cfg
        };
        // Gaps of 5 ms, 995 ms (cut to 100), none (out of order), 1 s (cut to 100).
        let d = dry_run(&capped).expect("dry run")[0].duration;
        assert_eq!(d, Duration::from_micros(2_500 + 100_000 + 100_000));
    }
}
