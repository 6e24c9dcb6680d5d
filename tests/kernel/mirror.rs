//! Mirroring to staging: byte fidelity, rate limits, per-connection order, staging faults,
//! and the agent's own traffic never mirrored again. "Production" and "staging" are
//! recording servers (tests/src/staging.rs), so each side's received bytes are known.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use gor_tests::{
    agent::Agent,
    host::HostState,
    nginx::Nginx,
    staging::{Mode, Staging},
    traffic::{listen, pattern, Raw},
};

fn mirror_env<'a>(target: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("GOR_TARGET", target), ("GOR_STATS_INTERVAL", "1s")];
    env.extend_from_slice(extra);
    env
}

/// What staging should receive for `req`: Host's value replaced by `host` and
/// `X-Mirrored: gor` set (a header that is there keeps the client's spelling of its name).
fn expected(req: &[u8], host: &str) -> Vec<u8> {
    let head_end = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 2;
    let (head, body) = req.split_at(head_end);
    let mut out = Vec::new();
    let mut mark = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
        let name = &line[..line.iter().position(|&b| b == b':').unwrap_or(0)];
        if lower.starts_with("host:") {
            out.extend_from_slice(&[name, format!(": {host}\r\n").as_bytes()].concat());
        } else if lower.starts_with("x-mirrored:") {
            out.extend_from_slice(&[name, b": gor\r\n"].concat());
            mark = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    if !mark {
        out.extend_from_slice(b"X-Mirrored: gor\r\n");
    }
    out.extend_from_slice(body);
    out
}

fn corpus() -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = vec![
        b"GET /index.html HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n".to_vec(),
        b"GET /MiXeD?Case=Yes HTTP/1.1\r\nhOsT: shop.example\r\nX-lower: a\r\nX-UPPER: B\r\nx-DUP: 1\r\nx-dup: 2\r\nX-Dup: 3\r\n\r\n".to_vec(),
        b"DELETE /items/7 HTTP/1.1\r\nHost: shop.example\r\nAuthorization: Bearer abc.def\r\n\r\n".to_vec(),
        b"OPTIONS * HTTP/1.1\r\nHost: shop.example\r\n\r\n".to_vec(),
        b"PATCH /items/7 HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: 12\r\nX-Mirrored: client\r\n\r\n{\"name\":\"x\"}".to_vec(),
        b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec(),
        format!("GET /search?q={} HTTP/1.1\r\nHost: shop.example\r\n\r\n", "long".repeat(1500)).into_bytes(),
    ];
    let bin = pattern(3, 70_000);
    let mut post = format!("PUT /blob HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", bin.len()).into_bytes();
    post.extend_from_slice(&bin);
    c.push(post);
    c
}

#[test]
fn staging_receives_exactly_what_clients_sent_apart_from_host_and_set_headers() {
    let host = HostState::snapshot();
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-fidelity",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[("GOR_SET_HEADER", "X-Mirrored: gor")]),
    );
    let corpus = corpus();
    let mut c = Raw::connect(prod.addr);
    for req in &corpus {
        c.send(req);
    }
    let got = staging.wait_for(corpus.len(), Duration::from_secs(10));
    let cap = agent.stop();
    assert_eq!(
        got.len(),
        corpus.len(),
        "every request mirrored: {}",
        cap.stats
    );
    let host_header = staging.addr.to_string();
    for (req, rec) in corpus.iter().zip(&got) {
        let want = expected(req, &host_header);
        assert!(
            rec.raw == want,
            "staging got\n{}\nwanted\n{}",
            String::from_utf8_lossy(&rec.raw),
            String::from_utf8_lossy(&want)
        );
    }
    assert!(
        got.iter().all(|r| r.conn == got[0].conn),
        "one client connection -> one staging connection"
    );
    host.assert_clean();
}

#[test]
fn original_host_is_kept_when_asked() {
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-host",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[("GOR_ORIGINAL_HOST", "1")]),
    );
    let req = b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    Raw::connect(prod.addr).send(req);
    let got = staging.wait_for(1, Duration::from_secs(10));
    agent.stop();
    assert_eq!(got[0].raw, req);
}

