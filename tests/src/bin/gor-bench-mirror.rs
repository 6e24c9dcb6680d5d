//! `cargo xtask bench` (part 2): mirroring performance, with its baseline in the same run.
//!
//! 1. Throughput: wrk against a fast local staging (nginx answering 200) gives the
//!    baseline requests/s. Then wrk drives production (another nginx) while the agent
//!    mirrors everything to that staging; the mirrored requests/s (staging's access log
//!    over wrk's duration) is reported as a ratio of the baseline.
//! 2. Latency: a paced client sends 1,000 requests/s to production for 5 s; a recording
//!    staging timestamps each arrival; capture-to-staging latency (client send -> staging
//!    arrival) is reported as p50/p99.

use std::{
    io::{BufReader, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use gor_tests::{
    agent::{temp_dir, Agent},
    clients::wrk,
    nginx::Nginx,
    staging::Staging,
    traffic::{listen, read_message},
};

const WRK_SECONDS: u32 = 5;
const WRK_CONNS: u32 = 16;

fn requests_per_sec(wrk_out: &str) -> f64 {
    wrk_out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = temp_dir("bench-mirror");
    // --- throughput ---
    let staging = Nginx::start(dir.join("staging"));
    let baseline = requests_per_sec(&wrk(
        &format!("http://{}/index.html", staging.addr),
        WRK_CONNS,
        WRK_SECONDS,
    ));
    let before = staging.access_log().len();
    let prod = Nginx::start(dir.join("production"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "bench-agent",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[("GOR_TARGET", &target), ("GOR_QUEUE", "100000")],
    );
    let t0 = Instant::now();
    let input = requests_per_sec(&wrk(
        &format!("http://{}/index.html", prod.addr),
        WRK_CONNS,
        WRK_SECONDS,
    ));
    let cap = agent.stop();
    let elapsed = t0.elapsed().as_secs_f64();
    let mirrored = staging.access_log().len() - before;
    let mirrored_rps = mirrored as f64 / elapsed;
    let r = &cap.stats["replay"];
    println!("mirror throughput (wrk -c{WRK_CONNS} -d{WRK_SECONDS}s, 2 cores shared by wrk, nginx x2 and the agent)");
    println!("  baseline: wrk directly against staging      {baseline:>10.0} requests/s");
    println!("  production input (wrk against production)   {input:>10.0} requests/s");
    println!("  mirrored to staging                          {mirrored_rps:>10.0} requests/s ({mirrored} in {elapsed:.1}s)");
    println!(
        "  ratio mirrored / baseline                    {:>10.2}",
        mirrored_rps / baseline
    );
    println!(
        "  ratio mirrored / production input            {:>10.2}",
        mirrored_rps / input.max(1.0)
    );
    println!(
        "  dropped: queue-full {}, lane-queue-full {}, ring buffer {}",
        r["queue_full"], r["lane_queue_full"], cap.stats["kernel"]["ringbuf_drops"]
    );
    drop(prod);
    drop(staging);

    // --- latency at 1,000 requests/s ---
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let agent = Agent::start_with(
        "bench-latency",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[("GOR_TARGET", &target)],
    );
    let conns = 10;
    let per_conn = 500; // 10 x 100/s for 5 s
    let start = Instant::now() + Duration::from_millis(100);
    let handles: Vec<_> = (0..conns)
        .map(|c| {
            let addr = prod.addr;
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).expect("connect");
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut w = s;
                let mut sent = Vec::new();
                for i in 0..per_conn {
                    let due = start
                        + Duration::from_millis(10) * i as u32
                        + Duration::from_micros(1000 * c as u64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    let at = Instant::now();
                    w.write_all(format!("GET /lat/{c}/{i} HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes())
                        .expect("send");
                    read_message(&mut r).expect("answer");
                    sent.push((format!("GET /lat/{c}/{i} "), at));
                }
                sent
            })
        })
        .collect();
    let sent: Vec<(String, Instant)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("client"))
        .collect();
    let got = staging.wait_for(sent.len(), Duration::from_secs(10));
    agent.stop();
    let mut lat: Vec<Duration> = sent
        .iter()
        .filter_map(|(prefix, at)| {
            got.iter()
                .find(|g| g.raw.starts_with(prefix.as_bytes()))
                .map(|g| g.at.duration_since(*at))
        })
        .collect();
    lat.sort();
    println!(
        "capture-to-staging latency at 1,000 requests/s for 5 s ({} of {} mirrored)",
        lat.len(),
        sent.len()
    );
    println!(
        "  p50 {:?}  p99 {:?}  max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
}
