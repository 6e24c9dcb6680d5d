//! Saved traffic: live capture written in GoReplay's file format (gzip, a time placeholder
//! in the name, responses tracked), read back here by the format's own rules (meta line,
//! payload, separator) and compared with the messages the agent framed.

use std::{io::Read, os::unix::fs::PermissionsExt};

use gor_tests::{
    agent::{temp_dir, Agent},
    gorformat::records,
    traffic::{listen, Client, Server},
};

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
    let requests: Vec<&Vec<u8>> = recs
        .iter()
        .filter(|r| r.kind == 1)
        .map(|r| &r.payload)
        .collect();
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
    let responses: Vec<_> = recs.iter().filter(|r| r.kind == 2).collect();
    assert_eq!(responses.len(), 30);
    for (req, resp) in recs.iter().filter(|r| r.kind == 1).zip(&responses) {
        assert_eq!(req.id, resp.id, "a request and its response share the id");
    }
    assert_eq!(
        responses
            .iter()
            .map(|r| r.payload.clone())
            .collect::<Vec<_>>()
            .concat(),
        client.received
    );
}
