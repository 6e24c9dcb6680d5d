//! TLS for both ends, as GoReplay 1.3 has it: the output verifies the certificate
//! (system roots, plus GOR_TLS_CA) unless told to skip verification; the input serves a
//! certificate and key from PEM files. No ALPN: GoReplay's ends offer none.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};

use crate::mirror::tls::CaCert;

/// The output's client configuration; `skip_verify`: any certificate is accepted.
pub fn client_config(extra_ca: &[CaCert], skip_verify: bool) -> Arc<ClientConfig> {
    // The mirror's configuration (its roots, `GOR_TLS_CA`, and its skip-verify, which
    // still checks the handshake's signatures), without HTTP's ALPN.
    let mut cfg = (*crate::mirror::tls::client_config(extra_ca, skip_verify)).clone();
    cfg.alpn_protocols.clear();
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
