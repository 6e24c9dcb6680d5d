//! GoReplay's command lines for saving, printing and replaying traffic, run unchanged
//! (only addresses and ports changed) against real servers on loopback: records on
//! stdout, `--exit-after`, file names with placeholders, `--output-file-append`, file
//! input with a speed, looping, several inputs and the dry run. Each test quotes the
//! documentation line it runs and where it is from.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{agent_bin, counter, readiness_socket, temp_dir, wait_ready, wait_with_timeout},
    gorformat::{get_request, record, records, write_gets, Rec},
    staging::Staging,
    traffic::{listen, Client, Server},
};
use serde_json::Value;

/// `gor-agent` started with a GoReplay command line, its stdout and stderr in files.
struct Gor {
    child: Option<Child>,
    dir: PathBuf,
    started: Instant,
}

impl Gor {
    /// Starts `args` and waits for its READY=1 (capture attached, or replay started).
    fn start(name: &str, args: &[&str]) -> Gor {
        let dir = temp_dir(name);
        let (notify, notify_path) = readiness_socket(&dir);
        let child = command(&dir, args)
            .env("NOTIFY_SOCKET", &notify_path)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", agent_bin().display()));
        let gor = Gor {
            child: Some(child),
            dir,
            started: Instant::now(),
        };
        wait_ready(&notify, || gor.stderr());
        gor
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    fn stdout(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("stdout")).unwrap_or_default()
    }

    fn stats(&self) -> Value {
        std::fs::read(self.dir.join("stats.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits (at most `limit`) for it to exit by itself; checks it exited 0.
    fn wait(&mut self, limit: Duration) -> Duration {
        let child = self.child.as_mut().expect("running");
        let status = wait_with_timeout(child, limit, Duration::from_millis(20))
            .expect("wait")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("still running after {limit:?}")
            });
        let took = self.started.elapsed();
        self.child = None;
        assert!(status.success(), "exited with {status}:\n{}", self.stderr());
        took
    }

    /// Stops it with SIGTERM; checks it exited 0.
    fn stop(&mut self) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        self.wait(Duration::from_secs(30));
    }
}

impl Drop for Gor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The agent with `args` and only PATH, a stats file and an unused metrics port in its
/// environment (so that the command line alone says what it does).
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(agent_bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GOR_METRICS_ADDR", "127.0.0.1:0")
        .env("GOR_STATS_FILE", dir.join("stats.json"))
        .env("GOR_LOG", "info")
        .stdout(std::fs::File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"));
    cmd
}

/// Runs `args` to its end (at most 60 s); (exit code, stdout, stderr).
fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    let dir = temp_dir(name);
    let mut child = command(&dir, args).spawn().expect("start");
    let status = wait_with_timeout(
        &mut child,
        Duration::from_secs(60),
        Duration::from_millis(20),
    )
    .expect("wait")
    .unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{args:?} still running after 60 s")
    });
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    (status.code().unwrap_or(-1), read("stdout"), read("stderr"))
}

/// The requests of `recs`, joined: what a client sent, if they are all of it.
fn requests_joined(recs: &[Rec]) -> Vec<u8> {
    recs.iter()
        .filter(|r| r.kind == 1)
        .flat_map(|r| r.payload.iter().copied())
        .collect()
}

fn date_utc(format: &str) -> String {
    let out = Command::new("date")
        .args(["-u", format])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The request lines staging received, in arrival order.
fn request_lines(staging: &Staging) -> Vec<String> {
    staging
        .received()
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.raw);
            text.lines().next().unwrap_or_default().to_string()
        })
        .collect()
}

