//! Every Prometheus series the agent exports: its name, type, help text, labels, and
//! where its value lives in the report (a JSON pointer into its serialization). One
//! table, so a new counter in the report is one line here, and the README's list can be
//! checked against it. The report's own tests check every pointer against a fully
//! populated [`super::Report`], so a renamed field fails a test instead of dropping a
//! series.
//!
//! Names follow Prometheus conventions: `gor_` prefix, the unit in the name (`_bytes`,
//! `_seconds`), and counters get `_total` from the encoder. Series whose value is not in
//! the report (a stage that is not configured: no target, no middleware, no file) are
//! left out rather than exported as zero.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};
use serde_json::Value;

use crate::histogram::{HistogramSnapshot, Histograms};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Type {
    Counter,
    Gauge,
}

/// Where the samples of a family come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// The report itself.
    Report,
    /// Each element of `/mirror/targets`, labelled `target="<url>"`.
    PerTarget,
    /// Each element of `/compare/endpoints`, labelled `endpoint` and `target`.
    PerEndpoint,
}

/// One series of a family: its constant labels and the pointer to its value.
pub struct Sample {
    pub labels: &'static [(&'static str, &'static str)],
    pub path: &'static str,
}

pub struct Family {
    /// Without `_total` (the encoder adds it to counters).
    pub name: &'static str,
    pub help: &'static str,
    pub ty: Type,
    pub scope: Scope,
    pub samples: &'static [Sample],
}

use Scope::{PerEndpoint, PerTarget, Report};
use Type::{Counter, Gauge};

macro_rules! family {
    ($name:literal, $ty:expr, $scope:expr, $help:literal, [$(($labels:expr, $path:literal)),+ $(,)?]) => {
        Family {
            name: $name,
            help: $help,
            ty: $ty,
            scope: $scope,
            samples: &[$(Sample { labels: $labels, path: $path }),+],
        }
    };
    ($name:literal, $ty:expr, $scope:expr, $help:literal, $path:literal) => {
        family!($name, $ty, $scope, $help, [(&[], $path)])
    };
}

