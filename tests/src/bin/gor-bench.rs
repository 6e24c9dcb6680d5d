//! `cargo xtask bench` (after the criterion benchmarks): gor's mirroring on this machine,
//! every figure against a baseline measured in the same run, written to BENCHMARKS.md.
//! See `gor_tests::bench` for the experiments.
//!
//! `gor-bench [--quick] [--only EXPERIMENT] [--out FILE] [--criterion DIR]
//! [--allocations FILE]`: `--quick` shortens every duration (development only; the file
//! says so); `--only` runs one experiment (`overhead`, `cost`, `completeness`, `replay`,
//! `latency`, `rate`, `fleet` or `tls`) and writes
//! `target/bench-EXPERIMENT.md` unless told otherwise; FILE defaults to BENCHMARKS.md at
//! the workspace root; DIR is where the criterion framing benchmark just wrote its
//! estimates (`target/criterion`), to summarise them too; the allocations FILE is what the
//! counting-allocator test printed (`gor-agent/tests/allocations.rs`).

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use gor_tests::{
    agent::temp_dir,
    bench::{
        capture_cost, completeness, fleet, framing, latency, markdown, overhead, probe, rate_limit,
        replay, tls, Plan,
    },
};

const USAGE: &str =
    "gor-bench [--quick] [--only EXPERIMENT] [--out FILE] [--criterion DIR] [--allocations FILE]";

/// The experiments, in the order they run; `--only` takes one of these names.
const EXPERIMENTS: [&str; 8] = [
    "overhead",
    "cost",
    "completeness",
    "replay",
    "latency",
    "rate",
    "fleet",
    "tls",
];

fn main() -> Result<()> {
    let mut quick = false;
    let mut only = None;
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut out = None;
    let mut criterion = None;
    let mut allocations = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let name = args.next().context("--only needs an experiment")?;
                if !EXPERIMENTS.contains(&name.as_str()) {
                    bail!("no experiment {name:?}; one of {}", EXPERIMENTS.join(", "));
                }
                only = Some(name);
            }
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a file")?)),
            "--criterion" => {
                criterion = Some(PathBuf::from(
                    args.next().context("--criterion needs a directory")?,
                ))
            }
            "--allocations" => {
                allocations = Some(PathBuf::from(
                    args.next().context("--allocations needs a file")?,
                ))
            }
            _ => bail!("unknown argument {a:?}; usage: {USAGE}"),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load BPF programs and attach them to lo: run them as root");
    }
    // One experiment alone is for development: it never replaces BENCHMARKS.md unasked.
    let out = out.unwrap_or_else(|| match &only {
        None => root.join("BENCHMARKS.md"),
        Some(name) => root.join("target").join(format!("bench-{name}.md")),
    });
    let plan = if quick { Plan::QUICK } else { Plan::FULL };
    let started = Instant::now();
    let date = probe::now_utc();
    let load_at_start = probe::load_average();
    let dir = temp_dir("bench");

    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut outcomes = Vec::new();
    // Completeness relates its rates to overhead's maximum; alone, it has none (0).
    let mut max_rps = 0.0;
    if run("overhead") {
        let overhead = overhead::run(&plan, &dir.join("overhead"))?;
        max_rps = overhead.max_rps;
        outcomes.push(overhead.outcome);
    }
    if run("cost") {
        outcomes.push(capture_cost::run(&plan, &dir.join("cost"))?);
    }
    if run("completeness") {
        outcomes.extend(completeness::run(
            &plan,
            &dir.join("completeness"),
            max_rps,
        )?);
    }
    if run("replay") {
        outcomes.push(replay::run(&plan, &dir.join("replay"))?);
    }
    if run("latency") {
        outcomes.push(latency::run(&plan, &dir.join("latency")));
    }
    if run("rate") {
        outcomes.push(rate_limit::run(&plan, &dir.join("rate")));
    }
    if run("fleet") {
        outcomes.push(fleet::run(&plan, &dir.join("fleet"))?);
    }
    if run("tls") {
        outcomes.push(tls::run(&plan, &dir.join("tls"))?);
    }
    if let Some(c) = &criterion {
        outcomes.push(
            framing::summary(c, quick)
                .with_context(|| format!("no criterion estimates under {}", c.display()))?,
        );
    }

    if let Some(a) = &allocations {
        let printed = std::fs::read_to_string(a)
            .with_context(|| format!("reading the allocation test's output {}", a.display()))?;
        outcomes.push(capture_cost::allocations(&printed));
    }

    let wall = started.elapsed().as_secs();
    let report = markdown::Report {
        date,
        command: format!(
            "cargo xtask bench{}{}",
            if quick { " --quick" } else { "" },
            only.as_deref()
                .map(|o| format!(" --only {o}"))
                .unwrap_or_default()
        ),
        wall_time: format!("{} min {} s", wall / 60, wall % 60),
        quick,
        machine: probe::machine(&root, &load_at_start),
        targets: outcomes.iter().flat_map(|o| o.targets.clone()).collect(),
        sections: outcomes.into_iter().map(|o| o.section).collect(),
    };
    let text = markdown::render(&report);
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    // This run's directories (the experiments' and each agent's: stats, logs); after a
    // failure they stay for a look.
    let prefix = format!("{}-", std::process::id());
    for entry in std::fs::read_dir(dir.parent().unwrap_or(&dir))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    println!("{text}");
    eprintln!("gor-bench: wrote {} in {}", out.display(), report.wall_time);
    Ok(())
}
