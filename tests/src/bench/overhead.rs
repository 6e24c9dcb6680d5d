//! Experiment 1, production overhead: wrk flat out against production (nginx) without
//! the agent, with it attached and capturing only, with it mirroring to a staging nginx,
//! and with it mirroring and comparing staging's responses with production's
//! (`GOR_COMPARE`); the four alternate, round after round (each round in a rotated order,
//! so a drift in the machine's speed does not favour one), and the medians are compared,
//! with the agent's CPU time per request.

use std::path::Path;

use super::{
    markdown::{Section, Table, Target},
    median,
    probe::cpu,
    ratio, Outcome, Plan, WRK_CONNS,
};
use crate::{
    agent::Agent,
    clients::{wrk, wrk_command, WrkRun},
    nginx::Nginx,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Without,
    CaptureOnly,
    Mirroring,
    Comparing,
}

const MODES: [Mode; 4] = [
    Mode::Without,
    Mode::CaptureOnly,
    Mode::Mirroring,
    Mode::Comparing,
];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Without => "without the agent (baseline)",
            Mode::CaptureOnly => "attached, capture only (no GOR_TARGET)",
            Mode::Mirroring => "attached and mirroring to staging",
            Mode::Comparing => "mirroring and comparing (GOR_COMPARE=1)",
        }
    }
}

pub struct Overhead {
    pub outcome: Outcome,
    /// Median requests/s production served without the agent: the most it serves here.
    pub max_rps: f64,
}

