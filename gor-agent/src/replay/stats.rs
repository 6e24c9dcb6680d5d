//! Counters and latency histograms shared by the replay tasks, and the serialisable
//! snapshot ([`ReplayStats`]) built from them.
//!
//! Everything here is lock-free atomics so that `submit` on the capture path and the lane
//! tasks can count without contending; a snapshot is only approximately consistent across
//! counters, which is fine for monitoring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Live counters of one target.
#[derive(Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub queue_full: AtomicU64,
    pub lane_queue_full: AtomicU64,
    pub lanes_full: AtomicU64,
    pub dropped_backoff: AtomicU64,
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub status_1xx: AtomicU64,
    pub status_2xx: AtomicU64,
    pub status_3xx: AtomicU64,
    pub status_4xx: AtomicU64,
    pub status_5xx: AtomicU64,
    pub connect_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub resets: AtomicU64,
    pub bad_responses: AtomicU64,
    pub bad_requests: AtomicU64,
    pub aborted_at_shutdown: AtomicU64,
    /// Gauge: accepted requests not finished yet (queued or in flight).
    pub pending: AtomicU64,
    /// Gauge: bytes of those requests, bounded by the per-target byte budget.
    pub pending_bytes: AtomicU64,
    /// Gauge: lane tasks alive (running or waiting for a worker slot).
    pub lanes: AtomicU64,
    pub latency: Histogram,
}

/// Adds one to a counter.
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Subtracts from a gauge.
pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.fetch_sub(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    /// Counts a final response by status class.
    pub fn status(&self, status: u16) {
        let c = match status {
            100..=199 => &self.status_1xx,
            200..=299 => &self.status_2xx,
            300..=399 => &self.status_3xx,
            400..=499 => &self.status_4xx,
            _ => &self.status_5xx,
        };
        inc(c);
    }

    pub fn snapshot(&self, target: &str) -> TargetStats {
        TargetStats {
            target: target.to_string(),
            accepted: get(&self.accepted),
            rate_limited: get(&self.rate_limited),
            queue_full: get(&self.queue_full),
            lane_queue_full: get(&self.lane_queue_full),
            lanes_full: get(&self.lanes_full),
            dropped_backoff: get(&self.dropped_backoff),
            sent: get(&self.sent),
            retries: get(&self.retries),
            status_1xx: get(&self.status_1xx),
            status_2xx: get(&self.status_2xx),
            status_3xx: get(&self.status_3xx),
            status_4xx: get(&self.status_4xx),
            status_5xx: get(&self.status_5xx),
            connect_errors: get(&self.connect_errors),
            timeouts: get(&self.timeouts),
            resets: get(&self.resets),
            bad_responses: get(&self.bad_responses),
            bad_requests: get(&self.bad_requests),
            aborted_at_shutdown: get(&self.aborted_at_shutdown),
            pending: get(&self.pending),
            pending_bytes: get(&self.pending_bytes),
            lanes: get(&self.lanes),
            idle_connections: 0,
            latency: self.latency.snapshot().summary(),
        }
    }
}

/// Counters of one target (or the sum over all targets), in a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetStats {
    /// `http://host:port/base` of the target, or `"total"`.
    pub target: String,
    /// Requests put on the target's queue.
    pub accepted: u64,
    /// Dropped by `Rate::PerSecond`.
    pub rate_limited: u64,
    /// Dropped because the target queue (or its byte budget) was full.
    pub queue_full: u64,
    /// Dropped because the client connection's lane queue was full.
    pub lane_queue_full: u64,
    /// Dropped because the target had too many lanes (client connections) already.
    pub lanes_full: u64,
    /// Dropped while the target was backing off after a failure.
    pub dropped_backoff: u64,
    /// Requests written to staging (retries included).
    pub sent: u64,
    /// Requests re-sent once because a reused keep-alive connection was found closed.
    pub retries: u64,
    /// Final 1xx responses (101 Switching Protocols): the connection is then closed.
    pub status_1xx: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub connect_errors: u64,
    /// Requests whose connect + write + read exceeded the timeout.
    pub timeouts: u64,
    /// Connections reset or closed before a full response.
    pub resets: u64,
    /// Responses that could not be parsed (or exceeded the reader's limits).
    pub bad_responses: u64,
    /// Captured requests whose head could not be rewritten (not expected from the framer).
    pub bad_requests: u64,
    /// Requests queued or in flight when the shutdown grace ran out.
    pub aborted_at_shutdown: u64,
    /// Gauge: accepted requests not finished yet.
    pub pending: u64,
    /// Gauge: bytes held by those requests.
    pub pending_bytes: u64,
    /// Gauge: lane tasks alive.
    pub lanes: u64,
    /// Gauge: keep-alive connections pooled, idle.
    pub idle_connections: u64,
    pub latency: LatencySummary,
}

