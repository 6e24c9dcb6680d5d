//! Experiment 7, a fleet over NATS JetStream: what publishing costs a listener, how fast a
//! replay server drains the stream, and how long a request takes from production to
//! staging through NATS; each against its baseline in the same run (local mirroring,
//! wrk directly against staging). A local `nats-server -js` on loopback, fresh for each
//! measurement, is the broker.

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    latency::latencies,
    load::paced,
    markdown::{Section, Table},
    median, mirror_to_recorder, percentile,
    probe::cpu,
    ratio, Outcome, Plan, WRK_CONNS,
};
use crate::{
    agent::{counter, replay_command_bare, wait_with_timeout, Agent},
    clients::{wrk, wrk_command, WrkRun},
    gorformat::{get_request, record},
    nats::{NatsServer, ReplayServer},
    nginx::Nginx,
    staging::Staging,
    traffic::{listen, Raw},
};

/// The rate local mirroring is held to in the throughput comparison (the row).
const MIRROR_RATE: &str = "100";

/// The paced rate of the latency comparison.
const LATENCY_RATE: u32 = 1_000;

/// The longest the stream may take to fill or to drain; far more than either needs.
const MAX_WAIT: Duration = Duration::from_secs(120);

/// The origin (first 16 hex digits) of the ids in the pre-filled file: one made-up host.
const FILE_ORIGIN: &str = "0000000000f1ee70";

pub fn run(plan: &Plan, dir: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let throughput = listener_throughput(plan, &dir.join("listener"))?;
    let drain = replay_server_throughput(plan, &dir.join("drain"))?;
    let latency = fleet_latency(plan, &dir.join("latency"))?;
    Ok(Outcome {
        section: Section {
            title: "A fleet over NATS JetStream".into(),
            about: format!(
                "Three comparisons, each with a local nats-server 2.9 (JetStream, file \
                 storage, on loopback) started fresh for every measurement. (1) Production \
                 throughput: wrk drives production (nginx) flat out for {} s per run, without \
                 the agent, with the agent mirroring locally at GOR_RATE={MIRROR_RATE} to a \
                 staging nginx, and with the agent publishing every request to NATS (no \
                 GOR_TARGET); {} round(s), each in a rotated order, medians as ratios of production \
                 alone. The listener's CPU time (user + system, from /proc) and nats-server's \
                 are per 10,000 requests production served. (2) Replay-server throughput: the \
                 stream is filled with {} GET requests over {WRK_CONNS} client connections \
                 (`gor-agent replay` of a .gor file with GOR_NATS_URL), then `gor-agent \
                 replay-server` without a rate drains it to a staging nginx; requests/s from \
                 its first acknowledged request to the last (its stats file, written every \
                 100 ms: each time is within 0.1 s), against wrk directly against the same staging before and after. \
                 (3) Capture-to-staging latency: a paced client sends {LATENCY_RATE} \
                 requests/s for {} s to production; a listener publishes them, a replay \
                 server mirrors them to a recording staging, which timestamps each arrival; \
                 the baseline is the agent mirroring to the same kind of staging itself. \
                 {} run(s) of each, alternating.",
                plan.wrk_secs,
                plan.overhead_rounds,
                plan.fleet_requests,
                plan.latency.as_secs(),
                plan.latency_runs,
            ),
            setup: vec![
                "nats-server -js -a 127.0.0.1 -p <nats> -sd <dir>".into(),
                wrk_command("http://127.0.0.1:<production>/index.html", WRK_CONNS, plan.wrk_secs)
                    .join(" "),
                "# (1a) local mirroring".into(),
                format!(
                    "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<staging> GOR_RATE={MIRROR_RATE} gor-agent"
                ),
                "# (1b), (3) the listener".into(),
                "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_NATS_URL=nats://127.0.0.1:<nats> gor-agent".into(),
                "# (2) filling the stream, then draining it".into(),
                format!(
                    "GOR_NATS_URL=nats://127.0.0.1:<nats> GOR_NATS_QUEUE={} gor-agent replay --input-file gets.gor --speed max",
                    plan.fleet_requests
                ),
                "GOR_NATS_URL=nats://127.0.0.1:<nats> GOR_TARGET=http://127.0.0.1:<staging> gor-agent replay-server".into(),
                wrk_command("http://127.0.0.1:<staging>/index.html", WRK_CONNS, plan.wrk_secs)
                    .join(" "),
            ],
            tables: vec![throughput, drain, latency],
            notes: vec![
                "On this 2-core machine nats-server shares the CPUs with wrk, production and \
                 the agent; on a fleet it is another machine, so row (1b) includes a cost a \
                 listener does not pay there."
                    .into(),
                "Local mirroring at GOR_RATE=100 sends 100 requests/s to staging; the \
                 listener publishes every request production served: (1b)/(1a) is the price \
                 of sending all of them off the host instead of a hundred a second."
                    .into(),
            ],
        },
        targets: Vec::new(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Without,
    Mirroring,
    Publishing,
}

const MODES: [Mode; 3] = [Mode::Without, Mode::Mirroring, Mode::Publishing];

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Without => "production alone (baseline)".into(),
            Mode::Mirroring => {
                format!("(a) agent mirroring locally, GOR_RATE={MIRROR_RATE}")
            }
            Mode::Publishing => "(b) agent publishing to NATS (no GOR_TARGET)".into(),
        }
    }
}

