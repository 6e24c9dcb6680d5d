//! The report: every stage's counters in one typed value, built by the pipeline and the
//! source about once a second and read by the stats file (`GOR_STATS_FILE`, its JSON), the
//! summary line and the metrics endpoint (through the [`catalog`](super::catalog)'s
//! pointers into that JSON).
//!
//! Its sections are the stages' own stats structs. Where a section's JSON adds to a
//! stage's struct (mirroring's totals at the top level, the middleware's return path),
//! the section here is a struct whose serialization is that JSON, so a renamed field is a
//! compile error or a failing test here, never a series that silently disappears.

use serde::Serialize;

use crate::{
    capture::{pcap::PcapStats, tc::KernelCounters},
    compare::CompareReport,
    filters::FilterStats,
    gorfile::{FileStats, InputStats},
    http::HttpStats,
    middleware::MiddlewareStats,
    mirror::{MirrorStats, TargetStats},
    reassembly,
};

/// Everything the agent counted; see the module documentation. Sections a source does
/// not have (the kernel's for saved traffic, the input's for capture) are left out of the
/// JSON; stages that are not configured (mirroring, the middleware) are `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelReport>,
    /// Ring-buffer records (live capture; zeros for a pcap file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<RecordsReport>,
    pub reassembly: reassembly::Stats,
    pub http: HttpStats,
    /// Gauge: TCP connections being reassembled.
    pub open_connections: usize,
    /// Gauge: out-of-order bytes held.
    pub buffered_bytes: usize,
    pub mirror: Option<MirrorReport>,
    pub middleware: Option<MiddlewareReport>,
    pub filters: FilterStats,
    /// Production against staging (`GOR_COMPARE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareReport>,
    pub outputs: OutputsReport,
    /// Publishing to NATS JetStream (a listener, `GOR_NATS_URL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_publish: Option<crate::broker::publish::PublishStats>,
    /// Consuming from NATS JetStream (`gor-agent replay-server`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_consume: Option<crate::broker::stats::ConsumeStats>,
    /// Saved traffic read (`gor-agent replay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<InputStats>,
    /// Sending in GoReplay's TCP protocol (`--output-tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_output: Option<crate::goreplay_tcp::stats::TcpOutputStats>,
    /// Reading GoReplay's TCP protocol (`--input-tcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_input: Option<crate::goreplay_tcp::stats::TcpInputStats>,
    /// HTTPS plaintext from the OpenSSL probes (`GOR_TLS=openssl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsReport>,
}

/// TLS capture: the libraries probed, the records read, and the streams made of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TlsReport {
    pub libraries: Vec<String>,
    pub records: u64,
    /// Records that could not be decoded (skipped).
    pub decode_errors: u64,
    /// Gauge: TLS connections open.
    pub open_connections: usize,
    #[serde(flatten)]
    pub streams: crate::tls_streams::TlsStreamStats,
}

impl Report {
    /// The JSON of the stats file. Through a `Value` (its keys sorted), so the file reads
    /// as it always did.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain structs, maps with string keys and numbers cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What the capture below the reassembler counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KernelReport {
    /// The TC programs' counters, one field per counter.
    Counters(KernelCounters),
    /// The counters could not be read.
    Unavailable { error: String },
    /// A pcap file's reader (`kernel.pcap`).
    Pcap { pcap: PcapStats },
}

/// Records read from the ring buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecordsReport {
    pub received: u64,
    /// Records that could not be decoded (skipped).
    pub decode_errors: u64,
}

/// Mirroring: the totals over targets at the top level (the figures an operator reads
/// first), the submission counts, latency percentiles, and each target's own counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    #[serde(flatten)]
    pub total: TargetStats,
    pub submitted: u64,
    pub sampled_out: u64,
    pub latency_p50_us: u64,
    pub latency_p90_us: u64,
    pub latency_p99_us: u64,
    pub targets: Vec<TargetStats>,
}

