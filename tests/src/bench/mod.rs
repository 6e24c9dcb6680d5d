//! `cargo xtask bench`: gor's performance on this machine, each figure against a baseline
//! measured in the same run, written to BENCHMARKS.md. Real programs on loopback only:
//! nginx as production and as a fast staging, wrk and a paced client as clients, tcpdump
//! as the packet-capture baseline, nats-server as a fleet's broker, the release agent as
//! production runs it.
//!
//! One module per experiment; each returns its section of the report and the targets it
//! checks. `markdown` turns the results into the file; `load` drives the traffic;
//! `probe` reads the machine and processes (CPU time, versions).

pub mod capture_cost;
pub mod completeness;
pub mod fleet;
pub mod framing;
pub mod latency;
pub mod load;
pub mod markdown;
pub mod overhead;
pub mod probe;
pub mod rate_limit;
pub mod replay;
pub mod tls;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use markdown::{Section, Target};

use crate::{agent::Agent, nginx::Nginx, staging::Staging, traffic::listen};

/// How long each part runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Production overhead: rounds of (without, capture only, mirroring), each wrk run
    /// this long.
    pub overhead_rounds: usize,
    pub wrk_secs: u32,
    /// Each completeness step.
    pub step: Duration,
    /// Paced rates of the completeness steps before wrk flat out.
    pub paced_rates: &'static [u32],
    /// GET requests in the replayed file.
    pub replay_requests: usize,
    /// Capture-to-staging latency: runs of this long each.
    pub latency_runs: usize,
    pub latency: Duration,
    pub rate_limit: Duration,
    /// Requests the replay server drains from a pre-filled NATS stream.
    pub fleet_requests: usize,
}

impl Plan {
    pub const FULL: Plan = Plan {
        overhead_rounds: 3,
        wrk_secs: 5,
        step: Duration::from_secs(5),
        paced_rates: &[1_000, 5_000, 10_000],
        replay_requests: 100_000,
        latency_runs: 3,
        latency: Duration::from_secs(10),
        rate_limit: Duration::from_secs(30),
        fleet_requests: 50_000,
    };

    /// For development: the same experiments, shortened.
    pub const QUICK: Plan = Plan {
        overhead_rounds: 1,
        wrk_secs: 2,
        step: Duration::from_secs(2),
        paced_rates: &[1_000, 5_000],
        replay_requests: 10_000,
        latency_runs: 1,
        latency: Duration::from_secs(3),
        rate_limit: Duration::from_secs(5),
        fleet_requests: 10_000,
    };
}

/// What one experiment contributes to the report.
pub struct Outcome {
    pub section: Section,
    pub targets: Vec<Target>,
}

/// Production (nginx) and a recording staging, with the agent capturing production's port
/// on `lo` and mirroring to staging (`env` adds settings, e.g. `GOR_RATE`).
pub fn mirror_to_recorder(dir: &Path, name: &str, env: &[(&str, &str)]) -> (Nginx, Staging, Agent) {
    let prod = Nginx::start(dir.join("production"));
    let staging = Staging::start(listen("127.0.0.1"));
    let target = format!("http://{}", staging.addr);
    let mut all = vec![("GOR_TARGET", target.as_str())];
    all.extend_from_slice(env);
    let agent = Agent::start_bare(name, &[prod.addr.port()], &["lo"], &all);
    (prod, staging, agent)
}

/// wrk's connections wherever it runs flat out.
pub const WRK_CONNS: u32 = 16;

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p` quantile (0..=1) of sorted values, nearest rank.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Polls `count` until it reaches `want`, or stops changing for `quiet`, or `max` has
/// passed; returns the last value. For counts that have no signal of their own (a
/// server's access log, requests still on their way to staging).
pub fn settle(
    mut count: impl FnMut() -> usize,
    want: usize,
    quiet: Duration,
    max: Duration,
) -> usize {
    let start = Instant::now();
    let mut last = count();
    let mut changed = Instant::now();
    while last < want && changed.elapsed() < quiet && start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            last = now;
            changed = Instant::now();
        }
    }
    last
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 51);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&v, 1.0), 100);
        assert_eq!(percentile::<u32>(&[], 0.5), 0);
    }
}
