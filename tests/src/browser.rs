//! A real browser for pages the agent writes (`gor-agent report --html`): Debian's
//! Chromium, headless, as a separate process with a fresh profile, offline by flags (no
//! background networking, updates, sync or QUIC), killed if it takes over a minute.
//! [`dump_dom`] gives the DOM after the page's scripts ran; [`screenshot`] a PNG for a
//! person to look at.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::agent::{temp_dir, wait_with_timeout};

/// Where Debian's `chromium` package puts the browser (`cargo xtask setup` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one page may take before the browser is killed.
const LIMIT: Duration = Duration::from_secs(60);

/// The DOM of the local page `html` once loaded and its scripts ran, as Chromium
/// serialises it.
pub fn dump_dom(html: &Path) -> Result<String> {
    let dir = fresh_dir("dom");
    let out = dir.join("dom.html");
    run(&dir, html, &["--dump-dom".into()], &out)?;
    let dom = std::fs::read_to_string(&out).context("reading the DOM Chromium printed")?;
    if dom.trim().is_empty() {
        bail!(
            "Chromium printed no DOM for {}; its stderr is in {}",
            html.display(),
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dom)
}

/// A PNG of the local page `html` in a window `width` x `height` pixels (the page is
/// cut at the window's height).
pub fn screenshot(html: &Path, png: &Path, width: u32, height: u32) -> Result<()> {
    let dir = fresh_dir("png");
    let png = std::path::absolute(png).context("the screenshot's path")?;
    run(
        &dir,
        html,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".into(),
        ],
        &dir.join("stdout.txt"),
    )?;
    if !png.is_file() {
        bail!(
            "Chromium wrote no screenshot {}; its stderr is in {}",
            png.display(),
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The DOM of a page `gor-agent report --html` wrote, checked to be that page with its
/// script run (a later test asserts on it: see the `report` module's tests).
pub fn report_dom(agent_report_html: &Path) -> Result<String> {
    let dom = dump_dom(agent_report_html)?;
    if !dom.contains("<title>gor: production vs staging</title>") {
        bail!(
            "{} is not the report page (or a body rewrote its title):\n{}",
            agent_report_html.display(),
            head_of(&dom)
        );
    }
    if !dom.contains("data-js=\"ready\"") {
        bail!(
            "the report's script did not run in {}:\n{}",
            agent_report_html.display(),
            head_of(&dom)
        );
    }
    Ok(dom)
}

/// A directory of its own for each browser run: tests run in parallel threads.
fn fresh_dir(what: &str) -> PathBuf {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    temp_dir(&format!(
        "chromium-{what}-{}",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ))
}

fn head_of(s: &str) -> &str {
    &s[..s.char_indices().nth(2000).map_or(s.len(), |(i, _)| i)]
}

/// Runs Chromium on `html` with `args`, stdout to `stdout`, its profile and stderr in
/// `dir`.
fn run(dir: &Path, html: &Path, args: &[String], stdout: &Path) -> Result<()> {
    if !Path::new(CHROMIUM).exists() {
        bail!("{CHROMIUM} is missing: run `cargo xtask setup` (as root) to install chromium");
    }
    let url = file_url(html)?;
    let profile = dir.join("profile");
    let stderr_path = dir.join("stderr.txt");
    // Files, not pipes: a DOM bigger than a pipe's buffer would block the browser while
    // this waits for it to exit.
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-breakpad",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout).context("creating Chromium's stdout file")?)
        .stderr(std::fs::File::create(&stderr_path).context("creating Chromium's stderr file")?)
        // A fresh HOME too: Chromium writes caches and crash dumps under it.
        .env("HOME", dir)
        .spawn()
        .with_context(|| format!("starting {CHROMIUM}"))?;
    let status = match wait_with_timeout(&mut child, LIMIT, Duration::from_millis(50)) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "Chromium did not finish {url} within {LIMIT:?} and was killed; its stderr: {}",
                stderr_path.display()
            );
        }
    };
    if !status.success() {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        bail!("Chromium on {url} exited with {status}:\n{stderr}");
    }
    Ok(())
}

/// `file://` URL of a local file, percent-encoding what a URL path cannot hold.
fn file_url(path: &Path) -> Result<String> {
    let abs: PathBuf = std::path::absolute(path).context("the page's path")?;
    let mut url = String::from("file://");
    for b in abs.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(*b as char)
            }
            b => url.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/tmp/a b#c.html")).unwrap(),
            "file:///tmp/a%20b%23c.html"
        );
    }
}
