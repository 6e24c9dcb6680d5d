//! Reading `.gor` files: a glob-like pattern names the files, each is streamed (plain or
//! gzip, told apart by magic bytes), and their records come out merged in timestamp order.
//!
//! The format has no length fields, so records are found by lines: a record is a meta line,
//! then payload lines, and ends at a separator line (`🐵🙈🙉`, preceded by the newline that
//! ends the payload) only when the next line is the end of the file or starts a record: a
//! valid meta line, or a line that looks like a damaged one (see
//! `looks_like_meta`). Otherwise the separator is body content and reading goes on, which
//! keeps bodies holding separator bytes intact. A damaged record (invalid meta line, file
//! cut inside a record, read error, over [`MAX_RECORD`]) is skipped and reported with its
//! file and offset, and reading resumes at the next valid meta line after a separator.
//! Memory: one line buffer and one pending record per file.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{is_separator_line, looks_like_meta, parse_meta, Record, MAX_META_LINE};

/// Largest record accepted; bigger ones are taken as damage. Far above what the framer
/// emits (64 KiB heads, 16 MiB bodies by default), and it bounds memory on garbage input.
pub const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Counters of saved traffic read as input (`gor-agent replay`), over every pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InputStats {
    pub records: u64,
    pub requests: u64,
    /// Original responses (type 2).
    pub responses: u64,
    /// Staging's responses at recording time (type 3): counted, not replayed.
    pub staging_responses: u64,
    /// Records whose payload is not a valid HTTP message: skipped.
    pub invalid: u64,
    /// Damaged records skipped by the reader (each logged with its file and offset).
    pub damaged: u64,
    pub passes: u64,
}

/// A damaged stretch of a file that was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub file: PathBuf,
    /// Byte offset of the damaged record; in the decompressed stream for gzip files.
    pub offset: u64,
    pub reason: String,
}

/// Records of many `.gor` files, merged by timestamp.
pub struct GorReader {
    sources: Vec<Source>,
    /// Bytes read from the files so far (compressed bytes for gzip files), for progress.
    read: Arc<AtomicU64>,
    /// The files' sizes when they were opened.
    total: u64,
    /// The next record of each source, if any.
    pending: Vec<Option<Record>>,
    /// Min-heap of (timestamp, source index): ties go to the earlier file name, and a file's
    /// own order is kept because each source has at most one record in the heap.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    damaged: Vec<ReadError>,
}

impl GorReader {
    /// Opens every file matching `pattern`. `*` and `?` are allowed in the file-name part
    /// only; without them the pattern is a single path. Fails if no file matches or one
    /// cannot be opened.
    pub fn open(pattern: &str) -> io::Result<GorReader> {
        Self::open_counting(pattern, Arc::default())
    }

    /// Like [`GorReader::open`], adding the bytes read to `read`.
    pub fn open_counting(pattern: &str, read: Arc<AtomicU64>) -> io::Result<GorReader> {
        let paths = expand_pattern(pattern)?;
        let mut sources = Vec::with_capacity(paths.len());
        let mut total = 0;
        for path in paths {
            let source = Source::open(path, read.clone())?;
            total += source.size;
            sources.push(source);
        }
        let mut reader = GorReader {
            read,
            total,
            pending: sources.iter().map(|_| None).collect(),
            sources,
            heap: BinaryHeap::new(),
            damaged: Vec::new(),
        };
        for i in 0..reader.sources.len() {
            reader.refill(i);
        }
        Ok(reader)
    }

    /// The files being read, in name order.
    pub fn files(&self) -> Vec<&Path> {
        self.sources.iter().map(|s| s.path.as_path()).collect()
    }

    /// The next record in timestamp order, or `None` when every file is done.
    pub fn next_record(&mut self) -> Option<Record> {
        let Reverse((_, i)) = self.heap.pop()?;
        let rec = self.pending[i].take();
        self.refill(i);
        rec
    }