pub fn run(plan: &Plan, dir: &Path) -> anyhow::Result<Overhead> {
    let prod = Nginx::start(dir.join("production"));
    let staging = Nginx::start(dir.join("staging"));
    let url = format!("http://{}/index.html", prod.addr);
    let target = format!("http://{}", staging.addr);
    let port = prod.addr.port();
    let mut runs: Vec<(Mode, WrkRun, Option<f64>)> = Vec::new();
    for round in 0..plan.overhead_rounds {
        for k in 0..MODES.len() {
            let mode = MODES[(round + k) % MODES.len()];
            let agent = match mode {
                Mode::Without => None,
                Mode::CaptureOnly => {
                    Some(Agent::start_bare("bench-overhead", &[port], &["lo"], &[]))
                }
                Mode::Mirroring => Some(Agent::start_bare(
                    "bench-overhead",
                    &[port],
                    &["lo"],
                    &[("GOR_TARGET", &target)],
                )),
                Mode::Comparing => Some(Agent::start_bare(
                    "bench-overhead",
                    &[port],
                    &["lo"],
                    &[("GOR_TARGET", &target), ("GOR_COMPARE", "1")],
                )),
            };
            let cpu_before = agent.as_ref().and_then(|a| cpu(a.pid()));
            let r = wrk(&url, WRK_CONNS, plan.wrk_secs)?;
            // The agent's CPU seconds per 10,000 requests production served.
            let cpu_per_10k = agent.as_ref().and_then(|a| {
                let used = cpu(a.pid())?.total() - cpu_before?.total();
                Some(used * 10_000.0 / (r.rps * plan.wrk_secs as f64).max(1.0))
            });
            if let Some(a) = agent {
                a.stop();
            }
            eprintln!(
                "overhead: round {}/{}: {}: {:.0} requests/s, p99 {:.0} us",
                round + 1,
                plan.overhead_rounds,
                mode.label(),
                r.rps,
                r.p99_us
            );
            runs.push((mode, r, cpu_per_10k));
        }
    }
    let of = |mode: Mode, f: fn(&WrkRun) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|(m, _, _)| *m == mode)
            .map(|(_, r, _)| f(r))
            .collect()
    };
    let cpu_of = |mode: Mode| -> Option<f64> {
        let v: Vec<f64> = runs
            .iter()
            .filter(|(m, _, _)| *m == mode)
            .filter_map(|(_, _, c)| *c)
            .collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let base_rps = median(&of(Mode::Without, |r| r.rps));
    let base_p99 = median(&of(Mode::Without, |r| r.p99_us));
    let mut table = Table::new(&[
        "production",
        "requests/s, each run",
        "median requests/s",
        "ratio to without",
        "median p99",
        "p99 ratio to without",
        "wrk errors",
        "agent CPU s per 10k requests",
    ]);
    let mut mirroring_ratio = 0.0;
    let mut mirroring_rps = 0.0;
    let mut comparing_rps = 0.0;
    for mode in MODES {
        let rps = median(&of(mode, |r| r.rps));
        let p99 = median(&of(mode, |r| r.p99_us));
        let each: Vec<String> = of(mode, |r| r.rps)
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        match mode {
            Mode::Mirroring => {
                mirroring_ratio = ratio(rps, base_rps);
                mirroring_rps = rps;
            }
            Mode::Comparing => comparing_rps = rps,
            _ => {}
        }
        table.row(vec![
            mode.label().into(),
            each.join(", "),
            format!("{rps:.0}"),
            format!("{:.3}", ratio(rps, base_rps)),
            format!("{:.2} ms", p99 / 1000.0),
            format!("{:.2}", ratio(p99, base_p99)),
            of(mode, |r| r.errors as f64)
                .iter()
                .sum::<f64>()
                .to_string(),
            cpu_of(mode).map_or("-".into(), |c| format!("{c:.3}")),
        ]);
    }
    let compare_ratio = ratio(comparing_rps, mirroring_rps);
    let compare_cpu = match (cpu_of(Mode::Comparing), cpu_of(Mode::Mirroring)) {
        (Some(c), Some(m)) => ratio(c, m),
        _ => 0.0,
    };
    let section = Section {
        title: "Production overhead".into(),
        about: format!(
            "wrk drives production (nginx) flat out for {} s per run, without the agent, with \
             the agent attached and capturing only, and with it attached and mirroring every \
             request to a staging nginx on another loopback port, and with it mirroring and \
             comparing every staging response with production's (GOR_COMPARE=1). The agent's CPU \
             time (user + system, from /proc) is per 10,000 requests production served. {} rounds; each round runs \
             the four in a rotated order. The figure is the median of each, as a ratio of the \
             median without the agent.",
            plan.wrk_secs, plan.overhead_rounds
        ),
        setup: vec![
            wrk_command("http://127.0.0.1:<production>/index.html", WRK_CONNS, plan.wrk_secs)
                .join(" "),
            "# capture only".into(),
            "GOR_PORTS=<production> GOR_INTERFACES=lo gor-agent".into(),
            "# mirroring (no GOR_RATE: every request)".into(),
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<staging> gor-agent"
                .into(),
            "# comparing".into(),
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<staging> GOR_COMPARE=1 gor-agent"
                .into(),
        ],
        tables: vec![table],
        notes: vec![
            "The TC programs run in the softirq of the process that sends each packet (wrk or \
             nginx), so their cost shows in production's throughput, not in the agent's CPU \
             time; the capture-only row is that cost plus the agent's userspace (reassembly \
             and framing) competing for the same two cores."
                .into(),
            "Mirroring adds the agent's sending and staging's nginx answering, on the same two \
             cores as wrk and production: on a real deployment staging is another machine."
                .into(),
        ],
    };
    Ok(Overhead {
        outcome: Outcome {
            section,
            targets: vec![
                Target {
                    what: "production throughput with the agent mirroring, ratio to without".into(),
                    goal: ">= 0.97".into(),
                    measured: format!("{mirroring_ratio:.3}"),
                    pass: mirroring_ratio >= 0.97,
                },
                Target {
                    what: "production throughput with comparison on, ratio to mirroring without it"
                        .into(),
                    goal: ">= 0.95".into(),
                    measured: format!("{compare_ratio:.3}"),
                    pass: compare_ratio >= 0.95,
                },
                Target {
                    what: "agent CPU per request with comparison on, ratio to mirroring without it"
                        .into(),
                    goal: "<= 1.5".into(),
                    measured: format!("{compare_cpu:.2}"),
                    pass: compare_cpu > 0.0 && compare_cpu <= 1.5,
                },
            ],
        },
        max_rps: base_rps,
    })
}
