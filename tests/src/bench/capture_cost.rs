//! Experiment "capture cost": what capturing costs production, beside tcpdump. wrk
//! (`-t1 -c32`) flat out against nginx serving a 3-byte and an 8 KiB file, without a
//! capturer, with tcpdump writing every packet to a file, with the agent capturing only,
//! and with it mirroring at `GOR_RATE=100`; rounds in a rotated order, medians as ratios
//! of without (per response size), with the capturer's CPU seconds per 10,000 requests.

use std::path::Path;

use super::{
    markdown::{Section, Table, Target},
    median,
    probe::cpu,
    ratio, Outcome, Plan,
};
use crate::{
    agent::Agent,
    clients::{wrk, wrk_command, WrkRun},
    nginx::Nginx,
    staging::Staging,
    tcpdump::{self, Tcpdump},
    traffic::listen,
};

/// wrk's connections here, as in the measurements.
const CONNS: u32 = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Without,
    Tcpdump,
    Capture,
    Mirror,
}

const MODES: [Mode; 4] = [Mode::Without, Mode::Tcpdump, Mode::Capture, Mode::Mirror];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Without => "without a capturer (baseline)",
            Mode::Tcpdump => "tcpdump -s 0 -w (every packet to a file)",
            Mode::Capture => "gor, capture only (no GOR_TARGET)",
            Mode::Mirror => "gor, mirroring at GOR_RATE=100",
        }
    }
}

/// The two response sizes: (file, label).
const SIZES: [(&str, &str); 2] = [("tiny.bin", "3 bytes"), ("8k.bin", "8 KiB")];

struct Run {
    size: usize,
    mode: Mode,
    wrk: WrkRun,
    /// The capturer's CPU seconds per 10,000 requests.
    cpu_per_10k: Option<f64>,
}

pub fn run(plan: &Plan, dir: &Path) -> anyhow::Result<Outcome> {
    let prod = Nginx::start(dir.join("production"));
    let www = prod.dir.join("www");
    std::fs::write(www.join("tiny.bin"), b"ok\n")?;
    std::fs::write(www.join("8k.bin"), vec![b'x'; 8192])?;
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let port = prod.addr.port();
    let mut runs: Vec<Run> = Vec::new();
    for (size, (file, _)) in SIZES.iter().enumerate() {
        let url = format!("http://{}/{file}", prod.addr);
        for round in 0..plan.overhead_rounds {
            for k in 0..MODES.len() {
                let mode = MODES[(round + k) % MODES.len()];
                let mut dump = None;
                let mut agent = None;
                match mode {
                    Mode::Without => {}
                    Mode::Tcpdump => {
                        dump = Some(Tcpdump::start_with(
                            tcpdump::PLAIN,
                            &dir.join("capture-cost.pcap"),
                            port,
                        ))
                    }
                    Mode::Capture => {
                        agent = Some(Agent::start_bare("bench-cost", &[port], &["lo"], &[]))
                    }
                    Mode::Mirror => {
                        agent = Some(Agent::start_bare(
                            "bench-cost",
                            &[port],
                            &["lo"],
                            &[("GOR_TARGET", &target), ("GOR_RATE", "100")],
                        ))
                    }
                }
                let pid = dump
                    .as_ref()
                    .map(Tcpdump::pid)
                    .or(agent.as_ref().map(Agent::pid));
                let before = pid.and_then(cpu);
                let r = wrk(&url, CONNS, plan.wrk_secs)?;
                let cpu_per_10k = pid.and_then(|p| {
                    let used = cpu(p)?.total() - before?.total();
                    Some(used * 10_000.0 / (r.rps * plan.wrk_secs as f64).max(1.0))
                });
                if let Some(d) = dump {
                    d.stop();
                    let _ = std::fs::remove_file(dir.join("capture-cost.pcap"));
                }
                if let Some(a) = agent {
                    a.stop();
                }
                eprintln!(
                    "capture cost: {} responses, round {}/{}: {}: {:.0} requests/s",
                    SIZES[size].1,
                    round + 1,
                    plan.overhead_rounds,
                    mode.label(),
                    r.rps
                );
                runs.push(Run {
                    size,
                    mode,
                    wrk: r,
                    cpu_per_10k,
                });
            }
        }
    }
    Ok(report(plan, &runs))
}