impl TargetStats {
    /// Adds the counters of `o` into `self` (gauges too, so a total is a total).
    pub(crate) fn add(&mut self, o: &TargetStats) {
        self.accepted += o.accepted;
        self.rate_limited += o.rate_limited;
        self.queue_full += o.queue_full;
        self.lane_queue_full += o.lane_queue_full;
        self.lanes_full += o.lanes_full;
        self.dropped_backoff += o.dropped_backoff;
        self.sent += o.sent;
        self.retries += o.retries;
        self.status_1xx += o.status_1xx;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.connect_errors += o.connect_errors;
        self.timeouts += o.timeouts;
        self.resets += o.resets;
        self.bad_responses += o.bad_responses;
        self.bad_requests += o.bad_requests;
        self.aborted_at_shutdown += o.aborted_at_shutdown;
        self.pending += o.pending;
        self.pending_bytes += o.pending_bytes;
        self.lanes += o.lanes;
        self.idle_connections += o.idle_connections;
    }
}

/// Latency (request written -> response complete) percentiles, in microseconds. The
/// values are bucket upper bounds, so they overstate by at most ~6%.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Everything the replayer counted, per target and in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    /// Calls to `submit`.
    pub submitted: u64,
    /// Submitted messages that are not mirrored: responses, CONNECT requests.
    pub ignored: u64,
    /// Requests not kept by `Rate::Percent` (one decision for all targets).
    pub sampled_out: u64,
    pub total: TargetStats,
    pub targets: Vec<TargetStats>,
}

/// Sub-buckets per power of two: 16 gives a relative error under 1/16.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 60 s (in microseconds); the buckets below 16 us are exact.
const MAX_US: u64 = 60_000_000;
const BUCKETS: usize = bucket_of(MAX_US) + 1;

/// Log-linear bucket of a value in microseconds (HDR-histogram style).
const fn bucket_of(us: u64) -> usize {
    let v = if us > MAX_US { MAX_US } else { us };
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    (shift as u64 * SUB + (v >> shift)) as usize
}

/// Largest value that falls into bucket `b`.
fn bucket_upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let mantissa = b - shift * SUB; // in SUB..2*SUB
    ((mantissa + 1) << shift) - 1
}

/// A fixed-size, lock-free latency histogram.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        inc(&self.buckets[bucket_of(us)]);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot(self.buckets.iter().map(get).collect())
    }
}

/// Bucket counts copied out of a [`Histogram`]; snapshots of several targets add up.
#[derive(Clone, Debug)]
pub(crate) struct HistogramSnapshot(Vec<u64>);

impl HistogramSnapshot {
    pub fn empty() -> Self {
        HistogramSnapshot(vec![0; BUCKETS])
    }

    pub fn merge(&mut self, o: &HistogramSnapshot) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }

    pub fn summary(&self) -> LatencySummary {
        let count: u64 = self.0.iter().sum();
        let max_us = self
            .0
            .iter()
            .rposition(|&c| c > 0)
            .map(bucket_upper)
            .unwrap_or(0);
        LatencySummary {
            count,
            p50_us: self.quantile(count, 50),
            p90_us: self.quantile(count, 90),
            p99_us: self.quantile(count, 99),
            max_us,
        }
    }

    /// Upper bound of the bucket holding the `pct`-th percentile sample.
    fn quantile(&self, count: u64, pct: u64) -> u64 {
        if count == 0 {
            return 0;
        }
        // Rank of the sample, 1-based, rounded up: p50 of 1..=100 is the 50th sample.
        let rank = (count * pct).div_ceil(100).max(1);
        let mut seen = 0;
        for (b, &c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper(b);
            }
        }
        bucket_upper(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, MAX_US - 1, MAX_US]) {
            let b = bucket_of(v);
            assert!(b >= last || v == 1 << 20, "v={v}");
            last = b;
            assert!(bucket_upper(b) >= v, "v={v} b={b}");
            assert!(bucket_upper(b) as f64 <= v as f64 * 1.07 + 1.0, "v={v}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "v={v}");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot().summary();
        assert_eq!(s.count, 1000);
        assert!((500..=535).contains(&s.p50_us), "{s:?}");
        assert!((900..=960).contains(&s.p90_us), "{s:?}");
        assert!((990..=1060).contains(&s.p99_us), "{s:?}");
        assert!(s.max_us >= 1000);
        assert_eq!(
            HistogramSnapshot::empty().summary(),
            LatencySummary::default()
        );
    }
}
