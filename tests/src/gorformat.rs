//! GoReplay's file format, written here from its description and independent of the
//! agent's code: hand-made records (as GoReplay writes them) and a reader that splits a
//! file the way GoReplay does (meta line, payload, separator).

/// What ends every record.
pub const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// One record: `"<type> <id> <timestamp_ns> <latency_ns>\n"`, the payload, the separator.
pub fn record(kind: u8, id: &str, ts_ns: u64, latency_ns: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{kind} {id} {ts_ns} {latency_ns}\n").into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(SEPARATOR);
    out
}

/// The request [`write_gets`] records for `path`.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: prod.example\r\n\r\n").into_bytes()
}

/// Writes a GoReplay file of GET requests for `paths`, `gap_ms` apart, ids 1, 2, ...
pub fn write_gets(path: &std::path::Path, paths: impl IntoIterator<Item = String>, gap_ms: u64) {
    let t0 = 1_764_000_000_000_000_000u64;
    let mut file = Vec::new();
    for (i, p) in paths.into_iter().enumerate() {
        let ts = t0 + i as u64 * gap_ms * 1_000_000;
        file.extend(record(
            1,
            &format!("{:024x}", i + 1),
            ts,
            0,
            &get_request(&p),
        ));
    }
    std::fs::write(path, file).expect("write the file");
}

/// A record as read back: (type, id, timestamp, payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub kind: u8,
    pub id: String,
    pub ts_ns: u64,
    pub payload: Vec<u8>,
}

/// Every record of a file, split by GoReplay's rules: the payload ends at the first
/// separator. Panics on anything else (the files under test must be valid).
pub fn records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').expect("a meta line");
        let meta = String::from_utf8_lossy(&rest[..nl]).to_string();
        let fields: Vec<&str> = meta.split(' ').collect();
        assert_eq!(fields.len(), 4, "meta line {meta:?}");
        let body = &rest[nl + 1..];
        let end = body
            .windows(SEPARATOR.len())
            .position(|w| w == SEPARATOR)
            .expect("a separator");
        out.push(Rec {
            kind: fields[0].parse().expect("type"),
            id: fields[1].to_string(),
            ts_ns: fields[2].parse().expect("timestamp"),
            payload: body[..end].to_vec(),
        });
        rest = &body[end + SEPARATOR.len()..];
    }
    out
}
