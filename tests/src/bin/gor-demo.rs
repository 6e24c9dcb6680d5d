//! `cargo xtask demo`: gor end to end on this machine, in one command.
//!
//! Starts a local "production" (nginx), a local "staging" that records what it receives,
//! the agent (capturing production's port on `lo`, mirroring to staging at 100 requests/s),
//! and realistic traffic (GET, JSON POST, gzip-chunked responses, keep-alive, several
//! clients) for 15 seconds; shows live counts; ends with a report comparing what
//! production served with what staging received. Then the comparison: a production
//! application and a staging build of it with planted differences (`gor_tests::apps`),
//! the agent comparing their responses (`GOR_COMPARE=1`), its results per endpoint, and
//! the HTML report of them. Everything runs on loopback and is cleaned up at the end,
//! but the report, which stays for a look.

use std::{
    io::{BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{agent_bin, counter, temp_dir, Agent},
    apps::{planted_requests, App, Side},
    nginx::Nginx,
    staging::Staging,
    traffic::{listen, read_message},
};

const SECONDS: u64 = 15;
const RATE: &str = "100";

fn client(addr: SocketAddr, n: usize, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let s = TcpStream::connect(addr).expect("connect to production");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let req = match i % 4 {
            0 => format!("GET /index.html?client={n}&i={i} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: demo/{n}\r\n\r\n"),
            1 => format!("GET /data.json HTTP/1.1\r\nHost: shop.example\r\nAccept-Encoding: gzip\r\nX-Request-Id: {n}-{i}\r\n\r\n"),
            2 => {
                let body = format!("{{\"client\":{n},\"order\":{i},\"items\":[1,2,3]}}");
                format!("POST /echo HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            }
            _ => format!("GET /missing/{i} HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        };
        if w.write_all(req.as_bytes()).is_err() || read_message(&mut r).is_none() {
            return;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        i += 1;
        // About 50 requests/s per client: a steady, realistic trickle.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let dir = temp_dir("demo");
    println!("gor demo: production (nginx), staging (recorder), agent, traffic on loopback for {SECONDS}s\n");
    let prod = Nginx::start(dir.join("production"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "demo-agent",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_TARGET", &target),
            ("GOR_RATE", RATE),
            ("GOR_STATS_INTERVAL", "1s"),
            ("GOR_SET_HEADER", "X-Mirrored-By: gor"),
        ],
    );
    println!("production  http://{}\nstaging     {target}\nagent       GOR_PORTS={} GOR_RATE={RATE} GOR_TARGET={target}\n", prod.addr, prod.addr.port());

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (stop, sent) = (stop.clone(), sent.clone());
            let addr = prod.addr;
            std::thread::spawn(move || client(addr, i, stop, sent))
        })
        .collect();

    println!(
        "{:>4} {:>10} {:>9} {:>9} {:>12} {:>9} {:>10} {:>9} {:>9}",
        "s",
        "clients",
        "captured",
        "mirrored",
        "rate-limited",
        "staging",
        "2xx/4xx",
        "p50 ms",
        "p99 ms"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(SECONDS) {
        std::thread::sleep(Duration::from_secs(1));
        let s = agent.stats_now();
        let r = &s["mirror"];
        println!(
            "{:>4} {:>10} {:>9} {:>9} {:>12} {:>9} {:>10} {:>9.1} {:>9.1}",
            start.elapsed().as_secs(),
            sent.load(Ordering::Relaxed),
            counter(&s, &["http", "requests"]),
            counter(r, &["sent"]),
            counter(r, &["rate_limited"]),
            staging.received().len(),
            format!(
                "{}/{}",
                counter(r, &["status_2xx"]),
                counter(r, &["status_4xx"])
            ),
            counter(r, &["latency_p50_us"]) as f64 / 1000.0,
            counter(r, &["latency_p99_us"]) as f64 / 1000.0,
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let cap = agent.stop();
    let served = prod.access_log();
    let received = staging.received();

    // Every request staging received must be one production served, byte for byte,
    // apart from the Host header (the target's) and the X-Mirrored-By mark.
    let normalise = |raw: &[u8]| -> Vec<u8> {
        let text = String::from_utf8_lossy(raw);
        text.split_inclusive("\r\n")
            .filter(|l| {
                !l.to_ascii_lowercase().starts_with("host:") && !l.starts_with("X-Mirrored-By:")
            })
            .collect::<String>()
            .into_bytes()
    };
    let mut captured: Vec<Vec<u8>> = cap
        .messages
        .iter()
        .filter(|m| m.is_request)
        .map(|m| normalise(&m.raw))
        .collect();
    captured.sort();
    let mut exact = 0;
    for r in &received {
        if captured.binary_search(&normalise(&r.raw)).is_ok() {
            exact += 1;
        }
    }
    let r = &cap.stats["mirror"];
    println!("\nreport");
    println!(
        "  production served        {} requests (nginx access log)",
        served.len()
    );
    println!(
        "  captured and framed      {} requests, {} responses",
        counter(&cap.stats, &["http", "requests"]),
        counter(&cap.stats, &["http", "responses"])
    );
    println!(
        "  mirrored to staging      {} (rate limit {RATE}/s; {} rate-limited, {} queue-full)",
        counter(r, &["sent"]),
        counter(r, &["rate_limited"]),
        counter(r, &["queue_full"])
    );
    println!("  staging received         {} requests; {exact} identical to a production request (Host and X-Mirrored-By aside)", received.len());
    println!("  staging answered         2xx {} 3xx {} 4xx {} 5xx {}; errors: connect {} timeout {} reset {}", counter(r, &["status_2xx"]), counter(r, &["status_3xx"]), counter(r, &["status_4xx"]), counter(r, &["status_5xx"]), counter(r, &["connect_errors"]), counter(r, &["timeouts"]), counter(r, &["resets"]));
    println!(
        "  staging latency          p50 {:.1} ms, p99 {:.1} ms",
        counter(r, &["latency_p50_us"]) as f64 / 1000.0,
        counter(r, &["latency_p99_us"]) as f64 / 1000.0
    );
    println!(
        "  lost in capture          ring buffer drops {}, gaps {}",
        counter(&cap.stats, &["kernel", "ringbuf_drops"]),
        counter(&cap.stats, &["reassembly", "gaps"])
    );
    let ok = exact == received.len() && !received.is_empty();
    drop(prod);
    let compared = comparison();
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("gor-tests"));
    if !ok {
        eprintln!("\ngor demo: staging received requests that production did not serve as such");
        std::process::exit(1);
    }
    if !compared {
        eprintln!("\ngor demo: the comparison did not compare every exchange");
        std::process::exit(1);
    }
    println!("\ngor demo: done; everything it started is stopped and its files are removed");
}

/// The second part: production against a staging build with planted differences.
fn comparison() -> bool {
    let prod = App::start(Side::Production);
    let staging = App::start(Side::Staging);
    let dir = temp_dir("demo-compare");
    let diffs = dir.join("diffs.jsonl");
    let target = format!("http://{}", staging.addr);
    println!(
        "\ncomparison: production http://{} and a staging build with planted differences {target}",
        prod.addr
    );
    println!(
        "agent       GOR_PORTS={} GOR_TARGET={target} GOR_COMPARE=1 GOR_COMPARE_IGNORE_JSON='$.timestamp' GOR_OUTPUT_DIFFS=diffs.jsonl\n",
        prod.addr.port()
    );
    let agent = Agent::start_with(
        "demo-compare-agent",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_TARGET", &target),
            ("GOR_COMPARE", "1"),
            ("GOR_COMPARE_IGNORE_JSON", "$.timestamp"),
            ("GOR_OUTPUT_DIFFS", diffs.to_str().unwrap_or_default()),
            ("GOR_STATS_INTERVAL", "1s"),
        ],
    );
    let requests = planted_requests();
    let urls: Vec<String> = requests
        .iter()
        .map(|p| format!("http://{}{p}", prod.addr))
        .collect();
    // The bodies are not for the screen (curl's `-o` would cover only the first URL).
    let _ = std::process::Command::new("curl")
        .args(["-sS", "--compressed"])
        .args(&urls)
        .stdout(std::process::Stdio::null())
        .status();
    // The agent counts every compared exchange: wait (bounded) until all are.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let s = agent.stats_now();
        let done: u64 = s["compare"]["outcomes"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(|v| v.as_u64()).sum());
        if done >= requests.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let cap = agent.stop();
    let c = &cap.stats["compare"];
    println!(
        "{:<24} {:>6} {:>7} {:>5} {:>8} {:>14} {:>14}",
        "endpoint", "match", "status", "body", "headers", "production p50", "staging p50"
    );
    for e in c["endpoints"].as_array().into_iter().flatten() {
        let o = &e["outcomes"];
        let ms = |side: &str| e[side]["p50_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
        println!(
            "{:<24} {:>6} {:>7} {:>5} {:>8} {:>11.2} ms {:>11.2} ms",
            e["endpoint"].as_str().unwrap_or(""),
            counter(o, &["match"]),
            counter(o, &["status"]),
            counter(o, &["body"]),
            counter(o, &["headers"]),
            ms("production_latency"),
            ms("staging_latency"),
        );
    }
    let total: u64 = c["outcomes"]
        .as_object()
        .map_or(0, |o| o.values().filter_map(|v| v.as_u64()).sum());
    println!(
        "\n  compared {total} of {} exchanges; differences written to the diffs file: {}",
        requests.len(),
        counter(c, &["diffs", "written"])
    );
    let html = std::env::temp_dir().join("gor-demo-report.html");
    let report = std::process::Command::new(agent_bin())
        .arg("report")
        .arg(&diffs)
        .arg("--html")
        .arg(&html)
        .output();
    match report {
        Ok(out) if out.status.success() => {
            println!(
                "  the HTML report: {} (open it in a browser)",
                html.display()
            )
        }
        Ok(out) => eprintln!(
            "  gor-agent report failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("  gor-agent report could not run: {e}"),
    }
    total == requests.len() as u64
}