// GoReplay's docs/getting-started/tutorial.md: "Now run this command in terminal:
// `sudo ./goreplay --input-raw :8000 --output-stdout`", which "log[s] it to stdout".
#[test]
fn goreplay_output_stdout_prints_the_captured_requests_as_records() {
    let server = Server::start(listen("127.0.0.1"));
    let raw = format!("127.0.0.1:{}", server.addr.port());
    let mut gor = Gor::start("gr-stdout", &["--input-raw", &raw, "--output-stdout"]);
    let mut client = Client::connect(server.addr);
    for i in 0..10 {
        client.request(i, 300, 700);
    }
    gor.stop();
    let recs = records(&gor.stdout());
    assert_eq!(
        recs.len(),
        10,
        "one record per request, no responses untracked"
    );
    assert!(recs.iter().all(|r| r.kind == 1));
    assert_eq!(
        requests_joined(&recs),
        client.sent,
        "stdout holds exactly the requests sent, in GoReplay's record format"
    );
    let mut ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10);
}

// GoReplay's settings.go: `flag.DurationVar(&Settings.exitAfter, "exit-after", 0, "exit
// after specified duration")`, on the tutorial's `--input-raw :8000 --output-stdout`.
#[test]
fn goreplay_exit_after_stops_live_capture_cleanly() {
    let server = Server::start(listen("127.0.0.1"));
    let raw = format!("127.0.0.1:{}", server.addr.port());
    let mut gor = Gor::start(
        "gr-exit-after",
        &["--input-raw", &raw, "--output-stdout", "--exit-after", "3s"],
    );
    let mut client = Client::connect(server.addr);
    for i in 0..5 {
        client.request(i, 100, 100);
    }
    let took = gor.wait(Duration::from_secs(30));
    assert!(took >= Duration::from_secs(3), "stopped after {took:?}");
    let recs = records(&gor.stdout());
    assert_eq!(requests_joined(&recs), client.sent);
    let stats = gor.stats();
    assert_eq!(
        counter(&stats, &["http", "requests"]),
        5,
        "the final report: {stats}"
    );
    assert!(
        gor.stderr().contains("exit-after: stopping"),
        "{}",
        gor.stderr()
    );
}

// GoReplay's docs/Saving-and-Replaying-from-file.md: "./goreplay --input-raw :80
// --output-file %Y-%m-%d.gz --output-file-size-limit 256m --output-file-queue-limit 0",
// and "To read or write GZIP compressed files ensure that file extension ends with
// \".gz\"".
#[test]
fn goreplay_output_file_with_date_placeholders_and_gzip() {
    let server = Server::start(listen("127.0.0.1"));
    let raw = format!("127.0.0.1:{}", server.addr.port());
    let dir = temp_dir("gr-file-out");
    let pattern = dir.join("%Y-%m-%d.gz");
    let before = date_utc("+%Y-%m-%d");
    let mut gor = Gor::start(
        "gr-file",
        &[
            "--input-raw",
            &raw,
            "--output-file",
            pattern.to_str().expect("utf8"),
            "--output-file-size-limit",
            "256m",
            "--output-file-queue-limit",
            "0",
        ],
    );
    let mut client = Client::connect(server.addr);
    for i in 0..20 {
        client.request(i, 1000, 100);
    }
    gor.stop();
    let after = date_utc("+%Y-%m-%d");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0] == format!("{before}.gz") || names[0] == format!("{after}.gz"),
        "today's date (UTC) in the name: {names:?}"
    );
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(dir.join(&names[0])).expect("open"))
        .read_to_end(&mut plain)
        .expect("gunzip");
    assert_eq!(requests_joined(&records(&plain)), client.sent);
}

// GoReplay's docs/Saving-and-Replaying-from-file.md: "./goreplay ... --output-file
// %Y%m%d.log --output-file-append" gives "20140608.log" (no `_0`, `_1` chunks).
#[test]
fn goreplay_output_file_append_keeps_one_file_across_runs() {
    let server = Server::start(listen("127.0.0.1"));
    let raw = format!("127.0.0.1:{}", server.addr.port());
    let dir = temp_dir("gr-append-out");
    let pattern = dir.join("%Y%m%d.log");
    let mut sent = Vec::new();
    for run in 0..2 {
        let mut gor = Gor::start(
            &format!("gr-append-{run}"),
            &[
                "--input-raw",
                &raw,
                "--output-file",
                pattern.to_str().expect("utf8"),
                "--output-file-append",
            ],
        );
        let mut client = Client::connect(server.addr);
        for i in 0..3 {
            client.request(run * 10 + i, 50, 50);
        }
        gor.stop();
        sent.extend(client.sent);
    }
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "one file for both runs: {names:?}");
    assert_eq!(names[0].len(), "20140608.log".len(), "{names:?}");
    let bytes = std::fs::read(dir.join(&names[0])).expect("read");
    assert_eq!(
        requests_joined(&records(&bytes)),
        sent,
        "both runs, in order"
    );
}