impl From<MirrorStats> for MirrorReport {
    fn from(r: MirrorStats) -> MirrorReport {
        MirrorReport {
            submitted: r.submitted,
            sampled_out: r.sampled_out,
            latency_p50_us: r.total.latency.p50_us,
            latency_p90_us: r.total.latency.p90_us,
            latency_p99_us: r.total.latency.p99_us,
            total: r.total,
            targets: r.targets,
        }
    }
}

/// The middleware: the child's counters and the return path's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MiddlewareReport {
    #[serde(flatten)]
    pub stats: MiddlewareStats,
    /// Lines the child returned that are not a valid HTTP message.
    pub refused: u64,
    /// Messages returned that were not (or no longer) known: mirrored on any idle lane.
    pub unknown: u64,
}

/// The outputs: one error count for all of them, and the `.gor` file's own counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OutputsReport {
    /// Events or messages an output failed to take.
    pub errors: u64,
    /// `GOR_OUTPUT_FILE`, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStats>,
}

#[cfg(test)]
mod tests {
    use gor_common::counter;
    use serde_json::{json, Value};

    use super::super::catalog::{Scope, FAMILIES};
    use super::*;
    use crate::{
        compare::{DiffsStats, EndpointReport, Outcomes},
        filters::DroppedByRule,
        histogram::LatencySummary,
    };

    /// Distinct non-zero numbers, one per call.
    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    /// What every stage hands the report, with distinct non-zero values, every stage
    /// configured (two mirroring targets, the middleware, the `.gor` file, saved traffic
    /// and live capture at once, which no run has, so that every section is present).
    struct Parts {
        kernel: KernelCounters,
        records: u64,
        decode_errors: u64,
        reassembly: reassembly::Stats,
        http: HttpStats,
        open_connections: usize,
        buffered_bytes: usize,
        mirror: MirrorStats,
        middleware: MiddlewareStats,
        refused: u64,
        unknown: u64,
        filters: FilterStats,
        output_errors: u64,
        file: FileStats,
        input: InputStats,
        compare: CompareReport,
        publish: crate::broker::publish::PublishStats,
        consume: crate::broker::stats::ConsumeStats,
        tls: TlsReport,
        tcp_output: crate::goreplay_tcp::stats::TcpOutputStats,
        tcp_input: crate::goreplay_tcp::stats::TcpInputStats,
    }

    fn outcomes(next: &mut impl FnMut() -> u64) -> Outcomes {
        Outcomes {
            matched: next(),
            status: next(),
            body: next(),
            headers: next(),
            staging_error: next(),
            no_production_response: next(),
            expired: next(),
            evicted: next(),
            skipped: next(),
        }
    }

    fn latency(next: &mut impl FnMut() -> u64) -> LatencySummary {
        LatencySummary {
            count: next(),
            p50_us: next(),
            p90_us: next(),
            p99_us: next(),
            max_us: next(),
        }
    }

    fn target(name: &str, next: &mut impl FnMut() -> u64) -> TargetStats {
        TargetStats {
            target: name.to_string(),
            accepted: next(),
            rate_limited: next(),
            queue_full: next(),
            lane_queue_full: next(),
            lanes_full: next(),
            dropped_backoff: next(),
            sent: next(),
            pipelined: next(),
            retries: next(),
            redirects_followed: next(),
            redirects_elsewhere: next(),
            status_1xx: next(),
            status_2xx: next(),
            status_3xx: next(),
            status_4xx: next(),
            status_5xx: next(),
            connect_errors: next(),
            timeouts: next(),
            resets: next(),
            bad_responses: next(),
            bad_requests: next(),
            aborted_at_shutdown: next(),
            pending: next(),
            pending_bytes: next(),
            lanes: next(),
            idle_connections: next(),
            results_dropped: next(),
            latency: LatencySummary {
                count: next(),
                p50_us: next(),
                p90_us: next(),
                p99_us: next(),
                max_us: next(),
            },
        }
    }

