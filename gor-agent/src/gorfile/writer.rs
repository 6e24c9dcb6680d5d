//! Writing `.gor` files: an output for framed messages, with gzip, GoReplay's file-name
//! placeholders, size- and count-based rotation, appending, and a cap on all files
//! together; and the same records on stdout (GoReplay's `--output-stdout`).
//!
//! Records are encoded into a batch that is written (and, for gzip, sync-flushed) once it
//! reaches [`BATCH_BYTES`] or is a flush interval old, so we know exactly which records reached the
//! file and, for gzip, exactly how many compressed bytes it holds: that is what size
//! rotation is decided on. Files are created with mode 0600 (captured traffic holds
//! credentials) and never overwrite an existing file. Write errors (a full disk, say) are
//! counted and logged at most every [`LOG_EVERY`], the records are dropped, and writing is
//! retried after [`RETRY_AFTER`]: capture never stops or panics because of the disk.

use crate::clock::ToWall;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{encode, Record};
use crate::http::HttpMessage;
use crate::output::messages::{MessageOutput, Replayed};
/// Declared with the other outputs' settings.
pub use crate::output::settings::FileOutputConfig;

/// A batch is written once it holds this many bytes, or once its first record is a flush
/// interval old ([`FileOutputConfig::flush_interval`]), so a quiet capture still reaches
/// the disk.
pub const BATCH_BYTES: usize = 64 * 1024;
/// After a write error, records are dropped for this long before writing is tried again,
/// so a full disk costs a counter increment per record, not a failing syscall.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At most one warning per this period; the others are counted in the next one.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Bytes a gzip file may still grow by at finish: the final empty block and the 8-byte
/// trailer (the 10-byte header is counted in case nothing was written yet), with slack.
const GZ_FINISH_BYTES: u64 = 32;

/// What the output did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileStats {
    /// Records that reached a file (counted when their batch is written).
    pub records_written: u64,
    /// Their encoded, uncompressed bytes.
    pub bytes_written: u64,
    pub files_opened: u64,
    /// Failed writes, opens and gzip finishes.
    pub write_errors: u64,
    /// Records lost to write errors, or dropped while waiting to retry after one.
    pub records_dropped: u64,
    /// Records not written because all files together reached the size cap
    /// (`GOR_OUTPUT_FILE_MAX_SIZE_LIMIT`).
    pub records_over_max_size: u64,
}

/// Writes framed messages as GoReplay records.
pub struct FileOutput {
    cfg: FileOutputConfig,
    /// Turns the messages' timestamps into the wall-clock times GoReplay expects.
    to_wall: ToWall,
    /// The pattern names files by the records' time, id or type.
    has_placeholders: bool,
    /// `%r` or `%t`: a name comes back (a response after its request), so a file this
    /// pattern names is appended to rather than replaced by a new one.
    keyed: bool,
    /// What `%i` stands for.
    instance: String,
    /// Encoded bytes given to files so far, for the cap on all of them.
    total_bytes: u64,
    over_max_logged: bool,
    current: Option<OpenFile>,
    /// Encoded records not yet written to `current`.
    batch: Vec<u8>,
    batch_records: u64,
    batch_since: Option<Instant>,
    /// The latest record second seen: file names follow it, so a record slightly out of
    /// order at an hour boundary does not bounce back to (a new copy of) the old file.
    clock_s: u64,
    retry_at: Option<Instant>,
    last_log: Option<Instant>,
    suppressed_logs: u64,
    stats: FileStats,
    scratch: Vec<u8>,
}

struct OpenFile {
    /// The expanded pattern this file belongs to, before any `_N` suffix.
    base: String,
    path: PathBuf,
    index: u32,
    sink: Sink,
    /// Records given to this file (written or batched).
    records: u64,
    /// False for devices and pipes (e.g. `/dev/stdout`): they are written, never rotated.
    rotatable: bool,
}

enum Sink {
    Plain(Counting<Box<dyn Write + Send>>),
    Gz(GzEncoder<Counting<File>>),
}

impl Sink {
    /// Bytes in the file so far.
    fn file_bytes(&self) -> u64 {
        match self {
            Sink::Plain(w) => w.count,
            Sink::Gz(w) => w.get_ref().count,
        }
    }

