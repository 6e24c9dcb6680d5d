//! Experiments 2 and 3, completeness and cost: production (nginx) under increasing load
//! (a paced client at fixed rates, then wrk flat out), the agent mirroring every request
//! (no rate limit) to a staging nginx, and tcpdump capturing the same port in the same
//! run. Each step counts, for its own request line, what production served (its access
//! log), what gor framed and mirrored (staging's access log), what tcpdump captured (the
//! request line's occurrences in the pcap), and what each dropped; and the CPU time of
//! the agent and of nginx over the step, with the agent's peak memory.

use std::{path::Path, time::Duration};

use super::{
    load::paced,
    markdown::{Section, Table, Target},
    probe::{mapped_rss_kib, Cpu, CpuMeter},
    ratio, settle, Outcome, Plan, WRK_CONNS,
};
use crate::{
    agent::{counter, Agent},
    clients::{wrk, wrk_command},
    nginx::Nginx,
    tcpdump::{self, Tcpdump},
};

#[derive(Clone, Copy)]
enum Load {
    Paced(u32),
    Wrk(u32),
}

impl Load {
    fn label(self) -> String {
        match self {
            Load::Paced(rate) => format!("paced, {rate} requests/s"),
            Load::Wrk(conns) => format!("wrk flat out, {conns} connections"),
        }
    }
}

/// One step's counts.
struct Step {
    load: Load,
    seconds: f64,
    served: usize,
    framed: u64,
    mirrored: usize,
    dumped: usize,
    dump_dropped: u64,
    ringbuf_drops: u64,
    /// The most bytes waiting in the ring buffer (the kernel's `ring_peak_bytes`).
    ring_peak: u64,
    queue_full: u64,
    lane_queue_full: u64,
    agent_cpu: Cpu,
    nginx_cpu: Cpu,
    tcpdump_cpu: Cpu,
    peak_rss_kib: u64,
    /// Of the agent's resident memory, the BPF maps mapped into it (the ring buffer).
    maps_rss_kib: u64,
}

pub fn run(plan: &Plan, dir: &Path, max_rps: f64) -> anyhow::Result<Vec<Outcome>> {
    let prod = Nginx::start(dir.join("production"));
    let staging = Nginx::start(dir.join("staging"));
    let target = format!("http://{}", staging.addr);
    let port = prod.addr.port();
    let loads: Vec<Load> = plan
        .paced_rates
        .iter()
        .map(|&r| Load::Paced(r))
        .chain([Load::Wrk(WRK_CONNS)])
        .collect();
    let mut steps = Vec::new();
    for (n, &load) in loads.iter().enumerate() {
        let path = format!("/index.html?step={n}");
        let line = format!("GET {path} HTTP/1.1");
        let pcap = dir.join(format!("step-{n}.pcap"));
        let dump = Tcpdump::start(&pcap, port);
        let agent = Agent::start_bare(
            "bench-complete",
            &[port],
            &["lo"],
            &[("GOR_TARGET", &target)],
        );
        let agent_cpu = CpuMeter::start(agent.pid());
        let nginx_cpu = CpuMeter::start(prod.pid());
        let tcpdump_cpu = CpuMeter::start(dump.pid());
        let seconds = match load {
            Load::Paced(rate) => {
                let p = paced(prod.addr, rate, plan.step, move |_, _| path.clone());
                p.elapsed.as_secs_f64()
            }
            Load::Wrk(conns) => {
                let url = format!("http://{}{path}", prod.addr);
                wrk(&url, conns, plan.step.as_secs() as u32)?;
                plan.step.as_secs_f64()
            }
        };
        let quiet = Duration::from_millis(500);
        let served = settle(
            || prod.served(&line),
            usize::MAX,
            quiet,
            Duration::from_secs(5),
        );
        let nginx_cpu = nginx_cpu.used();
        // Mirroring may lag the load: wait until staging has them all, or stops getting more.
        let mirrored = settle(
            || staging.served(&line),
            served,
            Duration::from_secs(2),
            Duration::from_secs(20),
        );
        let agent_cpu = agent_cpu.used();
        let tcpdump_cpu = tcpdump_cpu.used();
        let peak_rss_kib = agent.peak_rss_kib();
        let maps_rss_kib = mapped_rss_kib(agent.pid(), "bpf-map");
        let stats = agent.stop().stats;
        let dump_stats = dump.stop();
        let dumped = tcpdump::count_in_file(&pcap, format!("{line}\r\n").as_bytes())?;
        std::fs::remove_file(&pcap)?;
        let step = Step {
            load,
            seconds,
            served,
            framed: counter(&stats, &["http", "requests"]),
            mirrored,
            dumped,
            dump_dropped: dump_stats.dropped_by_kernel,
            ringbuf_drops: counter(&stats, &["kernel", "ringbuf_drops"]),
            ring_peak: counter(&stats, &["kernel", "ring_peak_bytes"]),
            queue_full: counter(&stats, &["mirror", "queue_full"]),
            lane_queue_full: counter(&stats, &["mirror", "lane_queue_full"]),
            agent_cpu,
            nginx_cpu,
            tcpdump_cpu,
            peak_rss_kib,
            maps_rss_kib,
        };
        eprintln!(
            "completeness: {}: served {}, mirrored {}, tcpdump {}, ring-buffer drops {}, queue full {}+{}",
            load.label(),
            step.served,
            step.mirrored,
            step.dumped,
            step.ringbuf_drops,
            step.queue_full,
            step.lane_queue_full
        );
        steps.push(step);
    }
    Ok(vec![completeness(plan, &steps, max_rps), cost(&steps)])
}