fn report(plan: &Plan, runs: &[Run]) -> Outcome {
    let of = |size: usize, mode: Mode| -> Vec<&Run> {
        runs.iter()
            .filter(|r| r.size == size && r.mode == mode)
            .collect()
    };
    let rps = |size, mode| median(&of(size, mode).iter().map(|r| r.wrk.rps).collect::<Vec<_>>());
    let cpu_of = |size, mode| {
        let v: Vec<f64> = of(size, mode)
            .iter()
            .filter_map(|r| r.cpu_per_10k)
            .collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let mut table = Table::new(&[
        "response",
        "production",
        "requests/s, each run",
        "median requests/s",
        "ratio to without",
        "median p99",
        "wrk errors",
        "capturer CPU s per 10k requests",
    ]);
    let mut targets = Vec::new();
    for (size, (_, label)) in SIZES.iter().enumerate() {
        let base = rps(size, Mode::Without);
        for mode in MODES {
            let each: Vec<String> = of(size, mode)
                .iter()
                .map(|r| format!("{:.0}", r.wrk.rps))
                .collect();
            let p99 = median(
                &of(size, mode)
                    .iter()
                    .map(|r| r.wrk.p99_us)
                    .collect::<Vec<_>>(),
            );
            let errors: u64 = of(size, mode).iter().map(|r| r.wrk.errors).sum();
            table.row(vec![
                label.to_string(),
                mode.label().into(),
                each.join(", "),
                format!("{:.0}", rps(size, mode)),
                format!("{:.3}", ratio(rps(size, mode), base)),
                format!("{:.2} ms", p99 / 1000.0),
                errors.to_string(),
                cpu_of(size, mode).map_or("-".into(), |c| format!("{c:.3}")),
            ]);
        }
        let capture = ratio(rps(size, Mode::Capture), base);
        let mirror = ratio(rps(size, Mode::Mirror), base);
        targets.push(Target {
            what: format!(
                "production throughput with the agent capturing, ratio to without ({label} responses)"
            ),
            goal: ">= 0.95".into(),
            measured: format!(
                "{capture:.3} (tcpdump: {:.3})",
                ratio(rps(size, Mode::Tcpdump), base)
            ),
            pass: capture >= 0.95,
        });
        targets.push(Target {
            what: format!(
                "production throughput with the agent mirroring at GOR_RATE=100, ratio to without ({label} responses)"
            ),
            goal: ">= 0.93".into(),
            measured: format!("{mirror:.3}"),
            pass: mirror >= 0.93,
        });
        let (gor, dump) = (cpu_of(size, Mode::Capture), cpu_of(size, Mode::Tcpdump));
        let limit = if size == 0 { 1.0 } else { 0.5 };
        let cpu_ratio = match (gor, dump) {
            (Some(g), Some(d)) => ratio(g, d),
            _ => 0.0,
        };
        targets.push(Target {
            what: format!(
                "agent CPU per request capturing, ratio to tcpdump's ({label} responses)"
            ),
            goal: format!("<= {limit}"),
            measured: format!(
                "{cpu_ratio:.2} ({:.3} vs {:.3} s per 10k)",
                gor.unwrap_or(0.0),
                dump.unwrap_or(0.0)
            ),
            pass: cpu_ratio > 0.0 && cpu_ratio <= limit,
        });
    }
    let mut setup = vec![
        wrk_command(
            "http://127.0.0.1:<production>/<tiny.bin|8k.bin>",
            CONNS,
            plan.wrk_secs,
        )
        .join(" "),
        format!(
            "tcpdump {} -w <file> tcp port <production>",
            tcpdump::PLAIN.join(" ")
        ),
        "GOR_PORTS=<production> GOR_INTERFACES=lo gor-agent".into(),
        "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<recording staging> GOR_RATE=100 gor-agent".into(),
    ];
    setup.dedup();
    Outcome {
        section: Section {
            title: "Capture cost, beside tcpdump".into(),
            about: format!(
                "wrk drives production (nginx, one worker) flat out for {} s per run against \
                 a 3-byte file and an 8 KiB file: without a capturer, with tcpdump writing \
                 every packet to a file, with the agent capturing and framing only, and with \
                 it mirroring at GOR_RATE=100 to a recording staging. {} rounds per size, \
                 each in a rotated order; medians, as ratios of without. The capturer's CPU \
                 time (user + system, from /proc/PID/stat) is per 10,000 requests production \
                 served. The agent runs with its defaults: nothing takes whole responses, so \
                 the kernel copies only the first GOR_RESPONSE_SNAP (2 KiB) of each response \
                 packet.",
                plan.wrk_secs, plan.overhead_rounds
            ),
            setup,
            tables: vec![table],
            notes: vec![
                "tcpdump's and the TC programs' work in the kernel runs in the softirq of the \
                 process that sends each packet (wrk or nginx): it shows in production's \
                 throughput, not in the capturer's CPU time. Both run with every request on \
                 the same two cores as wrk and nginx."
                    .into(),
            ],
        },
        targets,
    }
}

/// Heap allocations per 10,000 requests, from the lines the counting-allocator test
/// printed: "... (N per 10,000 requests, X per message) ...", with responses emitted,
/// without (mirroring's default), and without from ring records.
pub fn allocations(printed: &str) -> Outcome {
    let lines: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains(" per 10,000 requests"))
        .collect();
    let per_10k = |l: &str| -> Option<u64> {
        let before = &l[..l.find(" per 10,000 requests")?];
        before.rsplit(['(', ' ']).next()?.parse().ok()
    };
    let mut table = Table::new(&["traffic", "what the test printed"]);
    for l in &lines {
        let (what, rest) = l.split_once(':').unwrap_or(("", l));
        table.row(vec![what.trim().into(), rest.trim().into()]);
    }
    let measured: Vec<String> = lines
        .iter()
        .filter_map(|l| per_10k(l))
        .map(|n| n.to_string())
        .collect();
    let worst = lines.iter().filter_map(|l| per_10k(l)).max();
    Outcome {
        section: Section {
            title: "Allocations".into(),
            about: "Heap allocations of reassembly and HTTP framing, counted by a global \
                    allocator on the thread that pushes the framing benchmark's traffic \
                    (10,000 exchanges of small GETs, JSON POSTs and 8 KiB chunked responses), \
                    with responses emitted and without them (what mirroring and capture \
                    run with), and without them from the ring records live capture decodes \
                    (the payload copied out of the ring included)."
                .into(),
            setup: vec![
                "cargo test --release -p gor-agent --test allocations -- --nocapture".into(),
            ],
            tables: vec![table],
            notes: Vec::new(),
        },
        targets: vec![Target {
            what: "heap allocations per 10,000 requests (reassembly + framing, steady state; with responses / without / from ring records)".into(),
            goal: "0 per record or message".into(),
            measured: measured.join(" / "),
            pass: worst == Some(0),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_allocation_tests_figures() {
        let printed = "10000 requests + responses, 20800 segments, 34196274 message bytes: \
                       140222 allocations (140222 per 10,000 requests, 7.01 per message), 1 bytes\n\
                       without responses (mirroring, capture only): 10000 requests, 3 message \
                       bytes: 100222 allocations (100222 per 10,000 requests, 10.02 per message)\n";
        let o = allocations(printed);
        assert_eq!(o.targets[0].measured, "140222 / 100222");
        assert!(!o.targets[0].pass);
        assert_eq!(o.section.tables[0].rows.len(), 2);
    }
}
