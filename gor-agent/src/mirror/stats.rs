//! Counters and latency histograms shared by the mirroring tasks, and the serialisable
//! snapshot ([`MirrorStats`]) built from them.
//!
//! Everything here is lock-free atomics so that `submit` on the capture path and the lane
//! tasks can count without contending; a snapshot is only approximately consistent across
//! counters, which is fine for monitoring.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

pub use crate::histogram::{Histogram, HistogramSnapshot, LatencySummary};

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
    pub pipelined: AtomicU64,
    pub retries: AtomicU64,
    pub redirects_followed: AtomicU64,
    pub redirects_elsewhere: AtomicU64,
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
    pub results_dropped: AtomicU64,
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
            pipelined: get(&self.pipelined),
            retries: get(&self.retries),
            redirects_followed: get(&self.redirects_followed),
            redirects_elsewhere: get(&self.redirects_elsewhere),
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
            results_dropped: get(&self.results_dropped),
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
    /// Dropped by the target's rate: `Rate::PerSecond`, or its own `Rate::Percent`.
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
    /// Of those, requests written behind another whose response had not come yet.
    pub pipelined: u64,
    /// Requests sent again because staging closed the connection before answering them
    /// (a reused keep-alive connection found closed, or a close with requests pipelined).
    pub retries: u64,
    /// Redirects of staging followed (`--redirects`): requests sent to their Location,
    /// counted in `sent` too.
    pub redirects_followed: u64,
    /// Redirects not followed because their Location is on another host, scheme or port
    /// than the target's (gor never sends a mirrored request anywhere but a target).
    pub redirects_elsewhere: u64,
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
    /// Staging results a subscriber was not ready for (its channel was full), dropped;
    /// the requests themselves were mirrored.
    pub results_dropped: u64,
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
        self.pipelined += o.pipelined;
        self.retries += o.retries;
        self.redirects_followed += o.redirects_followed;
        self.redirects_elsewhere += o.redirects_elsewhere;
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
        self.results_dropped += o.results_dropped;
        self.pending += o.pending;
        self.pending_bytes += o.pending_bytes;
        self.lanes += o.lanes;
        self.idle_connections += o.idle_connections;
    }
}

/// Everything the mirror counted, per target and in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorStats {
    /// Calls to `submit`.
    pub submitted: u64,
    /// Submitted messages that are not mirrored: responses, CONNECT requests.
    pub ignored: u64,
    /// Requests not kept by the default `Rate::Percent` (one decision for all targets
    /// without a rate of their own).
    pub sampled_out: u64,
    pub total: TargetStats,
    pub targets: Vec<TargetStats>,
}
