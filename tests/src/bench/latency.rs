//! Experiment 5, capture-to-staging latency: a paced client sends 1,000 requests/s to
//! production (nginx), each with a target of its own; a recording staging timestamps each
//! arrival; the latency of a request is its arrival at staging minus the moment the
//! client wrote it (the same clock, one machine).

use std::{collections::HashMap, path::Path, time::Duration};

use super::{
    load::paced,
    markdown::{Section, Table, Target},
    mirror_to_recorder, percentile, Outcome, Plan,
};

const RATE: u32 = 1_000;

pub fn run(plan: &Plan, dir: &Path) -> Outcome {
    let (prod, staging, agent) = mirror_to_recorder(dir, "bench-latency", &[]);
    let sent = paced(prod.addr, RATE, plan.latency, |c, i| {
        format!("/index.html?lat={c}-{i}")
    });
    let got = staging.wait_for(sent.sent.len(), Duration::from_secs(10));
    agent.stop();
    let arrived: HashMap<&[u8], std::time::Instant> = got
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
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let p99 = percentile(&lat, 0.99);
    eprintln!(
        "latency: {} of {} mirrored, p50 {}, p99 {}",
        lat.len(),
        sent.sent.len(),
        ms(percentile(&lat, 0.5)),
        ms(p99)
    );
    let mut table = Table::new(&["rate", "sent", "mirrored", "p50", "p99", "max"]);
    table.row(vec![
        format!("{:.0} requests/s", sent.rps()),
        sent.sent.len().to_string(),
        lat.len().to_string(),
        ms(percentile(&lat, 0.5)),
        ms(p99),
        ms(lat.last().copied().unwrap_or_default()),
    ]);
    let section = Section {
        title: "Capture-to-staging latency".into(),
        about: format!(
            "A paced client sends {RATE} requests/s for {} s to production (nginx) over two \
             keep-alive connections; the agent mirrors them to a recording staging (a small \
             server in the benchmark that timestamps each request as it has read it whole). \
             Latency: staging's arrival time minus the time the client wrote the request. \
             It includes the client's write, the capture, the ring buffer, reassembly, \
             framing, and the agent's connection to staging.",
            plan.latency.as_secs()
        ),
        setup: vec![
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<recording staging> gor-agent"
                .into(),
        ],
        tables: vec![table],
        notes: Vec::new(),
    };
    let complete = lat.len() == sent.sent.len() && !lat.is_empty();
    Outcome {
        section,
        targets: vec![Target {
            what: format!("p99 capture-to-staging latency at {RATE} requests/s"),
            goal: "< 2 ms".into(),
            measured: ms(p99),
            pass: complete && p99 < Duration::from_millis(2),
        }],
    }
}
