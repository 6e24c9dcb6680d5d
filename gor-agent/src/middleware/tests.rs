//! Tests of the middleware: the pure parts (command lines, hex, line splitting) directly,
//! the protocol with real child programs (Python and sh scripts written to a temporary
//! directory): echo, filtering, rewriting, a stuck child, a crashing child, garbage
//! output, stderr, a program that does not exist.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::lines::{Line, LineSplitter};
use super::*;
use crate::gorfile::{encode_message, format_id, RecordType};

/// Failure guard for anything awaited: generous, as tests share two cores.
const GUARD: Duration = Duration::from_secs(30);

const SEP: &str = "\n🐵🙈🙉\n";

const PY_ECHO: &str = r#"
import sys
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"#;

fn record(i: u64, kind: RecordType, payload: &[u8]) -> Record {
    Record {
        kind,
        id: format_id(i),
        timestamp_ns: 1_700_000_000_000_000_000 + i,
        latency_ns: if kind.is_response() { 1000 + i } else { 0 },
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Records with every kind of awkward payload: every byte value, the `.gor` separator,
/// empty, CRLF, long.
fn tricky_records(n: u64) -> Vec<Record> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    (0..n)
        .map(|i| {
            let payload: Vec<u8> = match i % 6 {
                0 => format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
                1 => all_bytes
                    .iter()
                    .copied()
                    .cycle()
                    .skip(i as usize)
                    .take(700)
                    .collect(),
                2 => format!("POST /x HTTP/1.1\r\nContent-Length: 20\r\n\r\nbody{SEP}tail")
                    .into_bytes(),
                3 => Vec::new(),
                4 => SEP.as_bytes().to_vec(),
                _ => vec![b'\n'; 3000],
            };
            let kind = [
                RecordType::Request,
                RecordType::Response,
                RecordType::ReplayedResponse,
            ][i as usize % 3];
            record(i, kind, &payload)
        })
        .collect()
}

struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes a script; it is run through its interpreter (not executed directly, which
    /// could fail with ETXTBSY while another test thread forks).
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write script");
        path.to_str().expect("utf8 path").to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn start(program: &str, args: &[&str], queue: usize) -> (Middleware, mpsc::Receiver<Record>) {
    let mut cfg = MiddlewareConfig::new(program, args.iter().map(|a| a.to_string()).collect());
    cfg.queue = queue;
    Middleware::start(cfg)
}

fn python(script: &str) -> (Middleware, mpsc::Receiver<Record>) {
    start("python3", &[script], DEFAULT_QUEUE)
}

async fn recv_n(rx: &mut mpsc::Receiver<Record>, n: usize) -> Vec<Record> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(GUARD, rx.recv()).await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => panic!("receiver ended after {} of {n} records", out.len()),
            Err(_) => panic!("timed out after {} of {n} records", out.len()),
        }
    }
    out
}

/// What is left on the receiver; it must end.
async fn rest(rx: &mut mpsc::Receiver<Record>) -> Vec<Record> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(GUARD, rx.recv()).await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => return out,
            Err(_) => panic!("receiver did not end"),
        }
    }
}

async fn shutdown(mw: Middleware, grace: Duration) -> MiddlewareStats {
    tokio::time::timeout(GUARD, mw.shutdown(grace))
        .await
        .expect("shutdown finishes")
}

/// Polls a condition (a readiness check, not a timing assumption: the guard only turns a
/// hang into a failure).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let poll = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GUARD, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn accounted(s: &MiddlewareStats) -> u64 {
    s.sent + s.queued + s.dropped_queue_full + s.lost_in_restart + s.dropped_at_shutdown
}

// ---- command lines and programs ----

fn words(s: &str) -> Vec<String> {
    let (p, mut a) = parse_command(s).expect("valid command");
    a.insert(0, p);
    a
}

