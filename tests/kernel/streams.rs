//! Byte-exact streams on loopback: keep-alive, large bodies, concurrency, IPv6, and an
//! agent started while a connection is already open.

use gor_tests::{
    agent::Agent,
    host::HostState,
    traffic::{listen, Client, Server},
};

/// Asserts that the agent's streams for `client` are exactly what was exchanged.
pub fn assert_exact(cap: &gor_tests::agent::Captured, client: &Client, server: &Server) {
    let conn = cap.by_client(&client.local.to_string());
    let (server_received, server_sent) = server.exchange(client.local);
    assert_eq!(
        server_received, client.sent,
        "the test's own server saw what the client sent"
    );
    assert!(
        conn.c2s == client.sent,
        "c2s differs: captured {} bytes, client sent {}",
        conn.c2s.len(),
        client.sent.len()
    );
    assert!(
        conn.s2c == server_sent,
        "s2c differs: captured {} bytes, server sent {}",
        conn.s2c.len(),
        server_sent.len()
    );
    assert!(conn.gaps.is_empty(), "gaps: {:?}", conn.gaps);
}

#[test]
fn thousand_requests_on_one_keepalive_connection() {
    let host = HostState::snapshot();
    let server = Server::start(listen("127.0.0.1"));
    let agent = Agent::start("keepalive", &[server.addr.port()], &["lo"]);
    let mut client = Client::connect(server.addr);
    for i in 0..1000 {
        client.request(i, (i as usize * 7) % 300, (i as usize * 13) % 2000);
    }
    drop(client.stream().shutdown(std::net::Shutdown::Both));
    let cap = agent.stop();
    assert_eq!(cap.conns.len(), 1, "one connection: {:?}", cap.clients());
    assert!(!cap.conns[0].midstream);
    assert_exact(&cap, &client, &server);
    cap.assert_nothing_lost();
    host.assert_clean();
}

#[test]
fn five_mib_request_and_response_bodies() {
    let host = HostState::snapshot();
    let server = Server::start(listen("127.0.0.1"));
    let agent = Agent::start("big", &[server.addr.port()], &["lo"]);
    let mut client = Client::connect(server.addr);
    client.request(1, 5 << 20, 5 << 20);
    let cap = agent.stop();
    assert_exact(&cap, &client, &server);
    assert!(cap.kernel("bytes_copied") >= 10 << 20);
    cap.assert_nothing_lost();
    host.assert_clean();
}

#[test]
fn two_hundred_concurrent_connections() {
    let host = HostState::snapshot();
    let server = Server::start(listen("127.0.0.1"));
    let agent = Agent::start("concurrent", &[server.addr.port()], &["lo"]);
    let addr = server.addr;
    // Connect all first, so the 200 connections are open at the same time.
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(addr)).collect();
    let handles: Vec<_> = clients
        .drain(..)
        .enumerate()
        .map(|(n, mut c)| {
            std::thread::spawn(move || {
                for i in 0..5 {
                    c.request((n * 10 + i) as u64, 100 + n * 3, 500 + i * 100);
                }
                c
            })
        })
        .collect();
    let clients: Vec<Client> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let cap = agent.stop();
    assert_eq!(cap.conns.len(), 200);
    for c in &clients {
        assert_exact(&cap, c, &server);
    }
    cap.assert_nothing_lost();
    host.assert_clean();
}

#[test]
fn ipv6_on_loopback() {
    let host = HostState::snapshot();
    let server = Server::start(listen("::1"));
    let agent = Agent::start("ipv6", &[server.addr.port()], &["lo"]);
    let mut client = Client::connect(server.addr);
    for i in 0..20 {
        client.request(i, 1000, 20_000);
    }
    let cap = agent.stop();
    assert!(
        cap.conns[0].client.starts_with("[::1]:"),
        "{:?}",
        cap.clients()
    );
    assert_exact(&cap, &client, &server);
    cap.assert_nothing_lost();
    host.assert_clean();
}

#[test]
fn agent_started_while_a_connection_is_open() {
    let host = HostState::snapshot();
    let server = Server::start(listen("127.0.0.1"));
    let mut client = Client::connect(server.addr);
    client.request(0, 500, 500);
    let before = (client.sent.len(), client.received.len());

    let agent = Agent::start("midstream", &[server.addr.port()], &["lo"]);
    for i in 1..50 {
        client.request(i, 700, 3000);
    }
    let cap = agent.stop();
    let conn = cap.by_client(&client.local.to_string());
    assert!(conn.midstream, "marked as a mid-stream start");
    assert!(
        conn.c2s == client.sent[before.0..],
        "c2s is what the client sent after the agent started"
    );
    assert!(
        conn.s2c == client.received[before.1..],
        "s2c is what the server sent after the agent started"
    );
    cap.assert_nothing_lost();
    host.assert_clean();
}
