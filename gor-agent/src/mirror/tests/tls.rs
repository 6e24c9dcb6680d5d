//! `https://` targets: a TLS recording server on localhost with a self-signed certificate
//! (rcgen), trusted through `tls_ca` or not at all.

use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::super::conn::{connect, Pool};
use super::super::response::read_response;
use super::super::tls::{client_config, TlsTarget};
use super::*;

/// A self-signed certificate for `localhost` and its key.
fn localhost_cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    (ck.cert.der().clone(), key.into())
}

/// One request as the TLS server received it, with what the handshake said.
#[derive(Debug)]
struct TlsGot {
    conn: usize,
    raw: Vec<u8>,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
}

/// How the TLS server treats a connection after each response.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    KeepAlive,
    /// Sends close_notify and closes (without `Connection: close`): idle-timeout style.
    Close,
}

struct TlsStaging {
    port: u16,
    rx: mpsc::UnboundedReceiver<TlsGot>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsStaging {
    async fn start(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> TlsStaging {
        Self::with(cert, key, After::KeepAlive).await
    }

    async fn with(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        after: After,
    ) -> TlsStaging {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        // Where `localhost` resolves first is where the mirror connects.
        let addr = tokio::net::lookup_host("localhost:0")
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind(addr).await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let idx = acc.fetch_add(1, Ordering::SeqCst);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                conns.spawn(async move {
                    // A failed handshake (an untrusting client) just ends the connection.
                    if let Ok(s) = acceptor.accept(tcp).await {
                        serve_tls(s, idx, after, tx).await;
                    }
                });
            }
        });
        TlsStaging {
            port,
            rx,
            accepted,
            task,
        }
    }

    async fn take(&mut self, n: usize) -> Vec<TlsGot> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let got = tokio::time::timeout(WAIT, self.rx.recv())
                .await
                .expect("staging got no request in time")
                .expect("staging stopped");
            out.push(got);
        }
        out
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_tls(
    mut s: tokio_rustls::server::TlsStream<TcpStream>,
    conn: usize,
    after: After,
    tx: mpsc::UnboundedSender<TlsGot>,
) {
    let (sni, alpn) = {
        let c = s.get_ref().1;
        (
            c.server_name().map(str::to_string),
            c.alpn_protocol().map(<[u8]>::to_vec),
        )
    };
    let mut buf = BytesMut::new();
    while let Some(raw) = next_request(&mut s, &mut buf).await {
        let _ = tx.send(TlsGot {
            conn,
            raw,
            sni: sni.clone(),
            alpn: alpn.clone(),
        });
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if s.write_all(resp).await.is_err() || s.flush().await.is_err() {
            return;
        }
        if after == After::Close {
            let _ = s.shutdown().await; // close_notify, then FIN.
            return;
        }
    }
}