#[test]
fn command_splitting() {
    assert_eq!(words("mw"), ["mw"]);
    assert_eq!(
        words("  ./mw.py  --a 1\t--b  "),
        ["./mw.py", "--a", "1", "--b"]
    );
    assert_eq!(words(r#"mw 'a b' "c d""#), ["mw", "a b", "c d"]);
    assert_eq!(
        words(r#"mw '$HOME' "$HOME" *"#),
        ["mw", "$HOME", "$HOME", "*"]
    );
    assert_eq!(
        words(r#"mw "say \"hi\" \\ \n" 'it\'"#),
        ["mw", r#"say "hi" \ \n"#, r"it\"]
    );
    assert_eq!(words(r#"mw a"b c"d '' """#), ["mw", "ab cd", "", ""]);
    assert_eq!(words(r"mw back\slash"), ["mw", r"back\slash"]);
    assert_eq!(
        words("python3 -c 'import sys; print(1)'"),
        ["python3", "-c", "import sys; print(1)"]
    );
}

#[test]
fn command_errors() {
    for bad in [
        "",
        "   ",
        "mw 'open",
        r#"mw "open"#,
        r#"mw "ends in \"#,
        "''",
    ] {
        let err = parse_command(bad).expect_err(bad);
        assert!(!err.is_empty());
    }
    assert!(parse_command("mw 'x").unwrap_err().contains("single quote"));
    assert!(parse_command("mw \"x")
        .unwrap_err()
        .contains("double quote"));
    assert!(parse_command(" ").unwrap_err().contains("empty"));
    assert!(MiddlewareConfig::from_command("mw 'x").is_err());
    let cfg = MiddlewareConfig::from_command("mw --x 'a b'").expect("valid");
    assert_eq!((cfg.program.as_str(), cfg.args.len()), ("mw", 2));
    assert_eq!(cfg.queue, DEFAULT_QUEUE);
    assert_eq!(cfg.max_queue_bytes, DEFAULT_MAX_QUEUE_BYTES);
}

#[test]
fn program_checks() {
    use std::os::unix::fs::PermissionsExt;
    assert!(check_program("sh").is_ok(), "found through PATH");
    assert!(check_program("/bin/sh").is_ok());
    let err = check_program("no-such-program-gor-test").unwrap_err();
    assert!(err.contains("PATH"), "{err}");
    assert!(check_program("/nonexistent/mw").is_err());
    assert!(check_program("/tmp").unwrap_err().contains("not a file"));
    assert!(check_program("").is_err());
    let s = Scripts::new();
    let path = s.write("mw.sh", "#!/bin/sh\n");
    assert!(check_program(&path).unwrap_err().contains("not executable"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(check_program(&path).is_ok());
}

// ---- hex and lines ----

#[test]
fn hex_round_trip() {
    let all: Vec<u8> = (0..=255u8).collect();
    let mut h = Vec::new();
    hex::encode(&all, &mut h);
    let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(h, expected.as_bytes());
    let mut back = Vec::new();
    assert!(hex::decode(&h, &mut back));
    assert_eq!(back, all);
    assert!(hex::decode(expected.to_uppercase().as_bytes(), &mut back));
    assert_eq!(back, all);
    assert!(hex::decode(b"", &mut back) && back.is_empty());
    assert!(!hex::decode(b"abc", &mut back), "odd length");
    assert!(!hex::decode(b"zz", &mut back));
    assert!(!hex::decode(b"0g", &mut back));
    assert!(!hex::decode(b"0 ", &mut back));
}

fn split(chunks: &[&[u8]], max: usize) -> Vec<Result<Vec<u8>, Vec<u8>>> {
    let mut s = LineSplitter::new(max);
    let mut out = Vec::new();
    let mut f = |l: Line<'_>| match l {
        Line::Complete(l) => out.push(Ok(l.to_vec())),
        Line::TooLong(l) => out.push(Err(l.to_vec())),
    };
    for c in chunks {
        s.feed(c, &mut f);
    }
    s.finish(&mut f);
    out
}

#[test]
fn lines_any_chunking() {
    let text: &[u8] = b"one\ntwo\r\n\nthree-is-longer\nlast";
    let expected: Vec<Result<Vec<u8>, Vec<u8>>> = ["one", "two\r", "", "three-is-longer", "last"]
        .iter()
        .map(|l| Ok(l.as_bytes().to_vec()))
        .collect();
    for a in 0..=text.len() {
        for b in a..=text.len() {
            let got = split(&[&text[..a], &text[a..b], &text[b..]], 100);
            assert_eq!(got, expected, "split at {a}, {b}");
        }
    }
}

#[test]
fn lines_too_long_are_skipped_to_the_next_newline() {
    let text: &[u8] = b"ok\n0123456789abcdef\nfine\n0123456789";
    for a in 0..=text.len() {
        for b in a..=text.len() {
            let got = split(&[&text[..a], &text[a..b], &text[b..]], 8);
            assert_eq!(
                got,
                vec![
                    Ok(b"ok".to_vec()),
                    Err(b"01234567".to_vec()),
                    Ok(b"fine".to_vec()),
                    Err(b"01234567".to_vec()),
                ],
                "split at {a}, {b}"
            );
        }
    }
    // Exactly the bound is fine.
    assert_eq!(split(&[b"12345678\n"], 8), vec![Ok(b"12345678".to_vec())]);
}

// ---- with real children ----

#[tokio::test]
async fn python_echo_is_byte_identical() {
    let s = Scripts::new();
    let (mw, mut rx) = python(&s.write("echo.py", PY_ECHO));
    let recs = tricky_records(200);
    for r in &recs {
        mw.send(r);
    }
    let back = recv_n(&mut rx, recs.len()).await;
    assert_eq!(back, recs);
    let stats = shutdown(mw, Duration::from_secs(10)).await;
    assert!(rest(&mut rx).await.is_empty());
    assert_eq!(stats.sent, 200, "{stats:?}");
    assert_eq!(stats.returned, 200);
    assert_eq!(stats.invalid_lines, 0);
    assert_eq!((stats.starts, stats.restarts), (1, 0));
    assert_eq!((stats.queued, stats.queued_bytes), (0, 0));
}

#[tokio::test]
async fn shell_echo_passes_everything() {
    let s = Scripts::new();
    let script = s.write(
        "echo.sh",
        "#!/bin/sh\nwhile IFS= read -r line; do printf '%s\\n' \"$line\"; done\n",
    );
    let (mw, mut rx) = start("sh", &[&script], DEFAULT_QUEUE);
    let recs = tricky_records(60);
    for r in &recs {
        mw.send(r);
    }
    assert_eq!(recv_n(&mut rx, recs.len()).await, recs);
    let stats = shutdown(mw, Duration::from_secs(10)).await;
    assert!(rest(&mut rx).await.is_empty());
    assert_eq!((stats.sent, stats.returned), (60, 60));
}

#[tokio::test]
async fn shutdown_flushes_the_queue_while_the_caller_drains() {
    let s = Scripts::new();
    let (mw, mut rx) = start("python3", &[&s.write("echo.py", PY_ECHO)], 5000);
    // More than the channel toward us holds: the child's output must keep flowing
    // during shutdown because the caller is draining.
    let recs: Vec<Record> = (0..3000)
        .map(|i| {
            record(
                i,
                RecordType::Request,
                format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    for r in &recs {
        mw.send(r);
    }
    let drain = tokio::spawn(async move { rest(&mut rx).await });
    let stats = shutdown(mw, Duration::from_secs(20)).await;
    let back = tokio::time::timeout(GUARD, drain)
        .await
        .expect("drained")
        .expect("task");
    assert_eq!(back, recs, "all returned, in order");
    assert_eq!(
        (stats.sent, stats.returned, stats.dropped_at_shutdown),
        (3000, 3000, 0)
    );
}

#[tokio::test]
async fn python_filter_drops_posts() {
    let s = Scripts::new();
    let script = s.write(
        "filter.py",
        r#"
import sys
for line in sys.stdin.buffer:
    data = bytes.fromhex(line.strip().decode())
    meta, _, payload = data.partition(b"\n")
    if payload.startswith(b"POST "):
        continue
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"#,
    );
    let (mw, mut rx) = python(&script);
    let recs: Vec<Record> = (0..90)
        .map(|i| {
            let method = if i % 3 == 0 { "POST" } else { "GET" };
            record(
                i,
                RecordType::Request,
                format!("{method} /{i} HTTP/1.1\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    for r in &recs {
        mw.send(r);
    }
    let kept: Vec<Record> = recs
        .iter()
        .filter(|r| !r.payload.starts_with(b"POST "))
        .cloned()
        .collect();
    assert_eq!(recv_n(&mut rx, kept.len()).await, kept);
    let stats = shutdown(mw, Duration::from_secs(10)).await;
    assert!(rest(&mut rx).await.is_empty(), "no POST came back");
    assert_eq!((stats.sent, stats.returned), (90, 60));
}

#[tokio::test]
async fn python_rewrites_a_header() {
    let s = Scripts::new();
    let script = s.write(
        "rewrite.py",
        r#"
import sys
for line in sys.stdin.buffer:
    data = bytes.fromhex(line.strip().decode())
    data = data.replace(b"X-Env: prod", b"X-Env: staging")
    sys.stdout.buffer.write(data.hex().encode() + b"\n")
    sys.stdout.buffer.flush()
"#,
    );
    let (mw, mut rx) = python(&script);
    let recs: Vec<Record> = (0..20)
        .map(|i| {
            record(
                i,
                RecordType::Request,
                format!("GET /{i} HTTP/1.1\r\nX-Env: prod\r\nHost: x\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    for r in &recs {
        mw.send(r);
    }
    let back = recv_n(&mut rx, recs.len()).await;
    let want: Vec<Record> = recs
        .iter()
        .map(|r| {
            let text = String::from_utf8(r.payload.to_vec()).expect("utf8");
            Record {
                payload: Bytes::from(text.replace("X-Env: prod", "X-Env: staging")),
                ..r.clone()
            }
        })
        .collect();
    assert_eq!(back, want, "same meta, header changed");
    shutdown(mw, Duration::from_secs(10)).await;
    assert!(rest(&mut rx).await.is_empty());
}

#[tokio::test]
async fn stuck_child_never_blocks_send_and_is_killed() {
    let s = Scripts::new();
    let pid_file = s.path("pid");
    let script = s.write(
        "stuck.py",
        r#"
import os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(1)
"#,
    );
    let (mw, mut rx) = start("python3", &[&script, pid_file.to_str().expect("utf8")], 100);
    // Lines of ~4 KiB: the 100 queued ones are more than a pipe holds.
    let payload = vec![b'x'; 2048];
    for i in 0..10_000 {
        mw.send(&record(i, RecordType::Request, &payload));
    }
    let s1 = mw.stats();
    assert_eq!(s1.offered, 10_000);
    assert!(s1.dropped_queue_full >= 10_000 - 100 - 1, "{s1:?}");
    assert_eq!(accounted(&s1), 10_000, "{s1:?}");

    until("the child to start", || pid_file.exists()).await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let stats = shutdown(mw, Duration::from_millis(300)).await;
    assert!(rest(&mut rx).await.is_empty());
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(accounted(&stats), 10_000, "{stats:?}");
    assert!(stats.dropped_at_shutdown > 0, "{stats:?}");
    assert_eq!((stats.starts, stats.restarts), (1, 0));
    // Killed and reaped: no such process any more.
    assert!(
        !PathBuf::from(format!("/proc/{}", pid.trim())).exists(),
        "child {pid} still exists"
    );
}

#[tokio::test]
async fn crashing_child_is_restarted() {
    let s = Scripts::new();
    let script = s.write(
        "crash.py",
        r#"
import sys
for _ in range(3):
    sys.stdout.buffer.write(sys.stdin.buffer.readline())
    sys.stdout.buffer.flush()
sys.exit(3)
"#,
    );
    let (mw, mut rx) = python(&script);
    let recs = tricky_records(6);
    for r in &recs[..3] {
        mw.send(r);
    }
    assert_eq!(recv_n(&mut rx, 3).await, recs[..3]);
    until("a restart", || mw.stats().starts >= 2).await;
    for r in &recs[3..] {
        mw.send(r);
    }
    assert_eq!(
        recv_n(&mut rx, 3).await,
        recs[3..],
        "the new child serves the next records"
    );
    let stats = shutdown(mw, Duration::from_secs(5)).await;
    assert!(stats.restarts >= 1, "{stats:?}");
    assert_eq!(stats.returned, 6);
    assert_eq!(stats.lost_in_restart, 0);
}

#[tokio::test]
async fn garbage_lines_are_counted_and_skipped() {
    let s = Scripts::new();
    let script = s.write(
        "garbage.py",
        r#"
import sys
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    out.write(b"zz-not-hex\n")
    out.write(b"abc\n")
    out.write(b"no meta line here".hex().encode() + b"\n")
    out.write(b"\n")
    out.write(line.rstrip(b"\n") + b"\r\n")
    out.flush()
"#,
    );
    let (mw, mut rx) = python(&script);
    let recs = tricky_records(20);
    for r in &recs {
        mw.send(r);
    }
    assert_eq!(recv_n(&mut rx, recs.len()).await, recs);
    let stats = shutdown(mw, Duration::from_secs(10)).await;
    assert!(rest(&mut rx).await.is_empty());
    assert_eq!(stats.invalid_lines, 60, "{stats:?}");
    assert_eq!(stats.returned, 20);
}

#[tokio::test]
async fn stderr_lines_are_counted() {
    let s = Scripts::new();
    let script = s.write(
        "chatty.py",
        r#"
import sys
for n, line in enumerate(sys.stdin.buffer):
    sys.stderr.write("seen %d\n" % n)
    sys.stderr.flush()
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
"#,
    );
    let (mw, mut rx) = python(&script);
    let recs = tricky_records(10);
    for r in &recs {
        mw.send(r);
    }
    assert_eq!(recv_n(&mut rx, recs.len()).await, recs);
    let stats = shutdown(mw, Duration::from_secs(10)).await;
    assert_eq!(stats.stderr_lines, 10, "{stats:?}");
}

#[tokio::test]
async fn missing_program_is_retried_and_counted() {
    let (mw, mut rx) = start("/nonexistent/gor-test-mw", &[], DEFAULT_QUEUE);
    for r in &tricky_records(5) {
        mw.send(r);
    }
    until("a retry", || mw.stats().spawn_errors >= 2).await;
    let stats = shutdown(mw, Duration::from_millis(100)).await;
    assert!(rest(&mut rx).await.is_empty());
    assert_eq!(stats.starts, 0);
    assert!(stats.restarts >= 1, "{stats:?}");
    assert_eq!(stats.dropped_at_shutdown, 5, "{stats:?}");
    assert_eq!(accounted(&stats), 5);
}

#[tokio::test]
async fn byte_budget_bounds_the_queue() {
    let (mw, _rx) = start("/nonexistent/gor-test-mw", &[], DEFAULT_QUEUE);
    let mut cfg_small = MiddlewareConfig::new("/nonexistent/gor-test-mw", Vec::new());
    cfg_small.max_queue_bytes = 10_000;
    let (small, _rx2) = Middleware::start(cfg_small);
    let payload = vec![b'x'; 1000];
    for i in 0..20 {
        small.send(&record(i, RecordType::Request, &payload));
        mw.send(&record(i, RecordType::Request, &payload));
    }
    let s = small.stats();
    let mut msg = Vec::new();
    encode_message(&record(0, RecordType::Request, &payload), &mut msg);
    let line = (2 * msg.len() + 1) as u64;
    assert_eq!(s.queued, 10_000 / line, "{s:?}");
    assert_eq!(s.queued_bytes, s.queued * line);
    assert_eq!(s.dropped_queue_full, 20 - s.queued);
    assert_eq!(mw.stats().queued, 20);
    shutdown(small, Duration::ZERO).await;
    shutdown(mw, Duration::ZERO).await;
}
