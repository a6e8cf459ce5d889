//! The federation listener's TLS: rustls (ring provider), offering HTTP/2
//! and HTTP/1.1 by ALPN. `connections` runs the handshake in each
//! connection's own task, so a slow client never holds up the accept loop.

use std::{path::Path, sync::Arc};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};

use crate::ServeError;

/// Builds the TLS acceptor from PEM files.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let tls_error =
        |what: &Path, e: &dyn std::fmt::Display| ServeError::Tls(format!("{}: {e}", what.display()));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
