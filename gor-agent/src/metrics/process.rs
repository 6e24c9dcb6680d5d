//! The agent process' own cost, read from `/proc/self` at each scrape (and for the log
//! summary): resident memory and CPU time, under the names every Prometheus client uses.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
    .map(|k| k * 1024)
}

/// User + system CPU time of the whole process, in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    cpu_ticks(&stat).map(|t| t as f64 / ticks.max(1) as f64)
}

/// A `Name:   123 kB` line of `/proc/<pid>/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime from `/proc/<pid>/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

pub fn encode(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    if let Some(rss) = rss_bytes() {
        let e = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(rss as i64).encode(e)?;
    }
    if let Some(cpu) = cpu_seconds() {
        let e = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu).encode(e)?;
    }
    let mut e = encoder.encode_descriptor(
        "gor_build_info",
        "The agent's version (always 1).",
        None,
        MetricType::Gauge,
    )?;
    let labels = [("version", env!("CARGO_PKG_VERSION"))];
    ConstGauge::new(1).encode(e.encode_family(&labels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stat_fields() {
        let status = "Name:\tgor-agent\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let stat = "42 (gor (x) agent) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        assert!(rss_bytes().unwrap() > 0);
        assert!(cpu_seconds().unwrap() >= 0.0);
    }
}
