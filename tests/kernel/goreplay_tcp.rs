//! GoReplay's distributed form (`--output-tcp` on the listeners, `--input-tcp` on the
//! replay server), run with GoReplay's own command lines from its documentation, changed
//! only in addresses and ports; and each end against bytes exactly as GoReplay 1.3's
//! other end writes or reads them (no GoReplay binary exists here: its `output_tcp.go`
//! and `input_tcp.go` are reproduced in the test).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gor_tests::{
    agent::{counter, temp_dir, Agent},
    clients::curl,
    nginx::Nginx,
    staging::{read_request, with_host, Staging},
    traffic::{free_port, listen},
};

const MONKEYS: &str = "\u{1F435}\u{1F648}\u{1F649}";

/// The requests in a byte stream (curl's trace of one connection), one by one.
fn split_requests(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let req = read_request(&mut bytes).expect("a whole request");
        out.push(req);
    }
    out
}

/// Requests to nginx with curl on one connection, some with bodies; one body holds
/// GoReplay's separator (which GoReplay 1.3's own reader would cut the message at).
fn send_requests(dir: &Path, nginx: &Nginx) -> Vec<Vec<u8>> {
    let body = dir.join("body.bin");
    std::fs::write(&body, format!("line one\n{MONKEYS}\n1 abc 1 0\nend")).unwrap();
    let url = |p: &str| format!("http://{}{p}", nginx.addr);
    let data = format!("@{}", body.display());
    let (_, sent) = curl(
        dir,
        "requests",
        &[
            url("/").as_str(),
            url("/a?x=1").as_str(),
            "-H",
            "X-Test: 1",
            url("/b").as_str(),
            "--next",
            "--data-binary",
            data.as_str(),
            url("/upload").as_str(),
        ],
    );
    let reqs = split_requests(&sent);
    assert_eq!(
        reqs.len(),
        4,
        "curl sent {}",
        String::from_utf8_lossy(&sent)
    );
    reqs
}

/// Staging received exactly `sent` (in any order: the listener spreads messages over
/// its connections), byte for byte apart from Host.
fn assert_received(staging: &Staging, sent: &[Vec<u8>], what: &str) {
    let got = staging.wait_for(sent.len(), Duration::from_secs(30));
    let mut got: Vec<Vec<u8>> = got.into_iter().map(|r| r.raw).collect();
    let host = staging.addr.to_string();
    let mut want: Vec<Vec<u8>> = sent.iter().map(|r| with_host(r, &host)).collect();
    got.sort();
    want.sort();
    assert_eq!(
        got.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>(),
        want.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>(),
        "{what}"
    );
}

// GoReplay's docs/Distributed-configuration.md:
//   "sudo gor --input-raw :80 --output-tcp replay.local:28020"
//   "gor --input-tcp replay.local:28020 --output-http http://staging.com"
#[test]
fn distributed_configuration_listener_feeds_a_replay_server() {
    let dir = temp_dir("gtcp-plain");
    let nginx = Nginx::start(dir.join("nginx"));
    let staging = Staging::start(listen("127.0.0.1"));
    let relay = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{}", staging.addr);
    let env = [("GOR_STATS_INTERVAL", "1s")];
    let replay = Agent::start_args(
        "gtcp-plain-replay",
        &["--input-tcp", &relay, "--output-http", &target],
        &env,
    );
    let raw = format!("127.0.0.1:{}", nginx.addr.port());
    let listener = Agent::start_args(
        "gtcp-plain-listener",
        &["--input-raw", &raw, "--output-tcp", &relay],
        &env,
    );
    let sent = send_requests(&dir, &nginx);
    assert_received(&staging, &sent, "GoReplay's distributed configuration");
    let l = listener.stop();
    let r = replay.stop();
    assert_eq!(counter(&l.stats, &["tcp_output", "sent"]), 4, "{}", l.stats);
    assert_eq!(counter(&l.stats, &["tcp_output", "dropped_queue_full"]), 0);
    assert_eq!(
        counter(&r.stats, &["tcp_input", "requests"]),
        4,
        "{}",
        r.stats
    );
    assert_eq!(
        counter(&r.stats, &["tcp_input", "malformed"]),
        0,
        "{}",
        r.stats
    );
    assert_eq!(staging.received().len(), 4, "nothing more, nothing twice");
}

