//! Experiment 6, rate-limit accuracy: production gets more than the limit (paced), the
//! agent mirrors with `GOR_RATE`, and a recording staging counts what arrives in total
//! and in each second.

use std::{path::Path, time::Duration};

use super::{
    load::paced,
    markdown::{Section, Table},
    median, mirror_to_recorder, ratio, settle, Outcome, Plan,
};
use crate::agent::counter;

const LIMIT: u32 = 100;
const OFFERED: u32 = 300;

pub fn run(plan: &Plan, dir: &Path) -> Outcome {
    let limit = LIMIT.to_string();
    let (prod, staging, agent) = mirror_to_recorder(dir, "bench-rate", &[("GOR_RATE", &limit)]);
    let sent = paced(prod.addr, OFFERED, plan.rate_limit, |_, _| {
        "/index.html?rate".to_string()
    });
    // Whatever the limiter let through is on its way; wait until staging stops getting more.
    settle(
        || staging.received().len(),
        usize::MAX,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    let stats = agent.stop().stats;
    let got = staging.received();
    let secs = plan.rate_limit.as_secs() as usize;
    let mut per_second = vec![0usize; secs];
    for g in &got {
        if let Some(s) = g.at.checked_duration_since(sent.started) {
            if let Some(slot) = per_second.get_mut(s.as_secs() as usize) {
                *slot += 1;
            }
        }
    }
    let expected = LIMIT as usize * secs;
    let each: Vec<f64> = per_second.iter().map(|&n| n as f64).collect();
    let min = each.iter().copied().fold(f64::INFINITY, f64::min);
    let max = each.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "rate limit: offered {}, received {} (expected {expected}), per second {min}..{max}",
        sent.sent.len(),
        got.len()
    );
    let mut table = Table::new(&[
        "offered",
        "sent by the client",
        "rate_limited (agent)",
        "received by staging",
        "expected",
        "received / expected",
        "per second: min / median / max",
    ]);
    table.row(vec![
        format!("{:.0} requests/s", sent.rps()),
        sent.sent.len().to_string(),
        counter(&stats, &["mirror", "rate_limited"]).to_string(),
        got.len().to_string(),
        expected.to_string(),
        format!("{:.3}", ratio(got.len() as f64, expected as f64)),
        format!("{min:.0} / {:.0} / {max:.0}", median(&each)),
    ]);
    Outcome {
        section: Section {
            title: "Rate-limit accuracy".into(),
            about: format!(
                "A paced client sends {OFFERED} requests/s to production (nginx) for {secs} s; \
                 the agent mirrors with GOR_RATE={LIMIT} to a recording staging. Expected: \
                 {LIMIT} x {secs} s. Per second: arrivals in each whole second since the \
                 client's start."
            ),
            setup: vec![format!(
                "GOR_PORTS=<production> GOR_INTERFACES=lo GOR_TARGET=http://127.0.0.1:<recording staging> GOR_RATE={LIMIT} gor-agent"
            )],
            tables: vec![table],
            notes: Vec::new(),
        },
        targets: Vec::new(),
    }
}
