//! A fleet: three production hosts, each an nginx on its own link (a veth whose other end
//! is in a network namespace of the test's, where that host's clients are), a listener
//! on each (the live agent on that veth, publishing what it frames to NATS JetStream),
//! one nats-server, and two replay servers sharing the stream's partitions and mirroring
//! to one recording staging. Clients send over keep-alive connections.
//!
//! The servers are on the root side and the clients in the namespaces, not the other
//! way round: the agent captures requests where they arrive (TC ingress to a captured
//! port), so a listener runs on its server's host; and the listeners and replay servers
//! reach the nats-server on the root namespace's loopback.
//!
//! Each test asserts what reached staging against what the clients sent, and checks the
//! counters of every listener and replay server: what did not arrive, or arrived twice,
//! is counted somewhere.

use std::{
    collections::{BTreeMap, HashMap},
    io::{BufReader, Write},
    net::{SocketAddr, TcpStream},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use gor_tests::{
    agent::{counter, temp_dir, Agent, Captured},
    nats::{NatsServer, ReplayServer, ReplayStopped},
    netns::{in_netns, Joined},
    nginx::Nginx,
    staging::{read_request, Received, Staging},
    traffic::{listen, pattern},
};

const HOSTS: [&str; 3] = ["a", "b", "c"];
const PARTITIONS: u64 = 16;

/// One production host: nginx on the root end of a veth, its clients in the namespace
/// at the other end.
struct Host {
    name: &'static str,
    nginx: Nginx,
    // Dropped after nginx: the namespace goes with the veth and what is attached to it.
    net: Joined,
}

impl Host {
    fn addr(&self) -> SocketAddr {
        self.nginx.addr
    }
}

/// Three hosts; `tag` and `first_net` keep names and subnets apart between tests.
fn hosts(tag: &str, first_net: u8) -> Vec<Host> {
    HOSTS
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let net = Joined::new(tag, first_net + i as u8);
            let dir = temp_dir(&format!("{tag}-nginx-{name}"));
            let nginx = Nginx::on_address(dir, &net.root_addr);
            Host { name, nginx, net }
        })
        .collect()
}

/// The live agent on `host`'s veth, publishing to `nats`, not mirroring itself.
fn listener(tag: &str, host: &Host, nats: &NatsServer, extra: &[(&str, &str)]) -> Agent {
    let url = nats.url();
    let id = format!("host-{}", host.name);
    let mut env = vec![
        ("GOR_NATS_URL", url.as_str()),
        ("GOR_AGENT_ID", id.as_str()),
        ("GOR_STATS_INTERVAL", "1s"),
    ];
    env.extend_from_slice(extra);
    Agent::start_with(
        &format!("{tag}-listener-{}", host.name),
        &[host.addr().port()],
        &[&host.net.root_dev],
        None,
        &env,
    )
}

fn replay_server(
    name: &str,
    nats: &NatsServer,
    staging: &Staging,
    extra: &[(&str, &str)],
) -> ReplayServer {
    let url = nats.url();
    let target = format!("http://{}", staging.addr);
    let mut env = vec![
        ("GOR_NATS_URL", url.as_str()),
        ("GOR_TARGET", target.as_str()),
        ("GOR_STATS_INTERVAL", "1s"),
    ];
    env.extend_from_slice(extra);
    ReplayServer::start(name, &env)
}

/// Which request: host, connection on that host, sequence number on that connection.
type Key = (String, usize, usize);

