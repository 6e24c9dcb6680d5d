//! `--output-messages FILE`: every framed HTTP message as one JSON line: its id (a request
//! and its response share it), connection, addresses, direction, capture timestamps,
//! latency (responses), the parsed start line and headers, and the exact wire bytes in
//! base64; with `GOR_TRACK_STAGING_RESPONSES`, staging's responses too (type
//! `staging_response`). For tools and tests that want whole messages rather than streams.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use base64::Engine;
use serde_json::json;

use bytes::Bytes;

use crate::http::{parse_whole, unknown_flow, HttpMessage, Kind};
use crate::stream::Direction;

/// A consumer of framed HTTP messages.
pub trait MessageOutput: Send {
    fn message(&mut self, msg: &HttpMessage) -> io::Result<()>;
    /// Staging's response to a mirrored request, GoReplay's type 3 record
    /// (`GOR_TRACK_STAGING_RESPONSES`); outputs without a form for it ignore it.
    fn replayed(&mut self, _r: &Replayed) -> io::Result<()> {
        Ok(())
    }
    /// Called about once a second, for outputs that batch (to bound how long a message waits).
    fn tick(&mut self) {}
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Staging's response to a mirrored request, as a type 3 record holds it.
pub struct Replayed<'a> {
    /// The request's id, as written.
    pub id: &'a str,
    /// When the request was written to staging, wall clock.
    pub timestamp_ns: u64,
    pub latency_ns: u64,
    /// The response as received (its body up to the kept limit).
    pub payload: &'a Bytes,
}

pub struct MessagesFile {
    out: BufWriter<File>,
}

impl MessagesFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(MessagesFile {
            out: BufWriter::new(File::create(path)?),
        })
    }
}

/// The JSON form of a message.
pub fn to_json(m: &HttpMessage) -> serde_json::Value {
    let headers: Vec<_> = m
        .headers()
        .iter()
        .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
        .collect();
    let mut v = json!({
        "id": m.id,
        "conn": m.id.conn().map(|c| c.conn),
        "clock": m.clock,
        "client": m.flow.client.to_string(),
        "server": m.flow.server.to_string(),
        "first_ts_ns": m.first_ts_ns,
        "last_ts_ns": m.last_ts_ns,
        "headers": headers,
        "raw": base64::engine::general_purpose::STANDARD.encode(&m.raw),
    });
    match &m.kind {
        Kind::Request {
            method,
            target,
            version,
        } => {
            v["type"] = "request".into();
            v["method"] = method.as_str().into();
            v["target"] = target.as_str().into();
            v["version"] = format!("HTTP/1.{version}").into();
        }
        Kind::Response {
            status,
            reason,
            version,
        } => {
            v["type"] = "response".into();
            v["status"] = (*status).into();
            v["reason"] = reason.as_str().into();
            v["version"] = format!("HTTP/1.{version}").into();
            v["latency_ns"] = m.latency_ns.into();
        }
    }
    v
}

impl MessageOutput for MessagesFile {
    fn message(&mut self, msg: &HttpMessage) -> io::Result<()> {
        writeln!(self.out, "{}", to_json(msg))
    }

    /// A `staging_response` line: the response's fields as for a captured one, its
    /// latency and the time its request was written to staging.
    fn replayed(&mut self, r: &Replayed) -> io::Result<()> {
        let head = parse_whole(Direction::ServerToClient, r.payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let msg = HttpMessage {
            id: crate::envelope::MessageId::parse(r.id),
            clock: crate::clock::Clock::Realtime,
            flow: unknown_flow(),
            dir: Direction::ServerToClient,
            offset: 0,
            first_ts_ns: r.timestamp_ns,
            last_ts_ns: r.timestamp_ns.saturating_add(r.latency_ns),
            raw: r.payload.clone(),
            kind: head.kind,
            headers: head.headers,
            body_offset: head.body_offset,
            latency_ns: Some(r.latency_ns),
        };
        let mut v = to_json(&msg);
        v["type"] = "staging_response".into();
        writeln!(self.out, "{v}")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