fn completeness(plan: &Plan, steps: &[Step], max_rps: f64) -> Outcome {
    let mut table = Table::new(&[
        "load",
        "served requests/s",
        "of production's max",
        "served",
        "framed by gor",
        "mirrored",
        "mirrored / served",
        "tcpdump / served",
        "tcpdump dropped (packets)",
        "gor ring-buffer drops",
        "gor ring-buffer peak use (of 16 MiB)",
        "gor queue full (target + lane)",
    ]);
    for s in steps {
        let rps = s.served as f64 / s.seconds;
        table.row(vec![
            s.load.label(),
            format!("{rps:.0}"),
            format!("{:.2}", ratio(rps, max_rps)),
            s.served.to_string(),
            s.framed.to_string(),
            s.mirrored.to_string(),
            format!("{:.4}", ratio(s.mirrored as f64, s.served as f64)),
            format!("{:.4}", ratio(s.dumped as f64, s.served as f64)),
            s.dump_dropped.to_string(),
            s.ringbuf_drops.to_string(),
            format!("{:.0} KiB", s.ring_peak as f64 / 1024.0),
            format!("{} + {}", s.queue_full, s.lane_queue_full),
        ]);
    }
    let worst = steps
        .iter()
        .min_by(|a, b| {
            ratio(a.mirrored as f64, a.served as f64)
                .total_cmp(&ratio(b.mirrored as f64, b.served as f64))
        })
        .map(|s| (ratio(s.mirrored as f64, s.served as f64), s.load.label()))
        .unwrap_or((0.0, String::new()));
    let drops: u64 = steps.iter().map(|s| s.ringbuf_drops).sum();
    let all = steps.iter().all(|s| s.mirrored == s.served) && drops == 0;
    let section = Section {
        title: "Completeness".into(),
        about: format!(
            "Production (nginx) under increasing load for {} s a step: a paced client (keep-alive \
             connections of at most 500 requests/s each, one request after the previous \
             answer) at fixed rates, then wrk flat out. The agent mirrors every request (no \
             GOR_RATE) to a staging nginx; tcpdump captures production's port in the same \
             run. Each step has its own request line (`GET /index.html?step=N HTTP/1.1`); \
             served and mirrored are production's and staging's access-log lines with it, \
             tcpdump's count is its occurrences in the pcap. \"Of production's max\" is the \
             served rate over the median wrk throughput without the agent (experiment 1).",
            plan.step.as_secs()
        ),
        setup: vec![
            format!(
                "tcpdump {} -w step-N.pcap tcp port <production>",
                tcpdump::FLAGS.join(" ")
            ),
            "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<staging> gor-agent   # defaults otherwise: GOR_RING_BUFFER=16MiB GOR_QUEUE=10000 GOR_WORKERS=64".into(),
            format!(
                "{}   # the last step",
                wrk_command(
                    "http://127.0.0.1:<production>/index.html?step=N",
                    WRK_CONNS,
                    plan.step.as_secs() as u32
                )
                .join(" ")
            ),
        ],
        tables: vec![table],
        notes: vec![
            "tcpdump's drops are packets its kernel buffer had no room for (its own count at \
             exit); gor's ring-buffer drops are records the kernel program could not write, \
             and its peak use the most bytes a record found waiting for the agent; queue full counts requests the agent framed but dropped because staging's queue \
             (per target) or a client connection's lane (512 requests) was full."
                .into(),
        ],
    };
    Outcome {
        section,
        targets: vec![Target {
            what: "requests mirrored, up to production's max, with zero kernel drops".into(),
            goal: "100%, 0 drops".into(),
            measured: format!(
                "lowest {:.2}% ({}), {drops} ring-buffer drops",
                worst.0 * 100.0,
                worst.1
            ),
            pass: all,
        }],
    }
}