/// The exported families, in the order of the pipeline.
pub static FAMILIES: &[Family] = &[
    // Kernel (TC programs, per-CPU counters summed).
    family!("gor_kernel_packets", Counter, Report, "Packets on the captured ports seen by the TC programs.", "/kernel/packets_matched"),
    family!("gor_kernel_copied_bytes", Counter, Report, "Payload bytes copied into the ring buffer.", "/kernel/bytes_copied"),
    family!("gor_kernel_chunks", Counter, Report, "Records written to the ring buffer.", "/kernel/chunks_emitted"),
    family!("gor_kernel_ringbuf_drops", Counter, Report, "Records lost because the ring buffer was full.", "/kernel/ringbuf_drops"),
    family!("gor_kernel_ringbuf_dropped_bytes", Counter, Report, "Payload bytes of the records lost to a full ring buffer.", "/kernel/ringbuf_dropped_bytes"),
    family!("gor_kernel_ringbuf_peak_bytes", Gauge, Report, "Most bytes found waiting in the ring buffer for the agent since it started (how close the ring came to full).", "/kernel/ring_peak_bytes"),
    family!("gor_kernel_truncated_packets", Counter, Report, "Packets with more payload than a record chain holds.", "/kernel/truncated_packets"),
    family!("gor_kernel_truncated_bytes", Counter, Report, "Payload bytes beyond that limit, not copied.", "/kernel/truncated_bytes"),
    family!("gor_kernel_snapped_bytes", Counter, Report, "Server payload bytes left out on purpose by the response snap (GOR_RESPONSE_SNAP): not needed, not lost.", "/kernel/snapped_bytes"),
    family!("gor_kernel_skipped_packets", Counter, Report, "Packets not captured, by reason.", [
        (&[("reason", "fragment")], "/kernel/fragments"),
        (&[("reason", "malformed")], "/kernel/malformed"),
        (&[("reason", "load_error")], "/kernel/load_errors"),
        (&[("reason", "own_staging_connection")], "/kernel/excluded"),
    ]),
    // TLS probes (OpenSSL), kernel side.
    family!("gor_kernel_tls_calls", Counter, Report, "SSL_read/SSL_write calls with data on captured TLS connections.", "/kernel/tls_calls"),
    family!("gor_kernel_tls_copied_bytes", Counter, Report, "TLS plaintext bytes copied into the TLS ring buffer.", "/kernel/tls_bytes_copied"),
    family!("gor_kernel_tls_records", Counter, Report, "Records written to the TLS ring buffer.", "/kernel/tls_records"),
    family!("gor_kernel_tls_ringbuf_drops", Counter, Report, "TLS records lost because the TLS ring buffer was full.", "/kernel/tls_ringbuf_drops"),
    family!("gor_kernel_tls_lost_bytes", Counter, Report, "TLS plaintext bytes not copied, by reason.", [
        (&[("reason", "ring_full_or_unreadable")], "/kernel/tls_dropped_bytes"),
        (&[("reason", "truncated")], "/kernel/tls_truncated_bytes"),
    ]),
    family!("gor_kernel_tls_unmapped_calls", Counter, Report, "Calls with data on an SSL* not yet tied to its socket (joined before the agent started).", "/kernel/tls_unmapped_calls"),
    // TLS plaintext to streams.
    family!("gor_tls_records", Counter, Report, "Records read from the TLS ring buffer.", "/tls/records"),
    family!("gor_tls_decode_errors", Counter, Report, "TLS ring-buffer records that could not be decoded (skipped).", "/tls/decode_errors"),
    family!("gor_tls_connections_open", Gauge, Report, "TLS connections open.", "/tls/open_connections"),
    family!("gor_tls_connections", Counter, Report, "TLS connections, by what happened to them.", [
        (&[("event", "opened")], "/tls/connections_opened"),
        (&[("event", "opened_midstream")], "/tls/connections_midstream"),
        (&[("event", "closed")], "/tls/connections_closed"),
        (&[("event", "replaced")], "/tls/connections_replaced"),
        (&[("event", "idle_expired")], "/tls/connections_idle"),
        (&[("event", "evicted")], "/tls/connections_evicted"),
    ]),
    family!("gor_tls_gaps", Counter, Report, "Holes in TLS streams (plaintext the kernel could not keep).", "/tls/gaps"),
    family!("gor_tls_gap_bytes", Counter, Report, "Bytes of those holes.", "/tls/gap_bytes"),
    family!("gor_tls_late_records", Counter, Report, "TLS records of connections that had already ended, not delivered.", "/tls/late_records"),
    // Ring buffer to userspace.
    family!("gor_ring_records", Counter, Report, "Records read from the ring buffer.", "/records/received"),
    family!("gor_ring_decode_errors", Counter, Report, "Ring-buffer records that could not be decoded (skipped).", "/records/decode_errors"),
    // Reassembly.
    family!("gor_connections_open", Gauge, Report, "TCP connections being reassembled.", "/open_connections"),
    family!("gor_reassembly_buffered_bytes", Gauge, Report, "Out-of-order bytes held while waiting for a hole to fill.", "/buffered_bytes"),
    family!("gor_connections", Counter, Report, "TCP connections, by what happened to them.", [
        (&[("event", "opened")], "/reassembly/connections_opened"),
        (&[("event", "opened_midstream")], "/reassembly/connections_midstream"),
        (&[("event", "closed")], "/reassembly/connections_closed"),
        (&[("event", "idle_expired")], "/reassembly/connections_idle"),
        (&[("event", "evicted")], "/reassembly/connections_evicted"),
    ]),
    family!("gor_reassembly_segments", Counter, Report, "TCP segments reassembled.", "/reassembly/segments"),
    family!("gor_reassembly_bytes", Counter, Report, "Bytes delivered in order.", "/reassembly/bytes"),
    family!("gor_reassembly_duplicate_bytes", Counter, Report, "Bytes seen more than once (retransmissions), delivered once.", "/reassembly/duplicate_bytes"),
    family!("gor_reassembly_gaps", Counter, Report, "Holes in a stream that were never filled.", "/reassembly/gaps"),
    family!("gor_reassembly_gap_bytes", Counter, Report, "Bytes missing in those holes.", "/reassembly/gap_bytes"),
    family!("gor_reassembly_snapped_bytes", Counter, Report, "Bytes the kernel left out on purpose (the response snap), passed over in order.", "/reassembly/snapped_bytes"),
    family!("gor_reassembly_buffer_overflows", Counter, Report, "Holes given up because a buffer limit was reached.", "/reassembly/buffer_overflows"),
    // HTTP framing.
    family!("gor_http_messages", Counter, Report, "HTTP messages framed.", [
        (&[("kind", "request")], "/http/requests"),
        (&[("kind", "response")], "/http/responses"),
    ]),
    family!("gor_http_incomplete_messages", Counter, Report, "Messages damaged by a gap, cut by the end of the stream, or with unusable framing.", [
        (&[("kind", "request")], "/http/incomplete_requests"),
        (&[("kind", "response")], "/http/incomplete_responses"),
    ]),
    family!("gor_http_oversize_messages", Counter, Report, "Messages over the head or body limits (not framed).", "/http/oversize_messages"),
    family!("gor_http_not_http_bytes", Counter, Report, "Bytes skipped because they were not HTTP/1.x (TLS, garbage, remains after a gap).", "/http/not_http_bytes"),
    family!("gor_http_snapped_heads", Counter, Report, "Response heads the response snap left out (coalesced responses, or a head longer than the snap): not framed; requests are not affected.", "/http/snapped_heads"),
    family!("gor_http_unanswered_requests", Counter, Report, "Requests never answered on their connection.", "/http/unanswered_requests"),
    family!("gor_http_tunneled_bytes", Counter, Report, "Bytes of upgraded or tunnelled connections, not parsed.", "/http/tunneled_bytes"),
    // Saved traffic being replayed.
    family!("gor_input_records", Counter, Report, "Records read from saved traffic.", "/input/records"),
    family!("gor_input_skipped_records", Counter, Report, "Records of saved traffic skipped, by reason.", [
        (&[("reason", "damaged")], "/input/damaged"),
        (&[("reason", "invalid_http")], "/input/invalid"),
    ]),
    // Publishing to NATS JetStream (a listener).
    family!("gor_nats_published_messages", Counter, Report, "Messages published to NATS JetStream, by what became of them.", [
        (&[("result", "queued")], "/nats_publish/queued"),
        (&[("result", "stored")], "/nats_publish/published"),
        (&[("result", "duplicate")], "/nats_publish/duplicates"),
        (&[("result", "retried")], "/nats_publish/retries"),
    ]),
    family!("gor_nats_publish_dropped", Counter, Report, "Messages not published, by reason.", [
        (&[("reason", "queue_full")], "/nats_publish/dropped_queue_full"),
        (&[("reason", "too_large")], "/nats_publish/too_large"),
        (&[("reason", "refused")], "/nats_publish/failed"),
    ]),
    family!("gor_nats_publish_pending", Gauge, Report, "Messages queued or waiting for the server's acknowledgement.", "/nats_publish/pending"),
    family!("gor_nats_connected", Gauge, Report, "1 while the listener is connected to NATS.", "/nats_publish/connected"),
    // Consuming from NATS JetStream (a replay server).
    family!("gor_nats_consumed_messages", Counter, Report, "Messages a replay server took from the stream, by what became of them.", [
        (&[("result", "received")], "/nats_consume/received"),
        (&[("result", "redelivered")], "/nats_consume/redelivered"),
        (&[("result", "redelivered_sent")], "/nats_consume/redelivered_sent"),
        (&[("result", "duplicate_skipped")], "/nats_consume/duplicates_skipped"),
        (&[("result", "undecodable")], "/nats_consume/decode_errors"),
        (&[("result", "acked_sent")], "/nats_consume/acked_sent"),
        (&[("result", "acked_dropped")], "/nats_consume/acked_dropped"),
        (&[("result", "nacked")], "/nats_consume/nacked"),
        (&[("result", "unsettled")], "/nats_consume/unsettled"),
        (&[("result", "late_answer")], "/nats_consume/late_answers"),
    ]),
    family!("gor_nats_errors", Counter, Report, "Failed exchanges with NATS of a replay server, by kind.", [
        (&[("kind", "ack")], "/nats_consume/ack_errors"),
        (&[("kind", "fetch")], "/nats_consume/fetch_errors"),
    ]),
    family!("gor_nats_inflight", Gauge, Report, "Messages delivered to the replay server and not yet settled.", "/nats_consume/inflight"),
    family!("gor_nats_partitions_owned", Gauge, Report, "Partitions of the stream this replay server consumes.", "/nats_consume/partitions_owned"),
    // GoReplay's TCP protocol: sending (`--output-tcp`).
    family!("gor_tcp_output_messages", Counter, Report, "Messages of the TCP output (GoReplay's protocol), by what became of them.", [
        (&[("result", "queued")], "/tcp_output/queued"),
        (&[("result", "sent")], "/tcp_output/sent"),
    ]),
    family!("gor_tcp_output_dropped", Counter, Report, "Messages the TCP output did not take, by reason.", [
        (&[("reason", "queue_full")], "/tcp_output/dropped_queue_full"),
    ]),
    family!("gor_tcp_output_sent_bytes", Counter, Report, "Bytes the TCP output wrote.", "/tcp_output/bytes_sent"),
    family!("gor_tcp_output_connection_events", Counter, Report, "The TCP output's connections, by event.", [
        (&[("event", "reconnect")], "/tcp_output/reconnects"),
        (&[("event", "connect_error")], "/tcp_output/connect_errors"),
    ]),
    family!("gor_tcp_output_pending", Gauge, Report, "Messages in the TCP output's queues.", "/tcp_output/pending"),
    family!("gor_tcp_output_connected", Gauge, Report, "The TCP output's connections up.", "/tcp_output/connected"),
    // GoReplay's TCP protocol: reading (`--input-tcp`).
    family!("gor_tcp_input_messages", Counter, Report, "Messages the TCP input read, by type or why they were skipped.", [
        (&[("result", "request")], "/tcp_input/requests"),
        (&[("result", "response")], "/tcp_input/responses"),
        (&[("result", "staging_response")], "/tcp_input/staging_responses"),
        (&[("result", "invalid_http")], "/tcp_input/invalid"),
    ]),
    family!("gor_tcp_input_malformed", Counter, Report, "Stretches of the TCP input's streams that were not a message (skipped).", "/tcp_input/malformed"),
    family!("gor_tcp_input_received_bytes", Counter, Report, "Bytes the TCP input read.", "/tcp_input/bytes"),
    family!("gor_tcp_input_connections", Counter, Report, "Connections the TCP input accepted.", "/tcp_input/connections"),
    family!("gor_tcp_input_connection_errors", Counter, Report, "Failed TLS handshakes and reads of the TCP input.", "/tcp_input/connection_errors"),
    family!("gor_tcp_input_open_connections", Gauge, Report, "Connections of the TCP input open now.", "/tcp_input/open_connections"),
    // Middleware.
    family!("gor_middleware_messages", Counter, Report, "Messages through the middleware, by stage.", [
        (&[("stage", "offered")], "/middleware/offered"),
        (&[("stage", "sent")], "/middleware/sent"),
        (&[("stage", "returned")], "/middleware/returned"),
    ]),
    family!("gor_middleware_dropped", Counter, Report, "Messages the middleware stage lost, by reason (what the program itself did not return is not counted here).", [
        (&[("reason", "queue_full")], "/middleware/dropped_queue_full"),
        (&[("reason", "restart")], "/middleware/lost_in_restart"),
        (&[("reason", "shutdown")], "/middleware/dropped_at_shutdown"),
        (&[("reason", "invalid_line")], "/middleware/invalid_lines"),
        (&[("reason", "refused")], "/middleware/refused"),
    ]),
    family!("gor_middleware_queued_messages", Gauge, Report, "Messages waiting for the middleware.", "/middleware/queued"),
    family!("gor_middleware_restarts", Counter, Report, "Times the middleware program was restarted.", "/middleware/restarts"),
    // Filters and rewrites.
    family!("gor_filter_passed", Counter, Report, "Requests kept by the filters.", "/filters/passed"),
    family!("gor_filter_dropped", Counter, Report, "Requests dropped by a filter, by rule.", [
        (&[("rule", "allow_url")], "/filters/dropped_by_rule/allow_url"),
        (&[("rule", "disallow_url")], "/filters/dropped_by_rule/disallow_url"),
        (&[("rule", "allow_method")], "/filters/dropped_by_rule/allow_method"),
        (&[("rule", "allow_header")], "/filters/dropped_by_rule/allow_header"),
        (&[("rule", "disallow_header")], "/filters/dropped_by_rule/disallow_header"),
        (&[("rule", "header_limiter")], "/filters/dropped_by_rule/header_limiter"),
        (&[("rule", "param_limiter")], "/filters/dropped_by_rule/param_limiter"),
        (&[("rule", "basic_auth")], "/filters/dropped_by_rule/basic_auth"),
    ]),
    family!("gor_filter_rewritten", Counter, Report, "Requests changed by a rewrite.", "/filters/rewritten"),
    family!("gor_filter_rewrite_errors", Counter, Report, "Requests kept unrewritten because the rewrite broke their head.", "/filters/rewrite_errors"),
    family!("gor_filter_prettified", Counter, Report, "Requests whose body GOR_HTTP_PRETTIFY decoded.", "/filters/prettified"),
    family!("gor_filter_prettify_errors", Counter, Report, "Requests kept as they came because GOR_HTTP_PRETTIFY could not decode their body.", "/filters/prettify_errors"),
    // Mirroring to staging, per target.
    family!("gor_mirror_sampled_out", Counter, Report, "Requests left out by a percentage GOR_RATE (one draw for all targets).", "/mirror/sampled_out"),
    family!("gor_mirror_accepted", Counter, PerTarget, "Requests queued for the target.", "/accepted"),
    family!("gor_mirror_rate_limited", Counter, PerTarget, "Requests over the target's rate (its own `|N` in GOR_TARGET, or GOR_RATE), dropped.", "/rate_limited"),
    family!("gor_mirror_dropped", Counter, PerTarget, "Requests for the target dropped, by reason.", [
        (&[("reason", "queue_full")], "/queue_full"),
        (&[("reason", "lane_queue_full")], "/lane_queue_full"),
        (&[("reason", "lanes_full")], "/lanes_full"),
        (&[("reason", "backoff")], "/dropped_backoff"),
        (&[("reason", "shutdown")], "/aborted_at_shutdown"),
    ]),
    family!("gor_mirror_queued_requests", Gauge, PerTarget, "Requests queued or in flight to the target.", "/pending"),
    family!("gor_mirror_queued_bytes", Gauge, PerTarget, "Bytes of those requests (bounded by the byte budget).", "/pending_bytes"),
    family!("gor_mirror_sent", Counter, PerTarget, "Requests written to the target (retries included).", "/sent"),
    family!("gor_mirror_pipelined", Counter, PerTarget, "Requests written behind another whose response had not come yet (HTTP/1.1 pipelining).", "/pipelined"),
    family!("gor_mirror_retries", Counter, PerTarget, "Requests sent again because staging closed the connection before answering them.", "/retries"),
    family!("gor_mirror_redirects", Counter, PerTarget, "Redirects of staging followed to the target, and not followed because their Location was elsewhere.", [
        (&[("result", "followed")], "/redirects_followed"),
        (&[("result", "elsewhere")], "/redirects_elsewhere"),
    ]),
    family!("gor_mirror_responses", Counter, PerTarget, "Responses from the target, by status class.", [
        (&[("class", "1xx")], "/status_1xx"),
        (&[("class", "2xx")], "/status_2xx"),
        (&[("class", "3xx")], "/status_3xx"),
        (&[("class", "4xx")], "/status_4xx"),
        (&[("class", "5xx")], "/status_5xx"),
    ]),
    family!("gor_mirror_errors", Counter, PerTarget, "Requests to the target that failed, by kind.", [
        (&[("kind", "connect")], "/connect_errors"),
        (&[("kind", "timeout")], "/timeouts"),
        (&[("kind", "reset")], "/resets"),
        (&[("kind", "bad_response")], "/bad_responses"),
        (&[("kind", "bad_request")], "/bad_requests"),
    ]),
    family!("gor_mirror_results_dropped", Counter, PerTarget, "Staging results dropped because their subscriber was not ready (the requests were mirrored).", "/results_dropped"),
    family!("gor_mirror_connections", Gauge, PerTarget, "Connections to the target, by state.", [
        (&[("state", "active")], "/lanes"),
        (&[("state", "idle")], "/idle_connections"),
    ]),
    // Production against staging.
    family!("gor_compare_results", Counter, Report, "Mirrored exchanges compared with production, by outcome.", [
        (&[("outcome", "match")], "/compare/outcomes/match"),
        (&[("outcome", "status")], "/compare/outcomes/status"),
        (&[("outcome", "body")], "/compare/outcomes/body"),
        (&[("outcome", "headers")], "/compare/outcomes/headers"),
        (&[("outcome", "staging_error")], "/compare/outcomes/staging_error"),
        (&[("outcome", "no_production_response")], "/compare/outcomes/no_production_response"),
        (&[("outcome", "expired")], "/compare/outcomes/expired"),
        (&[("outcome", "evicted")], "/compare/outcomes/evicted"),
        (&[("outcome", "skipped")], "/compare/outcomes/skipped"),
    ]),
    family!("gor_compare_endpoint_results", Counter, PerEndpoint, "Compared exchanges by endpoint (method and normalised path), target and outcome.", [
        (&[("outcome", "match")], "/outcomes/match"),
        (&[("outcome", "status")], "/outcomes/status"),
        (&[("outcome", "body")], "/outcomes/body"),
        (&[("outcome", "headers")], "/outcomes/headers"),
        (&[("outcome", "staging_error")], "/outcomes/staging_error"),
        (&[("outcome", "no_production_response")], "/outcomes/no_production_response"),
        (&[("outcome", "expired")], "/outcomes/expired"),
        (&[("outcome", "evicted")], "/outcomes/evicted"),
        (&[("outcome", "skipped")], "/outcomes/skipped"),
    ]),
    family!("gor_compare_pending", Gauge, Report, "Exchanges waiting for production's or staging's response.", "/compare/pending"),
    family!("gor_compare_pending_bytes", Gauge, Report, "Bytes those exchanges hold (bounded by GOR_COMPARE_MAX_PENDING_BYTES).", "/compare/pending_bytes"),
    family!("gor_compare_not_mirrored_responses", Counter, Report, "Production responses to requests that were not mirrored (nothing to compare).", "/compare/not_mirrored"),
    family!("gor_compare_late_answers", Counter, Report, "Staging answers that came after their exchange was given up.", "/compare/late"),
    family!("gor_compare_diffs", Counter, Report, "Differences for GOR_OUTPUT_DIFFS, by what became of them.", [
        (&[("result", "written")], "/compare/diffs/written"),
        (&[("result", "over_limit")], "/compare/diffs/not_written"),
        (&[("result", "write_error")], "/compare/diffs/errors"),
    ]),
    // Outputs.
    family!("gor_output_errors", Counter, Report, "Events or messages an output failed to take.", "/outputs/errors"),
    family!("gor_file_records", Counter, Report, "Records written to GOR_OUTPUT_FILE.", "/outputs/file/records_written"),
    family!("gor_file_written_bytes", Counter, Report, "Bytes written to GOR_OUTPUT_FILE (before compression).", "/outputs/file/bytes_written"),
    family!("gor_file_dropped_records", Counter, Report, "Records lost to write errors.", "/outputs/file/records_dropped"),
    family!("gor_file_over_max_size_records", Counter, Report, "Records not saved because the files reached GOR_OUTPUT_FILE_MAX_SIZE_LIMIT.", "/outputs/file/records_over_max_size"),
    family!("gor_file_write_errors", Counter, Report, "Failed writes, opens and gzip finishes.", "/outputs/file/write_errors"),
];

