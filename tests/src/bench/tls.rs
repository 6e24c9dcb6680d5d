//! Experiment 8, HTTPS from OpenSSL: wrk flat out against production (nginx serving
//! HTTPS, one worker) without the agent, with the agent capturing the TLS port from the
//! OpenSSL uprobes (`GOR_TLS=openssl`, no target: capture and framing only), and with it
//! mirroring to a recording staging at `GOR_RATE=100`; rounds in a rotated order, medians
//! as ratios of production alone, with the agent's and nginx's CPU time per request and
//! the agent's counters that show it framed what wrk sent.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{
    markdown::{Section, Table},
    median,
    probe::cpu,
    ratio, Outcome, Plan, WRK_CONNS,
};
use crate::{
    agent::{counter, Agent},
    clients::{wrk, wrk_command, WrkRun},
    nginx::Nginx,
    staging::Staging,
    tls_apps::self_signed,
    traffic::listen,
};

/// The rate mirroring is held to (as in the fleet section's local mirroring).
const MIRROR_RATE: &str = "100";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Without,
    CaptureOnly,
    Mirroring,
}

const MODES: [Mode; 3] = [Mode::Without, Mode::CaptureOnly, Mode::Mirroring];

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Without => "nginx alone (baseline)".into(),
            Mode::CaptureOnly => "(a) GOR_TLS=openssl, capture only (no GOR_TARGET)".into(),
            Mode::Mirroring => {
                format!("(b) GOR_TLS=openssl, mirroring to staging, GOR_RATE={MIRROR_RATE}")
            }
        }
    }
}

/// One wrk run and what it cost.
struct Run {
    mode: Mode,
    wrk: WrkRun,
    /// Agent CPU s per 10,000 requests.
    agent_cpu: Option<f64>,
    /// nginx CPU s per 10,000 requests (the uprobes run in its process).
    nginx_cpu: Option<f64>,
    /// The agent's final counters (Null without it).
    stats: Value,
    /// Requests the recording staging received.
    at_staging: usize,
}

pub fn run(plan: &Plan, dir: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let (cert, key) = self_signed(dir);
    let prod = Nginx::with_tls(dir.join("production"), &cert, &key);
    let url = format!("https://{}/index.html", prod.addr);
    let port = prod.addr.port();
    let mut runs = Vec::new();
    for round in 0..plan.overhead_rounds {
        for k in 0..MODES.len() {
            let mode = MODES[(round + k) % MODES.len()];
            let staging = (mode == Mode::Mirroring).then(|| Staging::start(listen("127.0.0.1")));
            let target = staging.as_ref().map(|s| format!("http://{}", s.addr));
            let agent = match (mode, &target) {
                (Mode::Without, _) => None,
                (Mode::Mirroring, Some(t)) => Some(Agent::start_bare(
                    "bench-tls",
                    &[port],
                    &["lo"],
                    &[
                        ("GOR_TLS", "openssl"),
                        ("GOR_TARGET", t),
                        ("GOR_RATE", MIRROR_RATE),
                    ],
                )),
                _ => Some(Agent::start_bare(
                    "bench-tls",
                    &[port],
                    &["lo"],
                    &[("GOR_TLS", "openssl")],
                )),
            };
            let agent_before = agent.as_ref().and_then(|a| cpu(a.pid()));
            let nginx_before = cpu(prod.pid());
            let r = wrk(&url, WRK_CONNS, plan.wrk_secs)?;
            // wrk's own count of responses (its rate times the duration overshoots).
            let served = (r.requests as f64).max(1.0);
            let agent_cpu = agent.as_ref().and_then(|a| {
                Some((cpu(a.pid())?.total() - agent_before?.total()) * 10_000.0 / served)
            });
            let nginx_cpu = cpu(prod.pid())
                .zip(nginx_before)
                .map(|(now, before)| (now.total() - before.total()) * 10_000.0 / served);
            let stats = agent.map(|a| a.stop().stats).unwrap_or(Value::Null);
            let at_staging = staging.as_ref().map_or(0, |s| s.received().len());
            eprintln!(
                "tls: round {}/{}: {}: {:.0} requests/s, p99 {:.0} us, wrk {} responses, \
                 framed {} requests, tls_ringbuf_drops {}, at staging {at_staging}",
                round + 1,
                plan.overhead_rounds,
                mode.label(),
                r.rps,
                r.p99_us,
                r.requests,
                counter(&stats, &["http", "requests"]),
                counter(&stats, &["kernel", "tls_ringbuf_drops"]),
            );
            runs.push(Run {
                mode,
                wrk: r,
                agent_cpu,
                nginx_cpu,
                stats,
                at_staging,
            });
        }
    }
    Ok(Outcome {
        section: section(plan, &runs),
        targets: Vec::new(),
    })
}