/// Sends `total` requests over `conns` connections at about `rps` requests/s.
fn load(addr: std::net::SocketAddr, conns: usize, total: usize, rps: usize) {
    let per = total / conns;
    let gap = Duration::from_secs_f64(conns as f64 / rps as f64);
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                let start = Instant::now();
                for i in 0..per {
                    // Paced sending (a load shape, not a synchronisation).
                    let due = start + gap * i as u32;
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    raw.send(format!("GET /load/{c}/{i} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("load thread");
    }
}

#[test]
fn rate_per_second_is_held() {
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-rate",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[("GOR_RATE", "50")]),
    );
    let t0 = Instant::now();
    load(prod.addr, 5, 3000, 500);
    let elapsed = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let cap = agent.stop();
    let got = staging.received();
    // The steady window: after the first second (the bucket starts full) to the end.
    let window = elapsed.as_secs_f64() - 1.0;
    let in_window = got
        .iter()
        .filter(|r| {
            r.at.duration_since(t0) >= Duration::from_secs(1) && r.at.duration_since(t0) <= elapsed
        })
        .count();
    let rate = in_window as f64 / window;
    assert!(
        (45.0..=55.0).contains(&rate),
        "staging saw {rate:.1} requests/s over {window:.1}s (want 50 +-10%): {}",
        cap.stats
    );
    assert!(
        cap.stats["mirror"]["rate_limited"].as_u64().unwrap_or(0) > 2000,
        "{}",
        cap.stats
    );
}

#[test]
fn rate_percent_keeps_that_share() {
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-percent",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[("GOR_RATE", "10%")]),
    );
    load(prod.addr, 4, 4000, 4000);
    let cap = agent.stop();
    let framed = cap.http("requests");
    assert_eq!(framed, 4000);
    let got = staging.received().len() as f64;
    let share = 100.0 * got / framed as f64;
    assert!(
        (7.0..=13.0).contains(&share),
        "{share:.1}% mirrored (want 10 +-3)"
    );
}

