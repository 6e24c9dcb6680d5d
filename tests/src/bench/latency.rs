//! Experiment 5, capture-to-staging latency: a paced client sends 1,000 requests/s to
//! production (nginx), each with a target of its own; a recording staging timestamps each
//! arrival; the latency of a request is its arrival at staging minus the moment the
//! client wrote it (the same clock, one machine).

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use super::{
    load::{paced, Paced},
    markdown::{Section, Table, Target},
    median, mirror_to_recorder, percentile, Outcome, Plan,
};
use crate::staging::Received;

const RATE: u32 = 1_000;

/// One run's latencies, sorted, and how many requests the client sent.
struct Run {
    sent: usize,
    rps: f64,
    lat: Vec<Duration>,
}

fn one_run(plan: &Plan, dir: &Path) -> Run {
    let (prod, staging, agent) = mirror_to_recorder(dir, "bench-latency", &[]);
    let sent = paced(prod.addr, RATE, plan.latency, |c, i| {
        format!("/index.html?lat={c}-{i}")
    });
    let got = staging.wait_for(sent.sent.len(), Duration::from_secs(10));
    agent.stop();
    Run {
        sent: sent.sent.len(),
        rps: sent.rps(),
        lat: latencies(&sent, &got),
    }
}

/// Each request's arrival at staging minus the moment the client wrote it, sorted, matched
/// by request line (every request of a paced run has its own); those that never arrived
/// are left out.
pub fn latencies(sent: &Paced, got: &[Received]) -> Vec<Duration> {
    let arrived: HashMap<&[u8], Instant> = got
        .iter()
        .filter_map(|g| {
            let end = g.raw.windows(2).position(|w| w == b"\r\n")?;
            Some((&g.raw[..end], g.at))
        })
        .collect();
    let mut lat: Vec<Duration> = sent
        .sent
        .iter()
        .filter_map(|(line, at)| Some(arrived.get(line.as_bytes())?.duration_since(*at)))
        .collect();
    lat.sort();
    lat
}

pub fn run(plan: &Plan, dir: &Path) -> Outcome {
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let mut table = Table::new(&["run", "rate", "sent", "mirrored", "p50", "p99", "max"]);
    let mut p99s = Vec::new();
    let mut complete = true;
    for n in 1..=plan.latency_runs {
        let r = one_run(plan, &dir.join(format!("run-{n}")));
        let p99 = percentile(&r.lat, 0.99);
        eprintln!(
            "latency: run {n}: {} of {} mirrored, p50 {}, p99 {}",
            r.lat.len(),
            r.sent,
            ms(percentile(&r.lat, 0.5)),
            ms(p99)
        );
        table.row(vec![
            n.to_string(),
            format!("{:.0} requests/s", r.rps),
            r.sent.to_string(),
            r.lat.len().to_string(),
            ms(percentile(&r.lat, 0.5)),
            ms(p99),
            ms(r.lat.last().copied().unwrap_or_default()),
        ]);
        complete &= r.lat.len() == r.sent && !r.lat.is_empty();
        p99s.push(p99.as_secs_f64());
    }
    let p99 = Duration::from_secs_f64(median(&p99s));
    let section = Section {
        title: "Capture-to-staging latency".into(),
        about: format!(
            "{} runs, each with a fresh agent: a paced client sends {RATE} requests/s for {} s \
             to production (nginx) over two keep-alive connections; the agent mirrors them to a recording staging (a small \
             server in the benchmark that timestamps each request as it has read it whole). \
             Latency: staging's arrival time minus the time the client wrote the request. \
             It includes the client's write, the capture, the ring buffer, reassembly, \
             framing, and the agent's connection to staging. The target is judged on the \
             median of the runs' p99: on this VM one run's p99 moved between 1.0 and 4.1 ms \
             from one run to the next with the same build.",
            plan.latency_runs,
            plan.latency.as_secs()
        ),
        setup: vec![
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<recording staging> gor-agent"
                .into(),
        ],
        tables: vec![table],
        notes: Vec::new(),
    };
    Outcome {
        section,
        targets: vec![Target {
            what: format!(
                "p99 capture-to-staging latency at {RATE} requests/s (median of the runs)"
            ),
            goal: "< 2 ms".into(),
            measured: ms(p99),
            pass: complete && p99 < Duration::from_millis(2),
        }],
    }
}
