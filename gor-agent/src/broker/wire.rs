//! One HTTP message as one JetStream message.
//!
//! ```text
//! subject   gor.<partition>.<host>          partition: hash of the client connection
//! headers   Nats-Msg-Id: <id>-<type>        the same message published twice is stored once
//!           Gor-Client: 10.0.0.7:51234      the flow, so a replay server knows the client
//!           Gor-Server: 10.0.0.2:80
//! payload   1 <id> <wall-clock ns> <latency ns>\n<the HTTP message as on the wire>
//! ```
//!
//! The payload is the message in the form GoReplay hands to middleware (a `.gor` record
//! without its separator), so the bytes and the id survive exactly as they do through a
//! file. The partition is a pure function of the message's connection (its id's origin
//! and connection number, or a foreign id's text), the same on every host, so all the
//! messages of one client connection, requests and responses, land in one partition, in
//! the order they were published.

use std::net::SocketAddr;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::{
    clock::ToWall,
    envelope::MessageId,
    filters::sample::fnv1a32,
    gorfile::{self, Record, RecordType},
    http::HttpMessage,
    stream::Flow,
};

/// The header that carries the client's address.
pub const CLIENT: &str = "Gor-Client";
/// The header that carries the server's address.
pub const SERVER: &str = "Gor-Server";

/// The partition of a message's connection, in `0..partitions`: a mix of all the bits
/// of the connection's key (FNV-1a's low bits depend only on the inputs' low bits, so
/// `fnv % 16` would put the connections of one run in few partitions).
pub fn partition(id: &MessageId, partitions: u32) -> u32 {
    let h = match id {
        MessageId::Framed { conn, .. } => mix(conn.origin.0 ^ mix(conn.conn)),
        MessageId::Foreign(s) => mix(u64::from(fnv1a32(s.as_bytes()))),
    };
    (h % u64::from(partitions.max(1))) as u32
}

/// SplitMix64's finalizer: every input bit reaches every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The subject a message is published to: `<prefix>.<partition>.<host>`.
pub fn subject(prefix: &str, partition: u32, host: &str) -> String {
    format!("{prefix}.{partition}.{host}")
}

/// The subjects of one partition, from every host.
pub fn partition_filter(prefix: &str, partition: u32) -> String {
    format!("{prefix}.{partition}.>")
}

/// A host name as one subject token: what is not a letter, digit, `-` or `_` becomes `_`.
pub fn host_token(host: &str) -> String {
    let t: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if t.is_empty() {
        "host".into()
    } else {
        t
    }
}

/// A message ready to publish.
pub struct Outgoing {
    pub partition: u32,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl Outgoing {
    /// What the message weighs against the server's `max_payload` (which counts headers).
    pub fn size(&self) -> usize {
        self.payload.len() + self.msg_id.len() + 128
    }
}

/// Encodes a framed message; `to_wall` turns capture times into the wall clock.
pub fn encode(msg: &HttpMessage, to_wall: &ToWall, partitions: u32) -> Outgoing {
    let rec = Record::from_message(msg, to_wall.offset_ns(msg.clock));
    let mut payload = Vec::with_capacity(rec.payload.len() + 64);
    gorfile::encode_message(&rec, &mut payload);
    let msg_id = format!("{}-{}", rec.id, rec.kind.code() as char);
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
    if !msg.flow.client.ip().is_unspecified() || msg.flow.client.port() != 0 {
        headers.insert(CLIENT, msg.flow.client.to_string().as_str());
        headers.insert(SERVER, msg.flow.server.to_string().as_str());
    }
    Outgoing {
        partition: partition(&msg.id, partitions),
        msg_id,
        headers,
        payload: Bytes::from(payload),
    }
}

/// Why a stored message could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("no valid record line")]
    NoRecord,
    #[error("a type 3 record (staging's response) is nobody's input")]
    Replayed,
    #[error("not an HTTP message: {0}")]
    Http(String),
}

/// Reads a stored message back into the message that was published: the same bytes,
/// id, kind, wall-clock time and flow.
pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<HttpMessage, DecodeError> {
    let rec = gorfile::parse_message(payload).ok_or(DecodeError::NoRecord)?;
    if rec.kind == RecordType::ReplayedResponse {
        return Err(DecodeError::Replayed);
    }
    let mut msg = rec
        .to_message()
        .map_err(|e| DecodeError::Http(e.to_string()))?;
    if let Some(h) = headers {
        let addr = |name: &str| -> Option<SocketAddr> { h.get(name)?.as_str().parse().ok() };
        if let (Some(client), Some(server)) = (addr(CLIENT), addr(SERVER)) {
            msg.flow = Flow { client, server };
        }
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{ConnKey, Origin};
    use crate::http::Kind;

    fn request(conn: u64, seq: u64) -> HttpMessage {
        let raw =
            Bytes::from_static(b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        let id = MessageId::framed(Origin(0xfeed), conn, seq);
        let mut m = Record {
            kind: RecordType::Request,
            id: id.to_string(),
            timestamp_ns: 1_700_000_000_000_000_000,
            latency_ns: 0,
            payload: raw,
        }
        .to_message()
        .unwrap();
        m.flow = Flow {
            client: "10.1.2.3:40000".parse().unwrap(),
            server: "10.1.2.4:80".parse().unwrap(),
        };
        m
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        let m = request(7, 3);
        let out = encode(&m, &ToWall::measure(), 16);
        assert_eq!(out.msg_id, format!("{}-1", m.id));
        let back = decode(Some(&out.headers), out.payload).unwrap();
        assert_eq!(back.raw, m.raw);
        assert_eq!(back.id, m.id);
        assert_eq!(back.flow, m.flow);
        assert_eq!(back.first_ts_ns, m.first_ts_ns);
        assert!(matches!(back.kind, Kind::Request { .. }));
        assert_eq!(
            back.id.conn(),
            Some(ConnKey {
                origin: Origin(0xfeed),
                conn: 7
            })
        );
    }

    #[test]
    fn one_connection_is_one_partition() {
        let p = partition(&request(7, 1).id, 16);
        for seq in 2..50 {
            assert_eq!(partition(&request(7, seq).id, 16), p);
        }
        // One run's connections (one origin, numbered from 1) spread evenly.
        let mut per = [0u32; 16];
        for c in 1..=1600 {
            per[partition(&request(c, 1).id, 16) as usize] += 1;
        }
        assert!(per.iter().all(|n| (60..=140).contains(n)), "{per:?}");
        // And a few: 32 connections reach at least 12 of 16 partitions.
        let few: std::collections::HashSet<u32> =
            (1..=32).map(|c| partition(&request(c, 1).id, 16)).collect();
        assert!(few.len() >= 12, "{few:?}");
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert_eq!(
            decode(None, Bytes::from_static(b"garbage")).unwrap_err(),
            DecodeError::NoRecord
        );
        assert!(matches!(
            decode(None, Bytes::from_static(b"1 abc 1 0\nnot http\r\n\r\n")),
            Err(DecodeError::Http(_))
        ));
        assert_eq!(
            decode(
                None,
                Bytes::from_static(b"3 abc 1 0\nHTTP/1.1 200 OK\r\n\r\n")
            )
            .unwrap_err(),
            DecodeError::Replayed
        );
        assert_eq!(host_token("web-1.example.com"), "web-1_example_com");
    }
}