    fn write_batch(&mut self, batch: &[u8]) -> io::Result<()> {
        match self {
            // A flush for stdout, whose buffer is not ours; a no-op for a file.
            Sink::Plain(w) => w.write_all(batch).and_then(|()| w.flush()),
            Sink::Gz(w) => {
                w.write_all(batch)?;
                // A sync flush: the file then holds every byte so far as valid deflate
                // data, and its size is exact. Once per batch, so compression barely suffers.
                w.flush()
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(_) => Ok(()),
            Sink::Gz(w) => w.finish().map(|_| ()),
        }
    }
}

/// Counts the bytes that reach the inner writer.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FileOutput {
    /// Creates the output. Without time placeholders the file is opened now, so a bad
    /// path fails here rather than on the first message.
    pub fn new(cfg: FileOutputConfig, to_wall: ToWall) -> io::Result<Self> {
        if cfg.pattern.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty output file pattern",
            ));
        }
        let has_placeholders = PLACEHOLDERS.iter().any(|p| cfg.pattern.contains(p));
        let keyed = ["%r", "%t"].iter().any(|p| cfg.pattern.contains(p));
        let mut out = FileOutput::with(cfg, to_wall);
        out.has_placeholders = has_placeholders;
        out.keyed = keyed;
        if !has_placeholders {
            let base = out.cfg.pattern.clone();
            let file = out.open(base, 0)?;
            out.current = Some(file);
        }
        Ok(out)
    }

    /// GoReplay's `--output-stdout`: the same records, on stdout, never rotated.
    pub fn stdout(track_responses: bool, to_wall: ToWall) -> Self {
        let cfg = FileOutputConfig::new("-", None, track_responses);
        let mut out = FileOutput::with(cfg, to_wall);
        out.current = Some(OpenFile {
            base: "-".into(),
            path: PathBuf::from("<stdout>"),
            index: 0,
            sink: Sink::Plain(Counting {
                inner: Box::new(io::stdout()),
                count: 0,
            }),
            records: 0,
            rotatable: false,
        });
        out
    }

    fn with(cfg: FileOutputConfig, to_wall: ToWall) -> Self {
        use std::hash::{BuildHasher, Hasher};
        // Random per process (std seeds it so), as GoReplay's eight letters are.
        let instance = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        FileOutput {
            cfg,
            to_wall,
            has_placeholders: false,
            keyed: false,
            instance: format!("{:08x}", instance as u32),
            total_bytes: 0,
            over_max_logged: false,
            current: None,
            batch: Vec::with_capacity(BATCH_BYTES),
            batch_records: 0,
            batch_since: None,
            clock_s: 0,
            retry_at: None,
            last_log: None,
            suppressed_logs: 0,
            stats: FileStats::default(),
            scratch: Vec::new(),
        }
    }

    pub fn stats(&self) -> FileStats {
        self.stats.clone()
    }

    /// Writes batched records now; for a caller's timer, since batches otherwise wait for
    /// the next record (or [`MessageOutput::finish`]) once the flush interval has passed.
    pub fn flush(&mut self) {
        self.flush_batch();
    }

    /// The file being written, if one is open.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|f| f.path.as_path())
    }

    /// Writes one record (also for callers with records rather than messages, e.g. a
    /// `.gor` to `.gor` copy). Never fails: errors are counted in [`FileStats`].
    pub fn write_record(&mut self, rec: &Record) {
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                self.stats.records_dropped += 1;
                return;
            }
            self.retry_at = None;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        encode(rec, &mut scratch);
        if let Some(max) = self.cfg.max_total {
            if self.total_bytes + scratch.len() as u64 > max {
                self.stats.records_over_max_size += 1;
                if !self.over_max_logged {
                    self.over_max_logged = true;
                    tracing::warn!(
                        max_bytes = max,
                        "the output files reached GOR_OUTPUT_FILE_MAX_SIZE_LIMIT; later records are not saved"
                    );
                }
                self.scratch = scratch;
                return;
            }
        }
        self.total_bytes += scratch.len() as u64;
        self.place(rec, scratch.len() as u64);
        if self.current.is_some() {
            self.batch.extend_from_slice(&scratch);
            self.batch_records += 1;
            self.batch_since.get_or_insert_with(Instant::now);
            if let Some(f) = self.current.as_mut() {
                f.records += 1;
            }
            let old = self
                .batch_since
                .is_some_and(|t| t.elapsed() >= self.cfg.flush_interval);
            if self.batch.len() >= BATCH_BYTES || old {
                self.flush_batch();
            }
        } else {
            self.stats.records_dropped += 1;
        }
        self.scratch = scratch;
    }

    /// Makes `current` the file `rec` (`len` bytes encoded) goes to: a new file for a new
    /// expansion of the pattern, when the current one would grow past `max_size`, or
    /// when it holds `max_records`. In append mode the named file only, never rotated.
    fn place(&mut self, rec: &Record, len: u64) {
        let mut next_index = 0;
        let base = if self.has_placeholders {
            let ts_ns = rec.timestamp_ns;
            self.clock_s = self.clock_s.max(ts_ns / 1_000_000_000);
            expand(
                &self.cfg.pattern,
                &Names {
                    secs: self.clock_s,
                    nanos: ts_ns % 1_000_000_000,
                    id: &rec.id,
                    kind: rec.kind.code() as char,
                    instance: &self.instance,
                },
            )
        } else {
            self.cfg.pattern.clone()
        };
        if self.current.as_ref().is_some_and(|f| f.base != base) {
            self.close_current();
        }
        if let (Some(max), false) = (self.cfg.max_records, self.cfg.append) {
            if let Some(f) = self.current.as_ref().filter(|f| f.rotatable) {
                if f.records >= max {
                    next_index = f.index + 1;
                    self.close_current();
                }
            }
        }
        if let (Some(max), false) = (self.cfg.max_size, self.cfg.append) {
            if self.would_exceed(len, max) {
                // For gzip the estimate counts the batch at its incompressible worst case;
                // write it to learn the exact size before deciding.
                if matches!(self.current.as_ref().map(|f| &f.sink), Some(Sink::Gz(_))) {
                    self.flush_batch();
                }
                if self.would_exceed(len, max) {
                    next_index = self.current.as_ref().map_or(0, |f| f.index + 1);
                    self.close_current();
                }
            }
        }
        if self.current.is_none() {
            match self.open(base.clone(), next_index) {
                Ok(f) => self.current = Some(f),
                Err(e) => {
                    let path = indexed_path(&base, next_index);
                    self.report_error("opening", &path, &e);
                }
            }
        }
    }

    /// Whether adding `len` bytes to the current file could take it past `max`. A file
    /// with no records takes any record, so an oversized record gets a file of its own.
    fn would_exceed(&self, len: u64, max: u64) -> bool {
        let Some(f) = self.current.as_ref() else {
            return false;
        };
        if f.records == 0 || !f.rotatable {
            return false;
        }
        let pending = self.batch.len() as u64 + len;
        let size = match f.sink {
            Sink::Plain(_) => f.sink.file_bytes() + pending,
            Sink::Gz(_) => f.sink.file_bytes() + deflate_bound(pending) + GZ_FINISH_BYTES,
        };
        size > max
    }

    /// Opens `base` with suffix `index`, or the first higher one naming no existing file;
    /// in append mode, and for a pattern whose names come back (`%r`, `%t`), `base`
    /// itself, appended to if it exists.
    fn open(&mut self, base: String, mut index: u32) -> io::Result<OpenFile> {
        let gz = base.ends_with(".gz");
        loop {
            let path = indexed_path(&base, index);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.exists() {
                    // Time placeholders may name directories (`/data/%Y/%m/...`).
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)?;
                }
            }
            let appending = self.cfg.append || (self.keyed && index == 0);
            let created = if appending {
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&path)
            } else {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
            };
            let created = match created {
                // What is in it already counts towards the size limit.
                Ok(file) if appending => file.metadata().map(|m| (file, m.is_file(), m.len())),
                Ok(file) => Ok((file, true, 0)),
                Err(e) => Err(e),
            };
            let (file, rotatable, existing) = match created {
                Ok(opened) => opened,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match fs::metadata(&path) {
                        // A device or pipe (`/dev/stdout`, a FIFO): write into it.
                        Ok(m) if !m.is_file() && !m.is_dir() => {
                            (OpenOptions::new().append(true).open(&path)?, false, 0)
                        }
                        // An existing file is never overwritten: take the next suffix.
                        _ => {
                            index = index.checked_add(1).ok_or(e)?;
                            continue;
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            // Appending to a gzip file adds a member: readers (gor's, `zcat`) read on.
            let sink = if gz {
                Sink::Gz(GzEncoder::new(
                    Counting {
                        inner: file,
                        count: existing,
                    },
                    Compression::default(),
                ))
            } else {
                Sink::Plain(Counting {
                    inner: Box::new(file),
                    count: existing,
                })
            };
            self.stats.files_opened += 1;
            tracing::debug!(path = %path.display(), "opened .gor output file");
            return Ok(OpenFile {
                base,
                path,
                index,
                sink,
                records: 0,
                rotatable,
            });
        }
    }

    /// Writes the batch to the current file.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.batch_records);
        let bytes = self.batch.len() as u64;
        self.batch_since = None;
        let result = match self.current.as_mut() {
            Some(f) => f
                .sink
                .write_batch(&self.batch)
                .map_err(|e| (e, f.path.clone())),
            None => Err((
                io::Error::new(io::ErrorKind::NotFound, "no file open"),
                PathBuf::from(&self.cfg.pattern),
            )),
        };
        self.batch.clear();
        match result {
            Ok(()) => {
                self.stats.records_written += records;
                self.stats.bytes_written += bytes;
            }
            Err((e, path)) => {
                // Part of the batch may be in the file; a reader skips the cut record. The
                // gzip encoder keeps output it could not write, so its stream stays valid.
                self.stats.records_dropped += records;
                self.report_error("writing", &path, &e);
            }
        }
    }

    /// Writes the batch and closes the current file (finishing its gzip stream).
    fn close_current(&mut self) {
        self.flush_batch();
        if let Some(f) = self.current.take() {
            if let Err(e) = f.sink.finish() {
                self.report_error("finishing", &f.path, &e);
            }
        }
    }

    fn report_error(&mut self, what: &str, path: &Path, e: &io::Error) {
        self.stats.write_errors += 1;
        let now = Instant::now();
        self.retry_at = Some(now + RETRY_AFTER);
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < LOG_EVERY)
        {
            self.suppressed_logs += 1;
            return;
        }
        tracing::warn!(
            path = %path.display(),
            error = %e,
            suppressed = self.suppressed_logs,
            records_dropped = self.stats.records_dropped,
            "{what} .gor output file failed; dropping records and retrying in {RETRY_AFTER:?}"
        );
        self.last_log = Some(now);
        self.suppressed_logs = 0;
    }
}