    /// A counter of the bytes read from the files so far (compressed bytes for gzip),
    /// shared so that progress can be shown from another thread.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    /// The total size of the files, as opened.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Damaged records skipped so far.
    pub fn damaged(&self) -> &[ReadError] {
        &self.damaged
    }

    fn refill(&mut self, i: usize) {
        if let Some(rec) = self.sources[i].next_record(&mut self.damaged) {
            self.heap.push(Reverse((rec.timestamp_ns, i)));
            self.pending[i] = Some(rec);
        }
    }
}

impl Iterator for GorReader {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.next_record()
    }
}

/// One line of input: its bytes (with the `\n`, except at end of file), where it started,
/// and whether it was longer than asked for (then `bytes` holds only the first part, but the
/// whole line was consumed).
struct Line {
    start: u64,
    bytes: Vec<u8>,
    overflow: bool,
}

/// One file being read.
struct Source {
    path: PathBuf,
    size: u64,
    input: Box<dyn BufRead + Send>,
    /// Bytes consumed from the (decompressed) stream.
    offset: u64,
    /// A line read ahead to decide where a record ends, to be read again.
    pushed: Option<Line>,
    /// Set after end of file or a read error: nothing more comes from this file.
    done: bool,
}

impl Source {
    fn open(path: PathBuf, read: Arc<AtomicU64>) -> io::Result<Source> {
        let file = File::open(&path)?;
        let size = file.metadata()?.len();
        let mut file = BufReader::with_capacity(64 * 1024, Counted { inner: file, read });
        // Gzip is told by its magic bytes, not the name, so renamed files still read.
        let is_gzip = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn BufRead + Send> = if is_gzip {
            // Multi-member: concatenated gzip files are one valid stream.
            Box::new(BufReader::with_capacity(
                64 * 1024,
                flate2::bufread::MultiGzDecoder::new(file),
            ))
        } else {
            Box::new(file)
        };
        Ok(Source {
            path,
            size,
            input,
            offset: 0,
            pushed: None,
            done: false,
        })
    }

    /// Reads one line, keeping at most `max` bytes of it.
    fn read_line(&mut self, max: usize) -> io::Result<Option<Line>> {
        if let Some(line) = self.pushed.take() {
            return Ok(Some(line));
        }
        if self.done {
            return Ok(None);
        }
        let mut line = Line {
            start: self.offset,
            bytes: Vec::new(),
            overflow: false,
        };
        let mut any = false;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            if buf.is_empty() {
                self.done = true;
                return Ok(any.then_some(line));
            }
            any = true;
            let (take, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = max.saturating_sub(line.bytes.len());
            if take > room {
                line.overflow = true;
            }
            line.bytes.extend_from_slice(&buf[..take.min(room)]);
            self.input.consume(take);
            self.offset += take as u64;
            if end {
                return Ok(Some(line));
            }
        }
    }

    fn damage(&self, damaged: &mut Vec<ReadError>, offset: u64, reason: String) {
        tracing::warn!(
            file = %self.path.display(),
            offset,
            %reason,
            "skipping damaged record in .gor file"
        );
        damaged.push(ReadError {
            file: self.path.clone(),
            offset,
            reason,
        });
    }

    /// The next intact record of this file, reporting damaged ones on the way.
    fn next_record(&mut self, damaged: &mut Vec<ReadError>) -> Option<Record> {
        loop {
            match self.try_record() {
                Ok(Step::Record(rec)) => return Some(rec),
                Ok(Step::Eof) => return None,
                Ok(Step::Damaged { offset, reason }) => {
                    self.damage(damaged, offset, reason);
                    if let Err(e) = self.skip_to_record() {
                        self.damage(damaged, self.offset, format!("read error: {e}"));
                        return None;
                    }
                }
                Err((offset, e)) => {
                    // A read error (e.g. a gzip stream cut short) ends the file: what was
                    // read before it has been delivered.
                    self.damage(damaged, offset, format!("read error: {e}"));
                    return None;
                }
            }
        }
    }