    fn parts() -> Parts {
        let mut next = counter();
        let mut kernel = KernelCounters::default();
        for c in kernel.0.iter_mut() {
            *c = next();
        }
        Parts {
            kernel,
            records: next(),
            decode_errors: next(),
            reassembly: reassembly::Stats {
                segments: next(),
                bytes: next(),
                duplicate_bytes: next(),
                gaps: next(),
                gap_bytes: next(),
                connections_opened: next(),
                connections_midstream: next(),
                connections_closed: next(),
                connections_idle: next(),
                connections_evicted: next(),
                buffer_overflows: next(),
                late_segments: next(),
                ignored_segments: next(),
                snapped_bytes: next(),
            },
            http: HttpStats {
                requests: next(),
                responses: next(),
                incomplete_requests: next(),
                incomplete_responses: next(),
                oversize_messages: next(),
                not_http_bytes: next(),
                interim_responses: next(),
                upgraded_connections: next(),
                tunneled_bytes: next(),
                unpaired_responses: next(),
                unanswered_requests: next(),
                resyncs: next(),
                snapped_heads: next(),
            },
            open_connections: next() as usize,
            buffered_bytes: next() as usize,
            mirror: MirrorStats {
                submitted: next(),
                ignored: next(),
                sampled_out: next(),
                total: target("total", &mut next),
                targets: vec![
                    target("http://127.0.0.1:8080", &mut next),
                    target("https://staging.example:8443/base", &mut next),
                ],
            },
            middleware: MiddlewareStats {
                offered: next(),
                sent: next(),
                dropped_queue_full: next(),
                queued: next(),
                queued_bytes: next(),
                returned: next(),
                invalid_lines: next(),
                starts: next(),
                restarts: next(),
                spawn_errors: next(),
                lost_in_restart: next(),
                dropped_at_shutdown: next(),
                stderr_lines: next(),
            },
            refused: next(),
            unknown: next(),
            filters: FilterStats {
                passed: next(),
                dropped_by_rule: DroppedByRule {
                    allow_url: next(),
                    disallow_url: next(),
                    allow_method: next(),
                    allow_header: next(),
                    disallow_header: next(),
                    header_limiter: next(),
                    param_limiter: next(),
                    basic_auth: next(),
                },
                rewritten: next(),
                dropped_responses: next(),
                limiter_missing: next(),
                rewrite_errors: next(),
                prettified: next(),
                prettify_errors: next(),
            },
            output_errors: next(),
            file: FileStats {
                records_written: next(),
                bytes_written: next(),
                files_opened: next(),
                write_errors: next(),
                records_dropped: next(),
                records_over_max_size: next(),
            },
            input: InputStats {
                records: next(),
                requests: next(),
                responses: next(),
                staging_responses: next(),
                invalid: next(),
                damaged: next(),
                passes: next(),
            },
            publish: crate::broker::publish::PublishStats {
                queued: next(),
                published: next(),
                duplicates: next(),
                retries: next(),
                dropped_queue_full: next(),
                too_large: next(),
                failed: next(),
                pending: next(),
                connected: next(),
            },
            consume: crate::broker::stats::ConsumeStats {
                received: next(),
                redelivered: next(),
                redelivered_sent: next(),
                duplicates_skipped: next(),
                decode_errors: next(),
                acked_sent: next(),
                acked_dropped: next(),
                nacked: next(),
                unsettled: next(),
                ack_errors: next(),
                late_answers: next(),
                inflight: next(),
                partitions_owned: next(),
                fetch_errors: next(),
            },
            tls: TlsReport {
                libraries: vec!["/usr/lib/x86_64-linux-gnu/libssl.so.3".into()],
                records: next(),
                decode_errors: next(),
                open_connections: next() as usize,
                streams: crate::tls_streams::TlsStreamStats {
                    connections_opened: next(),
                    connections_midstream: next(),
                    connections_closed: next(),
                    connections_replaced: next(),
                    connections_idle: next(),
                    connections_evicted: next(),
                    gaps: next(),
                    gap_bytes: next(),
                    late_records: next(),
                },
            },
            tcp_output: crate::goreplay_tcp::stats::TcpOutputStats {
                queued: next(),
                sent: next(),
                bytes_sent: next(),
                dropped_queue_full: next(),
                reconnects: next(),
                connect_errors: next(),
                pending: next(),
                connected: next(),
            },
            tcp_input: crate::goreplay_tcp::stats::TcpInputStats {
                connections: next(),
                open_connections: next(),
                bytes: next(),
                messages: next(),
                requests: next(),
                responses: next(),
                staging_responses: next(),
                invalid: next(),
                malformed: next(),
                connection_errors: next(),
            },
            compare: CompareReport {
                outcomes: outcomes(&mut next),
                endpoints: vec![EndpointReport {
                    endpoint: "GET /users/{n}".into(),
                    target: "http://127.0.0.1:8080".into(),
                    outcomes: outcomes(&mut next),
                    production_latency: latency(&mut next),
                    staging_latency: latency(&mut next),
                }],
                pending: next() as usize,
                pending_bytes: next() as usize,
                not_mirrored: next(),
                late: next(),
                diffs: Some(DiffsStats {
                    written: next(),
                    not_written: next(),
                    errors: next(),
                }),
            },
        }
    }