const CAPTURE_TO_DISPATCH: (&str, &str) = (
    "gor_capture_to_dispatch_seconds",
    "From the kernel seeing a message's last byte to the message leaving framing (live capture).",
);
const STAGING_RESPONSE: (&str, &str) = (
    "gor_mirror_response_seconds",
    "From a request written to the target (pipelined: from the response before it read) to its response read.",
);
const COMPARE_LATENCY: (&str, &str) = (
    "gor_compare_latency_seconds",
    "Response times of compared exchanges per endpoint and target: production's (request to response, as captured) and staging's.",
);

/// Writes every family with at least one value in `report`, then the histograms.
pub fn encode(
    report: &super::Report,
    histograms: &Histograms,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let report = &report.to_json();
    // The elements of an array in the report, with the labels taken from their fields.
    let elements = |pointer: &str,
                    keys: &'static [&'static str]|
     -> Vec<(Vec<(&'static str, String)>, &Value)> {
        report
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .map(|e| {
                        let labels = keys
                            .iter()
                            .map(|&k| (k, e[k].as_str().unwrap_or("").to_string()))
                            .collect();
                        (labels, e)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let targets = elements("/mirror/targets", &["target"]);
    let endpoints = elements("/compare/endpoints", &["endpoint", "target"]);
    for f in FAMILIES {
        let bases: Vec<(&[(&str, String)], &Value)> = match f.scope {
            Report => vec![(&[], report)],
            PerTarget => targets.iter().map(|(l, v)| (l.as_slice(), *v)).collect(),
            PerEndpoint => endpoints.iter().map(|(l, v)| (l.as_slice(), *v)).collect(),
        };
        let values: Vec<(Vec<(&str, &str)>, u64)> = bases
            .iter()
            .flat_map(|(own, base)| {
                f.samples.iter().filter_map(move |s| {
                    let v = base.pointer(s.path)?.as_u64()?;
                    let mut labels: Vec<(&str, &str)> =
                        own.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    labels.extend(s.labels.iter().copied());
                    Some((labels, v))
                })
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let ty = match f.ty {
            Counter => MetricType::Counter,
            Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(f.name, f.help, None, ty)?;
        for (labels, v) in values {
            let series = family.encode_family(&labels)?;
            match f.ty {
                Counter => ConstCounter::new(v).encode(series)?,
                Gauge => ConstGauge::new(v as i64).encode(series)?,
            }
        }
    }
    if let Some(h) = &histograms.capture_to_dispatch {
        let (name, help) = CAPTURE_TO_DISPATCH;
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        histogram(&mut family, &[], h)?;
    }
    for (series, (name, help)) in [
        (&histograms.staging_response, STAGING_RESPONSE),
        (&histograms.compare_latency, COMPARE_LATENCY),
    ] {
        if series.is_empty() {
            continue;
        }
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for s in series {
            let labels: Vec<(&str, &str)> =
                s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            histogram(&mut family, &labels, &s.histogram)?;
        }
    }
    Ok(())
}

fn histogram(
    family: &mut prometheus_client::encoding::MetricEncoder,
    labels: &[(&str, &str)],
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let (sum, count, buckets) = h.buckets();
    let mut series = family.encode_family(&labels)?;
    series.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gor_common::counter;

    use super::super::{
        report::{KernelReport, MirrorReport},
        Metrics,
    };
    use super::*;
    use crate::histogram::{Histogram, Series};
    use crate::{capture::tc::KernelCounters, http::HttpStats, mirror::TargetStats};

    fn render(report: super::super::Report, histograms: Histograms) -> String {
        let m = Metrics::default();
        m.publish(report, histograms);
        m.render()
    }

    #[test]
    fn report_values_become_named_series_with_help() {
        // Live capture mirroring to one target, no middleware, no file output.
        let mut kernel = KernelCounters::default();
        kernel.0[counter::PACKETS_MATCHED as usize] = 10;
        kernel.0[counter::FRAGMENTS as usize] = 1;
        let target = TargetStats {
            target: "http://127.0.0.1:8080".into(),
            status_2xx: 3,
            status_5xx: 1,
            queue_full: 5,
            pending: 7,
            timeouts: 2,
            ..TargetStats::default()
        };
        let report = super::super::Report {
            kernel: Some(KernelReport::Counters(kernel)),
            http: HttpStats {
                requests: 4,
                responses: 3,
                ..HttpStats::default()
            },
            open_connections: 2,
            mirror: Some(MirrorReport {
                targets: vec![target],
                ..MirrorReport::default()
            }),
            ..Default::default()
        };
        let h = Histogram::default();
        h.record(Duration::from_micros(300));
        h.record(Duration::from_millis(20));
        let out = render(
            report,
            Histograms {
                capture_to_dispatch: Some(h.snapshot()),
                staging_response: vec![Series {
                    labels: vec![("target", "http://127.0.0.1:8080".into())],
                    histogram: h.snapshot(),
                }],
                compare_latency: Vec::new(),
            },
        );
        for line in [
            "# HELP gor_kernel_packets_total Packets on the captured ports seen by the TC programs.",
            "# TYPE gor_kernel_packets_total counter",
            "gor_kernel_packets_total 10",
            "gor_kernel_ringbuf_drops_total 0",
            "gor_kernel_skipped_packets_total{reason=\"fragment\"} 1",
            "gor_http_messages_total{kind=\"request\"} 4",
            "# TYPE gor_connections_open gauge",
            "gor_connections_open 2",
            "gor_mirror_responses_total{target=\"http://127.0.0.1:8080\",class=\"2xx\"} 3",
            "gor_mirror_responses_total{target=\"http://127.0.0.1:8080\",class=\"5xx\"} 1",
            "gor_mirror_dropped_total{target=\"http://127.0.0.1:8080\",reason=\"queue_full\"} 5",
            "gor_mirror_errors_total{target=\"http://127.0.0.1:8080\",kind=\"timeout\"} 2",
            "gor_mirror_queued_requests{target=\"http://127.0.0.1:8080\"} 7",
            "# TYPE gor_capture_to_dispatch_seconds histogram",
            "gor_capture_to_dispatch_seconds_bucket{le=\"0.0005\"} 1",
            "gor_capture_to_dispatch_seconds_bucket{le=\"0.025\"} 2",
            "gor_capture_to_dispatch_seconds_bucket{le=\"+Inf\"} 2",
            "gor_capture_to_dispatch_seconds_count 2",
            "gor_mirror_response_seconds_count{target=\"http://127.0.0.1:8080\"} 2",
            "# TYPE process_resident_memory_bytes gauge",
            "gor_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
        }
        // Stages that are not configured are left out, not shown as zero.
        assert!(!out.contains("gor_middleware"), "{out}");
        assert!(!out.contains("gor_file_"), "{out}");
        assert!(!out.contains("gor_input_"), "{out}");
    }

    #[test]
    fn every_family_is_well_named_and_documented() {
        let mut names = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(f.name.starts_with("gor_"), "{}", f.name);
            assert!(
                f.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                f.name
            );
            assert!(
                !f.name.ends_with("_total"),
                "{}: the encoder adds _total",
                f.name
            );
            assert!(f.help.ends_with('.') && f.help.len() > 10, "{}", f.name);
            assert!(names.insert(f.name), "{} twice", f.name);
            for s in f.samples {
                assert!(s.path.starts_with('/'), "{}: {}", f.name, s.path);
            }
        }
    }

    #[test]
    fn before_the_first_report_only_the_process_is_shown() {
        let out = Metrics::default().render();
        assert!(out.contains("process_cpu_seconds_total"), "{out}");
        assert!(!out.contains("gor_kernel"), "{out}");
    }
}