fn section(plan: &Plan, runs: &[Run]) -> Section {
    let of = |mode: Mode| runs.iter().filter(move |r| r.mode == mode);
    let med = |v: Vec<f64>| (!v.is_empty()).then(|| median(&v));
    let rps = |mode: Mode| median(&of(mode).map(|r| r.wrk.rps).collect::<Vec<_>>());
    let p99 = |mode: Mode| median(&of(mode).map(|r| r.wrk.p99_us).collect::<Vec<_>>());
    let (base_rps, base_p99) = (rps(Mode::Without), p99(Mode::Without));
    let mut table = Table::new(&[
        "production (HTTPS)",
        "requests/s, each run",
        "median requests/s",
        "ratio to nginx alone",
        "median p99",
        "p99 ratio to alone",
        "wrk errors",
        "agent CPU s per 10k requests",
        "nginx CPU s per 10k requests",
        "framed requests (http.requests) / wrk responses (all runs)",
        "kernel.tls_ringbuf_drops (all runs)",
        "at staging (all runs)",
    ]);
    for mode in MODES {
        let each: Vec<String> = of(mode).map(|r| format!("{:.0}", r.wrk.rps)).collect();
        let sum = |path: &[&str]| -> u64 { of(mode).map(|r| counter(&r.stats, path)).sum() };
        let responses: u64 = of(mode).map(|r| r.wrk.requests).sum();
        let m = rps(mode);
        let p = p99(mode);
        let (framed, drops, staged) = match mode {
            Mode::Without => ("-".into(), "-".into(), "-".into()),
            _ => (
                format!("{} / {responses}", sum(&["http", "requests"])),
                sum(&["kernel", "tls_ringbuf_drops"]).to_string(),
                match mode {
                    Mode::Mirroring => of(mode).map(|r| r.at_staging).sum::<usize>().to_string(),
                    _ => "-".into(),
                },
            ),
        };
        table.row(vec![
            mode.label(),
            each.join(", "),
            format!("{m:.0}"),
            format!("{:.3}", ratio(m, base_rps)),
            format!("{:.2} ms", p / 1000.0),
            format!("{:.2}", ratio(p, base_p99)),
            of(mode).map(|r| r.wrk.errors).sum::<u64>().to_string(),
            med(of(mode).filter_map(|r| r.agent_cpu).collect())
                .map_or("-".into(), |c| format!("{c:.3}")),
            med(of(mode).filter_map(|r| r.nginx_cpu).collect())
                .map_or("-".into(), |c| format!("{c:.3}")),
            framed,
            drops,
            staged,
        ]);
    }
    Section {
        title: "HTTPS from OpenSSL".into(),
        about: format!(
            "wrk drives production (nginx serving HTTPS with a self-signed P-256 certificate, \
             one worker, HTTP/1.1) flat out for {} s per run: without the agent, with the \
             agent capturing the TLS port from its OpenSSL uprobes (GOR_TLS=openssl) with no \
             target (capture and framing only), and with it mirroring the plaintext to a \
             recording staging at GOR_RATE={MIRROR_RATE}. {} round(s), each in a rotated \
             order; medians, as ratios of nginx alone. CPU time (user + system, from /proc) \
             is per 10,000 requests wrk completed, for the agent and for nginx (the uprobes \
             run in nginx's process). Framed requests are the agent's `http.requests` at \
             exit against wrk's count of responses: wrk may have a request per connection \
             still in flight when it stops.",
            plan.wrk_secs, plan.overhead_rounds,
        ),
        setup: vec![
            wrk_command("https://127.0.0.1:<production>/index.html", WRK_CONNS, plan.wrk_secs)
                .join(" "),
            "# (a) capture only".into(),
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TLS=openssl gor-agent".into(),
            "# (b) mirroring".into(),
            format!(
                "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TLS=openssl GOR_TARGET=http://127.0.0.1:<staging> GOR_RATE={MIRROR_RATE} gor-agent"
            ),
        ],
        tables: vec![table],
        notes: vec![
            "The uprobes run in every process that calls SSL_read/SSL_write of a probed \
             libssl: nginx, and wrk too (it links the system's OpenSSL), whose calls are \
             on client sockets and are not copied; their cost shows in production's \
             throughput, not in the agent's CPU time."
                .into(),
            "So the probes' price is read in nginx's CPU per request (against nginx alone) \
             and in the throughput ratio; the agent's own CPU is what it spends reading the \
             TLS ring and framing, plus sending in (b)."
                .into(),
        ],
    }
}