#[test]
fn per_connection_order_is_kept_on_staging() {
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-order",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[]),
    );
    let addr = prod.addr;
    let handles: Vec<_> = (0..100)
        .map(|c| {
            std::thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                for i in 0..20 {
                    raw.send(
                        format!(
                            "POST /order/{c}/{i} HTTP/1.1\r\nHost: p\r\nContent-Length: 1\r\n\r\nx"
                        )
                        .as_bytes(),
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client");
    }
    let got = staging.wait_for(2000, Duration::from_secs(20));
    agent.stop();
    assert_eq!(got.len(), 2000);
    for c in 0..100 {
        let prefix = format!("POST /order/{c}/");
        let mine: Vec<(usize, usize)> = got
            .iter()
            .filter_map(|r| {
                let line = String::from_utf8_lossy(&r.raw);
                let rest = line.strip_prefix(&prefix)?;
                Some((rest.split(' ').next()?.parse().ok()?, r.conn))
            })
            .collect();
        let seqs: Vec<usize> = mine.iter().map(|m| m.0).collect();
        assert_eq!(
            seqs,
            (0..20).collect::<Vec<_>>(),
            "client {c}'s requests in order on staging"
        );
    }
}

#[test]
fn staging_faults_never_reach_production_and_mirroring_resumes() {
    let host = HostState::snapshot();
    let prod = Staging::start(listen("127.0.0.1"));
    // A port with nothing listening: staging refuses connections.
    let staging_listener = listen("127.0.0.1");
    let staging_addr = staging_listener.local_addr().expect("addr");
    drop(staging_listener);
    let target = format!("http://{staging_addr}");
    let agent = Agent::start_with(
        "mirror-faults",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[("GOR_TIMEOUT", "1s"), ("GOR_QUEUE", "100")]),
    );
    let mut client = Raw::connect(prod.addr);
    let mut worst = Duration::ZERO;
    let mut sent = 0usize;
    // Production traffic goes on until the agent's own counters (its stats file, written
    // every second) show the fault was met; the agent backs off between failures, so a
    // fixed number of requests could all fall into one backoff window.
    let mut until = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for _ in 0..5 {
                worst = worst
                    .max(client.send(
                        format!("GET /{what}/{sent} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes(),
                    ));
                sent += 1;
            }
            if done(&agent.stats_now()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within 30 s: {}",
                agent.stats_now()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let counter = |name: &'static str| {
        move |s: &serde_json::Value| s["mirror"][name].as_u64().unwrap_or(0) > 0
    };
    until("refused", &counter("connect_errors"));

    // Staging comes up but answers after 10 s, then resets connections, then is fine.
    let staging =
        Staging::start(std::net::TcpListener::bind(staging_addr).expect("rebind staging"));
    staging.set_mode(Mode::Slow);
    until("slow", &counter("timeouts"));
    let rss_slow = agent.rss_kib();
    staging.set_mode(Mode::Reset);
    until("reset", &counter("resets"));
    staging.set_mode(Mode::Ok);
    let back = |_: &serde_json::Value| {
        staging
            .received()
            .iter()
            .any(|r| r.raw.starts_with(b"GET /back/"))
    };
    until("back", &back);
    let rss_end = agent.rss_kib();
    let cap = agent.stop();
    assert_eq!(
        cap.http("requests") as usize,
        sent,
        "every production request was captured"
    );
    assert!(
        worst < Duration::from_millis(500),
        "a production request took {worst:?}"
    );
    assert!(
        rss_slow < 300_000 && rss_end < 300_000,
        "agent memory stayed bounded: {rss_slow} KiB, {rss_end} KiB"
    );
    host.assert_clean();
}

#[test]
fn staging_on_the_same_host_and_captured_port_is_not_mirrored_again() {
    let host = HostState::snapshot();
    // Production is its own staging: the agent mirrors to the very port it captures.
    let prod = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", prod.addr);
    let agent = Agent::start_with(
        "mirror-loop",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[]),
    );
    let mut raw = Raw::connect(prod.addr);
    for i in 0..50 {
        raw.send(format!("GET /loop/{i} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes());
    }
    // 50 from the client and 50 mirrored; a loop would keep adding.
    let got = prod.wait_for(100, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let cap = agent.stop();
    assert_eq!(
        prod.received().len(),
        100,
        "each request once from the client and once mirrored ({} got)",
        got.len()
    );
    assert_eq!(
        cap.http("requests"),
        50,
        "the mirrored copies were not captured: {}",
        cap.stats
    );
    assert!(cap.kernel("excluded") > 0, "{}", cap.stats);
    host.assert_clean();
}

/// Clients that pipeline bursts of requests make the agent pipeline them to staging too;
/// staging is nginx closing each connection after 7 requests, so batches are cut short
/// and their unanswered requests go again on a new connection. Staging must still see
/// every request exactly once, each client's in order.
#[test]
fn pipelined_mirroring_survives_staging_closing_every_few_requests() {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 5;
    const BURST: usize = 40;
    let host = HostState::snapshot();
    let dir = gor_tests::agent::temp_dir("mirror-pipeline-nginx");
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Nginx::with_keepalive_requests(dir.join("staging"), 7);
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "mirror-pipeline",
        &[prod.addr.port()],
        &["lo"],
        None,
        &mirror_env(&target, &[]),
    );
    let addr = prod.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).expect("connect to production");
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                for round in 0..ROUNDS {
                    let burst: String = (0..BURST)
                        .map(|i| {
                            let i = round * BURST + i;
                            format!("GET /index.html?c={c}&i={i} HTTP/1.1\r\nHost: p\r\n\r\n")
                        })
                        .collect();
                    s.write_all(burst.as_bytes()).expect("send a burst");
                    let mut answers = vec![0u8; answer.len() * BURST];
                    s.read_exact(&mut answers).expect("production's answers");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    // The agent finishes what it has in flight before it exits.
    let cap = agent.stop();
    let mirror = &cap.stats["mirror"];
    let total = CLIENTS * ROUNDS * BURST;
    let logged: Vec<String> = staging
        .access_log()
        .into_iter()
        .map(|l| l.request_line)
        .filter(|l| l.starts_with("GET /index.html?c="))
        .collect();
    assert_eq!(logged.len(), total, "staging served each once: {mirror}");
    for c in 0..CLIENTS {
        let prefix = format!("GET /index.html?c={c}&i=");
        let seqs: Vec<usize> = logged
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix)?.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(
            seqs,
            (0..ROUNDS * BURST).collect::<Vec<_>>(),
            "client {c}'s requests, each once and in order"
        );
    }
    let n = |name: &str| mirror[name].as_u64().unwrap_or(0);
    assert_eq!(n("status_2xx") as usize, total, "{mirror}");
    assert!(n("pipelined") > 0, "requests were pipelined: {mirror}");
    assert!(
        n("retries") > 0,
        "cut-short batches were sent again: {mirror}"
    );
    for failure in ["resets", "timeouts", "bad_responses", "connect_errors"] {
        assert_eq!(n(failure), 0, "{failure}: {mirror}");
    }
    host.assert_clean();
}