// GoReplay's docs/Distributed-configuration.md, "Encryption":
//   "--input-tcp :28020 --input-tcp-secure --input-tcp-certificate ./cert.pem
//    --input-certificate ./key.pem" (the last flag is the doc's typo for
//    --input-tcp-certificate-key, the flag GoReplay 1.3 has), and "enable
//    `--output-tcp-secure` flag for the GoReplay clients, connecting to it. Use
//    `--output-tcp-skip-verify` to ignore TLS verification."
#[test]
fn distributed_configuration_over_tls() {
    let dir = temp_dir("gtcp-tls");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let nginx = Nginx::start(dir.join("nginx"));
    let staging = Staging::start(listen("127.0.0.1"));
    let port = free_port();
    let target = format!("http://{}", staging.addr);
    let env = [("GOR_STATS_INTERVAL", "1s")];
    let replay = Agent::start_args(
        "gtcp-tls-replay",
        &[
            "--input-tcp",
            &format!("127.0.0.1:{port}"),
            "--input-tcp-secure",
            "--input-tcp-certificate",
            cert.to_str().unwrap(),
            "--input-tcp-certificate-key",
            key.to_str().unwrap(),
            "--output-http",
            &target,
        ],
        &env,
    );
    let raw = format!("127.0.0.1:{}", nginx.addr.port());
    // Verification skipped, as the doc's line says.
    let listener = Agent::start_args(
        "gtcp-tls-listener",
        &[
            "--input-raw",
            &raw,
            "--output-tcp",
            &format!("127.0.0.1:{port}"),
            "--output-tcp-secure",
            "--output-tcp-skip-verify",
        ],
        &env,
    );
    let sent = send_requests(&dir, &nginx);
    assert_received(&staging, &sent, "over TLS, verification skipped");
    let l = listener.stop();
    assert_eq!(counter(&l.stats, &["tcp_output", "sent"]), 4, "{}", l.stats);
    // Verified: against the certificate given as gor's GOR_TLS_CA, by name.
    let cert_path = cert.to_str().unwrap();
    let listener = Agent::start_args(
        "gtcp-tls-listener-verified",
        &[
            "--input-raw",
            &raw,
            "--output-tcp",
            &format!("localhost:{port}"),
            "--output-tcp-secure",
        ],
        &[("GOR_STATS_INTERVAL", "1s"), ("GOR_TLS_CA", cert_path)],
    );
    let again = send_requests(&dir, &nginx);
    let all: Vec<Vec<u8>> = sent.iter().chain(&again).cloned().collect();
    assert_received(&staging, &all, "over TLS, verified");
    let l = listener.stop();
    assert_eq!(counter(&l.stats, &["tcp_output", "sent"]), 4, "{}", l.stats);
    let r = replay.stop();
    assert_eq!(
        counter(&r.stats, &["tcp_input", "requests"]),
        8,
        "{}",
        r.stats
    );
    assert_eq!(
        counter(&r.stats, &["tcp_input", "connection_errors"]),
        0,
        "{}",
        r.stats
    );
}

/// One message as GoReplay 1.3's `output_tcp.go` writes it: `conn.Write(msg.Meta)`,
/// `conn.Write(msg.Data)`, `conn.Write(payloadSeparatorAsBytes)`, each its own write.
fn goreplay_writes(s: &mut TcpStream, kind: u8, id: &str, ts: u64, latency: u64, data: &[u8]) {
    let meta = format!("{} {id} {ts} {latency}\n", kind as char);
    s.write_all(meta.as_bytes()).unwrap();
    s.flush().unwrap();
    s.write_all(data).unwrap();
    s.flush().unwrap();
    s.write_all(format!("\n{MONKEYS}\n").as_bytes()).unwrap();
    s.flush().unwrap();
}

