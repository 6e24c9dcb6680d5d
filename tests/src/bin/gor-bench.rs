//! `cargo xtask bench` (after the criterion benchmarks): gor's mirroring on this machine,
//! every figure against a baseline measured in the same run, written to BENCHMARKS.md.
//! See `gor_tests::bench` for the experiments.
//!
//! `gor-bench [--quick] [--out FILE] [--criterion DIR]`: `--quick` shortens every
//! duration (development only; the file says so); FILE defaults to BENCHMARKS.md at the
//! workspace root; DIR is where the criterion framing benchmark just wrote its estimates
//! (`target/criterion`), to summarise them too.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use gor_tests::{
    agent::temp_dir,
    bench::{completeness, framing, latency, markdown, overhead, probe, rate_limit, replay, Plan},
};

const USAGE: &str = "gor-bench [--quick] [--out FILE] [--criterion DIR]";

fn main() -> Result<()> {
    let mut quick = false;
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut out = root.join("BENCHMARKS.md");
    let mut criterion = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().context("--out needs a file")?.into(),
            "--criterion" => {
                criterion = Some(PathBuf::from(
                    args.next().context("--criterion needs a directory")?,
                ))
            }
            _ => bail!("unknown argument {a:?}; usage: {USAGE}"),
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmarks load BPF programs and attach them to lo: run them as root");
    }
    let plan = if quick { Plan::QUICK } else { Plan::FULL };
    let started = Instant::now();
    let date = probe::now_utc();
    let load_at_start = probe::load_average();
    let dir = temp_dir("bench");

    let overhead = overhead::run(&plan, &dir.join("overhead"))?;
    let mut outcomes = vec![overhead.outcome];
    outcomes.extend(completeness::run(
        &plan,
        &dir.join("completeness"),
        overhead.max_rps,
    )?);
    outcomes.push(replay::run(&plan, &dir.join("replay"))?);
    outcomes.push(latency::run(&plan, &dir.join("latency")));
    outcomes.push(rate_limit::run(&plan, &dir.join("rate")));
    if let Some(c) = &criterion {
        outcomes.push(
            framing::summary(c, quick)
                .with_context(|| format!("no criterion estimates under {}", c.display()))?,
        );
    }

    let wall = started.elapsed().as_secs();
    let report = markdown::Report {
        date,
        command: if quick {
            "cargo xtask bench --quick".into()
        } else {
            "cargo xtask bench".into()
        },
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