/// One wrk run and what it cost: (agent CPU s, nats-server CPU s) per 10,000 requests,
/// and the listener's final counters.
struct ThroughputRun {
    mode: Mode,
    wrk: WrkRun,
    agent_cpu: Option<f64>,
    nats_cpu: Option<f64>,
    stats: Value,
}

fn listener_throughput(plan: &Plan, dir: &Path) -> Result<Table> {
    let prod = Nginx::start(dir.join("production"));
    let staging = Nginx::start(dir.join("staging"));
    let url = format!("http://{}/index.html", prod.addr);
    let target = format!("http://{}", staging.addr);
    let port = prod.addr.port();
    let mut runs = Vec::new();
    for round in 0..plan.overhead_rounds {
        for k in 0..MODES.len() {
            let mode = MODES[(round + k) % MODES.len()];
            let nats = match mode {
                Mode::Publishing => Some(NatsServer::start_in(dir.join(format!("nats-{round}")))),
                _ => None,
            };
            let agent = match (mode, &nats) {
                (Mode::Mirroring, _) => Some(Agent::start_bare(
                    "bench-fleet",
                    &[port],
                    &["lo"],
                    &[("GOR_TARGET", &target), ("GOR_RATE", MIRROR_RATE)],
                )),
                (Mode::Publishing, Some(n)) => Some(Agent::start_bare(
                    "bench-fleet",
                    &[port],
                    &["lo"],
                    &[("GOR_NATS_URL", &n.url())],
                )),
                _ => None,
            };
            let agent_before = agent.as_ref().and_then(|a| cpu(a.pid()));
            let nats_before = nats.as_ref().and_then(|n| cpu(n.pid()));
            let r = wrk(&url, WRK_CONNS, plan.wrk_secs)?;
            // wrk's own count of responses (its rate times the duration overshoots: wrk
            // runs a little longer than asked).
            let served = (r.requests as f64).max(1.0);
            let per_10k = |now: Option<f64>, before: Option<f64>| -> Option<f64> {
                Some((now? - before?) * 10_000.0 / served)
            };
            let agent_cpu = agent.as_ref().and_then(|a| {
                per_10k(
                    cpu(a.pid()).map(|c| c.total()),
                    agent_before.map(|c| c.total()),
                )
            });
            let nats_cpu = nats.as_ref().and_then(|n| {
                per_10k(
                    cpu(n.pid()).map(|c| c.total()),
                    nats_before.map(|c| c.total()),
                )
            });
            // Stopped before nats-server, so the listener's last publishes are acknowledged.
            let stats = agent.map(|a| a.stop().stats).unwrap_or(Value::Null);
            drop(nats);
            eprintln!(
                "fleet: round {}/{}: {}: {:.0} requests/s, published {}, dropped_queue_full {}",
                round + 1,
                plan.overhead_rounds,
                mode.label(),
                r.rps,
                counter(&stats, &["nats_publish", "published"]),
                counter(&stats, &["nats_publish", "dropped_queue_full"]),
            );
            runs.push(ThroughputRun {
                mode,
                wrk: r,
                agent_cpu,
                nats_cpu,
                stats,
            });
        }
    }
    let of = |mode: Mode| runs.iter().filter(move |r| r.mode == mode);
    let rps = |mode: Mode| median(&of(mode).map(|r| r.wrk.rps).collect::<Vec<_>>());
    let med = |v: Vec<f64>| (!v.is_empty()).then(|| median(&v));
    let base = rps(Mode::Without);
    let mirroring = rps(Mode::Mirroring);
    let mut table = Table::new(&[
        "(1) production throughput",
        "requests/s, each run",
        "median requests/s",
        "ratio to production alone",
        "ratio to (a)",
        "wrk errors",
        "listener CPU s per 10k requests",
        "nats-server CPU s per 10k requests",
        "nats_publish: queued / published / dropped_queue_full (all runs)",
    ]);
    for mode in MODES {
        let each: Vec<String> = of(mode).map(|r| format!("{:.0}", r.wrk.rps)).collect();
        let sum = |k: &str| -> u64 {
            of(mode)
                .map(|r| counter(&r.stats, &["nats_publish", k]))
                .sum()
        };
        let m = rps(mode);
        table.row(vec![
            mode.label(),
            each.join(", "),
            format!("{m:.0}"),
            format!("{:.3}", ratio(m, base)),
            match mode {
                Mode::Without => String::new(),
                _ => format!("{:.3}", ratio(m, mirroring)),
            },
            of(mode).map(|r| r.wrk.errors).sum::<u64>().to_string(),
            med(of(mode).filter_map(|r| r.agent_cpu).collect())
                .map_or("-".into(), |c| format!("{c:.3}")),
            med(of(mode).filter_map(|r| r.nats_cpu).collect())
                .map_or("-".into(), |c| format!("{c:.3}")),
            match mode {
                Mode::Publishing => format!(
                    "{} / {} / {}",
                    sum("queued"),
                    sum("published"),
                    sum("dropped_queue_full")
                ),
                _ => "-".into(),
            },
        ]);
    }
    Ok(table)
}

