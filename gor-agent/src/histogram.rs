//! Latency histograms: lock-free, fixed-size, log-linear (HDR style), recorded on the hot
//! paths (dispatch, the mirroring lanes) and read as percentiles for the logs; beside the
//! fine buckets, exact counts per Prometheus bucket ([`BOUNDS_US`]). The stages that
//! record them depend on this module alone; the metrics endpoint reads their snapshots
//! ([`Histograms`]) with the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// One histogram of a published snapshot: its labels (e.g. the target) and buckets.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub histogram: HistogramSnapshot,
}

/// The latency histograms the pipeline keeps.
#[derive(Clone, Debug, Default)]
pub struct Histograms {
    /// Capture (the last byte of a message, by the kernel's clock) to dispatch.
    pub capture_to_dispatch: Option<HistogramSnapshot>,
    /// Request written to staging to response read, per target.
    pub staging_response: Vec<Series>,
    /// Production's and staging's latency per endpoint, for compared exchanges
    /// (`GOR_COMPARE`), labelled with endpoint, target and side.
    pub compare_latency: Vec<Series>,
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

/// Sub-buckets per power of two: 16 gives a relative error under 1/16.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 60 s (in microseconds); the buckets below 16 us are exact.
const MAX_US: u64 = 60_000_000;
const BUCKETS: usize = bucket_of(MAX_US) + 1;

/// The Prometheus buckets' upper bounds, in microseconds (50 us to 10 s). Values are
/// counted against them exactly when recorded: the fine buckets straddle some of them.
pub const BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

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
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    /// Values at or below each of [`BOUNDS_US`] and above the one before; the last slot
    /// holds those above every bound.
    coarse: [AtomicU64; BOUNDS_US.len() + 1],
    /// Sum of the recorded values, in microseconds (Prometheus' `_sum`).
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            coarse: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.coarse[BOUNDS_US.partition_point(|&b| b < us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us.min(MAX_US), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets: self.buckets.iter().map(get).collect(),
            coarse: self.coarse.iter().map(get).collect(),
            sum_us: get(&self.sum_us),
        }
    }
}

/// Bucket counts copied out of a [`Histogram`]; snapshots of several targets add up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    buckets: Vec<u64>,
    coarse: Vec<u64>,
    sum_us: u64,
}

impl HistogramSnapshot {
    pub fn empty() -> Self {
        HistogramSnapshot {
            buckets: vec![0; BUCKETS],
            coarse: vec![0; BOUNDS_US.len() + 1],
            sum_us: 0,
        }
    }

    pub fn merge(&mut self, o: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        for (a, b) in self.coarse.iter_mut().zip(&o.coarse) {
            *a += b;
        }
        self.sum_us += o.sum_us;
    }

    /// Prometheus' view, in seconds: the sum, the count, and for each of [`BOUNDS_US`]
    /// the number of values above the previous bound and at or below this one (the
    /// encoder adds them up); values above the last bound are only in the count (`+Inf`).
    pub fn buckets(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let out = BOUNDS_US
            .iter()
            .zip(&self.coarse)
            .map(|(&b, &n)| (b as f64 / 1e6, n))
            .collect();
        let count = self.coarse.iter().sum();
        (self.sum_us as f64 / 1e6, count, out)
    }

    pub fn summary(&self) -> LatencySummary {
        let count: u64 = self.buckets.iter().sum();
        let max_us = self
            .buckets
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
        for (b, &c) in self.buckets.iter().enumerate() {
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

    #[test]
    fn buckets_for_prometheus() {
        let h = Histogram::default();
        for us in [50, 400, 900, 3_000, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        // On the bounds and just past them: 50 us and 1 ms sit inside fine buckets that
        // reach past them, and still count under their own bound.
        for us in [51, 1_000, 1_001, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let (sum, count, b) = h.snapshot().buckets();
        assert_eq!(count, 9);
        assert!((sum - 22.006402).abs() < 1e-9, "{sum}");
        let at = |bound: f64| b.iter().find(|(le, _)| *le == bound).map_or(0, |x| x.1);
        assert_eq!(at(0.00005), 1, "{b:?}");
        assert_eq!(at(0.0001), 1, "{b:?}");
        assert_eq!(at(0.0005), 1, "{b:?}");
        assert_eq!(at(0.001), 2, "{b:?}");
        assert_eq!(at(0.0025), 1, "{b:?}");
        assert_eq!(at(0.005), 1, "{b:?}");
        assert_eq!(at(2.5), 1, "{b:?}");
        assert_eq!(
            b.iter().map(|x| x.1).sum::<u64>(),
            8,
            "20 s is only in +Inf"
        );
        let mut merged = h.snapshot();
        merged.merge(&h.snapshot());
        assert_eq!(merged.buckets().1, 18);
    }
}
