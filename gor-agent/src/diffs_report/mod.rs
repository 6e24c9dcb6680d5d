//! `gor-agent report DIFFS.jsonl... [--html FILE]`: reads the diffs files that comparing
//! staging's responses with production's wrote (`GOR_OUTPUT_DIFFS`), and shows what
//! differed, where, and how often: a self-contained HTML page with examples side by
//! side, or a short text summary on stdout. It runs after the pipeline, on its output,
//! and needs no privileges.
//!
//! `model` reads a line, `aggregate` folds lines into a report, `body` decides how a
//! body is shown, `html` and `text` render; only this file does IO. A line that does not
//! parse is counted and skipped: a diffs file cut short by a killed agent is still read.

pub mod aggregate;
pub mod body;
pub mod html;
pub mod model;
pub mod text;

#[cfg(test)]
mod tests;

use std::{
    hash::{BuildHasher, Hasher},
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

pub use aggregate::{Aggregator, Report};

/// Exit codes (sysexits.h): 64 for a file that cannot be read, 1 for a failed write.
const EXIT_USAGE: i32 = 64;
const EXIT_IO: i32 = 1;

/// A line longer than this is not a diffs line (the writer keeps each body under 64 KiB,
/// so a line is a few hundred KiB at most): it is skipped as invalid without being held.
const MAX_LINE_BYTES: usize = 16 << 20;

/// Runs the command; returns the exit code.
pub fn run(files: &[PathBuf], html: Option<&Path>) -> i32 {
    let mut problems = Vec::new();
    for f in files {
        match std::fs::metadata(f) {
            Ok(m) if m.is_dir() => problems.push(format!(
                "{} is a directory; expected a diffs file (JSON lines, GOR_OUTPUT_DIFFS)",
                f.display()
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("cannot read {}: {e}", f.display())),
        }
    }
    if let Some(out) = html {
        let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            problems.push(format!(
                "cannot write {}: its directory does not exist",
                out.display()
            ));
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("gor-agent report: {p}");
        }
        return EXIT_USAGE;
    }
    let report = match read(files) {
        Ok(r) => r,
        Err((file, e)) => {
            eprintln!("gor-agent report: reading {}: {e}", file.display());
            return EXIT_IO;
        }
    };
    match html {
        Some(out) => {
            let page = html::render(&report, &nonce());
            if let Err(e) = std::fs::write(out, page) {
                eprintln!("gor-agent report: writing {}: {e}", out.display());
                return EXIT_IO;
            }
            println!(
                "gor-agent report: wrote {} ({} differences in {} endpoints)",
                out.display(),
                report.differences(),
                report.endpoints.len()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(text::render(&report).as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("gor-agent report: writing to stdout: {e}");
                return EXIT_IO;
            }
        }
    }
    0
}

/// Reads every file into one report; the file that failed, if one did.
fn read(files: &[PathBuf]) -> Result<Report, (PathBuf, std::io::Error)> {
    let mut agg = Aggregator::default();
    for f in files {
        agg.file(&f.display().to_string());
        let file = std::fs::File::open(f).map_err(|e| (f.clone(), e))?;
        read_lines(std::io::BufReader::new(file), &mut agg).map_err(|e| (f.clone(), e))?;
    }
    Ok(agg.finish())
}

/// Feeds `r`'s lines to `agg`; a line over [`MAX_LINE_BYTES`] counts as one invalid line.
fn read_lines(mut r: impl BufRead, agg: &mut Aggregator) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if too_long {
                agg.line(b"\0");
            } else if !line.is_empty() {
                agg.line(trim_cr(&line));
            }
            return Ok(());
        }
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = end.unwrap_or(buf.len());
        r.consume(used);
        if end.is_some() {
            if too_long {
                // Not JSON: counted as an invalid line.
                agg.line(b"\0");
            } else {
                agg.line(trim_cr(&line));
            }
            line.clear();
            too_long = false;
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A fresh nonce for the page's Content-Security-Policy: std's hasher keys are random
/// per process, which is all a nonce needs here (the bodies on the page were written
/// before it existed).
fn nonce() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    format!("{a:016x}{:016x}", h.finish())
}
