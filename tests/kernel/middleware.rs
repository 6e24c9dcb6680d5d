//! Middleware on live capture: programs written here from GoReplay's protocol description
//! (one hex line of meta line + payload per message on stdin; what comes back on stdout
//! continues) in Python and in shell, between capture and staging. Echo passes everything
//! through byte for byte; a filter drops exactly the POSTs; an editor changes what staging
//! receives; a sleeper never slows production or capture; a crasher is restarted.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use gor_tests::{
    agent::{temp_dir, Agent, Captured},
    staging::{Received, Staging},
    traffic::{listen, Raw},
};

const PY_ECHO: &str = r#"import sys
for line in sys.stdin:
    sys.stdout.write(line)
    sys.stdout.flush()
"#;

const SH_ECHO: &str = r#"#!/bin/sh
while IFS= read -r line; do
    printf '%s\n' "$line"
done
"#;

const PY_DROP_POSTS: &str = r#"import binascii, sys
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    meta, _, payload = data.partition(b"\n")
    if meta.startswith(b"1 ") and payload.startswith(b"POST "):
        continue
    sys.stdout.write(line)
    sys.stdout.flush()
"#;

const PY_SET_ENV: &str = r#"import binascii, sys
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    data = data.replace(b"\r\nX-Env: prod\r\n", b"\r\nX-Env: staging\r\n", 1)
    sys.stdout.write(binascii.hexlify(data).decode() + "\n")
    sys.stdout.flush()
"#;

const PY_SLEEPY: &str = r#"import sys, time
for line in sys.stdin:
    time.sleep(1)
    sys.stdout.write(line)
    sys.stdout.flush()
"#;

const PY_CRASHER: &str = r#"import sys
for n, line in enumerate(sys.stdin, 1):
    sys.stdout.write(line)
    sys.stdout.flush()
    if n == 3:
        sys.stderr.write("middleware: exiting after 3 messages\n")
        sys.stderr.flush()
        sys.exit(3)
"#;

/// Writes a middleware program into `dir`, executable.
fn program(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the middleware");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A mix of GETs and POSTs, each with `X-Env: prod`.
fn requests(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 3 == 1 {
                let body = format!("{{\"n\":{i},\"data\":\"{}\"}}", "x".repeat(i * 7));
                format!(
                    "POST /api/items HTTP/1.1\r\nHost: prod.example\r\nX-Env: prod\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            } else {
                format!("GET /items/{i}?q=mw HTTP/1.1\r\nHost: prod.example\r\nX-Env: prod\r\n\r\n")
                    .into_bytes()
            }
        })
        .collect()
}

struct Run {
    sent: Vec<Vec<u8>>,
    staging: Staging,
    cap: Captured,
}

/// Production and staging (recording servers), the agent with `middleware` mirroring to
/// staging with the original Host; sends `n` requests on one keep-alive connection and
/// waits until staging has `expect` of them, then stops the agent.
fn run(name: &str, middleware: &str, n: usize, expect: usize, extra: &[(&str, &str)]) -> Run {
    let (production, staging, agent) = start(name, middleware, extra);
    let sent = requests(n);
    let mut client = Raw::connect(production.addr);
    for r in &sent {
        client.send(r);
    }
    staging.wait_for(expect, Duration::from_secs(20));
    let cap = agent.stop();
    Run { sent, staging, cap }
}

/// Production and staging (recording servers), and the agent capturing production with
/// `middleware`, mirroring to staging with the original Host.
fn start(name: &str, middleware: &str, extra: &[(&str, &str)]) -> (Staging, Staging, Agent) {
    let production = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let mut env = vec![
        ("GOR_TARGET", target.as_str()),
        ("GOR_ORIGINAL_HOST", "1"),
        ("GOR_MIDDLEWARE", middleware),
    ];
    env.extend_from_slice(extra);
    let agent = Agent::start_with(name, &[production.addr.port()], &["lo"], None, &env);
    (production, staging, agent)
}

fn raws(got: &[Received]) -> Vec<Vec<u8>> {
    got.iter().map(|r| r.raw.clone()).collect()
}

#[test]
fn python_echo_middleware_passes_everything_through() {
    let dir = temp_dir("mw-py-echo");
    let mw = format!("python3 {}", program(&dir, "echo.py", PY_ECHO).display());
    let r = run("mw-py-echo-agent", &mw, 60, 60, &[]);
    assert_eq!(
        raws(&r.staging.received()),
        r.sent,
        "every request, byte for byte, in order"
    );
    let m = &r.cap.stats["middleware"];
    assert_eq!(m["returned"], 60, "{m}");
    assert_eq!(m["dropped_queue_full"], 0, "{m}");
}

