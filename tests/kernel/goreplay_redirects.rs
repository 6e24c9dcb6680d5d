//! GoReplay's `--output-http-redirects N`, run from its documentation's command line
//! against a small real staging on loopback that redirects: the Location on staging is
//! requested next, a chain longer than N stops at N, and a Location on another host is
//! never requested.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use gor_tests::{
    agent::{counter, temp_dir},
    gorformat::write_gets,
};

use super::goreplay_files::Gor;

/// Request lines received, in arrival order, by every connection of a listener.
type Log = Arc<Mutex<Vec<String>>>;

/// Serves `listener` on threads: each request's line is logged, then answered by
/// `answer(target)` (status, extra header lines), keep-alive, with an empty body.
fn serve(listener: TcpListener, answer: fn(&str, u16) -> (u16, String)) -> Log {
    let log: Log = Arc::default();
    let port = listener.local_addr().expect("addr").port();
    let l = log.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let l = l.clone();
            thread::spawn(move || serve_conn(conn, &l, answer, port));
        }
    });
    log
}

fn serve_conn(conn: TcpStream, log: &Log, answer: fn(&str, u16) -> (u16, String), port: u16) {
    let mut out = conn.try_clone().expect("clone");
    let mut lines = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if !matches!(lines.read_line(&mut request_line), Ok(n) if n > 0) {
            return;
        }
        // The requests here are GETs without a body: the head ends with an empty line.
        loop {
            let mut h = String::new();
            if !matches!(lines.read_line(&mut h), Ok(n) if n > 0) {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
        }
        let request_line = request_line.trim_end().to_string();
        log.lock().unwrap().push(request_line.clone());
        let target = request_line.split(' ').nth(1).unwrap_or_default();
        let (status, headers) = answer(target, port);
        let resp = format!("HTTP/1.1 {status} X\r\n{headers}Content-Length: 0\r\n\r\n");
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Staging's answers: /old moves to /new; /c1 to /c2 to /c3 to /c4 (three redirects);
/// /away moves to the same port on another loopback host.
fn staging_answer(target: &str, port: u16) -> (u16, String) {
    let to = |loc: String| (302, format!("Location: {loc}\r\n"));
    match target {
        "/old" => to("/new".into()),
        "/c1" => to("c2".into()),
        "/c2" => to(format!("http://127.0.0.1:{port}/c3")),
        "/c3" => to("/c4".into()),
        "/away" => to(format!("http://127.0.0.2:{port}/new")),
        _ => (200, String::new()),
    }
}

// GoReplay's README, "Follow redirects": "gor --input-tcp replay.local:28020
// --output-http http://staging.com --output-http-redirects 2" ("The given example will
// follow up to 2 redirects per request"). gor has no `--input-tcp` yet, so the requests
// come from a file instead (docs/Saving-and-Replaying-from-file.md: "gor --input-file
// requests.gor --output-http http://staging.com"); the output part is the doc's, with
// staging's address.
#[test]
fn goreplay_output_http_redirects_follows_up_to_n_on_staging_only() {
    let staging = TcpListener::bind("127.0.0.1:0").expect("bind staging");
    let port = staging.local_addr().expect("addr").port();
    // Another host on the same port: where /away points. It must never be asked.
    let elsewhere = TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2");
    let got = serve(staging, staging_answer);
    let got_elsewhere = serve(elsewhere, |_, _| (200, String::new()));

    let dir = temp_dir("gr-redirects-in");
    let file = dir.join("requests.gor");
    // 300 ms apart: each request's chain is done before the next one is replayed.
    let paths = ["/old", "/c1", "/away", "/end"].map(String::from);
    write_gets(&file, paths, 300);
    let target = format!("http://127.0.0.1:{port}");
    let mut gor = Gor::start(
        "gr-redirects",
        &[
            "--input-file",
            &file.display().to_string(),
            "--output-http",
            &target,
            "--output-http-redirects",
            "2",
        ],
    );
    gor.wait(Duration::from_secs(60));

    let lines = got.lock().unwrap().clone();
    let want = [
        "/old", "/new", // followed
        "/c1", "/c2", "/c3",   // two followed, the third (to /c4) is the answer
        "/away", // not followed: another host
        "/end",
    ]
    .map(|p| format!("GET {p} HTTP/1.1"));
    assert_eq!(lines, want, "{}", gor.stderr());
    assert!(
        got_elsewhere.lock().unwrap().is_empty(),
        "another host was asked"
    );
    let stats = gor.stats();
    let t = |name| counter(&stats, &["mirror", name]);
    assert_eq!(
        (t("redirects_followed"), t("redirects_elsewhere"), t("sent")),
        (3, 1, 7),
        "{stats:#}"
    );
}