/// Request `seq` of connection `conn` to `host`: every third one a POST with a body (of
/// sizes up to a few segments), the others GETs; the key is in the query string.
fn request(host: &str, conn: usize, seq: usize) -> Vec<u8> {
    let query = format!("h={host}&c={conn}&i={seq}");
    if seq % 3 == 2 {
        let body = pattern((conn * 1000 + seq) as u64, 1 + (seq * 1543) % 9000);
        let mut req = format!(
            "POST /echo?{query} HTTP/1.1\r\nHost: shop-{host}.example\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    } else {
        format!(
            "GET /index.html?{query} HTTP/1.1\r\nHost: shop-{host}.example\r\nUser-Agent: fleet-test\r\nAccept: */*\r\n\r\n"
        )
        .into_bytes()
    }
}

/// The key in a request's start line.
fn key_of(raw: &[u8]) -> Option<Key> {
    let line = raw.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let query = line.split_once("?h=")?.1.split(' ').next()?;
    let mut parts = query.split('&');
    let host = parts.next()?.to_string();
    let conn = parts.next()?.strip_prefix("c=")?.parse().ok()?;
    let seq = parts.next()?.strip_prefix("i=")?.parse().ok()?;
    Some((host, conn, seq))
}

/// The request with its Host header's value blanked: the replay server sets its own.
fn without_host(raw: &[u8]) -> Vec<u8> {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return raw.to_vec();
    };
    let (head, body) = raw.split_at(head_end + 2);
    let mut out = Vec::with_capacity(raw.len());
    for line in head.split_inclusive(|&b| b == b'\n') {
        if line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"host:") {
            out.extend_from_slice(b"Host: -\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

/// What the clients sent, by key.
type Sent = HashMap<Key, Vec<u8>>;

/// Clients: `conns` keep-alive connections to each host, `per_conn` requests on each,
/// one every `gap` (zero: as fast as the answers come), each answer read before the next
/// request. Runs in the background; the handle gives what was sent.
fn drive(hosts: &[Host], conns: usize, per_conn: usize, gap: Duration) -> JoinHandle<Sent> {
    // Connected from the host's namespace; the sockets stay there when used from here.
    let connections: Vec<(&'static str, usize, TcpStream)> = hosts
        .iter()
        .flat_map(|h| {
            let (ns, addr) = (h.net.ns.clone(), h.addr());
            let streams = in_netns(&ns, move || {
                (0..conns)
                    .map(|_| {
                        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
                    })
                    .collect::<Vec<_>>()
            });
            streams.into_iter().enumerate().map(|(c, s)| (h.name, c, s))
        })
        .collect();
    std::thread::spawn(move || {
        let clients: Vec<JoinHandle<Sent>> = connections
            .into_iter()
            .map(|(host, conn, s)| std::thread::spawn(move || client(host, s, conn, per_conn, gap)))
            .collect();
        let mut sent = Sent::new();
        for c in clients {
            sent.extend(c.join().expect("a client thread"));
        }
        sent
    })
}

fn client(host: &str, mut s: TcpStream, conn: usize, n: usize, gap: Duration) -> Sent {
    let mut answers = BufReader::new(s.try_clone().expect("clone"));
    let start = Instant::now();
    let mut sent = Sent::new();
    for seq in 0..n {
        // Paced sending: a load shape, not a synchronisation.
        let due = start + gap * seq as u32;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let req = request(host, conn, seq);
        s.write_all(&req).expect("send to production");
        read_request(&mut answers).expect("production answered");
        sent.insert((host.to_string(), conn, seq), req);
    }
    sent
}

/// Each key staging received, with how many times.
fn tally(got: &[Received]) -> BTreeMap<Key, usize> {
    let mut t = BTreeMap::new();
    for r in got {
        let key = key_of(&r.raw).unwrap_or_else(|| {
            panic!(
                "staging got a request nobody sent:\n{}",
                String::from_utf8_lossy(&r.raw)
            )
        });
        *t.entry(key).or_default() += 1;
    }
    t
}

/// Every request staging received is one a client sent, byte for byte but for Host.
fn assert_bytes_match(sent: &Sent, got: &[Received]) {
    for r in got {
        let key = key_of(&r.raw).expect("a key");
        let want = sent
            .get(&key)
            .unwrap_or_else(|| panic!("staging got {key:?}, which no client sent"));
        assert!(
            without_host(&r.raw) == without_host(want),
            "staging got\n{}\nthe client sent\n{}",
            String::from_utf8_lossy(&r.raw),
            String::from_utf8_lossy(want)
        );
    }
}

/// Waits until staging has `n` distinct requests (or `limit` passed); what it has then.
fn wait_unique(staging: &Staging, n: usize, limit: Duration) -> Vec<Received> {
    let deadline = Instant::now() + limit;
    loop {
        let got = staging.wait_for(n, Duration::from_millis(200));
        if tally(&got).len() >= n || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls `what` (every 200 ms) until it holds; panics with `context()` after `limit`.
fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}: {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn publish(stats: &Value, name: &str) -> u64 {
    counter(stats, &["nats_publish", name])
}

fn consume(stats: &Value, name: &str) -> u64 {
    counter(stats, &["nats_consume", name])
}

fn sum(all: &[&Value], f: impl Fn(&Value) -> u64) -> u64 {
    all.iter().map(|v| f(v)).sum()
}

/// Waits until the replay servers own every partition between them, each some.
fn wait_partitions_shared(replays: &[&ReplayServer]) {
    let owned = || {
        replays
            .iter()
            .map(|r| consume(&r.stats_now(), "partitions_owned"))
            .collect::<Vec<_>>()
    };
    wait_until(
        "the replay servers share the partitions",
        Duration::from_secs(60),
        || {
            let o = owned();
            o.iter().sum::<u64>() == PARTITIONS && o.iter().all(|&n| n > 0)
        },
        || format!("owned {:?}", owned()),
    );
}

/// The listener published everything it framed: nothing dropped, refused or left.
fn assert_published_all(cap: &Captured, framed: usize) {
    cap.assert_nothing_lost();
    let s = &cap.stats;
    assert_eq!(cap.http("requests") as usize, framed, "{s}");
    assert_eq!(publish(s, "queued") as usize, framed, "{s}");
    assert_eq!(publish(s, "published") as usize, framed, "{s}");
    for k in ["dropped_queue_full", "too_large", "failed", "pending"] {
        assert_eq!(publish(s, k), 0, "listener's nats_publish.{k}: {s}");
    }
}

/// No errors from staging, nothing settled without being sent.
fn assert_mirror_clean(stopped: &ReplayStopped) {
    let s = &stopped.stats;
    for k in [
        "decode_errors",
        "acked_dropped",
        "nacked",
        "ack_errors",
        "inflight",
    ] {
        assert_eq!(consume(s, k), 0, "replay server's nats_consume.{k}: {s}");
    }
    for k in [
        "rate_limited",
        "connect_errors",
        "timeouts",
        "resets",
        "bad_responses",
        "queue_full",
        "dropped_backoff",
        "aborted_at_shutdown",
    ] {
        assert_eq!(
            counter(s, &["mirror", k]),
            0,
            "replay server's mirror.{k}: {s}"
        );
    }
}

#[test]
fn fleet_mirrors_every_request_once_in_order() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 30;
    let total = HOSTS.len() * CONNS * PER_CONN;
    let hosts = hosts("fa", 1);
    let nats = NatsServer::start("fleet-exact-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let listeners: Vec<Agent> = hosts
        .iter()
        .map(|h| listener("fleet-exact", h, &nats, &[]))
        .collect();
    let r1 = replay_server("fleet-exact-replay-1", &nats, &staging, &[]);
    let r2 = replay_server("fleet-exact-replay-2", &nats, &staging, &[]);
    wait_partitions_shared(&[&r1, &r2]);

    let sent = drive(&hosts, CONNS, PER_CONN, Duration::ZERO)
        .join()
        .expect("clients");
    assert_eq!(sent.len(), total);
    staging.wait_for(total, Duration::from_secs(60));
    let caps: Vec<Captured> = listeners.into_iter().map(Agent::stop).collect();
    let (s1, s2) = (r1.stop(), r2.stop());
    let got = staging.received();

    let t = tally(&got);
    let twice: Vec<_> = t.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "staging got some twice: {twice:?}");
    assert_eq!(
        t.len(),
        total,
        "staging got each request: {} of {total}; replay servers: {} {}",
        t.len(),
        s1.stats,
        s2.stats
    );
    assert_bytes_match(&sent, &got);
    // Each client connection's requests reached staging in the order it sent them.
    for host in HOSTS {
        for conn in 0..CONNS {
            let seqs: Vec<usize> = got
                .iter()
                .filter_map(|r| key_of(&r.raw))
                .filter(|k| k.0 == host && k.1 == conn)
                .map(|k| k.2)
                .collect();
            assert_eq!(
                seqs,
                (0..PER_CONN).collect::<Vec<_>>(),
                "host {host} connection {conn}: staging's order"
            );
        }
    }

    for cap in &caps {
        assert_published_all(cap, CONNS * PER_CONN);
    }
    assert_eq!(
        nats.stream_messages("GOR") as usize,
        total,
        "{}",
        nats.jsz()
    );
    let both = [&s1.stats, &s2.stats];
    assert_eq!(sum(&both, |s| consume(s, "received")) as usize, total);
    assert_eq!(sum(&both, |s| consume(s, "acked_sent")) as usize, total);
    assert_eq!(sum(&both, |s| consume(s, "redelivered")), 0);
    assert_eq!(sum(&both, |s| consume(s, "duplicates_skipped")), 0);
    assert_mirror_clean(&s1);
    assert_mirror_clean(&s2);
}

#[test]
fn fleet_rate_is_shared_by_the_replay_servers() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 500;
    // 12 connections, one request each every 20 ms: 600 requests/s for 10 s.
    const GAP: Duration = Duration::from_millis(20);
    let total = HOSTS.len() * CONNS * PER_CONN;
    let hosts = hosts("fb", 4);
    let nats = NatsServer::start("fleet-rate-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let listeners: Vec<Agent> = hosts
        .iter()
        .map(|h| listener("fleet-rate", h, &nats, &[]))
        .collect();
    let rate = [("GOR_RATE", "100")];
    let r1 = replay_server("fleet-rate-replay-1", &nats, &staging, &rate);
    let r2 = replay_server("fleet-rate-replay-2", &nats, &staging, &rate);
    wait_partitions_shared(&[&r1, &r2]);

    let sent = drive(&hosts, CONNS, PER_CONN, GAP).join().expect("clients");
    assert_eq!(sent.len(), total);
    let caps: Vec<Captured> = listeners.into_iter().map(Agent::stop).collect();
    for cap in &caps {
        assert_published_all(cap, CONNS * PER_CONN);
    }
    // Every message settled, sent or dropped over the rate.
    let settled = || {
        sum(&[&r1.stats_now(), &r2.stats_now()], |s| {
            consume(s, "acked_sent") + consume(s, "acked_dropped")
        }) as usize
    };
    wait_until(
        "every message settled",
        Duration::from_secs(60),
        || settled() >= total,
        || {
            format!(
                "{} of {total}: {} {}",
                settled(),
                r1.stats_now(),
                r2.stats_now()
            )
        },
    );
    let (s1, s2) = (r1.stop(), r2.stop());
    let got = staging.received();
    let both = [&s1.stats, &s2.stats];
    let limited = sum(&both, |s| counter(s, &["mirror", "rate_limited"])) as usize;
    assert_eq!(
        got.len() + limited,
        total,
        "each request reached staging or was counted over the rate: {} {}",
        s1.stats,
        s2.stats
    );
    assert_eq!(
        sum(&both, |s| consume(s, "acked_dropped")) as usize,
        limited
    );
    assert_eq!(tally(&got).len(), got.len(), "none twice");
    assert_bytes_match(&sent, &got);

    // Arrivals by second since the first; the first second (a full bucket) and the last
    // (partial) are left out.
    let first = got.iter().map(|r| r.at).min().expect("staging got some");
    let seconds = |r: &Received| r.at.duration_since(first).as_secs();
    let last = got.iter().map(seconds).max().expect("some");
    assert!(last >= 6, "arrivals over {last} s only");
    let mut per_second = vec![0usize; last as usize + 1];
    for r in &got {
        per_second[seconds(r) as usize] += 1;
    }
    let steady = &per_second[1..last as usize];
    let mean = steady.iter().sum::<usize>() as f64 / steady.len() as f64;
    assert!(
        (90.0..=110.0).contains(&mean),
        "staging saw {mean:.1} requests/s (want 100 +-10%), by second {per_second:?}"
    );
}

#[test]
fn fleet_loses_nothing_published_when_nats_server_crashes() {
    const CONNS: usize = 2;
    const PER_CONN: usize = 200;
    // 6 connections, a request each every 50 ms: 120/s for 10 s.
    const GAP: Duration = Duration::from_millis(50);
    let total = HOSTS.len() * CONNS * PER_CONN;
    let hosts = hosts("fc", 7);
    let mut nats = NatsServer::start("fleet-crash-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let listeners: Vec<Agent> = hosts
        .iter()
        .map(|h| listener("fleet-crash", h, &nats, &[]))
        .collect();
    let r1 = replay_server("fleet-crash-replay-1", &nats, &staging, &[]);
    let r2 = replay_server("fleet-crash-replay-2", &nats, &staging, &[]);
    wait_partitions_shared(&[&r1, &r2]);

    let clients = drive(&hosts, CONNS, PER_CONN, GAP);
    // The fleet is mirroring; then the broker crashes for 3 s.
    staging.wait_for(100, Duration::from_secs(30));
    nats.kill();
    let connected = |l: &Agent| publish(&l.stats_now(), "connected");
    wait_until(
        "a listener sees the broker gone",
        Duration::from_secs(20),
        || listeners.iter().any(|l| connected(l) == 0),
        || {
            format!(
                "{:?}",
                listeners.iter().map(Agent::stats_now).collect::<Vec<_>>()
            )
        },
    );
    // The outage's length (a fault, not a synchronisation).
    std::thread::sleep(Duration::from_secs(3));
    nats.restart();
    wait_until(
        "every listener reconnects",
        Duration::from_secs(60),
        || listeners.iter().all(|l| connected(l) == 1),
        || {
            format!(
                "{:?}",
                listeners.iter().map(Agent::stats_now).collect::<Vec<_>>()
            )
        },
    );
    let sent = clients.join().expect("clients");
    assert_eq!(sent.len(), total);

    let caps: Vec<Captured> = listeners.into_iter().map(Agent::stop).collect();
    let mut lost = 0;
    for cap in &caps {
        let s = &cap.stats;
        cap.assert_nothing_lost();
        assert_eq!(
            cap.http("requests") as usize,
            CONNS * PER_CONN,
            "the listener kept capturing: {s}"
        );
        assert_eq!(publish(s, "pending"), 0, "nothing left at exit: {s}");
        lost += publish(s, "dropped_queue_full") + publish(s, "failed") + publish(s, "too_large");
    }
    let want = total - lost as usize;
    let got = wait_unique(&staging, want, Duration::from_secs(90));
    let (s1, s2) = (r1.stop(), r2.stop());
    let got_after = staging.received();
    let t = tally(&got_after);
    let both = [&s1.stats, &s2.stats];
    let listeners_stats: Vec<&Value> = caps.iter().map(|c| &c.stats).collect();
    assert_eq!(
        t.len(),
        want,
        "staging got each request the listeners did not count as lost ({total} sent, {lost} \
         counted lost, {} at the wait); listeners {listeners_stats:?}; replay servers {} {}",
        tally(&got).len(),
        s1.stats,
        s2.stats
    );
    assert_bytes_match(&sent, &got_after);
    let duplicates = got_after.len() - t.len();
    let redelivered = sum(&both, |s| consume(s, "redelivered")) as usize;
    assert!(
        duplicates <= redelivered,
        "{duplicates} duplicates at staging, {redelivered} redeliveries counted: {} {}",
        s1.stats,
        s2.stats
    );
}

#[test]
fn fleet_takes_over_the_partitions_of_a_crashed_replay_server() {
    const CONNS: usize = 2;
    const PER_CONN: usize = 150;
    const GAP: Duration = Duration::from_millis(50);
    let total = HOSTS.len() * CONNS * PER_CONN;
    let hosts = hosts("fd", 10);
    let nats = NatsServer::start("fleet-takeover-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let listeners: Vec<Agent> = hosts
        .iter()
        .map(|h| listener("fleet-takeover", h, &nats, &[]))
        .collect();
    let quick = [("GOR_NATS_LEASE", "3s"), ("GOR_NATS_ACK_WAIT", "5s")];
    let r1 = replay_server("fleet-takeover-replay-1", &nats, &staging, &quick);
    let r2 = replay_server("fleet-takeover-replay-2", &nats, &staging, &quick);
    wait_partitions_shared(&[&r1, &r2]);

    let clients = drive(&hosts, CONNS, PER_CONN, GAP);
    staging.wait_for(100, Duration::from_secs(30));
    let killed = r1.kill();
    wait_until(
        "the other replay server owns every partition",
        Duration::from_secs(60),
        || consume(&r2.stats_now(), "partitions_owned") == PARTITIONS,
        || r2.stats_now().to_string(),
    );
    let sent = clients.join().expect("clients");
    assert_eq!(sent.len(), total);
    let caps: Vec<Captured> = listeners.into_iter().map(Agent::stop).collect();
    for cap in &caps {
        assert_published_all(cap, CONNS * PER_CONN);
    }
    wait_unique(&staging, total, Duration::from_secs(90));
    let s2 = r2.stop();
    let got = staging.received();
    let t = tally(&got);
    assert_eq!(
        t.len(),
        total,
        "staging got every request; the survivor: {}",
        s2.stats
    );
    assert_bytes_match(&sent, &got);
    let duplicates = got.len() - t.len();
    // What the killed one had counted before it died, and what the survivor counted.
    let redelivered =
        (consume(&killed, "redelivered") + consume(&s2.stats, "redelivered")) as usize;
    assert!(
        duplicates <= redelivered,
        "{duplicates} duplicates at staging, {redelivered} redeliveries counted: {}",
        s2.stats
    );
}

#[test]
fn fleet_delivers_everything_after_staging_was_down_for_20_s() {
    const CONNS: usize = 2;
    // 6 connections, a request each every 100 ms, for 28 s: staging is down for 20 of them.
    const PER_CONN: usize = 280;
    const GAP: Duration = Duration::from_millis(100);
    let total = HOSTS.len() * CONNS * PER_CONN;
    let hosts = hosts("fe", 13);
    let nats = NatsServer::start("fleet-staging-down-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let listeners: Vec<Agent> = hosts
        .iter()
        .map(|h| listener("fleet-staging-down", h, &nats, &[]))
        .collect();
    let r1 = replay_server("fleet-staging-down-replay-1", &nats, &staging, &[]);
    let r2 = replay_server("fleet-staging-down-replay-2", &nats, &staging, &[]);
    wait_partitions_shared(&[&r1, &r2]);

    let clients = drive(&hosts, CONNS, PER_CONN, GAP);
    staging.wait_for(50, Duration::from_secs(30));
    staging.close();
    let at_close = staging.received().len();
    std::thread::sleep(Duration::from_secs(20));
    staging.reopen();
    let sent = clients.join().expect("clients");
    assert_eq!(sent.len(), total);
    let caps: Vec<Captured> = listeners.into_iter().map(Agent::stop).collect();
    for cap in &caps {
        assert_published_all(cap, CONNS * PER_CONN);
    }
    wait_unique(&staging, total, Duration::from_secs(120));
    let (s1, s2) = (r1.stop(), r2.stop());
    let got = staging.received();
    let t = tally(&got);
    assert!(
        at_close < total / 2,
        "staging was down while traffic flowed ({at_close} before)"
    );
    assert_eq!(
        t.len(),
        total,
        "staging got every request; replay servers: {} {}",
        s1.stats,
        s2.stats
    );
    assert_bytes_match(&sent, &got);
    let both = [&s1.stats, &s2.stats];
    assert!(
        sum(&both, |s| counter(s, &["mirror", "connect_errors"])) > 0
            && sum(&both, |s| consume(s, "nacked")) > 0,
        "the replay servers met staging down, and gave back what they could not send: {} {}",
        s1.stats,
        s2.stats
    );
    let duplicates = got.len() - t.len();
    let again = sum(&both, |s| {
        consume(s, "redelivered") + counter(s, &["mirror", "retries"])
    }) as usize;
    assert!(
        duplicates <= again,
        "{duplicates} duplicates at staging, {again} redeliveries and retries counted: {} {}",
        s1.stats,
        s2.stats
    );
}

/// One host's connections are shared by both replay servers: a connection's partition
/// mixes every bit of its key. (With FNV-1a modulo 16 it did not: the low bits of FNV-1a
/// depend only on the low bits of each byte, so ids 1 to 7 of one listener landed in one
/// half of the partitions, which one replay server owned.) With 16 connections and the
/// partitions split 8/8, a random spread puts all of them on one server once in 32,768
/// runs.
#[test]
fn fleet_shares_one_hosts_connections_between_the_replay_servers() {
    const CONNS: usize = 16;
    const PER_CONN: usize = 5;
    let hosts = hosts("fs", 16);
    let nats = NatsServer::start("fleet-spread-nats");
    let staging = Staging::start(listen("127.0.0.1"));
    let one = listener("fleet-spread", &hosts[0], &nats, &[]);
    let r1 = replay_server("fleet-spread-replay-1", &nats, &staging, &[]);
    let r2 = replay_server("fleet-spread-replay-2", &nats, &staging, &[]);
    wait_partitions_shared(&[&r1, &r2]);
    drive(&hosts[..1], CONNS, PER_CONN, Duration::ZERO)
        .join()
        .expect("clients");
    staging.wait_for(CONNS * PER_CONN, Duration::from_secs(60));
    one.stop();
    let (s1, s2) = (r1.stop(), r2.stop());
    assert!(
        consume(&s1.stats, "acked_sent") > 0 && consume(&s2.stats, "acked_sent") > 0,
        "{CONNS} connections, all through one replay server: {} / {}",
        s1.stats["nats_consume"],
        s2.stats["nats_consume"]
    );
}