impl MessageOutput for FileOutput {
    fn tick(&mut self) {
        self.flush();
    }

    fn message(&mut self, msg: &HttpMessage) -> io::Result<()> {
        let rec = Record::from_message(msg, self.to_wall.offset_ns(msg.clock));
        if rec.kind.is_response() && !self.cfg.track_responses {
            return Ok(());
        }
        self.write_record(&rec);
        Ok(())
    }

    /// Staging's responses are written whenever they are tracked: only then do they come.
    fn replayed(&mut self, r: &Replayed) -> io::Result<()> {
        self.write_record(&Record {
            kind: super::RecordType::ReplayedResponse,
            id: r.id.to_string(),
            timestamp_ns: r.timestamp_ns,
            latency_ns: r.latency_ns,
            payload: r.payload.clone(),
        });
        Ok(())
    }

    /// Writes what is batched and finishes the file. Errors are counted, not returned:
    /// like every write here, they must not stop the caller.
    fn finish(&mut self) -> io::Result<()> {
        self.close_current();
        Ok(())
    }
}

impl Drop for FileOutput {
    fn drop(&mut self) {
        self.close_current();
    }
}

/// Upper bound of the deflate output for `n` input bytes plus one sync flush: stored
/// blocks cost 5 bytes per at most 64 KiB; this is generous on purpose.
fn deflate_bound(n: u64) -> u64 {
    n + n / 1024 + 64
}

