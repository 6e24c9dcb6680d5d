//! `--output-messages FILE`: every framed HTTP message as one JSON line: its id (a request
//! and its response share it), connection, addresses, direction, capture timestamps,
//! latency (responses), the parsed start line and headers, and the exact wire bytes in
//! base64. For tools and tests that want whole messages rather than streams.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use base64::Engine;
use serde_json::json;

use crate::http::{HttpMessage, Kind};

/// A consumer of framed HTTP messages.
pub trait MessageOutput: Send {
    fn message(&mut self, msg: &HttpMessage) -> io::Result<()>;
    /// Called about once a second, for outputs that batch (to bound how long a message waits).
    fn tick(&mut self) {}
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
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
        .headers
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

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
