//! Experiment 4, replay throughput: `gor-agent replay --speed max` sends a file of GET
//! requests to a fast staging (nginx) as fast as staging answers; its requests/s (staging's
//! access-log count over the replay's wall time) against wrk's directly to the same
//! staging, before and after the replays, at several `GOR_WORKERS`.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    markdown::{Section, Table, Target},
    median, ratio, Outcome, Plan, WRK_CONNS,
};
use crate::{
    agent::{counter, replay_command_bare, wait_with_timeout},
    clients::{wrk, wrk_command},
    gorformat::write_gets,
    nginx::Nginx,
};

/// Staging connections tried; the target is judged at wrk's own concurrency.
const WORKERS: [u32; 3] = [1, WRK_CONNS, 64];

/// The longest one replay may take (the slowest, one connection, takes well under this).
const MAX_REPLAY: Duration = Duration::from_secs(120);

struct Replayed {
    workers: u32,
    seconds: f64,
    arrived: usize,
    dropped: u64,
}

pub fn run(plan: &Plan, dir: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let staging = Nginx::start(dir.join("staging"));
    let url = format!("http://{}/index.html", staging.addr);
    let target = format!("http://{}", staging.addr);
    let n = plan.replay_requests;
    let mut direct = Vec::new();
    let mut runs = Vec::new();
    for workers in WORKERS {
        // The baseline alternates with the replays, so a drift in the machine's speed
        // shows in both.
        direct.push(wrk(&url, WRK_CONNS, plan.wrk_secs)?.rps);
        let path = format!("/index.html?replay={workers}");
        let file = dir.join(format!("gets-{workers}.gor"));
        // 1 ms apart as recorded; at --speed max the gaps do not count.
        write_gets(&file, (0..n).map(|_| path.clone()), 1);
        let run_dir = dir.join(format!("run-{workers}"));
        std::fs::create_dir_all(&run_dir)?;
        let workers_text = workers.to_string();
        let file_text = file.to_str().context("a UTF-8 path")?;
        let start = Instant::now();
        let mut child = replay_command_bare(
            &run_dir,
            &["--input-file", file_text, "--speed", "max"],
            &[("GOR_TARGET", &target), ("GOR_WORKERS", &workers_text)],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(run_dir.join("stderr"))?)
        .spawn()
        .context("starting gor-agent replay")?;
        // Its exit is the end of the measurement: polled every millisecond.
        let waited = wait_with_timeout(&mut child, MAX_REPLAY, Duration::from_millis(1))?;
        let Some(status) = waited else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("gor-agent replay did not finish {n} requests within {MAX_REPLAY:?}");
        };
        let seconds = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!(
                "gor-agent replay exited with {status}: {}",
                std::fs::read_to_string(run_dir.join("stderr")).unwrap_or_default()
            );
        }
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("stats.json"))?)?;
        let dropped = [
            "queue_full",
            "lane_queue_full",
            "dropped_backoff",
            "timeouts",
        ]
        .iter()
        .map(|k| counter(&stats, &["mirror", k]))
        .sum();
        // The replay exits after staging answered every request: its log is complete.
        let arrived = staging.served(&format!("GET {path} HTTP/1.1"));
        eprintln!(
            "replay: GOR_WORKERS={workers}: {arrived} of {n} in {seconds:.2} s ({:.0} requests/s), dropped {dropped}",
            arrived as f64 / seconds
        );
        runs.push(Replayed {
            workers,
            seconds,
            arrived,
            dropped,
        });
    }
    direct.push(wrk(&url, WRK_CONNS, plan.wrk_secs)?.rps);
    let baseline = median(&direct);
    let mut table = Table::new(&[
        "sender",
        "requests",
        "seconds",
        "requests/s",
        "ratio to wrk direct",
        "dropped",
    ]);
    let each: Vec<String> = direct.iter().map(|v| format!("{v:.0}")).collect();
    table.row(vec![
        format!("wrk direct, {WRK_CONNS} connections (median; each run)"),
        String::new(),
        format!("{} each", plan.wrk_secs),
        format!("{baseline:.0} ({})", each.join(", ")),
        "1.00".into(),
        String::new(),
    ]);
    let mut judged = 0.0;
    for r in &runs {
        let rps = r.arrived as f64 / r.seconds;
        if r.workers == WRK_CONNS {
            judged = ratio(rps, baseline);
        }
        table.row(vec![
            format!("gor-agent replay --speed max, GOR_WORKERS={}", r.workers),
            format!("{} of {n}", r.arrived),
            format!("{:.2}", r.seconds),
            format!("{rps:.0}"),
            format!("{:.2}", ratio(rps, baseline)),
            r.dropped.to_string(),
        ]);
    }
    let complete = runs.iter().all(|r| r.arrived == n && r.dropped == 0);
    let section = Section {
        title: "Replay throughput".into(),
        about: format!(
            "A file of {n} GET requests (GoReplay's format, plain) replayed at `--speed max` \
             to a staging nginx, once per GOR_WORKERS value; requests/s is staging's \
             access-log count over the replay's wall time (process start to exit, file \
             reading included). The baseline is wrk against the same staging, run before \
             each replay and once after the last, the median of those runs. \
             GOR_WORKERS={WRK_CONNS} matches wrk's connections and is the one judged against \
             the target."
        ),
        setup: vec![
            wrk_command("http://127.0.0.1:<staging>/index.html", WRK_CONNS, plan.wrk_secs)
                .join(" "),
            "GOR_TARGET=http://127.0.0.1:<staging> GOR_WORKERS=<1|16|64> gor-agent replay --input-file gets.gor --speed max".into(),
        ],
        tables: vec![table],
        notes: vec!["Dropped: queue_full + lane_queue_full + dropped_backoff + timeouts from the replay's counters.".into()],
    };
    Ok(Outcome {
        section,
        targets: vec![Target {
            what: format!(
                "replay --speed max throughput, ratio to wrk direct (GOR_WORKERS={WRK_CONNS})"
            ),
            goal: ">= 0.9".into(),
            measured: format!("{judged:.2}"),
            pass: complete && judged >= 0.9,
        }],
    })
}