#[test]
fn shell_echo_middleware_passes_everything_through() {
    let dir = temp_dir("mw-sh-echo");
    let mw = program(&dir, "echo.sh", SH_ECHO);
    // With the original responses tracked (and no file output) they go through it too.
    let r = run(
        "mw-sh-echo-agent",
        mw.to_str().expect("utf-8"),
        60,
        60,
        &[("GOR_TRACK_RESPONSES", "1")],
    );
    assert_eq!(raws(&r.staging.received()), r.sent);
    assert_eq!(r.cap.stats["middleware"]["returned"], 120);
    let responses = r.cap.messages.iter().filter(|m| !m.is_request).count();
    assert_eq!(
        responses, 60,
        "the responses came back and went on to the outputs"
    );
}

#[test]
fn middleware_that_drops_posts_drops_exactly_those() {
    let dir = temp_dir("mw-drop");
    let mw = format!(
        "python3 {}",
        program(&dir, "drop.py", PY_DROP_POSTS).display()
    );
    let sent = requests(60);
    let gets: Vec<Vec<u8>> = sent
        .iter()
        .filter(|r| r.starts_with(b"GET "))
        .cloned()
        .collect();
    let r = run("mw-drop-agent", &mw, 60, gets.len(), &[]);
    // A POST would have arrived by the time the last GET did (one connection, in order).
    assert_eq!(raws(&r.staging.received()), gets, "the GETs, and only them");
    assert_eq!(r.cap.stats["http"]["requests"], 60, "all were captured");
    assert_eq!(r.cap.stats["middleware"]["returned"], gets.len());
}

#[test]
fn middleware_that_edits_a_header_changes_what_staging_receives() {
    let dir = temp_dir("mw-edit");
    let mw = format!("python3 {}", program(&dir, "edit.py", PY_SET_ENV).display());
    let r = run("mw-edit-agent", &mw, 30, 30, &[]);
    let want: Vec<Vec<u8>> = r
        .sent
        .iter()
        .map(|req| {
            String::from_utf8(req.clone())
                .expect("ascii")
                .replacen("X-Env: prod", "X-Env: staging", 1)
                .into_bytes()
        })
        .collect();
    assert_eq!(raws(&r.staging.received()), want);
}

#[test]
fn sleeping_middleware_never_slows_production_or_capture() {
    let dir = temp_dir("mw-sleepy");
    let mw = format!(
        "python3 {}",
        program(&dir, "sleepy.py", PY_SLEEPY).display()
    );
    let (production, _staging, agent) = start(
        "mw-sleepy-agent",
        &mw,
        &[("GOR_MIDDLEWARE_QUEUE", "10"), ("GOR_SHUTDOWN_GRACE", "1s")],
    );
    let mut client = Raw::connect(production.addr);
    let mut worst = Duration::ZERO;
    for r in requests(300) {
        worst = worst.max(client.send(&r));
    }
    let cap = agent.stop();
    cap.assert_nothing_lost();
    assert_eq!(cap.stats["http"]["requests"], 300, "capture kept up");
    let m = &cap.stats["middleware"];
    assert_eq!(m["offered"], 300, "{m}");
    // The child takes one message a second; ten wait in the queue; the rest is dropped.
    let dropped = m["dropped_queue_full"].as_u64().unwrap_or(0);
    let sent = m["sent"].as_u64().unwrap_or(0);
    assert!(
        dropped > 0 && dropped + sent + 10 >= 300,
        "the queue was full and the excess dropped, counted: {m}"
    );
    assert!(
        worst < Duration::from_millis(500),
        "production's slowest request took {worst:?}"
    );
}

#[test]
fn crashing_middleware_is_restarted() {
    let dir = temp_dir("mw-crash");
    let mw = format!(
        "python3 {}",
        program(&dir, "crash.py", PY_CRASHER).display()
    );
    let (production, staging, agent) = start("mw-crash-agent", &mw, &[]);
    let mut client = Raw::connect(production.addr);
    let sent = requests(3);
    for (i, r) in sent.iter().enumerate() {
        client.send(r);
        staging.wait_for(i + 1, Duration::from_secs(10));
    }
    // The child has exited after its third message. Requests keep coming; once it is
    // back (after a backoff) they reach staging again.
    let mut later = 0;
    for i in 0..50 {
        let req = format!("GET /after-crash/{i} HTTP/1.1\r\nHost: prod.example\r\n\r\n");
        client.send(req.as_bytes());
        let got = staging.wait_for(4, Duration::from_millis(200));
        later = got.len().saturating_sub(3);
        if later > 0 {
            break;
        }
    }
    let cap = agent.stop();
    assert!(later > 0, "nothing reached staging after the crash");
    let got = staging.received();
    assert_eq!(raws(&got[..3]), sent);
    assert!(
        String::from_utf8_lossy(&got[3].raw).starts_with("GET /after-crash/"),
        "{:?}",
        String::from_utf8_lossy(&got[3].raw)
    );
    let m = &cap.stats["middleware"];
    assert!(m["restarts"].as_u64().unwrap_or(0) >= 1, "{m}");
    assert!(
        cap.stderr.contains("middleware restarted"),
        "the restart is logged: {}",
        cap.stderr
    );
    assert!(
        cap.stderr.contains("exiting after 3 messages"),
        "the child's stderr is in the agent's log: {}",
        cap.stderr
    );
}