fn cost(steps: &[Step]) -> Outcome {
    let per10k = |cpu: Cpu, n: usize| ratio(cpu.total() * 10_000.0, n as f64);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut table = Table::new(&[
        "load",
        "agent CPU s (user + system)",
        "agent CPU s per 10k mirrored",
        "nginx CPU s (user + system)",
        "nginx CPU s per 10k served",
        "agent / nginx, per request",
        "tcpdump CPU s per 10k captured",
        "agent peak RSS",
        "of it, BPF maps (ring buffer)",
        "peak RSS, ring buffer pages counted once",
    ]);
    let split = |c: Cpu| format!("{:.2} ({:.2} + {:.2})", c.total(), c.user, c.system);
    for s in steps {
        let agent = per10k(s.agent_cpu, s.mirrored);
        let nginx = per10k(s.nginx_cpu, s.served);
        table.row(vec![
            s.load.label(),
            split(s.agent_cpu),
            format!("{agent:.3}"),
            split(s.nginx_cpu),
            format!("{nginx:.3}"),
            format!("{:.2}", ratio(agent, nginx)),
            format!("{:.3}", per10k(s.tcpdump_cpu, s.dumped)),
            format!("{:.1} MiB", mib(s.peak_rss_kib)),
            format!("{:.1} MiB", mib(s.maps_rss_kib)),
            format!("{:.1} MiB", mib(s.peak_rss_kib - s.maps_rss_kib / 2)),
        ]);
    }
    let (cpu_ratio, full) = steps
        .last()
        .map(|s| {
            (
                ratio(
                    per10k(s.agent_cpu, s.mirrored),
                    per10k(s.nginx_cpu, s.served),
                ),
                s.load.label(),
            )
        })
        .unwrap_or((0.0, String::new()));
    let peak = steps.iter().max_by_key(|s| s.peak_rss_kib);
    let peak_mib = mib(peak.map_or(0, |s| s.peak_rss_kib));
    let maps_mib = mib(peak.map_or(0, |s| s.maps_rss_kib));
    let section = Section {
        title: "Cost".into(),
        about: "The same steps as experiment 2: the agent's CPU time (user + system, all \
                threads, from `/proc/<pid>/stat`) from its readiness until staging had every \
                mirrored request, per 10,000 requests mirrored; beside production nginx's CPU \
                time over the step per 10,000 requests served; tcpdump's (writing whole \
                packets to a file) per 10,000 requests it captured, for scale; and the agent's \
                peak resident memory (VmHWM in `/proc/<pid>/status`)."
            .into(),
        setup: Vec::new(),
        tables: vec![table],
        notes: vec![
            "The ring buffer's pages are mapped twice in a row into the agent (so a record \
             that wraps around the end reads as one piece), and resident memory counts them \
             twice: a 16 MiB ring buffer shows as 32 MiB of RSS, 16 MiB of memory. All of \
             it is mapped (so resident) from the start, whatever the load; the last column \
             is the peak with those pages counted once, the memory the agent really holds."
                .into(),
            "nginx runs as one process (`master_process off`, one worker), so its CPU time is \
             that process's. The TC programs' time is charged to the processes whose packets \
             they see (wrk, nginx), not to the agent: experiment 1 shows it."
                .into(),
        ],
    };
    Outcome {
        section,
        targets: vec![
            Target {
                what: format!(
                    "agent CPU per mirrored request, ratio to nginx's per served request ({full})"
                ),
                goal: "<= 0.5".into(),
                measured: format!("{cpu_ratio:.2}"),
                pass: cpu_ratio <= 0.5,
            },
            Target {
                what: "agent peak RSS, at full load".into(),
                goal: "< 64 MiB".into(),
                measured: format!(
                    "{peak_mib:.1} MiB ({maps_mib:.1} MiB of it the ring buffer, mapped twice; \
                     {:.1} MiB with its pages counted once)",
                    peak_mib - maps_mib / 2.0
                ),
                pass: peak_mib < 64.0,
            },
            Target {
                what: "agent peak RSS at full load, ring buffer pages counted once".into(),
                goal: "<= 32 MiB".into(),
                measured: format!(
                    "{:.1} MiB, {:.1} MiB of it the ring buffer (GOR_RING_BUFFER=16MiB)",
                    peak_mib - maps_mib / 2.0,
                    maps_mib / 2.0
                ),
                pass: peak_mib - maps_mib / 2.0 <= 32.0,
            },
        ],
    }
}