fn https_target(port: u16) -> Target {
    Target::parse(&format!("https://localhost:{port}")).expect("valid target")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arrive_byte_exact_over_tls() {
    let (cert, key) = localhost_cert();
    let mut staging = TlsStaging::start(cert.clone(), key).await;
    let exclusion = Arc::new(RecordingExclusion::default());
    let mut cfg = config(vec![https_target(staging.port)]);
    cfg.tls_ca = vec![cert];
    cfg.exclusion = Some(exclusion.clone());
    let r = Mirror::start(cfg);

    let reqs: [&[u8]; 3] = [
        b"GET /a?x=1 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n",
        b"POST /b HTTP/1.1\r\nhost: shop.example\r\nContent-Length: 5\r\n\r\nhello",
        b"PUT /c HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];
    for req in reqs {
        r.submit(&msg(1, req));
    }
    let got = staging.take(3).await;
    let host = format!("localhost:{}", staging.port);
    for (g, req) in got.iter().zip(reqs) {
        let want = String::from_utf8_lossy(req).replace("shop.example", &host);
        assert_eq!(String::from_utf8_lossy(&g.raw), want);
        assert_eq!(g.sni.as_deref(), Some("localhost"));
        assert_eq!(g.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
    // In order on one keep-alive connection.
    assert!(got.iter().all(|g| g.conn == got[0].conn), "{got:?}");

    let s = r.shutdown(Duration::from_secs(5)).await;
    let t = t0(&s);
    assert_eq!(t.target, format!("https://{host}"));
    assert_eq!(
        (t.status_2xx, t.connect_errors, t.retries),
        (3, 0, 0),
        "{s:#?}"
    );
    assert_eq!(staging.accepted.load(Ordering::SeqCst), 1);
    // The TLS connection's port was excluded, and withdrawn once it closed.
    let events = exclusion.events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!((events[0].0, events[1].0), (true, false));
    assert_eq!(events[0].1, events[1].1);
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verify_accepts_an_untrusted_certificate() {
    // The certificate is trusted by nothing and names `localhost`; the target is
    // 127.0.0.1, another name: both would fail verification.
    let (cert, key) = localhost_cert();
    let mut staging = TlsStaging::start(cert, key).await;
    let t = Target::parse(&format!("https://127.0.0.1:{}", staging.port)).unwrap();
    let mut cfg = config(vec![t]);
    cfg.tls_skip_verify = true;
    let r = Mirror::start(cfg);
    r.submit(&msg(1, b"GET /unverified HTTP/1.1\r\nHost: p\r\n\r\n"));
    let got = staging.take(1).await;
    assert!(got[0].raw.starts_with(b"GET /unverified HTTP/1.1\r\n"));
    let s = r.shutdown(Duration::from_secs(2)).await;
    assert_eq!((t0(&s).status_2xx, t0(&s).connect_errors), (1, 0), "{s:#?}");
    staging.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_a_connect_error() {
    let (cert, key) = localhost_cert();
    let mut staging = TlsStaging::start(cert, key).await;
    let exclusion = Arc::new(RecordingExclusion::default());
    let mut cfg = config(vec![https_target(staging.port)]);
    cfg.exclusion = Some(exclusion.clone());
    cfg.timeout = Duration::from_secs(2);
    let r = Mirror::start(cfg);
    let m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    // Failures back off like connect failures do: a request that reaches a lane during
    // the backoff after a failed handshake is dropped. The wait is for both outcomes, not
    // for two failures alone: on a loaded machine the two failures can come from two
    // lanes whose handshakes ran at once (the second one during the first's backoff
    // does not lengthen it), or a lane may pick its next request only after the 50 ms
    // backoff ended, so two failures say nothing yet about a drop. Backoff doubles with
    // each failure, so a submission lands in one long before the wait ends.
    submit_until(&r, &m, |s| {
        t0(s).connect_errors >= 2 && t0(s).dropped_backoff > 0
    })
    .await;
    let s = r.shutdown(Duration::from_secs(2)).await;
    let t = t0(&s);
    assert_eq!((t.sent, t.status_2xx, t.timeouts), (0, 0, 0), "{s:#?}");
    assert!(t.dropped_backoff > 0, "{s:#?}");
    assert!(staging.rx.try_recv().is_err(), "staging got a request");
    assert!(staging.accepted.load(Ordering::SeqCst) >= 2);
    // Every port added was withdrawn again.
    let events = exclusion.events.lock().unwrap().clone();
    let adds = events.iter().filter(|e| e.0).count();
    assert_eq!(adds * 2, events.len(), "{events:?}");
    staging.stop().await;
}

/// A pooled TLS connection that staging closed (close_notify + FIN) while idle is not
/// reused; one that is merely idle is.
#[tokio::test]
async fn pooled_tls_connections_are_checked() {
    let (cert, key) = localhost_cert();
    let config = client_config(std::slice::from_ref(&cert), false);
    let tls = TlsTarget::new(config, "localhost");
    for (after, reusable) in [(After::KeepAlive, true), (After::Close, false)] {
        let mut staging = TlsStaging::with(cert.clone(), key.clone_key(), after).await;
        let addr = format!("localhost:{}", staging.port);
        let mut conn = connect(&addr, Some(&tls), None).await.expect("connect");
        conn.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        conn.stream.flush().await.unwrap();
        let mut buf = BytesMut::new();
        let resp = read_response(&mut conn.stream, &mut buf, false, false)
            .await
            .expect("a response");
        assert_eq!(resp.status, 200);
        staging.take(1).await;
        // Time for staging's close to arrive (pacing; the check itself never waits).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pool = Pool::new(1);
        pool.put(conn);
        assert_eq!(pool.take().is_some(), reusable, "after {after:?}");
        staging.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_is_a_tls_failure_result() {
    let (cert, key) = localhost_cert();
    let staging = TlsStaging::start(cert, key).await;
    let mut cfg = config(vec![https_target(staging.port)]);
    cfg.timeout = Duration::from_secs(2);
    let mut r = Mirror::start(cfg);
    let mut rx = r.subscribe(4);
    let mut m = msg(1, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    m.id = crate::envelope::MessageId::framed(Default::default(), 1, 5);
    r.submit(&m);
    let res = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a result in time")
        .expect("a result");
    assert_eq!(res.id, m.id);
    assert_eq!(
        res.outcome,
        crate::mirror::Outcome::Failure(crate::mirror::FailureKind::Tls)
    );
    assert_eq!(t0(&r.stats()).connect_errors, 1);
    staging.stop().await;
}
