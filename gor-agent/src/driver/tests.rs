//! The driver with a source of its own making that enters with ordered streams (the level
//! TLS plaintext will use): connection numbers come from the pipeline, framed messages
//! carry this run's origin and the source's clock, and the source's counters reach the
//! final report.

use bytes::Bytes;
use clap::Parser;
use serde_json::Value;

use super::*;
use crate::config::Cli;
use crate::envelope::{MessageId, Origin};
use crate::metrics::report::{RecordsReport, Report};
use crate::stream::{Direction, EndReason, Flow, StreamEvent};

/// One connection with one request and its response, delivered once.
struct OneConnection {
    delivered: bool,
    conn: Option<u64>,
}

impl Source for OneConnection {
    fn name(&self) -> &'static str {
        "test streams"
    }

    fn level(&self) -> Level {
        Level::Streams
    }

    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    async fn ready(&mut self) -> Result<Ready> {
        Ok(if self.delivered {
            Ready::Done
        } else {
            Ready::Input
        })
    }

    fn deliver(&mut self, pipeline: &mut Pipeline) {
        self.delivered = true;
        let conn = pipeline.open_conn();
        self.conn = Some(conn);
        let flow = Flow {
            client: "127.0.0.1:40000".parse().expect("addr"),
            server: "127.0.0.1:80".parse().expect("addr"),
        };
        let data = |dir, bytes: &'static [u8]| StreamEvent::Data {
            conn,
            dir,
            offset: 0,
            ts_ns: 5,
            bytes: Bytes::from_static(bytes),
        };
        let end = |dir| StreamEvent::End {
            conn,
            dir,
            ts_ns: 6,
            reason: EndReason::Fin,
        };
        for ev in [
            StreamEvent::Open {
                conn,
                flow,
                ts_ns: 5,
                midstream: false,
            },
            data(
                Direction::ClientToServer,
                b"GET /s HTTP/1.1\r\nHost: p\r\n\r\n",
            ),
            data(
                Direction::ServerToClient,
                b"HTTP/1.1 204 No Content\r\n\r\n",
            ),
            end(Direction::ClientToServer),
            end(Direction::ServerToClient),
            StreamEvent::Close { conn, ts_ns: 6 },
        ] {
            pipeline.stream(ev);
        }
        pipeline.flush();
    }

    fn stop(&mut self, _pipeline: &mut Pipeline) {}

    fn report(&self, report: &mut Report) {
        report.records = Some(RecordsReport {
            received: u64::from(self.conn.is_some()),
            decode_errors: 0,
        });
    }
}

#[tokio::test]
async fn a_stream_source_runs_under_the_driver_and_its_messages_carry_the_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let messages = dir.path().join("messages.jsonl");
    let stats = dir.path().join("stats.json");
    let cli = Cli::try_parse_from([
        "gor-agent",
        "--ports",
        "80",
        "--output-messages",
        messages.to_str().expect("utf8"),
        "--stats-file",
        stats.to_str().expect("utf8"),
    ])
    .expect("settings");
    let cfg = cli.validate().expect("valid settings");
    let origin = Origin(0x5eed);
    let source = OneConnection {
        delivered: false,
        conn: None,
    };
    let pipeline = Pipeline::new(&cfg, source.clock(), origin, None).expect("pipeline");
    Driver::offline(&cfg)
        .run(source, pipeline)
        .await
        .expect("the driver ends with the source");

    let lines: Vec<Value> = std::fs::read_to_string(&messages)
        .expect("messages written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "the request and its response: {lines:?}");
    let first = MessageId::framed(origin, 1, 1).to_string();
    for l in &lines {
        assert_eq!(
            l["id"],
            first.as_str(),
            "one id for the exchange, from the pipeline's first connection"
        );
        assert_eq!(
            (l["conn"].as_u64(), l["clock"].as_str()),
            (Some(1), Some("realtime"))
        );
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("final report")).expect("JSON");
    assert_eq!(
        report["records"]["received"], 1,
        "the source's own counters"
    );
    assert_eq!(report["http"]["requests"], 1);
    assert_eq!(report["http"]["responses"], 1);
}

/// A source that never has input, as a quiet port.
struct Quiet;

impl Source for Quiet {
    fn name(&self) -> &'static str {
        "quiet"
    }

    fn level(&self) -> Level {
        Level::Messages
    }

    fn clock(&self) -> Clock {
        Clock::Realtime
    }

    async fn ready(&mut self) -> Result<Ready> {
        std::future::pending().await
    }

    fn deliver(&mut self, _pipeline: &mut Pipeline) {}

    fn stop(&mut self, _pipeline: &mut Pipeline) {}

    fn report(&self, _report: &mut Report) {}
}

#[tokio::test(start_paused = true)]
async fn exit_after_stops_a_quiet_source_with_the_final_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = dir.path().join("stats.json");
    let cli = Cli::try_parse_from([
        "gor-agent",
        "--ports",
        "80",
        "--exit-after",
        "30s",
        "--stats-file",
        stats.to_str().expect("utf8"),
    ])
    .expect("settings");
    let cfg = cli.validate().expect("valid settings");
    assert_eq!(cfg.outputs.exit_after, Some(Duration::from_secs(30)));
    let pipeline = Pipeline::new(&cfg, Clock::Realtime, Origin(1), None).expect("pipeline");
    let started = tokio::time::Instant::now();
    Driver::offline(&cfg)
        .run(Quiet, pipeline)
        .await
        .expect("the driver stops at the deadline");
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(60));
    let report: Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("final report")).expect("JSON");
    assert_eq!(report["http"]["requests"], 0);
}