/// `base` with `_index` before its extensions (`traffic.gor.gz` -> `traffic_1.gor.gz`);
/// index 0 is `base` itself.
fn indexed_path(base: &str, index: u32) -> PathBuf {
    if index == 0 {
        return PathBuf::from(base);
    }
    let path = Path::new(base);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // Extensions start at the first dot, not counting a leading one (hidden files).
    let stem_len = name
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '.')
        .map_or(name.len(), |(i, _)| i);
    let new_name = format!("{}_{index}{}", &name[..stem_len], &name[stem_len..]);
    path.with_file_name(new_name)
}

/// GoReplay's file-name placeholders (its `output_file.go`), `%%` aside.
pub const PLACEHOLDERS: &[&str] = &["%Y", "%m", "%d", "%H", "%M", "%S", "%NS", "%r", "%t", "%i"];

/// What the placeholders of a file name stand for, for one record.
pub(super) struct Names<'a> {
    /// The record's second since the epoch (UTC).
    pub secs: u64,
    /// `%NS`: nanoseconds within that second (GoReplay prints them without padding).
    pub nanos: u64,
    /// `%r`: the record's id.
    pub id: &'a str,
    /// `%t`: its type, `1`, `2` or `3`.
    pub kind: char,
    /// `%i`: this writer's id.
    pub instance: &'a str,
}

/// Expands the placeholders of `pattern` (see [`PLACEHOLDERS`]) and `%%`; other `%`
/// sequences are kept as they are.
pub(super) fn expand(pattern: &str, n: &Names) -> String {
    let secs = n.secs;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('N') if chars.peek() == Some(&'S') => {
                chars.next();
                out.push_str(&n.nanos.to_string());
            }
            // An id or a type is a file name part: a `/` in one (not gor's, nor
            // GoReplay's) must not name a directory.
            Some('r') => out.push_str(&n.id.replace('/', "_")),
            Some('t') => out.push(n.kind),
            Some('i') => out.push_str(n.instance),
            Some('Y') => out.push_str(&format!("{y:04}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