/// A .gor file of `n` GET requests of `path`, spread round-robin over `conns` client
/// connections with ids in gor's form (origin, connection, sequence), so the stream's
/// partitions and the replay server's per-connection order see what a listener with
/// `conns` clients would publish.
fn write_connections(file: &Path, path: &str, n: usize, conns: usize) -> Result<()> {
    let t0 = 1_764_000_000_000_000_000u64;
    let request = get_request(path);
    let mut out = Vec::with_capacity(n * (request.len() + 64));
    for i in 0..n {
        let (c, seq) = (i % conns, i / conns + 1);
        let id = format!("{FILE_ORIGIN}{:08x}{seq:08x}", c + 1);
        out.extend(record(1, &id, t0 + i as u64 * 100_000, 0, &request));
    }
    std::fs::write(file, out).with_context(|| format!("writing {}", file.display()))
}

/// Fills a stream on `nats` with the file's `n` requests; the fill's final counters.
fn fill(nats: &NatsServer, file: &Path, n: usize, dir: &Path) -> Result<Value> {
    std::fs::create_dir_all(dir)?;
    let url = nats.url();
    // The queue holds the whole file: a file is read far faster than NATS acknowledges,
    // and a listener's queue drops what does not fit.
    let queue = n.to_string();
    let file_text = file.to_str().context("a UTF-8 path")?;
    let mut child = replay_command_bare(
        dir,
        &["--input-file", file_text, "--speed", "max"],
        &[
            ("GOR_NATS_URL", &url),
            ("GOR_NATS_QUEUE", &queue),
            ("GOR_SHUTDOWN_GRACE", "60s"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("stderr"))?)
    .spawn()
    .context("starting gor-agent replay")?;
    let waited = wait_with_timeout(&mut child, MAX_WAIT, Duration::from_millis(20))?;
    let stderr = || std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    match waited {
        Some(s) if s.success() => {}
        Some(s) => bail!(
            "filling the stream: gor-agent replay exited with {s}:\n{}",
            stderr()
        ),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "filling the stream took more than {MAX_WAIT:?}:\n{}",
                stderr()
            );
        }
    }
    let stats: Value = serde_json::from_slice(&std::fs::read(dir.join("stats.json"))?)?;
    let published = counter(&stats, &["nats_publish", "published"]);
    if published != n as u64 {
        bail!(
            "filling the stream: {published} of {n} published: {}",
            stats["nats_publish"]
        );
    }
    Ok(stats)
}

