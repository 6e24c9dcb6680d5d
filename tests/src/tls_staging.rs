//! An https staging server for the mirror tests: TLS (rustls) with a fresh self-signed
//! certificate for `localhost` (rcgen), written as PEM for the agent's `GOR_TLS_CA`; it
//! records each request's exact bytes, like the plain recording server in `staging`.

use std::{
    io::{BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// One request as staging received it, with the TLS server name the client asked for.
#[derive(Debug, Clone)]
pub struct TlsReceived {
    pub conn: usize,
    pub raw: Vec<u8>,
    pub sni: Option<String>,
}

type Shared = crate::staging::Recorder<TlsReceived>;

pub struct TlsStaging {
    pub addr: SocketAddr,
    /// PEM of the server's self-signed certificate (trust it to reach this server).
    pub ca_pem: PathBuf,
    shared: Arc<Shared>,
}

impl TlsStaging {
    /// Listens on the first address `localhost` resolves to (where a client of
    /// `https://localhost:PORT` connects), and writes the certificate to `dir/ca.pem`.
    pub fn start(dir: &Path) -> TlsStaging {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a self-signed certificate");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ck.cert.pem()).expect("write the certificate");
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .expect("a server configuration");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let local = ("localhost", 0)
            .to_socket_addrs()
            .expect("resolve localhost")
            .next()
            .expect("an address for localhost");
        let listener = TcpListener::bind(local).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { break };
                let (s, cfg) = (s.clone(), cfg.clone());
                std::thread::spawn(move || serve(stream, n, cfg, s));
            }
        });
        TlsStaging {
            addr,
            ca_pem,
            shared,
        }
    }

    pub fn received(&self) -> Vec<TlsReceived> {
        self.shared.all()
    }

    /// Waits until at least `n` requests were received (or `timeout` passed); returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<TlsReceived> {
        self.shared.wait_for(n, timeout)
    }
}

fn serve(tcp: TcpStream, conn: usize, cfg: Arc<ServerConfig>, shared: Arc<Shared>) {
    let Ok(session) = ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = StreamOwned::new(session, tcp);
    // Handshake first, so that the client's server name is known (and a client that
    // rejects the certificate ends here).
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    let sni = tls.conn.server_name().map(str::to_string);
    let mut reader = BufReader::new(tls);
    while let Some(raw) = crate::staging::read_request(&mut reader) {
        shared.push(TlsReceived {
            conn,
            raw,
            sni: sni.clone(),
        });
        let w = reader.get_mut();
        if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .and_then(|()| w.flush())
            .is_err()
        {
            return;
        }
    }
}
