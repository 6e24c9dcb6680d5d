//! Mirroring to an https staging target: production is a plain-HTTP recording server,
//! staging a TLS recording server whose self-signed certificate the agent trusts through
//! `GOR_TLS_CA`. Staging receives each request byte for byte, Host aside.

use std::{
    io::{BufReader, Write},
    net::TcpStream,
    time::Duration,
};

use gor_tests::{
    agent::{temp_dir, Agent},
    host::HostState,
    staging::Staging,
    tls_staging::TlsStaging,
    traffic::{listen, read_message},
};

#[test]
fn https_staging_receives_requests_byte_exact() {
    let host = HostState::snapshot();
    let prod = Staging::start(listen("127.0.0.1"));
    let staging = TlsStaging::start(&temp_dir("mirror-tls-ca"));
    let port = staging.addr.port();
    let target = format!("https://localhost:{port}");
    let ca = staging.ca_pem.to_str().expect("a UTF-8 path").to_string();
    let agent = Agent::start_with(
        "mirror-tls",
        &[prod.addr.port()],
        &["lo"],
        None,
        &[
            ("GOR_TARGET", target.as_str()),
            ("GOR_TLS_CA", ca.as_str()),
            ("GOR_STATS_INTERVAL", "1s"),
        ],
    );
    let reqs: [&[u8]; 3] = [
        b"GET /a?x=1 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n",
        b"POST /b HTTP/1.1\r\nhost: shop.example\r\nContent-Length: 5\r\n\r\nhello",
        b"PUT /c HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    let s = TcpStream::connect(prod.addr).expect("connect to production");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    for req in reqs {
        w.write_all(req).expect("send to production");
        read_message(&mut r).expect("production answered");
    }
    let got = staging.wait_for(reqs.len(), Duration::from_secs(10));
    let cap = agent.stop();
    assert_eq!(
        got.len(),
        reqs.len(),
        "every request mirrored: {}",
        cap.stats
    );
    let host_header = format!("localhost:{port}");
    for (req, rec) in reqs.iter().zip(&got) {
        let want = String::from_utf8_lossy(req).replace("shop.example", &host_header);
        assert_eq!(String::from_utf8_lossy(&rec.raw), want);
        assert_eq!(rec.sni.as_deref(), Some("localhost"));
    }
    assert!(
        got.iter().all(|r| r.conn == got[0].conn),
        "one client connection -> one staging connection"
    );
    let mirror = &cap.stats["mirror"];
    assert_eq!(mirror["connect_errors"], 0, "{}", cap.stats);
    assert_eq!(
        staging.received().len(),
        reqs.len(),
        "nothing mirrored twice"
    );
    host.assert_clean();
}
