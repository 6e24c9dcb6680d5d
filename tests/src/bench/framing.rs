//! The criterion framing benchmark (`gor-agent/benches/framing.rs`), summarised from the
//! estimates criterion wrote in the same `cargo xtask bench` run: reassembly + HTTP
//! framing on one core, against copying the same payload bytes once.

use std::path::Path;

use serde_json::Value;

use super::{
    markdown::{Section, Table, Target},
    ratio, Outcome,
};

/// (mean ns per iteration, its 95% interval, payload bytes per iteration) of one bench.
fn estimate(criterion: &Path, name: &str) -> Option<(f64, f64, f64, u64)> {
    let dir = criterion.join("framing").join(name).join("new");
    let read = |f: &str| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(dir.join(f)).ok()?).ok()
    };
    let (est, bench) = (read("estimates.json")?, read("benchmark.json")?);
    let mean = &est["mean"];
    Some((
        mean["point_estimate"].as_f64()?,
        mean["confidence_interval"]["lower_bound"].as_f64()?,
        mean["confidence_interval"]["upper_bound"].as_f64()?,
        bench["throughput"]["Bytes"].as_u64()?,
    ))
}

/// The section, or None when criterion's estimates are not there.
pub fn summary(criterion: &Path, quick: bool) -> Option<Outcome> {
    let copy = estimate(criterion, "baseline_copy_payload")?;
    let framing = estimate(criterion, "reassembly_and_framing")?;
    let mut table = Table::new(&[
        "bench",
        "mean time per iteration (95% interval)",
        "payload MiB/s",
        "time, ratio to the copy",
    ]);
    for (name, (mean, lo, hi, bytes)) in [
        ("baseline: copy the payload once", copy),
        ("reassembly and HTTP framing", framing),
    ] {
        table.row(vec![
            name.into(),
            format!("{:.2} ms ({:.2} to {:.2})", mean / 1e6, lo / 1e6, hi / 1e6),
            format!("{:.0}", ratio(bytes as f64, mean / 1e9) / (1024.0 * 1024.0)),
            format!("{:.1}", ratio(mean, copy.0)),
        ]);
    }
    let mut setup = vec!["cargo bench -p gor-agent --bench framing".to_string()];
    if quick {
        setup[0] += " -- --warm-up-time 1 --measurement-time 2";
    }
    Some(Outcome {
        section: Section {
            title: "Framing on one core (criterion)".into(),
            about: format!(
                "Reassembly and HTTP framing in userspace, no kernel: interleaved connections \
                 of small GETs, JSON POSTs and chunked responses ({:.1} MiB of payload per \
                 iteration), against copying the same payload bytes once.",
                framing.3 as f64 / (1024.0 * 1024.0)
            ),
            setup,
            tables: vec![table],
            notes: Vec::new(),
        },
        targets: vec![Target {
            what: "reassembly and HTTP framing time, ratio to copying the payload once".into(),
            goal: "<= 3".into(),
            measured: format!("{:.1}", ratio(framing.0, copy.0)),
            pass: ratio(framing.0, copy.0) <= 3.0,
        }],
    })
}