// GoReplay's docs/Saving-and-Replaying-from-file.md: "# Replay from file on 2x speed
// ./goreplay --input-file \"requests.gor|200%\" --output-http \"staging.com\"".
#[test]
fn goreplay_input_file_at_200_percent_replays_in_half_the_recorded_span() {
    let staging = Staging::start(listen("127.0.0.1"));
    let dir = temp_dir("gr-speed-in");
    let file = dir.join("requests.gor");
    // Ten requests 500 ms apart: 4.5 s recorded, 2.25 s at 200%.
    let paths: Vec<String> = (0..10).map(|i| format!("/speed/{i}")).collect();
    write_gets(&file, paths.clone(), 500);
    let input = format!("{}|200%", file.display());
    let target = format!("{}", staging.addr);
    let mut gor = Gor::start(
        "gr-speed",
        &["--input-file", &input, "--output-http", &target],
    );
    gor.wait(Duration::from_secs(60));
    let got = staging.wait_for(10, Duration::from_secs(10));
    assert_eq!(got.len(), 10);
    let lines = request_lines(&staging);
    let want: Vec<String> = paths.iter().map(|p| format!("GET {p} HTTP/1.1")).collect();
    assert_eq!(lines, want, "every request, in the recorded order");
    let span = got[9].at.duration_since(got[0].at);
    assert!(
        span >= Duration::from_millis(2_000) && span < Duration::from_millis(3_900),
        "4.5 s recorded, replayed at 200% in {span:?}"
    );
}

// GoReplay's docs/Saving-and-Replaying-from-file.md: "Pass `--input-file-loop` to make it
// work" (replaying "indefinitely"), bounded by settings.go's "exit-after".
#[test]
fn goreplay_input_file_loop_replays_again_until_exit_after() {
    let staging = Staging::start(listen("127.0.0.1"));
    let dir = temp_dir("gr-loop-in");
    let file = dir.join("requests.gor");
    let paths: Vec<String> = ["/a", "/b", "/c"].iter().map(|p| p.to_string()).collect();
    write_gets(&file, paths.clone(), 100);
    let target = format!("http://{}", staging.addr);
    let mut gor = Gor::start(
        "gr-loop",
        &[
            "--input-file",
            file.to_str().expect("utf8"),
            "--input-file-loop",
            "--output-http",
            &target,
            "--exit-after",
            "2s",
        ],
    );
    let took = gor.wait(Duration::from_secs(30));
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let lines = request_lines(&staging);
    assert!(lines.len() >= 6, "at least two passes: {}", lines.len());
    // Pass after pass: the file's requests, each as often as the others (give or take
    // the pass cut short). Where one pass's last request and the next one's first are
    // due together they may take two staging connections and arrive in either order.
    let counts: Vec<usize> = paths
        .iter()
        .map(|p| {
            lines
                .iter()
                .filter(|l| **l == format!("GET {p} HTTP/1.1"))
                .count()
        })
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), lines.len(), "{lines:?}");
    assert!(
        counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0) <= 1,
        "{counts:?}"
    );
    let stats = gor.stats();
    assert!(counter(&stats, &["input", "passes"]) >= 2, "{stats}");
}

