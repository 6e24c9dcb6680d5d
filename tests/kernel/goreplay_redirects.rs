//! GoReplay's `--output-http-redirects N`, run from its documentation's command line
//! against a small real staging on loopback that redirects: the Location on staging is
//! requested next, a chain longer than N stops at N, and a Location on another host is
//! never requested.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{counter, Agent},
    gorformat::{get_request, record},
};

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

/// Waits (at most 20 s) until `log` holds `n` lines.
fn wait_for(log: &Log, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "staging got {:?}",
            log.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// GoReplay's README, "Follow redirects": "gor --input-tcp replay.local:28020
// --output-http http://staging.com --output-http-redirects 2" ("The given example will
// follow up to 2 redirects per request"), with loopback addresses; the requests come as
// GoReplay's `--output-tcp` sends them.
#[test]
fn goreplay_output_http_redirects_follows_up_to_n_on_staging_only() {
    let staging = TcpListener::bind("127.0.0.1:0").expect("bind staging");
    let port = staging.local_addr().expect("addr").port();
    // Another host on the same port: where /away points. It must never be asked.
    let elsewhere = TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2");
    let got = serve(staging, staging_answer);
    let got_elsewhere = serve(elsewhere, |_, _| (200, String::new()));
    let relay = {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").to_string()
    };
    let target = format!("http://127.0.0.1:{port}");
    let replay = Agent::start_args(
        "gr-redirects",
        &[
            "--input-tcp",
            &relay,
            "--output-http",
            &target,
            "--output-http-redirects",
            "2",
        ],
        &[],
    );
    let mut listener = TcpStream::connect(&relay).expect("connect to --input-tcp");
    // One at a time, each once staging has the one before and its redirects: the order
    // staging sees is then the test's.
    let mut want = Vec::new();
    for (i, (path, asked)) in [
        ("/old", &["/old", "/new"][..]), // followed
        ("/c1", &["/c1", "/c2", "/c3"]), // two followed; the third (to /c4) is the answer
        ("/away", &["/away"]),           // not followed: another host
        ("/end", &["/end"]),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("{:024x}", i + 1);
        let msg = record(
            1,
            &id,
            1_764_000_000_000_000_000 + i as u64,
            0,
            &get_request(path),
        );
        listener.write_all(&msg).expect("send a message");
        want.extend(asked.iter().map(|p| format!("GET {p} HTTP/1.1")));
        wait_for(&got, want.len());
    }
    drop(listener);
    let r = replay.stop();
    assert_eq!(*got.lock().unwrap(), want, "{}", r.stderr);
    assert!(
        got_elsewhere.lock().unwrap().is_empty(),
        "another host was asked"
    );
    let t = |name| counter(&r.stats, &["mirror", name]);
    assert_eq!(
        (t("redirects_followed"), t("redirects_elsewhere"), t("sent")),
        (3, 1, 7),
        "{:#}",
        r.stats
    );
}
