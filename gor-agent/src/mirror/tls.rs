//! TLS for `https://` targets: one rustls client configuration per mirror (system roots
//! plus the `GOR_TLS_CA` certificates, ALPN `http/1.1` only, the `ring` provider; or, with
//! `GOR_TLS_SKIP_VERIFY`, any certificate accepted), and loading the extra CA certificates
//! from a PEM file.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A CA certificate (DER) trusted for `https://` targets in addition to the system roots.
pub type CaCert = CertificateDer<'static>;

/// Reads every `CERTIFICATE` block of a PEM file and checks that each is a usable trust
/// anchor; the error says what is expected (for a `ConfigError`).
pub fn load_ca_file(path: &Path) -> Result<Vec<CaCert>, String> {
    const EXPECTED: &str = "a readable PEM file of CA certificates";
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{EXPECTED} ({e})"))?;
    if certs.is_empty() {
        return Err(format!("{EXPECTED} (no CERTIFICATE block found)"));
    }
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store
            .add(cert.clone())
            .map_err(|e| format!("{EXPECTED} (invalid certificate: {e})"))?;
    }
    Ok(certs)
}

/// The client configuration shared by every https target of a mirror; `skip_verify`
/// accepts any certificate (GoReplay's `--output-http-skip-verify`).
pub(crate) fn client_config(extra_ca: &[CaCert], skip_verify: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "loading system CA certificates");
    }
    let (_, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "unusable system CA certificates ignored");
    }
    for cert in extra_ca {
        // load_ca_file checked these already; a failure here only means one is missing.
        if let Err(e) = roots.add(cert.clone()) {
            tracing::warn!(error = %e, "ignoring an invalid GOR_TLS_CA certificate");
        }
    }
    if roots.is_empty() {
        tracing::warn!("no trusted CA certificates: https targets will fail verification");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if skip_verify {
        let provider = cfg.crypto_provider().clone();
        cfg.dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate(provider)));
    }
    Arc::new(cfg)
}

/// Accepts whatever certificate staging shows, for whatever name; the handshake's
/// signatures are still checked, so the connection is encrypted to the holder of the
/// key of that certificate, whoever that is.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a target needs to open TLS connections.
pub(crate) struct TlsTarget {
    pub connector: TlsConnector,
    /// For SNI and certificate verification: the target's host, without brackets.
    pub host: String,
}

impl TlsTarget {
    pub fn new(config: Arc<ClientConfig>, host: &str) -> TlsTarget {
        TlsTarget {
            connector: TlsConnector::from(config),
            host: host.to_string(),
        }
    }

    /// The TLS handshake over a connected socket, verifying the certificate for `host`.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let name =
            server_name(&self.host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, tcp).await
    }
}

/// `host` (a DNS name, IPv4 address, or IPv6 address with or without brackets) as a TLS
/// server name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))
}
