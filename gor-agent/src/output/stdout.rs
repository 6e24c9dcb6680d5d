//! `--output-stdout`: each connection's bytes as they become ordered, for a person to read.
//! Printable ASCII is shown as is, line ends are kept, everything else is escaped (`\x00`).

use std::{
    collections::HashMap,
    io::{self, Write},
};

use super::StreamOutput;
use crate::stream::{ConnId, Flow, StreamEvent};

pub struct StdoutStreams<W: Write> {
    out: W,
    flows: HashMap<ConnId, Flow>,
}

impl StdoutStreams<io::Stdout> {
    pub fn new() -> Self {
        StdoutStreams {
            out: io::stdout(),
            flows: HashMap::new(),
        }
    }
}

impl Default for StdoutStreams<io::Stdout> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Write> StdoutStreams<W> {
    pub fn with_writer(out: W) -> Self {
        StdoutStreams {
            out,
            flows: HashMap::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Escapes bytes for a terminal, keeping line breaks.
pub fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'\n' => out.extend_from_slice(b"\\n\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b'\t'),
            0x20..=0x7e if b != b'\\' => out.push(b),
            _ => out.extend(std::ascii::escape_default(b)),
        }
    }
}

impl<W: Write + Send> StreamOutput for StdoutStreams<W> {
    fn event(&mut self, ev: &StreamEvent) -> io::Result<()> {
        let mut buf = Vec::new();
        match ev {
            StreamEvent::Open {
                conn,
                flow,
                midstream,
                ..
            } => {
                self.flows.insert(*conn, *flow);
                let mid = if *midstream {
                    " (mid-stream: started before it was seen)"
                } else {
                    ""
                };
                writeln!(buf, "[conn {conn}] open {flow}{mid}")?;
            }
            StreamEvent::Data {
                conn,
                dir,
                offset,
                bytes,
                ..
            } => {
                writeln!(
                    buf,
                    "[conn {conn}] {} @{offset} {} bytes",
                    dir.short(),
                    bytes.len()
                )?;
                escape(bytes, &mut buf);
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
            }
            StreamEvent::Gap {
                conn,
                dir,
                offset,
                len,
                ..
            } => {
                writeln!(
                    buf,
                    "[conn {conn}] {} @{offset} GAP: {len} bytes were not captured",
                    dir.short()
                )?;
            }
            // Not met here: the agent snaps responses only when no stream output runs.
            StreamEvent::Skipped {
                conn,
                dir,
                offset,
                len,
                ..
            } => {
                writeln!(
                    buf,
                    "[conn {conn}] {} @{offset} SKIPPED: {len} bytes left out by the response snap",
                    dir.short()
                )?;
            }
            StreamEvent::End {
                conn, dir, reason, ..
            } => {
                writeln!(
                    buf,
                    "[conn {conn}] {} end ({})",
                    dir.short(),
                    reason.as_str()
                )?;
            }
            StreamEvent::Close { conn, .. } => {
                self.flows.remove(conn);
                writeln!(buf, "[conn {conn}] close")?;
            }
        }
        self.out.write_all(&buf)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::stream::Direction;

    #[test]
    fn shows_bytes_escaped_with_line_breaks() {
        let mut o = StdoutStreams::with_writer(Vec::new());
        let flow = Flow {
            client: "127.0.0.1:5000".parse().unwrap(),
            server: "127.0.0.1:80".parse().unwrap(),
        };
        o.event(&StreamEvent::Open {
            conn: 1,
            flow,
            ts_ns: 0,
            midstream: false,
        })
        .unwrap();
        let bytes = Bytes::from_static(b"GET / HTTP/1.1\r\n\x00\r\n");
        o.event(&StreamEvent::Data {
            conn: 1,
            dir: Direction::ClientToServer,
            offset: 0,
            ts_ns: 0,
            bytes,
        })
        .unwrap();
        let text = String::from_utf8(o.into_inner()).unwrap();
        assert_eq!(text, "[conn 1] open 127.0.0.1:5000 -> 127.0.0.1:80\n[conn 1] c2s @0 19 bytes\nGET / HTTP/1.1\\r\\n\n\\x00\\r\\n\n");
    }
}