fn replay_server_throughput(plan: &Plan, dir: &Path) -> Result<Table> {
    let n = plan.fleet_requests;
    let staging = Nginx::start(dir.join("staging"));
    let url = format!("http://{}/index.html", staging.addr);
    let target = format!("http://{}", staging.addr);
    let path = "/index.html?fleet=drain";
    let file = dir.join("gets.gor");
    write_connections(&file, path, n, WRK_CONNS as usize)?;
    let mut direct = vec![wrk(&url, WRK_CONNS, plan.wrk_secs)?.rps];
    let nats = NatsServer::start_in(dir.join("nats"));
    let fill_start = Instant::now();
    fill(&nats, &file, n, &dir.join("fill"))?;
    let fill_secs = fill_start.elapsed().as_secs_f64();
    let started = Instant::now();
    let server = ReplayServer::start_in(
        dir.join("replay-server"),
        &[
            ("GOR_NATS_URL", &nats.url()),
            ("GOR_TARGET", &target),
            ("GOR_STATS_INTERVAL", "100ms"),
        ],
    );
    let ready_secs = started.elapsed().as_secs_f64();
    // (when, acked_sent) at the first poll that saw any, and when all were.
    let mut first: Option<(Instant, u64)> = None;
    let done = loop {
        let acked = counter(&server.stats_now(), &["nats_consume", "acked_sent"]);
        let now = Instant::now();
        if acked > 0 && first.is_none() {
            first = Some((now, acked));
        }
        if acked >= n as u64 {
            break now;
        }
        if started.elapsed() > MAX_WAIT {
            bail!(
                "the replay server acknowledged {acked} of {n} in {MAX_WAIT:?}:\n{}",
                server.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stats = server.stop().stats;
    drop(nats);
    let (t1, c1) = first.context("no request acknowledged")?;
    let steady = (n as u64 - c1) as f64 / done.duration_since(t1).as_secs_f64().max(1e-3);
    let whole = n as f64 / done.duration_since(started).as_secs_f64();
    let arrived = staging.served(&format!("GET {path} HTTP/1.1"));
    direct.push(wrk(&url, WRK_CONNS, plan.wrk_secs)?.rps);
    let baseline = median(&direct);
    let c = |k: &str| counter(&stats, &["nats_consume", k]).to_string();
    eprintln!(
        "fleet: replay server drained {n} ({arrived} at staging) at {steady:.0} requests/s \
         ({whole:.0} from its start); wrk direct {baseline:.0}"
    );
    let mut table = Table::new(&[
        "(2) to staging",
        "requests",
        "requests/s",
        "ratio to wrk direct",
        "at staging (access log)",
        "nats_consume: received / acked_sent / redelivered / nacked / unsettled",
    ]);
    let each: Vec<String> = direct.iter().map(|v| format!("{v:.0}")).collect();
    table.row(vec![
        format!("wrk direct, {WRK_CONNS} connections (median; each run)"),
        format!("{} s each", plan.wrk_secs),
        format!("{baseline:.0} ({})", each.join(", ")),
        "1.00".into(),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "replay-server, no rate: first to last acknowledged".into(),
        n.to_string(),
        format!("{steady:.0}"),
        format!("{:.2}", ratio(steady, baseline)),
        arrived.to_string(),
        format!(
            "{} / {} / {} / {} / {}",
            c("received"),
            c("acked_sent"),
            c("redelivered"),
            c("nacked"),
            c("unsettled")
        ),
    ]);
    table.row(vec![
        format!(
            "replay-server, from its start (ready after {ready_secs:.2} s, first acknowledged after {:.2} s)",
            t1.duration_since(started).as_secs_f64()
        ),
        n.to_string(),
        format!("{whole:.0}"),
        format!("{:.2}", ratio(whole, baseline)),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "filling the stream: gor-agent replay --speed max, publishing".into(),
        n.to_string(),
        format!("{:.0}", n as f64 / fill_secs),
        String::new(),
        String::new(),
        String::new(),
    ]);
    Ok(table)
}

/// Sends one request to production and waits until staging has it, so the paced run
/// starts with every part connected (the listener to NATS, the replay server's claims
/// taken and its consumers fetching).
fn warm_up(prod: SocketAddr, staging: &Staging) -> Result<()> {
    let mut conn = Raw::connect(prod);
    let before = staging.received().len();
    conn.send(b"GET /index.html?fleet=warm-up HTTP/1.1\r\nHost: bench\r\n\r\n");
    if staging.wait_for(before + 1, Duration::from_secs(30)).len() <= before {
        bail!("the warm-up request did not reach staging within 30 s");
    }
    Ok(())
}

/// One paced run: (requests sent, the rate achieved, their latencies sorted).
fn paced_run(
    plan: &Plan,
    prod: SocketAddr,
    staging: &Staging,
    tag: &'static str,
) -> (usize, f64, Vec<Duration>) {
    let sent = paced(prod, LATENCY_RATE, plan.latency, move |c, i| {
        format!("/index.html?fleet={tag}-{c}-{i}")
    });
    let got = staging.wait_for(sent.sent.len() + 1, Duration::from_secs(15));
    (sent.sent.len(), sent.rps(), latencies(&sent, &got))
}

fn fleet_latency(plan: &Plan, dir: &Path) -> Result<Table> {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mut table = Table::new(&[
        "(3) latency, run",
        "rate",
        "sent",
        "at staging",
        "p50",
        "p99",
        "max",
    ]);
    let mut p50s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut p99s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for n in 1..=plan.latency_runs {
        for through_nats in [false, true] {
            let run_dir = dir.join(format!("run-{n}-{through_nats}"));
            let (sent, rps, lat) = if through_nats {
                let prod = Nginx::start(run_dir.join("production"));
                let staging = Staging::start(listen("127.0.0.1"));
                let nats = NatsServer::start_in(run_dir.join("nats"));
                let agent = Agent::start_bare(
                    "bench-fleet-latency",
                    &[prod.addr.port()],
                    &["lo"],
                    &[("GOR_NATS_URL", &nats.url())],
                );
                let server = ReplayServer::start_in(
                    run_dir.join("replay-server"),
                    &[
                        ("GOR_NATS_URL", &nats.url()),
                        ("GOR_TARGET", &format!("http://{}", staging.addr)),
                    ],
                );
                warm_up(prod.addr, &staging)?;
                let r = paced_run(plan, prod.addr, &staging, "nats");
                server.stop();
                agent.stop();
                r
            } else {
                let (prod, staging, agent) = mirror_to_recorder(&run_dir, "bench-fleet-local", &[]);
                warm_up(prod.addr, &staging)?;
                let r = paced_run(plan, prod.addr, &staging, "local");
                agent.stop();
                r
            };
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            let label = if through_nats {
                "listener -> NATS -> replay-server"
            } else {
                "local mirroring (baseline)"
            };
            eprintln!(
                "fleet latency: run {n}: {label}: {} of {sent} at staging, p50 {}, p99 {}",
                lat.len(),
                ms(p50),
                ms(p99)
            );
            p50s[through_nats as usize].push(p50.as_secs_f64());
            p99s[through_nats as usize].push(p99.as_secs_f64());
            table.row(vec![
                format!("{label}, {n}"),
                format!("{rps:.0} requests/s"),
                sent.to_string(),
                lat.len().to_string(),
                ms(p50),
                ms(p99),
                ms(lat.last().copied().unwrap_or_default()),
            ]);
        }
    }
    let secs = |v: &[f64]| Duration::from_secs_f64(median(v));
    for (i, label) in ["local mirroring", "through NATS"].iter().enumerate() {
        table.row(vec![
            format!("{label}: median of the runs"),
            String::new(),
            String::new(),
            String::new(),
            ms(secs(&p50s[i])),
            ms(secs(&p99s[i])),
            String::new(),
        ]);
    }
    table.row(vec![
        "through NATS / local mirroring".into(),
        String::new(),
        String::new(),
        String::new(),
        format!("{:.2}", ratio(median(&p50s[1]), median(&p50s[0]))),
        format!("{:.2}", ratio(median(&p99s[1]), median(&p99s[0]))),
        String::new(),
    ]);
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gorformat::records;

    #[test]
    fn the_file_spreads_requests_over_connections_in_gor_ids() {
        let dir = crate::agent::temp_dir("fleet-file");
        let file = dir.join("gets.gor");
        write_connections(&file, "/x", 5, 2).unwrap();
        let recs = records(&std::fs::read(&file).unwrap());
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "0000000000f1ee700000000100000001",
                "0000000000f1ee700000000200000001",
                "0000000000f1ee700000000100000002",
                "0000000000f1ee700000000200000002",
                "0000000000f1ee700000000100000003",
            ]
        );
        assert!(recs.iter().all(|r| r.payload == get_request("/x")));
    }
}