/// GoReplay 1.3's `--output-tcp` into gor's `--input-tcp`: requests with GoReplay's ids
/// (24 hex digits) on several connections, an original response (not mirrored), a
/// replayed response (skipped), and garbage between messages (skipped and counted).
#[test]
fn bytes_as_goreplay_output_tcp_writes_them_reach_staging() {
    let staging = Staging::start(listen("127.0.0.1"));
    let relay = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{}", staging.addr);
    let replay = Agent::start_args(
        "gtcp-fixture-replay",
        &["--input-tcp", &relay, "--output-http", &target],
        &[("GOR_STATS_INTERVAL", "1s")],
    );
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let reqs: Vec<Vec<u8>> = vec![
        b"GET /one HTTP/1.1\r\nHost: prod.example\r\nUser-Agent: x\r\n\r\n".to_vec(),
        b"POST /two HTTP/1.1\r\nHost: prod.example\r\nContent-Length: 7\r\n\r\n\x00\x01\x02abcd".to_vec(),
        b"PUT /three HTTP/1.1\r\nHost: prod.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
        b"GET /four HTTP/1.1\r\nhost: prod.example\r\n\r\n".to_vec(),
    ];
    // Two of GoReplay's worker connections.
    let mut a = TcpStream::connect(&relay).unwrap();
    let mut b = TcpStream::connect(&relay).unwrap();
    goreplay_writes(&mut a, b'1', "a1b2c3d4e5f6a7b8c9d0e1f2", ts, 0, &reqs[0]);
    goreplay_writes(
        &mut a,
        b'2',
        "a1b2c3d4e5f6a7b8c9d0e1f2",
        ts + 5,
        1_000_000,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    goreplay_writes(
        &mut b,
        b'1',
        "b1b2c3d4e5f6a7b8c9d0e1f2",
        ts + 1,
        0,
        &reqs[1],
    );
    // Not GoReplay's: garbage up to a separator.
    b.write_all(format!("this is not a message\n{MONKEYS}\n").as_bytes())
        .unwrap();
    goreplay_writes(
        &mut b,
        b'3',
        "b1b2c3d4e5f6a7b8c9d0e1f2",
        ts + 2,
        2_000_000,
        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
    );
    goreplay_writes(
        &mut a,
        b'1',
        "c1b2c3d4e5f6a7b8c9d0e1f2",
        ts + 3,
        0,
        &reqs[2],
    );
    goreplay_writes(
        &mut b,
        b'1',
        "d1b2c3d4e5f6a7b8c9d0e1f2",
        ts + 4,
        0,
        &reqs[3],
    );
    drop(a);
    drop(b);
    assert_received(&staging, &reqs, "GoReplay's output_tcp bytes");
    let r = replay.stop();
    let c = |k| counter(&r.stats, &["tcp_input", k]);
    assert_eq!(
        (
            c("requests"),
            c("responses"),
            c("staging_responses"),
            c("malformed")
        ),
        (4, 1, 1, 1),
        "{}",
        r.stats
    );
    assert_eq!(c("connections"), 2);
    assert_eq!(staging.received().len(), 4);
}

/// GoReplay 1.3's `input_tcp.go` reading one connection: lines up to `\n`; a line that
/// is the monkeys ends the message, less the `\n` before them; the meta is what comes
/// before the first `\n` of the message (`payloadMetaWithBody`).
fn goreplay_reads(stream: &[u8]) -> Vec<(String, Vec<u8>)> {
    let separator_line = format!("{MONKEYS}\n");
    let mut out = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    for line in stream.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            break; // ReadBytes hit EOF: the partial line is dropped.
        }
        if line == separator_line.as_bytes() {
            buffer.pop();
            let nl = buffer
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(buffer.len());
            let meta = String::from_utf8_lossy(&buffer[..nl]).into_owned();
            let data = buffer.get(nl + 1..).unwrap_or_default().to_vec();
            out.push((meta, data));
            buffer.clear();
        } else {
            buffer.extend_from_slice(line);
        }
    }
    out
}

/// gor's `--output-tcp` into GoReplay 1.3's `--input-tcp`: every captured request, as
/// GoReplay's reader takes it apart, with a meta line GoReplay reads (type 1, an id,
/// a wall-clock timestamp in nanoseconds, latency 0), over the 10 connections of
/// GoReplay's default `--output-tcp-workers`.
#[test]
fn gor_output_tcp_bytes_read_as_goreplay_input_tcp_reads_them() {
    let dir = temp_dir("gtcp-to-goreplay");
    let nginx = Nginx::start(dir.join("nginx"));
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap().to_string();
    let readers = std::thread::spawn(move || {
        let mut threads = Vec::new();
        for _ in 0..10 {
            let (mut s, _) = relay.accept().unwrap();
            threads.push(std::thread::spawn(move || {
                let mut bytes = Vec::new();
                s.read_to_end(&mut bytes).unwrap();
                bytes
            }));
        }
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    let raw = format!("127.0.0.1:{}", nginx.addr.port());
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let listener = Agent::start_args(
        "gtcp-to-goreplay-listener",
        &["--input-raw", &raw, "--output-tcp", &relay_addr],
        &[("GOR_STATS_INTERVAL", "1s")],
    );
    let url = |p: &str| format!("http://{}{p}", nginx.addr);
    let (_, sent) = curl(
        &dir,
        "requests",
        &[
            url("/x").as_str(),
            url("/y?q=2").as_str(),
            "--next",
            "--data-binary",
            "field=value&other=1",
            url("/form").as_str(),
        ],
    );
    let sent = split_requests(&sent);
    assert_eq!(sent.len(), 3);
    // Every request written before the listener stops (its connections then close).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while counter(&listener.stats_now(), &["tcp_output", "sent"]) < 3
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let l = listener.stop();
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let streams = readers.join().unwrap();
    let mut got: Vec<(String, Vec<u8>)> = streams.iter().flat_map(|s| goreplay_reads(s)).collect();
    // Nothing but whole messages on the wire: each stream ends with a separator.
    for s in &streams {
        assert!(s.is_empty() || s.ends_with(format!("\n{MONKEYS}\n").as_bytes()));
    }
    assert_eq!(got.len(), 3, "{}", l.stats);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let mut want = sent.clone();
    want.sort();
    for ((meta, data), req) in got.iter().zip(&want) {
        assert_eq!(
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(req),
            "the payload is the request as the client sent it"
        );
        let fields: Vec<&str> = meta.split(' ').collect();
        assert_eq!(fields.len(), 4, "{meta}");
        assert_eq!(fields[0], "1", "{meta}");
        assert!(
            !fields[1].is_empty() && fields[1].bytes().all(|b| b.is_ascii_hexdigit()),
            "{meta}"
        );
        let ts: u64 = fields[2].parse().unwrap();
        assert!(
            ts >= before - 1_000_000_000 && ts <= after,
            "{meta}: {before}..{after}"
        );
        assert_eq!(fields[3], "0", "{meta}");
    }
}