    impl Report {
        /// A report with every section present and every figure distinct and non-zero
        /// (see [`Parts`]): what the catalog is checked against.
        pub(crate) fn example() -> Report {
            let p = parts();
            Report {
                kernel: Some(KernelReport::Counters(p.kernel)),
                records: Some(RecordsReport {
                    received: p.records,
                    decode_errors: p.decode_errors,
                }),
                reassembly: p.reassembly,
                http: p.http,
                open_connections: p.open_connections,
                buffered_bytes: p.buffered_bytes,
                mirror: Some(p.mirror.into()),
                middleware: Some(MiddlewareReport {
                    stats: p.middleware,
                    refused: p.refused,
                    unknown: p.unknown,
                }),
                filters: p.filters,
                outputs: OutputsReport {
                    errors: p.output_errors,
                    file: Some(p.file),
                },
                input: Some(p.input),
                compare: Some(p.compare),
                nats_publish: Some(p.publish),
                nats_consume: Some(p.consume),
                tls: Some(p.tls),
                tcp_output: Some(p.tcp_output),
                tcp_input: Some(p.tcp_input),
            }
        }
    }

    /// The report as it was built before it had types (`serde_json::Value` set key by key
    /// in dispatch, the pipeline and the sources), kept here to prove the JSON unchanged.
    fn untyped(p: &Parts) -> Value {
        // dispatch.rs: replay_json, Back::report, report_with.
        let r = &p.mirror;
        let mut replay = serde_json::to_value(&r.total).unwrap();
        replay["submitted"] = r.submitted.into();
        replay["sampled_out"] = r.sampled_out.into();
        replay["latency_p50_us"] = r.total.latency.p50_us.into();
        replay["latency_p90_us"] = r.total.latency.p90_us.into();
        replay["latency_p99_us"] = r.total.latency.p99_us.into();
        replay["targets"] = serde_json::to_value(&r.targets).unwrap();
        let mut middleware = serde_json::to_value(&p.middleware).unwrap();
        middleware["refused"] = p.refused.into();
        middleware["unknown"] = p.unknown.into();
        let mut outputs = json!({"errors": 0});
        outputs["file"] = json!(p.file);
        let mut v = json!({
            "mirror": Some(replay),
            "middleware": Some(middleware),
            "filters": p.filters,
            "outputs": outputs,
        });
        // pipeline.rs: add_framing.
        v["reassembly"] = json!(p.reassembly);
        v["http"] = json!(p.http);
        v["open_connections"] = p.open_connections.into();
        v["buffered_bytes"] = p.buffered_bytes.into();
        v["outputs"]["errors"] = p.output_errors.into();
        // source/live.rs (KernelCounters::to_json) and playback.
        v["kernel"] = counter::NAMES
            .iter()
            .zip(p.kernel.0)
            .map(|(n, v)| (n.to_string(), Value::from(v)))
            .collect();
        v["records"] = json!({"received": p.records, "decode_errors": p.decode_errors});
        v["input"] = json!(p.input);
        v
    }