    /// Tries to read one record. Read errors carry the offset of the record they cut.
    fn try_record(&mut self) -> Result<Step, (u64, io::Error)> {
        let at = self.offset;
        let meta_line = match self.read_line(MAX_META_LINE + 1) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(Step::Eof),
            Err(e) => return Err((at, e)),
        };
        let start = meta_line.start;
        let Some(meta) = parse_meta(&meta_line.bytes).filter(|_| !meta_line.overflow) else {
            return Ok(Step::Damaged {
                offset: start,
                reason: format!("invalid meta line {:?}", preview(&meta_line.bytes)),
            });
        };
        let too_large = || Step::Damaged {
            offset: start,
            reason: format!("record larger than {MAX_RECORD} bytes"),
        };
        let mut body: Vec<u8> = Vec::new();
        loop {
            let line = match self.read_line(MAX_RECORD - body.len()) {
                Ok(Some(line)) => line,
                Ok(None) => {
                    return Ok(Step::Damaged {
                        offset: start,
                        reason: "cut: end of file before the record separator".into(),
                    })
                }
                Err(e) => return Err((start, e)),
            };
            if line.overflow {
                return Ok(too_large());
            }
            // The separator's leading newline is the end of the previous payload line.
            if body.last() == Some(&b'\n') && is_separator_line(&line.bytes) {
                let room = MAX_RECORD - body.len() - line.bytes.len();
                let next = match self.read_line(room) {
                    Ok(next) => next,
                    Err(e) => return Err((start, e)),
                };
                match next {
                    None => return Ok(Step::Record(finish(meta, body))),
                    Some(next) if next.overflow => return Ok(too_large()),
                    Some(next) => {
                        let starts_record =
                            parse_meta(&next.bytes).is_some() || looks_like_meta(&next.bytes);
                        self.pushed = Some(next);
                        if starts_record {
                            return Ok(Step::Record(finish(meta, body)));
                        }
                    }
                }
            }
            body.extend_from_slice(&line.bytes);
        }
    }

    /// Skips lines until a valid meta line that follows a separator line (left to be read
    /// next) or the end of the file.
    fn skip_to_record(&mut self) -> io::Result<()> {
        let mut after_separator = false;
        // Only the first bytes of a line matter here, so long lines are not buffered.
        while let Some(line) = self.read_line(MAX_META_LINE + 1)? {
            if after_separator && !line.overflow && parse_meta(&line.bytes).is_some() {
                self.pushed = Some(line);
                return Ok(());
            }
            after_separator = !line.overflow && is_separator_line(&line.bytes);
        }
        Ok(())
    }
}

/// A reader that adds what it reads to a shared counter.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

enum Step {
    Record(Record),
    Damaged { offset: u64, reason: String },
    Eof,
}

/// The record of a meta line and its payload lines; `body` still ends with the newline
/// that belongs to the separator.
fn finish(meta: super::Meta, mut body: Vec<u8>) -> Record {
    body.pop();
    meta.into_record(Bytes::from(body))
}

/// The start of a bad line, for messages.
fn preview(line: &[u8]) -> String {
    let end = line.len().min(60);
    String::from_utf8_lossy(&line[..end]).into_owned()
}

/// The files a pattern names, sorted by name.
fn expand_pattern(pattern: &str) -> io::Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        // As in shells, a leading dot must be matched explicitly.
        if candidate.starts_with('.') && !name.starts_with('.') {
            continue;
        }
        if !wildcard_match(name, candidate) || entry.file_type()?.is_dir() {
            continue;
        }
        found.push(dir.join(candidate));
    }
    if found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no files match {pattern}"),
        ));
    }
    found.sort();
    Ok(found)
}

/// `*` matches any run of characters, `?` exactly one; everything else itself.
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was, and the name position it was tried against: on a mismatch
    // the star takes one more character (linear backtracking, enough for one level).
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}
