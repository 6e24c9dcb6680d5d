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

use crate::gorfile::Record;
use crate::http::{HttpMessage, Kind};

/// A consumer of framed HTTP messages.
pub trait MessageOutput: Send {
    fn message(&mut self, msg: &HttpMessage) -> io::Result<()>;
    /// Staging's response to a mirrored request, as GoReplay's type 3 record
    /// (`GOR_TRACK_STAGING_RESPONSES`); outputs without a form for it ignore it.
    fn replayed(&mut self, _rec: &Record) -> io::Result<()> {
        Ok(())
    }
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

    /// A `staging_response` line: the response's fields as for a captured one, its
    /// latency and the time its request was written to staging.
    fn replayed(&mut self, rec: &Record) -> io::Result<()> {
        let msg = rec
            .to_message()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut v = to_json(&msg);
        v["type"] = "staging_response".into();
        v["clock"] = "realtime".into();
        v["sent_ts_ns"] = rec.timestamp_ns.into();
        writeln!(self.out, "{v}")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