// GoReplay's settings.go (1.3): "input-file-dry-run": "Simulate reading from the data
// source without replaying it. You will get information about expected replay time,
// number of found records etc.", on the docs' `--input-file "requests.gor|200%"
// --output-http "staging.com"`.
#[test]
fn goreplay_input_file_dry_run_counts_and_sends_nothing() {
    let staging = Staging::start(listen("127.0.0.1"));
    let dir = temp_dir("gr-dry-in");
    let file = dir.join("requests.gor");
    write_gets(&file, (0..10).map(|i| format!("/dry/{i}")), 500);
    let input = format!("{}|200%", file.display());
    let target = staging.addr.to_string();
    let (code, stdout, stderr) = run(
        "gr-dry",
        &[
            "--input-file",
            &input,
            "--input-file-dry-run",
            "--output-http",
            &target,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Records found: 10 (10 requests)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("It will take `2.250s` to replay at 200% speed."),
        "{stdout}"
    );
    assert_eq!(staging.connections(), 0, "nothing sent");
}

// GoReplay's settings.go declares `--input-file` a MultiOption: each one is an input of
// its own (plugins.go registers one file input per value), with its own `|200%`.
#[test]
fn goreplay_several_input_files_replay_side_by_side_at_their_own_speeds() {
    let staging = Staging::start(listen("127.0.0.1"));
    let dir = temp_dir("gr-multi-in");
    // Recorded an hour apart; each input starts at once all the same.
    let t0 = 1_764_000_000_000_000_000u64;
    let hour = 3_600_000_000_000u64;
    let write = |name: &str, start: u64| {
        let mut bytes = Vec::new();
        for i in 0..5u64 {
            let ts = start + i * 500_000_000;
            let req = get_request(&format!("/{name}/{i}"));
            bytes.extend(record(1, &format!("{name}{i:023x}"), ts, 0, &req));
        }
        let path = dir.join(format!("{name}.gor"));
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let a = write("a", t0);
    let b = write("b", t0 + hour);
    let b_fast = format!("{}|200%", b.display());
    let target = format!("http://{}", staging.addr);
    let mut gor = Gor::start(
        "gr-multi",
        &[
            "--input-file",
            a.to_str().expect("utf8"),
            "--input-file",
            &b_fast,
            "--output-http",
            &target,
        ],
    );
    let took = gor.wait(Duration::from_secs(30));
    assert!(
        took < Duration::from_secs(20),
        "not an hour apart: {took:?}"
    );
    let got = staging.wait_for(10, Duration::from_secs(10));
    assert_eq!(got.len(), 10);
    let lines = request_lines(&staging);
    let of = |name: &str| -> Vec<(usize, &String)> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with(&format!("GET /{name}/")))
            .collect()
    };
    for name in ["a", "b"] {
        let want: Vec<String> = (0..5)
            .map(|i| format!("GET /{name}/{i} HTTP/1.1"))
            .collect();
        let mine: Vec<String> = of(name).into_iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(mine, want, "each input in its own order");
    }
    let span = |name: &str| {
        let idx = of(name);
        got[idx[4].0].at.duration_since(got[idx[0].0].at)
    };
    // 2 s recorded each: `a` at 100%, `b` at 200%.
    assert!(
        span("b") < span("a"),
        "b {:?} vs a {:?}",
        span("b"),
        span("a")
    );
}

// GoReplay's settings.go: "output-null": "Used for testing inputs. Drops all requests.";
// "output-dummy": "DEPRECATED: use --output-stdout instead" (and prints as it does).
#[test]
fn goreplay_output_null_and_dummy_when_replaying_a_file() {
    let dir = temp_dir("gr-null-in");
    let file = dir.join("requests.gor");
    write_gets(&file, (0..4).map(|i| format!("/null/{i}")), 10);
    let path = file.to_str().expect("utf8");
    let (code, stdout, stderr) = run("gr-null", &["--input-file", path, "--output-null"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "nothing printed: {stdout}");
    let (code, stdout, stderr) = run("gr-dummy", &["--input-file", path, "--output-dummy", "x"]);
    assert_eq!(code, 0, "{stderr}");
    let recs = records(stdout.as_bytes());
    let want: Vec<u8> = (0..4)
        .flat_map(|i| get_request(&format!("/null/{i}")))
        .collect();
    assert_eq!(
        requests_joined(&recs),
        want,
        "the file's requests, as records"
    );
}