    /// The example without the sections newer than the JSON built by hand.
    fn example_of_before() -> Report {
        Report {
            compare: None,
            nats_publish: None,
            nats_consume: None,
            tls: None,
            tcp_output: None,
            tcp_input: None,
            ..Report::example()
        }
    }

    #[test]
    fn the_json_is_the_one_built_by_hand_before() {
        let p = parts();
        let before = untyped(&p);
        let report = example_of_before();
        assert_eq!(report.to_json(), before);
        // The stats file's text too (keys sorted, as before).
        assert_eq!(report.to_json().to_string(), before.to_string());

        // A pcap file: its reader's counters under `kernel.pcap`, zero records.
        let pcap = PcapStats {
            frames: 1,
            segments: 2,
            skipped_not_tcp: 3,
            skipped_other_port: 4,
            fragments: 5,
            truncated: 6,
            malformed: 7,
        };
        let mut file = example_of_before();
        file.kernel = Some(KernelReport::Pcap { pcap: pcap.clone() });
        file.records = Some(RecordsReport::default());
        let mut expected = before.clone();
        expected["kernel"] = json!({"pcap": pcap});
        expected["records"] = json!({"received": 0, "decode_errors": 0});
        assert_eq!(file.to_json(), expected);

        // Unreadable kernel counters.
        file.kernel = Some(KernelReport::Unavailable {
            error: "map gone".into(),
        });
        expected["kernel"] = json!({"error": "map gone"});
        assert_eq!(file.to_json(), expected);

        // Saved traffic without mirroring, middleware or file: no kernel, no records,
        // `null` for the stages not configured.
        let mut replay = example_of_before();
        replay.kernel = None;
        replay.records = None;
        replay.mirror = None;
        replay.middleware = None;
        replay.outputs.file = None;
        let mut expected = before;
        let o = expected.as_object_mut().unwrap();
        o.remove("kernel");
        o.remove("records");
        o["mirror"] = Value::Null;
        o["middleware"] = Value::Null;
        o["outputs"].as_object_mut().unwrap().remove("file");
        assert_eq!(replay.to_json(), expected);
    }

    /// Every `null` in `v` (an `Option` left `None`), by pointer.
    fn nulls(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(at.to_string()),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| nulls(x, &format!("{at}/{i}"), out)),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, x)| nulls(x, &format!("{at}/{k}"), out)),
            _ => {}
        }
    }

    /// The test the catalog depends on: a series whose pointer the report does not have
    /// (a field renamed or moved) would be silently left out of every scrape.
    #[test]
    fn every_catalog_series_is_a_number_in_a_full_report() {
        let v = Report::example().to_json();
        let mut missing = Vec::new();
        nulls(&v, "", &mut missing);
        assert!(missing.is_empty(), "the example leaves out {missing:?}");
        let targets = v["mirror"]["targets"].as_array().map_or(0, Vec::len);
        assert!(targets >= 1, "the example has no target");
        let mut unresolved = Vec::new();
        for f in FAMILIES {
            let pointers: Vec<String> = match f.scope {
                Scope::Report => f.samples.iter().map(|s| s.path.to_string()).collect(),
                Scope::PerTarget => (0..targets)
                    .flat_map(|i| {
                        f.samples
                            .iter()
                            .map(move |s| format!("/mirror/targets/{i}{}", s.path))
                    })
                    .collect(),
                Scope::PerEndpoint => f
                    .samples
                    .iter()
                    .map(|s| format!("/compare/endpoints/0{}", s.path))
                    .collect(),
            };
            for p in pointers {
                if v.pointer(&p).and_then(Value::as_u64).is_none() {
                    unresolved.push(format!("{}: {p}", f.name));
                }
            }
        }
        assert!(
            unresolved.is_empty(),
            "catalog series not in the report: {unresolved:#?}"
        );
        // And each family is rendered.
        let m = super::super::Metrics::default();
        m.publish(Report::example(), Default::default());
        let out = m.render();
        for f in FAMILIES {
            assert!(
                out.lines().any(|l| l.starts_with(f.name)),
                "{} not rendered",
                f.name
            );
        }
    }
}
