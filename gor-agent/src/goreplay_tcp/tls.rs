//! TLS for both ends, as GoReplay 1.3 has it: the output verifies the certificate
//! (system roots, plus GOR_TLS_CA) unless told to skip verification; the input serves a
//! certificate and key from PEM files. No ALPN: GoReplay's ends offer none.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use crate::mirror::tls::CaCert;

/// The output's client configuration; `skip_verify`: any certificate is accepted.
pub fn client_config(extra_ca: &[CaCert], skip_verify: bool) -> Arc<ClientConfig> {
    let mut cfg = (*crate::mirror::tls::client_config(extra_ca)).clone();
    cfg.alpn_protocols.clear();
    if skip_verify {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        cfg.dangerous()
            .set_certificate_verifier(Arc::new(NoVerification(provider)));
    }
    Arc::new(cfg)
}

/// The server name to verify for `HOST:PORT`.
pub fn server_name_of(address: &str) -> Result<ServerName<'static>, String> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    crate::mirror::tls::server_name(host)
}

/// The input's server configuration, from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let invalid = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid("reading the certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(invalid(
            "reading the certificate",
            cert,
            &"no CERTIFICATE block",
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("reading the key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("configuring TLS for", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid("the certificate and key", cert, &e))?;
    Ok(Arc::new(cfg))
}

/// `--output-tcp-skip-verify`: signatures are still checked (the handshake needs them),
/// the certificate and the name are not.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
