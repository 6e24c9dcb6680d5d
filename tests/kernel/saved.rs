//! Saved traffic: live capture written in GoReplay's file format (gzip, a time placeholder
//! in the name, responses tracked), read back here by the format's own rules (meta line,
//! payload, separator) and compared with the messages the agent framed.

use std::{io::Read, os::unix::fs::PermissionsExt};

use gor_tests::{
    agent::{temp_dir, Agent},
    traffic::{listen, Client, Server},
};

const SEPARATOR: &[u8] = "\n🐵🙈🙉\n".as_bytes();

/// (type, id, payload) of every record, split by GoReplay's rules.
fn records(bytes: &[u8]) -> Vec<(u8, String, Vec<u8>)> {
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
        out.push((
            fields[0].parse().expect("type"),
            fields[1].to_string(),
            body[..end].to_vec(),
        ));
        rest = &body[end + SEPARATOR.len()..];
    }
    out
}

#[test]
fn live_capture_is_saved_in_goreplay_format() {
    let server = Server::start(listen("127.0.0.1"));
    let dir = temp_dir("saved");
    let pattern = dir.join("traffic-%Y-%m-%d-%H.gor.gz");
    let agent = Agent::start_with(
        "saved-agent",
        &[server.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_OUTPUT_FILE", pattern.to_str().expect("utf-8")),
            ("GOR_TRACK_RESPONSES", "1"),
        ],
    );
    let mut client = Client::connect(server.addr);
    for i in 0..30 {
        client.request(i, 2000, 5000);
    }
    let cap = agent.stop();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "one file for one hour: {files:?}");
    let name = files[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        name.starts_with("traffic-20") && name.ends_with(".gor.gz"),
        "placeholders expanded: {name}"
    );
    assert_eq!(
        std::fs::metadata(&files[0])
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&files[0]).expect("open"))
        .read_to_end(&mut plain)
        .expect("gunzip");
    let recs = records(&plain);
    let requests: Vec<&Vec<u8>> = recs.iter().filter(|r| r.0 == 1).map(|r| &r.2).collect();
    let framed: Vec<&Vec<u8>> = cap
        .messages
        .iter()
        .filter(|m| m.is_request)
        .map(|m| &m.raw)
        .collect();
    assert_eq!(requests.len(), 30);
    assert_eq!(
        requests, framed,
        "saved requests are the framed requests, in order"
    );
    let joined: Vec<u8> = requests.iter().flat_map(|r| r.iter().copied()).collect();
    assert_eq!(
        joined, client.sent,
        "and together exactly what the client sent"
    );
    let responses: Vec<&(u8, String, Vec<u8>)> = recs.iter().filter(|r| r.0 == 2).collect();
    assert_eq!(responses.len(), 30);
    for (req, resp) in recs.iter().filter(|r| r.0 == 1).zip(&responses) {
        assert_eq!(req.1, resp.1, "a request and its response share the id");
    }
    assert_eq!(
        responses
            .iter()
            .map(|r| r.2.clone())
            .collect::<Vec<_>>()
            .concat(),
        client.received
    );
}
