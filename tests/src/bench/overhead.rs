//! Experiment 1, production overhead: wrk flat out against production (nginx) without
//! the agent, with it attached and capturing only, and with it mirroring to a staging
//! nginx; the three alternate, round after round (each round in a rotated order, so a
//! drift in the machine's speed does not favour one), and the medians are compared.

use std::path::Path;

use super::{
    markdown::{Section, Table, Target},
    median, ratio, Outcome, Plan, WRK_CONNS,
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
}

const MODES: [Mode; 3] = [Mode::Without, Mode::CaptureOnly, Mode::Mirroring];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Without => "without the agent (baseline)",
            Mode::CaptureOnly => "attached, capture only (no GOR_TARGET)",
            Mode::Mirroring => "attached and mirroring to staging",
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
    let mut runs: Vec<(Mode, WrkRun)> = Vec::new();
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
            };
            let r = wrk(&url, WRK_CONNS, plan.wrk_secs)?;
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
            runs.push((mode, r));
        }
    }
    let of = |mode: Mode, f: fn(&WrkRun) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, r)| f(r))
            .collect()
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
    ]);
    let mut mirroring_ratio = 0.0;
    for mode in MODES {
        let rps = median(&of(mode, |r| r.rps));
        let p99 = median(&of(mode, |r| r.p99_us));
        let each: Vec<String> = of(mode, |r| r.rps)
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        if mode == Mode::Mirroring {
            mirroring_ratio = ratio(rps, base_rps);
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
        ]);
    }
    let section = Section {
        title: "Production overhead".into(),
        about: format!(
            "wrk drives production (nginx) flat out for {} s per run, without the agent, with \
             the agent attached and capturing only, and with it attached and mirroring every \
             request to a staging nginx on another loopback port. {} rounds; each round runs \
             the three in a rotated order. The figure is the median of each, as a ratio of the \
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
            targets: vec![Target {
                what: "production throughput with the agent mirroring, ratio to without".into(),
                goal: ">= 0.97".into(),
                measured: format!("{mirroring_ratio:.3}"),
                pass: mirroring_ratio >= 0.97,
            }],
        },
        max_rps: base_rps,
    })
}
